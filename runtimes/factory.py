"""``create_runner(kind, target, **options)``: from a runtime name and a path to a ready runner.

A target is a model file or an export directory written by ``crossrt export-onnx``
(its layout is :class:`core.layout.ExportDir`'s); this module picks the right file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import DependencyError
from core.layout import ExportDir
from runtimes.availability import check_kind, is_available, runner_classes
from runtimes.base import Runner


def runner_class(kind: str) -> type[Runner]:
    return runner_classes()[check_kind(kind)]


def require_available(kind: str,
                      available: Callable[[str], tuple[bool, str]] | None = None) -> str:
    """``kind``, known and available here; else a UsageError (unknown) or a DependencyError
    (what to install). Callers check this before any work starts."""
    ok, reason = (available or is_available)(check_kind(kind))
    if not ok:
        raise DependencyError(f"runtime {kind} is not available: {reason}")
    return kind


def create_runner(kind: str, target: str | Path, **options: Any) -> Runner:
    """A runner of ``kind`` (one of RUNNER_KINDS) for ``target``; activate it with ``with``.

    Options are the runner class's ``defaults`` (e.g. ``threads``, ``fp16``, ``cuda_graph``).
    Raises DependencyError (one line, what to install) when the runtime is not available here.
    """
    require_available(kind)
    runner = runner_class(kind)
    path = resolve_target(kind, target, fp16=bool(options.get("fp16")))
    return runner(path, **{**runner.export_options(ExportDir(target)), **options})


def resolve_target(kind: str, target: str | Path, fp16: bool = False) -> Path:
    """The file a runner of ``kind`` loads from ``target`` (a file or an export directory)."""
    return runner_class(kind).target_file(Path(target), fp16)

