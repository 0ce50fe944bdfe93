"""What an engine is, proven and written down: layer precisions, the sidecar, where it may run.

Precision is proven from up to three sources, all counted by :func:`layer_precisions` in the
engine inspector's schema:
- ``network``: the parsed network's layer output types (before the builder; shape layers are
  INT64 and are not counted as compute);
- ``builder``: the layer report the builder logs at ``ProfilingVerbosity.DETAILED`` (one line
  per kernel, ``Datatype: Half/Float`` on its tensors); available without a GPU;
- ``inspector``: the engine inspector on the deserialised engine, where a GPU can load it.
The strongest source available decides (inspector, then builder, then network), and an FP16
request whose engine has no FP16 compute layer is an error.

The sidecar ``ENGINE.json`` beside every engine records backend, version, targets, options,
profiles, precision evidence, build time and memory, plan size and hash, and the ONNX (with
its export manifest) the plan came from; :func:`check_loadable` reads it and the plan header
to refuse, before deserialisation, a plan this machine cannot load.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import DependencyError, EngineBuildError, UsageError
from core.files import OutputKind, Schema, json_document, read_json, schema_problem
from core.layout import fp16_graph_name
from core.provenance import sha256_file
from core.spec import FP16, FP32, Precision
from runtimes.trt_backends import BACKENDS, Backend, parse_compute, plan_backend, read_plan_header
from runtimes.trtexec import Profile

# Substrings of a data-type text, most specific first ("BFloat16" holds "Float")
_PRECISION_WORDS = (("BFLOAT16", "bf16"), ("BF16", "bf16"), ("FP8", "fp8"), ("FLOAT8", "fp8"),
                    ("HALF", FP16), ("FP16", FP16), ("FLOAT16", FP16), ("INT64", "int64"),
                    ("INT32", "int32"), ("INT8", "int8"), ("UINT8", "uint8"), ("BOOL", "bool"),
                    ("FP32", FP32), ("FLOAT", FP32))
# What every sidecar holds (the records crossrt reads back); newer ones hold more
SIDECAR_SCHEMA: Schema = {
    "engine": str, "backend": str, "tensorrt_version": str, "targets": (list, type(None)),
    "onnx": {"path": str, "sha256": str}, "profiles": list,
    "precision": {"engine": str, "layers": dict, "source": str},
    "build": {"seconds": (int, float), "plan_bytes": int, "plan_sha256": str},
    "inference_check": (dict, type(None))}
_REBUILD = "rebuild the engine with crossrt build-engine"
_NOT_COMPUTE = ("Reformat", "NoOp")  # layers that only move or relabel data
_EVIDENCE_ORDER = ("inspector", "builder", "network")  # strongest first


# -- precision plan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionPlan:
    """How a requested precision is built by a given backend."""

    requested: Precision
    onnx: Path  # the graph the network is parsed from
    builder_fp16: bool  # TensorRT 10: the FP16 builder flag on the FP32 graph
    strongly_typed: bool  # TensorRT >= 11 and TensorRT-RTX: types come from the graph
    convert_from: Path | None = None  # FP32 graph to convert into ``onnx`` before building

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def precision_plan(has_fp16_flag: bool, fp16: bool, onnx: Path) -> PrecisionPlan:
    """With the FP16 builder flag (TensorRT 10) FP16 is a flag on the FP32 graph; without it
    (TensorRT 11, TensorRT-RTX: strongly typed) it is the FP16 graph, converted if missing."""
    if has_fp16_flag:
        return PrecisionPlan(FP16 if fp16 else FP32, onnx, builder_fp16=fp16,
                             strongly_typed=False)
    if not fp16:
        return PrecisionPlan(FP32, onnx, builder_fp16=False, strongly_typed=True)
    target = onnx.with_name(fp16_graph_name(onnx.name))
    return PrecisionPlan(FP16, target, builder_fp16=False, strongly_typed=True,
                         convert_from=None if target.is_file() else onnx)


# -- counting layers -----------------------------------------------------------------------------
def tensor_precision(tensor: dict[str, Any]) -> str | None:
    """A layer input/output record -> 'fp16', 'fp32', ... (TensorRT 10, 11 and RTX keys)."""
    text = tensor.get("Format/Datatype") or " ".join(
        str(tensor[k]) for k in ("Datatype", "DataType", "Format") if tensor.get(k))
    upper = str(text).upper()
    return next((label for word, label in _PRECISION_WORDS if word in upper), None)


def layer_precisions(layers: list[Any]) -> dict[str, int]:
    """Count compute layers by the precision of their first output; 'unknown' when not detailed.
    Layers with no output (shape calls) and data movement (Reformat, NoOp) are not compute."""
    counts: dict[str, int] = {}
    for layer in layers:
        if not isinstance(layer, dict):  # profiling verbosity below DETAILED: names only
            counts["unknown"] = counts.get("unknown", 0) + 1
            continue
        outputs = layer.get("Outputs")
        if outputs == [] or any(word in str(layer.get("LayerType", "")) for word in _NOT_COMPUTE):
            continue
        label = (tensor_precision(outputs[0]) if outputs else None) or "unknown"
        counts[label] = counts.get(label, 0) + 1
    return counts


_REPORT_LINE = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<type>[^,]*), .*?"
                          r"Outputs: \[(?P<outputs>.*?)\], TacticName:")


def builder_layers(messages: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The builder's DETAILED layer report (``Layers:`` then one ``Name: ..., LayerType: ...,
    Outputs: [ { ..., Datatype: Half, ... }]`` line per kernel) as inspector-style records."""
    layers = []
    for _, message in messages:
        if not message.startswith("Layers:"):
            continue
        for line in message.splitlines()[1:]:
            match = _REPORT_LINE.match(line)
            if match is None:
                continue
            outputs = [{"Datatype": d} for d in re.findall(r"Datatype: (\w+)", match["outputs"])]
            layers.append({"Name": match["name"], "LayerType": match["type"], "Outputs": outputs})
    return layers


