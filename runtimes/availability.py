"""Which runners can run here, and why not: checked from files and the CUDA driver, not imports
(``probe`` says how). Each reason is one line that says what to install or what is missing.
"""

from __future__ import annotations

from typing import Any, Callable

from runtimes.probe import cpu_name, find_library, gpus, has_files, spec_dirs
from runtimes.probe import version as _version
from runtimes.trt_backends import BACKENDS, TENSORRT, TENSORRT_RTX

RUNNER_KINDS = ("paddle", "onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt")

DESCRIPTIONS = {
    "paddle": "Paddle Inference on the exported Paddle program (CPU oneDNN; GPU + Paddle-TRT)",
    "onnxruntime": "ONNX Runtime, CPU execution provider",
    "onnxruntime-cuda": "ONNX Runtime, CUDA execution provider (I/O binding, CUDA graphs)",
    "onnxruntime-trt": "ONNX Runtime, TensorRT execution provider",
    "tensorrt": "TensorRT engine (a full TensorRT or TensorRT-RTX plan, run by the backend that built it)",
}

INSTALL_ORT_GPU = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
INSTALL_TRT = TENSORRT.install


def _gpu_reason() -> str | None:
    found, reason = gpus()
    return None if found else reason


# -- one check per runner: None when available, else the reason --------------------------
def _check_paddle() -> str | None:
    dirs = spec_dirs("paddle")
    if not dirs:
        return "Paddle is not installed: pip install 'paddlepaddle>=3.3,<3.4' (or paddlepaddle-gpu)"
    if not any((d / "inference").is_dir() for d in dirs):
        return f"the installed paddle ({dirs[0]}) has no paddle.inference: reinstall paddlepaddle"
    return None


def _check_onnxruntime() -> str | None:
    if not spec_dirs("onnxruntime"):
        return "ONNX Runtime is not installed: pip install onnxruntime"
    return None


def _ort_provider_library(provider: str) -> bool:
    capi = [d / "capi" for d in spec_dirs("onnxruntime")]
    return has_files(capi, f"libonnxruntime_providers_{provider}.so",
                      f"onnxruntime_providers_{provider}.dll")


def _check_onnxruntime_cuda() -> str | None:
    if reason := _check_onnxruntime():
        return f"{reason}-gpu"
    if not _ort_provider_library("cuda"):
        return ("the installed onnxruntime is the CPU-only build (no CUDA execution provider): "
                + INSTALL_ORT_GPU)
    if reason := _gpu_reason():
        return reason
    import onnxruntime  # only reached on a machine with a GPU and a GPU build's files

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return ("onnxruntime does not list CUDAExecutionProvider (two builds installed over each "
                "other?): " + INSTALL_ORT_GPU)
    return None


def _check_onnxruntime_trt() -> str | None:
    if reason := _check_onnxruntime_cuda():
        return reason
    if not _ort_provider_library("tensorrt"):
        return "this onnxruntime build has no TensorRT execution provider: " + INSTALL_ORT_GPU
    if find_library("nvinfer", ("tensorrt_libs", "tensorrt")) is None:
        return "the TensorRT libraries (libnvinfer) are not installed: " + INSTALL_TRT
    return None


def _check_tensorrt() -> str | None:
    """A plan runs with the backend that built it: full TensorRT on the GPU model it was built
    on, TensorRT-RTX on the RTX-class GPUs it targets; either needs a GPU."""
    found, _ = gpus()
    gpu = found[0] if found else None
    installed = [b for b in BACKENDS.values() if b.installed_reason() is None]
    if not installed:
        return f"neither TensorRT nor TensorRT-RTX is installed: {TENSORRT.install}, or {TENSORRT_RTX.install}"
    reasons = [f"{b.title}: {reason}" for b in installed if (reason := b.run_reason(gpu))]
    if len(reasons) < len(installed):
        return None
    builds = [b.title for b in installed if b.build_reason() is None]
    return "; ".join(reasons) + (f" (engines still build here with {builds[0]}: crossrt "
                                 "build-engine)" if builds else "")


_CHECKS: dict[str, Callable[[], str | None]] = {
    "paddle": _check_paddle, "onnxruntime": _check_onnxruntime,
    "onnxruntime-cuda": _check_onnxruntime_cuda, "onnxruntime-trt": _check_onnxruntime_trt,
    "tensorrt": _check_tensorrt,
}

_VERSIONS = {
    "paddle": ("paddlepaddle", "paddlepaddle-gpu"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnxruntime-cuda": ("onnxruntime-gpu", "onnxruntime"),
    "onnxruntime-trt": ("onnxruntime-gpu", "onnxruntime"),
    "tensorrt": TENSORRT.distributions + TENSORRT_RTX.distributions,
}


def check_kind(kind: str) -> str:
    """The kind, validated: an unknown name is a UsageError that lists the known ones."""
    if kind not in _CHECKS:
        from exporter.errors import UsageError

        raise UsageError(f"unknown runtime {kind!r}; choose one of: {', '.join(RUNNER_KINDS)}")
    return kind


def is_available(kind: str) -> tuple[bool, str]:
    """(True, what will run) or (False, one line saying what to install or what is missing)."""
    reason = _CHECKS[check_kind(kind)]()
    if reason:
        return False, reason
    version = _version(*_VERSIONS[kind])
    return True, f"{kind} {version or '(version unknown)'}" + _device_note(kind)


def _device_note(kind: str) -> str:
    if kind == "paddle":
        return " (GPU build)" if _version("paddlepaddle-gpu") else " (CPU build)"
    if kind == "onnxruntime":
        return f" on CPU ({cpu_name()})"
    found, _ = gpus()
    return f" on {found[0]['name']} (sm {found[0]['compute_capability']})" if found else ""


def availability() -> list[dict[str, Any]]:
    """Every runner with available/unavailable and why, in RUNNER_KINDS order (JSON-able)."""
    rows = []
    for kind in RUNNER_KINDS:
        ok, reason = is_available(kind)
        rows.append({"kind": kind, "available": ok, "reason": reason,
                     "description": DESCRIPTIONS[kind]})
        if kind == "tensorrt":  # which plans this machine can build, and which it can run
            from runtimes.trt_backends import describe_backends

            rows[-1]["backends"] = describe_backends()
    return rows
