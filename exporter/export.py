"""Paddle -> ONNX -> simplified (and FP16) ONNX, checked against Paddle, with a manifest.

The pipeline, step by step (each is a small function below):
  paddle_program  zoo model (synthetic or checkpoint weights) saved with paddle.jit.save, or a
                  copy of an existing Paddle inference model (PIR .json or legacy .pdmodel)
  paddle2onnx     conversion; paddle2onnx logs and swallows its own errors, so what comes
                  back is checked here (empty, invalid, wrong outputs)
  name_io         input/output named after the spec, dynamic batch dimension named "batch"
  simplify        onnxsim, then verified against the unsimplified graph on real inputs
  fp16            optional FP16 graph with FP32 inputs/outputs (TensorRT 11, ORT CUDA FP16)
  check           ONNX Runtime CPU against Paddle on the bundled photographs and random inputs
  golden          reference.npz: preprocessed photographs, their hashes, Paddle's outputs
Paddle Inference and ONNX Runtime run through runtimes' runners (the package below this one),
and every check applies the one comparison rule (core.compare, validation's too).
Everything is built in a temporary folder beside the target and renamed into place at the
end, under a lock (core.layout), so a failed, interrupted or terminated export never
leaves a half-written folder and two concurrent exports of one model cannot corrupt each
other. An existing folder is replaced only when it is a crossrt export: of the same request
it is reused, of another request (weights, seed, opset, FP16, source) it is refused with the
difference named unless ``force``, and a folder holding anything else is never replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import runtimes
from core import files, graphs, limits, provenance
from core.compare import OutputComparison, Tolerance, compare_outputs, scaled_to
from core.errors import (
    CheckFailed,
    DependencyError,
    ExportError,
    Terminated,
    UsageError,
    WeightsError,
    first_line,
)
from core.layout import (
    FP16_FILE,
    GOLDEN_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    PADDLE2ONNX_LOG,
    PADDLE_PARAMS_SUFFIX,
    PADDLE_PROGRAM_STEM,
    ExportDir,
    find_paddle_program,
)
from core.log import log
from core.preprocess import photo_batch, random_inputs
from core.spec import ModelSpec
from exporter import inference_yml
from exporter.pretrained import fetch_pretrained, forget
from exporter.specs import get_spec

if TYPE_CHECKING:
    import onnx

OPSETS = range(11, 20)
DEFAULT_OPSET = 13
ARTIFACTS = Path("artifacts")
CHECK_RANDOM_INPUTS = 4



@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    reused: bool

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE


def default_out_dir(spec: ModelSpec) -> Path:
    return ARTIFACTS / spec.name


def default_export(model: str | Path, *, fp16: bool = False) -> Path:
    """The default export folder of ``model`` (a zoo name, or a Paddle inference model's
    folder), used as it is when it holds what is asked (whatever its weights: validating or
    timing an export never replaces it), else exported."""
    spec = inference_yml.spec_from_folder(model) if inference_yml.is_inference_model(model) \
        else get_spec(str(model))
    folder = ExportDir(default_out_dir(spec))
    if folder.is_export() and (not fp16 or folder.onnx_path(fp16=True).is_file()):
        folder.manifest()  # a corrupt one is named here
        return folder.path
    return export_onnx(model, fp16=fp16).path


def export_onnx(model: str | Path, *, weights: str | Path | None = None,
                paddle_model: str | Path | None = None, out_dir: str | Path | None = None,
                opset: int = DEFAULT_OPSET, fp16: bool = False, simplify: bool = True,
                force: bool = False, seed: int = 0, pretrained: bool = False,
                ) -> ExportResult:
    """Export ``model`` to ONNX: a registry name, or a folder holding a Paddle inference model
    and its ``inference.yml`` (any PaddleClas/PaddleX classifier); reuse an identical export.
    ``pretrained``: PaddleClas's official weights, downloaded once (exporter.pretrained)."""
    brought = inference_yml.is_inference_model(model)
    if brought and (weights is not None or paddle_model is not None or pretrained):
        raise UsageError(f"{model} is a Paddle inference model already: leave out --weights, "
                         "--pretrained and --paddle-model")
    if pretrained and (weights is not None or paddle_model is not None):
        raise UsageError("give one of --pretrained, --weights and --paddle-model")
    spec = inference_yml.spec_from_folder(model) if brought else get_spec(str(model))
    if brought:
        paddle_model = model
    if opset not in OPSETS:
        raise UsageError(f"opset {opset} is not supported; choose {OPSETS.start} to "
                         f"{OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    if weights is not None and paddle_model is not None:
        raise UsageError("give either --weights or --paddle-model, not both")
    limits.SEED.check(seed)
    if weights is not None:
        files.input_file(weights, "checkpoint", "pass a PaddleClas *_pretrained.pdparams file")
    program_files = _paddle_model_files(paddle_model) if paddle_model is not None else None
    out = Path(out_dir) if out_dir is not None else default_out_dir(spec)
    folder = ExportDir(out)
    folder.check_replaceable()
    _check_inputs_outside(out, [("--weights", weights), *(
        ("--paddle-model", path) for path in program_files or ())])
    official = None
    if pretrained:  # every other input is checked first: a bad flag costs no download
        official = fetch_pretrained(spec)
        weights = official.path
    request = {
        "model": spec.name, "opset": opset, "fp16": fp16, "simplify": simplify,
        "crossrt": provenance.installed_versions(("crossrt",)).get("crossrt", "dev"),
        "weights": (official.record() if official is not None else
                    {"kind": "checkpoint", "sha256": provenance.sha256_file(weights)}
                    if weights is not None else
                    {"kind": "paddle-model",
                     "sha256": [provenance.sha256_file(f) for f in program_files
                                + ((Path(model) / inference_yml.YML,) if brought else ())]}
                    if program_files is not None else {"kind": "synthetic", "seed": seed}),
    }
    with files.disk_errors(out), folder.locked():
        if (manifest := _reusable(folder, request, force)) is not None:
            log.info(f"reusing {out} (same request; --force to export again)")
            return ExportResult(out, manifest, reused=True)
        with folder.staging() as stage, _terminate_as_interrupt():
            try:
                manifest = _build(stage, spec, request, weights=weights,
                                  program_files=program_files, seed=seed)
            except WeightsError as error:
                if official is None:
                    raise
                forget(official)  # a damaged download: the next run fetches it again
                raise WeightsError(f"{error} (the download of {official.url} did not load: "
                                   "removed from the cache; run again to download it anew)"
                                   ) from None
            folder.publish(stage)
    return ExportResult(out, manifest, reused=False)


def _check_inputs_outside(out: Path, inputs: list[tuple[str, str | Path | None]]) -> None:
    """An export replaces its folder whole: no input of it may lie inside."""
    for flag, path in inputs:
        if path is not None and out.resolve() in Path(path).resolve().parents:
            raise UsageError(f"{flag} {path} lies inside --out {out}, which the export replaces "
                             "whole; copy it out of there first, or choose another --out")


def _paddle_model_files(path: str | Path) -> tuple[Path, Path]:
    """(program, params) of an existing Paddle inference model given as file, prefix or dir."""
    program = find_paddle_program(path)
    return program, program.with_suffix(PADDLE_PARAMS_SUFFIX)


# --- reuse and replacement --------------------------------------------------------------

_FORCE = ("replace it with crossrt export-onnx {model} --out {out} --force, or choose another "
          "--out")
_FP16_ADDED = "fp16: on disk without the FP16 graph, asked with it"


def _reusable(folder: ExportDir, request: dict[str, Any], force: bool) -> dict[str, Any] | None:
    """The manifest when ``folder`` holds an intact export of the same request; None when a
    new export may be written there; UsageError when writing one would lose something."""
    out = folder.path
    if not out.exists() or not any(out.iterdir()):
        return None
    if not folder.is_export():
        raise UsageError(f"{out} exists and is not a crossrt export; choose another --out "
                         "(--force replaces only crossrt exports)")
    try:
        manifest: dict[str, Any] | None = folder.manifest()
    except UsageError:
        if not force:
            raise
        manifest = None  # a damaged export: --force may replace it if it holds only its files
    foreign = folder.foreign_entries(manifest)
    if foreign:
        raise UsageError(f"{out} holds files that are not part of its export "
                         f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); move "
                         "them out or choose another --out")
    if manifest is None or force:
        return None
    difference = request_difference(manifest.get("request", {}), request)
    edited = folder.edited_files(manifest)
    # Adding the FP16 graph to an intact export of the same request loses nothing (the same
    # request writes the same files again), unless engines built from it would be removed.
    if difference == [_FP16_ADDED] and not edited and not folder.engines():
        return None
    if difference:
        raise UsageError(f"{out} holds an export of another request ({'; '.join(difference)}); "
                         + _FORCE.format(model=request["model"], out=out))
    if edited:
        raise UsageError(f"{out} was modified after export ({', '.join(edited)}); "
                         + _FORCE.format(model=request["model"], out=out))
    return manifest


