"""Runtime comparisons on the CPU, measured with `crossrt bench`'s own sweep.

1. ONNX Runtime CPU against Paddle Inference CPU (oneDNN) on EfficientNetB0 and
   ResNeXt101_32x8d_wsl at batch 1 and 4, the same thread count, alternating per round.
   (Reference on this kind of machine: B0 batch 1, ORT 4 ms vs Paddle Inference 9 ms.)
2. The simplified graph (onnxsim, what export-onnx ships) against the unsimplified one
   (export-onnx --no-simplify), both on ONNX Runtime CPU.
Figures are medians of per-round medians; the output is two markdown tables.

    python benchmarks/bench_runtimes.py [--rounds 3] [--duration-s 3] [--threads N] [--models ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from core.spec import FP32  # noqa: E402
from validation.validate import DEFAULT_BATCH_SIZES  # noqa: E402

MODELS = ("EfficientNetB0", "ResNeXt101_32x8d_wsl")
BATCH_SIZES = DEFAULT_BATCH_SIZES  # validate's: one photograph, and a batch of them


def medians(runtime: str, exports: dict[str, Path], threads: int, duration_s: float,
            ) -> dict[tuple[str, int], float]:
    """One `crossrt bench` sweep of ``exports`` (model -> export dir): (model, batch) -> ms."""
    from validation.bench import BenchConfig, run_sweep

    config = BenchConfig.resolve(list(exports), runtimes=[runtime], precisions=[FP32],
                                 batch_sizes=BATCH_SIZES, threads=threads, duration_s=duration_s)
    with tempfile.TemporaryDirectory() as scratch:
        result = run_sweep(config, Path(scratch) / "bench.json",
                           export=lambda model, fp16: exports[model])
    failed = [f"{r['model']} bs{r['batch_size']}: {r['reason']}" for r in result.records
              if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"{runtime} failed: {'; '.join(failed)}")
    return {(r["model"], r["batch_size"]): r["latency_ms"]["median"] for r in result.records}


def alternate(contenders: dict[str, tuple[str, dict[str, Path]]], rounds: int, threads: int,
              duration_s: float) -> dict[str, dict[tuple[str, int], float]]:
    """label -> (runtime, exports), measured one after the other each round; medians per cell."""
    Cells = dict[tuple[str, int], list[float]]
    per_round: dict[str, Cells] = defaultdict(lambda: defaultdict(list))
    for _ in range(rounds):
        for label, (runtime, exports) in contenders.items():
            for cell, ms in medians(runtime, exports, threads, duration_s).items():
                per_round[label][cell].append(ms)
    return {label: {cell: statistics.median(values) for cell, values in cells.items()}
            for label, cells in per_round.items()}


def node_count(export_dir: Path) -> int:
    from core.layout import ONNX_FILE, ExportDir

    return ExportDir(export_dir).manifest()["nodes"][ONNX_FILE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench-runtimes"),
                        help="where the unsimplified exports go (reused on the next run)")
    args = parser.parse_args()

    from exporter.export import export_onnx

    simplified = {m: export_onnx(m).path for m in args.models}
    unsimplified = {m: export_onnx(m, simplify=False, out_dir=args.out / m).path
                    for m in args.models}
    timed = alternate({"ort": ("onnxruntime", simplified), "paddle": ("paddle", simplified),
                       "ort-unsimplified": ("onnxruntime", unsimplified)},
                      args.rounds, args.threads, args.duration_s)
    cells = [(m, b) for m in args.models for b in BATCH_SIZES]

    print(f"CPU, {args.threads} threads, fp32, medians of {args.rounds} alternating rounds of "
          f"at least {args.duration_s:g} s per cell\n")
    print("| model | batch | ONNX Runtime CPU (ms) | Paddle Inference CPU (ms) | Paddle / ORT |")
    print("|---|---|---|---|---|")
    for model, batch in cells:
        ort, paddle = timed["ort"][model, batch], timed["paddle"][model, batch]
        print(f"| {model} | {batch} | {ort:.2f} | {paddle:.2f} | {paddle / ort:.2f} |")
    print("\n| model | batch | simplified (ms) | unsimplified (ms) | unsimplified / simplified "
          "| nodes (simplified / unsimplified) |")
    print("|---|---|---|---|---|---|")
    for model, batch in cells:
        fast, slow = timed["ort"][model, batch], timed["ort-unsimplified"][model, batch]
        nodes = f"{node_count(simplified[model])} / {node_count(unsimplified[model])}"
        print(f"| {model} | {batch} | {fast:.2f} | {slow:.2f} | {slow / fast:.2f} | {nodes} |")


if __name__ == "__main__":
    main()
