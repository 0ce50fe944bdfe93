"""The EfficientNet family: B0..B7 and B0_small, as PaddleClas publishes them.

One :class:`~exporter.family.ModelSpec` per model with PaddleClas's published figures (its
page on EfficientNet and ResNeXt101_wsl, in its row order; None where it prints "-"), and how
to build one. The network itself is ``exporter.zoo.efficientnet_network`` (it imports paddle,
so it is imported only when a model is built). This module satisfies
:class:`~exporter.family.ModelFamily`.
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

FAMILY = "EfficientNet"
PADDLECLAS_MODULE = "efficientnet"
COUNTING_RULES: Mapping[str, CountingRule] = {}  # exporter.counting's rules cover every op
# ppcls/arch/backbone/model_zoo/efficientnet.py's MODEL_URLS, verbatim
MODEL_URLS: Mapping[str, str] = {
    "EfficientNetB0_small": DYGRAPH + "EfficientNetB0_small_pretrained.pdparams",
    "EfficientNetB0": DYGRAPH + "EfficientNetB0_pretrained.pdparams",
    "EfficientNetB1": DYGRAPH + "EfficientNetB1_pretrained.pdparams",
    "EfficientNetB2": DYGRAPH + "EfficientNetB2_pretrained.pdparams",
    "EfficientNetB3": DYGRAPH + "EfficientNetB3_pretrained.pdparams",
    "EfficientNetB4": DYGRAPH + "EfficientNetB4_pretrained.pdparams",
    "EfficientNetB5": DYGRAPH + "EfficientNetB5_pretrained.pdparams",
    "EfficientNetB6": DYGRAPH + "EfficientNetB6_pretrained.pdparams",
    "EfficientNetB7": DYGRAPH + "EfficientNetB7_pretrained.pdparams",
}
# float32 rounding between Paddle and ONNX Runtime, times max(1, max|logit|): B7 measures 4e-5
EXPORT_TOLERANCE = 1e-4


def build(spec: ModelSpec) -> nn.Layer:
    """A fresh network for ``spec``; its SAME padding depends on the input size."""
    from exporter.zoo.efficientnet_network import EfficientNet

    return EfficientNet(**spec.builder_kwargs, input_size=spec.crop_size,  # type: ignore[arg-type]
                        num_classes=spec.num_classes)


def short_name(model: str) -> str:
    """EfficientNetB0 -> B0, as PaddleClas's figure labels it."""
    return model.replace("EfficientNet", "")


_model = functools.partial(ModelSpec, family=FAMILY, export_tolerance=EXPORT_TOLERANCE,
                           label_set=IMAGENET_1K)

MODELS: tuple[ModelSpec, ...] = (
    _model(name="EfficientNetB0", builder_args=(("variant", "b0"),),
           crop_size=224, resize_short=256,
           published=Published(
               top1=0.774, top5=0.933, ref_top1=0.773, ref_top5=0.935,
               flops_g=0.720, params_m=5.100,
               v100_fp32_ms=(1.96, 3.71, 5.56),
               t4_fp16_ms=(3.40122, 5.95851, 9.10801),
               t4_fp32_ms=(3.442, 6.11476, 9.3304))),
    _model(name="EfficientNetB1", builder_args=(("variant", "b1"),),
           crop_size=240, resize_short=272,
           published=Published(
               top1=0.792, top5=0.944, ref_top1=0.792, ref_top5=0.945,
               flops_g=1.270, params_m=7.520,
               v100_fp32_ms=(2.88, 5.40, 7.63),
               t4_fp16_ms=(5.25172, 9.10233, 14.11319),
               t4_fp32_ms=(5.3322, 9.41795, 14.60388))),
    _model(name="EfficientNetB2", builder_args=(("variant", "b2"),),
           crop_size=260, resize_short=292,
           published=Published(
               top1=0.799, top5=0.947, ref_top1=0.803, ref_top5=0.950,
               flops_g=1.850, params_m=8.810,
               v100_fp32_ms=(3.26, 6.20, 9.17),
               t4_fp16_ms=(5.91052, 10.5898, 17.38106),
               t4_fp32_ms=(6.29351, 10.95702, 17.75308))),
    _model(name="EfficientNetB3", builder_args=(("variant", "b3"),),
           crop_size=300, resize_short=332,
           published=Published(
               top1=0.812, top5=0.954, ref_top1=0.817, ref_top5=0.956,
               flops_g=3.430, params_m=11.840,
               v100_fp32_ms=(4.52, 8.85, 13.54),
               t4_fp16_ms=(7.69582, 16.02548, 27.4447),
               t4_fp32_ms=(7.67749, 16.53288, 28.5939))),
    _model(name="EfficientNetB4", builder_args=(("variant", "b4"),),
           crop_size=380, resize_short=412,
           published=Published(
               top1=0.829, top5=0.962, ref_top1=0.830, ref_top5=0.963,
               flops_g=8.290, params_m=18.760,
               v100_fp32_ms=(6.78, 15.47, 24.95),
               t4_fp16_ms=(11.55585, 29.44261, 53.97363),
               t4_fp32_ms=(12.15894, 30.94567, 57.38511))),
    _model(name="EfficientNetB5", builder_args=(("variant", "b5"),),
           crop_size=456, resize_short=488,
           published=Published(
               top1=0.836, top5=0.967, ref_top1=0.837, ref_top5=0.967,
               flops_g=19.510, params_m=29.610,
               v100_fp32_ms=(10.97, 27.24, 45.93),
               t4_fp16_ms=(19.63083, 56.52299, None),
               t4_fp32_ms=(20.48571, 61.60252, None))),
    _model(name="EfficientNetB6", builder_args=(("variant", "b6"),),
           crop_size=528, resize_short=560,
           published=Published(
               top1=0.840, top5=0.969, ref_top1=0.842, ref_top5=0.968,
               flops_g=36.270, params_m=42.000,
               v100_fp32_ms=(17.09, 43.32, 76.90),
               t4_fp16_ms=(30.05911, None, None),
               t4_fp32_ms=(32.62402, None, None))),
    _model(name="EfficientNetB7", builder_args=(("variant", "b7"),),
           crop_size=600, resize_short=632,
           published=Published(
               top1=0.843, top5=0.969, ref_top1=0.844, ref_top5=0.971,
               flops_g=72.350, params_m=64.920,
               v100_fp32_ms=(25.91, 71.23, 128.20),
               t4_fp16_ms=(47.86087, None, None),
               t4_fp32_ms=(53.93823, None, None))),
    # B0_small's parameters cell (4.65M) is the plain trainable count, unlike every other row;
    # its FLOPs cell (0.72G) repeats EfficientNetB0's: without squeeze-excite B0_small itself
    # counts 0.714G, outside the rounding of 0.72.
    _model(name="EfficientNetB0_small", builder_args=(("variant", "b0_small"),),
           crop_size=224, resize_short=256,
           params_convention="trainable", flops_counted_as="EfficientNetB0",
           published=Published(
               top1=0.758, top5=0.926, ref_top1=None, ref_top5=None,
               flops_g=0.720, params_m=4.650,
               v100_fp32_ms=(1.24, 2.59, 3.92),
               t4_fp16_ms=(2.39166, 4.36748, 6.96002),
               t4_fp32_ms=(2.3076, 4.71886, 7.21888))),
)
