"""`crossrt validate`: run every runtime on the same real inputs and compare with a reference.

The inputs are the photographs (bundled, or ``images``) through the model's PaddleClas
preprocessing plus seeded random inputs, batched to each batch size. Every runtime, and any
saved outputs loaded from files, is compared with the reference runtime by the one pure
comparison function; a failing live ONNX runtime is then localised to the first tensors
that part from their reference. Nothing here prints: the CLI renders the returned run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporter import provenance
from exporter.errors import UsageError
from exporter.preprocess import batches, load_images, preprocess, random_inputs
from exporter.specs import ModelSpec, get_spec
from validation.compare import Tolerance, compare_outputs, degenerate_reference, tolerance_for
from validation.report import ComparisonRecord, ReportContext

DEFAULT_BATCH_SIZES = (1, 4)
ONNX_KINDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt")

Reporter = Callable[[str], None]


@dataclass(frozen=True)
class Participant:
    """One runner in the comparison: a runtime kind at a precision."""

    kind: str
    precision: str = "fp32"

    @property
    def label(self) -> str:
        return self.kind if self.precision == "fp32" else f"{self.kind}-{self.precision}"


@dataclass(frozen=True)
class ValidationRun:
    records: tuple[ComparisonRecord, ...]
    context: ReportContext
    saved_outputs: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.records) and all(record.result for record in self.records)


def validate(target: str | Path, *, runtimes: Sequence[str] | None = None,
             reference: str | None = None, atol: float | None = None,
             rtol: float | None = None, check_error_stat: str | None = None,
             min_top1_agreement: float | None = None,
             batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, images: str | Path | None = None,
             random: int = 0, seed: int = 0, save_outputs: str | Path | None = None,
             load_outputs: Sequence[str | Path] = (), fp16: bool = False,
             localize: bool | None = None, report: Reporter | None = None) -> ValidationRun:
    """Compare runtimes on ``target`` (an export folder or a model name) against a reference.

    ``localize`` None localises failures, True also forces it on passing runs, False never.
    """
    say = report or (lambda message: None)
    export_dir, manifest, warnings = _resolve_target(target, fp16, say)
    spec = get_spec(manifest["model"])
    names, samples = _inputs(spec, images, random, seed)
    ref = _reference(reference)
    participants = _participants(runtimes, ref, export_dir, fp16)
    overrides = {"atol": atol, "rtol": rtol, "check_error_stat": check_error_stat,
                 "min_top1_agreement": min_top1_agreement}
    feeds = {bs: [(chunk_names, {spec.input_name: chunk}) for chunk_names, chunk in
                  zip(batches(np.array(names), bs), batches(samples, bs))]
             for bs in sorted(set(batch_sizes))}
    outputs = {p: _run(p, export_dir, feeds, say) for p in [ref, *participants]}
    reference_out = {bs: _concat(runs) for bs, runs in outputs[ref].items()}
    if (warning := degenerate_reference(reference_out[min(feeds)])) is not None:
        warnings.append(warning)
    records = []
    for participant in participants:
        tolerance = _tolerance(participant.precision, overrides)
        localized = False  # once per runtime: every batch size runs the same graph
        for bs, runs in outputs[participant].items():
            result = compare_outputs(reference_out[bs], _concat(runs), tolerance)
            localization = None
            wanted = localize or (localize is None and not result)
            if participant.kind in ONNX_KINDS and wanted and not localized:
                say(f"localising {participant.label} at batch {bs}")
                localization = _localize(participant, export_dir, feeds[bs][0][1], tolerance)
                localized = True
            records.append(ComparisonRecord(participant.label, bs, result, "live", localization))
    for path in load_outputs:
        records += _loaded_records(path, spec, names, samples, reference_out, feeds,
                                   _tolerance("fp32", overrides), ref.label)
    saved = None
    if save_outputs is not None:
        saved = _save(save_outputs, spec, feeds, outputs, names, random, seed, images)
    context = ReportContext(
        model=spec.name, reference=ref.label, weights=manifest.get("weights", {}),
        inputs={"photos": [n for n in names if not n.startswith("random:")],
                "images": str(images) if images else "bundled (scikit-image)",
                "random": random, "seed": seed, "batch_sizes": sorted(feeds)},
        versions=provenance.tool_versions(), target=str(export_dir), warnings=tuple(warnings))
    return ValidationRun(tuple(records), context, saved)


def _tolerance(precision: str, overrides: dict[str, Any]) -> Tolerance:
    """--atol/--rtol set the FP32 gate; FP16 graphs keep their own looser numbers (FP16
    logits never meet an FP32 atol while the predictions stay the same)."""
    if precision != "fp32":
        overrides = {k: v for k, v in overrides.items() if k not in ("atol", "rtol")}
    return tolerance_for(precision, **overrides)


def _resolve_target(target: str | Path, fp16: bool, say: Reporter,
                    ) -> tuple[Path, dict[str, Any], list[str]]:
    """The export folder, its manifest, and a warning per file edited since export."""
    import json

    from exporter.export import MANIFEST_FILE, export_onnx

    path = Path(target)
    if not (path / MANIFEST_FILE).is_file():
        if path.exists():
            raise UsageError(f"{path} is not a crossrt export (no {MANIFEST_FILE}); run "
                             "crossrt export-onnx first or pass a model name")
        path = export_onnx(str(target), fp16=fp16, report=say).path
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    warnings = [f"{name} no longer matches the manifest's sha256 (edited after export?); "
                "validating it as it is now"
                for name, info in manifest.get("files", {}).items()
                if name.endswith(".onnx") and (path / name).is_file()
                and provenance.sha256_file(path / name) != info["sha256"]]
    return path, manifest, warnings


def _inputs(spec: ModelSpec, images: str | Path | None, random: int, seed: int,
            ) -> tuple[list[str], np.ndarray]:
    photos = load_images(images)
    names = [name for name, _ in photos]
    tensors = [preprocess(image, spec) for _, image in photos]
    if random < 0:
        raise UsageError(f"--random must be 0 or more, got {random}")
    if random:
        names += [f"random:seed={seed}:{i}" for i in range(random)]
        tensors += list(random_inputs(spec, random, seed))
    return names, np.stack(tensors)


def _reference(reference: str | None) -> Participant:
    """Paddle Inference when it is installed (the ground truth), else ONNX Runtime CPU FP32."""
    import runtimes

    if reference is None:
        reference = "paddle" if runtimes.is_available("paddle")[0] else "onnxruntime"
    if reference not in runtimes.RUNNER_KINDS:
        raise UsageError(f"unknown reference runtime {reference!r}; choose from "
                         f"{', '.join(runtimes.RUNNER_KINDS)}")
    return Participant(reference)


def _participants(requested: Sequence[str] | None, ref: Participant, export_dir: Path,
                  fp16: bool) -> list[Participant]:
    """The runtimes to compare (default: every one available here), FP16 graphs with --fp16."""
    import runtimes

    if requested is not None:
        unknown = [k for k in requested if k not in runtimes.RUNNER_KINDS]
        if unknown:
            raise UsageError(f"unknown runtime {unknown[0]!r}; choose from "
                             f"{', '.join(runtimes.RUNNER_KINDS)}")
        kinds = list(dict.fromkeys(requested))
    else:
        kinds = [k for k in runtimes.RUNNER_KINDS if runtimes.is_available(k)[0]
                 and (k != "tensorrt" or (export_dir / "model.engine").is_file())]
    chosen = [Participant(k) for k in kinds if Participant(k) != ref]
    if fp16:
        chosen += [Participant(k, "fp16") for k in kinds if k in ONNX_KINDS]
    return chosen


def _run(participant: Participant, export_dir: Path,
         feeds: dict[int, list[tuple[Any, dict[str, np.ndarray]]]],
         say: Reporter) -> dict[int, list[dict[str, np.ndarray]]]:
    import runtimes

    options = {"fp16": True} if participant.precision == "fp16" else {}
    say(f"running {participant.label}")
    with runtimes.create_runner(participant.kind, export_dir, **options) as runner:
        return {bs: [runner.infer(feed) for _, feed in chunks] for bs, chunks in feeds.items()}


def _concat(runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([run[name] for run in runs]) for name in runs[0]}


def _localize(participant: Participant, export_dir: Path, feed: dict[str, np.ndarray],
              tolerance: Tolerance) -> Any:
    """Where the graph parts from its reference, chosen by what can differ (see localize)."""
    import runtimes
    from validation.localize import localize

    one = {name: value[:1] for name, value in feed.items()}  # one failing sample suffices
    onnx_path = export_dir / "model.onnx"
    if participant.precision == "fp16":
        return localize(export_dir / "model.fp16.onnx", one, tolerance,
                        reference_model_path=onnx_path)
    if participant.kind == "onnxruntime":  # the graph itself differs from Paddle
        return localize(onnx_path, one, tolerance, paddle_program=export_dir / "paddle")
    return localize(onnx_path, one, tolerance,
                    test_runner_factory=lambda path: runtimes.create_runner(participant.kind, path))


def _loaded_records(path: str | Path, spec: ModelSpec, names: list[str], samples: np.ndarray,
                    reference_out: dict[int, dict[str, np.ndarray]],
                    feeds: dict[int, list[tuple[Any, dict[str, np.ndarray]]]],
                    tolerance: Tolerance, ref_label: str) -> list[ComparisonRecord]:
    """Saved outputs join the comparison: on our exact inputs when they were computed on them
    (replayed per batch), else matched by photo name (a deployment's own preprocessing)."""
    from validation.results import load_golden, load_results

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"saved outputs {path} do not exist; pass a file written by "
                         "--save-outputs (or an export's reference.npz)")
    saved = (load_golden(path, input_name=spec.input_name, output_name=spec.output_name)
             if path.suffix == ".npz" else load_results(path))
    records = []
    for run in saved.runs:
        if run.runner == ref_label and path.suffix != ".npz":
            continue  # the reference against itself says nothing
        label = f"{run.runner} (loaded from {path.name})"
        replay = saved.replay(run.runner)
        try:
            for bs, chunks in feeds.items():
                test = _concat([replay.infer(feed) for _, feed in chunks])
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


def _save(path: str | Path, spec: ModelSpec,
          feeds: dict[int, list[tuple[Any, dict[str, np.ndarray]]]],
          outputs: dict[Participant, dict[int, list[dict[str, np.ndarray]]]],
          names: list[str], random: int, seed: int, images: str | Path | None) -> Path:
    from validation.results import SavedIteration, SavedResults, SavedRun, save_results

    order = [(bs, i) for bs in sorted(feeds) for i in range(len(feeds[bs]))]
    iterations = tuple(SavedIteration.from_feed(feeds[bs][i][1], list(feeds[bs][i][0]))
                       for bs, i in order)
    runs = tuple(SavedRun(runner=p.label, outputs=tuple(runs[bs][i] for bs, i in order),
                          precision=p.precision) for p, runs in outputs.items())
    return save_results(path, SavedResults(
        runs=runs, iterations=iterations, model=spec.name,
        inputs={"photos": names, "images": str(images or "bundled"), "random": random,
                "seed": seed}, metadata={"tools": provenance.tool_versions()}))
