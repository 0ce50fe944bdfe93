"""Save and load every runner's outputs with the inputs they ran on, as Polygraphy run results.

The file is Polygraphy's ``RunResults`` JSON (what ``polygraphy run --save-outputs`` writes and
``--load-outputs`` / ``RunResults.load`` read), with one extra top-level key, ``"crossrt"``, that
Polygraphy's decoder ignores: the inputs of every iteration (arrays in Polygraphy's own
encoding), each sample's name and sha256, the model, and each runner's description and
precision. Iteration ``i`` of every runner ran on ``iterations[i]`` of the file, so a Paddle
reference computed on a CPU machine can be replayed next to TensorRT outputs computed elsewhere
(:meth:`SavedResults.replay`), or matched by photograph name against a deployment that did its
own preprocessing (:meth:`SavedResults.outputs_by_sample`). A plain Polygraphy file loads too,
without inputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UsageError, first_line
from core.files import OutputKind, json_document, write_atomic
from core.provenance import sha256_array

FORMAT = "crossrt-run-results"
FORMAT_VERSION = 1
_KEY = "crossrt"


def _is_saved_results(path: Path) -> bool:
    document = json_document(path)
    return isinstance(document, dict) and isinstance(document.get(_KEY), dict) \
        and document[_KEY].get("format") == FORMAT


SAVED_OUTPUTS = OutputKind("saved-outputs file", _is_saved_results)


def _is_saved_inputs(path: Path) -> bool:
    document = json_document(path)
    return isinstance(document, list) and all(
        isinstance(feed, dict) and all(isinstance(v, dict) and v.get("polygraphy_class") ==
                                       "ndarray" for v in feed.values()) for feed in document)


# Polygraphy's inputs file (``polygraphy run --save-inputs``/``--load-inputs``): one feed per
# iteration, the same iterations as the saved outputs beside it
SAVED_INPUTS = OutputKind("saved-inputs file", _is_saved_inputs)


def inputs_path(outputs: str | Path) -> Path:
    """Where the inputs of a saved-outputs file go: ``outs.json`` -> ``outs.inputs.json``."""
    outputs = Path(outputs)
    return outputs.with_name(f"{outputs.stem}.inputs{outputs.suffix or '.json'}")


def save_inputs(path: str | Path, feeds: Sequence[Mapping[str, np.ndarray]]) -> Path:
    """The feeds as Polygraphy's inputs JSON (what ``polygraphy run --load-inputs`` reads)."""
    from polygraphy import json as pjson

    return write_atomic(path, pjson.to_json([dict(feed) for feed in feeds]))


