"""``crossrt build-engine``: trtexec syntax, profiles, precision proof, sidecar, compatibility,
and real TensorRT-RTX builds of EfficientNetB0 and B0_small (no GPU needed).

Full TensorRT cannot be installed in this workplace and no GPU is here, so the tests that run
an engine skip with the reason; everything the builder does runs for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from rt_fixtures import write_tiny_onnx

import runtimes
from core.errors import DependencyError, EngineBuildError, UsageError
from core.provenance import sha256_file
from core.spec import BATCH_SIZES
from exporter.specs import get_spec
from runtimes import engine as eng
from runtimes import engine_info as info
from runtimes import trt_backends as backends
from runtimes import trtexec

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
    assert trtexec.parse_size(text) == expected


@pytest.mark.parametrize("text", ["2T", "abc", "", "-1", "1e3", "1 G B"])
def test_bad_sizes_are_usage_errors(text):
    with pytest.raises(UsageError, match="bad size"):
        trtexec.parse_size(text)


def test_mem_pool_size():
    assert trtexec.parse_mem_pool_size("workspace:1024,tacticSharedMem:48K") == {
        "workspace": 1024 * MiB, "tacticSharedMem": 48 << 10}
    assert trtexec.parse_mem_pool_size("dlaSRAM:0.5M") == {"dlaSRAM": MiB // 2}
    for bad in ("workspaces:1", "workspace", "", "workspace:lots"):
        with pytest.raises(UsageError):
            trtexec.parse_mem_pool_size(bad)


def test_shape_specs():
    assert trtexec.parse_shapes("x:1x3x224x224") == {"x": (1, 3, 224, 224)}
    assert trtexec.parse_shapes("a:1x3,b:2x5x7") == {"a": (1, 3), "b": (2, 5, 7)}
    assert trtexec.parse_shapes(r"\'Input:0\':4x3") == {"Input:0": (4, 3)}
    assert trtexec.parse_shapes("'Input:0':4x3") == {"Input:0": (4, 3)}
    assert trtexec.parse_shapes("s:scalar,t:") == {"s": (), "t": ()}
    for bad in ("1x3x224x224", "x:1x-3", "x:1*3", "x:1x", ":1x3", ""):
        with pytest.raises(UsageError):
            trtexec.parse_shapes(bad)


# -- profiles ------------------------------------------------------------------------------------
def test_default_profile_is_batch_1_4_8_at_the_graphs_own_size():
    for name in ("EfficientNetB0", "EfficientNetB7", "ResNeXt101_32x8d_wsl"):
        crop = get_spec(name).crop_size
        low, opt, high = trtexec.resolve_profile({"x": (None, 3, crop, crop)})["x"]
        assert (low, opt, high) == tuple((b, 3, crop, crop) for b in BATCH_SIZES)


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
    assert trtexec.onnx_inputs(tmp_path / "g.onnx") == {"x": (None, 3)}


def test_resolve_profile_rules():
    graph = {"x": (None, 3, 224, 224)}
    assert trtexec.resolve_profile(graph) == {"x": tuple((b, 3, 224, 224) for b in BATCH_SIZES)}
    only_opt = trtexec.resolve_profile(graph, opt_shapes={"x": (2, 3, 224, 224)})
    assert only_opt == {"x": ((2, 3, 224, 224),) * 3}  # trtexec: min = max = opt
    full = trtexec.resolve_profile(graph, {"x": (1, 3, 224, 224)}, {"x": (2, 3, 224, 224)},
                               {"x": (16, 3, 224, 224)})
    assert full["x"][2] == (16, 3, 224, 224)


@pytest.mark.parametrize("shapes, message", [
    (({"x": (1, 3, 224, 224)}, None, {"x": (8, 3, 224, 224)}), "all three"),
    (({"y": (1, 3, 224, 224)},) * 3, "not an input"),
    (({"x": (1, 3, 200, 200)},) * 3, "graph's input is Nx3x224x224"),
    (({"x": (1, 3, 224)},) * 3, "graph's input"),
    (({"x": (8, 3, 224, 224)}, {"x": (4, 3, 224, 224)}, {"x": (1, 3, 224, 224)}),
     "min <= opt <= max"),
])
def test_resolve_profile_errors(shapes, message):
    with pytest.raises(UsageError, match=message):
        trtexec.resolve_profile({"x": (None, 3, 224, 224)}, *shapes)


def test_other_dynamic_dims_need_shapes():
    with pytest.raises(UsageError, match="dynamic dimensions besides the batch"):
        trtexec.resolve_profile({"x": (None, 3, None, None)})


# -- precision -----------------------------------------------------------------------------------
def test_precision_plan_follows_the_fp16_flag_not_the_version(tmp_path):
    onnx = tmp_path / "model.onnx"
    flag = info.precision_plan(True, True, onnx)  # TensorRT 10: the builder flag
    assert (flag.builder_fp16, flag.strongly_typed, flag.onnx) == (True, False, onnx)
    assert info.precision_plan(True, False, onnx).builder_fp16 is False
    typed = info.precision_plan(False, True, onnx)  # TensorRT 11 / RTX, no model.fp16.onnx yet
    assert (typed.builder_fp16, typed.strongly_typed) == (False, True)
    assert typed.onnx == tmp_path / "model.fp16.onnx" and typed.convert_from == onnx
    (tmp_path / "model.fp16.onnx").write_bytes(b"")
    assert info.precision_plan(False, True, onnx).convert_from is None
    assert (info.precision_plan(False, True, tmp_path / "model.fp16.onnx").onnx
            == tmp_path / "model.fp16.onnx")
    fp32 = info.precision_plan(False, False, onnx)
    assert (fp32.onnx, fp32.strongly_typed, fp32.requested) == (onnx, True, "fp32")
    json.dumps(typed.to_json())


def test_rtx_is_planned_by_capability():
    """TensorRT-RTX 1.7 has no FP16 flag: a version-number rule would call it "TensorRT 1"."""
    if (reason := backends.TENSORRT_RTX.installed_reason()) is not None:
        pytest.skip(reason)
    assert backends.TENSORRT_RTX.has_fp16_flag() is False
    assert backends.TENSORRT_RTX.version().startswith("1.")


# Inspector records as TensorRT 10 (combined "Format/Datatype") and 11 (split keys) write them.
TRT10_LAYERS = [
    {"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
     "Outputs": [{"Name": "x_h", "Format/Datatype": "Channel major FP16 format where "
                                                    "channel % 8 == 0"}]},
    {"Name": "conv1", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "c", "Format/Datatype": "Channel major FP16 format where "
                                                  "channel % 8 == 0"}]},
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
# Two lines of TensorRT-RTX's builder report at DETAILED verbosity (as logged by 1.7)
RTX_REPORT = (
    "Layers:\n"
    "Name: __mye4202_0_myl0_0, LayerType: shape_call, Inputs: [], Constants: [], Outputs: [], "
    "TacticName: , StreamId: 0, Metadata: \n"
    "Name: Conv.0_myl0_2, LayerType: correlation, Inputs: [ { Name: a, Dimensions: [-1,4,224,224], "
    "Datatype: Half, Format: (NHWC) Channel major format }], "
    "Constants: [ { Name: w, Datatype: Half }], "
    "Outputs: [ { Name: b, Dimensions: [-1,32,113,113], Datatype: Half, "
    "Format: (NHWC) Channel major "
    "format }], TacticName: __myelin_CASK_STUB, StreamId: 0, Metadata: [ONNX Layer: Conv.0]\n"
    "Name: __myl_FcAddCast_myl0_133, LayerType: runtime_fusion, "
    "Inputs: [ { Name: p, Datatype: Half }], "
    "Constants: [], Outputs: [ { Name: logits, Dimensions: [-1,1000], "
    "Datatype: Float, Format: (Linear) "
    "Row major linear format }], TacticName: , StreamId: 0, Metadata: [ONNX Layer: MatMul.0]\n\n"
    "I/O Tensors:\n Name: x, IOMode: Input, DataType: Float\n")


def test_layer_precisions_read_the_inspector_schemas_and_the_builder_report():
    assert info.layer_precisions(TRT10_LAYERS) == {"fp16": 1, "fp32": 1}  # Reformat not counted
    assert info.layer_precisions(TRT11_LAYERS) == {"fp16": 1, "bf16": 1}  # NoOp not counted
    assert info.layer_precisions(["conv1", "gemm"]) == {"unknown": 2}  # not built DETAILED
    report = info.builder_layers([("INFO", "Engine generation completed"), ("VERBOSE", RTX_REPORT)])
    assert [layer["Name"] for layer in report] == [
        "__mye4202_0_myl0_0", "Conv.0_myl0_2", "__myl_FcAddCast_myl0_133"]
    assert info.layer_precisions(report) == {"fp16": 1, "fp32": 1}  # the shape call is not compute
    assert info.engine_precision({"fp16": 1, "fp32": 1}) == "mixed"
    assert info.engine_precision({"fp16": 3, "int32": 1}) == "fp16"
    assert info.engine_precision({"fp32": 3}) == "fp32"
    assert info.engine_precision({"unknown": 2}) == "unknown"
    assert info.decisive({"inspector": None, "builder": {"fp16": 2}, "network": {"fp32": 9}}) == \
        ("builder", {"fp16": 2})
    assert info.decisive({"builder": None, "network": {"fp32": 9}}) == ("network", {"fp32": 9})


def test_fp16_request_with_an_fp32_engine_is_an_error(tmp_path):
    engine = tmp_path / "model.engine"
    info.check_precision("fp16", {"fp16": 1, "fp32": 9}, engine)  # mixed is FP16 at work
    info.check_precision("fp32", {"fp32": 9}, engine)
    for counts in ({"fp32": 9}, {"unknown": 4}, {}):
        with pytest.raises(EngineBuildError) as caught:
            info.check_precision("fp16", counts, engine)
        assert caught.value.exit_code == 1 and "no FP16 layers" in str(caught.value)


# -- backends ------------------------------------------------------------------------------------
def test_auto_picks_the_backend_that_can_build(monkeypatch):
    def only(*names):
        monkeypatch.setattr(backends.Backend, "build_reason",
                            lambda self: None if self.name in names else f"{self.title} missing")

    only("tensorrt", "tensorrt-rtx")
    assert backends.select_backend("auto") is backends.TENSORRT  # full TensorRT first
    only("tensorrt-rtx")
    assert backends.select_backend(None) is backends.TENSORRT_RTX
    with pytest.raises(DependencyError, match="cannot build with TensorRT: TensorRT missing"):
        backends.select_backend("tensorrt")
    only()
    with pytest.raises(DependencyError, match="crossrt\\[trt-rtx\\]|TensorRT-RTX missing"):
        backends.select_backend("auto")
    with pytest.raises(UsageError, match="unknown backend 'trt'"):
        backends.select_backend("trt")


def test_compute_capabilities_and_targets():
    rtx = backends.TENSORRT_RTX
    assert backends.parse_computes("8.6, 8.9,8.6") == ((8, 6), (8, 9))
    for bad in ("86", "8.x", "", ","):
        with pytest.raises(UsageError):
            backends.parse_computes(bad)
    assert rtx.check_targets(((7, 5), (12, 0))) == ((7, 5), (12, 0))
    for data_center in ((9, 0), (10, 0)):
        with pytest.raises(UsageError, match="need full TensorRT"):
            rtx.check_targets((data_center,))
    with pytest.raises(UsageError, match="for TensorRT-RTX"):
        backends.TENSORRT.check_targets(((8, 6),))
    assert rtx.mask_targets(0x7E) == rtx.default_targets  # bit 6 is not a target we know
    assert rtx.mask_targets(0x04) == ((8, 6),)
    h200 = {"name": "NVIDIA H200", "compute_capability": "9.0"}
    if rtx.installed_reason() is None:
        assert "use full TensorRT" in rtx.run_reason(h200)
        assert "--computeCapabilities 7.5" in rtx.run_reason({"name": "Tesla T4",
                                                              "compute_capability": "7.5"})
        assert rtx.run_reason({"name": "RTX A6000", "compute_capability": "8.6"}) is None


# -- real builds: TensorRT-RTX, no GPU needed ------------------------------------------------------
needs_rtx = pytest.mark.skipif(backends.TENSORRT_RTX.build_reason() is not None,
                               reason=str(backends.TENSORRT_RTX.build_reason()))


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EfficientNetB0_small exported without its FP16 graph (the FP16 build converts it)."""
    from exporter.export import export_onnx

    return export_onnx("EfficientNetB0_small",
                       out_dir=tmp_path_factory.mktemp("small") / "B0s").path


