"""``crossrt triton``: an export as a Triton Inference Server model repository.

Models written (``NAME`` is the export's model):

- ``NAME``: the classifier. ``onnxruntime_onnx`` (the export's graph, external data beside it),
  optionally with ONNX Runtime's TensorRT execution accelerator (FP16); or, with
  ``classifier_backend="python"``, the same graph run by ONNX Runtime inside Triton's Python
  backend (for CPU-only hosts, and for servers without the ONNX Runtime backend).
- ``NAME_trt``: with ``engine``, the plan as ``tensorrt_plan``, its max batch within the plan's
  profile.
- with ``ensemble``: ``NAME_preprocess`` (Python backend: image bytes decoded and preprocessed by
  crossrt's own ``core.preprocess``, copied beside it with the export's spec, so the pixels are
  crossrt's), ``NAME_postprocess`` (top-k probabilities, class ids and names from the label
  list) and ``NAME_pipeline``, the ensemble of the three: a client sends a JPEG, gets labels.

Every config is built as Triton's own ``ModelConfig`` protobuf (tritonclient's
``model_config_pb2``), written as text and parsed back, and checked against the graph or the plan
(input and output names, dims without the batch, dtypes, the batch dimension and its range):
a mismatch is one UsageError (exit 2). The repository is written beside ``out`` and renamed into
place, as exports are.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import files
from core.errors import DependencyError, UsageError
from core.layout import ExportDir
from core.log import log
from core.spec import ModelSpec

SERVE_INSTALL = "pip install 'crossrt[serve]'"
CLASSIFIER_BACKENDS = ("onnxruntime", "python")
TOP_K = 5
IMAGE, LABELS, SCORES, CLASS_IDS = "IMAGE", "LABELS", "SCORES", "CLASS_IDS"
_PYTHON_MODELS = Path(__file__).resolve().parent / "triton_models"
# crossrt's own preprocessing, copied beside the preprocess model (it imports nothing else)
_CORE = Path(__file__).resolve().parents[1] / "core"
_CORE_FILES = ("__init__.py", "errors.py", "limits.py", "spec.py", "preprocess.py")
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64",
                 "int32": "TYPE_INT32"}  # numpy's names (core.graphs.io_record) -> Triton's


@dataclass(frozen=True)
class TritonRequest:
    """One ``crossrt triton``; :meth:`check` refuses bad fields before anything is written."""

    export: Path  # an export folder (export-onnx)
    out: Path
    engine: Path | None = None  # a plan built from the export's graph (build-engine)
    max_batch_size: int = 8
    instances: int = 1
    dynamic_batching: bool = False
    preferred_batch_sizes: tuple[int, ...] = ()
    ensemble: bool = False
    classifier_backend: str = "onnxruntime"
    tensorrt_accelerator: bool = False  # ONNX Runtime's TensorRT EP, FP16
    force: bool = False

    def check(self) -> None:
        if not 1 <= self.max_batch_size <= 4096:
            raise UsageError(f"--max-batch-size {self.max_batch_size}: give 1 to 4096")
        if not 1 <= self.instances <= 64:
            raise UsageError(f"--instances {self.instances}: give 1 to 64")
        if self.classifier_backend not in CLASSIFIER_BACKENDS:
            raise UsageError(f"--classifier-backend {self.classifier_backend!r}: one of "
                             f"{', '.join(CLASSIFIER_BACKENDS)}")
        if bad := [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]:
            raise UsageError(f"--preferred-batch-sizes {bad[0]} is outside 1 to "
                             f"--max-batch-size {self.max_batch_size}")
        if self.preferred_batch_sizes and not self.dynamic_batching:
            raise UsageError("--preferred-batch-sizes shapes dynamic batching: add "
                             "--dynamic-batching")
        if self.tensorrt_accelerator and self.classifier_backend != "onnxruntime":
            raise UsageError("--tensorrt-accelerator is ONNX Runtime's backend option; leave "
                             "out --classifier-backend python")
        if self.engine is not None:
            files.input_file(self.engine, "engine plan", "build one with crossrt build-engine")


@dataclass(frozen=True)
class Repository:
    path: Path
    models: tuple[str, ...]
    configs: dict[str, Any] = field(default_factory=dict)  # model -> its ModelConfig


def model_config_pb2() -> Any:
    """Triton's ModelConfig protobuf, as tritonclient ships it."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb
    except ImportError:
        raise DependencyError(f"crossrt triton checks every config with Triton's own "
                              f"ModelConfig protobuf (tritonclient): {SERVE_INSTALL}") from None
    return pb


