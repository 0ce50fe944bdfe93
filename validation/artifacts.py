"""A bare model file as a target: an ONNX graph, or a TensorRT plan (trtexec's ``--loadEngine``).

No export folder, no manifest: what the file is comes from the file itself (an ONNX graph's
inputs and outputs; a plan's sidecar, and the graph it was built from), and its
preprocessing from, in this order, ``--spec`` (a model name, an export folder, a Paddle
inference model's folder or an ``inference.yml``), the export folder the file lies in, or an
``inference.yml`` beside it. With none of those the preprocessing is unknown: the check runs
on random inputs only, and says so. ``--shapes NAME:1x3xSxS`` gives the input's side where the
file leaves it dynamic (as Polygraphy's and trtexec's ``--shapes``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import runtimes
from core.errors import UsageError
from core.layout import MANIFEST_FILE, PLAN_SUFFIXES, ExportDir
from core.spec import CUSTOM, FP16, FP32, ModelSpec, Precision
from runtimes.factory import runner_class

BARE_SUFFIXES = (".onnx", *PLAN_SUFFIXES)
RANDOM_ONLY = 8  # random inputs a check runs on when the preprocessing is unknown


@dataclass(frozen=True)
class FileIO:
    """What a model file says of itself: its one input (side None: dynamic) and first output."""

    input_name: str
    side: int | None
    output_name: str | None
    classes: int | None
    precision: Precision = FP32  # an FP16 graph's (most weights FP16), a plan's (its sidecar)


@dataclass(frozen=True)
class BareFile:
    """A model file given as it is, with the spec it is fed by."""

    path: Path
    spec: ModelSpec
    preprocessing: str | None  # where its preprocessing came from; None: unknown
    precision: Precision  # its own: an FP16 graph's or FP16 plan's, else FP32

    @property
    def is_plan(self) -> bool:
        return self.path.suffix.lower() in PLAN_SUFFIXES

    def runs_on(self, kind: str) -> bool:
        return self.path.suffix.lower() in runner_class(kind).model_suffixes

    def kinds(self) -> list[str]:
        """The runtimes that run it, most preferred first (a reference's order)."""
        ranked = runtimes.preferred("reference_rank") + list(runtimes.RUNNER_KINDS)
        return [k for k in dict.fromkeys(ranked) if self.runs_on(k)]

    def check_runs_on(self, kind: str) -> None:
        if not self.runs_on(kind):
            able = ", ".join(self.kinds())
            raise UsageError(f"runtime {kind} does not run {self.path.name} (runtimes that do: "
                             f"{able})")

    def weights(self) -> dict[str, object]:
        """The record a report keeps of what ran (a manifest's weights record, for a file)."""
        from core.provenance import sha256_file

        return {"kind": "file", "path": str(self.path), "sha256": sha256_file(self.path)}


def is_bare_file(target: str | Path) -> bool:
    return Path(target).is_file() and Path(target).suffix.lower() in BARE_SUFFIXES


def bare_file(target: str | Path, spec: str | None = None,
              shapes: str | None = None) -> BareFile | None:
    """``target`` as a bare model file, or None when it is not one (``--spec``/``--shapes``
    are then refused: an export or a model name knows its own)."""
    if not is_bare_file(target):
        if spec is not None or shapes is not None:
            raise UsageError(f"--spec and --shapes describe a bare .onnx file or engine plan; "
                             f"{target} knows its own (leave them out)")
        return None
    path = Path(target)
    io, graph = _file_io(path, shapes)
    described, source = _described(path, spec, graph)
    if described is not None:
        if io.side is not None and io.side != described.crop_size:
            raise UsageError(f"{path.name} takes {io.side}x{io.side} inputs but {source} "
                             f"crops {described.crop_size}x{described.crop_size}; pass the "
                             "--spec of this model")
        chosen = dataclasses.replace(
            described, input_name=io.input_name,
            output_name=io.output_name or described.output_name,
            num_classes=io.classes or described.num_classes)
    else:
        if io.side is None:
            raise UsageError(f"{path.name}'s input {io.input_name!r} has a dynamic height and "
                             f"width; pass --shapes {io.input_name}:1x3xSxS")
        chosen = ModelSpec(name=path.stem, family=CUSTOM, crop_size=io.side, resize_short=None,
                           resize_to=io.side, export_tolerance=1e-3, input_name=io.input_name,
                           output_name=io.output_name or "output",
                           num_classes=io.classes or 1000)
    return BareFile(path, chosen, source, io.precision)


def _described(path: Path, spec: str | None,
               graph: Path | None) -> tuple[ModelSpec | None, str | None]:
    """The spec that says how the file is fed, and where it came from: --spec, else the
    export or inference.yml of its folder (a plan's: or of the graph it was built from)."""
    from exporter.inference_yml import YML, spec_from_yml
    from exporter.specs import spec_of
    from validation.targets import target_spec

    if spec is not None:
        if spec.endswith((".yml", ".yaml")) and Path(spec).is_file():
            return spec_from_yml(spec), spec
        return target_spec(spec), f"--spec {spec}"
    for folder in dict.fromkeys([path.parent] + ([graph.parent] if graph else [])):
        if (folder / MANIFEST_FILE).is_file():
            return spec_of(ExportDir(folder).manifest()), f"the export {folder}"
        if (folder / YML).is_file():
            return spec_from_yml(folder / YML), str(folder / YML)
    return None, None


def _file_io(path: Path, shapes: str | None) -> tuple[FileIO, Path | None]:
    """The file's input and output, and the graph they were read from: the file, or the graph
    a plan was built from (its sidecar says), else the sidecar's profile; ``--shapes`` fixes a
    dynamic side."""
    from runtimes.engine_info import read_sidecar

    io = FileIO("x", None, None, None)
    graph: Path | None = path if path.suffix.lower() == ".onnx" else None
    sidecar = read_sidecar(path) if graph is None else None
    if graph is None:
        if sidecar is not None:
            built_from = Path(sidecar["onnx"]["path"])
            if built_from.is_file():
                graph = built_from
            elif sidecar["profiles"]:
                name, ranges = next(iter(sidecar["profiles"][0].items()))
                opt = ranges["opt"]
                io = FileIO(name, opt[2] if opt[2] == opt[3] else None, None, None)
        elif shapes is None:
            raise UsageError(f"{path.name} has no sidecar saying its input (a plan built "
                             "elsewhere?); pass --shapes NAME:1x3xSxS and --spec MODEL")
    if graph is not None:
        io = _graph_io(graph)
    if graph is not path:  # a plan: its precision is the one its sidecar measured
        half = sidecar is not None and sidecar["precision"]["engine"] == FP16
        io = dataclasses.replace(io, precision=FP16 if half else FP32)
    if shapes is not None:
        name, side = _parse_shapes(shapes)
        if graph is not None and name != io.input_name:
            raise UsageError(f"--shapes names {name!r}, but {path.name}'s input is "
                             f"{io.input_name!r}")
        if io.side is not None and side != io.side:
            raise UsageError(f"--shapes gives {side}x{side}, but {path.name}'s input is "
                             f"{io.side}x{io.side}")
        io = dataclasses.replace(io, input_name=name, side=side)
    return io, graph


def _graph_io(graph: Path) -> FileIO:
    import onnx

    from core.graphs import fixed_dim, io_records, read_onnx

    model = read_onnx(graph)
    inputs, outputs = io_records(model)
    if len(inputs) != 1:
        raise UsageError(f"{graph.name} has {len(inputs)} inputs; crossrt checks classifiers of "
                         "one image input")
    shape = [fixed_dim(d) for d in inputs[0]["shape"]]
    if len(shape) != 4 or shape[1] not in (3, None):
        raise UsageError(f"{graph.name}'s input {inputs[0]['name']!r} is {shape}, not N x 3 x H x "
                         "W")
    side = shape[2] if shape[2] is not None and shape[2] == shape[3] else None
    out_shape = [fixed_dim(d) for d in outputs[0]["shape"]]
    classes = out_shape[-1] if len(out_shape) == 2 else None
    kinds = [t.data_type for t in model.graph.initializer]
    half = kinds.count(onnx.TensorProto.FLOAT16) > kinds.count(onnx.TensorProto.FLOAT)
    return FileIO(inputs[0]["name"], side, outputs[0]["name"], classes, FP16 if half else FP32)


def _parse_shapes(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"\s*([^:\s]+):(\d+)x(\d+)x(\d+)x(\d+)\s*", text)
    if match is None:
        raise UsageError(f"--shapes {text!r}: expected NAME:NxCxHxW, e.g. x:1x3x224x224")
    channels, height, width = int(match[3]), int(match[4]), int(match[5])
    if channels != 3 or height != width or height < 1:
        raise UsageError(f"--shapes {text!r}: crossrt feeds square RGB inputs (N x 3 x S x S)")
    return match[1], height

