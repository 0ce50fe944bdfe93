"""`crossrt validate`: run every runtime on the same real inputs and compare with a reference.

The inputs are the photographs (bundled, or ``images``) through the model's PaddleClas
preprocessing plus seeded random inputs, batched to each batch size. Every runtime, and any
saved outputs loaded from files, is compared with the reference runtime by the one pure
comparison function; a failing live ONNX runtime is then localised to the first tensors
that part from their reference. Nothing here prints: the CLI renders the returned run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import runtimes
from core import files, limits
from core.compare import (
    Tolerance,
    compare_outputs,
    degenerate_reference,
    softmax,
    tolerance_for,
)
from core.errors import UsageError
from core.layout import ExportDir
from core.log import log
from core.preprocess import batches, check_batch_fits, load_images, preprocess, random_inputs
from core.spec import FP16, FP32, ModelSpec, Precision
from runtimes.factory import require_available
from validation.artifacts import RANDOM_ONLY, BareFile, bare_file
from validation.report import ComparisonRecord, ReportContext
from validation.results import SAVED_INPUTS, SAVED_OUTPUTS, inputs_path
from validation.targets import (
    Participant,
    line_up,
    precisions,
    resolve_target,
    target_files,
)

DEFAULT_BATCH_SIZES = (1, 4)  # one photograph at a time, and a batch of them
_NOTHING_TO_COMPARE = ("nothing to compare: name a runtime other than the reference "
                       "(--runtimes), saved outputs (--load-outputs) or another model file "
                       "(--compare)")

Feeds = dict[int, list[tuple[Any, dict[str, np.ndarray]]]]  # batch size -> (names, feed)...
Outputs = dict[int, list[dict[str, np.ndarray]]]  # batch size -> outputs per feed


@dataclass(frozen=True)
class ValidationRequest:
    """One ``crossrt validate``, typed; :meth:`check` refuses bad fields before any work.

    ``atol``/``rtol``/``check_error_stat``/``min_top1_agreement`` override the FP32 gate (FP16
    graphs keep their looser atol/rtol); ``localize`` None localises failures, True also
    passing runs, False never.
    """

    target: str | Path  # an export folder, a model name, or a bare .onnx file or engine plan
    runtimes: tuple[str, ...] | None = None  # None: every one available here
    reference: str | None = None  # None: Paddle Inference, else ONNX Runtime CPU
    atol: float | None = None
    rtol: float | None = None
    check_error_stat: str | None = None
    min_top1_agreement: float | None = None
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    images: Path | None = None  # None: the bundled photographs
    random: int = 0
    seed: int = 0
    save_outputs: Path | None = None
    load_outputs: tuple[Path, ...] = ()
    fp16: bool = False  # also FP16 (the FP16 graph, or engine): precision plus FP16
    precision: tuple[str, ...] | None = None  # these precisions (None: FP32)
    localize: bool | None = None
    force: bool = False  # replace an existing --save-outputs file that crossrt did not write
    compare: tuple[Path, ...] = ()  # other model files run on the same inputs (.onnx, plans)
    load_inputs: Path | None = None  # Polygraphy inputs JSON: the inputs, instead of photos
    spec: str | None = None  # a bare file's preprocessing: a model, export, folder or yml
    shapes: str | None = None  # a bare file's input, NAME:1x3xSxS, where it is dynamic

    def __post_init__(self) -> None:  # lists and strings from callers become the typed fields
        for name, kind in (("runtimes", tuple), ("batch_sizes", tuple), ("precision", tuple)):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, kind(getattr(self, name)))
        for name in ("images", "save_outputs", "load_inputs"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        for name in ("load_outputs", "compare"):
            object.__setattr__(self, name, tuple(Path(p) for p in getattr(self, name)))

    def tolerance(self, precision: Precision) -> Tolerance:
        """The gate at ``precision``: --atol/--rtol set the FP32 one; FP16 graphs keep their
        own looser numbers (FP16 logits never meet an FP32 atol while predictions stay)."""
        overrides = {"check_error_stat": self.check_error_stat,
                     "min_top1_agreement": self.min_top1_agreement}
        if precision == FP32:
            overrides.update(atol=self.atol, rtol=self.rtol)
        return tolerance_for(precision, **overrides)  # type: ignore[arg-type]

    def check(self) -> None:
        """Every field, before any export or runtime starts."""
        for precision in Precision:
            self.tolerance(precision)
        if not self.batch_sizes:
            raise UsageError("--batch-sizes is empty; give at least one, e.g. --batch-sizes 1,4")
        if bad := [b for b in self.batch_sizes if b < 1]:
            raise UsageError(f"batch sizes must be at least 1, got {bad[0]}")
        limits.RANDOM.check(self.random)
        limits.SEED.check(self.seed)
        if self.images is not None and not self.images.is_dir():
            what = "is a file, not a folder" if self.images.exists() else "does not exist"
            raise UsageError(f"image folder {self.images} {what}; pass a folder of JPEG/PNG files")
        for path in self.load_outputs:
            files.input_file(path, "saved outputs", "pass a file written by --save-outputs "
                             "(or an export's reference.npz)")
        for path in self.compare:
            files.input_file(path, "model file to --compare", "pass an .onnx file or an "
                             "engine plan")
        if self.load_inputs is not None:
            files.input_file(self.load_inputs, "inputs", "pass Polygraphy inputs JSON "
                             "(polygraphy run --save-inputs, or crossrt's --save-outputs)")
            if self.images is not None:
                raise UsageError("--load-inputs and --images both give the inputs; pass one")
        files.check_outputs(self.outputs(), self.inputs(), force=self.force)

    def outputs(self) -> list[files.Output]:
        if self.save_outputs is None:
            return []
        return [files.Output("--save-outputs", self.save_outputs, SAVED_OUTPUTS),
                files.Output("--save-outputs", inputs_path(self.save_outputs), SAVED_INPUTS)]

    def inputs(self) -> list[tuple[str, Path]]:
        """What the run reads: no output may be written over one of these."""
        return [*(("--load-outputs", p) for p in self.load_outputs),
                *(("--compare", p) for p in self.compare),
                *(("--load-inputs", p) for p in (self.load_inputs,) if p is not None),
                *((str(self.target), p) for p in target_files(self.target))]


@dataclass(frozen=True)
class ValidationRun:
    records: tuple[ComparisonRecord, ...]
    context: ReportContext
    saved_outputs: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.records) and all(record.result for record in self.records)


def validate(request: ValidationRequest | str | Path, **options: Any) -> ValidationRun:
    """Compare runtimes on a target against a reference: a :class:`ValidationRequest`, or its
    target with the request's fields as keywords (``validate("EfficientNetB0", random=2)``)."""
    if not isinstance(request, ValidationRequest):
        request = ValidationRequest(request, **options)
    request.check()
    wanted = precisions(request.precision, request.fp16)
    lineup = line_up(request.target, reference=request.reference, requested=request.runtimes,
                     wanted=wanted, spec=request.spec, shapes=request.shapes)
    spec, ref, bare = lineup.spec, lineup.reference, lineup.bare  # all known before any export
    chosen = lineup.participants + [_compared(path, spec, request) for path in request.compare]
    if not chosen and not request.load_outputs:
        raise UsageError(_NOTHING_TO_COMPARE)
    names, feeds, notes = _feeds(spec, request, bare)
    loaded = [_load_saved(path, spec) for path in request.load_outputs]
    export_dir, manifest, warnings = resolve_target(request.target, FP16 in wanted, bare)
    warnings += notes
    outputs = {p: _run(p, export_dir, feeds) for p in [ref, *chosen]}
    reference_out = {bs: _concat(runs, len(names)) for bs, runs in outputs[ref].items()}
    if (warning := degenerate_reference(reference_out[min(feeds)])) is not None:
        warnings.append(warning)
    records = [record for participant in chosen for record in _live_records(
        request, participant, outputs[participant], reference_out, export_dir, feeds,
        localizable=bare is None and participant.path is None)]
    for path, saved_run in loaded:
        records += _loaded_records(path, saved_run, spec, names, reference_out, feeds,
                                   request.tolerance(FP32), ref.label)
    if not records:
        raise UsageError(_NOTHING_TO_COMPARE)
    saved = None if request.save_outputs is None else \
        _save(request, spec, feeds, outputs, names)
    context = ReportContext(
        model=spec.name, reference=ref.label, weights=manifest.get("weights", {}),
        inputs={"photos": [n for n in names if _is_photo(n)],
                "images": (str(request.images) if request.images else
                           f"--load-inputs {request.load_inputs}" if request.load_inputs else
                           "none (preprocessing unknown)" if bare and not bare.preprocessing
                           else "bundled (scikit-image)"),
                "random": request.random, "seed": request.seed, "batch_sizes": sorted(feeds)},
        versions=runtimes.tool_versions(), target=str(export_dir), warnings=tuple(warnings),
        predictions=_predictions(spec, names, reference_out[min(feeds)]))
    return ValidationRun(tuple(records), context, saved)


