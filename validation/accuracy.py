"""`crossrt accuracy`: top-1/top-5 of every runtime on a labelled image set, beside
PaddleClas's figures.

Each image is decoded and preprocessed once (the model spec's PaddleClas preprocessing, on
``workers`` threads ahead of inference, at most a bounded window of images in memory) and
fed, in batches, to every runtime: the reference and the runtimes compared with it. A run
streams: memory does not grow with the dataset, each batch's predictions are appended to
``PREDICTIONS.partial`` as they come (renamed to ``PREDICTIONS`` when the run completes, so
that file is never half-written), and ``resume`` continues an interrupted run from it. The
figures are always tallied from those prediction rows, so a resumed run equals one run.

Nothing here prints: the CLI renders the returned :class:`AccuracyRun`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from core import provenance
from core.errors import UsageError
from core.log import log
from core.preprocess import preprocess, read_image
from core.spec import ModelSpec
from exporter.specs import get_spec
from validation.datasets import Dataset, Sample, load_dataset
from validation.progress import Progress
from validation.report import weights_warning
from validation.validate import Participant, _reference, _resolve_target, participants

DEFAULT_BATCH_SIZE = 8  # within the default TensorRT profile (1 to 8)
MAX_EXCLUDED = 0.01  # more missing or unreadable images than this fraction: bad dataset
TOP_K = 5
FORMAT = "crossrt-accuracy-predictions/1"
EXAMPLES = 5  # differing images kept per runtime for the report (all are in --predictions)



@dataclass
class RuntimeAccuracy:
    """One runtime's tally over the images every runtime saw."""

    runtime: str
    images: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    agreed: int = 0  # top-1 class equal to the reference's
    examples: list[dict[str, Any]] = field(default_factory=list)  # first differing images

    @property
    def top1(self) -> float | None:
        return self.top1_correct / self.images if self.images else None

    @property
    def top5(self) -> float | None:
        return self.top5_correct / self.images if self.images else None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.images if self.images else None

    @property
    def differ(self) -> int:
        return self.images - self.agreed

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "images": self.images, "top1": self.top1,
                "top5": self.top5, "top1_correct": self.top1_correct,
                "top5_correct": self.top5_correct, "top1_agreement": self.agreement,
                "top1_differ": self.differ, "differing_examples": self.examples}


@dataclass(frozen=True)
class AccuracyRun:
    model: str
    target: str
    reference: str  # label of the reference runtime
    results: tuple[RuntimeAccuracy, ...]  # the reference first
    dataset: dict[str, Any]
    excluded: tuple[tuple[str, str], ...]  # (path, why) of missing or unreadable images
    published: dict[str, float | None]  # PaddleClas's Top1/Top5 and Reference Top1/Top5
    weights: dict[str, Any]
    gates: dict[str, float | None]
    failures: tuple[str, ...]  # gates that did not hold (exit 1)
    warnings: tuple[str, ...] = ()
    predictions: Path | None = None
    resumed: int = 0  # images taken from an interrupted run's predictions
    seconds: float = 0.0  # wall time of this session's images
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def synthetic(self) -> bool:
        return self.weights.get("kind") == "synthetic"

    @property
    def images_per_s(self) -> float | None:
        done = self.results[0].images + len(self.excluded) - self.resumed
        return done / self.seconds if self.seconds > 0 and done > 0 else None


