"""Parameter and FLOP counts of zoo models, plain and by the convention of PaddleClas's table.

Plain counts: ``params_m`` is every trainable parameter (BatchNorm running statistics
excluded) in millions; ``macs_g`` the multiply-accumulates of all convolutions and the
classifier for one image at the crop size, in G.

PaddleClas's published "Parameters" and "FLOPS" columns are not plain counts
(ResNeXt101_32x48d_wsl has 828M parameters, the table says 456.2M): they come from the old
Paddle static-graph statistics tool, which walked the ops of a program with these rules:

* convolution: ``kernel_ops = kh * kw * (weight in-channels / groups)``. The weight's
  in-channel axis already holds in_channels / groups, so grouped and depthwise convolutions
  are divided by groups a second time; params = out_channels * kernel_ops (bias not counted,
  it was a separate op), FLOPs = 2 * Ho * Wo * out_channels * kernel_ops;
* batch norm: params 2 * C (scale and shift), FLOPs 2 * C * H * W;
* fully connected: params in * out + 1, FLOPs in * out (not doubled);
* ReLU and sigmoid, separate ops: FLOPs = the product of the input's dimensions, batch included;
  the batch dimension of those programs was -1, so these FLOPs were *subtracted* (counting them
  positive, as the number of elements, leaves the ResNeXt figures 0.16-0.29% high instead of
  0.00-0.09%); swish and element-wise ops: 0;
* pooling: output elements * kernel area (a global average pool: C).

Those rules (``_RULES``) cover every op of both families; a family whose networks use another
op declares its rule in its ``COUNTING_RULES`` (see exporter.family.ModelFamily).

That reproduces every published parameter figure to within 0.02M (EfficientNetB0_small's 4.65M
is the plain count instead: ``spec.params_convention``) and every FLOPs figure to within 0.4%
or the rounding of the printed figure (EfficientNetB0: 0.716 for 0.72), except
EfficientNetB0_small's 0.72G, which repeats EfficientNetB0's: without squeeze-excite the network
counts 0.714G.
The Fix model's FLOPs are counted at its 320x320 input. Everything is computed from the network
itself: the model is built as a static program (shapes inferred by Paddle, no weight is ever
materialised, so even the 828M-parameter model counts in seconds) and its ops are walked.
The registry's counts are kept in ``exporter/zoo/counts.json`` (written by
``scripts/write_zoo_counts.py``, proven against a fresh count by the slow tests), so that
``crossrt zoo`` answers without Paddle; a network whose key is not there is counted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import OutputKind, json_document

if TYPE_CHECKING:
    from core.spec import ModelSpec
    from exporter.family import CountingRule


PROGRAM_BATCH = -1  # the batch dimension the old tool multiplied activation counts by


@dataclass(frozen=True)
class Tally:
    """What a walk over one model's static program found (batch 1, crop size)."""

    params: int  # plain trainable parameters
    macs: int  # conv + linear multiply-accumulates
    table_params: float  # static-graph convention
    table_flops: float
    output_shape: tuple[int, ...]  # as Paddle inferred it: (1, num_classes)


def count(spec: ModelSpec) -> dict[str, Any]:
    """One model's plain and table-convention counts next to PaddleClas's published figures
    (None for a model without them), as ``zoo --json`` prints them."""
    from exporter.specs import get_spec

    tally = tally_ops(spec)
    table_params = tally.params if spec.params_convention == "trainable" else tally.table_params
    # the cell's convention may be another network's count (spec.flops_counted_as)
    flops_tally = tally_ops(get_spec(spec.flops_counted_as)) if spec.flops_counted_as else tally
    return {"name": spec.name, "crop_size": spec.crop_size, "resize_short": spec.resize_short,
            "params_m": tally.params / 1e6, "macs_g": tally.macs / 1e9,
            "table_params_m": table_params / 1e6,
            "table_flops_g": flops_tally.table_flops / 1e9,
            "own_table_flops_g": tally.table_flops / 1e9,
            "ref_params_m": spec.published.params_m, "ref_flops_g": spec.published.flops_g}


def _is_zoo_json(path: Path) -> bool:
    rows = json_document(path)
    return isinstance(rows, list) and all(isinstance(r, dict) and "table_flops_g" in r
                                          for r in rows)


ZOO_JSON = OutputKind("zoo table", _is_zoo_json)


def zoo_table() -> list[dict[str, Any]]:
    """``count`` for every spec in the registry, in registry order."""
    from exporter.specs import SPECS

    return [count(spec) for spec in SPECS.values()]


