"""``crossrt build-engine``: everything that is pure Python, plus real builds where TensorRT is.

TensorRT cannot be installed in this workplace, so the real build tests skip here with the
reason; the argument parsing (trtexec syntax), profile derivation, precision plan per
TensorRT major version, engine-inspector parsing, sidecar and error paths run everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runtimes
from exporter.errors import DependencyError, EngineBuildError, UsageError
from exporter.specs import BATCH_SIZES, get_spec
from rt_fixtures import write_tiny_onnx
from runtimes import engine as eng

MiB = 1 << 20


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "model.onnx")


# -- trtexec syntax ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("2048", 2048 * MiB), ("2G", 2 << 30), ("2g", 2 << 30), ("256M", 256 * MiB),
    ("64K", 64 << 10), ("100B", 100), ("0.25M", MiB // 4), ("1.5K", 1536), ("3.7B", 3),
    (".5", MiB // 2),
])
def test_sizes_follow_trtexec_units(text, expected):
    assert eng.parse_size(text) == expected


@pytest.mark.parametrize("text", ["2T", "abc", "", "-1", "1e3", "1 G B"])
def test_bad_sizes_are_usage_errors(text):
    with pytest.raises(UsageError, match="bad size"):
        eng.parse_size(text)


def test_mem_pool_size():
    assert eng.parse_mem_pool_size("workspace:1024,tacticSharedMem:48K") == {
        "workspace": 1024 * MiB, "tacticSharedMem": 48 << 10}
    assert eng.parse_mem_pool_size("dlaSRAM:0.5M") == {"dlaSRAM": MiB // 2}
    for bad in ("workspaces:1", "workspace", "", "workspace:lots"):
        with pytest.raises(UsageError):
            eng.parse_mem_pool_size(bad)


def test_shape_specs():
    assert eng.parse_shapes("x:1x3x224x224") == {"x": (1, 3, 224, 224)}
    assert eng.parse_shapes("a:1x3,b:2x5x7") == {"a": (1, 3), "b": (2, 5, 7)}
    assert eng.parse_shapes(r"\'Input:0\':4x3") == {"Input:0": (4, 3)}
    assert eng.parse_shapes("'Input:0':4x3") == {"Input:0": (4, 3)}
    assert eng.parse_shapes("s:scalar,t:") == {"s": (), "t": ()}
    for bad in ("1x3x224x224", "x:1x-3", "x:1*3", "x:1x", ":1x3", ""):
        with pytest.raises(UsageError):
            eng.parse_shapes(bad)


# -- profiles ------------------------------------------------------------------------------------
def test_default_profile_comes_from_the_spec():
    for name in ("EfficientNetB0", "EfficientNetB7", "ResNeXt101_32x8d_wsl"):
        spec = get_spec(name)
        crop = spec.crop_size
        low, opt, high = eng.spec_profile(spec)[spec.input_name]
        assert low == (BATCH_SIZES[0], 3, crop, crop) and high == (BATCH_SIZES[-1], 3, crop, crop)
        assert low[0] <= opt[0] <= high[0] and opt[1:] == (3, crop, crop)


def test_onnx_inputs_leave_out_initializers(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])])
    onnx.save(helper.make_model(graph), str(tmp_path / "g.onnx"))
    assert eng.onnx_inputs(tmp_path / "g.onnx") == {"x": (None, 3)}


def test_resolve_profile_rules():
    graph = {"x": (None, 3, 224, 224)}
    spec = get_spec("EfficientNetB0")
    assert eng.resolve_profile(graph, spec=spec) == eng.spec_profile(spec)
    assert eng.resolve_profile(graph) == eng.spec_profile(spec)  # batch 1/4/8 from the graph
    only_opt = eng.resolve_profile(graph, opt_shapes={"x": (2, 3, 224, 224)})
    assert only_opt == {"x": ((2, 3, 224, 224),) * 3}  # trtexec: min = max = opt
    full = eng.resolve_profile(graph, {"x": (1, 3, 224, 224)}, {"x": (2, 3, 224, 224)},
                               {"x": (16, 3, 224, 224)})
    assert full["x"][2] == (16, 3, 224, 224)


@pytest.mark.parametrize("shapes, message", [
    (({"x": (1, 3, 224, 224)}, None, {"x": (8, 3, 224, 224)}), "all three"),
    (({"y": (1, 3, 224, 224)},) * 3, "not an input"),
    (({"x": (1, 3, 200, 200)},) * 3, "graph's input is Nx3x224x224"),
    (({"x": (1, 3, 224)},) * 3, "graph's input"),
    (({"x": (8, 3, 224, 224)}, {"x": (4, 3, 224, 224)}, {"x": (1, 3, 224, 224)}), "min <= opt <= max"),
])
def test_resolve_profile_errors(shapes, message):
    with pytest.raises(UsageError, match=message):
        eng.resolve_profile({"x": (None, 3, 224, 224)}, *shapes)


def test_other_dynamic_dims_need_shapes():
    with pytest.raises(UsageError, match="dynamic dimensions besides the batch"):
        eng.resolve_profile({"x": (None, 3, None, None)})


# -- precision -----------------------------------------------------------------------------------
def test_precision_plan_per_tensorrt_major(tmp_path):
    onnx = tmp_path / "model.onnx"
    plan10 = eng.precision_plan(10, True, onnx)
    assert (plan10.builder_fp16, plan10.strongly_typed, plan10.onnx) == (True, False, onnx)
    assert eng.precision_plan(10, False, onnx).builder_fp16 is False
    plan11 = eng.precision_plan(11, True, onnx)  # no model.fp16.onnx yet: convert first
    assert (plan11.builder_fp16, plan11.strongly_typed) == (False, True)
    assert plan11.onnx == tmp_path / "model.fp16.onnx" and plan11.convert_from == onnx
    (tmp_path / "model.fp16.onnx").write_bytes(b"")
    assert eng.precision_plan(12, True, onnx).convert_from is None
    assert eng.precision_plan(11, True, tmp_path / "model.fp16.onnx").onnx == tmp_path / "model.fp16.onnx"
    fp32_11 = eng.precision_plan(11, False, onnx)
    assert (fp32_11.onnx, fp32_11.strongly_typed, fp32_11.requested) == (onnx, True, "fp32")
    json.dumps(plan11.to_json())
    with pytest.raises(DependencyError, match="TensorRT >= 10"):
        eng.precision_plan(8, True, onnx)


# Inspector records as TensorRT 10 (combined "Format/Datatype") and 11 (split keys) write them.
TRT10_LAYERS = [
    {"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
     "Outputs": [{"Name": "x_h", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
    {"Name": "conv1", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "c", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
    {"Name": "gemm", "LayerType": "CaskGemmConvolution",
     "Outputs": [{"Name": "logits", "Format/Datatype": "Row major linear FP32"}]},
]
TRT11_LAYERS = [
    {"Name": "conv1", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "c", "Datatype": "Half", "Format": "Channel major FP16 format"}]},
    {"Name": "pool", "LayerType": "CaskPooling",
     "Outputs": [{"Name": "p", "DataType": "BFloat16", "Format": "Row major linear"}]},
    {"Name": "noop", "LayerType": "NoOp", "Outputs": [{"Name": "n", "Datatype": "Float"}]},
]


def test_layer_precisions_read_both_inspector_schemas():
    assert eng.layer_precisions(TRT10_LAYERS) == {"fp16": 1, "fp32": 1}  # Reformat not counted
    assert eng.layer_precisions(TRT11_LAYERS) == {"fp16": 1, "bf16": 1}  # NoOp not counted
    assert eng.layer_precisions(["conv1", "gemm"]) == {"unknown": 2}  # not built DETAILED
    assert eng.engine_precision({"fp16": 1, "fp32": 1}) == "mixed"
    assert eng.engine_precision({"fp16": 3, "int32": 1}) == "fp16"
    assert eng.engine_precision({"fp32": 3}) == "fp32"
    assert eng.engine_precision({"unknown": 2}) == "unknown"


def test_fp16_request_with_an_fp32_engine_is_an_error(tmp_path):
    engine = tmp_path / "model.engine"
    eng.check_precision("fp16", {"fp16": 1, "fp32": 9}, engine)  # mixed is FP16 at work
    eng.check_precision("fp32", {"fp32": 9}, engine)
    for counts in ({"fp32": 9}, {"unknown": 4}, {}):
        with pytest.raises(EngineBuildError) as caught:
            eng.check_precision("fp16", counts, engine)
        assert caught.value.exit_code == 1 and "no FP16 layers" in str(caught.value)


# -- sidecar and compatibility -------------------------------------------------------------------
GPU_H200 = {"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0", "driver": "12.8"}
GPU_T4 = {"index": 0, "name": "Tesla T4", "compute_capability": "7.5", "driver": "12.2"}


def _sidecar(tmp_path: Path) -> dict:
    spec = get_spec("EfficientNetB0")
    return eng.make_sidecar(
        engine=tmp_path / "model.engine", onnx=tmp_path / "model.onnx", onnx_sha256="ab" * 32,
        trt_version="10.13.0.35", gpu=GPU_H200, profile=eng.spec_profile(spec),
        plan=eng.precision_plan(10, True, tmp_path / "model.onnx"),
        layers={"fp16": 40, "fp32": 2}, build_time_s=12.3456,
        timing_cache={"path": "cache.bin", "reused": False, "bytes_before": None, "bytes_after": 9},
        memory_pools={"workspace": 1 << 30}, builder_optimization_level=3,
        inference={"ran": ["min", "opt", "max"], "finite": True})


def test_sidecar_contents(tmp_path):
    from exporter.provenance import write_json

    sidecar = _sidecar(tmp_path)
    assert sidecar["tensorrt_version"] == "10.13.0.35"
    assert sidecar["gpu"]["name"] == "NVIDIA H200" and sidecar["gpu"]["compute_capability"] == "9.0"
    assert sidecar["profiles"] == [{"x": {"min": [1, 3, 224, 224], "opt": [4, 3, 224, 224],
                                          "max": [8, 3, 224, 224]}}]
    assert sidecar["precision"]["requested"] == "fp16" and sidecar["precision"]["engine"] == "mixed"
    assert sidecar["build_time_s"] == 12.346 and sidecar["timing_cache"]["path"] == "cache.bin"
    engine = tmp_path / "model.engine"
    assert eng.sidecar_path(engine) == tmp_path / "model.engine.json"
    assert eng.read_sidecar(engine) is None
    write_json(eng.sidecar_path(engine), sidecar)
    assert eng.read_sidecar(engine) == json.loads(json.dumps(sidecar))


def test_engine_from_another_tensorrt_or_gpu_is_refused_clearly(tmp_path):
    sidecar, engine = _sidecar(tmp_path), tmp_path / "model.engine"
    eng.check_engine_compatible(sidecar, "10.13.0.35", GPU_H200, engine)  # same: fine
    with pytest.raises(UsageError) as caught:
        eng.check_engine_compatible(sidecar, "10.8.0.43", GPU_H200, engine)
    message = str(caught.value)
    assert "TensorRT 10.13.0.35" in message and "10.8.0.43" in message
    assert "crossrt build-engine" in message and "\n" not in message
    with pytest.raises(UsageError, match="compute capability 9.0.*Tesla T4 with 7.5"):
        eng.check_engine_compatible(sidecar, "10.13.0.35", GPU_T4, engine)
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(UsageError, match="sidecar"):
        eng.read_sidecar(engine)


# -- build_engine's error paths ---------------------------------------------------------------------
def test_build_without_tensorrt_is_dependency_error(tiny_onnx, tmp_path):
    available, reason = runtimes.is_available("tensorrt")
    if available:
        pytest.skip("TensorRT is available here")
    engine = tmp_path / "model.engine"
    with pytest.raises(DependencyError) as caught:
        eng.build_engine(tiny_onnx, engine, fp16=True, workspace="1G")
    assert caught.value.exit_code == 2 and reason in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not engine.exists() and not eng.sidecar_path(engine).exists()


def test_build_checks_its_arguments_before_tensorrt(tiny_onnx, tmp_path):
    engine = tmp_path / "model.engine"
    with pytest.raises(UsageError, match="does not exist"):
        eng.build_engine(tmp_path / "missing.onnx", engine)
    with pytest.raises(UsageError, match="0..5"):
        eng.build_engine(tiny_onnx, engine, builder_optimization_level=7)
    with pytest.raises(UsageError, match="not an input"):
        eng.build_engine(tiny_onnx, engine, opt_shapes="y:1x3x32x32")
    with pytest.raises(UsageError, match="bad --memPoolSize"):
        eng.build_engine(tiny_onnx, engine, mem_pools="workspac:1G")


# -- real builds (TensorRT and a GPU) ---------------------------------------------------------------
needs_tensorrt = pytest.mark.skipif(not runtimes.is_available("tensorrt")[0],
                                    reason=runtimes.is_available("tensorrt")[1])


@pytest.mark.trt
@needs_tensorrt
@pytest.mark.parametrize("fp16", [False, True])
def test_real_build_runs_and_matches_onnxruntime(tiny_onnx, tmp_path, fp16):
    engine = tmp_path / ("model.fp16.engine" if fp16 else "model.engine")
    cache = tmp_path / "timing.cache"
    first = eng.build_engine(tiny_onnx, engine, fp16=fp16, timing_cache=cache,
                             min_shapes="x:1x3x32x32", opt_shapes="x:4x3x32x32",
                             max_shapes="x:8x3x32x32")
    assert engine.is_file() and eng.read_sidecar(engine) == json.loads(json.dumps(first))
    assert first["precision"]["engine"] in (("fp16", "mixed") if fp16 else ("fp32",))
    assert first["inference_check"]["finite"] and cache.is_file()
    second = eng.build_engine(tiny_onnx, engine, fp16=fp16, timing_cache=cache)
    assert second["timing_cache"]["reused"]  # build times are in both sidecars, not asserted
    feed = {"x": np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)}
    with runtimes.create_runner("tensorrt", engine) as trt_runner, \
            runtimes.create_runner("onnxruntime", tiny_onnx) as ort_runner:
        got, want = trt_runner.infer(feed)["logits"], ort_runner.infer(feed)["logits"]
        np.testing.assert_allclose(got, want, atol=5e-2 if fp16 else 1e-3)
        with pytest.raises(UsageError, match="from 1x3x32x32 to 8x3x32x32"):
            trt_runner.infer({"x": np.zeros((9, 3, 32, 32), np.float32)})