@pytest.fixture(scope="module")
def rtx_builds(small_export, b0_export, tmp_path_factory):
    """Both models in both precisions, through the CLI, with the spec's batch 1/4/8 profile."""
    import crossrt

    out = tmp_path_factory.mktemp("engines")
    built = {}
    for model, graph in (("EfficientNetB0_small", small_export / "model.onnx"),
                         ("EfficientNetB0", b0_export.onnx_path)):
        for fp16 in (False, True):
            engine = out / f"{model}{'.fp16' if fp16 else ''}.engine"
            argv = ["build-engine", "--onnx", str(graph), "--saveEngine", str(engine)]
            assert crossrt.main(argv + ["--fp16"] * fp16) == 0
            built[model, fp16] = engine
    return built


@needs_rtx
@pytest.mark.slow
@pytest.mark.parametrize("model", ["EfficientNetB0_small", "EfficientNetB0"])
@pytest.mark.parametrize("fp16", [False, True])
def test_rtx_build_is_real_and_its_precision_proven(rtx_builds, model, fp16):

    engine = rtx_builds[model, fp16]
    sidecar = info.read_sidecar(engine)
    assert engine.read_bytes()[:4] == b"vtrt"
    assert sidecar["backend"] == "tensorrt-rtx"
    assert sidecar["tensorrt_version"] == backends.TENSORRT_RTX.version()
    assert sidecar["targets"] == ["8.0", "8.6", "8.9", "12.0", "12.1"]
    assert sidecar["profiles"] == [{"x": {"min": [1, *get_spec(model).input_shape],
                                          "opt": [4, *get_spec(model).input_shape],
                                          "max": [8, *get_spec(model).input_shape]}}]
    build = sidecar["build"]
    assert (build["plan_bytes"] == engine.stat().st_size
            and build["plan_sha256"] == sha256_file(engine))
    assert build["seconds"] > 0 and build["peak_rss_mb"] > 100
    onnx = Path(sidecar["onnx"]["path"])
    assert onnx.name == ("model.fp16.onnx" if fp16 else "model.onnx")
    assert sidecar["onnx"]["sha256"] == sha256_file(onnx)
    assert sidecar["onnx"]["manifest"]["model"] == model
    precision = sidecar["precision"]
    assert precision["requested"] == ("fp16" if fp16 else "fp32")
    assert precision["source"] == "builder"  # no GPU: the builder's own layer report
    layers, network = precision["layers"], precision["evidence"]["network"]
    if fp16:
        assert precision["fp16_share"] == info.fp16_share(layers) > 0.8
        assert network["fp16"] > network.get("fp32", 0)
    else:
        assert layers.get("fp16", 0) == 0 and network.get("fp16", 0) == 0 and layers["fp32"] > 10
    assert "GPU" in sidecar["inference_check"]["skipped"]  # runs only where a GPU is a target
    assert info.check_loadable(engine, sidecar, {"tensorrt-rtx": sidecar["tensorrt_version"]},
                               {"name": "RTX A6000", "compute_capability": "8.6"}
                               ) is backends.TENSORRT_RTX


