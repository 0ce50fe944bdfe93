"""Wall time of `crossrt validate EfficientNetB0` on its defaults (Paddle Inference against
ONNX Runtime CPU, batch 1 and 4, the bundled photographs), reusing the export, as a whole
process the way CI runs it. Goal: under 30 s on the project's 2-core machine.

    python benchmarks/bench_validate.py [--model EfficientNetB0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EfficientNetB0")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "crossrt", "validate", args.model, "--atol", "1e-3"]
    subprocess.run([sys.executable, "-m", "crossrt", "export-onnx", args.model], check=True,
                   env=env, capture_output=True)  # the export that validate reuses
    seconds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        seconds.append(time.perf_counter() - start)
    print(f"| command | median of {args.rounds} (s) | min (s) |")
    print("|---|---|---|")
    print(f"| `crossrt validate {args.model} --atol 1e-3` (export reused) | "
          f"{statistics.median(seconds):.1f} | {min(seconds):.1f} |")


if __name__ == "__main__":
    main()
