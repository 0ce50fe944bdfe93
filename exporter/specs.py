"""The model registry: every model crossrt knows, declared once, as data.

Everything downstream (preprocessing, export shapes, engine profiles, bench tables) resolves
sizes and reference figures from a :class:`ModelSpec`; no other module hard-codes a shape.
The published figures are PaddleClas's page on EfficientNet and ResNeXt101_wsl (the seed),
transcribed below in the seed's own row order; "-" marks a cell the seed leaves empty.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from exporter.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_SIZES = (1, 4, 8)  # the seed's latency columns


@dataclass(frozen=True)
class Published:
    """One model's figures as printed in the seed (None where the seed has no value)."""

    top1: float | None
    top5: float | None
    ref_top1: float | None
    ref_top5: float | None
    flops_g: float | None
    params_m: float | None
    v100_fp32_ms: tuple[float | None, ...]  # batch 1, 4, 8
    t4_fp16_ms: tuple[float | None, ...]
    t4_fp32_ms: tuple[float | None, ...]

    def latency(self, table: str, precision: str) -> tuple[float | None, ...]:
        """Published latencies (ms) at BATCH_SIZES for ``table`` in {t4, v100} and a precision."""
        cells = {("t4", "fp16"): self.t4_fp16_ms, ("t4", "fp32"): self.t4_fp32_ms,
                 ("v100", "fp32"): self.v100_fp32_ms}
        return cells.get((table, precision), (None,) * len(BATCH_SIZES))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "EfficientNet" or "ResNeXt101_wsl"
    arch: str  # builder key in exporter.zoo
    arch_args: tuple[tuple[str, object], ...]  # keyword arguments of the builder
    crop_size: int
    resize_short: int
    published: Published
    # How the seed counted this model's "Parameters" cell: "static-graph" is the old Paddle
    # static-graph statistics tool (see exporter.counting), "trainable" the plain count.
    params_convention: str = "static-graph"
    # The seed's FLOPs cell is the static-graph count of this network at its crop size
    # (Fix_ResNeXt101_32x48d_wsl's is counted at 320), except where it was counted on another
    # network: EfficientNetB0_small's 0.72G repeats EfficientNetB0's (without squeeze-excite
    # B0_small itself counts 0.714G, outside the rounding of 0.72).
    flops_counted_as: str | None = None
    interpolation: str = "linear"  # cv2 INTER_LINEAR in every PaddleClas eval config
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    channel_order: str = "RGB"
    input_name: str = "x"
    output_name: str = "logits"
    num_classes: int = 1000
    # Allowed Paddle-vs-ONNX Runtime error at export, times max(1, max|logit|): float32
    # rounding grows with depth and width (measured: B7 4e-5, ResNeXt101_32x8d 5e-4).
    export_tolerance: float = 1e-4

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Per-sample input shape (C, H, W); the batch dimension is dynamic."""
        return (3, self.crop_size, self.crop_size)

    @property
    def builder_kwargs(self) -> dict[str, object]:
        return dict(self.arch_args)

    def preprocessing(self) -> dict[str, object]:
        """The facts a deployment needs to feed this model, as plain JSON-able data."""
        return {"resize_short": self.resize_short, "interpolation": self.interpolation,
                "crop_size": self.crop_size, "scale": "1/255", "mean": list(self.mean),
                "std": list(self.std), "channel_order": self.channel_order, "layout": self.layout}


def _cell(text: str) -> float | None:
    return None if text == "-" else float(text)


# Columns: top1 top5 ref_top1 ref_top5 flops_g params_m | V100 FP32 bs1 bs4 bs8 |
# T4 FP16 bs1 bs4 bs8 | T4 FP32 bs1 bs4 bs8.  Crop and resize-short sizes are in _ARCH below.
_SEED_TABLE = """
ResNeXt101_32x8d_wsl      0.826 0.967 0.822 0.964  29.140  78.440 | 13.55 23.39 36.18  | 18.19374 21.93529 34.67802 | 18.52528 34.25319 67.2283
ResNeXt101_32x16d_wsl     0.842 0.973 0.842 0.972  57.550 152.660 | 21.96 38.35 63.29  | 18.52609 36.8288 62.79947  | 25.60395 71.88384 137.62327
ResNeXt101_32x32d_wsl     0.850 0.976 0.851 0.975 115.170 303.110 | 37.28 76.50 121.56 | 33.51391 70.09682 125.81884 | 54.87396 160.04337 316.17718
ResNeXt101_32x48d_wsl     0.854 0.977 0.854 0.976 173.580 456.200 | 55.07 124.39 205.01 | 50.97681 137.60926 190.82628 | 99.01698256 315.91261 551.83695
Fix_ResNeXt101_32x48d_wsl 0.863 0.980 0.864 0.980 354.230 456.200 | 55.01 122.63 204.66 | 78.62869 191.76039 317.15436 | 160.0838242 595.99296 1151.47384
EfficientNetB0            0.774 0.933 0.773 0.935   0.720   5.100 | 1.96 3.71 5.56     | 3.40122 5.95851 9.10801    | 3.442 6.11476 9.3304
EfficientNetB1            0.792 0.944 0.792 0.945   1.270   7.520 | 2.88 5.40 7.63     | 5.25172 9.10233 14.11319   | 5.3322 9.41795 14.60388
EfficientNetB2            0.799 0.947 0.803 0.950   1.850   8.810 | 3.26 6.20 9.17     | 5.91052 10.5898 17.38106   | 6.29351 10.95702 17.75308
EfficientNetB3            0.812 0.954 0.817 0.956   3.430  11.840 | 4.52 8.85 13.54    | 7.69582 16.02548 27.4447   | 7.67749 16.53288 28.5939
EfficientNetB4            0.829 0.962 0.830 0.963   8.290  18.760 | 6.78 15.47 24.95   | 11.55585 29.44261 53.97363 | 12.15894 30.94567 57.38511
EfficientNetB5            0.836 0.967 0.837 0.967  19.510  29.610 | 10.97 27.24 45.93  | 19.63083 56.52299 -        | 20.48571 61.60252 -
EfficientNetB6            0.840 0.969 0.842 0.968  36.270  42.000 | 17.09 43.32 76.90  | 30.05911 - -               | 32.62402 - -
EfficientNetB7            0.843 0.969 0.844 0.971  72.350  64.920 | 25.91 71.23 128.20 | 47.86087 - -               | 53.93823 - -
EfficientNetB0_small      0.758 0.926 -     -       0.720   4.650 | 1.24 2.59 3.92     | 2.39166 4.36748 6.96002    | 2.3076 4.71886 7.21888
"""

# name -> (family, builder, builder kwargs, crop, resize_short, params convention)
_ARCH: dict[str, tuple[str, str, dict[str, object], int, int, str]] = {
    "ResNeXt101_32x8d_wsl": ("ResNeXt101_wsl", "resnext101_wsl", {"width": 8}, 224, 256, "static-graph"),
    "ResNeXt101_32x16d_wsl": ("ResNeXt101_wsl", "resnext101_wsl", {"width": 16}, 224, 256, "static-graph"),
    "ResNeXt101_32x32d_wsl": ("ResNeXt101_wsl", "resnext101_wsl", {"width": 32}, 224, 256, "static-graph"),
    "ResNeXt101_32x48d_wsl": ("ResNeXt101_wsl", "resnext101_wsl", {"width": 48}, 224, 256, "static-graph"),
    "Fix_ResNeXt101_32x48d_wsl": ("ResNeXt101_wsl", "resnext101_wsl", {"width": 48}, 320, 320, "static-graph"),
    "EfficientNetB0": ("EfficientNet", "efficientnet", {"variant": "b0"}, 224, 256, "static-graph"),
    "EfficientNetB1": ("EfficientNet", "efficientnet", {"variant": "b1"}, 240, 272, "static-graph"),
    "EfficientNetB2": ("EfficientNet", "efficientnet", {"variant": "b2"}, 260, 292, "static-graph"),
    "EfficientNetB3": ("EfficientNet", "efficientnet", {"variant": "b3"}, 300, 332, "static-graph"),
    "EfficientNetB4": ("EfficientNet", "efficientnet", {"variant": "b4"}, 380, 412, "static-graph"),
    "EfficientNetB5": ("EfficientNet", "efficientnet", {"variant": "b5"}, 456, 488, "static-graph"),
    "EfficientNetB6": ("EfficientNet", "efficientnet", {"variant": "b6"}, 528, 560, "static-graph"),
    "EfficientNetB7": ("EfficientNet", "efficientnet", {"variant": "b7"}, 600, 632, "static-graph"),
    # The seed's 4.65M for B0_small is the plain trainable count, unlike every other row.
    "EfficientNetB0_small": ("EfficientNet", "efficientnet", {"variant": "b0_small"}, 224, 256, "trainable"),
}


_FLOPS_COUNTED_AS = {"EfficientNetB0_small": "EfficientNetB0"}
_EXPORT_TOLERANCE = {"EfficientNet": 1e-4, "ResNeXt101_wsl": 1e-3}


def _parse_seed_table(text: str) -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for line in text.strip().splitlines():
        head, v100, t4_fp16, t4_fp32 = line.split("|")
        name, *figures = head.split()
        top1, top5, ref1, ref5, flops, params = (_cell(x) for x in figures)
        family, arch, kwargs, crop, resize, convention = _ARCH[name]
        published = Published(
            top1, top5, ref1, ref5, flops, params,
            *(tuple(_cell(x) for x in cells.split()) for cells in (v100, t4_fp16, t4_fp32)))
        specs[name] = ModelSpec(name=name, family=family, arch=arch,
                                arch_args=tuple(sorted(kwargs.items())), crop_size=crop,
                                resize_short=resize, published=published,
                                params_convention=convention,
                                flops_counted_as=_FLOPS_COUNTED_AS.get(name),
                                export_tolerance=_EXPORT_TOLERANCE[family])
    return specs


SPECS: dict[str, ModelSpec] = _parse_seed_table(_SEED_TABLE)
DEFAULT_MODEL = "EfficientNetB0"


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name`` (case-insensitive); an UnknownModelError suggests close names."""
    if name in SPECS:
        return SPECS[name]
    folded = {key.lower(): key for key in SPECS}
    if name.lower() in folded:
        return SPECS[folded[name.lower()]]
    close = difflib.get_close_matches(name.lower(), folded, n=3, cutoff=0.5)
    hint = ", ".join(folded[c] for c in close) if close else ", ".join(SPECS)
    raise UnknownModelError(
        f"unknown model {name!r}; did you mean: {hint}? (`crossrt zoo` lists all {len(SPECS)})")