def evaluate_accuracy(target: str | Path, dataset: str | Path, *,
                      labels: str | Path | None = None, runtimes: Sequence[str] | None = None,
                      reference: str | None = None, fp16: bool = False,
                      batch_size: int | None = None, limit: int | None = None,
                      workers: int | None = None, predictions: str | Path | None = None,
                      resume: bool = False, max_top1_drop: float | None = None,
                      min_top1: float | None = None, progress: Progress | None = None,
) -> AccuracyRun:
    """Top-1/top-5 of the reference and every runtime on ``target`` over a labelled dataset.

    ``target`` is an export folder or a model name (exported first), as in validate;
    ``dataset`` a folder of class folders, or the root of the paths in the list ``labels``.
    Gates that fail are returned in ``failures``; bad input raises a UsageError.
    """
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    workers = default_workers() if workers is None else workers
    _check_options(batch_size, workers, max_top1_drop, min_top1, predictions, resume)
    ref = _reference(reference)
    chosen = _participants(runtimes, ref, fp16)  # unknown names refused before any export
    export_dir, manifest, warnings = _resolve_target(target, fp16)
    spec = get_spec(manifest["model"])
    data = load_dataset(dataset, labels, num_classes=spec.num_classes, limit=limit)
    allowed = int(MAX_EXCLUDED * len(data.samples))
    missing = [s for s in data.samples if not data.file(s).is_file()]
    if len(missing) > allowed:
        raise UsageError(f"{len(missing)} of {len(data.samples)} images do not exist (more than "
                         f"{MAX_EXCLUDED:.0%}), e.g. {data.file(missing[0])}; are the list's "
                         "paths relative to --dataset?")
    tally = Tally([p.label for p in chosen], ref.label)
    header = {"format": FORMAT, "model": spec.name, "target": str(export_dir.resolve()),
              "reference": ref.label, "runtimes": [p.label for p in chosen],
              "dataset": data.fingerprint(), "images": len(data.samples)}
    writer = PredictionsWriter(predictions, header, resume)
    done = writer.open(tally)
    todo = [s for s in data.samples if s.index not in done]
    log.info(f"{spec.name}: {len(data.samples)} images ({data.layout} layout), reference {ref.label}, "
        f"runtimes {', '.join(p.label for p in chosen[1:]) or 'none besides it'}"
        + (f"; {len(done)} already done" if done else ""))
    if (note := synthetic_note(manifest.get("weights", {}))) is not None:
        log.info(note)
    seconds = 0.0
    try:
        with ExitStack() as stack:
            runners = {p.label: stack.enter_context(_runner(p, export_dir, workers > 0))
                       for p in chosen}
            started = time.perf_counter()  # images/s of the images, not of loading runtimes
            if progress is not None:
                progress.start(len(data.samples), len(done))
            stream = stack.enter_context(closing(_evaluate(todo, data, spec, runners,
                                                           batch_size, workers)))
            for rows in stream:
                writer.write(rows)
                tally.add(rows)
                if len(tally.excluded) > allowed:
                    writer.discard()
                    first, why = tally.excluded[0]
                    raise UsageError(
                        f"{len(tally.excluded)} of {len(data.samples)} images are missing or "
                        f"unreadable (more than {MAX_EXCLUDED:.0%}), e.g. {first}: {why}")
                if progress is not None:
                    progress.advance(len(rows))
            seconds = time.perf_counter() - started
    finally:
        writer.close()
        if progress is not None:
            progress.stop()
    path = writer.finish()
    gates = {"max_top1_drop": max_top1_drop, "min_top1": min_top1}
    results = tuple(tally.results[label] for label in tally.labels)
    return AccuracyRun(
        model=spec.name, target=str(export_dir), reference=ref.label, results=results,
        dataset=data.describe(), excluded=tuple(tally.excluded),
        published=_published(spec), weights=dict(manifest.get("weights", {})), gates=gates,
        failures=tuple(_gate_failures(results, max_top1_drop, min_top1)),
        warnings=tuple(warnings), predictions=path, resumed=len(done), seconds=seconds,
        versions=provenance.tool_versions())