def write_repository(request: TritonRequest) -> Repository:
    """The model repository for ``request``, written atomically to ``request.out``."""
    from exporter.specs import spec_of

    request.check()
    pb = model_config_pb2()
    folder = ExportDir(request.export)
    manifest = folder.manifest()
    spec = spec_of(manifest)
    graph = folder.onnx_path()
    graph_io = _graph_io(graph)
    configs: dict[str, Any] = {}
    _check_out(request.out, request.force, folder.path)
    repository = ExportDir(request.out)  # written as exports are: staged, then renamed
    with files.disk_errors(request.out), repository.staging() as stage:
        name = spec.name
        configs[name] = _classifier(pb, request, spec, graph_io)
        _copy_graph(graph, graph_io.data_files, stage / name / "1")
        if request.classifier_backend == "python":
            shutil.copy(_PYTHON_MODELS / "classifier.py", stage / name / "1" / "model.py")
        if request.engine is not None:
            configs[f"{name}_trt"] = _plan(pb, request, spec, graph_io)
            (stage / f"{name}_trt" / "1").mkdir(parents=True)
            shutil.copy(request.engine, stage / f"{name}_trt" / "1" / "model.plan")
        if request.ensemble:
            configs.update(_ensemble(pb, request, spec, graph_io, stage))
        for model, config in configs.items():
            _write_config(pb, config, stage / model / "config.pbtxt")
        (stage / MARKER).write_text(json.dumps({"format": "crossrt-triton-repository",
                                                "export": str(folder.path.resolve()),
                                                "models": list(configs)}))
        repository.publish(stage)
    log.info(f"wrote {len(configs)} models to {request.out}: {', '.join(configs)}")
    return Repository(request.out, tuple(configs), configs)


MARKER = ".crossrt-triton.json"  # how crossrt recognises a repository it wrote (--force)


def _check_out(out: Path, force: bool, export: Path) -> None:
    """``out`` is new, or a repository crossrt wrote (replaced with --force); never the
    export itself or a folder around it."""
    resolved = out.resolve()
    if resolved == export.resolve() or resolved in export.resolve().parents:
        raise UsageError(f"--out {out} holds the export it is made from; choose another folder")
    if not out.exists():
        return
    if not (out / MARKER).is_file():
        raise UsageError(f"--out {out} exists and is not a Triton repository crossrt wrote; "
                         "choose another folder")
    if not force:
        raise UsageError(f"--out {out} holds a repository already; pass --force to replace it")


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: list[int]  # without the batch, -1 where dynamic: Triton's dims (max_batch_size > 0)
    kind: str  # Triton's type name: TYPE_FP32

    def add_to(self, pb: Any, tensors: Any, dims: list[int] | None = None) -> None:
        tensors.add(name=self.name, data_type=getattr(pb, self.kind), dims=dims or self.dims)


@dataclass(frozen=True)
class GraphIO:
    """The graph as Triton sees it, from one read: its tensor and its external data files."""

    input: Tensor
    output: Tensor
    data_files: tuple[str, ...]  # named relative to the graph, as ONNX keeps them