def _predictions(spec: ModelSpec, names: list[str],
                 outputs: dict[str, np.ndarray]) -> tuple[tuple[str, str, float], ...]:
    """The reference's top-1 class of each photograph, by name, with its probability (a
    softmax of logits)."""
    scores = outputs.get(spec.output_name)
    if scores is None or scores.ndim != 2 or scores.shape[1] != spec.num_classes:
        return ()
    probabilities = scores if spec.output_name == "probabilities" else softmax(scores)
    classes = spec.class_names()
    return tuple((name, classes[int(row.argmax())], float(row.max()))
                 for name, row in zip(names, probabilities) if _is_photo(name))


def _is_photo(name: str) -> bool:
    """A photograph's sample, not a random input's or a loaded input's."""
    return not name.startswith(("random:", "inputs["))


def _feeds(spec: ModelSpec, request: ValidationRequest,
           bare: BareFile | None) -> tuple[list[str], Feeds, list[str]]:
    """The sample names, the inputs batched to each batch size (the last batch filled by
    cycling samples), and what the report should say of them: photographs through the
    model's preprocessing, --load-inputs, and --random; random only where the preprocessing is
    unknown (a bare file without a spec)."""
    for batch_size in request.batch_sizes:
        check_batch_fits(spec, batch_size)
    notes, random = [], request.random
    names: list[str] = []
    tensors: list[np.ndarray] = []
    if request.load_inputs is not None:
        names, tensors = _loaded_inputs(request.load_inputs, spec)
    elif bare is not None and bare.preprocessing is None:
        if request.images is not None:
            raise UsageError(f"{bare.path.name}'s preprocessing is unknown, so --images cannot "
                             "be fed to it; pass --spec MODEL (or an inference.yml)")
        random = random or RANDOM_ONLY
        notes.append(f"{bare.path.name}: preprocessing unknown (no manifest, inference.yml or "
                     f"--spec): compared on {random} random inputs only, no photographs")
    else:
        photos = load_images(request.images)
        names = [name for name, _ in photos]
        tensors = [preprocess(image, spec) for _, image in photos]
    # every sample is held once as an input and once batched, its outputs once per runtime
    count = len(names) + random
    check_batch_fits(spec, count, factor=4, fix="use a smaller --random",
                     what=f"{count} samples ({len(names)} given and --random)")
    if random:
        names += [f"random:seed={request.seed}:{i}" for i in range(random)]
        tensors += list(random_inputs(spec, random, request.seed))
    samples = np.stack(tensors)
    return names, {bs: [(chunk_names, {spec.input_name: chunk}) for chunk_names, chunk in
                        zip(batches(np.array(names), bs), batches(samples, bs))]
                   for bs in sorted(set(request.batch_sizes))}, notes