def request_difference(on_disk: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """What differs between two export requests, in words (empty: the same request).

    An export with the FP16 graph also serves a request without it (not the reverse)."""
    lines = []
    for key in ("model", "weights", "opset", "fp16", "simplify", "crossrt"):
        old, new = on_disk.get(key), asked.get(key)
        if old == new or (key == "fp16" and old and not new):
            continue
        if key == "weights":
            lines.append(f"weights: on disk {_describe_weights(old)}, asked "
                         f"{_describe_weights(new)}")
        elif key == "fp16":
            lines.append(_FP16_ADDED)
        else:
            lines.append(f"{key}: on disk {old}, asked {new}")
    return lines


def _describe_weights(weights: Any) -> str:
    if not isinstance(weights, dict):
        return str(weights)
    kind = weights.get("kind")
    if kind == "synthetic":
        return f"synthetic (seed {weights.get('seed')})"
    digest = weights.get("sha256")
    digest = digest[-1] if isinstance(digest, list) and digest else digest  # the weights
    return f"{kind} sha256 {str(digest)[:12]}" if digest else str(kind)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM during an export unwinds like Ctrl-C, so the staging folder is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise Terminated

    with contextlib.suppress(ImportError):
        import paddle  # noqa: F401 - imported first, so its SIGTERM handler comes before ours
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the pipeline -----------------------------------------------------------------------

class _Steps:
    """Times each step and says when it starts (the CLI shows these as progress)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, message: str) -> Iterator[None]:
        log.info(message)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)


@dataclass
class _Source:
    """The Paddle program an export converts, and the dygraph layer it came from (None for an
    existing Paddle model; dropped once converted: the largest models need the memory)."""

    program: Path
    params: Path
    weights: dict[str, Any]  # the manifest's weights record
    layer: Any = None
    given: tuple[Path, Path] | None = None  # the user's files it was copied from


@dataclass(frozen=True)
class _Converted:
    graph: onnx.ModelProto
    nodes_before: int  # paddle2onnx's node count, before onnxsim
    reference: np.ndarray  # Paddle's outputs on the check's inputs
    unsimplified: np.ndarray | None  # ONNX Runtime's outputs before onnxsim, when it ran here
    checked: bool  # onnx's checker ran on the graph in memory (else it checks the saved file)


def _build(stage: Path, spec: ModelSpec, request: dict[str, Any], *, weights: str | Path | None,
           program_files: tuple[Path, Path] | None, seed: int) -> dict[str, Any]:
    """Every step of one export into ``stage``; returns the manifest it wrote there."""
    step = _Steps()
    with step("paddle_program", f"{spec.name}: building the Paddle inference program"):
        source = _paddle_program(stage / "paddle", spec, weights, program_files, seed)
    names, photos = photo_batch(spec)
    feed = np.concatenate([photos, random_inputs(spec, CHECK_RANDOM_INPUTS, seed=seed)])
    if source.params.stat().st_size >= graphs.PROTOBUF_LIMIT:
        converted = _convert_in_pieces(step, spec, request, source, feed, stage)
    else:  # Paddle runs first, so that a broken program is named as such, not by ONNX
        with step("reference", f"{spec.name}: computing Paddle reference outputs"):
            reference = _paddle_reference(spec, source, feed)
        spec = _finished(spec, reference)
        converted = _convert_whole(step, spec, request, source, stage, feed, reference)
    graphs.set_metadata(converted.graph, spec, source.weights)
    with step("save", f"{spec.name}: saving {ONNX_FILE}"):
        graphs.save_onnx(converted.graph, stage / ONNX_FILE)
        if not converted.checked:
            graphs.check_graph(stage / ONNX_FILE)
    with step("check", f"{spec.name}: checking ONNX Runtime against Paddle"):
        onnx_outputs = _ort_outputs(stage / ONNX_FILE, spec, feed)
        simplify_error = _simplify_error(spec, converted.unsimplified, onnx_outputs)
        check = _check_figures(spec, converted.reference, onnx_outputs, len(names))
    fp16_check = None
    if request["fp16"]:
        with step("fp16", f"{spec.name}: writing {FP16_FILE}"):
            fp16_check = _fp16_graph(spec, stage, feed, onnx_outputs, photos=len(names))
    files.write_atomic(stage / GOLDEN_FILE, _golden_npz(
        names, photos, converted.reference[:len(names)]))
    if not check["passed"]:
        raise CheckFailed(f"{spec.name}: ONNX Runtime differs from Paddle by "
                          f"{check['max_abs_error']:.3g} (allowed {check['tolerance']:.3g}); "
                          "the export was not written")
    manifest = {
        "model": spec.name, "request": request,
        "weights": {**source.weights, **{key: value for key, value in request["weights"].items()
                                         if key in ("source", "url", "bytes")}},
        "opset": request["opset"], "ir_version": converted.graph.ir_version,
        "inputs": [graphs.io_record(v) for v in converted.graph.graph.input],
        "outputs": [graphs.io_record(v) for v in converted.graph.graph.output],
        "preprocessing": spec.preprocessing(), "spec": spec.to_dict(),
        "nodes": {"paddle2onnx": converted.nodes_before,
                  ONNX_FILE: len(converted.graph.graph.node)},
        "simplified": request["simplify"], "simplify_max_abs_error": simplify_error,
        "check": check, "fp16": fp16_check,
        "tools": runtimes.tool_versions(), "seconds": step.seconds,
        "files": {str(p.relative_to(stage)): {"bytes": p.stat().st_size,
                                              "sha256": provenance.sha256_file(p)}
                  for p in sorted(stage.rglob("*")) if p.is_file()},
    }
    files.write_json(stage / MANIFEST_FILE, manifest)
    return manifest


def _finished(spec: ModelSpec, reference: np.ndarray) -> ModelSpec:
    """A brought model's spec completed from what its program computes: its class count (its
    label list must have as many names) and its output's name (a softmax's: probabilities)."""
    if not spec.custom:
        return spec
    classes = reference.shape[1]
    named = len(spec.class_names()) if spec.labels or spec.label_set else classes
    if named != classes:
        raise UsageError(f"{spec.name}: inference.yml's label list names {named} "
                         f"classes but the program gives {classes}; fix "
                         "PostProcess.Topk.label_list")
    softmax = bool(np.all(reference >= 0) and np.allclose(reference.sum(axis=1), 1, atol=1e-3))
    return dataclasses.replace(spec, num_classes=classes,
                               output_name="probabilities" if softmax else "logits")


def _convert_whole(step: _Steps, spec: ModelSpec, request: dict[str, Any], source: _Source,
                   stage: Path, feed: np.ndarray, reference: np.ndarray) -> _Converted:
    """paddle2onnx on the whole program, then onnxsim."""
    with step("paddle2onnx",
              f"{spec.name}: converting with paddle2onnx (opset {request['opset']})"):
        graph = _paddle2onnx(source.program, source.params, request["opset"],
                             stage / PADDLE2ONNX_LOG)
        _name_io(graph, spec)
        graphs.check_graph(graph)
    source.layer = None
    nodes_before, unsimplified = len(graph.graph.node), None
    if request["simplify"]:
        with step("simplify", f"{spec.name}: simplifying with onnxsim"):
            with tempfile.TemporaryDirectory(dir=stage) as folder:  # ORT runs saved graphs
                graphs.save_onnx(graph, Path(folder) / ONNX_FILE)
                unsimplified = _ort_outputs(Path(folder) / ONNX_FILE, spec, feed)
            graph = graphs.simplify(graph)
    return _Converted(graph, nodes_before, reference, unsimplified, checked=True)


def _convert_in_pieces(step: _Steps, spec: ModelSpec, request: dict[str, Any],
                       source: _Source, feed: np.ndarray, stage: Path) -> _Converted:
    """Past protobuf's 2 GB (exporter.large): the network cut into pieces, each converted and
    simplified on its own; Paddle runs after, once the network's memory is freed."""
    from exporter.large import convert_in_pieces

    if source.layer is None:
        raise UsageError(f"this Paddle model's weights pass protobuf's 2 GB limit, which "
                         f"paddle2onnx cannot write; export {spec.name} from the zoo with "
                         "--weights CKPT.pdparams instead (crossrt then converts it in pieces)")
    with step("paddle2onnx", f"{spec.name}: converting with paddle2onnx (opset "
              f"{request['opset']}), in pieces (past protobuf's 2 GB)"):
        graph, nodes_before = convert_in_pieces(
            source.layer, feed, input_name=spec.input_name, output_name=spec.output_name,
            opset=request["opset"], folder=stage, data_file=f"{ONNX_FILE}.data",
            convert=_paddle2onnx, simplify=graphs.simplify if request["simplify"] else None)
    source.layer = None  # the 828M-parameter models need the memory for Paddle Inference
    with step("reference", f"{spec.name}: computing Paddle reference outputs"):
        reference = _paddle_reference(spec, source, feed)
    return _Converted(graph, nodes_before, reference, None, checked=False)


