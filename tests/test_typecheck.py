"""mypy over the whole package (``[tool.mypy]`` in pyproject.toml), the TensorRT code against
the published ``tensorrt-stubs`` (10.13).

Full TensorRT cannot run here, so API misuse in the engine modules (``runtimes/engine*.py``,
``trt_backends.py``, ``trtexec.py``, ``tensorrt_runner.py``) is caught by types instead; the
TensorRT-RTX path shares that code and is typed against the same stubs; the model families
are checked against their Protocol. CI installs the stubs into a folder used only through
MYPYPATH (installed normally they would make ``import tensorrt`` succeed):

    pip install --no-deps --target .stubs "tensorrt-stubs==10.13.*"

Without ``.stubs`` the check skips, except under ``CI=true``, where it fails.
The published stubs do not parse as they are (a parameter named ``in``, a parameter without
a default after defaulted ones); a copy with those lines mended is what mypy reads.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / ".stubs"
CHECKED = ["core", "exporter", "runtimes", "validation", "crossrt.py"]
# Stable paths keep mypy's cache warm (and mypy's cache remembers a module's path).
MENDED = ROOT / ".mypy_cache" / "crossrt-tensorrt-stubs"
PROBE_FILE = ROOT / ".mypy_cache" / "crossrt-probe" / "probe_tensorrt_misuse.py"

# A deliberate misuse: mypy must flag every line, or the stubs are not being used.
PROBE = '''
from __future__ import annotations
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import tensorrt as trt

def misuse(engine: trt.ICudaEngine, context: trt.IExecutionContext) -> None:
    engine.get_tensor_profile_shape("x")
    context.execute_async_v3()
    trt.BuilderFlag.FP17
'''

_DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*(?:->.*)?:\s*)$")


def _split_top_level(params: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in params:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def mend_stub_line(line: str) -> str:
    """Rename parameters called ``in``; give defaults to parameters that follow defaulted ones."""
    match = _DEF.match(line)
    if not match:
        return line
    head, params, tail = match.groups()
    mended, defaulted = [], False
    for param in _split_top_level(params):
        param = re.sub(r"^(\s*)in(\s*:)", r"\1in_\2", param)
        bare = param.strip()
        if "=" in param:
            defaulted = True
        elif defaulted and bare and not bare.startswith("*") and bare != "/":
            param += " = ..."
        mended.append(param)
    return head + ",".join(mended) + tail


def mended_stubs() -> Path:
    """A copy of .stubs in which every .pyi parses."""
    shutil.rmtree(MENDED, ignore_errors=True)
    shutil.copytree(STUBS, MENDED)
    for stub in MENDED.rglob("*.pyi"):
        text = stub.read_text()
        fixed = "\n".join(mend_stub_line(line) for line in text.split("\n"))
        ast.parse(fixed, filename=str(stub))  # fails loudly if a new kind of defect appears
        if fixed != text:
            stub.write_text(fixed)
    return MENDED


def test_mending_keeps_valid_lines_and_fixes_the_known_defects():
    assert mend_stub_line("    def f(self, in: list[int], out: int) -> int:") == \
        "    def f(self, in_: list[int], out: int) -> int:"
    assert mend_stub_line("    def g(self, a: int = None, b: int) -> None:") == \
        "    def g(self, a: int = None, b: int = ...) -> None:"
    valid = "    def h(self, inputs: dict[str, int], *args: int, key: int = 1) -> None:"
    assert mend_stub_line(valid) == valid


def test_the_package_typechecks_the_tensorrt_code_against_the_stubs():
    if not (STUBS / "tensorrt").is_dir():
        hint = 'pip install --no-deps --target .stubs "tensorrt-stubs==10.13.*"'
        if os.environ.get("CI") == "true":
            pytest.fail(f"{STUBS} is missing: CI must run {hint} before the tests")
        pytest.skip(f"{STUBS} is missing: {hint}")
    probe = PROBE_FILE
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(PROBE)
    env = {**os.environ, "MYPYPATH": str(mended_stubs())}
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", *CHECKED,
                           str(probe.relative_to(ROOT))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    from_probe = [line for line in errors if Path(line.split(":")[0]).name == probe.name]
    ours = [line for line in errors if line not in from_probe]
    assert not ours, "\n".join(ours)
    flagged = {int(line.split(":")[1]) for line in from_probe}
    misuse_lines = {n for n, text in enumerate(PROBE.splitlines(), 1)
                    if text.startswith("    ") and "def " not in text and "import" not in text}
    assert misuse_lines and misuse_lines <= flagged, done.stdout
