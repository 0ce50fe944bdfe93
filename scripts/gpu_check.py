#!/usr/bin/env python3
"""GPU check: ONNX Runtime CPU against CUDA (FP32, FP16) on one export, and the timing path
of our ``onnxruntime-cuda`` runner side by side with a hand-tuned I/O-binding + CUDA-graph loop.

One prepared command for a machine with an NVIDIA GPU and onnxruntime-gpu; paddle is not
needed (the export's golden outputs stand in for it):

    python scripts/gpu_check.py artifacts/EfficientNetB0 --out artifacts/gpu-check

Writes ``OUT/gpu_check.json`` (everything) and ``OUT/gpu_check.md`` (the tables). With
``--device cpu`` the same steps run on the CPU (hand loop without CUDA graph) so the script
itself can be tested where there is no GPU. Exit code: 0 when every comparison passed, 1 if
one failed, 2 when the GPU runtime is missing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import runtimes  # noqa: E402
from core.errors import CrossrtError  # noqa: E402
from core.files import write_atomic, write_json  # noqa: E402
from core.layout import ExportDir  # noqa: E402
from core.preprocess import random_inputs  # noqa: E402
from core.spec import FP16, FP32  # noqa: E402
from runtimes import tool_versions  # noqa: E402
from runtimes.availability import cpu_name, gpus  # noqa: E402
from runtimes.onnxrt import ort_dtype  # noqa: E402

PRECISIONS = {FP32: False, FP16: True}  # precision -> ExportDir.onnx_path(fp16=...)


# -- inputs ----------------------------------------------------------------------------------
def export_spec(export: Path) -> Any:
    """The registry spec of the model an export folder holds (its manifest says which)."""
    from exporter.specs import get_spec

    return get_spec(ExportDir(export).manifest()["model"])


# -- validation: the project's own `crossrt validate`, no paddle needed ---------------------------
def validate(export: Path, device: str, batch_sizes: list[int]) -> list[dict[str, Any]]:
    """CUDA FP32 and FP16 graphs against ONNX Runtime CPU FP32 (photos and random inputs), and
    the golden Paddle outputs stored at export joined as saved outputs."""
    from validation.report import report_dict
    from validation.validate import validate as run_validation

    test_kind = "onnxruntime-cuda" if device == "cuda" else "onnxruntime"
    run = run_validation(export, runtimes=[test_kind], reference="onnxruntime",
                         batch_sizes=batch_sizes, random=4,
                         fp16=ExportDir(export).onnx_path(fp16=True).is_file(),
                         load_outputs=[ExportDir(export).golden_path])
    return report_dict(run.records, run.context)["comparisons"]


# -- timing ----------------------------------------------------------------------------------
class HandTuned:
    """The loop a performance engineer writes by hand, independent of crossrt's runner:
    one session per shape, input copied once, output pre-allocated on the device, CUDA graph,
    exhaustive cuDNN search, NHWC. ``step`` is one synchronised inference."""

    def __init__(self, path: Path, name: str, array: np.ndarray, device: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        providers: list[Any] = ["CPUExecutionProvider"]
        if device == "cuda":
            providers = [("CUDAExecutionProvider", {
                "device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE",
                "enable_cuda_graph": "1", "prefer_nhwc": "1", "use_tf32": "0"})]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        output = self.session.get_outputs()[0]
        self.x = ort.OrtValue.ortvalue_from_numpy(array.copy(), device, 0)
        self.y = ort.OrtValue.ortvalue_from_shape_and_type(
            [array.shape[0], *output.shape[1:]], ort_dtype(output.type), device, 0)
        self.binding = self.session.io_binding()
        self.binding.bind_ortvalue_input(name, self.x)
        self.binding.bind_ortvalue_output(output.name, self.y)
        self.run_options = ort.RunOptions()

    def step(self) -> None:
        self.session.run_with_iobinding(self.binding, self.run_options)


def interleaved(steps: dict[str, Callable[[], None]], rounds: int, iterations: int,
                warmup_s: float) -> dict[str, list[float]]:
    """ms per inference for each step, measured in alternating blocks (same conditions)."""
    for step in steps.values():
        end = time.perf_counter() + warmup_s
        for _ in range(10):
            step()
        while time.perf_counter() < end:
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for round_index in range(rounds):
        for name in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for _ in range(iterations):
                steps[name]()
            times[name].append((time.perf_counter() - start) * 1e3 / iterations)
    return times


def time_paths(export: Path, device: str, batch_sizes: list[int], rounds: int,
               iterations: int, warmup_s: float) -> list[dict[str, Any]]:
    kind = "onnxruntime-cuda" if device == "cuda" else "onnxruntime"
    rows = []
    for precision, fp16 in PRECISIONS.items():
        path = ExportDir(export).onnx_path(fp16)
        if not path.is_file():
            continue
        with runtimes.create_runner(kind, path) as ours:
            name = next(iter(ours.get_input_metadata()))
            described = ours.describe()
            for batch in batch_sizes:
                array = random_inputs(export_spec(export), batch, seed=batch)
                ours.bind({name: array})
                hand = HandTuned(path, name, array, device)
                plain = hand.session if device == "cpu" else _plain_session(path)
                steps = {"ours": ours.run_bound, "hand": hand.step,
                         "plain_run": lambda s=plain, feed={name: array}: s.run(None, feed)}
                times = interleaved(steps, rounds, iterations, warmup_s)
                ours.run_bound()
                same = np.allclose(ours.fetch_bound()[hand.session.get_outputs()[0].name],
                                   hand.y.numpy(), rtol=1e-3, atol=1e-3)
                median = {k: statistics.median(v) for k, v in times.items()}
                rows.append({"file": path.name, "precision": precision, "batch": batch,
                             "ours_ms": median["ours"], "hand_ms": median["hand"],
                             "plain_run_ms": median["plain_run"],
                             "ours_over_hand": median["ours"] / median["hand"],
                             "ours_min_ms": min(times["ours"]), "hand_min_ms": min(times["hand"]),
                             "rounds_ms": times, "same_outputs": bool(same),
                             "runner": described})
    return rows


def _plain_session(path: Path) -> Any:
    """``session.run`` with host arrays and default CUDA options: the untuned baseline."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])


