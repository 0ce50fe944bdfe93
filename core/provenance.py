"""Where results came from: tool versions and hashes of files and arrays. Light imports only."""

from __future__ import annotations

import contextlib
import hashlib
from importlib import metadata
from pathlib import Path
from typing import Any

# crossrt and the conversion toolchain; each runtime and TensorRT backend declares its own pip
# names (runtimes.tool_versions gathers them all).
TOOLCHAIN = ("crossrt", "paddle2onnx", "onnx", "onnxsim", "polygraphy", "numpy",
             "opencv-python-headless")


def installed_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the given distributions (absent ones are left out), no imports."""
    versions = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_array(array: Any) -> str:
    """Hash of an array's dtype, shape and bytes: names a preprocessed input tensor exactly."""
    import numpy as np

    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