def _simplify_error(spec: ModelSpec, unsimplified: np.ndarray | None,
                    simplified: np.ndarray) -> float | None:
    """The simplified graph against the one onnxsim was given (None when onnxsim did not run
    on the whole graph here); onnxsim changing the outputs fails the export."""
    if unsimplified is None:
        return None
    comparison = _compare(spec, unsimplified, simplified, _tolerance(spec, unsimplified))
    error = _max_abs_error(comparison)
    if not comparison:
        raise CheckFailed(f"onnxsim changed {spec.name}'s outputs by {error:.3g}; export again "
                          "with --no-simplify")
    return error


def _fp16_graph(spec: ModelSpec, stage: Path, feed: np.ndarray, fp32_outputs: np.ndarray, *,
                photos: int) -> dict[str, Any]:
    """``model.fp16.onnx`` beside the FP32 graph, and how far its outputs move."""
    graphs.convert_fp16(stage / ONNX_FILE, stage / FP16_FILE)
    fp16_outputs = _ort_outputs(stage / FP16_FILE, spec, feed)
    return {"kept_fp32_ops": list(graphs.FP16_FP32_OPS),
            "max_abs_error_vs_fp32": _max_abs_error(_compare(spec, fp32_outputs, fp16_outputs)),
            "top1_agreement_photos": _compare(spec, fp32_outputs[:photos],
                                              fp16_outputs[:photos]).top1_agreement}


