"""The bench sweep: models x precisions x batch sizes on one runtime, against PaddleClas's tables.

Each cell is timed with :mod:`validation.timing` on a runner from :mod:`runtimes`, on the
export :mod:`exporter` produces (both injectable, so the sweep logic is tested with real small
models). A cell that fails is recorded with its reason and the sweep goes on; every finished
cell is written at once (the results JSON is rewritten atomically), so ``resume=True``
continues an interrupted sweep where it stopped. Nothing here prints: progress goes to an
optional reporter (:func:`progress_reporter` picks a rich bar or plain lines).
"""

from __future__ import annotations

import datetime
import itertools
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import runtimes
from core import files, limits
from core.errors import DependencyError, UsageError, first_line
from core.files import OutputKind, first_line_starts, json_with_format
from core.log import log
from core.preprocess import check_batch_fits
from core.spec import BATCH_SIZES, DEFAULT_TABLE, FP16, LATENCY_TABLES, ModelSpec, Precision
from exporter.specs import get_spec
from validation import tables
from validation.artifacts import bare_file, is_bare_file
from validation.figures import is_crossrt_figure
from validation.progress import Progress
from validation.targets import existing_export
from validation.targets import target_spec as _target_spec
from validation.timing import Method, TimingStats, measure

DEFAULT_RESULTS = Path("artifacts") / "bench"
RESULTS_FILE, MARKDOWN_FILE, CSV_FILE, FIGURE_FILE = ("bench.json", "bench.md", "bench.csv",
                                                      "bench.png")
FORMAT = "crossrt-bench/2"  # 2: runtimes (a list), export folders as models
RESULTS = OutputKind("bench result", json_with_format("crossrt-bench/1", FORMAT))
# What --results holds, each recognised as crossrt's own before it is replaced
RESULT_FILES = {RESULTS_FILE: RESULTS,
                MARKDOWN_FILE: OutputKind("bench report", first_line_starts("# crossrt bench")),
                CSV_FILE: OutputKind("bench table", first_line_starts("model,family,runtime,")),
                FIGURE_FILE: OutputKind("bench figure", is_crossrt_figure)}
INPUT_SEED = 0

Exporter = Callable[..., Path]  # export(model_name, fp16=bool) -> export folder
RunnerFactory = Callable[..., Any]  # runtimes.create_runner(kind, target, **options) -> Runner
RuntimeCheck = Callable[[str], tuple[bool, str]]  # runtimes.is_available