def network_precisions(network: Any) -> dict[str, int]:
    """The parsed network's layers by output type: what a strongly typed build must honour."""
    counts: dict[str, int] = {}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.num_outputs:
            label = tensor_precision({"Datatype": str(layer.get_output(0).dtype)}) or "unknown"
            counts[label] = counts.get(label, 0) + 1
    return counts


def decisive(evidence: dict[str, dict[str, int] | None]) -> tuple[str, dict[str, int]]:
    """The strongest source of layer counts available, and its counts."""
    for source in _EVIDENCE_ORDER:
        counts = evidence.get(source)
        if counts and any(k in counts for k in (*Precision, "bf16", "fp8")):
            return source, counts
    return "none", {}


def engine_precision(counts: dict[str, int]) -> str:
    """'fp16' (all floating-point layers in FP16), 'mixed', 'fp32' or 'unknown'."""
    half, single = counts.get(FP16, 0), counts.get(FP32, 0)
    if half and single:
        return "mixed"
    if half or single:
        return FP16 if half else FP32
    return "unknown"


def fp16_share(counts: dict[str, int]) -> float | None:
    """FP16 compute layers as a fraction of the floating-point ones."""
    floating = counts.get(FP16, 0) + counts.get(FP32, 0)
    return counts.get(FP16, 0) / floating if floating else None


def check_precision(requested: str, counts: dict[str, int], engine: Path) -> None:
    """An FP16 request must yield FP16 layers; an engine whose precision is unknown is no proof."""
    if requested != FP16:
        return
    if counts.get(FP16, 0) == 0:
        found = ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "no layers"
        raise EngineBuildError(f"--fp16 was requested but the built engine {engine} has no FP16 "
                               f"layers ({found}): TensorRT chose FP32 kernels; this GPU may lack "
                               "fast FP16, or the graph pins FP32")


def counts_text(counts: dict[str, int]) -> str:
    """``116 fp16 / 17 fp32`` (the summary line's layer counts)."""
    return " / ".join(f"{counts.get(p, 0)} {p}" for p in Precision) + (
        f" (+{sum(v for k, v in counts.items() if k not in set(Precision))} other)"
        if set(counts) - set(Precision) else "")


