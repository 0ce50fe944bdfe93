"""One exception hierarchy for the whole toolkit.

Every expected failure is a :class:`CrossrtError`: its message is one line that names the
problem and the fix, and its ``exit_code`` is what the CLI returns (2: bad input or missing
dependency, 1: the check itself failed, 3: a runtime fault on good input). The CLI prints
these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CrossrtError(Exception):
    exit_code = 2


class UsageError(CrossrtError):
    """Bad arguments or bad input files."""


class UnknownModelError(UsageError):
    """A model name that is not in the registry."""


class WeightsError(UsageError):
    """A checkpoint that cannot be loaded into the model."""


class DependencyError(CrossrtError):
    """A package, runtime or device that is needed but not present."""


class ExportError(CrossrtError):
    """paddle2onnx, the ONNX checker or the simplifier failed on a valid request."""

    exit_code = 1


class EngineBuildError(CrossrtError):
    """TensorRT could not build what was asked for (or built something else)."""

    exit_code = 1


class CheckFailed(CrossrtError):
    """A numerical check ran and did not pass (export verification, validation)."""

    exit_code = 1


class RuntimeFault(CrossrtError):
    """A runtime failed on good input: a session that cannot load a valid graph, a CUDA-graph
    capture that fails, TensorRT's execute_async_v3 returning false, memory exhausted."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where it arrives so that clean-up runs as it does for Ctrl-C."""


def first_line(error: BaseException, *, named: bool = False, limit: int = 200) -> str:
    """An exception's first non-blank line, at most ``limit`` characters (libraries such as
    Paddle put a blank line or a hint first, and their messages run to pages); its type's name
    when it has no message. ``named`` puts the type's name in front: ``ValueError: ...``."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0][:limit] if lines else ""
    if named or not text:
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text
