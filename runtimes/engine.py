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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.errors import DependencyError, EngineBuildError, UsageError
from runtimes import engine_info as info
from runtimes import probe
from runtimes import trt_backends as backends
from runtimes.trtexec import (MEM_POOLS, OPTIMIZATION_LEVELS, Profile, Shape, format_shape,
                              onnx_inputs, parse_mem_pool_size, parse_shapes, parse_size,
                              resolve_profile)

if TYPE_CHECKING:
    from exporter.specs import ModelSpec

_DLA_POOLS = ("dlaSRAM", "dlaLocalDRAM", "dlaGlobalDRAM")
_QUIET = 100  # above Polygraphy's CRITICAL: its own messages would break the one-line contract


def build_engine(onnx: str | Path, save_engine: str | Path, fp16: bool = False,
                 min_shapes: dict[str, Shape] | str | None = None,
                 opt_shapes: dict[str, Shape] | str | None = None,
                 max_shapes: dict[str, Shape] | str | None = None,
                 workspace: int | str | None = None, timing_cache: str | Path | None = None,
                 builder_optimization_level: int | None = None, skip_inference: bool = False,
                 verbose: bool = False, spec: ModelSpec | None = None,
                 mem_pools: dict[str, int] | str | None = None, backend: str | None = None,
                 compute_capabilities: tuple[tuple[int, int], ...] | str | None = None,
                 ) -> dict[str, Any]:
    """Build, check and save an engine from an ONNX graph; returns the sidecar (also written to
    ``ENGINE.json``). Shapes take trtexec strings or dicts; ``workspace`` takes bytes or a
    trtexec size (``2048``, ``2G``); ``mem_pools`` a ``--memPoolSize`` string or dict;
    ``backend`` ``auto`` / ``tensorrt`` / ``tensorrt-rtx``; ``compute_capabilities`` the
    TensorRT-RTX targets (``"8.6,8.9"``; default: the library's).

    UsageError (exit 2) for a bad request or a graph TensorRT cannot parse; DependencyError
    (exit 2) without a backend that builds here; EngineBuildError (exit 1) when TensorRT fails
    or builds another precision than asked.
    """
    onnx, save_engine = Path(onnx), Path(save_engine)
    if not onnx.is_file():
        what = "is a folder" if onnx.is_dir() else "does not exist"
        raise UsageError(f"{onnx} {what}: give the ONNX file to build from (--onnx)")
    if save_engine.is_dir():
        raise UsageError(f"{save_engine} is a folder: give the engine file to write (--saveEngine)")
    if builder_optimization_level is not None and builder_optimization_level not in OPTIMIZATION_LEVELS:
        raise UsageError(f"--builderOptimizationLevel must be 0..5, got {builder_optimization_level}")
    low, opt, high = (parse_shapes(s) if isinstance(s, str) else s
                      for s in (min_shapes, opt_shapes, max_shapes))
    manifest, export_spec = _export_record(onnx)
    profile = resolve_profile(onnx_inputs(onnx), low, opt, high, spec=spec or export_spec)
    pools = parse_mem_pool_size(mem_pools) if isinstance(mem_pools, str) else dict(mem_pools or {})
    if workspace is not None:
        pools["workspace"] = parse_size(workspace) if isinstance(workspace, str) else int(workspace)
    targets = (backends.parse_computes(compute_capabilities)
               if isinstance(compute_capabilities, str) else compute_capabilities)
    chosen = backends.select_backend(backend)
    _refuse_unsupported(chosen, pools, timing_cache, targets)

    backends.use_backend(chosen)
    version = chosen.version() or "unknown"
    plan = info.precision_plan(chosen.has_fp16_flag(), fp16, onnx)
    if plan.convert_from is not None:
        _convert_fp16(plan.convert_from, plan.onnx)
    cache = Path(timing_cache) if timing_cache else None
    cache_before = cache.stat().st_size if cache and cache.is_file() else None
    started = time.perf_counter()
    data, evidence = _build(chosen, plan, profile, pools, cache, builder_optimization_level,
                            targets, verbose)
    build_seconds = time.perf_counter() - started
    found, _ = probe.gpus()
    gpu = found[0] if found else None
    plan_targets = [backends.format_compute(t) for t in targets or chosen.default_targets] or None
    why_not_here = chosen.run_reason(gpu, targets)  # None: a GPU here runs this plan
    runs_here = why_not_here is None
    if runs_here:
        evidence["inspector"] = info.layer_precisions(_inspect(chosen, data))
    source, counts = info.decisive(evidence)
    info.check_precision(plan.requested, counts, save_engine)

    from exporter.provenance import sha256_file, write_atomic, write_json

    info.sidecar_path(save_engine).unlink(missing_ok=True)  # a stale one would describe the old plan
    write_atomic(save_engine, memoryview(data))
    inference: dict[str, Any] | None
    if skip_inference:
        inference = None
    elif runs_here:
        inference = smoke_test(save_engine, profile)
    else:
        inference = {"skipped": why_not_here}
    sidecar = info.make_sidecar(
        engine=save_engine, backend=chosen, version=version,
        targets=plan_targets if chosen.target_bits else None,
        gpu=None if chosen.builds_without_gpu else gpu,
        onnx={"path": str(plan.onnx), "sha256": sha256_file(plan.onnx),
              "manifest": manifest},
        profile=profile, plan=plan, evidence=evidence,
        options={"memory_pools": pools, "builder_optimization_level": builder_optimization_level,
                 "compute_capabilities": plan_targets if targets else None,
                 "timing_cache": None if cache is None else {
                     "path": str(cache), "reused": cache_before is not None,
                     "bytes_before": cache_before,
                     "bytes_after": cache.stat().st_size if cache.is_file() else None}},
        build={"seconds": round(build_seconds, 3), "peak_rss_mb": _peak_rss_mb(),
               "plan_bytes": len(memoryview(data)),
               "plan_sha256": hashlib.sha256(memoryview(data)).hexdigest()},  # as written
        inference=inference)
    write_json(info.sidecar_path(save_engine), sidecar)
    return sidecar


