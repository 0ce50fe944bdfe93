"""The `crossrt` command: a thin dispatcher over the Python API.

Each subcommand is one entry in COMMANDS: a function that adds its arguments and a function
that maps them onto one API call. Heavy modules are imported inside the run functions, so
`crossrt --help` and every subcommand's --help work without paddle, TensorRT or a GPU.
Expected failures (core.errors.CrossrtError) print one line and exit with their code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import CheckFailed, CrossrtError, RuntimeFault, Terminated, UsageError
from core.log import show_on_stderr


def _csv(kind: Callable[[str], Any], allow_empty: bool = False,
         ) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            items = [kind(item) for item in text.split(",") if item.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list: {exc}") from exc
        if not items and not allow_empty:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return items
    return parse


def _json_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """--json means one thing in every command: write the JSON report to PATH ("-": stdout,
    and then nothing else goes to stdout)."""
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH", help=what)


def _force_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace an existing output file "
                        "that crossrt did not write (never a folder)")


def _file_arg(path: str | None) -> str | None:
    """A path argument, None when absent or "-" (stdout)."""
    return None if path in (None, "-") else path


def _check_outputs(args: argparse.Namespace, kinds: dict[str, Any],
                   outputs: Sequence[Any] = (), inputs: Sequence[tuple[str, Any]] = ()) -> None:
    """Before any work: the command's file flags (``kinds``: flag dest -> what crossrt writes
    there) and ``outputs`` of the request, against its ``inputs`` (core.files.check_outputs)."""
    from pathlib import Path

    from core.files import Output, check_outputs

    own = [Output(f"--{dest.replace('_', '-')}", Path(path), kind)
           for dest, kind in kinds.items() if (path := _file_arg(getattr(args, dest)))]
    check_outputs([*outputs, *own], inputs, force=getattr(args, "force", False))


class _StdoutClosed(Exception):
    """The reader of stdout went away (``crossrt zoo --json | head -1``)."""


def _out(text: str) -> None:
    """The command's output, on stdout (notices and errors go to stderr)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        raise _StdoutClosed from None
    except OSError as error:
        raise UsageError(f"cannot write to standard output: {error.strerror}; send it to a "
                         "file or a pipe that can take it") from None


def _print_json(path: str, document: Any) -> int:
    from core.files import write_json

    if path == "-":
        _out(json.dumps(document, indent=2))
    else:
        write_json(path, document)
    return 0


# --- zoo ------------------------------------------------------------------------------

def _zoo_args(parser: argparse.ArgumentParser) -> None:
    _json_arg(parser, "the records as JSON, to PATH (default: stdout, instead of the table)")
    _force_arg(parser)


def _zoo(args: argparse.Namespace) -> int:
    from exporter.counting import ZOO_JSON, zoo_table

    _check_outputs(args, {"json": ZOO_JSON})
    rows = zoo_table()
    if args.json:
        return _print_json(args.json, rows)
    header = ("model", "crop", "resize", "params M", "MACs G", "table params M",
              "published", "table FLOPs G", "published", "agrees")
    lines = [header] + [(r["name"], r["crop_size"], r["resize_short"], f"{r['params_m']:.3f}",
                         f"{r['macs_g']:.3f}", f"{r['table_params_m']:.3f}",
                         _fmt(r["ref_params_m"]), f"{r['table_flops_g']:.3f}",
                         _fmt(r["ref_flops_g"]), _agrees(r)) for r in rows]
    _out(_table(lines))
    _out("table params/FLOPs: counted by the old Paddle static-graph statistics tool's rules, "
         "as PaddleClas's published table was (see exporter/counting.py)")
    return 0


def _agrees(row: dict[str, Any]) -> str:
    from exporter.counting import agrees_with_published

    pairs = [(row["table_params_m"], row["ref_params_m"]),
             (row["table_flops_g"], row["ref_flops_g"])]
    return "yes" if all(ref is None or agrees_with_published(ours, ref)
                        for ours, ref in pairs) else "NO"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(rows: list[tuple[Any, ...]]) -> str:
    from validation.report import text_table  # the one table renderer (validate's too)

    return text_table(rows)


