"""Progress of a long run (a bench sweep, a dataset evaluation): a rich bar on a terminal,
plain lines in logs. Libraries take a :class:`Progress` and never print themselves; the CLI
passes :func:`progress_reporter`'s.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import IO, Any, Protocol


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...

    def advance(self, count: int = 1, *, now: str | None = None, note: str | None = None) -> None:
        """``count`` more done; ``now``: what is running next; ``note``: a line worth keeping."""

    def stop(self) -> None: ...


def progress_reporter(title: str, unit: str, stream: IO[str] | None = None,
                      every_s: float = 0.0) -> Progress:
    """A rich bar (current item, rate, ETA) on a terminal, else a line per step (at most one
    per ``every_s`` seconds, and every note)."""
    stream = stream or sys.stderr
    return RichProgress(title, unit, stream) if stream.isatty() else \
        LineProgress(stream, title=title, unit=unit, every_s=every_s)


class _Rate:
    """Items per second over this run (a resumed run's earlier items are not counted)."""

    def __init__(self) -> None:
        self.started, self.counted = time.monotonic(), 0

    def add(self, count: int) -> float:
        self.counted += count
        return self.counted / max(time.monotonic() - self.started, 1e-9)


class LineProgress:
    """``crossrt: title: [note; ]done/total unit, rate unit/s, ETA h:mm:ss``."""

    def __init__(self, stream: IO[str], title: str = "progress", unit: str = "items",
                 every_s: float = 0.0):
        self.stream, self.title, self.unit, self.every_s = stream, title, unit, every_s
        self.total = self.done = 0
        self.rate, self.last = _Rate(), 0.0

    def start(self, total: int, done: int) -> None:
        self.total, self.done, self.rate, self.last = total, done, _Rate(), time.monotonic()
        if done:
            self._print(f"{self.title}: resuming, {done} of {total} {self.unit} already done")

    def advance(self, count: int = 1, *, now: str | None = None, note: str | None = None) -> None:
        if not count and note is None:
            return
        self.done += count
        speed = self.rate.add(count)
        clock = time.monotonic()
        if note is None and clock - self.last < self.every_s and self.done < self.total:
            return
        self.last = clock
        eta = datetime.timedelta(seconds=round((self.total - self.done) / speed)) if speed else "-"
        self._print(f"{self.title}: " + (f"{note}; " if note else "")
                    + f"{self.done}/{self.total} {self.unit}, {speed:.1f} {self.unit}/s, ETA {eta}")

    def stop(self) -> None:
        pass

    def _print(self, line: str) -> None:
        print(f"crossrt: {line}", file=self.stream, flush=True)  # a notice, as the CLI's


class RichProgress:
    """A rich bar: what runs now, done of total, rate, elapsed and remaining time."""

    def __init__(self, title: str, unit: str, stream: IO[str]):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.title = title
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn(f"{{task.fields[speed]}} {unit}/s"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(file=stream))
        self.task: Any = None
        self.rate = _Rate()

    def start(self, total: int, done: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(self.title, total=total, completed=done, speed="-")
        self.rate = _Rate()

    def advance(self, count: int = 1, *, now: str | None = None, note: str | None = None) -> None:
        if note:
            self.bar.console.print(f"{self.title}: {note}")
        fields: dict[str, Any] = {"description": now} if now else {}
        if count:
            fields["speed"] = f"{self.rate.add(count):.1f}"
        self.bar.update(self.task, advance=count, **fields)

    def stop(self) -> None:
        self.bar.stop()
