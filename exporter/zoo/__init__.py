"""The Paddle model zoo: PaddleClas-compatible networks built from a :class:`ModelSpec`.

``build_model(spec)`` returns a fresh ``paddle.nn.Layer`` in eval mode whose state_dict keys,
shapes and numerics match PaddleClas 2.6.0, so PaddleClas ``*_pretrained.pdparams`` files load
into it unchanged. Unlike PaddleClas, no parameter has a global name: build as often as you like.
Paddle is imported only when a model is built.

Besides ``forward``, every model names its ``stages()`` (the spread check of synthetic weights
hooks their outputs) and ``residual_norms()`` (which exporter.weights scales down); ResNeXt's
``pieces()`` are where exporter.large cuts a model too big for one ONNX protobuf.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paddle import nn

    from exporter.specs import ModelSpec

# spec.arch -> (module, class); the class takes spec.builder_kwargs plus the sizes below
ARCHITECTURES = {
    "efficientnet": ("exporter.zoo.efficientnet", "EfficientNet"),
    "resnext101_wsl": ("exporter.zoo.resnext_wsl", "ResNeXt101WSL"),
}
_TAKES_INPUT_SIZE = {"efficientnet"}  # its SAME padding depends on the input size


def build_model(spec: ModelSpec) -> nn.Layer:
    """A fresh model for ``spec`` with Paddle's default initialisation, in eval mode.

    Expects [N, 3, crop, crop] float32 and returns [N, num_classes] logits. Pair it with
    ``exporter.weights.load_model`` for usable (checkpoint or calibrated synthetic) weights.
    """
    module_name, class_name = ARCHITECTURES[spec.arch]
    kwargs = dict(spec.builder_kwargs, num_classes=spec.num_classes)
    if spec.arch in _TAKES_INPUT_SIZE:
        kwargs["input_size"] = spec.crop_size
    model = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    model.eval()
    return model
