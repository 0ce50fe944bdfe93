"""TensorRT-RTX engine builds on this CPU machine: every model, FP32 and FP16, and crossrt's
overhead over the bare Polygraphy calls it wraps.

    python benchmarks/bench_engines.py zoo [--models ...] [--exports artifacts] [--out DIR]
    python benchmarks/bench_engines.py overhead [--model EfficientNetB0] [--rounds 5]

``zoo`` exports each model (``export-onnx --fp16``, reused when already there) and builds both
engines with ``crossrt build-engine`` in a fresh process each, so a build's peak RSS is its
process's; the figures come from the engines' sidecars (build seconds, plan size, layer
counts from the builder's report) and are appended to ``engines.json`` as each build ends
(a rerun skips what is done), then rendered to ``engines.md``.

``overhead`` times ``runtimes.engine.build_engine`` against the bare loaders
(``NetworkFromOnnxPath -> CreateConfigRTX -> EngineBytesFromNetwork -> SaveBytes``) on the
same graph and profile, alternating in one process, and reports the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.spec import FP16, FP32  # noqa: E402


def _run(cmd: list[str]) -> tuple[int, float, float, str]:
    """Exit code, wall seconds, peak RSS (MiB) of that one process, last line of its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOG_minloglevel": "2"}
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    return code, seconds, usage.ru_maxrss / 1024, (err.strip().splitlines() or [""])[-1]


def zoo(models: list[str], exports: Path, out: Path) -> None:
    from core.layout import ExportDir
    from runtimes.engine_info import read_sidecar, sidecar_path

    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "engines.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["model"], r["precision"]) for r in results}
    for model in models:
        export = ExportDir(exports / model)
        results = [r for r in results if (r["model"], r["precision"]) != (model, "export")]
        if not export.onnx_path(fp16=True).is_file():
            code, seconds, peak, err = _run([sys.executable, "-m", "crossrt", "export-onnx", model,
                                             "--fp16", "--out", str(export.path)])
            print(f"export {model}: exit {code} in {seconds:.0f} s, peak {peak:.0f} MiB {err}",
                  flush=True)
            if code:
                results.append({"model": model, "precision": "export", "error": err})
                continue
        for precision in (FP32, FP16):
            if (model, precision) in done:
                continue
            engine = Path(tempfile.mkdtemp(prefix="crossrt-bench-")) / f"{precision}.engine"
            cmd = [sys.executable, "-m", "crossrt", "build-engine", "--onnx",
                   str(export.onnx_path()), "--saveEngine", str(engine)]
            code, seconds, peak, err = _run(cmd + ["--fp16"] * (precision == FP16))
            record: dict = {"model": model, "precision": precision, "exit": code,
                            "process_s": round(seconds, 2), "peak_rss_mb": round(peak)}
            if code == 0:
                sidecar = read_sidecar(engine) or {}
                layers = sidecar["precision"]["layers"]
                record.update(build_s=sidecar["build"]["seconds"],
                              plan_mb=round(sidecar["build"]["plan_bytes"] / 1e6, 1),
                              fp16_layers=layers.get(FP16, 0), fp32_layers=layers.get(FP32, 0),
                              backend=f"{sidecar['backend']} {sidecar['tensorrt_version']}")
                engine.unlink()
                sidecar_path(engine).unlink()
            else:
                record["error"] = err
            (engine.parent.rmdir() if engine.parent.exists() and not any(engine.parent.iterdir())
             else None)
            results.append(record)
            results_path.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps(record), flush=True)
    (out / "engines.md").write_text(render(results))
    print(render(results))


def render(results: list[dict]) -> str:
    from exporter.specs import SPECS

    order = {name: i for i, name in enumerate(SPECS)}  # PaddleClas's row order
    lines = ["| model | precision | build s | plan MB | peak RSS MB | engine layers fp16 / fp32 |",
             "|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (order.get(r["model"], len(order)), r["precision"])):
        if r.get("exit") == 0:
            lines.append(f"| {r['model']} | {r['precision'].upper()} | {r['build_s']:.1f} | "
                         f"{r['plan_mb']:.1f} | {r['peak_rss_mb']} | {r['fp16_layers']} / "
                         f"{r['fp32_layers']} |")
        else:
            lines.append(f"| {r['model']} | {r['precision'].upper()} | "
                         f"failed: {r.get('error')} | | | |")
    backend = next((r["backend"] for r in results if r.get("backend")), "")
    return "\n".join(lines) + f"\n\nBuilt with {backend} on this CPU machine (no GPU); peak RSS " \
        "of the whole `crossrt build-engine` process.\n"


def overhead(model: str, rounds: int) -> None:
    os.environ["POLYGRAPHY_USE_TENSORRT_RTX"] = "1"
    from polygraphy.backend.common import SaveBytes
    from polygraphy.backend.tensorrt_rtx import CreateConfigRTX
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath, Profile
    from polygraphy.logger import G_LOGGER

    from core.layout import ExportDir
    from core.spec import BATCH_SIZES
    from exporter.specs import get_spec
    from runtimes.engine import EngineRequest, build_engine
    from runtimes.trt_backends import TENSORRT_RTX, use_backend

    use_backend(TENSORRT_RTX)
    spec = get_spec(model)
    onnx = ExportDir(ROOT / "artifacts" / model).onnx_path()
    if not onnx.is_file():
        sys.exit(f"{onnx} is missing: crossrt export-onnx {model} first")
    shapes = [(b, *spec.input_shape) for b in BATCH_SIZES]

    def bare(path: str) -> None:
        profile = Profile().add(spec.input_name, min=shapes[0], opt=shapes[1], max=shapes[2])
        config = CreateConfigRTX(profiles=[profile])
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            SaveBytes(EngineBytesFromNetwork(NetworkFromOnnxPath(str(onnx)), config), path)()

    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bare(f"{tmp}/warm.engine")  # first build pays library loading
        for _ in range(rounds):
            start = time.perf_counter()
            build_engine(EngineRequest(onnx, Path(f"{tmp}/crossrt.engine")))
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            bare(f"{tmp}/bare.engine")
            theirs.append(time.perf_counter() - start)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"| {model} FP32, batch 1/4/8 | crossrt build_engine | bare Polygraphy calls | ratio |")
    print("|---|---|---|---|")
    print(f"| median of {rounds} (s) | {a:.2f} | {b:.2f} | {a / b:.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    z = sub.add_parser("zoo")
    z.add_argument("--models", nargs="*")
    z.add_argument("--exports", type=Path, default=ROOT / "artifacts")
    z.add_argument("--out", type=Path, default=ROOT / "artifacts" / "reference" / "tensorrt-rtx")
    o = sub.add_parser("overhead")
    o.add_argument("--model", default="EfficientNetB0")
    o.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.what == "zoo":
        from exporter.specs import SPECS

        by_cost = sorted(SPECS, key=lambda n: (SPECS[n].published.params_m or 0)
                         * SPECS[n].crop_size ** 2)
        zoo(args.models or by_cost, args.exports, args.out)  # cheapest first: results come early
    else:
        overhead(args.model, args.rounds)