def _loaded_inputs(path: Path, spec: ModelSpec) -> tuple[list[str], list[np.ndarray]]:
    """Every sample of Polygraphy inputs JSON, named ``inputs[feed]:row``."""
    from validation.results import load_inputs

    names, tensors = [], []
    for index, feed in enumerate(load_inputs(path)):
        array = feed.get(spec.input_name)
        if array is None or array.ndim != 4 or tuple(array.shape[1:]) != spec.input_shape:
            got = "no such input" if array is None else f"shape {list(array.shape)}"
            raise UsageError(f"--load-inputs {path}: feed {index} has {got} for "
                             f"{spec.input_name!r}; {spec.name} takes N x "
                             f"{' x '.join(map(str, spec.input_shape))}")
        names += [f"inputs[{index}]:{row}" for row in range(len(array))]
        tensors += list(array.astype(np.float32))
    return names, tensors


def _compared(path: Path, spec: ModelSpec, request: ValidationRequest) -> Participant:
    """Another model file (--compare) on the first runtime here that runs it, fed as the
    target is."""
    other = bare_file(path, shapes=request.shapes)
    if other is None:
        raise UsageError(f"--compare {path}: not an .onnx file or an engine plan")
    if (other.spec.input_name, other.spec.input_shape) != (spec.input_name, spec.input_shape):
        raise UsageError(f"--compare {path} takes {other.spec.input_name!r} of "
                         f"{list(other.spec.input_shape)}, the target {spec.input_name!r} of "
                         f"{list(spec.input_shape)}; compare models of one input")
    kind = next((k for k in other.kinds() if runtimes.is_available(k)[0]), other.kinds()[0])
    return Participant(require_available(kind), other.precision, path)


