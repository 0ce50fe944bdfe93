"""``crossrt build-engine``: a trtexec-like engine build on Polygraphy's loaders, one builder for
full TensorRT and TensorRT-RTX (see ``trt_backends``).

    check the request (shapes, pools, targets, options the backend refuses)  -> no TensorRT yet
    NetworkFromOnnxPath -> CreateConfig / CreateConfigRTX -> EngineBytesFromNetwork
    prove the precision (network types, builder report, inspector where a GPU loads it)
    write plan + sidecar atomically; run it at min/opt/max shapes where it can run here

Precision: with the FP16 builder flag (TensorRT 10) ``fp16`` sets it on the FP32 graph.
Strongly typed backends (TensorRT 11, TensorRT-RTX) have no flag, so ``fp16`` builds the FP16
graph (``model.fp16.onnx``, converted on the fly when missing); ``polygraphy convert --fp16``
would silently build FP32 there. Either way an FP16 request that gives no FP16 layer fails.
"""

from __future__ import annotations

import hashlib
import re
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import files, graphs, provenance
from core.errors import EngineBuildError, UsageError, first_line
from core.interrupts import deferred_interrupts
from core.layout import ExportDir, fp16_graph_name
from core.log import log
from runtimes import engine_info as info
from runtimes import probe
from runtimes import trt_backends as backends
from runtimes.trtexec import (
    MEM_POOLS,
    OPTIMIZATION_LEVELS,
    Profile,
    Shape,
    format_shape,
    onnx_inputs,
    parse_mem_pool_size,
    parse_shapes,
    resolve_profile,
)

_DLA_POOLS = ("dlaSRAM", "dlaLocalDRAM", "dlaGlobalDRAM")
MAX_POOL_BYTES = 1 << 40  # 1 TiB: far past any GPU; a larger --memPoolSize is a typo
_QUIET = 100  # above Polygraphy's CRITICAL: its own messages would break the one-line contract


@dataclass(frozen=True)
class EngineRequest:
    """One engine build, typed: what ``crossrt build-engine``'s trtexec flags ask for.

    Build one from trtexec's strings with :meth:`from_trtexec` (the CLI does); unset options
    are left to TensorRT (shapes: batch 1/4/8 on a graph whose only dynamic dimension is the
    batch, as PaddleClas's latency tables).
    """

    onnx: Path
    engine: Path
    fp16: bool = False
    min_shapes: Mapping[str, Shape] | None = None
    opt_shapes: Mapping[str, Shape] | None = None
    max_shapes: Mapping[str, Shape] | None = None
    memory_pools: Mapping[str, int] = field(default_factory=dict)  # pool -> bytes
    timing_cache: Path | None = None
    optimization_level: int | None = None
    compute_capabilities: tuple[backends.Compute, ...] | None = None  # TensorRT-RTX targets
    backend: str = "auto"
    skip_inference: bool = False
    verbose: bool = False
    force: bool = False  # replace an existing --saveEngine that crossrt did not write

    @classmethod
    def from_trtexec(cls, onnx: str | Path, save_engine: str | Path | None = None, *,
                     fp16: bool = False, min_shapes: str | None = None,
                     opt_shapes: str | None = None, max_shapes: str | None = None,
                     mem_pool_size: str | None = None, timing_cache: str | Path | None = None,
                     builder_optimization_level: int | None = None,
                     compute_capabilities: str | None = None, backend: str = "auto",
                     skip_inference: bool = False, verbose: bool = False,
                     force: bool = False) -> EngineRequest:
        """trtexec's vocabulary (``x:1x3x224x224``, ``workspace:2G``, ``8.6,8.9``) parsed and
        checked; the engine defaults to ``model[.fp16].engine`` beside the graph."""
        onnx = Path(onnx)

        def shapes(text: str | None) -> dict[str, Shape] | None:
            return None if text is None else parse_shapes(text)

        return cls(onnx=onnx, engine=Path(save_engine) if save_engine is not None
                   else default_engine_path(onnx, fp16), fp16=fp16,
                   min_shapes=shapes(min_shapes), opt_shapes=shapes(opt_shapes),
                   max_shapes=shapes(max_shapes),
                   memory_pools={} if mem_pool_size is None else parse_mem_pool_size(mem_pool_size),
                   timing_cache=Path(timing_cache) if timing_cache is not None else None,
                   optimization_level=builder_optimization_level,
                   compute_capabilities=(None if compute_capabilities is None
                                         else backends.parse_computes(compute_capabilities)),
                   backend=backend, skip_inference=skip_inference, verbose=verbose,
                   force=force)


