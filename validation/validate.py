"""`crossrt validate`: run every runtime on the same real inputs and compare with a reference.

The inputs are the photographs (bundled, or ``images``) through the model's PaddleClas
preprocessing plus seeded random inputs, batched to each batch size. Every runtime, and any
saved outputs loaded from files, is compared with the reference runtime by the one pure
comparison function; a failing live ONNX runtime is then localised to the first tensors
that part from their reference. Nothing here prints: the CLI renders the returned run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import provenance
from core.errors import UsageError
from core.graphs import read_onnx
from core.layout import ExportDir
from core.log import log
from core.preprocess import (batches, check_batch_fits, load_images, preprocess,
                                 random_inputs)
from core.spec import ModelSpec
from exporter.specs import get_spec
from core.compare import Tolerance, compare_outputs, degenerate_reference, tolerance_for
from validation.report import ComparisonRecord, ReportContext

DEFAULT_BATCH_SIZES = (1, 4)



@dataclass(frozen=True)
class Participant:
    """One runner in the comparison: a runtime kind at a precision."""

    kind: str
    precision: str = "fp32"

    @property
    def localizable(self) -> bool:
        """Its graph's tensors can be marked as outputs (an ONNX Runtime runner)."""
        from runtimes.factory import runner_class

        return runner_class(self.kind).localizable

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
             localize: bool | None = None) -> ValidationRun:
    """Compare runtimes on ``target`` (an export folder or a model name) against a reference.

    ``localize`` None localises failures, True also forces it on passing runs, False never.
    """
    # every argument is checked before any work (an export, a runtime) starts
    overrides = {"atol": atol, "rtol": rtol, "check_error_stat": check_error_stat,
                 "min_top1_agreement": min_top1_agreement}
    for precision in ("fp32", "fp16"):
        _tolerance(precision, overrides)
    _check_arguments(batch_sizes, random, seed, images, load_outputs)
    ref = _reference(reference)
    chosen = _participants(runtimes, ref, fp16, bool(load_outputs))
    export_dir, manifest, warnings = _resolve_target(target, fp16)
    spec = get_spec(manifest["model"])
    for batch_size in batch_sizes:
        check_batch_fits(spec, batch_size)
    names, samples = _inputs(spec, images, random, seed)
    loaded = [_load_saved(path, spec) for path in load_outputs]
    feeds = {bs: [(chunk_names, {spec.input_name: chunk}) for chunk_names, chunk in
                  zip(batches(np.array(names), bs), batches(samples, bs))]
             for bs in sorted(set(batch_sizes))}
    outputs = {p: _run(p, export_dir, feeds) for p in [ref, *chosen]}
    reference_out = {bs: _concat(runs) for bs, runs in outputs[ref].items()}
    if (warning := degenerate_reference(reference_out[min(feeds)])) is not None:
        warnings.append(warning)
    records = []
    for participant in chosen:
        tolerance = _tolerance(participant.precision, overrides)
        localized = False  # once per runtime: every batch size runs the same graph
        for bs, runs in outputs[participant].items():
            result = compare_outputs(reference_out[bs], _concat(runs), tolerance)
            localization = None
            wanted = localize or (localize is None and not result)
            if participant.localizable and wanted and not localized:
                log.info(f"localising {participant.label} at batch {bs}")
                localization = _localize(participant, export_dir, feeds[bs][0][1], tolerance)
                localized = True
            records.append(ComparisonRecord(participant.label, bs, result, "live", localization))
    for path, saved_run in loaded:
        records += _loaded_records(path, saved_run, spec, names, reference_out, feeds,
                                   _tolerance("fp32", overrides), ref.label)
    if not records:
        raise UsageError(_NOTHING_TO_COMPARE)
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


_NOTHING_TO_COMPARE = ("nothing to compare: name a runtime other than the reference "
                       "(--runtimes) or saved outputs (--load-outputs)")


def _check_arguments(batch_sizes: Sequence[int], random: int, seed: int,
                     images: str | Path | None, load_outputs: Sequence[str | Path]) -> None:
    if not batch_sizes:
        raise UsageError("--batch-sizes is empty; give at least one, e.g. --batch-sizes 1,4")
    if bad := [b for b in batch_sizes if b < 1]:
        raise UsageError(f"batch sizes must be at least 1, got {bad[0]}")
    if random < 0:
        raise UsageError(f"--random must be 0 or more, got {random}")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {seed}")
    if images is not None and not Path(images).is_dir():
        what = "is a file, not a folder" if Path(images).exists() else "does not exist"
        raise UsageError(f"image folder {images} {what}; pass a folder of JPEG/PNG files")
    for path in load_outputs:
        provenance.input_file(path, "saved outputs", "pass a file written by --save-outputs "
                              "(or an export's reference.npz)")


def _tolerance(precision: str, overrides: dict[str, Any]) -> Tolerance:
    """--atol/--rtol set the FP32 gate; FP16 graphs keep their own looser numbers (FP16
    logits never meet an FP32 atol while the predictions stay the same)."""
    if precision != "fp32":
        overrides = {k: v for k, v in overrides.items() if k not in ("atol", "rtol")}
    return tolerance_for(precision, **overrides)