@dataclass(frozen=True)
class BenchConfig:
    """A resolved sweep request; build it with :meth:`resolve` (all defaults live there)."""

    models: tuple[str, ...]
    runtimes: tuple[str, ...]
    table: str = DEFAULT_TABLE
    precisions: tuple[Precision, ...] = LATENCY_TABLES[DEFAULT_TABLE].precisions
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    method: Method = Method()
    threads: int | None = None
    cuda_graph: bool | None = None
    folders: tuple[tuple[str, str], ...] = ()  # model -> the export folder it was named by

    @classmethod
    def resolve(cls, models: Sequence[str], *, runtimes: Sequence[str] | None = None,
                table: str | None = None, precisions: Sequence[str] | None = None,
                fp16: bool = False,
                batch_sizes: Sequence[int] | None = None, warmup_ms: float | None = None,
                duration_s: float | None = None, min_iterations: int | None = None,
                threads: int | None = None, cuda_graph: bool | None = None,
                include_transfers: bool = False,
                is_available: RuntimeCheck | None = None) -> BenchConfig:
        """Check the request and fill in defaults: best runtime, the table's precisions, 1/4/8.
        A model is a name of the zoo or an export folder (a model brought by the user, too)."""
        if not models:
            raise UsageError("name at least one model to bench, or pass --all")
        table = table or DEFAULT_TABLE
        if table not in LATENCY_TABLES:
            raise UsageError(f"unknown table {table!r}; choose one of "
                             f"{', '.join(sorted(LATENCY_TABLES))}")
        try:
            chosen = tuple(Precision.parse(p) for p in precisions or ()) or \
                LATENCY_TABLES[table].precisions
            chosen += (FP16,) if fp16 else ()
        except ValueError as error:
            raise UsageError(str(error)) from None
        batch_sizes = tuple(batch_sizes or BATCH_SIZES)
        if any(b < 1 for b in batch_sizes):
            raise UsageError(f"batch sizes must be at least 1, got {list(batch_sizes)}")
        for limit, value in ((limits.WARMUP_MS, warmup_ms), (limits.DURATION_S, duration_s),
                             (limits.MIN_ITERATIONS, min_iterations), (limits.THREADS, threads)):
            limit.check(value)
        default = Method()
        method = Method(warmup_ms=default.warmup_ms if warmup_ms is None else warmup_ms,
                        duration_s=default.duration_s if duration_s is None else duration_s,
                        min_iterations=(default.min_iterations if min_iterations is None
                                        else min_iterations),
                        include_transfers=include_transfers)
        specs = [_target_spec(model) for model in models]
        folders = tuple((spec.name, str(model)) for spec, model in zip(specs, models)
                        if Path(model).exists())  # an export, a model to export, a file
        chosen = _bare_precisions(models, chosen, explicit=bool(precisions or fp16))
        for spec in specs:
            check_batch_fits(spec, max(batch_sizes))
        if runtimes:
            from runtimes.factory import require_available

            kinds = tuple(dict.fromkeys(require_available(kind, is_available)
                                        for kind in runtimes))
        else:
            kinds = (best_runtime(is_available),)
        return cls(models=tuple(dict.fromkeys(spec.name for spec in specs)),  # no repeats
                   runtimes=kinds, table=table, precisions=tuple(dict.fromkeys(chosen)),
                   batch_sizes=tuple(dict.fromkeys(batch_sizes)), method=method,
                   threads=threads, cuda_graph=cuda_graph, folders=folders)

    def spec(self, model: str) -> ModelSpec:
        """The spec of one of the sweep's models (an export folder's own, or the registry's)."""
        folder = dict(self.folders).get(model)
        return _target_spec(folder) if folder else get_spec(model)

    def runner_options(self, precision: str) -> dict[str, Any]:
        """Keyword options for ``create_runner``; unset ones are left to the runner's default."""
        options: dict[str, Any] = {"fp16": True} if precision == FP16 else {}
        if self.threads is not None:
            options["threads"] = self.threads
        if self.cuda_graph is not None:
            options["cuda_graph"] = self.cuda_graph
        return options


@dataclass(frozen=True)
class Cell:
    model: str
    runtime: str
    precision: str
    batch_size: int

    def label(self) -> str:
        return f"{self.model} {self.runtime} {self.precision.upper()} bs{self.batch_size}"

    def key(self) -> tuple[str, str, str, int]:
        return (self.model, self.runtime, self.precision, self.batch_size)


def plan_cells(config: BenchConfig) -> list[Cell]:
    """Every cell of the sweep, model by model (one export), runtime by runtime and precision
    by precision (one runner each)."""
    return [Cell(m, r, p, b) for m in config.models for r in config.runtimes
            for p in config.precisions for b in config.batch_sizes]


def record_key(record: dict[str, Any]) -> tuple[str, str, str, int]:
    return (record["model"], record["runtime"], record["precision"], record["batch_size"])


@dataclass
class BenchResult:
    """The sweep's document (what ``bench.json`` holds) and the files written from it."""

    table: str
    runtimes: tuple[str, ...]
    method: Method
    machine: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    threads: int | None = None
    cuda_graph: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "table": self.table, "runtimes": list(self.runtimes),
                "method": asdict(self.method), "method_text": self.method.describe(),
                "threads": self.threads, "cuda_graph": self.cuda_graph,
                "machine": self.machine, "records": self.records}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BenchResult:
        return cls(table=doc["table"], runtimes=tuple(doc["runtimes"]),
                   method=Method(**doc["method"]),
                   machine=doc["machine"], records=list(doc["records"]),
                   threads=doc.get("threads"), cuda_graph=doc.get("cuda_graph"))

    def difference(self, other: BenchResult) -> list[str]:
        """What ``other`` (a new sweep) measures differently (empty: its cells may join)."""
        mine, theirs = self.to_json(), other.to_json()
        keys = ("table", "runtimes", "method", "threads", "cuda_graph")
        lines = [f"{key}: on disk {mine[key]}, now {theirs[key]}" for key in keys
                 if mine[key] != theirs[key]]
        if tables.machine_summary(self.machine) != tables.machine_summary(other.machine):
            lines.append(f"machine: on disk {tables.machine_summary(self.machine)}, now "
                         f"{tables.machine_summary(other.machine)}")
        return lines

    @property
    def warnings(self) -> list[str]:
        """One line per failed, noisy or substituted-precision cell."""
        return tables.notes(self.records)


