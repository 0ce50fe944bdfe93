"""Build the environment a real Triton server runs in for crossrt's serving tests and benchmark.

PyPI's ``nvidia-pytriton`` ships a real ``tritonserver`` (2.51) with its Python backend; its
backend stub runs models with the numpy of the environment it is started from, and needs
numpy<2 (numpy 2 returns empty tensors there), while crossrt's own environment runs numpy 2.
So the server gets a virtual environment of its own, with what the Python-backend models crossrt
writes import (numpy, OpenCV, Pillow, ONNX Runtime):

    python scripts/triton_env.py [DIR]        # default .triton-env beside this project

It installs (pip, from PyPI) once; tests and benchmarks find it there (``CROSSRT_TRITON_ENV``
names another) and skip with this command when it is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / ".triton-env"
PACKAGES = ("nvidia-pytriton==0.7.0", "numpy>=1.24,<2", "opencv-python-headless>=4.8,<4.12",
            "pillow>=10", "onnxruntime>=1.17")


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not (target / "bin" / "python").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *PACKAGES], check=True)
    print(f"triton environment ready: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