@needs_rtx
@pytest.mark.slow
def test_fp16_plans_are_smaller_and_the_fp16_graph_was_converted(rtx_builds, small_export):
    for model in ("EfficientNetB0_small", "EfficientNetB0"):
        assert (rtx_builds[model, True].stat().st_size
                < 0.75 * rtx_builds[model, False].stat().st_size)
    assert (small_export / "model.fp16.onnx").is_file()  # made on the fly for the FP16 build
    from core.layout import ExportDir

    export = ExportDir(small_export)  # still all crossrt's own: --force may replace it
    assert export.foreign_entries(export.manifest()) == []


@needs_rtx
@pytest.mark.slow
def test_cli_summary_names_backend_size_and_layer_counts(small_export, tmp_path, capsys):
    import crossrt

    engine = tmp_path / "t.engine"
    assert crossrt.main(["build-engine", "--onnx", str(small_export / "model.onnx"), "--fp16",
                         "--saveEngine", str(engine), "--computeCapabilities", "8.6",
                         "--memPoolSize", "workspace:512", "--builderOptimizationLevel", "2"]) == 0
    out = capsys.readouterr().out
    sidecar = info.read_sidecar(engine)
    counts = sidecar["precision"]["layers"]
    assert f"tensorrt-rtx {backends.TENSORRT_RTX.version()}" in out
    assert f"{counts['fp16']} fp16 / {counts.get('fp32', 0)} fp32 layers" in out
    assert "compute capability 8.6" in out and engine.read_bytes()[32] == 0x04
    assert sidecar["targets"] == ["8.6"] and sidecar["builder_options"]["memory_pools"] == {
        "workspace": 512 * MiB} and sidecar["builder_options"]["builder_optimization_level"] == 2