@dataclass(frozen=True)
class _Built:
    """What the builder made: the serialized plan, its layer counts per source, its cost."""

    data: Any
    evidence: dict[str, dict[str, int] | None]
    seconds: float
    timing_cache: dict[str, Any] | None


def build_engine(request: EngineRequest) -> dict[str, Any]:
    """Build, check and save the engine ``request`` asks for; returns the sidecar (also
    written to ``ENGINE.json``).

    UsageError (exit 2) for a bad request or a graph TensorRT cannot parse; DependencyError
    (exit 2) without a backend that builds here; EngineBuildError (exit 1) when TensorRT fails
    or builds another precision than asked.
    """
    profile, export = _check_request(request)
    backend = backends.select_backend(request.backend)
    _refuse_unsupported(backend, request)
    backends.use_backend(backend)
    plan = info.precision_plan(backend.has_fp16_flag(), request.fp16, request.onnx)
    if plan.convert_from is not None:
        graphs.convert_fp16(plan.convert_from, plan.onnx)
    log.info(f"building {request.engine.name} from {plan.onnx.name} with {backend.title}")
    built = _build(backend, plan, profile, request)
    found, _ = probe.gpus()
    gpu = found[0] if found else None
    why_not_here = backend.run_reason(gpu, request.compute_capabilities)  # None: runs here
    if why_not_here is None:
        built.evidence["inspector"] = info.layer_precisions(_inspect(backend, built.data))
    info.check_precision(plan.requested, info.decisive(built.evidence)[1], request.engine)
    _write_plan(request.engine, built.data)
    inference: dict[str, Any] | None = (
        None if request.skip_inference else
        smoke_test(request.engine, profile) if why_not_here is None else {"skipped": why_not_here})
    sidecar = _sidecar(request, backend, plan, profile, built, gpu, inference, export)
    files.write_json(info.sidecar_path(request.engine), sidecar)
    return sidecar


def _check_request(request: EngineRequest) -> tuple[Profile, dict[str, Any] | None]:
    """Everything that can be refused before TensorRT is loaded: the profile to build, and
    the export the graph belongs to (None outside an export; a corrupt manifest is refused)."""
    onnx = request.onnx
    if not onnx.is_file():
        what = "is a folder" if onnx.is_dir() else "does not exist"
        raise UsageError(f"{onnx} {what}: give the ONNX file to build from (--onnx)")
    level = request.optimization_level
    if level is not None and level not in OPTIMIZATION_LEVELS:
        raise UsageError(f"--builderOptimizationLevel must be 0..5, got {level}")
    for pool, size in request.memory_pools.items():
        if not 0 < size <= MAX_POOL_BYTES:
            raise UsageError(f"--memPoolSize {pool}:{size >> 20} MiB is out of range: give "
                             f"more than 0 and at most {MAX_POOL_BYTES >> 40} TiB")
    fp16_graph = onnx.with_name(fp16_graph_name(onnx.name))
    export = ExportDir(onnx.parent)
    inputs = [("--onnx", onnx), ("--onnx", onnx.with_name(f"{onnx.name}.data")),
              ("the FP16 graph", fp16_graph), ("the FP16 graph", fp16_graph.with_name(
                  f"{fp16_graph.name}.data")), ("the export's manifest", export.manifest_path)]
    files.check_outputs([files.Output("--saveEngine", request.engine, info.PLAN),
                         files.Output("the engine's sidecar", info.sidecar_path(request.engine),
                                      info.SIDECAR)],
                        [(flag, path) for flag, path in inputs if path.exists()],
                        force=request.force)
    export_record = _export_record(onnx)
    return resolve_profile(onnx_inputs(onnx), request.min_shapes, request.opt_shapes,
                           request.max_shapes), export_record


def _write_plan(engine: Path, data: Any) -> None:
    """The plan, atomically; a sidecar left from an older plan is removed first (it would
    describe the old one)."""
    info.sidecar_path(engine).unlink(missing_ok=True)
    files.write_atomic(engine, memoryview(data))