# -- sidecar -------------------------------------------------------------------------------------
def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def _is_plan(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return plan_backend(handle.read(4)) is not None
    except OSError:
        return False


def _is_sidecar(path: Path) -> bool:
    return schema_problem(json_document(path), SIDECAR_SCHEMA) is None


PLAN = OutputKind("TensorRT engine", _is_plan)
SIDECAR = OutputKind("engine sidecar", _is_sidecar)


def read_sidecar(engine: str | Path) -> dict[str, Any] | None:
    """The sidecar beside ``engine``, checked (None when there is none)."""
    path = sidecar_path(engine)
    if not path.exists():
        return None
    sidecar: dict[str, Any] = read_json(path, "the engine's sidecar", _REBUILD, SIDECAR_SCHEMA)
    return sidecar


def plan_matches(engine: Path, sidecar: dict[str, Any]) -> str | None:
    """None when the plan at ``engine`` is the one its sidecar describes (size, then sha256),
    else what differs: a truncated plan, or the sidecar of another build."""
    build = sidecar["build"]
    try:
        size = engine.stat().st_size
    except OSError as error:
        return f"it cannot be read ({error.strerror})"
    if size != build["plan_bytes"]:
        return f"it has {size} bytes, its sidecar says {build['plan_bytes']} (truncated, or " \
               "the sidecar of another build)"
    if sha256_file(engine) != build["plan_sha256"]:
        return "its sha256 is not the one its sidecar records (the sidecar of another build?)"
    return None


def make_sidecar(*, engine: Path, backend: Backend, version: str, targets: list[str] | None,
                 gpu: dict[str, Any] | None, onnx: dict[str, Any], profile: Profile,
                 plan: PrecisionPlan, evidence: dict[str, dict[str, int] | None],
                 options: dict[str, Any], build: dict[str, Any],
                 inference: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON written beside an engine: enough to know what it is and where it can run."""
    source, counts = decisive(evidence)
    return {
        "engine": engine.name,
        "backend": backend.name,
        "tensorrt_version": version,
        "targets": targets,  # TensorRT-RTX compute capabilities; None: the build GPU
        "gpu": gpu,  # the GPU it was built on (full TensorRT), None when built without one
        "onnx": onnx,
        "profiles": [{name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])}
                      for name, s in profile.items()}],
        "precision": {"requested": plan.requested, "engine": engine_precision(counts),
                      "layers": counts, "fp16_share": fp16_share(counts), "source": source,
                      "evidence": evidence, "plan": plan.to_json()},
        "builder_options": options,
        "build": build,
        "inference_check": inference,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def check_loadable(path: Path, sidecar: dict[str, Any] | None,
                   backend_versions: dict[str, str | None], gpu: dict[str, Any] | None) -> Backend:
    """The backend that loads the plan at ``path``; a UsageError/DependencyError (one line)
    when this machine cannot load it: another backend's plan, another version, a GPU it does
    not target. Reads only the header and the sidecar: nothing is deserialised."""
    header = read_plan_header(path)
    backend = BACKENDS[header["backend"]]
    rebuild = f"rebuild it here: crossrt build-engine --onnx MODEL.onnx --saveEngine {path}"
    if sidecar and sidecar.get("backend", backend.name) != backend.name:
        raise UsageError(f"engine {path} is a {backend.title} plan but its sidecar says "
                         f"{sidecar['backend']}: the files do not belong together; {rebuild}")
    if sidecar and (problem := plan_matches(path, sidecar)):
        raise UsageError(f"engine {path} is not the plan its sidecar describes: {problem}; "
                         f"{rebuild}")
    installed = backend_versions.get(backend.name)
    if installed is None:
        other = [b.title for name, b in BACKENDS.items() if backend_versions.get(name)]
        raise DependencyError(f"engine {path} is a {backend.title} plan"
                              + (f", which {' and '.join(other)} cannot load" if other else "")
                              + f": {backend.install}")
    built = (sidecar or {}).get("tensorrt_version") or header.get("version")
    if built and not _same_version(built, installed):
        raise UsageError(f"engine {path} was built by {backend.title} {built} (this machine has "
                         f"{installed}); {rebuild}")
    if gpu is None:
        raise DependencyError(f"engine {path} needs a GPU to run: no GPU is visible here")
    targets = tuple(parse_compute(t) for t in (header.get("targets") or []))
    if backend.target_bits:
        if reason := backend.run_reason(gpu, targets or None):
            raise UsageError(f"engine {path} cannot run here: {reason}")
    else:
        built_gpu = (sidecar or {}).get("gpu") or {}
        if built_gpu.get("compute_capability") and \
                built_gpu["compute_capability"] != gpu.get("compute_capability"):
            raise UsageError(f"engine {path} was built for {built_gpu.get('name', 'a GPU')} with "
                             f"compute capability {built_gpu['compute_capability']} (this machine "
                             f"has {gpu.get('name')} with {gpu.get('compute_capability')}); "
                             f"{rebuild}")
    return backend


def _same_version(built: str, installed: str) -> bool:
    """Plans are tied to major.minor.patch (TensorRT-RTX headers carry only those three)."""
    return built.split(".")[:3] == installed.split(".")[:3]


def targets_text(targets: list[str] | None) -> str:
    return f"compute capability {', '.join(targets)}" if targets else "the GPU it was built on"