def agrees_with_published(computed: float, published: float) -> bool:
    """Within 0.5%, or within the rounding of the printed figure (half a unit of its last digit)."""
    decimals = len(repr(float(published)).partition(".")[2].rstrip("0"))
    return abs(computed - published) <= max(0.005 * abs(published), 0.5 * 10.0 ** -decimals)


COUNTS_FILE = Path(__file__).resolve().parent / "zoo" / "counts.json"
COUNTS_FORMAT = "crossrt-zoo-counts/1"


def network_key(spec: ModelSpec) -> str:
    """What the counts of a spec depend on: its network (family, builder arguments, classes)
    and its input size. Any change to these misses the committed counts, so they are counted."""
    facts = [spec.family, [list(arg) for arg in spec.builder_args], spec.num_classes,
             spec.crop_size, spec.input_name]
    return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()[:16]


@functools.cache
def _committed() -> dict[str, Tally]:
    try:
        document = json.loads(COUNTS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("format") != COUNTS_FORMAT:
        return {}
    return {key: Tally(**{**entry["tally"], "output_shape": tuple(entry["tally"]["output_shape"])})
            for key, entry in document.get("counts", {}).items()}


def tally_ops(spec: ModelSpec) -> Tally:
    """``spec``'s counts: the committed ones for its network, else counted by :func:`count_ops`."""
    return _committed().get(network_key(spec)) or count_ops(spec)


def counts_document() -> dict[str, Any]:
    """Every registry model counted afresh, as ``exporter/zoo/counts.json`` holds them."""
    from exporter.specs import SPECS

    counts = {network_key(spec): {"model": spec.name, "tally": asdict(count_ops(spec))}
              for spec in SPECS.values()}
    return {"format": COUNTS_FORMAT, "counts": counts}


@functools.cache
def count_ops(spec: ModelSpec) -> Tally:
    """Build ``spec``'s model as a static program at batch 1 and walk its ops.

    Paddle infers every shape while building the program; no weight is allocated (the
    initialisers land in a startup program that never runs).
    """
    import paddle

    from exporter.zoo import build_model, family_of

    main, startup = paddle.static.Program(), paddle.static.Program()
    paddle.enable_static()
    try:
        with paddle.static.program_guard(main, startup), paddle.utils.unique_name.guard():
            model = build_model(spec)
            output = model(paddle.static.data(spec.input_name, [1, *spec.input_shape],
                                              "float32"))
    finally:
        paddle.disable_static()
    rules = {**_RULES, **family_of(spec).COUNTING_RULES}
    table_params = table_flops = 0.0
    macs = 0
    for op in main.global_block().ops:  # values die with ``main``: read them while it lives
        rule = rules.get(op.name().removeprefix("pd_op.").rstrip("_"))
        if rule is not None:
            op_params, op_flops, op_macs = rule(op)
            table_params, table_flops, macs = (table_params + op_params,
                                               table_flops + op_flops, macs + op_macs)
    params = sum(math.prod(p.shape) for p in model.parameters() if p.trainable)
    return Tally(params, macs, table_params, table_flops, tuple(output.shape))


# Each rule maps an op to (table params, table FLOPs, plain MACs); shapes are at batch 1.
def _conv(op) -> tuple[float, float, int]:
    cout, cin_per_group, kh, kw = op.operand_source(1).shape
    _, _, ho, wo = op.result(0).shape
    kernel_ops = kh * kw * cin_per_group / op.attrs()["groups"]  # groups divide a second time
    macs = ho * wo * cout * kh * kw * cin_per_group
    return cout * kernel_ops, 2 * ho * wo * cout * kernel_ops, macs


def _batch_norm(op) -> tuple[float, float, int]:
    _, channels, height, width = op.operand_source(0).shape
    return 2 * channels, 2 * channels * height * width, 0


def _activation(op) -> tuple[float, float, int]:
    return 0, PROGRAM_BATCH * math.prod(op.result(0).shape[1:]), 0


def _pool(op) -> tuple[float, float, int]:
    kernel = op.operand_source(1).get_defining_op().attrs()["value"]  # adaptive: output size
    return 0, math.prod(op.result(0).shape) * math.prod(kernel), 0


def _linear(op) -> tuple[float, float, int]:
    fan_in, fan_out = op.operand_source(1).shape
    return fan_in * fan_out + 1, fan_in * fan_out, fan_in * fan_out


_RULES: dict[str, CountingRule] = {
    "conv2d": _conv, "depthwise_conv2d": _conv, "batch_norm": _batch_norm, "relu": _activation,
    "sigmoid": _activation, "pool2d": _pool, "matmul": _linear}
