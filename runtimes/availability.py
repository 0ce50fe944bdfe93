"""Which runners can run here, and why not: checked from files and the CUDA driver, not imports.

Look-alikes this must not be fooled by (see the facts file): ``tensorrt-stubs`` installs a
``tensorrt/`` folder of ``.pyi`` files that ``find_spec`` finds and ``import`` accepts; the
CPU ``onnxruntime`` wheel has no CUDA provider library; a GPU wheel on a machine without a
driver or with ``CUDA_VISIBLE_DEVICES=""`` sees no GPU. So: look for the compiled modules and
shared libraries themselves, and ask the CUDA driver (through ctypes, no CUDA toolkit needed)
how many devices it sees. Each reason is one line that says what to install or what is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

RUNNER_KINDS = ("paddle", "onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt")

DESCRIPTIONS = {
    "paddle": "Paddle Inference on the exported Paddle program (CPU oneDNN; GPU + Paddle-TRT)",
    "onnxruntime": "ONNX Runtime, CPU execution provider",
    "onnxruntime-cuda": "ONNX Runtime, CUDA execution provider (I/O binding, CUDA graphs)",
    "onnxruntime-trt": "ONNX Runtime, TensorRT execution provider",
    "tensorrt": "TensorRT engine (serialized plan) via TensorRT's Python API",
}

INSTALL_ORT_GPU = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
INSTALL_TRT = "pip install 'crossrt[trt]' (TensorRT >= 10 with its libraries, e.g. tensorrt-cu12)"


def _spec_dirs(module: str) -> list[Path]:
    """The folders of an installed package, without importing it (hidden or broken: none)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    return [Path(spec.origin).parent] if spec.origin else []


def _has_files(dirs: list[Path], *patterns: str) -> bool:
    return any(next(d.glob(p), None) is not None for d in dirs for p in patterns)


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=None)
def gpus() -> tuple[tuple[dict[str, Any], ...], str]:
    """Visible NVIDIA GPUs from the CUDA driver API, and a reason when there are none.

    Honours CUDA_VISIBLE_DEVICES like every CUDA program. Each GPU: index, name,
    compute_capability ("9.0"), driver (CUDA driver API version, "12.8").
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return (), f"no GPU is visible (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r})"
    try:
        cuda = ctypes.CDLL("libcuda.so.1" if platform.system() != "Windows" else "nvcuda.dll")
    except OSError:
        return (), "no GPU is visible: the NVIDIA driver (libcuda) is not installed on this machine"
    count, version = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or not count.value:
        return (), "no GPU is visible: the NVIDIA driver is installed but reports no usable device"
    cuda.cuDriverGetVersion(ctypes.byref(version))
    found = []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGet(ctypes.byref(device), index)
        cuda.cuDeviceGetName(name, 256, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)  # COMPUTE_CAPABILITY_MAJOR
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)  # COMPUTE_CAPABILITY_MINOR
        found.append({"index": index, "name": name.value.decode(errors="replace"),
                      "compute_capability": f"{major.value}.{minor.value}",
                      "driver": f"{version.value // 1000}.{version.value % 1000 // 10}"})
    return tuple(found), ""


def cpu_name() -> str:
    """The CPU model (Linux /proc/cpuinfo; elsewhere platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_reason() -> str | None:
    found, reason = gpus()
    return None if found else reason


def _find_library(stem: str, packages: tuple[str, ...]) -> Path | None:
    """A shared library ``lib{stem}.so*`` shipped in a pip package or on the loader path."""
    dirs = [d for package in packages for d in _spec_dirs(package)]
    dirs += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    dirs += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
             Path("/usr/local/tensorrt/lib")]
    for folder in dirs:
        hit = next(iter(sorted(folder.glob(f"lib{stem}.so*"))), None) if folder.is_dir() else None
        if hit is not None:
            return hit
    found = ctypes.util.find_library(stem)  # the ldconfig cache
    return Path(found) if found else None


# -- one check per runner: None when available, else the reason --------------------------
def _check_paddle() -> str | None:
    dirs = _spec_dirs("paddle")
    if not dirs:
        return "Paddle is not installed: pip install 'paddlepaddle>=3.3,<3.4' (or paddlepaddle-gpu)"
    if not any((d / "inference").is_dir() for d in dirs):
        return f"the installed paddle ({dirs[0]}) has no paddle.inference: reinstall paddlepaddle"
    return None


def _check_onnxruntime() -> str | None:
    if not _spec_dirs("onnxruntime"):
        return "ONNX Runtime is not installed: pip install onnxruntime"
    return None


def _ort_provider_library(provider: str) -> bool:
    capi = [d / "capi" for d in _spec_dirs("onnxruntime")]
    return _has_files(capi, f"libonnxruntime_providers_{provider}.so",
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
    if _find_library("nvinfer", ("tensorrt_libs", "tensorrt")) is None:
        return "the TensorRT libraries (libnvinfer) are not installed: " + INSTALL_TRT
    return None


def _check_tensorrt() -> str | None:
    dirs = _spec_dirs("tensorrt")
    if not dirs:
        return "TensorRT is not installed: " + INSTALL_TRT
    compiled = ("tensorrt*.so", "tensorrt*.pyd", "*.cpython-*.so")
    if not _has_files(dirs + _spec_dirs("tensorrt_bindings"), *compiled):
        if _has_files(dirs, "*.pyi"):
            return (f"the 'tensorrt' found at {dirs[0]} is type stubs (tensorrt-stubs), not TensorRT: "
                    + INSTALL_TRT)
        return f"the 'tensorrt' found at {dirs[0]} has no compiled bindings: " + INSTALL_TRT
    if _find_library("nvinfer", ("tensorrt_libs", "tensorrt")) is None:
        return "TensorRT's Python bindings are installed but not its libraries (libnvinfer): " + INSTALL_TRT
    return _gpu_reason()


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
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu12-bindings",
                 "tensorrt-cu13-bindings"),
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
    return rows