def _run(participant: Participant, export_dir: Path, feeds: Feeds) -> Outputs:
    with participant.open(export_dir) as runner:
        log.info(f"running {participant.label}")
        return {bs: [runner.infer(feed) for _, feed in chunks] for bs, chunks in feeds.items()}


def _live_records(request: ValidationRequest, participant: Participant, outputs: Outputs,
                  reference_out: dict[int, dict[str, np.ndarray]], export_dir: Path,
                  feeds: Feeds, *, localizable: bool = True) -> list[ComparisonRecord]:
    """One runtime against the reference at every batch size; localised once where wanted
    (every batch size runs the same graph)."""
    tolerance = request.tolerance(participant.precision)
    records, localized = [], False
    for bs, runs in outputs.items():
        reference = reference_out[bs]
        samples = len(next(iter(reference.values())))
        result = compare_outputs(reference, _concat(runs, samples), tolerance)
        localization = None
        wanted = request.localize or (request.localize is None and not result)
        if localizable and participant.runner.localizable and wanted and not localized:
            log.info(f"localising {participant.label} at batch {bs}")
            localization = _localize(participant, export_dir, feeds[bs][0][1], tolerance)
            localized = True
        records.append(ComparisonRecord(participant.label, bs, result, "live", localization))
    return records


def _concat(runs: list[dict[str, np.ndarray]], samples: int) -> dict[str, np.ndarray]:
    """The outputs of every batch as one, without the repeats that filled the last batch: a
    comparison counts each distinct input once."""
    return {name: np.concatenate([run[name] for run in runs])[:samples] for name in runs[0]}


def _localize(participant: Participant, export_dir: Path, feed: dict[str, np.ndarray],
              tolerance: Tolerance) -> Any:
    """Where the graph parts from its reference, chosen by what can differ (see localize)."""
    from validation.localize import localize

    one = {name: value[:1] for name, value in feed.items()}  # one failing sample suffices
    folder = ExportDir(export_dir)
    onnx_path = folder.onnx_path()
    if participant.precision == FP16:
        return localize(folder.onnx_path(fp16=True), one, tolerance,
                        reference_model_path=onnx_path)
    if participant.runner.runs_graph_as_written:  # the graph itself differs from Paddle
        return localize(onnx_path, one, tolerance, paddle_program=folder.paddle_program())
    return localize(onnx_path, one, tolerance,
                    test_runner_factory=lambda path: runtimes.create_runner(participant.kind, path))


