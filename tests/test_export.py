"""export-onnx end to end on real models, and every way it can be asked to fail."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import crossrt
from core import graphs
from core.errors import CheckFailed, UsageError
from core.layout import ExportDir
from core.preprocess import photo_batch
from exporter import export as export_mod
from exporter.export import export_onnx
from exporter.specs import get_spec

ROOT = Path(__file__).resolve().parents[1]


def error_lines(stderr: str) -> list[str]:
    """The error lines of a CLI run (progress lines may precede them); no traceback allowed."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if ": error: " in line]


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_b0_export_files_names_and_manifest(b0_export):
    out, manifest = b0_export.path, b0_export.manifest
    graph = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["x"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 224, 224]
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["resize_short"] == "256" and meta["crop_size"] == "224"
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406] and meta["weights"] == "synthetic"
    # the manifest lists every file with its real hash, and the simplifier really simplified
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    engines = set(ExportDir(out).engines())  # build-engine's, beside the graphs (the pipeline's)
    assert set(manifest["files"]) == on_disk - engines
    assert {"model.onnx", "model.fp16.onnx", "reference.npz", "paddle/inference.json",
            "paddle/inference.pdiparams"} <= on_disk
    assert manifest["nodes"]["model.onnx"] < manifest["nodes"]["paddle2onnx"]
    assert manifest["weights"] == {**manifest["weights"], "kind": "synthetic", "seed": 0}
    assert manifest["check"]["passed"] and manifest["check"]["max_abs_error"] <= 1e-4
    assert {"paddle2onnx", "onnx", "onnxsim", "onnxruntime", "numpy"} <= set(manifest["tools"])
    assert manifest["inputs"][0]["shape"] == ["batch", 3, 224, 224]


def test_golden_outputs_match_the_onnx_model(b0_export):
    golden = np.load(b0_export.path / "reference.npz")
    names, photos = photo_batch(get_spec("EfficientNetB0"))
    assert list(golden["names"]) == names
    np.testing.assert_array_equal(golden["inputs"], photos)
    np.testing.assert_allclose(run_onnx(b0_export.onnx_path, photos), golden["outputs"],
                               atol=1e-4)
    # non-degenerate synthetic weights: different photos, different classes
    assert len(set(golden["outputs"].argmax(1))) > 1


def test_fp16_graph_runs_and_agrees_on_photos(b0_export):
    graph = onnx.load(str(b0_export.path / "model.fp16.onnx"))
    inits = {onnx.helper.tensor_dtype_to_np_dtype(t.data_type) for t in graph.graph.initializer}
    assert np.dtype(np.float16) in inits
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    _, photos = photo_batch(get_spec("EfficientNetB0"))
    fp16 = run_onnx(b0_export.path / "model.fp16.onnx", photos)
    fp32 = run_onnx(b0_export.onnx_path, photos)
    assert fp16.dtype == np.float32
    np.testing.assert_array_equal(fp16.argmax(1), fp32.argmax(1))
    assert 0 < np.abs(fp16 - fp32).max() < 0.1 * np.abs(fp32).max()


def test_reexport_is_reused_and_force_exports_again(b0_export):
    again = export_onnx("EfficientNetB0", out_dir=b0_export.path, fp16=True)
    assert again.reused and again.manifest == b0_export.manifest
    different = export_onnx("EfficientNetB0", out_dir=b0_export.path.parent / "other",
                            paddle_model=b0_export.path / "paddle", fp16=False)
    forced = export_onnx("EfficientNetB0", out_dir=different.path,
                         paddle_model=b0_export.path / "paddle", force=True)
    assert not different.reused and not forced.reused
    assert forced.manifest["seconds"] != different.manifest["seconds"]


def test_paddle_model_pir_gives_the_same_outputs(b0_export, tmp_path):
    result = export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle" /
                         "inference.json", out_dir=tmp_path / "from_pir")
    assert result.manifest["weights"]["kind"] == "paddle-model"
    _, photos = photo_batch(get_spec("EfficientNetB0"))
    np.testing.assert_allclose(run_onnx(result.onnx_path, photos),
                               run_onnx(b0_export.onnx_path, photos), atol=1e-5)


@pytest.mark.slow  # exports
def test_paddle_model_legacy_pdmodel(tmp_path):
    """A legacy .pdmodel (what older PaddleClas exports are) converts to the same outputs."""
    script = ("import paddle\n"
              "from exporter.specs import get_spec\n"
              "from exporter.weights import load_model\n"
              "spec = get_spec('EfficientNetB0_small')\n"
              "layer, _ = load_model(spec, None, seed=0)\n"
              "paddle.jit.save(layer, r'%s', input_spec=[paddle.static.InputSpec("
              "[None, 3, 224, 224], 'float32', name='x')])\n") % (tmp_path / "legacy" / "inference")
    env = {**os.environ, "FLAGS_enable_pir_api": "0", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True)
    assert (tmp_path / "legacy" / "inference.pdmodel").is_file()
    legacy = export_onnx("EfficientNetB0_small", paddle_model=tmp_path / "legacy",
                         out_dir=tmp_path / "out_legacy")
    zoo = export_onnx("EfficientNetB0_small", out_dir=tmp_path / "out_zoo")
    _, photos = photo_batch(get_spec("EfficientNetB0_small"))
    np.testing.assert_allclose(run_onnx(legacy.onnx_path, photos),
                               run_onnx(zoo.onnx_path, photos), atol=1e-5)


