"""What a model family declares: the :class:`ModelFamily` protocol and its models' specs.

A family is one module in ``exporter/zoo/`` (``efficientnet.py``, ``resnext_wsl.py``) that
satisfies :class:`ModelFamily`: its name, one :class:`ModelSpec` entry per model (with named
fields; PaddleClas's published figures are optional), how to build a model from a spec, its
short display names and any extra counting rules. Everything downstream (preprocessing,
export shapes, engine profiles, bench tables) resolves sizes and reference figures from a
spec; no other module hard-codes a shape. Nothing here imports paddle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from paddle import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_SIZES = (1, 4, 8)  # the batch sizes of PaddleClas's latency tables

# An op of a static program -> (table params, table FLOPs, plain MACs); see exporter.counting
CountingRule = Callable[[Any], tuple[float, float, int]]
_NO_LATENCY: tuple[float | None, ...] = (None,) * len(BATCH_SIZES)


@dataclass(frozen=True)
class Published:
    """One model's figures as PaddleClas publishes them (None where it prints "-" or nothing).

    ``Published()`` is a model without published figures: every table shows "-" for it.
    """

    top1: float | None = None
    top5: float | None = None
    ref_top1: float | None = None
    ref_top5: float | None = None
    flops_g: float | None = None
    params_m: float | None = None
    v100_fp32_ms: tuple[float | None, ...] = _NO_LATENCY  # at BATCH_SIZES
    t4_fp16_ms: tuple[float | None, ...] = _NO_LATENCY
    t4_fp32_ms: tuple[float | None, ...] = _NO_LATENCY

    def latency(self, table: str, precision: str) -> tuple[float | None, ...]:
        """Published latencies (ms) at BATCH_SIZES for ``table`` in {t4, v100} and a precision."""
        cells = {("t4", "fp16"): self.t4_fp16_ms, ("t4", "fp32"): self.t4_fp32_ms,
                 ("v100", "fp32"): self.v100_fp32_ms}
        return cells.get((table, precision), _NO_LATENCY)


@dataclass(frozen=True)
class ModelSpec:
    """One model: everything needed to build, feed, export and compare it."""

    name: str
    family: str  # a ModelFamily.FAMILY: the zoo module that builds it
    crop_size: int
    resize_short: int
    # Allowed Paddle-vs-ONNX Runtime error at export, times max(1, max|logit|): float32
    # rounding grows with depth and width, so each family sets one (its EXPORT_TOLERANCE).
    export_tolerance: float
    builder_args: tuple[tuple[str, object], ...] = ()  # keyword arguments of the family's builder
    published: Published = Published()
    # How PaddleClas counted this model's "Parameters" cell: "static-graph" is the old Paddle
    # static-graph statistics tool (see exporter.counting), "trainable" the plain count.
    params_convention: str = "static-graph"
    # PaddleClas's FLOPs cell is the static-graph count of this network at its crop size
    # (Fix_ResNeXt101_32x48d_wsl's is counted at 320), except where it was counted on another
    # network (the name of that model).
    flops_counted_as: str | None = None
    interpolation: str = "linear"  # cv2 INTER_LINEAR in every PaddleClas eval config
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    channel_order: str = "RGB"
    input_name: str = "x"
    output_name: str = "logits"
    num_classes: int = 1000

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Per-sample input shape (C, H, W); the batch dimension is dynamic."""
        return (3, self.crop_size, self.crop_size)

    @property
    def builder_kwargs(self) -> dict[str, object]:
        return dict(self.builder_args)

    def preprocessing(self) -> dict[str, object]:
        """The facts a deployment needs to feed this model, as plain JSON-able data."""
        return {"resize_short": self.resize_short, "interpolation": self.interpolation,
                "crop_size": self.crop_size, "scale": "1/255", "mean": list(self.mean),
                "std": list(self.std), "channel_order": self.channel_order, "layout": self.layout}


class ModelFamily(Protocol):
    """Everything the rest of crossrt needs from a family, declared by its zoo module.

    Adding a family is its module in ``exporter/zoo/`` (these declarations; it must import
    without paddle), its network in a module beside it (imported by ``build``), and one line
    in ``exporter/zoo/__init__.py``'s list of families.
    """

    @property
    def FAMILY(self) -> str:
        """The name PaddleClas groups these models under (``ModelSpec.family``)."""
        ...

    @property
    def MODELS(self) -> Sequence[ModelSpec]:
        """One spec per model, in PaddleClas's table order."""
        ...

    @property
    def PADDLECLAS_MODULE(self) -> str:
        """``ppcls.arch.backbone.model_zoo.<this>``: where scripts/paddleclas_fixtures.py finds
        PaddleClas's own network to record the reference keys and logits."""
        ...

    @property
    def COUNTING_RULES(self) -> Mapping[str, CountingRule]:
        """Op name -> rule for ops beyond exporter.counting's (usually none)."""
        ...

    def build(self, spec: ModelSpec) -> nn.Layer:
        """A fresh model for ``spec`` with Paddle's default initialisation (imports paddle)."""
        ...

    def short_name(self, model: str) -> str:
        """The model's label in PaddleClas's latency/accuracy figure (EfficientNetB0 -> B0)."""
        ...