def default_workers() -> int:
    """Half the CPUs: on the CPU runtimes the other half runs inference (more decoding
    threads than cores slow its parallel sections down, every thread waiting for the last)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _check_options(batch_size: int, workers: int, max_top1_drop: float | None,
                   min_top1: float | None, predictions: str | Path | None,
                   resume: bool) -> None:
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 0:
        raise UsageError(f"--workers must be 0 (decode on the main thread) or more, got {workers}")
    for name, value in (("--max-top1-drop", max_top1_drop), ("--min-top1", min_top1)):
        if value is not None and not 0 <= value <= 1:
            raise UsageError(f"{name} is a fraction between 0 and 1 (e.g. 0.002), got {value}")
    if resume and predictions is None:
        raise UsageError("--resume continues from a predictions file: pass --predictions F "
                         "(the one the interrupted run wrote)")


def _participants(requested: Sequence[str] | None, ref: Participant,
                  fp16: bool) -> list[Participant]:
    """The reference first, then the runtimes beside it, chosen as validate chooses them
    (FP16 graphs and engines with ``fp16``). The reference alone is a valid run: its own
    accuracy."""
    return [ref, *participants(requested, ref, fp16)]


def _runner(participant: Participant, export_dir: Path, decoding_beside: bool,
) -> Any:
    """The participant's runner. ONNX Runtime CPU's idle threads spin by default, taking
    the cores from the decoding threads beside it: with workers they wait instead."""
    import runtimes

    options: dict[str, Any] = {"fp16": True} if participant.precision == "fp16" else {}
    if participant.kind == "onnxruntime" and decoding_beside:
        options["spinning"] = False
    log.info(f"loading {participant.label}")
    return runtimes.create_runner(participant.kind, export_dir, **options)


def _published(spec: ModelSpec) -> dict[str, float | None]:
    pub = spec.published
    return {"top1": pub.top1, "top5": pub.top5, "ref_top1": pub.ref_top1,
            "ref_top5": pub.ref_top5}


def _gate_failures(results: Sequence[RuntimeAccuracy], max_top1_drop: float | None,
                   min_top1: float | None) -> list[str]:
    ref = results[0]
    failures = []
    for result in results:
        if result.top1 is None or ref.top1 is None:
            continue
        if min_top1 is not None and result.top1 < min_top1:
            failures.append(f"{result.runtime}: top-1 {result.top1:.4f} is below --min-top1 "
                            f"{min_top1:g}")
        drop = ref.top1 - result.top1
        if result is not ref and max_top1_drop is not None and drop > max_top1_drop + 1e-12:
            failures.append(f"{result.runtime}: top-1 {result.top1:.4f} is {drop:.4f} below "
                            f"the reference {ref.runtime}'s {ref.top1:.4f} (--max-top1-drop "
                            f"{max_top1_drop:g}); {result.differ} images changed their top-1")
    return failures


# ---------------------------------------------------------------------------- streaming

def _evaluate(samples: Sequence[Sample], data: Dataset, spec: ModelSpec,
              runners: dict[str, Any], batch_size: int, workers: int,
              ) -> Generator[list[dict[str, Any]], None, None]:
    """Prediction rows, one list per batch (with the images excluded since the last one)."""
    rows: list[dict[str, Any]] = []
    batch: list[tuple[Sample, np.ndarray]] = []
    for sample, tensor in decoded(samples, data, spec, workers, window=2 * max(batch_size,
                                                                               workers)):
        if isinstance(tensor, str):
            rows.append({**_row(sample), "excluded": tensor})
            continue
        batch.append((sample, tensor))
        if len(batch) == batch_size:
            yield rows + _infer(batch, spec, runners)
            rows, batch = [], []
    if batch or rows:
        yield rows + (_infer(batch, spec, runners) if batch else [])


def decoded(samples: Iterable[Sample], data: Dataset, spec: ModelSpec, workers: int,
            window: int) -> Iterator[tuple[Sample, np.ndarray | str]]:
    """(sample, preprocessed CHW tensor, or why it was excluded), in order.

    ``workers`` threads decode ahead (OpenCV and NumPy release the GIL), never more than
    ``window`` images in flight; 0 workers decodes on the calling thread.
    """
    def load(sample: Sample) -> np.ndarray | str:
        import cv2

        try:
            return preprocess(read_image(data.file(sample)), spec)
        except (UsageError, OSError, cv2.error) as exc:
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    if workers == 0:
        yield from ((sample, load(sample)) for sample in samples)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="crossrt-decode")
    pending: deque[tuple[Sample, Future[np.ndarray | str]]] = deque()
    try:
        queue = iter(samples)
        for sample in queue:
            pending.append((sample, pool.submit(load, sample)))
            if len(pending) >= window:
                break
        while pending:
            sample, future = pending.popleft()
            following = next(queue, None)
            if following is not None:
                pending.append((following, pool.submit(load, following)))
            yield sample, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _infer(batch: list[tuple[Sample, np.ndarray]], spec: ModelSpec,
           runners: dict[str, Any]) -> list[dict[str, Any]]:
    feed = {spec.input_name: np.stack([tensor for _, tensor in batch])}
    top = {}
    for label, runner in runners.items():
        outputs = runner.infer(feed)
        logits = outputs[spec.output_name] if spec.output_name in outputs \
            else next(iter(outputs.values()))
        if logits.ndim != 2 or logits.shape[1] != spec.num_classes:
            raise UsageError(f"{label} returns logits of shape {list(logits.shape)}, but "
                             f"{spec.name} has {spec.num_classes} classes; is the export "
                             "another model?")
        top[label] = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K].tolist()
    return [{**_row(sample), "top5": {label: ranks[i] for label, ranks in top.items()}}
            for i, (sample, _) in enumerate(batch)]


def _row(sample: Sample) -> dict[str, Any]:
    return {"index": sample.index, "path": sample.path, "label": sample.label}


class Tally:
    """The running figures, from prediction rows only (fresh or read back on resume)."""

    def __init__(self, labels: list[str], reference: str):
        self.labels, self.reference = labels, reference
        self.results = {label: RuntimeAccuracy(label) for label in labels}
        self.excluded: list[tuple[str, str]] = []

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            if "excluded" in row:
                self.excluded.append((row["path"], row["excluded"]))
                continue
            label, ranks = row["label"], row["top5"]
            ref_top1 = ranks[self.reference][0]
            for name, result in self.results.items():
                top5 = ranks[name]
                result.images += 1
                result.top1_correct += top5[0] == label
                result.top5_correct += label in top5
                result.agreed += top5[0] == ref_top1
                if top5[0] != ref_top1 and len(result.examples) < EXAMPLES:
                    result.examples.append({"path": row["path"], "label": label,
                                            self.reference: ref_top1, name: top5[0]})


class PredictionsWriter:
    """Appends rows to ``PATH.partial`` (JSON lines after a header), renamed at the end.

    With ``resume``, rows already in ``PATH.partial`` (or a finished ``PATH``) are kept when
    the header matches this run; a row cut short by the interruption is dropped.
    """

    def __init__(self, path: str | Path | None, header: dict[str, Any], resume: bool,
):
        self.path = Path(path) if path is not None else None
        self.partial = self.path.with_name(self.path.name + ".partial") if self.path else None
        self.header, self.resume = header, resume
        self.handle: IO[str] | None = None

    def open(self, tally: Tally) -> set[int]:
        """Start (or continue) the file; the indices of the images already predicted."""
        if self.path is None or self.partial is None:
            return set()
        done: set[int] = set()
        with provenance.disk_errors(self.partial):
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            if self.resume and not self.partial.is_file() and self.path.is_file():
                shutil.copyfile(self.path, self.partial)  # a finished run: nothing to redo
            if self.resume and self.partial.is_file():
                done, keep = self._read_back(tally)
                handle = open(self.partial, "r+", encoding="utf-8")
                handle.truncate(keep)
                handle.seek(keep)
            else:
                if self.resume:
                    log.info(f"nothing to resume at {self.partial}; starting from the first image")
                elif self.partial.is_file():
                    log.info(f"replacing {self.partial} left by an interrupted run "
                             "(--resume continues it instead)")
                handle = open(self.partial, "w", encoding="utf-8")
                handle.write(json.dumps(self.header) + "\n")
                handle.flush()
        self.handle = handle
        return done

    def _read_back(self, tally: Tally) -> tuple[set[int], int]:
        assert self.partial is not None
        done: set[int] = set()
        keep = 0
        with open(self.partial, "rb") as handle:
            for number, line in enumerate(handle):
                try:
                    record = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    record = None
                if record is None:
                    break  # cut short by the interruption: predicted again
                if number == 0:
                    self._check_header(record)
                else:
                    tally.add([record])
                    done.add(record["index"])
                keep += len(line)
        if keep == 0:
            raise UsageError(f"{self.partial} has no header line; drop --resume to start over")
        return done, keep

    def _check_header(self, found: dict[str, Any]) -> None:
        for key, value in self.header.items():
            if found.get(key) != value:
                raise UsageError(f"cannot resume from {self.partial}: it was written for another "
                                 f"run ({key} {found.get(key)!r}, now {value!r}); drop --resume "
                                 "or pass another --predictions")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.handle is None:
            return
        with provenance.disk_errors(self.partial or ""):
            self.handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
            self.handle.flush()

    def close(self) -> None:
        """Stop writing; ``PATH.partial`` stays for a resume (an interrupted run)."""
        if self.handle is not None:
            self.handle.close()

    def discard(self) -> None:
        """A run stopped for bad input: its rows are no base for a resume."""
        self.close()
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)

    def finish(self) -> Path | None:
        """The finished file: ``PATH.partial`` renamed to ``PATH`` (never half-written)."""
        if self.path is None or self.partial is None:
            return None
        with provenance.disk_errors(self.path):
            os.replace(self.partial, self.path)
        return self.path


# ---------------------------------------------------------------------------- rendering

HEADER = ("runtime", "images", "top-1", "top-5", "top-1 agreement", "differ",
          "published top-1 / top-5", "reference top-1 / top-5", "note")
MEANINGLESS = "synthetic weights: top-1/top-5 meaningless, agreement counts"


def rows(run: AccuracyRun) -> list[tuple[str, ...]]:
    """One row of HEADER's cells per runtime, the reference first; PaddleClas's figures beside."""
    pub = run.published
    seed = (f"{_fraction(pub['top1'], 3)} / {_fraction(pub['top5'], 3)}",
            f"{_fraction(pub['ref_top1'], 3)} / {_fraction(pub['ref_top5'], 3)}")
    out: list[tuple[str, ...]] = []
    for result in run.results:
        is_ref = result.runtime == run.reference
        out.append((result.runtime + (" (reference)" if is_ref else ""), str(result.images),
                    _fraction(result.top1), _fraction(result.top5),
                    "-" if is_ref else _fraction(result.agreement),
                    "-" if is_ref else str(result.differ), *seed,
                    MEANINGLESS if run.synthetic else ""))
    return out


def render_table(run: AccuracyRun) -> str:
    """Plain text: one line per runtime, then the differing and excluded images and gates."""
    from validation.report import text_table

    lines = [(f"{run.model}: accuracy on {run.dataset['evaluated']} images of "
              f"{run.dataset['root']} ({run.dataset['layout']} layout), reference "
              f"{run.reference}, {run.target}")]
    lines.append(text_table([HEADER, *rows(run)]))
    lines.append("published: PaddleClas's Top1/Top5; reference: the paper's, as PaddleClas "
                 "lists them (Reference Top1/Top5)")
    for result in run.results:
        if result.examples:
            shown = ", ".join(f"{e['path']} ({run.reference} {e[run.reference]}, "
                              f"{result.runtime} {e[result.runtime]})" for e in result.examples)
            lines.append(f"{result.runtime}: {result.differ} images changed their top-1, e.g. "
                         f"{shown}")
    if run.excluded:
        shown = "; ".join(f"{path}: {why}" for path, why in run.excluded[:10])
        more = f" and {len(run.excluded) - 10} more" if len(run.excluded) > 10 else ""
        lines.append(f"EXCLUDED {len(run.excluded)} missing or unreadable images (for every "
                     f"runtime): {shown}{more}")
    if run.resumed:
        lines.append(f"resumed: {run.resumed} images from {run.predictions}")
    if (speed := run.images_per_s) is not None:
        lines.append(f"{speed:.1f} images/s")
    if run.predictions is not None:
        lines.append(f"predictions: {run.predictions}")
    lines += [f"FAIL {failure}" for failure in run.failures]
    lines += [f"WARNING {w}" for w in _warnings(run)]
    return "\n".join(lines) + "\n"


def render_markdown(run: AccuracyRun) -> str:
    gates = ", ".join(f"{k} {v}" for k, v in run.gates.items() if v is not None)
    lines = [f"# Accuracy of {run.model}: {'PASS' if run.passed else 'FAIL'}", ""]
    lines += [f"> **Warning:** {w}" for w in _warnings(run)]
    lines += ["", f"- Reference runtime: {run.reference}", f"- Target: `{run.target}`",
              f"- Dataset: {', '.join(f'{k} {v}' for k, v in run.dataset.items())}",
              f"- Excluded (missing or unreadable, for every runtime): {len(run.excluded)}",
              f"- Gates: {gates or 'none'}", "",
              "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(run)]
    if run.failures:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in run.failures]
    if run.excluded:
        lines += ["", "## Excluded images", ""] + [f"- `{p}`: {w}" for p, w in run.excluded]
    return "\n".join(lines) + "\n"


def report_dict(run: AccuracyRun) -> dict[str, Any]:
    return {"model": run.model, "passed": run.passed, "target": run.target,
            "reference": run.reference, "weights": run.weights,
            "synthetic_weights": run.synthetic, "dataset": run.dataset,
            "published": run.published, "gates": run.gates,
            "results": [r.to_dict() for r in run.results],
            "excluded": [{"path": p, "reason": w} for p, w in run.excluded],
            "failures": list(run.failures), "warnings": _warnings(run),
            "predictions": str(run.predictions) if run.predictions else None,
            "resumed": run.resumed, "seconds": run.seconds,
            "images_per_s": run.images_per_s, "versions": run.versions}


def synthetic_note(weights: dict[str, Any]) -> str | None:
    """validate's synthetic-weights line, said of accuracy."""
    synthetic = weights_warning(weights)
    if synthetic is None:
        return None
    return (synthetic.replace("runtimes were compared", "accuracy was measured")
            + "; top-1/top-5 against ImageNet labels are meaningless, agreement between "
            "runtimes still counts")


def _warnings(run: AccuracyRun) -> list[str]:
    note = synthetic_note(run.weights)
    return ([note] if note else []) + list(run.warnings)


def _fraction(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def progress_reporter(stream: IO[str] | None = None) -> Progress:
    """Images done, images/s and the ETA: a bar on a terminal, a line every 10 s otherwise."""
    from validation.progress import progress_reporter as reporter

    return reporter("accuracy", "images", stream, every_s=10.0)