def test_weights_checkpoint_round_trip(b0_export, tmp_path):
    import paddle

    from exporter.weights import load_model

    layer, _ = load_model(get_spec("EfficientNetB0"), None, seed=0)
    paddle.save(layer.state_dict(), str(tmp_path / "b0.pdparams"))
    result = export_onnx("EfficientNetB0", weights=tmp_path / "b0.pdparams",
                         out_dir=tmp_path / "ckpt")
    assert result.manifest["weights"]["kind"] == "checkpoint"
    _, photos = photo_batch(get_spec("EfficientNetB0"))
    np.testing.assert_allclose(run_onnx(result.onnx_path, photos),
                               run_onnx(b0_export.onnx_path, photos), atol=1e-5)


@pytest.mark.parametrize("argv, fragment", [
    (["export-onnx", "EfficientNetB9"], "did you mean"),
    (["export-onnx", "EfficientNetB0", "--opset", "9"], "opset 9"),
    (["export-onnx", "EfficientNetB0", "--paddle-model", "/nonexistent/model"],
     "no Paddle inference program"),
    (["export-onnx", "EfficientNetB0", "--weights", "/nonexistent.pdparams"], "does not exist"),
])
def test_bad_arguments_exit_2_with_one_line(argv, fragment, capsys):
    assert crossrt.main(argv) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert fragment in line


def test_missing_pdiparams_is_named(tmp_path, capsys):
    (tmp_path / "inference.json").write_text("{}")
    assert crossrt.main(["export-onnx", "EfficientNetB0", "--paddle-model", str(tmp_path)]) == 2
    assert "inference.pdiparams is missing" in capsys.readouterr().err


def test_not_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.pdparams"
    bogus.write_bytes(b"this is not a checkpoint" * 10)
    assert crossrt.main(["export-onnx", "EfficientNetB0_small", "--weights", str(bogus),
                         "--out", str(tmp_path / "o")]) == 2
    [line] = error_lines(capsys.readouterr().err)
    assert "bogus.pdparams" in line
    assert not (tmp_path / "o").exists()


def test_output_under_a_regular_file_is_not_writable(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert crossrt.main(["export-onnx", "EfficientNetB0_small", "--out",
                         str(tmp_path / "file" / "out")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_disk_full_leaves_nothing_behind(b0_export, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(graphs, "save_onnx", full)
    out = tmp_path / "full"
    with pytest.raises(UsageError, match="disk full"):
        export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle", out_dir=out)
    assert not out.exists() and not list(tmp_path.glob(".full.crossrt-staging-*"))


def test_interrupted_or_failed_export_keeps_the_good_one(b0_export, tmp_path, monkeypatch):
    out = tmp_path / "good"
    good = export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle", out_dir=out)
    before = (out / "model.onnx").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(graphs, "simplify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle", out_dir=out,
                    force=True)
    assert (out / "model.onnx").read_bytes() == before
    assert json.loads((out / "manifest.json").read_text()) == good.manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]  # no staging, no lock file


def test_numerical_check_failure_fails_the_export(b0_export, tmp_path, monkeypatch):
    real = export_mod._ort_outputs

    def drifting(model, spec, feed):
        return real(model, spec, feed) + (0.01 if isinstance(model, Path) else 0.0)

    monkeypatch.setattr(export_mod, "_ort_outputs", drifting)
    with pytest.raises(CheckFailed, match="differs from Paddle by 0.01"):
        export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle",
                    out_dir=tmp_path / "drift")
    assert not (tmp_path / "drift").exists()


def test_edited_export_is_not_silently_replaced(b0_export, tmp_path):
    out = tmp_path / "edited"
    export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle", out_dir=out)
    with open(out / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(UsageError, match="modified after export"):
        export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle", out_dir=out)


def test_concurrent_exports_do_not_corrupt_each_other(b0_export, tmp_path):
    out = tmp_path / "race"
    cmd = [sys.executable, "-m", "crossrt", "export-onnx", "EfficientNetB0", "--paddle-model",
           str(b0_export.path / "paddle"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate() + (p.returncode,) for p in procs]
    assert [code for _, _, code in results] == [0, 0], results
    assert sum("(reused)" in stdout for stdout, _, _ in results) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["check"]["passed"]
    assert not list(tmp_path.glob(".race.crossrt-staging-*"))
    assert not (tmp_path / ".race.lock").exists()