# --- export-onnx ------------------------------------------------------------------------

def _export_args(parser: argparse.ArgumentParser) -> None:
    from exporter.export import DEFAULT_OPSET, OPSETS

    parser.add_argument("model", help="a model name from `crossrt zoo` (e.g. EfficientNetB7), "
                        "or the folder of a Paddle inference model with its inference.yml")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", metavar="CKPT", help="a PaddleClas *_pretrained.pdparams "
                        "checkpoint (default: deterministic synthetic weights)")
    source.add_argument("--pretrained", action="store_true", help="PaddleClas's official "
                        "weights, downloaded once into $CROSSRT_HOME (default ~/.cache/crossrt)")
    source.add_argument("--paddle-model", metavar="PATH", help="an existing Paddle inference "
                        "model: inference.json / legacy inference.pdmodel, or its folder")
    parser.add_argument("--out", metavar="DIR", help="export folder (default artifacts/MODEL)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {OPSETS.start} to {OPSETS.stop - 1} "
                        f"(default {DEFAULT_OPSET})")
    parser.add_argument("--fp16", action="store_true",
                        help="also write model.fp16.onnx (FP16 weights, FP32 inputs/outputs)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    parser.add_argument("--force", action="store_true", help="export again even if an "
                        "identical export exists (replaces it at the end)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic weights")


def _export(args: argparse.Namespace) -> int:
    from exporter.export import export_onnx

    result = export_onnx(args.model, weights=args.weights, paddle_model=args.paddle_model,
                         out_dir=args.out, opset=args.opset, fp16=args.fp16,
                         simplify=not args.no_simplify, force=args.force, seed=args.seed,
                         pretrained=args.pretrained)
    _out(_export_summary(result))
    return 0


def _export_summary(result: Any) -> str:
    manifest = result.manifest
    check = manifest["check"]
    lines = [f"{manifest['model']} -> {result.path}" + (" (reused)" if result.reused else ""),
             f"  weights: {manifest['weights'].get('kind')}"
             + (f" from {manifest['weights']['url']}" if manifest["weights"].get("url") else ""),
             f"  nodes: {manifest['nodes']}",
             f"  ONNX Runtime vs Paddle: max abs error {check['max_abs_error']:.3g} "
             f"(allowed {check['tolerance']:.3g}), top-1 agreement {check['top1_agreement']:.0%}"]
    if manifest.get("fp16"):
        fp16 = manifest["fp16"]
        lines.append(f"  FP16 graph: max abs error vs FP32 {fp16['max_abs_error_vs_fp32']:.3g}, "
                     f"top-1 agreement on photos {fp16['top1_agreement_photos']:.0%}")
    lines += [f"  {name}: {info['bytes'] / 1e6:.1f} MB"
              for name, info in manifest["files"].items() if name.endswith((".onnx", ".data"))]
    return "\n".join(lines)


# --- runtimes and build-engine -----------------------------------------------------------

def _runtimes_args(parser: argparse.ArgumentParser) -> None:
    _json_arg(parser, "the records as JSON, to PATH (default: stdout, instead of the table)")
    _force_arg(parser)


def _runtimes(args: argparse.Namespace) -> int:
    import runtimes
    from runtimes.availability import AVAILABILITY_JSON

    _check_outputs(args, {"json": AVAILABILITY_JSON})
    rows = runtimes.availability()
    if args.json:
        return _print_json(args.json, rows)
    _out(_table([("runtime", "available", "why")] + [
        (r["kind"], "yes" if r["available"] else "no", r["reason"]) for r in rows]))
    backends = next(r["backends"] for r in rows if "backends" in r)
    _out("\nTensorRT engine builders (crossrt build-engine --backend):")
    _out(_table([("backend", "builds here", "what it can do")] + [
        (b["backend"], "yes" if b["builds_here"] else "no", b["summary"]) for b in backends]))
    return 0