def _paddle_program(folder: Path, spec: ModelSpec, weights: str | Path | None,
                    program_files: tuple[Path, Path] | None, seed: int) -> _Source:
    """The Paddle inference program to convert, written into ``folder``, and the dygraph
    layer it came from (None for an existing Paddle model)."""
    folder.mkdir()
    if program_files is not None:
        _check_paddle_model(spec, *program_files)
        program, params = (Path(shutil.copy2(f, folder / f"inference{f.suffix}"))
                           for f in program_files)
        return _Source(program, params, {"kind": "paddle-model", "path": str(program_files[0]),
                                         "params_sha256": provenance.sha256_file(program_files[1])},
                       given=program_files)
    import paddle

    from exporter.weights import load_model

    layer, weights_record = load_model(spec, weights, seed=seed)
    if weights_record.get("kind") == "synthetic":
        log.info(f"{spec.name}: using synthetic weights (seed {seed}); "
                 "pass --weights for real ones")
    spec_in = paddle.static.InputSpec([None, *spec.input_shape], "float32", name=spec.input_name)
    paddle.jit.save(layer, str(folder / PADDLE_PROGRAM_STEM), input_spec=[spec_in])
    program = find_paddle_program(folder)
    return _Source(program, program.with_suffix(PADDLE_PARAMS_SUFFIX), weights_record, layer)


