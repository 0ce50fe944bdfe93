"""trtexec's vocabulary: size and shape syntax, memory pools, optimisation profiles.

Pure functions, tested without TensorRT. ``build-engine`` keeps trtexec's flag names and
rules, so a user who knows ``trtexec --onnx m.onnx --minShapes x:1x3x224x224 ...`` knows ours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

from core.errors import UsageError
from core.spec import BATCH_SIZES

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max)

MEM_POOLS = {"workspace": "WORKSPACE", "dlaSRAM": "DLA_MANAGED_SRAM",
             "dlaLocalDRAM": "DLA_LOCAL_DRAM", "dlaGlobalDRAM": "DLA_GLOBAL_DRAM",
             "tacticSharedMem": "TACTIC_SHARED_MEMORY"}
# trtexec's base-2 size suffixes; a bare number is MiB
SIZE_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
OPTIMIZATION_LEVELS = range(0, 6)  # --builderOptimizationLevel, TensorRT's default is 3
MAX_VOLUME = (1 << 31) - 1  # elements of one tensor: TensorRT indexes them with 32 bits


# -- trtexec-style arguments -----------------------------------------------------------------
def parse_size(text: str) -> int:
    """A trtexec size: ``512`` (MiB), ``1.5G``, ``256M``, ``64K``, ``100B`` -> bytes (floored)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([BKMG]?)\s*", text, flags=re.IGNORECASE)
    if not match:
        raise UsageError(f"bad size {text!r}: expected a number with an optional B, K, M or G "
                         "suffix (no suffix: MiB), e.g. 2048 or 2G")
    number, unit = match.groups()
    return math.floor(float(number) * SIZE_UNITS[(unit or "M").upper()])


def parse_mem_pool_size(spec: str) -> dict[str, int]:
    """``--memPoolSize=workspace:2G,tacticSharedMem:48K`` -> {pool: bytes}."""
    pools = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        pool, sep, size = item.partition(":")
        if not sep or pool not in MEM_POOLS:
            raise UsageError(f"bad --memPoolSize entry {item!r}: expected POOL:SIZE with POOL one "
                             f"of {', '.join(MEM_POOLS)} (e.g. workspace:2048)")
        pools[pool] = parse_size(size)
    if not pools:
        raise UsageError("empty --memPoolSize: expected e.g. workspace:2048")
    return pools


def parse_shapes(spec: str) -> dict[str, Shape]:
    """``x:1x3x224x224,'in:0':4x3`` -> {name: shape}; ``name:scalar`` or ``name:`` is 0-D."""
    shapes: dict[str, Shape] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, dims = item.rpartition(":")
        name = name.strip().strip("'\\")
        if not sep or not name:
            raise UsageError(f"bad shape {item!r}: expected NAME:DIMS like x:1x3x224x224")
        if dims in ("", "scalar"):
            shapes[name] = ()
            continue
        if not re.fullmatch(r"\d+(x\d+)*", dims):
            raise UsageError(f"bad shape {item!r}: dimensions must be positive integers joined "
                             "by 'x', like 1x3x224x224")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    if not shapes:
        raise UsageError(f"empty shape spec {spec!r}: expected e.g. x:1x3x224x224")
    return shapes


def format_shape(shape: Shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


# -- profiles ----------------------------------------------------------------------------------
def _low_opt_high(batches: tuple[int, ...]) -> tuple[int, int, int]:
    """Batch sizes 1, 4, 8 -> min 1, opt 4 (the middle one), max 8."""
    return batches[0], batches[len(batches) // 2], batches[-1]


def onnx_inputs(path: str | Path) -> dict[str, tuple[int | None, ...]]:
    """The ONNX graph's real inputs (initializers excluded); dynamic dims are None."""
    from core.graphs import read_onnx

    graph = read_onnx(path).graph
    weights = {init.name for init in graph.initializer}
    return {node.name: tuple(d.dim_value if d.dim_value > 0 else None
                             for d in node.type.tensor_type.shape.dim)
            for node in graph.input if node.name not in weights}


def resolve_profile(inputs: dict[str, tuple[int | None, ...]],
                    min_shapes: Mapping[str, Shape] | None = None,
                    opt_shapes: Mapping[str, Shape] | None = None,
                    max_shapes: Mapping[str, Shape] | None = None) -> Profile:
    """The one optimisation profile to build, following trtexec's rules, checked against the graph.

    Nothing given: batch 1/4/8 (PaddleClas's latency columns) on a graph whose only dynamic
    dimension is the batch. Only opt given: min = max = opt. Otherwise
    all three are needed. Static inputs may be left out.
    """
    given = [s is not None for s in (min_shapes, opt_shapes, max_shapes)]
    if not any(given):
        profile = _batch_profile(inputs)
    elif given == [False, True, False]:
        assert opt_shapes is not None
        profile = {n: (s, s, s) for n, s in opt_shapes.items()}
    elif all(given):
        assert min_shapes is not None and opt_shapes is not None and max_shapes is not None
        if not set(min_shapes) == set(opt_shapes) == set(max_shapes):
            raise UsageError("--minShapes, --optShapes and --maxShapes must name the same inputs")
        profile = {n: (min_shapes[n], opt_shapes[n], max_shapes[n]) for n in opt_shapes}
    else:
        raise UsageError("give all three of --minShapes, --optShapes and --maxShapes (or only "
                         "--optShapes, as trtexec)")
    return _check_profile(profile, inputs)


def _batch_profile(inputs: dict[str, tuple[int | None, ...]]) -> Profile:
    profile = {}
    for name, dims in inputs.items():
        if any(d is None for d in dims[1:]):
            raise UsageError(f"input {name!r} has dynamic dimensions besides the batch "
                             f"({dims}): give --minShapes/--optShapes/--maxShapes")
        if dims and dims[0] is None:
            static = tuple(d for d in dims[1:] if d is not None)
            low, opt, high = ((b, *static) for b in _low_opt_high(BATCH_SIZES))
            profile[name] = (low, opt, high)
    return profile


def _check_profile(profile: Profile, inputs: dict[str, tuple[int | None, ...]]) -> Profile:
    unknown = sorted(set(profile) - set(inputs))
    if unknown:
        raise UsageError(f"shape given for {unknown[0]!r}, which is not an input of the graph "
                         f"(inputs: {', '.join(inputs)})")
    for name, dims in inputs.items():
        if name not in profile:
            if any(d is None for d in dims):
                raise UsageError(f"dynamic input {name!r} needs a shape in the profile")
            continue
        for label, shape in zip(("min", "opt", "max"), profile[name]):
            if len(shape) != len(dims) or any(d is not None and d != s
                                              for d, s in zip(dims, shape)):
                want = "x".join("N" if d is None else str(d) for d in dims)
                raise UsageError(f"{label} shape of {name!r} is {format_shape(shape)}, but the "
                                 f"graph's input is {want}")
        low, opt, high = profile[name]
        if any(d < 1 for shape in (low, opt, high) for d in shape):
            raise UsageError(f"profile of {name!r} has a dimension below 1 "
                             f"({format_shape(low)} / {format_shape(opt)} / {format_shape(high)})")
        if math.prod(high) > MAX_VOLUME:
            raise UsageError(f"max shape of {name!r}, {format_shape(high)}, holds "
                             f"{math.prod(high):,} elements, past TensorRT's {MAX_VOLUME:,} per "
                             "tensor; give a smaller --maxShapes")
        if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
            raise UsageError(f"profile of {name!r} must have min <= opt <= max in every "
                             f"dimension, got {format_shape(low)} / {format_shape(opt)} / "
                             f"{format_shape(high)}")
    return profile
