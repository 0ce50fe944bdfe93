"""The predictions journal of ``crossrt accuracy``: one JSON line per image, as it comes.

Rows are appended to ``PATH.partial`` after a header line that names the run (model, target,
runtimes, image set), flushed per batch, and the file is renamed to ``PATH`` when the run
completes, so ``PATH`` is never half-written. An interrupted run leaves ``PATH.partial``;
``resume`` continues it when its header matches this run (a row cut short by the interruption
is dropped and predicted again).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

from core import files
from core.errors import UsageError
from core.log import log

FORMAT = "crossrt-accuracy-predictions/1"
Row = dict[str, Any]


class PredictionsJournal:
    """Appends rows to ``PATH.partial`` (JSON lines after a header), renamed at the end.

    Without a path every method does nothing (a run that keeps no predictions).
    """

    def __init__(self, path: str | Path | None, header: dict[str, Any], resume: bool):
        self.path = Path(path) if path is not None else None
        self.partial = self.path.with_name(self.path.name + ".partial") if self.path else None
        self.header, self.resume = {"format": FORMAT, **header}, resume
        self.handle: IO[str] | None = None

    def open(self) -> list[Row]:
        """Start (or continue) the file; the rows an interrupted run already wrote."""
        if self.partial is None or self.path is None:
            return []
        rows: list[Row] = []
        with files.disk_errors(self.partial):
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            if self.resume and not self.partial.is_file() and self.path.is_file():
                shutil.copyfile(self.path, self.partial)  # a finished run: nothing to redo
            if self.resume and self.partial.is_file():
                rows, keep = self._read_back()
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
                handle.write(json.dumps(self.header) + "\n")
                handle.flush()
        self.handle = handle
        return rows

    def _read_back(self) -> tuple[list[Row], int]:
        """The rows of ``PATH.partial`` and the bytes up to the last whole line."""
        assert self.partial is not None
        rows: list[Row] = []
        keep = 0
        with open(self.partial, "rb") as handle:
            for number, line in enumerate(handle):
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    record = None
                if record is None:
                    break  # cut short by the interruption: predicted again
                if number == 0:
                    self._check_header(record)
                else:
                    rows.append(record)
                keep += len(line)
        if keep == 0:
            raise UsageError(f"{self.partial} has no header line; drop --resume to start over")
        return rows, keep

    def _check_header(self, found: dict[str, Any]) -> None:
        for key, value in self.header.items():
            if found.get(key) != value:
                raise UsageError(f"cannot resume from {self.partial}: it was written for another "
                                 f"run ({key} {found.get(key)!r}, now {value!r}); drop --resume "
                                 "or pass another --predictions")

    def write(self, rows: list[Row]) -> None:
        if self.handle is None:
            return
        with files.disk_errors(self.partial or ""):
            self.handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
            self.handle.flush()

    def close(self) -> None:
        """Stop writing; ``PATH.partial`` stays for a resume (an interrupted run)."""
        if self.handle is not None:
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
