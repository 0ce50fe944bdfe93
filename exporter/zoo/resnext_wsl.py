"""The ResNeXt101_wsl family: 32x8d, 32x16d, 32x32d, 32x48d and Fix 32x48d, as in PaddleClas.

One :class:`~exporter.family.ModelSpec` per model with PaddleClas's published figures (its
page on EfficientNet and ResNeXt101_wsl, in its row order), and how to build one. The network
itself is ``exporter.zoo.resnext_wsl_network`` (it imports paddle, so it is imported only when
a model is built). This module satisfies :class:`~exporter.family.ModelFamily`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

from core.labels import IMAGENET_1K
from core.spec import ModelSpec, Published
from exporter.family import DYGRAPH, CountingRule

if TYPE_CHECKING:
    from paddle import nn

FAMILY = "ResNeXt101_wsl"
PADDLECLAS_MODULE = "resnext101_wsl"
COUNTING_RULES: Mapping[str, CountingRule] = {}  # exporter.counting's rules cover every op
# ppcls/arch/backbone/model_zoo/resnext101_wsl.py's MODEL_URLS, verbatim ("32x16_wsl" is
# PaddleClas's spelling); Fix_ResNeXt's is on PaddleClas's model-zoo page (its code has none)
MODEL_URLS: Mapping[str, str] = {
    "ResNeXt101_32x8d_wsl": DYGRAPH + "ResNeXt101_32x8d_wsl_pretrained.pdparams",
    "ResNeXt101_32x16d_wsl": DYGRAPH + "ResNeXt101_32x16_wsl_pretrained.pdparams",
    "ResNeXt101_32x32d_wsl": DYGRAPH + "ResNeXt101_32x32d_wsl_pretrained.pdparams",
    "ResNeXt101_32x48d_wsl": DYGRAPH + "ResNeXt101_32x48d_wsl_pretrained.pdparams",
    "Fix_ResNeXt101_32x48d_wsl": DYGRAPH + "Fix_ResNeXt101_32x48d_wsl_pretrained.pdparams",
}
# float32 rounding between Paddle and ONNX Runtime, times max(1, max|logit|): grows with
# width and depth (ResNeXt101_32x8d measures 5e-4)
EXPORT_TOLERANCE = 1e-3


def build(spec: ModelSpec) -> nn.Layer:
    """A fresh network for ``spec``; fully convolutional, so any input size serves."""
    from exporter.zoo.resnext_wsl_network import ResNeXt101WSL

    return ResNeXt101WSL(**spec.builder_kwargs,  # type: ignore[arg-type]
                         num_classes=spec.num_classes)


def short_name(model: str) -> str:
    """ResNeXt101_32x8d_wsl -> 32x8d, as PaddleClas's figure labels it."""
    return model.replace("ResNeXt101_", "").replace("_wsl", "")


_model = functools.partial(ModelSpec, family=FAMILY, export_tolerance=EXPORT_TOLERANCE,
                           label_set=IMAGENET_1K)

MODELS: tuple[ModelSpec, ...] = (
    _model(name="ResNeXt101_32x8d_wsl", builder_args=(("width", 8),),
           crop_size=224, resize_short=256,
           published=Published(
               top1=0.826, top5=0.967, ref_top1=0.822, ref_top5=0.964,
               flops_g=29.140, params_m=78.440,
               v100_fp32_ms=(13.55, 23.39, 36.18),
               t4_fp16_ms=(18.19374, 21.93529, 34.67802),
               t4_fp32_ms=(18.52528, 34.25319, 67.2283))),
    _model(name="ResNeXt101_32x16d_wsl", builder_args=(("width", 16),),
           crop_size=224, resize_short=256,
           published=Published(
               top1=0.842, top5=0.973, ref_top1=0.842, ref_top5=0.972,
               flops_g=57.550, params_m=152.660,
               v100_fp32_ms=(21.96, 38.35, 63.29),
               t4_fp16_ms=(18.52609, 36.8288, 62.79947),
               t4_fp32_ms=(25.60395, 71.88384, 137.62327))),
    _model(name="ResNeXt101_32x32d_wsl", builder_args=(("width", 32),),
           crop_size=224, resize_short=256,
           published=Published(
               top1=0.850, top5=0.976, ref_top1=0.851, ref_top5=0.975,
               flops_g=115.170, params_m=303.110,
               v100_fp32_ms=(37.28, 76.50, 121.56),
               t4_fp16_ms=(33.51391, 70.09682, 125.81884),
               t4_fp32_ms=(54.87396, 160.04337, 316.17718))),
    _model(name="ResNeXt101_32x48d_wsl", builder_args=(("width", 48),),
           crop_size=224, resize_short=256,
           published=Published(
               top1=0.854, top5=0.977, ref_top1=0.854, ref_top5=0.976,
               flops_g=173.580, params_m=456.200,
               v100_fp32_ms=(55.07, 124.39, 205.01),
               t4_fp16_ms=(50.97681, 137.60926, 190.82628),
               t4_fp32_ms=(99.01698256, 315.91261, 551.83695))),
    # the 32x48d network served at 320x320: its FLOPs cell is counted at that size
    _model(name="Fix_ResNeXt101_32x48d_wsl", builder_args=(("width", 48),),
           crop_size=320, resize_short=320,
           published=Published(
               top1=0.863, top5=0.980, ref_top1=0.864, ref_top5=0.980,
               flops_g=354.230, params_m=456.200,
               v100_fp32_ms=(55.01, 122.63, 204.66),
               t4_fp16_ms=(78.62869, 191.76039, 317.15436),
               t4_fp32_ms=(160.0838242, 595.99296, 1151.47384))),
)