def _check_paddle_model(spec: ModelSpec, program: Path, params: Path) -> None:
    """Checks that run before Paddle loads a user's model (a bad legacy program crashes Paddle
    Inference with a segmentation fault): a legacy program must parse as a ProgramDesc, and
    the weights file must hold the spec's number of float32 values (plus a small header per
    tensor), so that a program of another model is refused before any work."""
    import paddle

    if program.suffix == ".pdmodel":
        from google.protobuf.message import DecodeError
        from paddle.base.proto import framework_pb2

        desc = framework_pb2.ProgramDesc()  # type: ignore[attr-defined]  # generated code
        try:
            desc.ParseFromString(program.read_bytes())
        except DecodeError:
            desc.Clear()
        if not any(block.ops for block in desc.blocks):
            raise UsageError(f"{program} is not a Paddle program (no operators parse from it); "
                             "pass the inference.pdmodel written by PaddleClas's export script")

    if spec.custom:  # no zoo network to count its weights against: Paddle's run decides
        return
    from exporter.zoo import build_model

    with paddle.LazyGuard():  # shapes only, nothing allocated
        state = build_model(spec).state_dict()
    values = sum(int(np.prod(tensor.shape)) for tensor in state.values())
    size = params.stat().st_size
    if abs(size - 4 * values) > 256 * len(state):
        raise UsageError(f"{params} has {size} bytes but {spec.name}'s {values / 1e6:.2f}M "
                         f"float32 weights take {4 * values}: truncated, or the Paddle model of "
                         f"another network? pass {spec.name}'s own")