def _sidecar(request: EngineRequest, backend: backends.Backend, plan: info.PrecisionPlan,
             profile: Profile, built: _Built, gpu: dict[str, Any] | None,
             inference: dict[str, Any] | None, export: dict[str, Any] | None) -> dict[str, Any]:
    targets = request.compute_capabilities
    plan_targets = [backends.format_compute(t) for t in targets or backend.default_targets] or None
    data = memoryview(built.data)
    return info.make_sidecar(
        engine=request.engine, backend=backend, version=backend.version() or "unknown",
        targets=plan_targets if backend.target_bits else None,
        gpu=None if backend.builds_without_gpu else gpu,
        onnx={"path": str(plan.onnx), "sha256": provenance.sha256_file(plan.onnx),
              "manifest": export},
        profile=profile, plan=plan, evidence=built.evidence,
        options={"memory_pools": dict(request.memory_pools),
                 "builder_optimization_level": request.optimization_level,
                 "compute_capabilities": plan_targets if targets else None,
                 "timing_cache": built.timing_cache},
        build={"seconds": round(built.seconds, 3), "peak_rss_mb": _peak_rss_mb(),
               "plan_bytes": len(data), "plan_sha256": hashlib.sha256(data).hexdigest()},
        inference=inference)


def _refuse_unsupported(backend: backends.Backend, request: EngineRequest) -> None:
    """Options TensorRT-RTX would accept and then fail on only in its log, refused up front."""
    if request.compute_capabilities is not None:
        backend.check_targets(request.compute_capabilities)
        fp16_only = [t for t in request.compute_capabilities if t in backend.fp16_only_targets]
        if fp16_only and not request.fp16:
            shown = backends.format_computes(tuple(fp16_only))
            raise UsageError(f"--computeCapabilities {shown}: {backend.title} builds only FP16 "
                             f"engines for {shown} (it has no FP32 GEMM kernels there); add "
                             f"--fp16, or leave {shown} out")
    if not backend.target_bits:
        return
    if dla := [p for p in request.memory_pools if p in _DLA_POOLS]:
        raise UsageError(f"--memPoolSize {dla[0]}: TensorRT-RTX has no DLA; use workspace or "
                         "tacticSharedMem")
    if request.timing_cache is not None:
        raise UsageError("--timingCacheFile: TensorRT-RTX keeps no timing cache (it compiles "
                         "kernels on the device at first run); drop the flag")


def _build(backend: backends.Backend, plan: info.PrecisionPlan, profile: Profile,
           request: EngineRequest) -> _Built:
    """The serialized plan, the layer counts of the network and of the builder's report, the
    build's seconds and what it did to the timing cache."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = backend.load()
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    cache = request.timing_cache
    cache_before = cache.stat().st_size if cache and cache.is_file() else None
    started = time.perf_counter()
    # Ctrl-C or SIGTERM: the build is cancelled at its next step and the interrupt raised once
    # TensorRT returns (raised inside its callbacks, TensorRT would swallow it)
    with deferred_interrupts() as interrupted, backends.BuildLog.capture() as messages, \
            G_LOGGER.verbosity(G_LOGGER.VERBOSE if request.verbose else _QUIET):
        config = _config(backend, plan, profile, request, trt,
                         backends.progress_monitor(trt, lambda: interrupted.pending))
        try:
            parsed = NetworkFromOnnxPath(str(plan.onnx), strongly_typed=plan.strongly_typed)()
        except PolygraphyException as error:
            raise UsageError(_parse_failure(plan.onnx, messages, error)) from error
        network_counts = info.network_precisions(parsed[1])
        try:
            data = EngineBytesFromNetwork(parsed, config,
                                          save_timing_cache=str(cache) if cache else None)()
        except PolygraphyException as error:
            raise _build_failure(plan.onnx, messages, error, request.memory_pools) from error
    seconds = time.perf_counter() - started
    evidence = {"network": network_counts,
                "builder": info.layer_precisions(info.builder_layers(messages)) or None}
    timing_cache = None if cache is None else {
        "path": str(cache), "reused": cache_before is not None, "bytes_before": cache_before,
        "bytes_after": cache.stat().st_size if cache.is_file() else None}
    return _Built(data, evidence, seconds, timing_cache)


def _config(backend: backends.Backend, plan: info.PrecisionPlan, profile: Profile,
            request: EngineRequest, trt: Any, monitor: Any | None) -> Any:
    """Polygraphy's builder config: the one profile, pools, level, targets or FP16 flag."""
    from polygraphy.backend.trt import Profile as PolygraphyProfile

    polygraphy_profile = PolygraphyProfile()
    for name, (low, opt, high) in profile.items():
        polygraphy_profile.add(name, min=low, opt=opt, max=high)
    options: dict[str, Any] = dict(
        profiles=[polygraphy_profile], builder_optimization_level=request.optimization_level,
        memory_pool_limits={trt.MemoryPoolType.__members__[MEM_POOLS[p]]: n
                            for p, n in request.memory_pools.items()} or None,
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED)  # the builder's layer report
    if monitor is not None:
        options["progress_monitor"] = monitor
    if backend.target_bits:
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

        targets = request.compute_capabilities
        return CreateConfigRTX(compute_capabilities=list(targets) if targets else None, **options)
    from polygraphy.backend.trt import CreateConfig

    cache = request.timing_cache
    return CreateConfig(fp16=plan.builder_fp16, load_timing_cache=str(cache) if cache else None,
                        **options)