@needs_rtx
@pytest.mark.slow
def test_engine_is_reused_while_its_graph_is_unchanged(tmp_path):
    onnx = write_tiny_onnx(tmp_path / "model.onnx")
    path, first, reused = eng.ensure_engine(onnx, fp16=False)
    assert not reused and path == tmp_path / "model.engine"
    again, second, reused = eng.ensure_engine(onnx, fp16=False)
    assert reused and again == path and second == first
    write_tiny_onnx(onnx, seed=1)  # new weights: the cached plan is stale
    assert eng.cached_engine(onnx, fp16=False) is None
    _, third, reused = eng.ensure_engine(onnx, fp16=False)
    assert not reused and third["onnx"]["sha256"] != first["onnx"]["sha256"]
    path.write_bytes(path.read_bytes()[:-100])  # a truncated plan is never reused
    assert eng.cached_engine(onnx, fp16=False) is None
    _, fourth, reused = eng.ensure_engine(onnx, fp16=False)
    assert not reused and path.stat().st_size == fourth["build"]["plan_bytes"]


@needs_rtx
def test_an_export_edited_since_export_is_built_as_it_is_and_said_so(b0_export, tmp_path,
                                                                     caplog):
    import logging

    copy = Path(shutil.copytree(b0_export.path, tmp_path / "copy"))
    graph = onnx.load(str(copy / "model.onnx"))
    graph.producer_name = "edited by hand"
    onnx.save(graph, str(copy / "model.onnx"))
    logger = logging.getLogger("crossrt")  # the CLI's tests may have stopped its propagation
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="crossrt"):
            sidecar = eng.build_engine(eng.EngineRequest(copy / "model.onnx",
                                                         tmp_path / "e.plan"))
    finally:
        logger.removeHandler(caplog.handler)
    assert sidecar["onnx"]["manifest"]["edited_since_export"] is True
    assert any("no longer matches the manifest's sha256" in r.message for r in caplog.records)


