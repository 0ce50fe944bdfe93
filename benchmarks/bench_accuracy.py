"""Images/s of `crossrt accuracy` against a plain sequential loop and against inference alone.

EfficientNetB0, ONNX Runtime CPU (the only runtime: reference onnxruntime, nothing beside
it), on a labelled list-layout dataset of JPEGs written here from the bundled photographs
(crops and flips, long side 500 px, like ImageNet's validation images). The ways below run
over the same images at the same batch size, alternately in one process, round after round,
each on a fresh runner (as crossrt makes one per run; loading is not timed):

- crossrt: ``evaluate_accuracy`` (decoding and preprocessing on ``--workers`` threads ahead
  of inference, ONNX Runtime's idle threads not spinning, predictions tallied and written),
  and the same with ``workers=0`` (decoding on the inference thread);
- sequential: read, preprocess, infer and take the top 5, one batch at a time, one thread,
  ONNX Runtime at its defaults (what a hand-written loop does);
- sequential, no spinning: the same loop on a runner made like crossrt's (so the ratio to it
  is what overlapping decoding with inference alone brings);
- inference alone: the runner on batches decoded beforehand, spinning and not (the bound on
  this machine: decoding shares its cores).

Figures: the median images/s of each over the rounds, and the median over rounds of the
per-round ratios (each round's ways ran back to back, under the same neighbours). Goal:
crossrt at least 1.2x the sequential loop.

    python benchmarks/bench_accuracy.py [--images 256] [--rounds 5] [--batch-size 8]
                                        [--workers N] [--export-dir DIR]
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

MODEL = "EfficientNetB0"


def write_dataset(root: Path, count: int) -> Path:
    """``count`` JPEGs (photo i % 4, cropped and flipped by i) and their val_list.txt."""
    import cv2

    from core.preprocess import bundled_photos

    photos = bundled_photos()
    (root / "val").mkdir(parents=True)
    lines = []
    for i in range(count):
        name, image = photos[i % len(photos)]
        v = i // len(photos)
        height, width = image.shape[:2]
        keep = 1.0 - 0.05 * (v % 6)
        h, w = int(height * keep), int(width * keep)
        left = (width - w) * (v % 3) // 2
        crop = image[:h, left:left + w]
        crop = crop[:, ::-1] if v % 2 else crop
        scale = 500 / max(crop.shape[:2])
        crop = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)))
        cv2.imwrite(str(root / "val" / f"{name}_{i:05d}.jpg"), crop[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        lines.append(f"val/{name}_{i:05d}.jpg {i % 1000}")
    (root / "val_list.txt").write_text("\n".join(lines) + "\n")
    return root / "val_list.txt"


def crossrt_rate(export_dir: Path, root: Path, labels: Path, batch_size: int,
                 workers: int | None) -> float:
    from validation.accuracy import evaluate_accuracy

    run = evaluate_accuracy(export_dir, root, labels=labels, reference="onnxruntime",
                            runtimes=[], batch_size=batch_size, workers=workers,
                            predictions=root / "predictions.jsonl")
    assert run.images_per_s is not None
    return run.images_per_s


def sequential_rate(runner, spec, files: list[Path], batch_size: int) -> float:
    """What a hand-written evaluation does: read, preprocess, infer, one batch at a time."""
    import numpy as np

    from core.preprocess import preprocess, read_image

    start = time.perf_counter()
    for i in range(0, len(files), batch_size):
        batch = np.stack([preprocess(read_image(f), spec) for f in files[i:i + batch_size]])
        logits = runner.infer({spec.input_name: batch})[spec.output_name]
        np.argsort(-logits, axis=1)[:, :5]
    return len(files) / (time.perf_counter() - start)


def inference_rate(runner, spec, batches: list) -> float:
    start = time.perf_counter()
    for batch in batches:
        runner.infer({spec.input_name: batch})
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, help="crossrt's decoding threads (default: "
                        "its own, half the CPUs)")
    parser.add_argument("--export-dir", type=Path, help="an existing export of the model "
                        "(default: export it, or reuse artifacts/EfficientNetB0)")
    args = parser.parse_args()

    import numpy as np

    import runtimes
    from core.preprocess import preprocess, read_image
    from exporter.specs import get_spec

    if args.export_dir is None:
        from exporter.export import export_onnx

        args.export_dir = export_onnx(MODEL).path
    spec = get_spec(MODEL)
    ways = {"crossrt": "crossrt accuracy",
            "crossrt-inline": "crossrt accuracy --workers 0 (decoding on the inference thread)",
            "sequential": "sequential loop (read, preprocess, infer), ORT defaults",
            "sequential-nospin": "sequential loop, ORT threads not spinning (as crossrt)",
            "inference": "inference alone on pre-decoded batches, ORT defaults",
            "inference-nospin": "inference alone on pre-decoded batches, not spinning"}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        labels = write_dataset(root, args.images)
        files = [root / line.split()[0] for line in labels.read_text().splitlines()]
        decoded = np.stack([preprocess(read_image(f), spec) for f in files])
        batches = [decoded[i:i + args.batch_size] for i in range(0, len(files), args.batch_size)]
        loops = {"sequential": (True, lambda r: sequential_rate(r, spec, files, args.batch_size)),
                 "sequential-nospin": (False, lambda r: sequential_rate(r, spec, files,
                                                                        args.batch_size)),
                 "inference": (True, lambda r: inference_rate(r, spec, batches)),
                 "inference-nospin": (False, lambda r: inference_rate(r, spec, batches))}
        crossrt_rate(args.export_dir, root, labels, args.batch_size, args.workers)  # warm-up
        for _ in range(args.rounds):
            rates["crossrt"].append(crossrt_rate(args.export_dir, root, labels,
                                                 args.batch_size, args.workers))
            rates["crossrt-inline"].append(crossrt_rate(args.export_dir, root, labels,
                                                        args.batch_size, 0))
            for name, (spinning, measure) in loops.items():
                # a fresh runner, as crossrt makes one per run (its first inference included)
                options = {} if spinning else {"spinning": False}
                with runtimes.create_runner("onnxruntime", args.export_dir, **options) as runner:
                    rates[name].append(measure(runner))
    from validation.accuracy import default_workers

    workers = args.workers if args.workers is not None else default_workers()
    print(f"{MODEL}, ONNX Runtime CPU, {args.images} JPEGs (long side 500), batch "
          f"{args.batch_size}, {os.cpu_count()} CPUs, crossrt --workers {workers}, "
          f"{args.rounds} alternating rounds\n")
    print("| way | median images/s | rounds (images/s) | crossrt / this (median of rounds) |")
    print("|---|---|---|---|")
    ratios = {}
    for name, label in ways.items():
        ratios[name] = statistics.median(a / b for a, b in zip(rates["crossrt"], rates[name]))
        print(f"| {label} | {statistics.median(rates[name]):.1f} | "
              f"{', '.join(f'{r:.1f}' for r in rates[name])} | {ratios[name]:.2f} |")
    goal = "meets" if ratios["sequential"] >= 1.2 else "misses"
    print(f"\ncrossrt / sequential = {ratios['sequential']:.2f} ({goal} the 1.2x goal); "
          f"crossrt / sequential without spinning = {ratios['sequential-nospin']:.2f}; "
          f"crossrt / inference alone = {ratios['inference']:.2f} (not spinning: "
          f"{ratios['inference-nospin']:.2f})")

if __name__ == "__main__":
    main()