def _parse_failure(onnx: Path, messages: list[tuple[str, str]], error: Exception) -> str:
    """One line: the node TensorRT's ONNX parser stopped at and why, or the unreadable file."""
    text = "\n".join(m for level, m in messages if level in ("ERROR", "INTERNAL_ERROR"))
    node = re.search(r"While parsing node number (\d+) \[(\S+) -> ", text)
    name = re.search(r"Node name: (.*)", text)
    if node:
        last = text.strip().splitlines()[-1]
        quoted = re.search(r'"([^"]+)"', last)  # the parser's assertion text, when it has one
        reason = (quoted[1] if quoted else last.lstrip("[0123456789] ")).strip()
        return (f"TensorRT cannot parse {onnx}: node {name[1].strip() if name else '?'!r} "
                f"(op {node[2]}, number {node[1]}): {reason}; remove or replace that op "
                "(TensorRT supports the standard ONNX domain)")
    if "MODEL_DESERIALIZE_FAILED" in text or "Failed to parse the ONNX model" in text:
        return f"{onnx} is not a readable ONNX model (corrupt or truncated); export it again"
    return f"TensorRT cannot parse {onnx}: {backends.first_error(messages) or error}"


def _build_failure(onnx: Path, messages: list[tuple[str, str]], error: Exception,
                   pools: Mapping[str, int]) -> Exception:
    """A workspace limit too small is the user's to fix (exit 2); anything else is TensorRT's."""
    first = backends.first_error(messages) or first_line(error)
    memory = re.search(r"OutOfMemory \(Requested size was (\d+) bytes", first)
    if "workspace" in pools and (memory or "workspace limit" in first):
        limit = pools["workspace"] / (1 << 20)
        asked = f"TensorRT asked for {int(memory[1]) / (1 << 20):.1f} MiB" if memory else \
            "no kernel fits in it"
        return UsageError(f"--memPoolSize workspace:{limit:g} (MiB) is too small for {onnx.name}: "
                          f"{asked}; raise it (e.g. workspace:1024) or drop the limit")
    return EngineBuildError(f"TensorRT could not build {onnx}: {first}")


def _inspect(backend: backends.Backend, data: Any) -> list[Any]:
    """The engine inspector's per-layer records (a GPU that runs the plan is needed)."""
    import json

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = backend.load()
    from polygraphy.backend.trt import EngineFromBytes

    engine = EngineFromBytes(data)()
    inspector = engine.create_engine_inspector()
    layers: list[Any] = json.loads(inspector.get_engine_information(
        trt.LayerInformationFormat.JSON)).get("Layers", [])
    return layers


