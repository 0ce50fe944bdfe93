"""crossrt export-onnx against a bare script doing the library calls it wraps.

Both run as whole processes started from a model name, alternating, so machine noise hits
both alike. The bare script builds the model (default init), jit.saves it, converts it with
paddle2onnx and simplifies it with onnxsim; crossrt adds weight calibration, the checks
against Paddle, the verification of the simplified graph, golden outputs and the manifest.

    python benchmarks/bench_export.py [--model EfficientNetB0] [--rounds 3] [--large]

--large instead measures time and peak memory (RSS of the process tree) of exporting the two
828M-parameter models, whose ONNX passes protobuf's 2 GB limit.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE = """
import os, sys
os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = "0"
import paddle, paddle2onnx, onnx, onnxsim
from exporter.specs import get_spec
from exporter.zoo import build_model
spec = get_spec(sys.argv[1]); out = sys.argv[2]
model = build_model(spec)
paddle.jit.save(model, out + "/inference", input_spec=[paddle.static.InputSpec(
    [None, *spec.input_shape], "float32", name="x")])
data = paddle2onnx.export(out + "/inference.json", out + "/inference.pdiparams", None,
                          opset_version=13, optimize_tool=None)
simplified, ok = onnxsim.simplify(onnx.load_from_string(data))
onnx.save(simplified, out + "/model.onnx")
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of the largest child process of one command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOG_minloglevel": "2"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def overhead(model: str, rounds: int) -> None:
    crossrt, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            crossrt.append(timed([sys.executable, "-m", "crossrt", "export-onnx", model,
                                  "--force", "--out", f"{tmp}/crossrt"])[0])
            bare.append(timed([sys.executable, "-c", BARE, model, tmp])[0])
    ours, theirs = statistics.median(crossrt), statistics.median(bare)
    print(f"| {model} | crossrt export-onnx | bare library calls | ratio |")
    print("|---|---|---|---|")
    print(f"| median of {rounds} (s) | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")


def large() -> None:
    print("| model | seconds | peak RSS (GiB) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("ResNeXt101_32x48d_wsl", "Fix_ResNeXt101_32x48d_wsl"):
            seconds, peak = timed([sys.executable, "-m", "crossrt", "export-onnx", model,
                                   "--out", f"{tmp}/{model}"])
            print(f"| {model} | {seconds:.0f} | {peak:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EfficientNetB0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    large() if args.large else overhead(args.model, args.rounds)
