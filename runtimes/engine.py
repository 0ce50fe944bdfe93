"""``crossrt build-engine``: a trtexec-like TensorRT engine build on Polygraphy's loaders.

Flags follow trtexec (``--onnx --saveEngine --fp16 --minShapes/--optShapes/--maxShapes
--memPoolSize --timingCacheFile --builderOptimizationLevel --skipInference --verbose``).
The pure parts (shape specs, pool sizes, the default profile, the precision plan per
TensorRT major version, reading the built engine's layer precisions, the sidecar, the
compatibility check) are plain functions tested without TensorRT; ``build_engine`` puts them
together around ``NetworkFromOnnxPath -> CreateConfig -> EngineFromNetwork -> SaveEngine``.

Precision: TensorRT 10 takes the FP16 builder flag on the FP32 graph. TensorRT 11 removed
the flag (networks are strongly typed), so ``fp16`` there builds the FP16 graph
(``model.fp16.onnx``, converted on the fly if missing). Either way the engine's layers are
inspected after the build, and an FP16 request that produced an all-FP32 engine fails.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from math import floor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.errors import DependencyError, EngineBuildError, UsageError

if TYPE_CHECKING:
    import tensorrt as trt

    from exporter.specs import ModelSpec

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max)

# trtexec's --memPoolSize pool names -> trt.MemoryPoolType members
MEM_POOLS = {"workspace": "WORKSPACE", "dlaSRAM": "DLA_MANAGED_SRAM",
             "dlaLocalDRAM": "DLA_LOCAL_DRAM", "dlaGlobalDRAM": "DLA_GLOBAL_DRAM",
             "tacticSharedMem": "TACTIC_SHARED_MEMORY"}
# trtexec's base-2 size suffixes; a bare number is MiB
SIZE_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
OPTIMIZATION_LEVELS = range(0, 6)  # --builderOptimizationLevel, TensorRT's default is 3
# Substrings of the inspector's data-type text, most specific first ("BFloat16" holds "Float")
_PRECISION_WORDS = (("BFLOAT16", "bf16"), ("BF16", "bf16"), ("FP8", "fp8"), ("FLOAT8", "fp8"),
                    ("HALF", "fp16"), ("FP16", "fp16"), ("FLOAT16", "fp16"), ("INT64", "int64"),
                    ("INT32", "int32"), ("INT8", "int8"), ("UINT8", "uint8"), ("BOOL", "bool"),
                    ("FP32", "fp32"), ("FLOAT", "fp32"))
_NOT_COMPUTE = ("Reformat", "NoOp")  # layers that only move or relabel data


# -- trtexec-style arguments -----------------------------------------------------------------
def parse_size(text: str) -> int:
    """A trtexec size: ``512`` (MiB), ``1.5G``, ``256M``, ``64K``, ``100B`` -> bytes (floored)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([BKMG]?)\s*", text, flags=re.IGNORECASE)
    if not match:
        raise UsageError(f"bad size {text!r}: expected a number with an optional B, K, M or G "
                         "suffix (no suffix: MiB), e.g. 2048 or 2G")
    number, unit = match.groups()
    return floor(float(number) * SIZE_UNITS[(unit or "M").upper()])


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
def spec_profile(spec: ModelSpec, batch_sizes: tuple[int, ...] | None = None) -> Profile:
    """The model's default profile: batch 1 / 4 / 8 (the seed's columns) at its crop size."""
    from exporter.specs import BATCH_SIZES

    batches = batch_sizes or BATCH_SIZES
    low, opt, high = ((b, *spec.input_shape) for b in _low_opt_high(batches))
    return {spec.input_name: (low, opt, high)}