# ---------------------------------------------------------------------------- the sweep


def run_bench(config: BenchConfig, out_dir: str | Path, *, json_path: str | Path | None = None,
              resume: bool = False, export: Exporter | None = None,
              make_runner: RunnerFactory | None = None, progress: Progress | None = None,
              force: bool = False) -> BenchResult:
    """Sweep, then write bench.json, bench.md, bench.csv and bench.png into ``out_dir``; one
    sweep at a time writes a folder (its lock), and a file there that crossrt did not write is
    replaced only with ``force``."""
    out = Path(out_dir)
    outputs = [files.Output("--results", out / name, kind) for name, kind in RESULT_FILES.items()]
    if json_path is not None:
        outputs.append(files.Output("--json", Path(json_path), RESULTS))
    files.check_outputs(outputs, [], force=force)
    with files.locked(out, "bench"):
        result = run_sweep(config, out / RESULTS_FILE, resume=resume, export=export,
                           make_runner=make_runner, progress=progress)
        result.files = _write_results(result, config, out, json_path)
    return result


def _write_results(result: BenchResult, config: BenchConfig, out: Path,
                   json_path: str | Path | None) -> dict[str, Path]:
    from validation import figures  # matplotlib is imported only when a figure is drawn

    doc = result.to_json()
    written = {"json": out / RESULTS_FILE,
               "markdown": files.write_atomic(out / MARKDOWN_FILE, tables.markdown_report(doc)),
               "csv": files.write_atomic(out / CSV_FILE, tables.csv_text(result.records)),
               "figure": figures.latency_accuracy_figure(result.records, out / FIGURE_FILE,
                                                         table=config.table)}
    if json_path is not None:
        written["json_copy"] = files.write_json(json_path, doc)
    return written


def run_sweep(config: BenchConfig, results_path: str | Path, *, resume: bool = False,
              export: Exporter | None = None, make_runner: RunnerFactory | None = None,
              progress: Progress | None = None) -> BenchResult:
    """Time every cell of ``config``, writing ``results_path`` after each one.

    With ``resume``, cells already in ``results_path`` (whatever their status) are kept and
    not run again. An exception in a cell is recorded; KeyboardInterrupt stops the sweep
    with every finished cell already on disk.
    """
    results_path = Path(results_path)
    export = export or _default_export
    make_runner = make_runner or _default_runner
    result = BenchResult(table=config.table, runtimes=config.runtimes, method=config.method,
                         machine=machine_info(), threads=config.threads,
                         cuda_graph=config.cuda_graph)
    if resume and results_path.is_file():
        previous = load_result(results_path)
        if difference := previous.difference(result):
            raise UsageError(f"cannot --resume {results_path}: its cells were measured another "
                             f"way ({'; '.join(difference)}); drop --resume to measure again, "
                             "or pass another --results")
        result.records = previous.records
    done = {record_key(r) for r in result.records}
    cells = plan_cells(config)
    todo = [c for c in cells if c.key() not in done]

    def save(cell: Cell, record: dict[str, Any]) -> None:
        result.records.append(record)
        files.write_json(results_path, result.to_json())
        if progress:
            outcome = (f"{record['latency_ms']['median']:.2f} ms median"
                       if record["status"] == "ok" else f"{record['status']}: {record['reason']}")
            progress.advance(1, note=f"{cell.label()}: {outcome}")

    if progress:
        progress.start(total=len(cells), done=len(cells) - len(todo))
    files.write_json(results_path, result.to_json())
    try:
        for model, model_cells in itertools.groupby(todo, key=lambda c: c.model):
            _sweep_model(config, config.spec(model), list(model_cells), export, make_runner,
                         result.machine, save, progress)
    finally:
        if progress:
            progress.stop()
    return result


