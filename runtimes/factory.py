"""``create_runner(kind, target, **options)``: from a runtime name and a path to a ready runner.

A target is a model file or an export directory written by ``crossrt export-onnx``
(``model.onnx``, ``model.fp16.onnx``, ``paddle/inference.json`` + ``.pdiparams``, and the
engines ``build-engine`` writes beside them); this module picks the right file.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from exporter.errors import DependencyError, UsageError
from runtimes.availability import check_kind, is_available
from runtimes.base import Runner

# Names inside an export directory (the exporter writes the first three, build-engine the rest).
ONNX_FILE = "model.onnx"
ONNX_FP16_FILE = "model.fp16.onnx"
PADDLE_DIR = "paddle"
ENGINE_FILE = "model.engine"
ENGINE_FP16_FILE = "model.fp16.engine"
PADDLE_PROGRAM_SUFFIXES = (".json", ".pdmodel")  # PIR program, legacy ProgramDesc

_CLASSES = {
    "paddle": ("runtimes.paddle_inference", "PaddleRunner"),
    "onnxruntime": ("runtimes.onnxrt", "OnnxRuntimeRunner"),
    "onnxruntime-cuda": ("runtimes.onnxrt", "OnnxRuntimeCudaRunner"),
    "onnxruntime-trt": ("runtimes.onnxrt", "OnnxRuntimeTrtRunner"),
    "tensorrt": ("runtimes.tensorrt_runner", "TensorRTRunner"),
}


def runner_class(kind: str) -> type[Runner]:
    module, name = _CLASSES[check_kind(kind)]
    return getattr(importlib.import_module(module), name)


def create_runner(kind: str, target: str | Path, **options: Any) -> Runner:
    """A runner of ``kind`` (one of RUNNER_KINDS) for ``target``; activate it with ``with``.

    Options are the runner class's ``defaults`` (e.g. ``threads``, ``fp16``, ``cuda_graph``).
    Raises DependencyError (one line, what to install) when the runtime is not available here.
    """
    check_kind(kind)
    available, reason = is_available(kind)
    if not available:
        raise DependencyError(f"runtime {kind} is not available: {reason}")
    path = resolve_target(kind, target, fp16=bool(options.get("fp16")))
    if kind == "paddle" and "output_names" not in options and (Path(target) / ONNX_FILE).is_file():
        # The exporter renames the ONNX outputs after the spec; Paddle keeps its own names.
        # Same names on both sides let outputs be compared by name (Polygraphy's Comparator).
        options["output_names"] = onnx_output_names(Path(target) / ONNX_FILE)
    return runner_class(kind)(path, **options)


def onnx_output_names(path: Path) -> list[str]:
    import onnx

    return [output.name for output in onnx.load(str(path), load_external_data=False).graph.output]


def resolve_target(kind: str, target: str | Path, fp16: bool = False) -> Path:
    """The file a runner of ``kind`` loads from ``target`` (a file or an export directory)."""
    path = Path(target)
    if kind == "paddle":
        return paddle_program(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist: give a model file or an export directory")
    if path.is_dir():
        if kind == "tensorrt":
            name = ENGINE_FP16_FILE if fp16 else ENGINE_FILE
            hint = f"build it with crossrt build-engine --onnx {path / ONNX_FILE} --saveEngine {path / name}"
        else:  # the TensorRT EP builds FP16 itself from the FP32 graph (trt_fp16_enable)
            name = ONNX_FP16_FILE if fp16 and kind != "onnxruntime-trt" else ONNX_FILE
            hint = "export it with crossrt export-onnx MODEL" + (" --fp16" if fp16 else "")
        path = path / name
        if not path.is_file():
            raise UsageError(f"{path} is missing: {hint}")
    return path


def paddle_program(target: Path) -> Path:
    """The Paddle inference program for an export dir, a program dir, a prefix or a file.

    Accepts ``DIR`` (with ``paddle/`` inside or the program itself), ``DIR/inference``
    (a prefix), or ``inference.json`` / ``inference.pdmodel``; its ``.pdiparams`` must exist.
    """
    candidates: list[Path]
    if target.is_dir():
        folders = [target / PADDLE_DIR, target]
        candidates = [f / f"inference{s}" for f in folders for s in PADDLE_PROGRAM_SUFFIXES]
        candidates += [p for f in folders if f.is_dir() for s in PADDLE_PROGRAM_SUFFIXES
                       for p in sorted(f.glob(f"*{s}")) if p.with_suffix(".pdiparams").is_file()]
    elif target.suffix in PADDLE_PROGRAM_SUFFIXES:
        candidates = [target]
    else:
        candidates = [Path(f"{target}{s}") for s in PADDLE_PROGRAM_SUFFIXES]
    program = next((p for p in candidates if p.is_file()), None)
    if program is None:
        raise UsageError(f"no Paddle inference program at {target}: expected inference.json or "
                         "inference.pdmodel (with inference.pdiparams) there or in paddle/")
    if not program.with_suffix(".pdiparams").is_file():
        raise UsageError(f"{program.with_suffix('.pdiparams')} is missing: a Paddle program "
                         "needs its weights file beside it")
    return program