def _low_opt_high(batches: tuple[int, ...]) -> tuple[int, int, int]:
    """Batch sizes 1, 4, 8 -> min 1, opt 4 (the middle one), max 8."""
    return batches[0], batches[len(batches) // 2], batches[-1]


def onnx_inputs(path: str | Path) -> dict[str, tuple[int | None, ...]]:
    """The ONNX graph's real inputs (initializers excluded); dynamic dims are None."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return {node.name: tuple(d.dim_value if d.dim_value > 0 else None
                             for d in node.type.tensor_type.shape.dim)
            for node in graph.input if node.name not in weights}


def resolve_profile(inputs: dict[str, tuple[int | None, ...]],
                    min_shapes: dict[str, Shape] | None = None,
                    opt_shapes: dict[str, Shape] | None = None,
                    max_shapes: dict[str, Shape] | None = None,
                    spec: ModelSpec | None = None) -> Profile:
    """The one optimisation profile to build, following trtexec's rules, checked against the graph.

    Nothing given: the spec's batch 1/4/8 profile (or, without a spec, batch 1/4/8 on a graph
    whose only dynamic dimension is the batch). Only opt given: min = max = opt. Otherwise
    all three are needed. Static inputs may be left out.
    """
    given = [s is not None for s in (min_shapes, opt_shapes, max_shapes)]
    if not any(given):
        profile = spec_profile(spec) if spec is not None else _batch_profile(inputs)
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
    from exporter.specs import BATCH_SIZES

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
            if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
                want = "x".join("N" if d is None else str(d) for d in dims)
                raise UsageError(f"{label} shape of {name!r} is {format_shape(shape)}, but the "
                                 f"graph's input is {want}")
        low, opt, high = profile[name]
        if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
            raise UsageError(f"profile of {name!r} must have min <= opt <= max in every "
                             f"dimension, got {format_shape(low)} / {format_shape(opt)} / "
                             f"{format_shape(high)}")
    return profile


# -- precision ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionPlan:
    """How a requested precision is built on a given TensorRT major version."""

    requested: str  # "fp16" or "fp32"
    onnx: Path  # the graph the network is parsed from
    builder_fp16: bool  # TensorRT 10: the FP16 builder flag
    strongly_typed: bool  # TensorRT >= 11: types come from the graph (always on there)
    convert_from: Path | None = None  # FP32 graph to convert into ``onnx`` before building

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def fp16_graph_path(onnx: Path) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx`` (the exporter's name); an FP16 path maps to itself."""
    return onnx if onnx.name.endswith(".fp16.onnx") else onnx.with_name(f"{onnx.stem}.fp16.onnx")


def precision_plan(trt_major: int, fp16: bool, onnx: Path) -> PrecisionPlan:
    if trt_major < 10:
        raise DependencyError(f"TensorRT {trt_major} is too old: crossrt needs TensorRT >= 10")
    if trt_major == 10:
        return PrecisionPlan("fp16" if fp16 else "fp32", onnx, builder_fp16=fp16,
                             strongly_typed=False)
    if not fp16:
        return PrecisionPlan("fp32", onnx, builder_fp16=False, strongly_typed=True)
    target = fp16_graph_path(onnx)
    return PrecisionPlan("fp16", target, builder_fp16=False, strongly_typed=True,
                         convert_from=None if target.is_file() else onnx)


def tensor_precision(tensor: dict[str, Any]) -> str | None:
    """A layer input/output of the engine inspector -> 'fp16', 'fp32', ... (TRT 10 and 11 keys)."""
    text = tensor.get("Format/Datatype") or " ".join(
        str(tensor[k]) for k in ("Datatype", "DataType", "Format") if tensor.get(k))
    upper = str(text).upper()
    return next((label for word, label in _PRECISION_WORDS if word in upper), None)


def layer_precisions(layers: list[Any]) -> dict[str, int]:
    """Count compute layers by the precision of their first output; 'unknown' when not detailed."""
    counts: dict[str, int] = {}
    for layer in layers:
        if not isinstance(layer, dict):  # profiling verbosity below DETAILED: names only
            counts["unknown"] = counts.get("unknown", 0) + 1
            continue
        if any(word in str(layer.get("LayerType", "")) for word in _NOT_COMPUTE):
            continue
        outputs = layer.get("Outputs") or []
        label = (tensor_precision(outputs[0]) if outputs else None) or "unknown"
        counts[label] = counts.get(label, 0) + 1
    return counts


def engine_precision(counts: dict[str, int]) -> str:
    """'fp16' (all floating-point layers in FP16), 'mixed', 'fp32' or 'unknown'."""
    half, single = counts.get("fp16", 0), counts.get("fp32", 0)
    if half and single:
        return "mixed"
    if half or single:
        return "fp16" if half else "fp32"
    return "unknown"


def check_precision(requested: str, counts: dict[str, int], engine: Path) -> None:
    """An FP16 request must yield FP16 layers; an engine whose precision is unknown is no proof."""
    if requested != "fp16":
        return
    if counts.get("fp16", 0) == 0:
        found = ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "no layers"
        raise EngineBuildError(f"--fp16 was requested but the built engine {engine} has no FP16 "
                               f"layers ({found}): TensorRT chose FP32 kernels; this GPU may lack "
                               "fast FP16, or the graph pins FP32")


# -- sidecar -----------------------------------------------------------------------------------
def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: str | Path) -> dict[str, Any] | None:
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read the engine's sidecar {path}: {error}") from error
    return data if isinstance(data, dict) else None


