"""The packages import on a machine with only the ONNX side: no paddle, TensorRT or CUDA.

Each check runs in a fresh interpreter whose import system refuses ``paddle``,
``paddle2onnx`` and ``tensorrt`` as if they were not installed (a meta-path finder put first,
through a ``sitecustomize`` on PYTHONPATH), and with no GPU visible.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rt_fixtures import write_tiny_onnx

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ("paddle", "paddle2onnx", "tensorrt", "tensorrt_bindings", "tensorrt_libs", "tensorrt_rtx",
          "tensorrt_rtx_bindings", "tensorrt_rtx_libs")

_SITECUSTOMIZE = f"""
import sys

HIDDEN = {HIDDEN!r}


class HideModules:
    '''Behave as if these top-level packages were not installed.'''

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, HideModules())
"""


def _run_without_paddle(code: str, tmp_path: Path) -> dict:
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_blocker_really_hides_paddle(tmp_path):
    result = _run_without_paddle(
        "import json\ntry:\n    import paddle\n    print(json.dumps('imported'))\n"
        "except ModuleNotFoundError:\n    print(json.dumps('hidden'))", tmp_path)
    assert result == "hidden"


def test_packages_import_and_onnx_runs_without_paddle(tmp_path):
    model = write_tiny_onnx(tmp_path / "export" / "model.onnx")
    code = f"""
import json, sys
import core, exporter, runtimes, validation
light = sorted(m for m in ("paddle", "onnxruntime", "onnx", "tensorrt", "cv2") if m in sys.modules)
import numpy as np
from core.errors import DependencyError
status = dict((k, runtimes.is_available(k)) for k in runtimes.RUNNER_KINDS)
with runtimes.create_runner("onnxruntime", {str(model.parent)!r}) as runner:
    shape = runner.infer({{"x": np.ones((2, 3, 32, 32), np.float32)}})["logits"].shape
try:
    runtimes.create_runner("paddle", {str(model.parent)!r})
    refused = None
except DependencyError as error:
    refused = [str(error), error.exit_code]
print(json.dumps(dict(light=light, status=status, shape=shape, refused=refused,
                      paddle_loaded="paddle" in sys.modules)))
"""
    result = _run_without_paddle(code, tmp_path)
    assert result["light"] == []  # importing the packages pulls in no runtime
    available, reason = result["status"]["paddle"]
    assert not available and "Paddle is not installed" in reason and "pip install" in reason
    assert result["status"]["onnxruntime"][0]
    assert not result["status"]["tensorrt"][0]
    assert not result["status"]["onnxruntime-cuda"][0]  # CPU-only build, or no GPU visible
    assert result["shape"] == [2, 10]
    message, exit_code = result["refused"]
    assert exit_code == 2 and "paddle" in message and "\n" not in message
    assert result["paddle_loaded"] is False


@pytest.mark.parametrize("module", ["runtimes.engine", "runtimes.engine_info",
                                    "runtimes.trt_backends", "runtimes.tensorrt_runner",
                                    "runtimes.onnxrt", "runtimes.paddle_inference",
                                    "validation.pipeline", "validation.validate",
                                    "validation.accuracy", "validation.bench",
                                    "validation.localize", "exporter.specs", "exporter.export",
                                    "core.graphs", "core.layout", "core.preprocess"])
def test_every_runtime_module_imports_without_its_runtime(tmp_path, module):
    result = _run_without_paddle(
        f"import json, sys, {module}\n"
        "print(json.dumps(sorted(m for m in ('paddle', 'tensorrt', 'tensorrt_rtx', 'onnxruntime')"
        " if m in sys.modules)))",
        tmp_path)
    assert result == []


LAYERS = ("core", "runtimes", "exporter", "validation", "crossrt")  # each stands on those before


def test_every_import_runs_down_the_layers():
    """No module imports a package above its own, lazy imports inside functions included:
    core <- runtimes <- exporter <- validation <- crossrt (the CLI)."""
    import ast

    rank = {name: index for index, name in enumerate(LAYERS)}
    upward = []
    for path in sorted(ROOT.glob("*/**/*.py")) + [ROOT / "crossrt.py"]:
        layer = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if layer not in rank:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and not node.level else [])
            upward += [f"{path.relative_to(ROOT)} imports {name}" for name in names
                       if rank.get(name.split(".")[0], -1) > rank[layer]]
    assert not upward, upward
    assert {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} == set(LAYERS[:-1])