def _build_engine_args(parser: argparse.ArgumentParser) -> None:
    from runtimes.trt_backends import BACKEND_CHOICES

    parser.add_argument("--onnx", required=True, help="the ONNX graph (e.g. "
                        "artifacts/EfficientNetB0/model.onnx)")
    parser.add_argument("--saveEngine", help="engine file (default: model[.fp16].engine "
                        "beside the ONNX)")
    parser.add_argument("--fp16", action="store_true", help="FP16 engine: the builder flag on "
                        "TensorRT 10, the FP16 graph on TensorRT >= 11 and TensorRT-RTX; "
                        "proven from the engine's layers after the build")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="auto (default): full TensorRT where it can build (a GPU), else "
                        "TensorRT-RTX (builds without a GPU)")
    parser.add_argument("--computeCapabilities", metavar="LIST", help="TensorRT-RTX targets, "
                        "e.g. 8.6,8.9 (default: 8.0, 8.6, 8.9, 12.0, 12.1; 7.5 for T4 only "
                        "when named; no 9.0/10.0 target exists)")
    for name, batch in (("min", 1), ("opt", 4), ("max", 8)):
        parser.add_argument(f"--{name}Shapes", metavar="SPEC", help="trtexec syntax, e.g. "
                            f"x:{batch}x3x224x224 (default from the model spec: batch {batch})")
    parser.add_argument("--memPoolSize", metavar="POOL:SIZE", help="e.g. workspace:1024 "
                        "(MiB) or workspace:2G")
    parser.add_argument("--timingCacheFile", metavar="PATH", help="reuse and update a timing "
                        "cache (full TensorRT; later builds are faster)")
    parser.add_argument("--builderOptimizationLevel", type=int, metavar="N", help="0-5")
    parser.add_argument("--skipInference", action="store_true",
                        help="build only; skip the check inference (it runs only where a GPU "
                        "can run the plan)")
    parser.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    _force_arg(parser)


def _build_engine(args: argparse.Namespace) -> int:
    from core.files import input_file
    from runtimes.engine import EngineRequest, build_engine, engine_summary

    input_file(args.onnx, "--onnx", "export it with crossrt export-onnx MODEL")
    request = EngineRequest.from_trtexec(
        args.onnx, args.saveEngine, fp16=args.fp16, min_shapes=args.minShapes,
        opt_shapes=args.optShapes, max_shapes=args.maxShapes, mem_pool_size=args.memPoolSize,
        timing_cache=args.timingCacheFile,
        builder_optimization_level=args.builderOptimizationLevel,
        compute_capabilities=args.computeCapabilities, backend=args.backend,
        skip_inference=args.skipInference, verbose=args.verbose, force=args.force)
    _out(engine_summary(request.engine, build_engine(request)))
    return 0


# --- validate and accuracy -------------------------------------------------------------

TARGET_HELP = ("an export folder (from export-onnx), a model name, a Paddle inference "
               "model's folder (exported on first use), or a bare .onnx file or engine plan")


def _runtimes_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """--runtimes, --precision and --fp16 mean one thing in every command (row labels such as
    onnxruntime-fp16 are accepted back as runtimes)."""
    from core.spec import Precision
    from runtimes import RUNNER_KINDS

    parser.add_argument("--runtimes", type=_csv(str, allow_empty=True), metavar="R,...",
                        help=f"{what}: of {', '.join(RUNNER_KINDS)}, or a table's row label "
                        "such as onnxruntime-fp16")
    parser.add_argument("--precision", type=_csv(str), metavar="P,...",
                        help=f"the precisions to run, of {', '.join(Precision)}")
    parser.add_argument("--fp16", action="store_true", help="FP16 too (the FP16 graph, and "
                        "the FP16 engine; FP16 tolerances)")


def _runtime_args(parser: argparse.ArgumentParser) -> None:
    """What validate and accuracy share: the target, the runtimes beside the reference, FP16."""
    parser.add_argument("target", help=TARGET_HELP)
    _runtimes_arg(parser, "runtimes beside the reference (default: every one available here; "
                  "precision FP32)")
    parser.add_argument("--reference", help="reference runtime (default paddle, else "
                        "onnxruntime; for a bare file, the first runtime that runs it)")
    parser.add_argument("--spec", metavar="MODEL", help="a bare file's preprocessing: a model "
                        "name, an export folder, a Paddle inference model's folder or an "
                        "inference.yml (default: the export it lies in, or an inference.yml "
                        "beside it)")


