"""Ctrl-C and SIGTERM while native code runs Python callbacks that would swallow them.

TensorRT's builder calls Python back (its logger, its progress monitor) and catches whatever
those callbacks raise, so a KeyboardInterrupt raised there is printed and lost: the build
finishes and the plan is written. Inside :func:`deferred_interrupts` the signals are only
recorded; the code running asks :attr:`Deferred.pending` to stop early (TensorRT's progress
monitor cancels the build), and the interrupt is raised once the native call has returned,
so the usual clean-up runs and the process exits 130 / 143 with nothing half-written.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from core.errors import Terminated

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Deferred:
    """The signal that arrived meanwhile, if any."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def pending(self) -> bool:
        return self.signal is not None

    def interrupt(self) -> KeyboardInterrupt:
        return Terminated() if self.signal == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Deferred]:
    """Record SIGINT/SIGTERM instead of raising them; raise the recorded one on leaving (an
    exception the body raised because it was stopped early gives way to it)."""
    state = Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield state  # signals reach the main thread only
        return

    def record(signum: int, frame: Any) -> None:
        state.signal = signum

    previous = {number: signal.signal(number, record) for number in _SIGNALS}
    try:
        yield state
    except BaseException:
        if not state.pending:
            raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if state.pending:
        raise state.interrupt()
