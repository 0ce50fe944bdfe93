"""A small real export for the runtime tests, shaped like ``crossrt export-onnx``'s output.

A few convolutions, pooling and a linear head on a [-1, 3, 32, 32] input, saved with
``paddle.jit.save`` (PIR ``inference.json`` + ``.pdiparams``) and converted with paddle2onnx:
``DIR/model.onnx`` and ``DIR/paddle/inference.{json,pdiparams}``. Built in a subprocess so the
test process itself never imports paddle for it (and stays usable for no-paddle checks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = Path(__file__).with_name("rt_build_small.py")

_BUILT: set[Path] = set()


def build_small_export(root: Path, legacy: bool = False) -> Path:
    """Export the small model under ``root`` once per process; returns the export dir.

    ``legacy=True`` writes only ``paddle/inference.pdmodel`` (the pre-PIR format), no ONNX.
    """
    out = root / ("small-legacy" if legacy else "small")
    if out in _BUILT:
        return out
    (out / "paddle").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "POLYGRAPHY_AUTOINSTALL_DEPS": "0"}  # paddle2onnx must not pip-install
    command = [sys.executable, str(_SCRIPT), str(out)]
    if legacy:
        env["FLAGS_enable_pir_api"] = "0"
        command.append("--no-onnx")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    made = out / ("paddle/inference.pdmodel" if legacy else "model.onnx")
    if done.returncode != 0 or not made.is_file() or made.stat().st_size == 0:
        raise RuntimeError(f"building the small test export failed:\n{done.stderr[-3000:]}")
    _BUILT.add(out)
    return out


def write_tiny_onnx(path: Path, seed: int = 0, output_batch: str = "batch") -> Path:
    """A tiny classifier written with onnx.helper (no paddle): x [batch,3,32,32] ->
    logits [batch,10].

    For machines without paddle (the GPU machine) and for TensorRT build tests. A different
    ``output_batch`` name makes the output's batch dimension unrelated to the input's.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {"w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
               "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
               "w2": rng.standard_normal((10, 8)).astype(np.float32) * 0.5,
               "b2": rng.standard_normal(10).astype(np.float32) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [output_batch, 10])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_manifest(folder: Path, model: str, weights: dict) -> Path:
    """A manifest with every record crossrt reads back (core.layout.MANIFEST_SCHEMA), for an
    export made by hand in a test; its files listed with their real hashes."""
    import hashlib
    import json

    listed = {p.relative_to(folder).as_posix():
              {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
              for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = {"model": model, "request": {}, "weights": weights, "files": listed, "nodes": {},
                "preprocessing": {}, "inputs": [], "outputs": [],
                "check": {"max_abs_error": 0.0, "tolerance": 0.0, "passed": True,
                          "top1_agreement": 1.0}}
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path