def _report_args(parser: argparse.ArgumentParser) -> None:
    _json_arg(parser, "the full report as JSON, to PATH (default: stdout, instead of the table)")
    parser.add_argument("--markdown", metavar="PATH", help="write the report as markdown")
    _force_arg(parser)


def _request(kind: type, args: argparse.Namespace) -> Any:
    """A typed request from the flags named after its fields (--batch-sizes: batch_sizes)."""
    import dataclasses

    return kind(**{field.name: getattr(args, field.name) for field in dataclasses.fields(kind)
                   if hasattr(args, field.name)})


def _report(args: argparse.Namespace, table: str, document: Any, markdown: Callable[[], str],
            ) -> None:
    """The table on stdout (with --json alone, the JSON report instead), the JSON report to
    --json's file and the markdown to --markdown's."""
    from core.files import write_atomic

    if args.json != "-":
        _out(table)
    if args.json:
        _print_json(args.json, document)
    if args.markdown:
        write_atomic(args.markdown, markdown())


def _validate_args(parser: argparse.ArgumentParser) -> None:
    from core.compare import ERROR_STATS, tolerance_for
    from core.spec import FP16, FP32
    from validation.validate import DEFAULT_BATCH_SIZES

    fp32, fp16 = tolerance_for(FP32), tolerance_for(FP16)
    _runtime_args(parser)
    parser.add_argument("--atol", type=float, help="absolute tolerance of FP32 runtimes "
                        f"(default {fp32.atol:g}; FP16 graphs: {fp16.atol:g} plus a top-1 gate)")
    parser.add_argument("--rtol", type=float, help="relative tolerance of FP32 runtimes "
                        f"(default {fp32.rtol:g}; FP16 graphs: {fp16.rtol:g})")
    parser.add_argument("--check-error-stat", choices=ERROR_STATS, help="what must be within "
                        f"tolerance (default {fp32.check_error_stat})")
    parser.add_argument("--min-top1-agreement", type=float, metavar="F",
                        help="least fraction of samples whose top-1 class must agree")
    parser.add_argument("--batch-sizes", type=_csv(int), default=list(DEFAULT_BATCH_SIZES),
                        help=f"default {','.join(map(str, DEFAULT_BATCH_SIZES))}")
    parser.add_argument("--images", metavar="DIR", help="JPEG/PNG folder (default: the "
                        "photographs bundled with scikit-image)")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="also N seeded random inputs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    _report_args(parser)
    parser.add_argument("--save-outputs", metavar="PATH", help="save every runtime's outputs "
                        "(Polygraphy RunResults JSON) and, beside it as PATH.inputs.json, the "
                        "inputs (for polygraphy run --load-inputs)")
    parser.add_argument("--load-outputs", metavar="PATH", nargs="+", default=[],
                        help="saved outputs (or an export's reference.npz) to compare too")
    parser.add_argument("--load-inputs", metavar="PATH", help="the inputs, from Polygraphy "
                        "inputs JSON (polygraphy run --save-inputs; --save-outputs writes one)")
    parser.add_argument("--compare", metavar="FILE", nargs="+", default=[],
                        help="other .onnx files or engine plans, run on the same inputs")
    parser.add_argument("--shapes", metavar="NAME:1x3xSxS", help="a bare file's input where "
                        "its height and width are dynamic")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--localize", dest="localize", action="store_true", default=None,
                       help="localise even when everything passes")
    where.add_argument("--no-localize", dest="localize", action="store_false",
                       help="do not localise failures")


def _validate(args: argparse.Namespace) -> int:
    from validation.report import (
        JSON_REPORT,
        MARKDOWN_REPORT,
        render_markdown,
        render_table,
        report_dict,
    )
    from validation.validate import ValidationRequest, validate

    request = _request(ValidationRequest, args)
    _check_outputs(args, {"json": JSON_REPORT, "markdown": MARKDOWN_REPORT}, request.outputs(),
                   request.inputs())
    run = validate(request)
    _report(args, render_table(run.records, run.context), report_dict(run.records, run.context),
            lambda: render_markdown(run.records, run.context))
    return 0 if run.passed else 1