def _refuse_unsupported(backend: backends.Backend, pools: dict[str, int],
                        timing_cache: str | Path | None,
                        targets: tuple[tuple[int, int], ...] | None) -> None:
    """Options TensorRT-RTX would accept and then fail on only in its log, refused up front."""
    if targets is not None:
        backend.check_targets(targets)
    if not backend.target_bits:
        return
    if dla := [p for p in pools if p in _DLA_POOLS]:
        raise UsageError(f"--memPoolSize {dla[0]}: TensorRT-RTX has no DLA; use workspace or "
                         "tacticSharedMem")
    if timing_cache is not None:
        raise UsageError("--timingCacheFile: TensorRT-RTX keeps no timing cache (it compiles "
                         "kernels on the device at first run); drop the flag")


def _convert_fp16(source: Path, target: Path) -> None:
    try:
        from exporter.export import convert_fp16  # type: ignore[import-not-found,unused-ignore]
    except ImportError as error:
        raise DependencyError(f"{target} is missing and the FP16 converter is unavailable "
                              f"({error}): run crossrt export-onnx MODEL --fp16 first") from error
    convert_fp16(source, target)


def _build(backend: backends.Backend, plan: info.PrecisionPlan, profile: Profile,
           pools: dict[str, int], cache: Path | None, level: int | None,
           targets: tuple[tuple[int, int], ...] | None, verbose: bool,
           ) -> tuple[Any, dict[str, dict[str, int] | None]]:
    """The serialized plan, and the layer counts of the network and of the builder's report."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = backend.load()
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.backend.trt import Profile as PolygraphyProfile
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    polygraphy_profile = PolygraphyProfile()
    for name, (low, opt, high) in profile.items():
        polygraphy_profile.add(name, min=low, opt=opt, max=high)
    options: dict[str, Any] = dict(
        profiles=[polygraphy_profile], builder_optimization_level=level,
        memory_pool_limits={trt.MemoryPoolType.__members__[MEM_POOLS[p]]: n
                            for p, n in pools.items()} or None,
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED)  # the builder's layer report
    if backend.target_bits:
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

        config: Any = CreateConfigRTX(compute_capabilities=list(targets) if targets else None,
                                      **options)
    else:
        from polygraphy.backend.trt import CreateConfig

        config = CreateConfig(fp16=plan.builder_fp16, load_timing_cache=str(cache) if cache else None,
                              **options)
    with backends.BuildLog.capture() as messages, \
            G_LOGGER.verbosity(G_LOGGER.VERBOSE if verbose else _QUIET):
        try:
            parsed = NetworkFromOnnxPath(str(plan.onnx), strongly_typed=plan.strongly_typed)()
        except PolygraphyException as error:
            raise UsageError(_parse_failure(plan.onnx, messages, error)) from error
        network_counts = info.network_precisions(parsed[1])
        try:
            data = EngineBytesFromNetwork(parsed, config, save_timing_cache=str(cache) if cache else None)()
        except PolygraphyException as error:
            raise _build_failure(plan.onnx, messages, error, pools) from error
    return data, {"network": network_counts,
                  "builder": info.layer_precisions(info.builder_layers(messages)) or None}


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
                   pools: dict[str, int]) -> Exception:
    """A workspace limit too small is the user's to fix (exit 2); anything else is TensorRT's."""
    first = backends.first_error(messages) or str(error).strip().splitlines()[0]
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


def _export_record(onnx: Path) -> tuple[dict[str, Any] | None, ModelSpec | None]:
    """The export the ONNX belongs to, as far as the engine needs it, and its model spec
    (None, None for a graph outside an export)."""
    from exporter.layout import ExportDir
    from exporter.provenance import sha256_file
    from exporter.specs import get_spec

    export = ExportDir(onnx.parent)
    if not export.is_export():
        return None, None
    manifest = export.manifest()  # a corrupt one is a one-line UsageError
    return ({"path": str(export.manifest_path), "sha256": sha256_file(export.manifest_path),
             "model": manifest["model"], "weights": manifest.get("weights")},
            get_spec(manifest["model"]))


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
                raise EngineBuildError(f"engine {engine} gives NaN/Inf at its {label} shapes "
                                       f"({ {n: format_shape(s[index]) for n, s in profile.items()} })")
            checked.append(label)
    return {"ran": checked, "finite": True}


def default_engine_path(onnx: Path, fp16: bool) -> Path:
    """``model.onnx`` -> ``model.engine`` / ``model.fp16.engine`` beside it."""
    from exporter.layout import engine_name

    return onnx.with_name(engine_name(onnx.name, fp16))


def cached_engine(onnx: Path, fp16: bool) -> Path | None:
    """The engine built from ``onnx`` (or its FP16 graph) when its sidecar's ONNX hash is the
    graph's current one; None when missing or stale."""
    from exporter.provenance import sha256_file

    engine = default_engine_path(onnx, fp16)
    try:
        sidecar = info.read_sidecar(engine)
    except UsageError:
        return None
    if not engine.is_file() or not sidecar:
        return None
    built_from = Path(sidecar.get("onnx", {}).get("path", ""))
    if not built_from.is_file() or sidecar["onnx"].get("sha256") != sha256_file(built_from):
        return None
    return engine


def ensure_engine(onnx: Path, fp16: bool, *, backend: str | None = None,
                  spec: ModelSpec | None = None) -> tuple[Path, dict[str, Any], bool]:
    """The engine for ``onnx``, reused when its graph is unchanged (by hash), else built:
    (path, sidecar, reused)."""
    engine = cached_engine(onnx, fp16)
    if engine is not None:
        sidecar = info.read_sidecar(engine)
        assert sidecar is not None
        if backend in (None, "auto", sidecar.get("backend")):
            return engine, sidecar, True
    engine = default_engine_path(onnx, fp16)
    return engine, build_engine(onnx, engine, fp16=fp16, backend=backend, spec=spec), False


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
