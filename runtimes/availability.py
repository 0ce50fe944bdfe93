"""The runtimes crossrt drives, one line each, and which of them run here (and why not).

Each runner class declares everything about itself (``runtimes.base.Runner``): its kind,
description, availability check (from files and the CUDA driver, never by importing the
runtime), the pip names that carry its version, and which file of an export it loads. Adding
a runtime is one new module with its runner and one line in ``RUNNERS``.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import OutputKind, json_document
from runtimes.probe import cpu_name, gpus, version  # noqa: F401 - importable from here too

if TYPE_CHECKING:
    from runtimes.base import Runner

# module:class of every runner, in the order crossrt lists them
RUNNERS = (
    "runtimes.paddle_inference:PaddleRunner",
    "runtimes.onnxrt:OnnxRuntimeRunner",
    "runtimes.onnxrt:OnnxRuntimeCudaRunner",
    "runtimes.onnxrt:OnnxRuntimeTrtRunner",
    "runtimes.tensorrt_runner:TensorRTRunner",
)


@functools.cache
def runner_classes() -> dict[str, type[Runner]]:
    """Kind -> runner class (importing a runner module imports no runtime)."""
    classes = {}
    for entry in RUNNERS:
        module, name = entry.split(":")
        runner: type[Runner] = getattr(importlib.import_module(module), name)
        classes[runner.kind] = runner
    return classes


RUNNER_KINDS = tuple(runner_classes())


def check_kind(kind: str) -> str:
    """The kind, validated: an unknown name is a UsageError that lists the known ones."""
    if kind not in runner_classes():
        from core.errors import UsageError

        raise UsageError(f"unknown runtime {kind!r}; choose one of: {', '.join(runner_classes())}")
    return kind


def is_available(kind: str) -> tuple[bool, str]:
    """(True, what will run) or (False, one line saying what to install or what is missing)."""
    runner = runner_classes()[check_kind(kind)]
    reason = runner.unavailable_reason()
    if reason:
        return False, reason
    found = version(*runner.distributions)
    return True, f"{kind} {found or '(version unknown)'}" + runner.device_note()


def preferred(rank: str) -> list[str]:
    """The kinds that declare ``rank`` (``reference_rank``, ``timing_rank``), preferred first."""
    ranked = [(getattr(runner, rank), kind) for kind, runner in runner_classes().items()
              if getattr(runner, rank) is not None]
    return [kind for _, kind in sorted(ranked)]


def graph_runner() -> str:
    """The runtime that runs an ONNX graph as written, on the CPU in FP32 (ONNX Runtime CPU):
    the exporter's check and localisation's reference."""
    return next(kind for kind, runner in runner_classes().items() if runner.runs_graph_as_written)


def tool_versions() -> dict[str, str]:
    """Installed versions of crossrt's toolchain, of every runtime and of every TensorRT
    backend, as each declares its pip names (absent ones are left out)."""
    from core.provenance import TOOLCHAIN, installed_versions
    from runtimes.trt_backends import BACKENDS

    names = [*TOOLCHAIN, *(name for runner in runner_classes().values()
                           for name in runner.distributions),
             *(name for backend in BACKENDS.values() for name in backend.distributions)]
    return installed_versions(tuple(dict.fromkeys(names)))


def _is_availability_json(path: Path) -> bool:
    rows = json_document(path)
    return isinstance(rows, list) and all(isinstance(r, dict) and "available" in r for r in rows)


AVAILABILITY_JSON = OutputKind("runtimes table", _is_availability_json)


def availability() -> list[dict[str, Any]]:
    """Every runner with available/unavailable and why, in RUNNERS order (JSON-able)."""
    rows = []
    for kind, runner in runner_classes().items():
        ok, reason = is_available(kind)
        rows.append({"kind": kind, "available": ok, "reason": reason,
                     "description": runner.description, **runner.details()})
    return rows
