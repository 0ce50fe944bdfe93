"""crossrt's runtimes: one runner interface over Paddle Inference, ONNX Runtime and TensorRT.

``create_runner(kind, target, **options)`` gives a :class:`Runner` (a Polygraphy runner, so it
works with Polygraphy's ``Comparator``); ``availability()`` says which kinds run here and why
not. Importing this package needs neither paddle, onnxruntime, TensorRT nor a GPU: every
runtime is imported by the runner that uses it, when it is activated.

    >>> import runtimes
    >>> with runtimes.create_runner("onnxruntime", "artifacts/EfficientNetB0") as runner:
    ...     outputs = runner.infer({"x": batch})
"""

from runtimes.availability import (
    RUNNER_KINDS,
    availability,
    graph_runner,
    is_available,
    preferred,
    tool_versions,
)
from runtimes.base import InputSpec, Runner, check_feed
from runtimes.factory import create_runner, resolve_target

__all__ = ["RUNNER_KINDS", "InputSpec", "Runner", "availability", "check_feed",
           "create_runner", "graph_runner", "is_available", "preferred", "resolve_target",
           "tool_versions"]