def _sweep_model(config: BenchConfig, spec: ModelSpec, cells: list[Cell], export: Exporter,
                 make_runner: RunnerFactory, machine: dict[str, Any],
                 save: Callable[[Cell, dict[str, Any]], None], progress: Progress | None) -> None:
    """One model's cells: one export, then one runner per runtime and precision for all its
    batch sizes."""
    extra: dict[str, Any] = {"machine": machine, "method": asdict(config.method),
                             "threads": config.threads}
    try:
        named = dict(config.folders).get(spec.name, spec.name)
        ready = existing_export(named) is not None or is_bare_file(named)
        target = Path(named) if ready else \
            Path(export(named, fp16=any(c.precision == FP16 for c in cells)))
    except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
        for cell in cells:
            save(cell, cell_record(config, spec, cell,
                                   failure="export failed: "
                                           f"{first_line(exc, named=True, limit=300)}",
                                   **extra))
        return
    extra.update(export_facts(target))
    for (kind, precision), group in itertools.groupby(cells, key=lambda c: (c.runtime,
                                                                             c.precision)):
        pending = list(group)
        try:
            with make_runner(kind, target, **config.runner_options(precision)) as runner:
                with_info = {**extra, "runtime_info": _describe(runner)}
                while pending:
                    cell = pending.pop(0)
                    save(cell, _time_cell(config, spec, cell, runner, with_info, progress))
        except Exception as exc:  # noqa: BLE001 - the runner could not be built or activated
            for cell in pending:
                save(cell, cell_record(config, spec, cell, failure=f"runner failed: "
                                       f"{first_line(exc, named=True, limit=300)}", **extra))