# -- bench: the project's own `crossrt bench` on this export ------------------------------------
def bench(export: Path, device: str, out: Path, batch_sizes: list[int]) -> dict[str, Any]:
    """A short T4-layout sweep (FP16 and FP32) with our runner, beside the published figures."""

    from validation.bench import BenchConfig, run_bench

    model = export_spec(export).name
    precisions = [p for p, fp16 in PRECISIONS.items()
                  if ExportDir(export).onnx_path(fp16).is_file()]
    kind = "onnxruntime-cuda" if device == "cuda" else "onnxruntime"
    config = BenchConfig.resolve([model], runtimes=[kind], precisions=precisions,
                                 batch_sizes=batch_sizes, duration_s=1.0)
    result = run_bench(config, out / "bench", export=lambda name, fp16=False: export)
    return {"markdown": result.files["markdown"].read_text(), "records": result.records}


# -- report ----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    found, reason = gpus()
    facts: dict[str, Any] = {"gpus": list(found), "gpu_reason": reason or None, "cpu": cpu_name(),
                             "python": platform.python_version(), "versions": tool_versions()}
    try:
        facts["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit",
             "--format=csv"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        facts["nvidia_smi"] = None
    return facts


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    gpu = (report["machine"]["gpus"][0]["name"] if report["machine"]["gpus"]
           else report["machine"]["cpu"])
    versions = report["machine"]["versions"]
    lines = [f"# GPU check: {report['export']}", "",
             f"{gpu}; onnxruntime "
             f"{versions.get('onnxruntime-gpu') or versions.get('onnxruntime')}; "
             f"device {report['device']}", "",
             "## Validation (reference: ONNX Runtime CPU FP32)", "",
             "| runtime | batch | inputs | max abs | p99 abs | cosine | top-1 | min atol | "
             "verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["validation"]:
        lines.append(f"| {r['runtime']} | {r['batch']} | {r['inputs']} | {_fmt(r['max_abs'])} | "
                     f"{_fmt(r['p99_abs'])} | {_fmt(r['cosine'], '.6f')} | "
                     f"{_fmt(r['top1_agreement'])} | {_fmt(r['min_atol'])} | "
                     f"{'PASS' if r['passed'] else 'FAIL: ' + str(r['comparison']['reason'])} |")
    lines += ["",
              "## Timing: our runner's bind/run_bound against a hand-tuned loop (median ms)", "",
              "| file | batch | plain run() | hand-tuned | ours | ours / hand | same outputs |",
              "|---|---|---|---|---|---|---|"]
    for r in report["timing"]:
        lines.append(f"| {r['file']} | {r['batch']} | {r['plain_run_ms']:.3f} | "
                     f"{r['hand_ms']:.3f} | {r['ours_ms']:.3f} | {r['ours_over_hand']:.3f} | "
                     f"{r['same_outputs']} |")
    lines += ["", f"Method: {report['method']}", "", "## Bench (PaddleClas's T4 layout)", "",
              report["bench"]["markdown"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path,
                        help="export directory (model.onnx, model.fp16.onnx, reference.npz)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/gpu-check"))
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.device == "cuda" and not runtimes.is_available("onnxruntime-cuda")[0]:
        print(f"gpu_check: {runtimes.is_available('onnxruntime-cuda')[1]}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        report = {"export": str(args.export), "device": args.device, "machine": machine(),
                  "validation": validate(args.export, args.device, batch_sizes),
                  "timing": time_paths(args.export, args.device, batch_sizes, args.rounds,
                                       args.iterations, args.warmup_s),
                  "method": (f"{args.rounds} alternating rounds of {args.iterations} synchronised "
                             f"inferences after {args.warmup_s} s warm-up; median of round means"),
                  "bench": bench(args.export, args.device, args.out, batch_sizes)}
    except CrossrtError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return error.exit_code
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.out / "gpu_check.json", report)
    write_atomic(args.out / "gpu_check.md", markdown(report))
    print(markdown(report))
    return 0 if all(r.get("passed", True) for r in report["validation"]) else 1


if __name__ == "__main__":
    sys.exit(main())
