"""Overhead of crossrt's timing: `crossrt bench` against a bare `session.run` loop.

EfficientNetB0, batch 1, ONNX Runtime CPU, the same model.onnx and the same thread count.
The two are measured alternately in one process (round after round), so drifting clocks and
neighbours affect both alike; the figure is the ratio of the medians of their per-round
medians. Goal: at most 5% apart.

    python benchmarks/bench_overhead.py [--rounds 5] [--duration-s 3] [--threads N]
                                        [--export-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from core.spec import FP32  # noqa: E402

MODEL = "EfficientNetB0"


def crossrt_median(export_dir: Path, threads: int, duration_s: float) -> float:
    """One `crossrt bench` cell (the sweep the CLI runs), its median latency in ms."""
    from validation.bench import BenchConfig, run_sweep

    config = BenchConfig.resolve([MODEL], runtimes=["onnxruntime"], precisions=[FP32],
                                 batch_sizes=[1], threads=threads, duration_s=duration_s)
    with tempfile.TemporaryDirectory() as scratch:
        result = run_sweep(config, Path(scratch) / "bench.json",
                           export=lambda model, fp16: export_dir)
    (record,) = result.records
    if record["status"] != "ok":
        raise SystemExit(f"crossrt bench failed: {record['reason']}")
    return record["latency_ms"]["median"]


def bare_median(onnx_path: Path, threads: int, duration_s: float, warmup_s: float) -> float:
    """What a hand-written benchmark does: a session, a warm-up, a timed `session.run` loop."""
    import onnxruntime as ort

    from core.preprocess import random_inputs
    from exporter.specs import get_spec

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: random_inputs(get_spec(MODEL), 1)}  # as bench feeds
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        session.run(None, feed)
    times: list[float] = []
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end or len(times) < 10:
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--export-dir", type=Path, help="an existing export of the model "
                        "(default: export it, or reuse artifacts/EfficientNetB0)")
    args = parser.parse_args()

    from core.layout import ExportDir
    from validation.timing import Method

    if args.export_dir is None:
        from exporter.export import export_onnx

        args.export_dir = export_onnx(MODEL).path
    export_dir = args.export_dir
    crossrt, bare = [], []
    for _ in range(args.rounds):
        crossrt.append(crossrt_median(export_dir, args.threads, args.duration_s))
        bare.append(bare_median(ExportDir(export_dir).onnx_path(), args.threads,
                                args.duration_s, Method().warmup_ms / 1000))
    ours, theirs = statistics.median(crossrt), statistics.median(bare)
    print(f"{MODEL}, batch 1, ONNX Runtime CPU, {args.threads} threads, {args.rounds} "
          f"alternating rounds of {args.duration_s:g} s each\n")
    print("| timing | median of round medians (ms) | round medians (ms) |")
    print("|---|---|---|")
    print(f"| crossrt bench (onnxruntime runner, bound inputs) | {ours:.3f} | "
          f"{', '.join(f'{m:.3f}' for m in crossrt)} |")
    print(f"| bare session.run loop | {theirs:.3f} | {', '.join(f'{m:.3f}' for m in bare)} |")
    verdict = "within" if abs(ours / theirs - 1) <= 0.05 else "NOT within"
    print(f"\ncrossrt / bare = {ours / theirs:.3f} ({verdict} the 5% goal)")


if __name__ == "__main__":
    main()