def _time_cell(config: BenchConfig, spec: ModelSpec, cell: Cell, runner: Any,
               extra: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
    if progress:
        progress.advance(0, now=cell.label())
    try:
        stats = time_runner(runner, spec, cell.batch_size, config.method)
    except Exception as exc:  # noqa: BLE001 - out of memory, runtime errors: recorded
        return cell_record(config, spec, cell, failure=first_line(exc, named=True, limit=300),
                           **extra)
    return cell_record(config, spec, cell, stats=stats, **extra)


def time_runner(runner: Any, spec: ModelSpec, batch_size: int, method: Method) -> TimingStats:
    """Time one batch size on an active runner: bound inputs, or ``infer`` with transfers."""
    feed = model_feed(runner, spec, batch_size)
    if method.include_transfers:
        return measure(lambda: runner.infer(feed), batch_size, method)
    runner.bind(feed)
    return measure(runner.run_bound, batch_size, method)


def model_feed(runner: Any, spec: ModelSpec, batch_size: int) -> dict[str, Any]:
    """Seeded inputs at the spec's shape, in the dtype the runner's input expects."""
    from polygraphy.datatype import DataType

    from core.preprocess import random_inputs

    name, (dtype, _shape) = next(iter(runner.get_input_metadata().items()))
    data = random_inputs(spec, batch_size, seed=INPUT_SEED)
    if dtype is None:
        return {name: data}
    # Polygraphy metadata may hold its own DataType or a numpy dtype; both convert here.
    return {name: data.astype(DataType.to_dtype(DataType.from_dtype(dtype), "numpy"))}


def cell_record(config: BenchConfig, spec: ModelSpec, cell: Cell, *,
                stats: TimingStats | None = None, failure: str | None = None,
                **provenance_: Any) -> dict[str, Any]:
    """One cell's JSON record: statistics (or why it failed), PaddleClas's published figure,
    provenance."""
    published = tables.published_ms(spec, config.table, cell.precision, cell.batch_size)
    info = provenance_.get("runtime_info") or {}
    record: dict[str, Any] = {
        "model": spec.name, "family": spec.family, "runtime": cell.runtime,
        "table": config.table, "precision": cell.precision,
        "precision_used": info.get("precision") if stats else None,
        "batch_size": cell.batch_size, "status": "ok" if stats else "failed",
        "reason": failure, "latency_ms": stats.latency_ms() if stats else None,
        "throughput_ips": stats.throughput_ips if stats else None,
        "cv": stats.cv if stats else None, "noisy": stats.noisy if stats else None,
        "iterations": stats.iterations if stats else None,
        "published_ms": published,
        "ratio": stats.median_ms / published if stats and published else None,
        "crop_size": spec.crop_size, "resize_short": spec.resize_short or spec.resize_to,
        "published_top1": spec.published.top1,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return {**record, **provenance_}


def _describe(runner: Any) -> dict[str, Any]:
    describe = getattr(runner, "describe", None)
    return dict(describe()) if describe else {}


RESULT_SCHEMA: files.Schema = {
    "format": str, "table": str, "runtimes": list, "machine": dict, "records": list,
    "method": {"warmup_ms": (int, float), "duration_s": (int, float), "min_iterations": int,
               "include_transfers": bool}}
RECORD_SCHEMA: files.Schema = {"model": str, "runtime": str, "precision": str,
                               "batch_size": int, "status": str}
OK_RECORD_SCHEMA: files.Schema = {
    "latency_ms": {key: (int, float) for key in ("min", "median", "mean", "p90", "p99", "max")},
    "throughput_ips": (int, float), "cv": (int, float), "iterations": int}


def load_result(path: str | Path) -> BenchResult:
    """A bench.json written by :func:`run_sweep` (to resume it, or to render it again); every
    record is checked, so that no half-trusted cell joins a table."""
    path = Path(path)
    fix = "delete it or run without --resume"
    doc = files.read_json(path, "bench result", fix, RESULT_SCHEMA)
    if doc["format"] != FORMAT:
        raise UsageError(f"{path} is not a crossrt bench result (format {doc['format']!r}); {fix}")
    for number, record in enumerate(doc["records"], start=1):
        problem = files.schema_problem(record, RECORD_SCHEMA) or (
            files.schema_problem(record, OK_RECORD_SCHEMA)
            if isinstance(record, dict) and record.get("status") == "ok" else None)
        if problem:
            raise UsageError(f"{path} is not a crossrt bench result (cell {number}: "
                             f"{problem}); {fix}")
    return BenchResult.from_json(doc)


# ---------------------------------------------------------------- defaults and provenance


def best_runtime(is_available: RuntimeCheck | None = None) -> str:
    """The fastest runtime this machine has, by the runners' ``timing_rank``: TensorRT, else
    ONNX Runtime CUDA, else CPU."""
    is_available = is_available or runtimes.is_available
    reasons = []
    for kind in runtimes.preferred("timing_rank"):
        ok, why = is_available(kind)
        if ok:
            return kind
        reasons.append(f"{kind}: {why}")
    raise DependencyError(f"no runtime to bench with ({'; '.join(reasons)}); "
                          "pip install onnxruntime")


def _bare_precisions(models: Sequence[str], chosen: tuple[Precision, ...], *,
                     explicit: bool) -> tuple[Precision, ...]:
    """A bare file is timed as it is, at its own precision: the sweep's precisions by default,
    and any other precision asked for is refused."""
    own = {model: bare.precision for model in models if (bare := bare_file(model)) is not None}
    if not own:
        return chosen
    if not explicit:
        chosen = tuple(dict.fromkeys(own.values()))
    for model, precision in own.items():
        if set(chosen) != {precision}:
            raise UsageError(f"{Path(model).name} runs as it is, at {precision.upper()}; bench "
                             f"it alone at that precision (--precision {precision}), or bench "
                             "an export folder, which holds both precisions")
    return chosen


def _default_export(model: str | Path, *, fp16: bool) -> Path:
    from exporter.export import default_export

    return default_export(model, fp16=fp16)


def _default_runner(kind: str, target: Path, **options: Any) -> Any:
    return runtimes.create_runner(kind, target, **options)


def export_facts(target: Path) -> dict[str, Any]:
    """The manifest's weights record (synthetic with seed, checkpoint hash, Paddle model), and
    the graphs edited since export, timed as they are now and said so (as validate does)."""
    from core.layout import ExportDir

    folder = ExportDir(target if target.is_dir() else target.parent)
    try:
        manifest = folder.manifest()
    except UsageError:
        return {"weights": None}
    edited = folder.edited_files(manifest, suffix=".onnx")
    if edited:
        log.warning(f"{folder.path}: {', '.join(edited)} no longer match the manifest's sha256 "
                    "(edited after export?); timing them as they are now")
    return {"weights": manifest.get("weights"), "edited_since_export": edited}


def machine_info() -> dict[str, Any]:
    """CPU model and threads, GPUs (name, compute capability, driver, memory, peak SM clock)
    from the CUDA driver, versions."""
    from runtimes.probe import cpu_name, gpus

    info: dict[str, Any] = {
        "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": runtimes.tool_versions(),
    }
    if found := gpus()[0]:
        info["gpus"] = list(found)
    return info


def progress_reporter(stream: IO[str] | None = None) -> Progress:
    """The sweep's progress: the cell being timed, cells done, ETA (a bar, or a line per cell)."""
    from validation.progress import progress_reporter as reporter

    return reporter("bench", "cells", stream)
