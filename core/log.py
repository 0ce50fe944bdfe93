"""crossrt's notices: progress and warnings that are not results.

Libraries write to the one logger, ``crossrt`` (``log.info("...")``) and never print; the CLI
shows its lines on stderr as ``crossrt: ...`` (:func:`show_on_stderr`), so stdout stays the
command's output (tables, JSON). A program using the API sees them through ``logging``.
"""

from __future__ import annotations

import contextlib
import logging
import sys

log = logging.getLogger("crossrt")
log.addHandler(logging.NullHandler())  # silent unless the application shows them


class _Stderr(logging.Handler):
    """``crossrt: message`` on whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        # a closed or full stderr must not end the run
        with contextlib.suppress(OSError, ValueError):
            print(f"crossrt: {record.getMessage()}", file=sys.stderr, flush=True)


def show_on_stderr() -> None:
    """Show crossrt's notices on stderr (once per process, however often it is called)."""
    if not any(isinstance(handler, _Stderr) for handler in log.handlers):
        log.addHandler(_Stderr())
    log.setLevel(logging.INFO)
    log.propagate = False  # the application's own root handlers would print them twice