def check_engine_compatible(sidecar: dict[str, Any], trt_version: str, gpu: dict[str, Any],
                            engine: str | Path) -> None:
    """Raise a UsageError when the engine was built by another TensorRT or for another GPU."""
    built_trt = sidecar.get("tensorrt_version")
    built_gpu = sidecar.get("gpu") or {}
    problems = []
    if built_trt and built_trt != trt_version:
        problems.append(f"TensorRT {built_trt} (this machine has {trt_version})")
    if built_gpu.get("compute_capability") and \
            built_gpu["compute_capability"] != gpu.get("compute_capability"):
        problems.append(f"{built_gpu.get('name', 'a GPU')} with compute capability "
                        f"{built_gpu['compute_capability']} (this machine has {gpu.get('name')} "
                        f"with {gpu.get('compute_capability')})")
    if problems:
        onnx = sidecar.get("onnx", {}).get("path", "MODEL.onnx")
        raise UsageError(f"engine {engine} was built for {' and '.join(problems)}; rebuild it "
                         f"here: crossrt build-engine --onnx {onnx} --saveEngine {engine}")


def make_sidecar(*, engine: Path, onnx: Path, onnx_sha256: str, trt_version: str,
                 gpu: dict[str, Any], profile: Profile, plan: PrecisionPlan,
                 layers: dict[str, int], build_time_s: float, timing_cache: dict[str, Any] | None,
                 memory_pools: dict[str, int], builder_optimization_level: int | None,
                 inference: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON written beside an engine: enough to know what it is and where it can run."""
    return {
        "engine": engine.name,
        "onnx": {"path": str(onnx), "sha256": onnx_sha256},
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "profiles": [{name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])}
                      for name, s in profile.items()}],
        "precision": {"requested": plan.requested, "engine": engine_precision(layers),
                      "layers": layers, "plan": plan.to_json()},
        "build_time_s": round(build_time_s, 3),
        "timing_cache": timing_cache,
        "memory_pools": memory_pools,
        "builder_optimization_level": builder_optimization_level,
        "inference_check": inference,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# -- the build ---------------------------------------------------------------------------------
def build_engine(onnx: str | Path, save_engine: str | Path, fp16: bool = False,
                 min_shapes: dict[str, Shape] | str | None = None,
                 opt_shapes: dict[str, Shape] | str | None = None,
                 max_shapes: dict[str, Shape] | str | None = None,
                 workspace: int | str | None = None, timing_cache: str | Path | None = None,
                 builder_optimization_level: int | None = None, skip_inference: bool = False,
                 verbose: bool = False, spec: ModelSpec | None = None,
                 mem_pools: dict[str, int] | str | None = None) -> dict[str, Any]:
    """Build, check and save a TensorRT engine from an ONNX graph; returns the sidecar (also
    written to ``ENGINE.json``). Shapes take trtexec strings or dicts; ``workspace`` takes bytes
    or a trtexec size (``2048``, ``2G``); ``mem_pools`` a ``--memPoolSize`` string or dict.

    DependencyError (exit 2) without TensorRT or a GPU; EngineBuildError (exit 1) when
    TensorRT fails or builds another precision than asked.
    """
    from runtimes.availability import gpus, is_available

    onnx, save_engine = Path(onnx), Path(save_engine)
    if not onnx.is_file():
        raise UsageError(f"{onnx} does not exist: give the ONNX file to build from (--onnx)")
    if builder_optimization_level is not None and builder_optimization_level not in OPTIMIZATION_LEVELS:
        raise UsageError(f"--builderOptimizationLevel must be 0..5, got {builder_optimization_level}")
    low, opt, high = (parse_shapes(s) if isinstance(s, str) else s
                      for s in (min_shapes, opt_shapes, max_shapes))
    profile = resolve_profile(onnx_inputs(onnx), low, opt, high, spec=spec)
    pools = parse_mem_pool_size(mem_pools) if isinstance(mem_pools, str) else dict(mem_pools or {})
    if workspace is not None:
        pools["workspace"] = parse_size(workspace) if isinstance(workspace, str) else int(workspace)
    available, reason = is_available("tensorrt")
    if not available:
        raise DependencyError(f"cannot build a TensorRT engine: {reason}")

    from runtimes.tensorrt_runner import require_tensorrt, trt_major

    version = require_tensorrt()
    plan = precision_plan(trt_major(version), fp16, onnx)
    if plan.convert_from is not None:
        _convert_fp16(plan.convert_from, plan.onnx)
    cache = Path(timing_cache) if timing_cache else None
    cache_before = cache.stat().st_size if cache and cache.is_file() else None
    started = time.perf_counter()
    engine = _build(plan, profile, pools, cache, builder_optimization_level, verbose)
    build_time = time.perf_counter() - started
    layers = layer_precisions(inspect_layers(engine))
    check_precision(plan.requested, layers, save_engine)
    sidecar_path(save_engine).unlink(missing_ok=True)  # a stale one would describe the old engine
    _save(engine, save_engine)
    inference = None if skip_inference else smoke_test(save_engine, profile)
    from exporter.provenance import sha256_file, write_json

    sidecar = make_sidecar(
        engine=save_engine, onnx=plan.onnx, onnx_sha256=sha256_file(plan.onnx),
        trt_version=version, gpu=gpus()[0][0], profile=profile, plan=plan,
        layers=layers, build_time_s=build_time, memory_pools=pools,
        timing_cache=None if cache is None else {
            "path": str(cache), "reused": cache_before is not None, "bytes_before": cache_before,
            "bytes_after": cache.stat().st_size if cache.is_file() else None},
        builder_optimization_level=builder_optimization_level, inference=inference)
    write_json(sidecar_path(save_engine), sidecar)
    return sidecar


def _convert_fp16(source: Path, target: Path) -> None:
    try:
        from exporter.export import convert_fp16  # type: ignore[import-not-found,unused-ignore]
    except ImportError as error:
        raise DependencyError(f"{target} is missing and the FP16 converter is unavailable "
                              f"({error}): run crossrt export-onnx MODEL --fp16 first") from error
    convert_fp16(source, target)


def _build(plan: PrecisionPlan, profile: Profile, pools: dict[str, int],
           cache: Path | None, level: int | None, verbose: bool) -> trt.ICudaEngine:
    import tensorrt as trt
    from polygraphy.backend.trt import (CreateConfig, EngineFromNetwork, NetworkFromOnnxPath,
                                        Profile as PolygraphyProfile)
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    polygraphy_profile = PolygraphyProfile()
    for name, (low, opt, high) in profile.items():
        polygraphy_profile.add(name, min=low, opt=opt, max=high)
    config = CreateConfig(
        fp16=plan.builder_fp16, profiles=[polygraphy_profile],
        memory_pool_limits={trt.MemoryPoolType.__members__[MEM_POOLS[p]]: n
                            for p, n in pools.items()} or None,
        load_timing_cache=str(cache) if cache else None, builder_optimization_level=level,
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED)  # for the layer inspection
    network = NetworkFromOnnxPath(str(plan.onnx), strongly_typed=plan.strongly_typed)
    try:
        with G_LOGGER.verbosity(G_LOGGER.VERBOSE if verbose else G_LOGGER.ERROR):
            return EngineFromNetwork(network, config, save_timing_cache=str(cache) if cache else None)()
    except PolygraphyException as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no message"
        raise EngineBuildError(f"TensorRT could not build {plan.onnx}: {first}") from error


def inspect_layers(engine: trt.ICudaEngine) -> list[Any]:
    """The engine inspector's per-layer records (dicts when built with DETAILED verbosity)."""
    import tensorrt as trt

    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    layers: list[Any] = info.get("Layers", [])
    return layers


def _save(engine: trt.ICudaEngine, path: Path) -> None:
    """Polygraphy's SaveEngine into a temporary file beside ``path``, then an atomic rename."""
    from polygraphy.backend.trt import SaveEngine

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        SaveEngine(engine, str(temporary))()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def smoke_test(engine: Path, profile: Profile) -> dict[str, Any]:
    """Run the new engine at its profile's min, opt and max shapes on seeded random inputs."""
    import numpy as np

    from runtimes.tensorrt_runner import TensorRTRunner

    rng = np.random.default_rng(0)
    checked = []
    with TensorRTRunner(engine) as runner:
        specs = runner.input_specs
        for index, label in enumerate(("min", "opt", "max")):
            feed = {name: rng.standard_normal(profile[name][index] if name in profile
                                              else tuple(d or 1 for d in spec.shape)
                                              ).astype(spec.dtype)
                    for name, spec in specs.items()}
            outputs = runner.infer(feed)
            if not all(np.isfinite(v).all() for v in outputs.values()):
                raise EngineBuildError(f"engine {engine} gives NaN/Inf at its {label} shapes "
                                       f"({ {n: format_shape(s[index]) for n, s in profile.items()} })")
            checked.append(label)
    return {"ran": checked, "finite": True}