def _load_saved(path: str | Path, spec: ModelSpec) -> tuple[Path, Any]:
    """A saved-outputs file (RunResults JSON, or an export's golden .npz), read before any run."""
    from validation.results import load_golden, load_results

    path = Path(path)
    saved = (load_golden(path, input_name=spec.input_name, output_name=spec.output_name)
             if path.suffix == ".npz" else load_results(path))
    shapes = {tuple(np.shape(value))[1:] for it in saved.iterations for value in it.feed.values()}
    if saved.model and saved.model != spec.name:
        raise UsageError(f"--load-outputs {path} holds outputs of {saved.model}, and the target "
                         f"is {spec.name}; pass outputs saved from {spec.name}")
    if shapes and shapes != {spec.input_shape}:
        raise UsageError(f"--load-outputs {path} was computed on inputs of shape "
                         f"{sorted(shapes)}, not {spec.name}'s {spec.input_shape}: outputs of "
                         f"another model; pass outputs saved from {spec.name}")
    return path, saved


def _loaded_records(path: Path, saved: Any, spec: ModelSpec, names: list[str],
                    reference_out: dict[int, dict[str, np.ndarray]], feeds: Feeds,
                    tolerance: Tolerance, ref_label: str) -> list[ComparisonRecord]:
    """Saved outputs join the comparison: on our exact inputs when they were computed on them
    (replayed per batch), else matched by photo name (a deployment's own preprocessing)."""
    records = []
    for run in saved.runs:
        if run.runner == ref_label and path.suffix != ".npz":
            continue  # the reference against itself says nothing
        label = f"{run.runner} (loaded from {path.name})"
        replay = saved.replay(run.runner)
        try:
            for bs, chunks in feeds.items():
                test = _concat([replay.infer(feed) for _, feed in chunks], len(names))
                records.append(ComparisonRecord(label, bs, compare_outputs(
                    reference_out[bs], test, tolerance), "saved, same inputs"))
        except UsageError:  # other inputs: match the photographs by name
            rows = saved.outputs_by_sample(run.runner)
            first = reference_out[min(feeds)]
            order = [i for i, name in enumerate(names[:len(first[spec.output_name])])
                     if name in rows]
            if not order:
                raise UsageError(f"{path} holds outputs for none of the photographs "
                                 f"({', '.join(names)}); use the same --images") from None
            ref_rows = {k: v[order] for k, v in first.items()}
            test_rows = {k: np.stack([rows[names[i]][k] for i in order]) for k in ref_rows}
            records.append(ComparisonRecord(label, len(order), compare_outputs(
                ref_rows, test_rows, tolerance), "saved, matched by photo name"))
    return records


def _save(request: ValidationRequest, spec: ModelSpec, feeds: Feeds,
          outputs: dict[Participant, Outputs], names: list[str]) -> Path:
    from validation.results import (
        SavedIteration,
        SavedResults,
        SavedRun,
        save_inputs,
        save_results,
    )

    assert request.save_outputs is not None
    order = [(bs, i) for bs in sorted(feeds) for i in range(len(feeds[bs]))]
    # beside it, the same iterations as Polygraphy's inputs: polygraphy run --load-inputs
    save_inputs(inputs_path(request.save_outputs), [feeds[bs][i][1] for bs, i in order])
    iterations = tuple(SavedIteration.from_feed(feeds[bs][i][1], list(feeds[bs][i][0]))
                       for bs, i in order)
    runs = tuple(SavedRun(runner=p.label, outputs=tuple(runs[bs][i] for bs, i in order),
                          precision=p.precision) for p, runs in outputs.items())
    return save_results(request.save_outputs, SavedResults(
        runs=runs, iterations=iterations, model=spec.name,
        inputs={"photos": names, "images": str(request.images or "bundled"),
                "random": request.random, "seed": request.seed},
        metadata={"tools": runtimes.tool_versions()}))
