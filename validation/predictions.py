"""The predictions journal of ``crossrt accuracy``: one JSON line per image, as it comes.

Rows are appended to ``PATH.partial`` after a header line that names the run (model, target,
runtimes, image set), flushed per batch, and the file is renamed to ``PATH`` when the run
completes, so ``PATH`` is never half-written. An interrupted run leaves ``PATH.partial``;
``resume`` continues it when its header matches this run (a row cut short by the interruption
is dropped and predicted again).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

from core import files
from core.errors import UsageError
from core.files import OutputKind, first_line_starts
from core.log import log

FORMAT = "crossrt-accuracy-predictions/1"
PREDICTIONS = OutputKind("predictions journal", first_line_starts(f'{{"format": "{FORMAT}"'))
Row = dict[str, Any]


def partial_path(path: Path) -> Path:
    """``PATH.partial``: the journal while the run goes on."""
    return path.with_name(path.name + ".partial")


class PredictionsJournal:
    """Appends rows to ``PATH.partial`` (JSON lines after a header), renamed at the end.

    Without a path every method does nothing (a run that keeps no predictions).
    """

    def __init__(self, path: str | Path | None, header: dict[str, Any], resume: bool):
        self.path = Path(path) if path is not None else None
        self.partial = partial_path(self.path) if self.path else None
        self.header, self.resume = {"format": FORMAT, **header}, resume
        self.handle: IO[str] | None = None

    def open(self) -> list[Row]:
        """Start (or continue) the file; the rows an interrupted run already wrote. A refused
        resume leaves every file as it was."""
        if self.partial is None or self.path is None:
            return []
        rows: list[Row] = []
        with files.disk_errors(self.partial):
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            source = next((p for p in (self.partial, self.path) if p.is_file()), None) \
                if self.resume else None
            if source is not None:
                rows, keep = self._read_back(source)
                if source == self.path:  # a finished run: nothing to redo
                    shutil.copyfile(self.path, self.partial)
                handle = open(self.partial, "r+", encoding="utf-8")  # noqa: SIM115 - kept open
                handle.truncate(keep)
                handle.seek(keep)
            else:
                if self.resume:
                    log.info(f"nothing to resume at {self.partial}; starting from the first image")
                elif self.partial.is_file():
                    log.info(f"replacing {self.partial} left by an interrupted run "
                             "(--resume continues it instead)")
                handle = open(self.partial, "w", encoding="utf-8")  # noqa: SIM115 - kept open
                try:
                    handle.write(json.dumps(self.header) + "\n")
                    handle.flush()
                except BaseException:  # a full disk: no journal is left to resume from
                    self.handle = handle
                    self.discard()
                    raise
        self.handle = handle
        return rows

    def _read_back(self, source: Path) -> tuple[list[Row], int]:
        """The rows of ``source`` and the bytes up to its last whole line; a line that is
        JSON but not a row of this run is refused (nothing is trusted unchecked)."""
        rows: list[Row] = []
        keep = 0
        with open(source, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    record = None
                if record is None:
                    break  # cut short by the interruption: predicted again
                if number == 1:
                    self._check_header(record, source)
                elif problem := self._row_problem(record):
                    raise UsageError(f"cannot resume from {source}: line {number} is not a "
                                     f"prediction of this run ({problem}); drop --resume to "
                                     "start over")
                else:
                    rows.append(record)
                keep += len(line)
        if keep == 0:
            raise UsageError(f"{source} has no header line; drop --resume to start over")
        return rows, keep

    def _check_header(self, found: Any, source: Path) -> None:
        for key, value in self.header.items():
            if not isinstance(found, dict) or found.get(key) != value:
                seen = found.get(key) if isinstance(found, dict) else found
                raise UsageError(f"cannot resume from {source}: it was written for another "
                                 f"run ({key} {seen!r}, now {value!r}); drop --resume "
                                 "or pass another --predictions")

    def _row_problem(self, row: Any) -> str | None:
        if problem := files.schema_problem(row, {"index": int, "path": str, "label": int}):
            return problem
        if row["index"] < 0:
            return f"image index {row['index']}"
        if "excluded" in row:
            return None if isinstance(row["excluded"], str) else "'excluded' is not text"
        top5 = row.get("top5")
        if not isinstance(top5, dict) or set(top5) != set(self.header["runtimes"]):
            return "no top-5 of every runtime"
        if not all(isinstance(ranks, list) and ranks and
                   all(isinstance(k, int) and not isinstance(k, bool) for k in ranks)
                   for ranks in top5.values()):
            return "a top-5 that is not a list of class indices"
        return None

    def write(self, rows: list[Row]) -> None:
        if self.handle is None:
            return
        with files.disk_errors(self.partial or ""):
            self.handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
            self.handle.flush()

    def close(self) -> None:
        """Stop writing; ``PATH.partial`` stays for a resume (an interrupted run). Every row was
        flushed as written: what a full disk refuses at closing is lost from the journal only."""
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()

    def discard(self) -> None:
        """A run stopped for bad input: its rows are no base for a resume."""
        self.close()
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)

    def finish(self) -> Path | None:
        """The finished file: ``PATH.partial`` renamed to ``PATH`` (never half-written)."""
        if self.path is None or self.partial is None:
            return None
        with files.disk_errors(self.path):
            os.replace(self.partial, self.path)
        return self.path