def _accuracy_args(parser: argparse.ArgumentParser) -> None:
    from validation.accuracy import DEFAULT_BATCH_SIZE

    _runtime_args(parser)
    parser.add_argument("--dataset", required=True, metavar="DIR", help="one folder per class, "
                        "named after it (a class name, an ImageNet synset such as n01440764, "
                        "or its index; any subset of classes), else taken in sorted order; or "
                        "the root of --labels' paths")
    parser.add_argument("--labels", metavar="FILE", help="PaddleClas list file: one "
                        "'relative/path label' per line (e.g. val_list.txt)")
    parser.add_argument("--batch-size", type=int, metavar="N",
                        help=f"default {DEFAULT_BATCH_SIZE}")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="N images spread evenly over the dataset (the same N every run)")
    parser.add_argument("--workers", type=int, metavar="N", help="threads decoding and "
                        "preprocessing ahead of inference (default: half the CPUs; 0: none)")
    _report_args(parser)
    parser.add_argument("--predictions", metavar="PATH", help="write every image's top-5 per "
                        "runtime as JSON lines, as they come (needed by --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run that wrote --predictions")
    parser.add_argument("--max-top1-drop", type=float, metavar="F", help="exit 1 when a "
                        "runtime's top-1 is more than F (a fraction, e.g. 0.002) below the "
                        "reference's")
    parser.add_argument("--min-top1", type=float, metavar="F",
                        help="exit 1 when a runtime's top-1 is below F (a fraction)")


def _accuracy(args: argparse.Namespace) -> int:
    from validation import accuracy_report
    from validation.accuracy import AccuracyRequest, evaluate_accuracy, progress_reporter

    request = _request(AccuracyRequest, args)
    _check_outputs(args, {"json": accuracy_report.JSON_REPORT,
                          "markdown": accuracy_report.MARKDOWN_REPORT},
                   request.outputs(), request.inputs())
    run = evaluate_accuracy(request, progress=progress_reporter())
    _report(args, accuracy_report.render_table(run), accuracy_report.report_dict(run),
            lambda: accuracy_report.render_markdown(run))
    if run.failures:
        raise CheckFailed("; ".join(run.failures))
    return 0


# --- bench -----------------------------------------------------------------------------

def _bench_args(parser: argparse.ArgumentParser) -> None:
    from core.spec import BATCH_SIZES, DEFAULT_TABLE, LATENCY_TABLES
    from validation.bench import DEFAULT_RESULTS
    from validation.timing import Method

    method = Method()
    parser.add_argument("models", nargs="*", metavar="MODEL", help="models to time: "
                        f"each {TARGET_HELP}")
    parser.add_argument("--all", action="store_true", help="every model of the zoo")
    _runtimes_arg(parser, "runtimes to time (default: the best available; precisions: the "
                  "table's)")
    parser.add_argument("--batch-sizes", type=_csv(int),
                        help=f"default {','.join(map(str, BATCH_SIZES))}")
    parser.add_argument("--warmup-ms", type=float,
                        help=f"warm-up time per cell (default {method.warmup_ms:g})")
    parser.add_argument("--duration-s", type=float,
                        help=f"least measuring time per cell (default {method.duration_s:g})")
    parser.add_argument("--min-iterations", type=int,
                        help=f"least iterations per cell (default {method.min_iterations})")
    parser.add_argument("--threads", type=int, help="CPU threads of the runtime")
    parser.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=None,
                        help="capture a CUDA graph (GPU runtimes)")
    parser.add_argument("--include-transfers", action="store_true",
                        help="time host-to-device copies too (default: inputs stay on device)")
    parser.add_argument("--table", choices=sorted(LATENCY_TABLES),
                        help=f"which of PaddleClas's latency tables to reproduce (default "
                        f"{DEFAULT_TABLE})")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), metavar="DIR",
                        help=f"folder for bench.{{md,json,csv,png}} (default {DEFAULT_RESULTS})")
    _json_arg(parser, "the results as JSON, to PATH too (default: stdout, after the table)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cells already in --results and run only the rest")
    _force_arg(parser)