def load_inputs(path: str | Path) -> list[dict[str, np.ndarray]]:
    """Polygraphy's inputs JSON (``--save-inputs``, or crossrt's ``--save-outputs``)."""
    from polygraphy import json as pjson

    source = Path(path)
    try:
        feeds = pjson.from_json(source.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read inputs {source}: {exc.strerror or exc}") from None
    except Exception:  # noqa: BLE001 - whatever Polygraphy's decoder raises on a foreign file
        feeds = None
    if not isinstance(feeds, list) or not feeds or not all(
            isinstance(f, dict) and all(isinstance(v, np.ndarray) for v in f.values())
            for f in feeds):
        raise UsageError(f"{source} is not Polygraphy inputs (a JSON list of feeds, as "
                         "polygraphy run --save-inputs writes); pass such a file")
    return feeds


@dataclass(frozen=True)
class Sample:
    """One row of a batch: where it came from ("chelsea", "random:seed=0:3") and its hash
    (``core.provenance.sha256_array``, the hash ``reference.npz`` stores too)."""

    name: str
    sha256: str


@dataclass(frozen=True)
class SavedIteration:
    """One feed (a batch for every input) and the samples that make up its rows."""

    feed: Mapping[str, np.ndarray]
    samples: tuple[Sample, ...]

    @classmethod
    def from_feed(cls, feed: Mapping[str, np.ndarray], names: Sequence[str]) -> SavedIteration:
        """Hash each row of the feed's first input; ``names`` says where each row came from."""
        first = np.asarray(next(iter(feed.values())))
        if len(names) != len(first):
            raise UsageError(f"{len(names)} sample names for a batch of {len(first)}")
        return cls(feed=dict(feed), samples=tuple(
            Sample(name, sha256_array(row)) for name, row in zip(names, first)))

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple((name, sha256_array(value)) for name, value in sorted(self.feed.items()))


@dataclass(frozen=True)
class SavedRun:
    """One runner's outputs, one dict per iteration of the file."""

    runner: str
    outputs: tuple[Mapping[str, np.ndarray], ...]
    description: str = ""
    precision: str = "fp32"
    runtimes_s: tuple[float | None, ...] = ()  # per iteration, when the runner measured it


@dataclass(frozen=True)
class SavedResults:
    """Everything one file holds. ``iterations`` is empty for plain Polygraphy files."""

    runs: tuple[SavedRun, ...]
    iterations: tuple[SavedIteration, ...] = ()
    model: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)  # provenance: photos dir, seed...
    metadata: Mapping[str, Any] = field(default_factory=dict)  # tool versions and the like

    def run(self, runner: str) -> SavedRun:
        for run in self.runs:
            if run.runner == runner:
                return run
        raise UsageError(f"no outputs of runner {runner!r} in the saved results; they hold "
                         f"{', '.join(r.runner for r in self.runs) or 'none'}")

    def replay(self, runner: str) -> ReplayRunner:
        """A stand-in for the runner that answers ``infer(feed)`` from the saved outputs."""
        return ReplayRunner(self, self.run(runner))

    def outputs_by_sample(self, runner: str) -> dict[str, dict[str, np.ndarray]]:
        """Each sample's output rows by sample name (first occurrence), to align by photo."""
        run = self.run(runner)
        if not self.iterations:
            raise UsageError("these saved results hold no inputs (a plain Polygraphy file), "
                             "so their outputs cannot be matched by sample")
        rows: dict[str, dict[str, np.ndarray]] = {}
        for iteration, outputs in zip(self.iterations, run.outputs):
            for index, sample in enumerate(iteration.samples):
                rows.setdefault(sample.name, {k: np.asarray(v)[index] for k, v in outputs.items()})
        return rows


@dataclass(frozen=True)
class ReplayRunner:
    """Saved outputs that join a comparison like a live runner: ``infer(feed) -> outputs``."""

    results: SavedResults
    saved: SavedRun

    @property
    def name(self) -> str:
        return self.saved.runner

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = SavedIteration(feed=feed, samples=()).key
        for iteration, outputs in zip(self.results.iterations, self.saved.outputs):
            if iteration.key == key:
                return dict(outputs)
        raise UsageError(f"the saved outputs of {self.name!r} were computed on other inputs; "
                         f"use the same --images/--random/--seed/--batch-sizes as when saving")

    def __enter__(self) -> ReplayRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def save_results(path: str | Path, results: SavedResults) -> Path:
    """Write ``results`` atomically to ``path`` as Polygraphy RunResults JSON (+ crossrt key)."""
    from polygraphy import json as pjson
    from polygraphy.comparator import IterationResult, RunResults

    for run in results.runs:
        if results.iterations and len(run.outputs) != len(results.iterations):
            raise UsageError(f"runner {run.runner!r} has {len(run.outputs)} iterations, the "
                             f"inputs {len(results.iterations)}")
    run_results = RunResults()
    for run in results.runs:
        times = run.runtimes_s or (None,) * len(run.outputs)
        run_results.append((run.runner, [
            IterationResult(outputs=dict(outputs), runtime=seconds, runner_name=run.runner)
            for outputs, seconds in zip(run.outputs, times)]))
    extra = {
        "format": FORMAT, "version": FORMAT_VERSION, "model": results.model,
        "inputs": dict(results.inputs), "metadata": dict(results.metadata),
        "runners": {run.runner: {"description": run.description, "precision": run.precision}
                    for run in results.runs},
        "iterations": [{"feed": dict(it.feed),
                        "samples": [[s.name, s.sha256] for s in it.samples]}
                       for it in results.iterations],
    }
    payload = json.loads(run_results.to_json())
    payload[_KEY] = json.loads(pjson.to_json(extra))  # arrays in Polygraphy's encoding
    return write_atomic(path, json.dumps(payload))