def _paddle_reference(spec: ModelSpec, source: _Source, feed: np.ndarray) -> np.ndarray:
    """Paddle's outputs on ``feed``: the one boundary where a bad Paddle program is caught
    (a user's program is named in the message)."""
    given = source.given
    try:
        reference = paddle_inference_outputs(source.program, feed)
    except (DependencyError, MemoryError):
        raise
    except (Exception, SystemExit) as exc:  # paddle raises RuntimeError, ValueError, ...
        if given is None:  # the program paddle.jit.save just wrote: the disk failed it
            raise ExportError(f"Paddle cannot read back the program it saved for {spec.name} "
                              f"({first_line(exc, named=True)}); check the free space beside "
                              "the export folder and export again") from exc
        raise UsageError(f"Paddle cannot run {given[0]} with {given[1].name} as {spec.name}: "
                         f"{first_line(exc, named=True)}; pass a complete Paddle inference "
                         f"model of {spec.name} (program and weights exported together)"
                         ) from exc
    expected = (len(feed), reference.shape[-1] if spec.custom else spec.num_classes)
    if reference.ndim != 2 or reference.shape != expected:
        raise UsageError(f"the Paddle program gives outputs of shape {list(reference.shape)} on "
                         f"{spec.name}'s input, expected {list(expected)}; is it a program of "
                         "another model?")
    return reference