def _bench(args: argparse.Namespace) -> int:
    from exporter.specs import SPECS
    from validation.bench import BenchConfig, progress_reporter, run_bench

    if args.all and args.models:
        raise UsageError("name models or pass --all, not both")
    config = BenchConfig.resolve(
        list(SPECS) if args.all else args.models, runtimes=args.runtimes, table=args.table,
        precisions=args.precision, fp16=args.fp16, batch_sizes=args.batch_sizes,
        warmup_ms=args.warmup_ms,
        duration_s=args.duration_s, min_iterations=args.min_iterations, threads=args.threads,
        cuda_graph=args.cuda_graph, include_transfers=args.include_transfers)
    result = run_bench(config, args.results, json_path=_file_arg(args.json), resume=args.resume,
                       progress=progress_reporter(), force=args.force)
    if args.json == "-":
        _print_json("-", result.to_json())
    else:  # the report's notes list failed and noisy cells
        _out(result.files["markdown"].read_text())
        _out(f"results: {', '.join(str(p) for p in result.files.values())}")
    if result.records and all(r["status"] != "ok" for r in result.records):
        raise CheckFailed(f"every cell failed (first: {result.records[0]['reason']})")
    return 0


# --- pipeline --------------------------------------------------------------------------

def _pipeline_args(parser: argparse.ArgumentParser) -> None:
    from exporter.specs import DEFAULT_MODEL
    from validation.pipeline import DEFAULT_DURATION_S

    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help="a model name, or a "
                        f"Paddle inference model's folder (default {DEFAULT_MODEL})")
    _runtimes_arg(parser, "runtimes to time (default: the best available; validate compares "
                  "every one available here)")
    parser.add_argument("--out", metavar="DIR", help="export folder (default artifacts/MODEL)")
    parser.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S,
                        help="least measuring time per bench cell "
                        f"(default {DEFAULT_DURATION_S:g})")


def _pipeline(args: argparse.Namespace) -> int:
    from validation.bench import progress_reporter
    from validation.pipeline import run_pipeline, summary

    result = run_pipeline(args.model, runtimes=args.runtimes, precision=args.precision,
                          fp16=args.fp16, out_dir=args.out, duration_s=args.duration_s,
                          progress=progress_reporter())
    _out(summary(result))
    return 0 if result.passed else 1


# --- triton ------------------------------------------------------------------------------

def _triton_args(parser: argparse.ArgumentParser) -> None:
    from exporter.triton import CLASSIFIER_BACKENDS

    parser.add_argument("target", help="an export folder (from export-onnx), a model name or a "
                        "Paddle inference model's folder (exported on first use)")
    parser.add_argument("--out", required=True, metavar="REPO", help="the model repository")
    parser.add_argument("--engine", metavar="PLAN", help="also serve this TensorRT plan (built "
                        "from the export's graph by build-engine) as tensorrt_plan")
    parser.add_argument("--max-batch-size", type=int, default=8, help="default 8")
    parser.add_argument("--instances", type=int, default=1, help="instances of each model")
    parser.add_argument("--dynamic-batching", action="store_true",
                        help="let Triton gather requests into batches")
    parser.add_argument("--preferred-batch-sizes", type=_csv(int), default=[],
                        metavar="4,8", help="batch sizes dynamic batching aims for")
    parser.add_argument("--ensemble", action="store_true", help="also preprocessing (JPEG/PNG "
                        "bytes, crossrt's own code), top-k postprocessing and their ensemble")
    parser.add_argument("--classifier-backend", choices=CLASSIFIER_BACKENDS,
                        default="onnxruntime", help="onnxruntime (Triton's ONNX Runtime "
                        "backend, default) or python (ONNX Runtime in the Python backend, for "
                        "CPU-only hosts)")
    parser.add_argument("--tensorrt-accelerator", action="store_true", help="ONNX Runtime's "
                        "TensorRT execution accelerator, FP16")
    _force_arg(parser)