def load_results(path: str | Path) -> SavedResults:
    """Read a file written by :func:`save_results` (or by ``polygraphy run --save-outputs``)."""
    from polygraphy import json as pjson
    from polygraphy.comparator import RunResults
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    source = Path(path)
    try:
        payload = json.loads(source.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read saved outputs {source}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{source} is not valid JSON (truncated, or not saved outputs); "
                         f"pass a file written by --save-outputs") from None
    if not isinstance(payload, dict) or "lst" not in payload:
        raise UsageError(f"{source} is JSON but not Polygraphy run results; pass a file "
                         f"written by --save-outputs")
    extra = payload.pop(_KEY, None)
    try:
        with G_LOGGER.verbosity(G_LOGGER.CRITICAL + 1):  # our error says it, in one line
            run_results = RunResults.from_json(json.dumps(payload))
            extra = pjson.from_json(json.dumps(extra)) if extra is not None else None
        return _from_polygraphy(run_results, extra)
    except (PolygraphyException, KeyError, TypeError, ValueError, IndexError) as exc:
        raise UsageError(f"{source} holds broken run results ({first_line(exc)}); "
                         f"save them again with --save-outputs") from None


def _from_polygraphy(run_results: Any, extra: Mapping[str, Any] | None) -> SavedResults:
    extra = extra or {}
    if extra and (extra.get("format") != FORMAT or extra.get("version") != FORMAT_VERSION):
        raise ValueError(f"unknown format {extra.get('format')!r} version {extra.get('version')!r}")
    runners = extra.get("runners", {})
    runs = []
    for name, iterations in run_results.items():
        info = runners.get(name, {})
        runs.append(SavedRun(
            runner=name, outputs=tuple({k: np.asarray(v) for k, v in it.items()}
                                       for it in iterations),
            description=info.get("description", "loaded from a Polygraphy file"),
            precision=info.get("precision", "unknown"),
            runtimes_s=tuple(it.runtime for it in iterations)))
    saved_iterations = tuple(
        SavedIteration(feed={k: np.asarray(v) for k, v in it["feed"].items()},
                       samples=tuple(Sample(name, digest) for name, digest in it["samples"]))
        for it in extra.get("iterations", []))
    for run in runs:
        if saved_iterations and len(run.outputs) != len(saved_iterations):
            raise ValueError(f"runner {run.runner} has {len(run.outputs)} iterations, "
                             f"the inputs {len(saved_iterations)}")
    return SavedResults(runs=tuple(runs), iterations=saved_iterations,
                        model=extra.get("model", ""), inputs=extra.get("inputs", {}),
                        metadata=extra.get("metadata", {}))


def load_golden(path: str | Path, *, input_name: str = "x", output_name: str = "logits",
                runner: str = "golden") -> SavedResults:
    """The export's ``reference.npz`` (preprocessed photographs, Paddle's outputs) as results.

    The photographs form one iteration, so a deployment's saved outputs can be matched to
    them by photo name (:meth:`SavedResults.outputs_by_sample`).
    """
    import zipfile

    source = Path(path)
    try:
        with np.load(source, allow_pickle=False) as golden:
            inputs, outputs = golden["inputs"], golden["outputs"]
            names, hashes = [str(n) for n in golden["names"]], [str(h) for h in golden["sha256"]]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read golden outputs {source} ({type(exc).__name__}: {exc}); "
                         "export the model again to rewrite them") from None
    rows = {"names": len(names), "sha256": len(hashes), "inputs": len(inputs),
            "outputs": len(outputs)}
    if len(set(rows.values())) != 1:
        raise UsageError(f"golden outputs {source} disagree with themselves ("
                         f"{', '.join(f'{k} {v} rows' for k, v in rows.items())}); export the "
                         "model again to rewrite them")
    iteration = SavedIteration(feed={input_name: inputs},
                               samples=tuple(Sample(n, h) for n, h in zip(names, hashes)))
    run = SavedRun(runner=runner, outputs=({output_name: outputs},),
                   description="Paddle outputs stored at export (reference.npz)")
    return SavedResults(runs=(run,), iterations=(iteration,), inputs={"photos": names},
                        metadata={"source": str(source)})