# -- sidecar and loading ---------------------------------------------------------------------------
GPU_H200 = {"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0", "driver": "12.8"}
GPU_T4 = {"index": 0, "name": "Tesla T4", "compute_capability": "7.5", "driver": "12.2"}
GPU_A6000 = {"index": 0, "name": "NVIDIA RTX A6000", "compute_capability": "8.6", "driver": "13.0"}


def _plan(path: Path, magic: bytes, version: bytes = b"\x01\x07\x01", mask: int = 0x7E) -> Path:
    header = bytearray(64)
    header[:4], header[24:27], header[32] = magic, version, mask
    path.write_bytes(bytes(header) + b"\0" * 64)
    return path


def test_plans_that_cannot_load_here_are_refused_before_deserialising(tmp_path):
    rtx = _plan(tmp_path / "rtx.engine", b"vtrt")
    only_full = {"tensorrt": "10.13.0.35", "tensorrt-rtx": None}
    with pytest.raises(DependencyError, match="TensorRT-RTX plan, which TensorRT cannot load"):
        info.check_loadable(rtx, None, only_full, GPU_A6000)
    both = {"tensorrt": "10.13.0.35", "tensorrt-rtx": "1.7.1.116"}
    assert info.check_loadable(rtx, None, both, GPU_A6000) is backends.TENSORRT_RTX
    with pytest.raises(UsageError, match="H200 has compute capability 9.0.*use full TensorRT"):
        info.check_loadable(rtx, None, both, GPU_H200)
    with pytest.raises(UsageError, match="7.5.*rebuild with --computeCapabilities 7.5"):
        info.check_loadable(rtx, None, both, GPU_T4)
    with pytest.raises(UsageError, match="built by TensorRT-RTX 1.6.0 .*has 1.7.1.116"):
        info.check_loadable(_plan(tmp_path / "old.engine", b"vtrt", b"\x01\x06\x00"), None, both,
                            GPU_A6000)
    with pytest.raises(DependencyError, match="needs a GPU"):
        info.check_loadable(rtx, None, both, None)
    full = _plan(tmp_path / "full.engine", b"ftrt")
    with pytest.raises(DependencyError, match="TensorRT plan, which TensorRT-RTX cannot load"):
        info.check_loadable(full, None, {"tensorrt": None, "tensorrt-rtx": "1.7.1.116"}, GPU_H200)
    as_built = {"build": {"plan_bytes": full.stat().st_size, "plan_sha256": sha256_file(full)}}
    built_on_h200 = {"backend": "tensorrt", "tensorrt_version": "10.13.0.35", "gpu": GPU_H200,
                     **as_built}
    assert info.check_loadable(full, built_on_h200, both, GPU_H200) is backends.TENSORRT
    full.write_bytes(full.read_bytes()[:-8])  # truncated: refused before deserialising
    with pytest.raises(UsageError, match="not the plan its sidecar describes: it has 120 bytes"):
        info.check_loadable(full, built_on_h200, both, GPU_H200)
    full = _plan(tmp_path / "full.engine", b"ftrt")
    with pytest.raises(UsageError, match="compute capability 9.0.*Tesla T4 with 7.5"):
        info.check_loadable(full, built_on_h200, both, GPU_T4)
    with pytest.raises(UsageError, match="TensorRT 10.13.0.35 .*has 10.8.0.43"):
        info.check_loadable(full, built_on_h200, {"tensorrt": "10.8.0.43"}, GPU_H200)
    with pytest.raises(UsageError, match="sidecar says tensorrt-rtx"):
        info.check_loadable(full, {"backend": "tensorrt-rtx", **as_built}, both, GPU_H200)
    onnx = write_tiny_onnx(tmp_path / "model.onnx")
    with pytest.raises(UsageError, match="is not a TensorRT engine"):
        info.check_loadable(onnx, None, both, GPU_H200)
    (tmp_path / "full.engine.json").write_text("{not json")
    with pytest.raises(UsageError, match="sidecar"):
        info.read_sidecar(full)