@contextlib.contextmanager
def _captured_output(log_path: Path) -> Iterator[None]:
    """Send fds 1 and 2 (paddle2onnx's C++ logs bypass Python) into ``log_path``."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _paddle2onnx(program: Path, params: Path, opset: int, log_path: Path) -> onnx.ModelProto:
    import onnx

    # paddle2onnx's Polygraphy folding would pip-install packages at run time; onnxsim folds
    # constants later anyway, so that step is switched off (optimize_tool=None).
    os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"
    import paddle2onnx

    with _captured_output(log_path):
        try:
            data = paddle2onnx.export(str(program), str(params), None, opset_version=opset,
                                      auto_upgrade_opset=False, enable_onnx_checker=True,
                                      optimize_tool=None)
        except (Exception, SystemExit):  # it logs its error, then fails or calls exit()
            data = None
    if not data:
        log = log_path.read_text(errors="replace").splitlines()
        reason = next((line for line in reversed(log) if "error" in line.lower()), "no output")
        raise ExportError(f"paddle2onnx could not convert {program.name}: {reason.strip()}")
    try:
        return onnx.load_from_string(data)
    except Exception as exc:
        raise ExportError(f"paddle2onnx wrote an unreadable ONNX model ({exc})") from exc


def _name_io(graph: onnx.ModelProto, spec: ModelSpec) -> None:
    """Name the input, output and dynamic batch after the spec, for trtexec/Triton configs."""
    inputs, outputs = graph.graph.input, graph.graph.output
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"expected one input and one output, got {len(inputs)} and "
                          f"{len(outputs)}; is this a {spec.family} classifier?")
    renames = {inputs[0].name: spec.input_name, outputs[0].name: spec.output_name}
    for node in graph.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (inputs[0], outputs[0]):
        value.name = renames[value.name]
        batch = value.type.tensor_type.shape.dim[0]
        if not batch.HasField("dim_value"):
            batch.dim_param = "batch"


def paddle_inference_outputs(program: Path, feed: np.ndarray) -> np.ndarray:
    """The first output of the saved program (its ``.pdiparams`` beside it) under Paddle
    Inference on the CPU, one thread per available core."""
    with runtimes.create_runner("paddle", program,
                                threads=len(os.sched_getaffinity(0))) as runner:
        outputs = runner.infer({next(iter(runner.input_specs)): np.ascontiguousarray(feed)})
    return next(iter(outputs.values()))


def _ort_outputs(model: Path, spec: ModelSpec, feed: np.ndarray) -> np.ndarray:
    """The first output of a saved ONNX graph under ONNX Runtime CPU."""
    with runtimes.create_runner(runtimes.graph_runner(), model) as runner:
        return next(iter(runner.infer({spec.input_name: feed}).values()))


def _tolerance(spec: ModelSpec, reference: np.ndarray) -> Tolerance:
    """The export's check: max abs error within ``spec.export_tolerance`` x max(1,
    max|reference|) (README; float32 rounding grows with depth and magnitude)."""
    return scaled_to(Tolerance(atol=spec.export_tolerance, rtol=0.0, check_error_stat="max",
                               why="float32 rounding, relative to max(1, max|reference|)"),
                     reference)


def _compare(spec: ModelSpec, reference: np.ndarray, test: np.ndarray,
             tolerance: Tolerance | None = None) -> OutputComparison:
    """The logits of two runs by the one comparison rule (core.compare)."""
    name = spec.output_name
    return compare_outputs({name: reference}, {name: test}, tolerance)[name]


def _max_abs_error(comparison: OutputComparison) -> float:
    """Its max abs error; NaN when NaN/Inf stand where the other side has another value (the
    figure of an error that no tolerance covers)."""
    return math.nan if comparison.nonfinite_mismatches or comparison.max_abs is None \
        else comparison.max_abs


def _check_figures(spec: ModelSpec, reference: np.ndarray, test: np.ndarray,
                   photos: int) -> dict[str, Any]:
    tolerance = _tolerance(spec, reference)
    result = _compare(spec, reference, test, tolerance)
    # A reference that is not finite proves nothing, even where the test has the same NaN.
    finite = bool(np.isfinite(reference).all())
    return {"against": "paddle-inference-cpu", "runtime": "onnxruntime-cpu",
            "inputs": {"photos": photos, "random": len(reference) - photos},
            "max_abs_error": _max_abs_error(result) if finite else math.nan,
            "tolerance": tolerance.atol, "passed": result.passed and finite,
            "max_abs_reference": float(np.max(np.abs(reference))),
            "top1_agreement": result.top1_agreement}


def _golden_npz(names: list[str], photos: np.ndarray, outputs: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, inputs=photos, outputs=outputs, names=np.array(names),
             sha256=np.array([provenance.sha256_array(p) for p in photos]))
    return buffer.getvalue()
