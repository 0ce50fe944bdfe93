"""Export past protobuf's 2 GB: the network converted in pieces and joined with external data.

The real case (ResNeXt101_32x48d_wsl, 3.3 GB) is measured in benchmarks/bench_export.py
--large; here the same code path runs on EfficientNetB0_small with the limits scaled down,
so every piece boundary, rename and external-data write is exercised in seconds.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from core import graphs
from core.errors import UsageError
from core.preprocess import photo_batch
from exporter import export as export_mod
from exporter import large
from exporter.specs import get_spec

pytestmark = pytest.mark.slow  # every test here exports


@pytest.fixture()
def tiny_limits(monkeypatch):
    monkeypatch.setattr(graphs, "PROTOBUF_LIMIT", 1 << 20)  # 1 MiB: "too large"
    monkeypatch.setattr(large, "PIECE_BYTES", 1 << 20)


def test_export_in_pieces_matches_paddle(tiny_limits, monkeypatch, tmp_path):
    import onnxruntime.transformers.float16 as float16

    def in_memory(*args, **kwargs):  # what a 3.3 GB graph makes of in-memory shape inference
        raise ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB")

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", in_memory)
    monkeypatch.setattr(float16, "infer_shapes", in_memory)
    result = export_mod.export_onnx("EfficientNetB0_small", out_dir=tmp_path / "pieces", fp16=True)
    manifest = result.manifest
    assert manifest["check"]["passed"] and manifest["check"]["max_abs_error"] < 1e-4
    assert "model.onnx.data" in manifest["files"]
    graph = onnx.load(str(result.onnx_path), load_external_data=False)
    prefixes = {n.name.split("/")[0] for n in graph.graph.node}
    assert len(prefixes) > 3  # really several pieces
    assert [i.name for i in graph.graph.input] == ["x"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    onnx.checker.check_model(str(result.onnx_path), full_check=True)
    # an ordinary export of the same weights gives the same outputs
    monkeypatch.undo()
    whole = export_mod.export_onnx("EfficientNetB0_small", out_dir=tmp_path / "whole",
                                   paddle_model=result.path / "paddle")
    _, photos = photo_batch(get_spec("EfficientNetB0_small"))
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
               .run(None, {"x": photos})[0] for p in (result.onnx_path, whole.onnx_path)]
    np.testing.assert_allclose(*outputs, atol=1e-5)
    assert manifest["fp16"]["top1_agreement_photos"] == 1.0


def test_an_existing_paddle_model_past_the_limit_is_refused(tiny_limits, tmp_path, b0_export):
    with pytest.raises(UsageError, match="2 GB"):
        export_mod.export_onnx("EfficientNetB0", paddle_model=b0_export.path / "paddle",
                               out_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_pieces_are_packed_up_to_the_limit():
    import paddle

    layers = [paddle.nn.Linear(256, 256) for _ in range(5)]  # 263 KB of weights each
    groups = large._group(layers, 600_000)
    assert [len(g) for g in groups] == [2, 2, 1]
    assert large._group(layers, 1)[0] == [layers[0]]  # a piece larger than the limit stands alone
