"""`crossrt pipeline`: the main job in one call: export, validate against Paddle, build the
FP16 TensorRT engine (where a TensorRT backend is installed), time.

Each step is the same API call its own subcommand makes; this module only chains them and
gathers one summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.layout import ExportDir
from core.log import log
from core.spec import DEFAULT_TABLE
from exporter.export import ExportResult, export_onnx
from validation.bench import BenchConfig, BenchResult, run_bench
from validation.targets import precisions
from validation.validate import DEFAULT_BATCH_SIZES, ValidationRun, validate

DEFAULT_DURATION_S = 1.0  # a short bench: the main job is a demonstration, not the table


@dataclass(frozen=True)
class EngineStage:
    """The FP16 engine of the export, or why none was built (no TensorRT backend here)."""

    path: Path | None = None
    sidecar: dict[str, Any] | None = None
    reused: bool = False
    skipped: str | None = None


@dataclass(frozen=True)
class PipelineResult:
    export: ExportResult
    validation: ValidationRun
    bench: BenchResult
    engine: EngineStage = EngineStage(skipped="not attempted")

    @property
    def passed(self) -> bool:
        return self.validation.passed


def run_pipeline(model: str, *, runtimes: Sequence[str] | None = None,
                 precision: Sequence[str] | None = None, fp16: bool = False,
                 out_dir: str | Path | None = None,
                 bench_dir: str | Path | None = None, duration_s: float = DEFAULT_DURATION_S,
                 progress: Any = None) -> PipelineResult:
    """Export ``model``, validate every available runtime against Paddle, build the FP16
    engine where a TensorRT backend is installed, then a short bench."""
    # every argument is checked before the export starts
    wanted = precisions(precision, fp16)  # validated and timed (FP32 by default)
    config = BenchConfig.resolve([model], runtimes=runtimes, precisions=wanted,
                                 batch_sizes=DEFAULT_BATCH_SIZES, duration_s=duration_s)
    if out_dir is not None:
        ExportDir(out_dir).check_replaceable()
    exported = export_onnx(model, out_dir=out_dir, fp16=True)
    checked = validate(exported.path, batch_sizes=DEFAULT_BATCH_SIZES, precision=wanted)
    engine = build_fp16_engine(exported)
    # beside the export, not in it: an export folder holds only what its manifest lists
    bench_dir = bench_dir or exported.path.parent / "bench" / exported.path.name
    timed = run_bench(config, bench_dir, progress=progress,
                      export=lambda name, fp16=False: exported.path)
    return PipelineResult(exported, checked, timed, engine)


def build_fp16_engine(exported: ExportResult) -> EngineStage:
    """The FP16 engine beside the export (reused while its graph's hash is unchanged), with
    whichever TensorRT backend builds here; without one, the line that says how to get one."""
    from core.errors import DependencyError
    from runtimes.engine import ensure_engine
    from runtimes.trt_backends import TENSORRT_RTX, select_backend

    try:
        select_backend()
    except DependencyError:
        return EngineStage(skipped=f"no TensorRT backend is installed: {TENSORRT_RTX.install}")
    log.info("building the FP16 TensorRT engine")
    path, sidecar, reused = ensure_engine(exported.onnx_path, fp16=True)
    return EngineStage(path, sidecar, reused)


def summary(result: PipelineResult) -> str:
    """One summary: files written, the verdict with its key figures, the T4-layout row."""
    from validation import tables
    from validation.report import summary as record_summary
    from validation.report import weights_warning

    manifest, run = result.export.manifest, result.validation
    lines = [f"## {manifest['model']}", "", f"Export: {result.export.path}"
             + (" (reused)" if result.export.reused else "")]
    lines += [f"- {name} ({info['bytes'] / 1e6:.1f} MB)"
              for name, info in manifest["files"].items()]
    verdict = "PASS" if run.passed else "FAIL"
    lines += ["", f"Validation against {run.context.reference}: {verdict}"]
    for record in run.records:
        row = record_summary(record)
        figures = (f"max abs error {row['max_abs']:.2g}, top-1 agreement "
                   f"{row['top1_agreement']:.0%}" if row["max_abs"] is not None else "")
        verdict = "PASS" if record.result else f"FAIL: {record.result.reason}"
        lines.append(f"- {record.runtime} batch {record.batch_size}: {figures}; {verdict}")
    if warning := weights_warning(manifest.get("weights", {})):
        lines.append(f"- {warning}")
    lines += ["", "TensorRT engine (FP16): " + _engine_line(result.engine)]
    lines += ["", f"Timing ({', '.join(result.bench.runtimes)}, measured beside PaddleClas's "
              "published T4 figures):", "",
              tables.markdown_table(result.bench.records, DEFAULT_TABLE),
              "", f"Bench files: {', '.join(str(p) for p in result.bench.files.values())}"]
    return "\n".join(lines)


def _engine_line(stage: EngineStage) -> str:
    from runtimes.engine import engine_summary

    if stage.sidecar is None or stage.path is None:
        return f"not built: {stage.skipped}"
    return engine_summary(stage.path, stage.sidecar, reused=stage.reused)