def _export_record(onnx: Path) -> dict[str, Any] | None:
    """The export the ONNX belongs to, as far as the engine needs it (None outside one); a
    graph edited since export is built as it is now, and said so (as validate does)."""
    export = ExportDir(onnx.parent)
    if not export.is_export():
        return None
    manifest = export.manifest()  # a corrupt one is a one-line UsageError
    edited = [name for name in export.edited_files(manifest, suffix=".onnx")
              if name == onnx.name]
    if edited:
        log.warning(f"{onnx.name} no longer matches the manifest's sha256 (edited after "
                    "export?); building it as it is now")
    return {"path": str(export.manifest_path),
            "sha256": provenance.sha256_file(export.manifest_path),
            "model": manifest["model"], "weights": manifest.get("weights"),
            "edited_since_export": bool(edited)}


def _peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def smoke_test(engine: Path, profile: Profile) -> dict[str, Any]:
    """Run the new engine at its profile's min, opt and max shapes on seeded random inputs,
    with Polygraphy's own TensorRT runner (so building never depends on crossrt's runner)."""
    import numpy as np
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    rng = np.random.default_rng(0)
    checked = []
    with TrtRunner(EngineFromBytes(BytesFromPath(str(engine)))) as runner:
        metadata = runner.get_input_metadata()
        for index, label in enumerate(("min", "opt", "max")):
            feed = {name: rng.standard_normal(profile[name][index] if name in profile else
                                              tuple(d if isinstance(d, int) and d > 0 else 1
                                                    for d in meta.shape)
                                              ).astype(meta.dtype.numpy())
                    for name, meta in metadata.items()}
            outputs = runner.infer(feed)
            if not all(np.isfinite(v).all() for v in outputs.values()):
                raise EngineBuildError(
                    f"engine {engine} gives NaN/Inf at its {label} shapes "
                    f"({ {n: format_shape(s[index]) for n, s in profile.items()} })")
            checked.append(label)
    return {"ran": checked, "finite": True}


def default_engine_path(onnx: Path, fp16: bool) -> Path:
    """``model.onnx`` -> ``model.engine`` / ``model.fp16.engine`` beside it."""
    from core.layout import engine_name

    return onnx.with_name(engine_name(onnx.name, fp16))


def cached_engine(onnx: Path, fp16: bool) -> Path | None:
    """The engine built from ``onnx`` (or its FP16 graph) when its sidecar's ONNX hash is the
    graph's current one; None when missing or stale."""
    engine = default_engine_path(onnx, fp16)
    try:
        sidecar = info.read_sidecar(engine)
    except UsageError:
        return None
    if not engine.is_file() or not sidecar or info.plan_matches(engine, sidecar):
        return None  # missing, or truncated / of another build: built again
    built_from = Path(sidecar["onnx"]["path"])
    if not built_from.is_file() or sidecar["onnx"]["sha256"] != provenance.sha256_file(built_from):
        return None
    return engine


def ensure_engine(onnx: Path, fp16: bool, *, backend: str | None = None,
                  ) -> tuple[Path, dict[str, Any], bool]:
    """The engine for ``onnx``, reused when its graph is unchanged (by hash), else built:
    (path, sidecar, reused)."""
    engine = cached_engine(onnx, fp16)
    if engine is not None:
        sidecar = info.read_sidecar(engine)
        assert sidecar is not None
        if backend in (None, "auto", sidecar.get("backend")):
            return engine, sidecar, True
    request = EngineRequest(onnx, default_engine_path(onnx, fp16), fp16, backend=backend or "auto")
    return request.engine, build_engine(request), False


def engine_summary(engine: Path, sidecar: dict[str, Any], reused: bool = False) -> str:
    """Two lines: what was built (backend, size, time, precision with its layer counts, targets)
    and whether it ran."""
    precision, build = sidecar["precision"], sidecar["build"]
    check = sidecar.get("inference_check")
    ran = ("ran at min/opt/max shapes: finite outputs" if check and check.get("ran") else
           f"not run here: {check['skipped']}" if check and check.get("skipped") else
           "not run (--skipInference)")
    return (f"{engine}: {sidecar['backend']} {sidecar['tensorrt_version']}, "
            f"{build['plan_bytes'] / 1e6:.1f} MB "
            + ("(reused: its graph is unchanged), " if reused else f"in {build['seconds']:.1f} s, ")
            + f"{precision['engine']} ({info.counts_text(precision['layers'])} layers, from the "
            f"{precision['source']}), for {info.targets_text(sidecar['targets'])}\n"
            f"  {ran}; sidecar {info.sidecar_path(engine).name}")
