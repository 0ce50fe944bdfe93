"""What a model is to every part of crossrt: its spec, its precisions, PaddleClas's tables.

:class:`ModelSpec` is one model as data (crop and resize-short sizes, interpolation, mean/std,
PaddleClas's published figures, counting conventions, export tolerance); the registry of the
zoo's models is ``exporter.specs``. :class:`Precision` names the two precisions crossrt builds
and runs. :data:`LATENCY_TABLES` declares PaddleClas's latency tables once (which precisions
and batch sizes each has), for the bench tables, the published-figures export and the specs'
own figures. Nothing here imports paddle, onnx or a runtime.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Precision(str, Enum):
    """A precision crossrt exports, builds and times; compares and serialises as its value."""

    FP16 = "fp16"
    FP32 = "fp32"

    __str__ = str.__str__  # "fp16" in f-strings on every Python (3.12 changed Enum.__format__)

    @classmethod
    def parse(cls, text: str) -> Precision:
        """``fp16`` / ``FP16`` -> Precision.FP16; anything else is a ValueError naming the
        choices."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"unknown precision {text!r}; choose from "
                             f"{', '.join(p.value for p in cls)}") from None


FP32, FP16 = Precision.FP32, Precision.FP16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_SIZES = (1, 4, 8)  # the batch sizes of PaddleClas's latency tables
_NO_LATENCY: tuple[float | None, ...] = (None,) * len(BATCH_SIZES)


@dataclass(frozen=True)
class LatencyTable:
    """One of PaddleClas's latency tables: its GPU and the precisions it has columns for."""

    name: str  # bench --table
    gpu: str
    precisions: tuple[Precision, ...]
    batch_sizes: tuple[int, ...] = BATCH_SIZES

    @property
    def title(self) -> str:
        return f"{self.gpu} GPU (PaddleClas)"


# In the order PaddleClas's page prints them; DEFAULT_TABLE is what bench reproduces by default.
LATENCY_TABLES = {table.name: table for table in (LatencyTable("v100", "V100", (FP32,)),
                                                  LatencyTable("t4", "T4", (FP16, FP32)))}
DEFAULT_TABLE = "t4"


@dataclass(frozen=True)
class Published:
    """One model's figures as PaddleClas publishes them (None where it prints "-" or nothing).

    ``Published()`` is a model without published figures: every table shows "-" for it. The
    latency fields are named ``<table>_<precision>_ms`` after :data:`LATENCY_TABLES`' columns.
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
        """Published latencies (ms) at BATCH_SIZES in one of ``table``'s precision columns."""
        layout = LATENCY_TABLES.get(table)
        if layout is None or precision not in layout.precisions:
            return _NO_LATENCY
        latencies: tuple[float | None, ...] = getattr(self, f"{table}_{precision}_ms")
        return latencies


CUSTOM = "custom"  # the family of a model brought as a Paddle inference model (no zoo network)
INTERPOLATIONS = ("nearest", "linear", "cubic", "area", "lanczos")  # OpenCV's, by name
PIL_INTERPOLATIONS = ("nearest", "linear", "cubic", "box", "lanczos", "hamming")  # Pillow's
DEFAULT_SCALE = 1 / 255


@dataclass(frozen=True)
class ModelSpec:
    """One model: everything needed to build, feed, export and compare it.

    Its preprocessing is PaddleClas's: resize (the short side to ``resize_short``, or the whole
    image to ``resize_to`` x ``resize_to``), center crop ``crop_size`` (the input's side),
    ``* scale``, ``- mean``, ``/ std``, HWC to CHW, in RGB.
    """

    name: str
    family: str  # a ModelFamily.FAMILY (the zoo module that builds it), or CUSTOM
    crop_size: int
    resize_short: int | None  # None: resize_to
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
    resize_to: int | None = None  # ResizeImage size: the whole image to this square
    resize_backend: str = "cv2"  # or "pil" (PaddleClas's backend: pil, e.g. its Swin configs)
    scale: float = DEFAULT_SCALE
    labels: tuple[str, ...] = ()  # class names, index by index (a model's own label list)
    label_set: str | None = None  # or the name of a bundled list (core.labels): "imagenet-1k"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Per-sample input shape (C, H, W); the batch dimension is dynamic."""
        return (3, self.crop_size, self.crop_size)

    @property
    def builder_kwargs(self) -> dict[str, object]:
        return dict(self.builder_args)

    @property
    def custom(self) -> bool:
        """Brought by the user as a Paddle inference model: no zoo network, no published figures."""
        return self.family == CUSTOM

    def class_names(self) -> tuple[str, ...]:
        """The name of every class, index by index (its indices when the model has none)."""
        if self.labels:
            return self.labels
        if self.label_set is not None:
            from core.labels import label_set

            return label_set(self.label_set)
        return tuple(str(index) for index in range(self.num_classes))

    def preprocessing(self) -> dict[str, object]:
        """The facts a deployment needs to feed this model, as plain JSON-able data."""
        resize: dict[str, object] = ({"resize_short": self.resize_short}
                                     if self.resize_short is not None else
                                     {"resize_to": self.resize_to})
        extra: dict[str, object] = {"resize_backend": self.resize_backend} \
            if self.resize_backend != "cv2" else {}
        return {**resize, "interpolation": self.interpolation, **extra,
                "crop_size": self.crop_size,
                "scale": "1/255" if self.scale == DEFAULT_SCALE else self.scale,
                "mean": list(self.mean), "std": list(self.std),
                "channel_order": self.channel_order, "layout": self.layout}

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data (lists, not tuples: as an export's manifest reads back)."""
        def plain(value: Any) -> Any:
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return {k: plain(v) for k, v in value.items()} if isinstance(value, dict) else value

        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """A spec :meth:`to_dict` wrote (lists back to tuples); a ValueError when it is not one."""
        try:
            fields = {f.name for f in dataclasses.fields(cls)}
            values = {key: value for key, value in data.items() if key in fields}
            published: dict[str, Any] = {
                key: tuple(value) if isinstance(value, list) else value
                for key, value in dict(values.get("published") or {}).items()}
            values["published"] = Published(**published)
            for key in ("builder_args", "mean", "std", "labels"):
                if key in values:
                    values[key] = tuple(tuple(v) if isinstance(v, list) else v
                                        for v in values[key])
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"not a model spec ({error})") from None
