"""What this machine has, found without importing the heavy packages: files, libraries, GPUs.

Look-alikes this must not be fooled by: ``tensorrt-stubs`` installs a ``tensorrt/`` folder of
``.pyi`` files that ``find_spec`` finds and ``import`` accepts; the CPU ``onnxruntime`` wheel
has no CUDA provider library; a GPU wheel on a machine without a driver or with
``CUDA_VISIBLE_DEVICES=""`` sees no GPU. So: look for the compiled modules and shared
libraries themselves, and ask the CUDA driver (through ctypes, no CUDA toolkit needed) how
many devices it sees.
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
from typing import Any


def spec_dirs(module: str) -> list[Path]:
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


def has_files(dirs: list[Path], *patterns: str) -> bool:
    return any(next(d.glob(p), None) is not None for d in dirs for p in patterns)


def version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def gpus() -> tuple[tuple[dict[str, Any], ...], str]:
    """Visible NVIDIA GPUs from the CUDA driver API, and a reason when there are none.

    Honours CUDA_VISIBLE_DEVICES like every CUDA program. Each GPU: index, name,
    compute_capability ("9.0"), driver (CUDA driver API version, "12.8"), memory_mib and
    max_sm_clock_mhz (what a latency figure depends on).
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return (), ("no GPU is visible "
                    f"(CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r})")
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
        clock, memory = ctypes.c_int(0), ctypes.c_size_t(0)
        cuda.cuDeviceGetAttribute(ctypes.byref(clock), 13, device)  # CLOCK_RATE (peak, kHz)
        cuda.cuDeviceTotalMem_v2(ctypes.byref(memory), device)
        found.append({"index": index, "name": name.value.decode(errors="replace"),
                      "compute_capability": f"{major.value}.{minor.value}",
                      "driver": f"{version.value // 1000}.{version.value % 1000 // 10}",
                      "memory_mib": memory.value >> 20, "max_sm_clock_mhz": clock.value // 1000})
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


def find_library(stem: str, packages: tuple[str, ...]) -> Path | None:
    """A shared library ``lib{stem}.so*`` shipped in a pip package or on the loader path."""
    dirs = [d for package in packages for d in spec_dirs(package)]
    dirs += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    dirs += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"),
             Path("/usr/local/tensorrt/lib")]
    for folder in dirs:
        hit = next(iter(sorted(folder.glob(f"lib{stem}.so*"))), None) if folder.is_dir() else None
        if hit is not None:
            return hit
    found = ctypes.util.find_library(stem)  # the ldconfig cache
    return Path(found) if found else None
