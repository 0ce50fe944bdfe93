"""The CLI: every subcommand's --help without paddle, machine-readable output, exit codes,
and the README's main job (pipeline) on a real export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_imports import _run_without_paddle

import crossrt

SUBCOMMANDS = [name for name, *_ in crossrt.COMMANDS]


def test_every_subcommand_help_works_without_paddle(tmp_path):
    code = f"""
import contextlib, io, json, sys
import crossrt
shown = {{}}
for command in [None, *{SUBCOMMANDS!r}]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            crossrt.main([command, "--help"] if command else ["--help"])
        except SystemExit as done:
            shown[command or "crossrt"] = [done.code, out.getvalue()]
print(json.dumps(dict(shown=shown, paddle="paddle" in sys.modules)))
"""
    result = _run_without_paddle(code, tmp_path)
    assert not result["paddle"]
    assert set(result["shown"]) == {"crossrt", *SUBCOMMANDS}
    for command, (exit_code, text) in result["shown"].items():
        assert exit_code == 0 and "usage: crossrt" in text, command
    assert all(name in result["shown"]["crossrt"][1] for name in SUBCOMMANDS)


def test_runtimes_lists_every_kind_with_a_reason(capsys):
    import runtimes

    assert crossrt.main(["runtimes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == list(runtimes.RUNNER_KINDS)
    assert all(r["reason"] for r in rows)
    assert {r["kind"] for r in rows if r["available"]} >= {"onnxruntime"}


def test_build_engine_on_a_missing_backend_is_one_line_exit_2(b0_export, capsys):
    from runtimes.trt_backends import TENSORRT

    if TENSORRT.build_reason() is None:
        pytest.skip("full TensorRT builds here")
    code = crossrt.main(["build-engine", "--onnx", str(b0_export.onnx_path), "--fp16",
                         "--backend", "tensorrt"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install 'crossrt[trt]'" in err
    assert not list(b0_export.path.glob("*.engine"))


@pytest.mark.parametrize("argv, fragment", [
    (["bench", "EfficientNetB0", "--all"], "not both"),
    (["bench", "EfficientNetB0", "--precision", "fp8"], "unknown precision"),
    (["bench", "NoSuchNet"], "unknown model"),
    (["build-engine", "--onnx", "/nonexistent.onnx"], "does not exist"),
    (["validate", "/nonexistent-export"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(argv, fragment, capsys):
    assert crossrt.main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_pipeline_exports_validates_and_times(b0_export, tmp_path, capsys):
    code = crossrt.main(["pipeline", "EfficientNetB0", "--out", str(b0_export.path),
                         "--duration-s", "0.2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(reused)" in out and "Validation against paddle: PASS" in out
    assert "SYNTHETIC WEIGHTS" in out
    row = next(line for line in out.splitlines() if line.startswith("| EfficientNetB0 |"))
    assert "(3.44, ×" in row  # T4 FP32 bs1 published beside the measured median
    bench = json.loads((b0_export.path.parent / "bench" / "B0" / "bench.json").read_text())
    assert not (b0_export.path / "bench").exists()  # the export folder stays as exported
    assert {(r["batch_size"], r["status"]) for r in bench["records"]} == {(1, "ok"), (4, "ok")}


def test_gpu_check_script_runs_its_steps_on_the_cpu(b0_export, tmp_path):
    """The GPU machine's prepared command, exercised end to end with --device cpu."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main([str(b0_export.path), "--device", "cpu", "--out", str(tmp_path),
                           "--rounds", "1", "--iterations", "2", "--batch-sizes", "1"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    runtimes_seen = {r["runtime"] for r in report["validation"]}
    assert "onnxruntime-fp16" in runtimes_seen  # on the CPU the FP32 graph is the reference
    assert any("golden" in r for r in runtimes_seen)
    assert all(r["passed"] for r in report["validation"])
    assert {r["file"] for r in report["timing"]} == {"model.onnx", "model.fp16.onnx"}
    assert all(r["same_outputs"] for r in report["timing"])
    assert (tmp_path / "bench" / "bench.md").is_file()


def test_zoo_json_is_only_json_with_every_key(capsys):
    assert crossrt.main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    keys = {"name", "crop_size", "resize_short", "params_m", "macs_g", "table_params_m",
            "table_flops_g", "ref_params_m", "ref_flops_g"}
    assert len(rows) == 14 and all(keys <= set(row) for row in rows)
    assert crossrt.main(["zoo"]) == 0
    table = capsys.readouterr().out
    assert "EfficientNetB7" in table and "NO" not in table.split()