def _triton(args: argparse.Namespace) -> int:
    from pathlib import Path

    from exporter.triton import TritonRequest, write_repository
    from validation.artifacts import is_bare_file
    from validation.targets import resolve_target

    if is_bare_file(args.target):
        raise UsageError(f"{args.target} is a bare file; crossrt triton serves an export "
                         "(its graph, spec and labels): pass the export folder, and the plan "
                         "with --engine")
    export, _, _ = resolve_target(args.target, fp16=False)  # as validate finds its export
    repository = write_repository(TritonRequest(
        export=export, out=Path(args.out), engine=Path(args.engine) if args.engine else None,
        max_batch_size=args.max_batch_size, instances=args.instances,
        dynamic_batching=args.dynamic_batching,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes), ensemble=args.ensemble,
        classifier_backend=args.classifier_backend,
        tensorrt_accelerator=args.tensorrt_accelerator, force=args.force))
    _out(f"{repository.path}: {', '.join(repository.models)}")
    return 0


# --- the registry of subcommands --------------------------------------------------------

Command = tuple[str, str, Callable[[argparse.ArgumentParser], None],
                Callable[[argparse.Namespace], int]]
COMMANDS: list[Command] = [
    ("zoo", "list the models with their sizes and PaddleClas's published figures",
     _zoo_args, _zoo),
    ("export-onnx", "export a model to ONNX (paddle2onnx + onnxsim), checked against Paddle",
     _export_args, _export),
    ("runtimes", "list every runtime and whether it runs here (and why not)",
     _runtimes_args, _runtimes),
    ("build-engine", "build a TensorRT engine, trtexec-style (FP16/FP32, profiles, timing "
     "cache)", _build_engine_args, _build_engine),
    ("validate", "compare runtimes numerically against a reference (exit 1 on a mismatch)",
     _validate_args, _validate),
    ("accuracy", "top-1/top-5 of every runtime on a labelled image set, beside the published "
     "figures (exit 1 on a drop)", _accuracy_args, _accuracy),
    ("bench", "time runtimes and print PaddleClas's T4/V100 latency table with its figures",
     _bench_args, _bench),
    ("pipeline", "the main job: export-onnx, validate against Paddle, a short bench, a summary",
     _pipeline_args, _pipeline),
    ("triton", "write a Triton Inference Server model repository of an export (configs checked "
     "by Triton's own protobuf)", _triton_args, _triton),
]


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line (argparse's own behaviour, minus the usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="crossrt", description="Take PaddleClas image classifiers to ONNX "
                     "Runtime and TensorRT, and prove with numbers that nothing was lost.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    for name, summary, add_arguments, run in COMMANDS:
        sub = commands.add_parser(name, help=summary, description=summary)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


EXIT_CODES = {0: "success", 1: "a check ran and failed (validation mismatch, export check, "
              "every bench cell failed)", 2: "bad input: arguments, files, missing runtime or "
              "dependency", 3: "a runtime failed on good input (RuntimeFault, out of memory)",
              130: "interrupted (Ctrl-C)", 141: "stdout closed early (a pipe to head): the "
              "rest of the output was dropped", 143: "terminated (SIGTERM)"}


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _quiet_libraries() -> None:
    """stderr carries crossrt's lines only: other libraries' log records and warnings (a
    matplotlib cache notice, a deprecation) are not the user's to read; undecodable file names
    print with backslash escapes instead of failing."""
    import logging

    logging.getLogger().addHandler(logging.NullHandler())  # not logging's last-resort printer
    warnings.simplefilter("ignore")
    os.environ.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ notices
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """The error contract, in one place: CrossrtError -> one line and its exit_code (see
    EXIT_CODES); MemoryError -> exit 3; Ctrl-C and SIGTERM -> clean-up, then 130 / 143; stdout
    closed by its reader -> 141, quietly. Anything else is a bug in crossrt and keeps its
    traceback."""
    args = build_parser().parse_args(argv)
    show_on_stderr()
    _quiet_libraries()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.run(args)
    except CrossrtError as error:
        print(f"crossrt {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except MemoryError:
        print(f"crossrt {args.command}: error: out of memory; use smaller --batch-sizes or a "
              "machine with more memory", file=sys.stderr)
        return RuntimeFault.exit_code
    except _StdoutClosed:
        # Python flushes stdout once more at exit: point it at /dev/null so that is quiet too
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt as stop:
        what = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"crossrt {args.command}: {what}; nothing half-written was left behind",
              file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