def _graph_io(graph: Path) -> GraphIO:
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    from core.graphs import fixed_dim, io_records, read_onnx

    model = read_onnx(graph)
    inputs, outputs = io_records(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(f"{graph.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                         "crossrt serves classifiers of one input and one output")

    def described(record: dict[str, Any]) -> Tensor:
        kind = _TRITON_TYPES.get(record["dtype"])
        if kind is None:
            raise UsageError(f"{graph.name}: {record['name']!r} is {record['dtype']}, a type "
                             "crossrt does not serve")
        dims = [fixed_dim(d) for d in record["shape"]]
        if not dims or dims[0] is not None:
            raise UsageError(f"{graph.name}: {record['name']!r} has no dynamic batch dimension "
                             f"({record['shape']}); Triton batches it only with one (export it "
                             "again with crossrt)")
        return Tensor(record["name"], [-1 if d is None else d for d in dims[1:]], kind)

    data = {ExternalDataInfo(t).location for t in model.graph.initializer
            if uses_external_data(t)}
    return GraphIO(described(inputs[0]), described(outputs[0]), tuple(sorted(data)))


def _classifier(pb: Any, request: TritonRequest, spec: ModelSpec, io: GraphIO) -> Any:
    config = pb.ModelConfig(name=spec.name, max_batch_size=request.max_batch_size)
    if request.classifier_backend == "python":
        config.backend = "python"
    else:
        config.platform = "onnxruntime_onnx"
        config.default_model_filename = "model.onnx"
    io.input.add_to(pb, config.input)
    io.output.add_to(pb, config.output)
    kind = pb.ModelInstanceGroup.KIND_CPU if request.classifier_backend == "python" \
        else pb.ModelInstanceGroup.KIND_AUTO
    config.instance_group.add(count=request.instances, kind=kind)
    _batching(request, config)
    if request.tensorrt_accelerator:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt")
        accelerator.parameters["precision_mode"] = "FP16"
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    return config


def _plan(pb: Any, request: TritonRequest, spec: ModelSpec, io: GraphIO) -> Any:
    """The plan's config: its profile (the sidecar's) must take every batch up to the max,
    at the graph's input size."""
    from runtimes.engine_info import read_sidecar

    assert request.engine is not None
    sidecar = read_sidecar(request.engine)
    if sidecar is None:
        raise UsageError(f"{request.engine} has no sidecar saying its profile; build it with "
                         "crossrt build-engine --onnx MODEL.onnx --saveEngine PLAN")
    name, dims = io.input.name, io.input.dims
    profile = sidecar["profiles"][0].get(name)
    if profile is None:
        raise UsageError(f"{request.engine}'s profile has no input {name!r}: a plan of another "
                         "graph")
    low, high = profile["min"], profile["max"]
    if low[0] > 1 or high[0] < request.max_batch_size:
        raise UsageError(f"{request.engine} runs batches {low[0]} to {high[0]}, and "
                         f"--max-batch-size is {request.max_batch_size}: give at most "
                         f"{high[0]} (or build it with --maxShapes {name}:"
                         f"{request.max_batch_size}x{'x'.join(map(str, high[1:]))})")
    if list(low[1:]) != list(high[1:]) or any(d not in (-1, h) for d, h in zip(dims, high[1:])):
        raise UsageError(f"{request.engine} takes {name} of {low[1:]} to {high[1:]}, the graph "
                         f"{dims}: a plan of another graph")
    config = pb.ModelConfig(name=f"{spec.name}_trt", platform="tensorrt_plan",
                            default_model_filename="model.plan",
                            max_batch_size=request.max_batch_size)
    io.input.add_to(pb, config.input, dims=list(high[1:]))
    io.output.add_to(pb, config.output)
    config.instance_group.add(count=request.instances, kind=pb.ModelInstanceGroup.KIND_GPU)
    _batching(request, config)
    return config


def _batching(request: TritonRequest, config: Any) -> None:
    if request.dynamic_batching:
        config.dynamic_batching.preferred_batch_size.extend(request.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = 100


def _ensemble(pb: Any, request: TritonRequest, spec: ModelSpec, io: GraphIO,
              stage: Path) -> dict[str, Any]:
    """Preprocess (image bytes -> the classifier's input, crossrt's own code), postprocess
    (top-k with names) and the ensemble wiring them."""
    name, batch = spec.name, request.max_batch_size
    in_name, out_name = io.input.name, io.output.name
    classes = spec.class_names()
    k = min(TOP_K, len(classes))
    image = Tensor(IMAGE, [1], "TYPE_STRING")
    top = [Tensor(SCORES, [k], "TYPE_FP32"), Tensor(CLASS_IDS, [k], "TYPE_INT64"),
           Tensor(LABELS, [k], "TYPE_STRING")]
    pre, post, pipe = f"{name}_preprocess", f"{name}_postprocess", f"{name}_pipeline"

    pre_config = pb.ModelConfig(name=pre, backend="python", max_batch_size=batch)
    image.add_to(pb, pre_config.input)
    io.input.add_to(pb, pre_config.output, dims=list(spec.input_shape))  # always that size
    pre_config.instance_group.add(count=request.instances, kind=pb.ModelInstanceGroup.KIND_CPU)
    version = stage / pre / "1"
    (version / "core").mkdir(parents=True)
    for source in _CORE_FILES:
        shutil.copy(_CORE / source, version / "core" / source)
    shutil.copy(_PYTHON_MODELS / "preprocess.py", version / "model.py")
    (version / "spec.json").write_text(json.dumps(spec.to_dict()))

    post_config = pb.ModelConfig(name=post, backend="python", max_batch_size=batch)
    io.output.add_to(pb, post_config.input)
    for tensor in top:
        tensor.add_to(pb, post_config.output)
    post_config.instance_group.add(count=request.instances, kind=pb.ModelInstanceGroup.KIND_CPU)
    post_config.parameters["top_k"].string_value = str(k)
    post_config.parameters["probabilities"].string_value = \
        "1" if spec.output_name == "probabilities" else "0"
    (stage / post / "1").mkdir(parents=True)
    shutil.copy(_PYTHON_MODELS / "postprocess.py", stage / post / "1" / "model.py")
    (stage / post / "labels.txt").write_text("".join(f"{c}\n" for c in classes))

    pipe_config = pb.ModelConfig(name=pipe, platform="ensemble", max_batch_size=batch)
    image.add_to(pb, pipe_config.input)
    for tensor in (io.output, *top):
        tensor.add_to(pb, pipe_config.output)
    steps = pipe_config.ensemble_scheduling.step
    steps.add(model_name=pre, model_version=-1, input_map={IMAGE: IMAGE},
              output_map={in_name: "pixels"})
    steps.add(model_name=name, model_version=-1, input_map={in_name: "pixels"},
              output_map={out_name: out_name})
    steps.add(model_name=post, model_version=-1, input_map={out_name: out_name},
              output_map={t.name: t.name for t in top})
    (stage / pipe / "1").mkdir(parents=True)  # Triton requires the version folder
    return {pre: pre_config, post: post_config, pipe: pipe_config}


def _copy_graph(graph: Path, data_files: tuple[str, ...], version: Path) -> None:
    """The graph and its external data files (their names are relative to it)."""
    version.mkdir(parents=True)
    shutil.copy(graph, version / "model.onnx")
    for data in data_files:
        shutil.copy(graph.parent / data, version / data)


def _write_config(pb: Any, config: Any, path: Path) -> None:
    """As text, parsed back by Triton's protobuf (an unknown field or value fails here)."""
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, pb.ModelConfig())
    if parsed != config:
        raise AssertionError(f"{path}: the config does not read back as written")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