def test_build_checks_its_arguments_before_tensorrt(tiny_onnx, tmp_path):
    engine = tmp_path / "model.engine"
    def build(onnx, **flags):
        return eng.build_engine(eng.EngineRequest.from_trtexec(onnx, engine, **flags))

    with pytest.raises(UsageError, match="does not exist"):
        build(tmp_path / "missing.onnx")
    with pytest.raises(UsageError, match="0..5"):
        build(tiny_onnx, builder_optimization_level=7)
    with pytest.raises(UsageError, match="not an input"):
        build(tiny_onnx, opt_shapes="y:1x3x32x32")
    with pytest.raises(UsageError, match="bad --memPoolSize"):
        build(tiny_onnx, mem_pool_size="workspac:1G")
    with pytest.raises(UsageError, match="unknown backend"):
        build(tiny_onnx, backend="onnxruntime")
    assert not engine.exists()


# -- running engines (a GPU the plan targets) ------------------------------------------------------
needs_tensorrt = pytest.mark.skipif(not runtimes.is_available("tensorrt")[0],
                                    reason=runtimes.is_available("tensorrt")[1])


@pytest.mark.trt
@needs_tensorrt
@pytest.mark.parametrize("fp16", [False, True])
def test_real_build_runs_and_matches_onnxruntime(tiny_onnx, tmp_path, fp16):
    engine = tmp_path / ("model.fp16.engine" if fp16 else "model.engine")
    first = eng.build_engine(eng.EngineRequest.from_trtexec(
        tiny_onnx, engine, fp16=fp16, min_shapes="x:1x3x32x32", opt_shapes="x:4x3x32x32",
        max_shapes="x:8x3x32x32"))
    assert engine.is_file() and info.read_sidecar(engine) == json.loads(json.dumps(first))
    assert first["precision"]["engine"] in (("fp16", "mixed") if fp16 else ("fp32",))
    assert first["inference_check"]["finite"]
    feed = {"x": np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)}
    with runtimes.create_runner("tensorrt", engine) as trt_runner, \
            runtimes.create_runner("onnxruntime", tiny_onnx) as ort_runner:
        got, want = trt_runner.infer(feed)["logits"], ort_runner.infer(feed)["logits"]
        np.testing.assert_allclose(got, want, atol=5e-2 if fp16 else 1e-3)
        with pytest.raises(UsageError, match="from 1x3x32x32 to 8x3x32x32"):
            trt_runner.infer({"x": np.zeros((9, 3, 32, 32), np.float32)})


@pytest.mark.trt
@pytest.mark.skipif(backends.TENSORRT.build_reason() is not None,
                    reason=str(backends.TENSORRT.build_reason()))
def test_full_tensorrt_timing_cache_is_reused(tiny_onnx, tmp_path):
    cache = tmp_path / "timing.cache"
    for name in ("a", "b"):
        second = eng.build_engine(eng.EngineRequest(tiny_onnx, tmp_path / f"{name}.engine",
                                                    timing_cache=cache, backend="tensorrt"))
    assert cache.is_file() and second["builder_options"]["timing_cache"]["reused"]
