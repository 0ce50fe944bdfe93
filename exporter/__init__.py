"""crossrt's exporter: the model registry, the Paddle model zoo, and Paddle -> ONNX export.

Importing this package is light: paddle, onnx and onnxsim are imported by the functions
that need them, so ``import exporter`` works on a machine with only the ONNX side installed.
"""

from exporter.specs import DEFAULT_MODEL, SPECS, get_spec

__all__ = ["DEFAULT_MODEL", "SPECS", "get_spec"]
