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

import os
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

import runtimes
from core import files, limits
from core.errors import UsageError, first_line
from core.labels import IMAGENET_1K, imagenet_synsets
from core.log import log
from core.preprocess import check_batch_fits, preprocess, read_image
from core.spec import FP16, ModelSpec
from validation.accuracy_report import synthetic_note
from validation.datasets import Dataset, Sample, load_dataset
from validation.predictions import PREDICTIONS, PredictionsJournal, partial_path
from validation.progress import Progress
from validation.targets import (
    Participant,
    line_up,
    precisions,
    resolve_target,
    target_files,
)

DEFAULT_BATCH_SIZE = 8  # within the default TensorRT profile (1 to 8)
MAX_EXCLUDED = 0.01  # more missing or unreadable images than this fraction: bad dataset
TOP_K = 5
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
    class_names: tuple[str, ...] = ()  # index by index: how reports name a class

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


@dataclass(frozen=True)
class AccuracyRequest:
    """One ``crossrt accuracy``, typed; :meth:`check` refuses bad fields before any work.

    ``target`` is an export folder or a model name (exported first), as in validate;
    ``dataset`` a folder of class folders, or the root of the paths in the list ``labels``.
    """

    target: str | Path
    dataset: str | Path
    labels: Path | None = None
    runtimes: tuple[str, ...] | None = None  # besides the reference; None: every one here
    reference: str | None = None
    fp16: bool = False  # also FP16 (the FP16 graph, and engine): precision plus FP16
    precision: tuple[str, ...] | None = None  # these precisions (None: FP32)
    batch_size: int = DEFAULT_BATCH_SIZE
    limit: int | None = None
    workers: int | None = None  # threads decoding ahead; None: half the CPUs
    predictions: Path | None = None
    resume: bool = False
    max_top1_drop: float | None = None
    min_top1: float | None = None
    force: bool = False  # replace an existing --predictions file that crossrt did not write
    spec: str | None = None  # a bare file's preprocessing: a model, export, folder or yml

    def __post_init__(self) -> None:  # lists, strings and None from callers become typed
        for name in ("runtimes", "precision"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("labels", "predictions"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", DEFAULT_BATCH_SIZE)
        if self.workers is None:
            object.__setattr__(self, "workers", default_workers())

    def check(self) -> None:
        """Every field and input file, before any export or runtime starts."""
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        limits.WORKERS.check(self.workers)
        limits.LIMIT.check(self.limit)
        for name, value in (("--max-top1-drop", self.max_top1_drop),
                            ("--min-top1", self.min_top1)):
            if value is not None and not 0 <= value <= 1:
                raise UsageError(f"{name} is a fraction between 0 and 1 (e.g. 0.002), got {value}")
        if self.resume and self.predictions is None:
            raise UsageError("--resume continues from a predictions file: pass --predictions F "
                             "(the one the interrupted run wrote)")
        if not Path(self.dataset).is_dir():
            what = "is a file, not a folder" if Path(self.dataset).exists() else "does not exist"
            raise UsageError(f"dataset folder {self.dataset} {what}; pass --dataset DIR")
        if self.labels is not None:
            files.input_file(self.labels, "list file", "pass --labels val_list.txt (one "
                             "'relative/path label' per line)")
        files.check_outputs(self.outputs(), self.inputs(), force=self.force)

    def outputs(self) -> list[files.Output]:
        """The journal and its ``.partial`` (:mod:`validation.predictions`)."""
        if self.predictions is None:
            return []
        return [files.Output("--predictions", self.predictions, PREDICTIONS),
                files.Output("--predictions", partial_path(self.predictions), PREDICTIONS)]

    def inputs(self) -> list[tuple[str, Path]]:
        """What the run reads: no output may be written over one of these."""
        return [*((("--labels", self.labels),) if self.labels is not None else ()),
                *((str(self.target), p) for p in target_files(self.target))]

    def gate_failures(self, results: Sequence[RuntimeAccuracy]) -> list[str]:
        """The gates that did not hold: a top-1 below --min-top1, a drop past --max-top1-drop."""
        ref = results[0]
        failures = []
        for result in results:
            if result.top1 is None or ref.top1 is None:
                continue
            if self.min_top1 is not None and result.top1 < self.min_top1:
                failures.append(f"{result.runtime}: top-1 {result.top1:.4f} is below --min-top1 "
                                f"{self.min_top1:g}")
            drop = ref.top1 - result.top1
            if result is not ref and self.max_top1_drop is not None and \
                    drop > self.max_top1_drop + 1e-12:
                failures.append(f"{result.runtime}: top-1 {result.top1:.4f} is {drop:.4f} below "
                                f"the reference {ref.runtime}'s {ref.top1:.4f} (--max-top1-drop "
                                f"{self.max_top1_drop:g}); {result.differ} images changed their "
                                "top-1")
        return failures


def evaluate_accuracy(request: AccuracyRequest | str | Path, dataset: str | Path | None = None,
                      *, progress: Progress | None = None, **options: Any) -> AccuracyRun:
    """Top-1/top-5 of the reference and every runtime over a labelled dataset: an
    :class:`AccuracyRequest`, or its target and dataset with the request's fields as keywords.
    Gates that fail are returned in ``failures``; bad input raises a UsageError."""
    if not isinstance(request, AccuracyRequest):
        request = AccuracyRequest(request, dataset if dataset is not None else "", **options)
    request.check()
    wanted = precisions(request.precision, request.fp16)
    lineup = line_up(request.target, reference=request.reference, requested=request.runtimes,
                     wanted=wanted, spec=request.spec)  # and the dataset: before any export
    spec, ref, chosen = lineup.spec, lineup.reference, [lineup.reference, *lineup.participants]
    if lineup.bare is not None and lineup.bare.preprocessing is None:
        raise UsageError(f"{lineup.bare.path.name}'s preprocessing is unknown, and accuracy "
                         "feeds it images; pass --spec MODEL (or put its inference.yml beside "
                         "it)")
    check_batch_fits(spec, request.batch_size)
    data = load_dataset(request.dataset, request.labels, num_classes=spec.num_classes,
                        limit=request.limit, class_names=spec.class_names(),
                        synsets=imagenet_synsets() if spec.label_set == IMAGENET_1K else ())
    _check_images_exist(data)
    export_dir, manifest, warnings = resolve_target(request.target, FP16 in wanted, lineup.bare)
    journal = PredictionsJournal(request.predictions, {
        "model": spec.name, "target": str(export_dir.resolve()), "reference": ref.label,
        "runtimes": [p.label for p in chosen], "dataset": data.fingerprint(),
        "images": len(data.samples)}, request.resume)
    tally = Tally([p.label for p in chosen], ref.label)
    done = tally.add(journal.open())
    log.info(f"{spec.name}: {len(data.samples)} images ({data.layout} layout), reference "
             f"{ref.label}, runtimes {', '.join(p.label for p in chosen[1:]) or 'none besides it'}"
             + (f"; {len(done)} already done" if done else ""))
    if (note := synthetic_note(manifest.get("weights", {}))) is not None:
        log.info(note)
    todo = [s for s in data.samples if s.index not in done]
    seconds = _stream(request, spec, data, todo, chosen, export_dir, journal, tally, progress)
    results = tuple(tally.results[label] for label in tally.labels)
    return AccuracyRun(
        model=spec.name, target=str(export_dir), reference=ref.label, results=results,
        dataset=data.describe(), excluded=tuple(tally.excluded),
        published=_published(spec), weights=dict(manifest.get("weights", {})),
        gates={"max_top1_drop": request.max_top1_drop, "min_top1": request.min_top1},
        failures=tuple(request.gate_failures(results)), warnings=tuple(warnings),
        predictions=journal.finish(), resumed=len(done), seconds=seconds,
        versions=runtimes.tool_versions(), class_names=spec.class_names())


def _check_images_exist(data: Dataset) -> None:
    """More than MAX_EXCLUDED of the listed images missing is a bad listing, not bad images."""
    missing = [s for s in data.samples if not data.file(s).is_file()]
    if len(missing) > int(MAX_EXCLUDED * len(data.samples)):
        raise UsageError(f"{len(missing)} of {len(data.samples)} images do not exist (more than "
                         f"{MAX_EXCLUDED:.0%}), e.g. {data.file(missing[0])}; are the list's "
                         "paths relative to --dataset?")


def _stream(request: AccuracyRequest, spec: ModelSpec, data: Dataset, todo: list[Sample],
            chosen: list[Participant], export_dir: Path, journal: PredictionsJournal,
            tally: Tally, progress: Progress | None) -> float:
    """Every image still to do through every runtime, journaled and tallied batch by batch;
    the seconds the images took (not counting loading the runtimes)."""
    workers = request.workers or 0
    allowed = int(MAX_EXCLUDED * len(data.samples))
    try:
        with ExitStack() as stack:
            runners = {p.label: stack.enter_context(_runner(p, export_dir, workers > 0))
                       for p in chosen}
            started = time.perf_counter()
            if progress is not None:
                progress.start(len(data.samples), len(data.samples) - len(todo))
            stream = stack.enter_context(closing(_evaluate(todo, data, spec, runners,
                                                           request.batch_size, workers)))
            for rows in stream:
                journal.write(rows)
                tally.add(rows)
                if len(tally.excluded) > allowed:
                    first, why = tally.excluded[0]
                    raise UsageError(
                        f"{len(tally.excluded)} of {len(data.samples)} images are missing or "
                        f"unreadable (more than {MAX_EXCLUDED:.0%}), e.g. {first}: {why}")
                if progress is not None:
                    progress.advance(len(rows))
            return time.perf_counter() - started
    except UsageError:  # bad input or a full disk: the rows are no base for a resume
        journal.discard()
        raise
    finally:
        journal.close()
        if progress is not None:
            progress.stop()


def default_workers() -> int:
    """Half the CPUs: on the CPU runtimes the other half runs inference (more decoding
    threads than cores slow its parallel sections down, every thread waiting for the last)."""
    return max(1, (os.cpu_count() or 2) // 2)


def _runner(participant: Participant, export_dir: Path, decoding_beside: bool) -> Any:
    """The participant's runner. A runtime whose idle threads spin by default (ONNX Runtime
    CPU) takes the cores from the decoding threads beside it: with workers they wait."""
    spinning = {"spinning": False} if decoding_beside and \
        "spinning" in participant.runner.defaults else {}
    return participant.open(export_dir, **spinning)


def _published(spec: ModelSpec) -> dict[str, float | None]:
    pub = spec.published
    return {"top1": pub.top1, "top5": pub.top5, "ref_top1": pub.ref_top1,
            "ref_top5": pub.ref_top5}


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
            return first_line(exc)

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

    def add(self, rows: Iterable[dict[str, Any]]) -> set[int]:
        """Count the rows in; the indices of the images they hold."""
        indices = set()
        for row in rows:
            indices.add(row["index"])
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
        return indices


def progress_reporter(stream: IO[str] | None = None) -> Progress:
    """Images done, images/s and the ETA: a bar on a terminal, a line every 10 s otherwise."""
    from validation.progress import progress_reporter as reporter

    return reporter("accuracy", "images", stream, every_s=10.0)