def _resolve_target(target: str | Path, fp16: bool) -> tuple[Path, dict[str, Any], list[str]]:
    """The export folder, its manifest, and a warning per graph edited since export.

    A model name means its default export folder: validated as it is when it exists (whatever
    its weights), exported first when it does not."""
    from exporter.export import default_export
    from core.layout import MANIFEST_FILE

    folder = ExportDir(target)
    if not folder.path.exists() and _looks_like_path(str(target)):
        raise UsageError(f"export folder {target} does not exist; export one with crossrt "
                         "export-onnx MODEL --out DIR, or pass a model name")
    if folder.path.exists() and not folder.is_export():
        raise UsageError(f"{folder.path} is not a crossrt export (no {MANIFEST_FILE}); run "
                         "crossrt export-onnx first or pass a model name")
    if not folder.path.exists():
        folder = ExportDir(default_export(str(target), fp16=fp16))
    manifest = folder.manifest()
    if fp16 and not folder.onnx_path(fp16=True).is_file():
        raise UsageError(f"{folder.path} has no {folder.onnx_path(fp16=True).name}; export it "
                         f"with crossrt export-onnx {manifest['model']} --out {folder.path} "
                         "--fp16 --force, or leave out --fp16")
    warnings = []
    for name in folder.edited_files(manifest, suffix=".onnx"):
        if (folder.path / name).is_file():
            read_onnx(folder.path / name)  # an edited graph must still parse
            warnings.append(f"{name} no longer matches the manifest's sha256 (edited after "
                            "export?); validating it as it is now")
    return folder.path, manifest, warnings


def _looks_like_path(target: str) -> bool:
    return os.sep in target or "/" in target or target.startswith(".")


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
    from runtimes.factory import require_available

    if reference is None:
        reference = "paddle" if runtimes.is_available("paddle")[0] else "onnxruntime"
    require_available(reference)
    return Participant(reference)


def participants(requested: Sequence[str] | None, ref: Participant,
                 fp16: bool) -> list[Participant]:
    """The runtimes beside the reference: ``requested`` (each must be available here), else
    every one available here; with ``fp16`` also each that runs FP16 (the FP16 graph, or
    engine), as its runner class declares."""
    import runtimes
    from runtimes.factory import require_available, runner_class

    if requested is not None:
        kinds = list(dict.fromkeys(requested))
        for kind in kinds:
            require_available(kind)
    else:
        kinds = [k for k in runtimes.RUNNER_KINDS if runtimes.is_available(k)[0]]
    chosen = [Participant(k) for k in kinds if Participant(k) != ref]
    if fp16:
        chosen += [Participant(k, "fp16") for k in kinds if runner_class(k).runs_fp16]
    return chosen


def _participants(requested: Sequence[str] | None, ref: Participant, fp16: bool,
                  loaded: bool) -> list[Participant]:
    """:func:`participants`, of which there must be some (or ``loaded`` saved outputs)."""
    chosen = participants(requested, ref, fp16)
    if not chosen and not loaded:
        raise UsageError(_NOTHING_TO_COMPARE)
    return chosen


def _run(participant: Participant, export_dir: Path,
         feeds: dict[int, list[tuple[Any, dict[str, np.ndarray]]]],
) -> dict[int, list[dict[str, np.ndarray]]]:
    import runtimes

    options = {"fp16": True} if participant.precision == "fp16" else {}
    log.info(f"loading {participant.label}")
    with runtimes.create_runner(participant.kind, export_dir, **options) as runner:
        log.info(f"running {participant.label}")
        return {bs: [runner.infer(feed) for _, feed in chunks] for bs, chunks in feeds.items()}


def _concat(runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([run[name] for run in runs]) for name in runs[0]}


def _localize(participant: Participant, export_dir: Path, feed: dict[str, np.ndarray],
              tolerance: Tolerance) -> Any:
    """Where the graph parts from its reference, chosen by what can differ (see localize)."""
    import runtimes
    from validation.localize import localize

    one = {name: value[:1] for name, value in feed.items()}  # one failing sample suffices
    folder = ExportDir(export_dir)
    onnx_path = folder.onnx_path()
    if participant.precision == "fp16":
        return localize(folder.onnx_path(fp16=True), one, tolerance,
                        reference_model_path=onnx_path)
    if participant.kind == "onnxruntime":  # the graph itself differs from Paddle
        return localize(onnx_path, one, tolerance, paddle_program=folder.paddle_program())
    return localize(onnx_path, one, tolerance,
                    test_runner_factory=lambda path: runtimes.create_runner(participant.kind, path))


def _load_saved(path: str | Path, spec: ModelSpec) -> tuple[Path, Any]:
    """A saved-outputs file (RunResults JSON, or an export's golden .npz), read before any run."""
    from validation.results import load_golden, load_results

    path = Path(path)
    return path, (load_golden(path, input_name=spec.input_name, output_name=spec.output_name)
                  if path.suffix == ".npz" else load_results(path))


def _loaded_records(path: Path, saved: Any, spec: ModelSpec, names: list[str],
                    reference_out: dict[int, dict[str, np.ndarray]],
                    feeds: dict[int, list[tuple[Any, dict[str, np.ndarray]]]],
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
