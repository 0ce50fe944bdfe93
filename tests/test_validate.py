"""validate on a real EfficientNetB0 export: PASS when clean, FAIL with a useful message for
every planted fault (graph faults live, preprocessing faults through saved outputs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import crossrt
from core.preprocess import load_images, preprocess
from exporter.specs import get_spec
from validation.report import summary
from validation.results import SavedIteration, SavedResults, SavedRun, save_results
from validation.validate import validate

SPEC = get_spec("EfficientNetB0")
FAST = {"runtimes": ["onnxruntime"], "batch_sizes": [4]}


@pytest.fixture()
def edited(b0_export, tmp_path):
    """A copy of the export whose model.onnx a test edits (graph surgery after export)."""
    copy = Path(shutil.copytree(b0_export.path, tmp_path / "B0"))

    def edit(change, name="model.onnx"):
        graph = onnx.load(str(copy / name))
        change(graph)
        onnx.save(graph, str(copy / name))
        return copy
    return edit


def initializer(graph, op_type, index=0):
    """The weight initializer of the index-th node of op_type, as (tensor, array)."""
    node = [n for n in graph.graph.node if n.op_type == op_type][index]
    inits = {t.name: t for t in graph.graph.initializer}
    tensor = next(inits[name] for name in node.input[1:] if name in inits)
    return tensor, numpy_helper.to_array(tensor).copy()


def replace(graph, tensor, array):
    tensor.CopyFrom(numpy_helper.from_array(array.astype(numpy_helper.to_array(tensor).dtype),
                                            tensor.name))


def test_clean_export_passes_and_saves_outputs(b0_export, tmp_path):
    run = validate(b0_export.path, batch_sizes=[1, 4], random=2,
                   save_outputs=tmp_path / "outputs.json")
    assert run.passed and run.context.reference == "paddle"
    assert {(r.runtime, r.batch_size) for r in run.records} == {("onnxruntime", 1),
                                                                ("onnxruntime", 4)}
    assert all(r.result["logits"].max_abs < 1e-4 for r in run.records)
    assert any("SYNTHETIC WEIGHTS" in line for line in
               crossrt_table(run).splitlines()) and not run.context.warnings
    # saved outputs join a later comparison like a live runner, on the same inputs
    again = validate(b0_export.path, batch_sizes=[1, 4], random=2, runtimes=[],
                     load_outputs=[tmp_path / "outputs.json"])
    loaded = [r for r in again.records if "loaded" in r.runtime]
    assert again.passed and {r.batch_size for r in loaded} == {1, 4}
    assert {r.runtime.split(" ")[0] for r in loaded} == {"onnxruntime"}


def crossrt_table(run):
    from validation.report import render_table

    return render_table(run.records, run.context)


def test_perturbed_convolution_fails_and_is_localised(edited):
    def perturb(graph):
        tensor, weight = initializer(graph, "Conv", 10)
        replace(graph, tensor, weight * 1.01)
    run = validate(edited(perturb), **FAST)
    [record] = run.records
    assert not run.passed and "abs error" in record.result.reason
    assert any("no longer matches the manifest" in w for w in run.context.warnings)
    conv = [n for n in onnx.load(str(run.context.target + "/model.onnx")).graph.node
            if n.op_type == "Conv"][10]
    found = record.localization.tensors[0]
    assert conv.name == found.node or any(s.startswith(conv.name + " ") for s in found.suspects)


def test_swapped_activation_fails(edited):
    def swap(graph):
        node = next(n for n in graph.graph.node if n.op_type == "Sigmoid")
        node.op_type = "HardSigmoid"
    run = validate(edited(swap), **FAST)
    assert not run.passed
    record = run.records[0]
    assert record.localization.found
    first = record.localization.tensors[0]
    assert first.op_type == "HardSigmoid" or any("HardSigmoid" in s for s in first.suspects)


def append_to_output(graph, op_type, constants):
    """Route the logits through one more node (op_type of logits and named constants)."""
    out = graph.graph.output[0]
    producer = next(n for n in graph.graph.node if out.name in n.output)
    producer.output[list(producer.output).index(out.name)] = "logits_before"
    graph.graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in constants.items())
    graph.graph.node.append(helper.make_node(op_type, ["logits_before", *constants], [out.name]))
    return out


def test_truncated_output_is_a_shape_mismatch(edited):
    def truncate(graph):
        out = append_to_output(graph, "Slice", {n: np.array(v, np.int64) for n, v in
                                                (("s0", [0]), ("s1", [999]), ("ax", [1]))})
        out.type.tensor_type.shape.dim[1].dim_value = 999
    run = validate(edited(truncate), localize=False, **FAST)
    assert not run.passed and "shape" in run.records[0].result.reason


def test_nan_in_one_output_fails(edited):
    def poison(graph):
        mask = np.zeros((1, 1000), np.float32)
        mask[0, 7] = np.nan
        append_to_output(graph, "Add", {"nan_mask": mask})
    run = validate(edited(poison), localize=False, **FAST)
    assert not run.passed and "NaN" in run.records[0].result.reason


def test_overflowing_fp16_layer_fails(edited):
    def overflow(graph):  # one layer's output scaled past float16's 65504
        conv = [n for n in graph.graph.node if n.op_type == "Conv"][3]
        name = conv.output[0]
        conv.output[0] = "before_overflow"
        graph.graph.initializer.append(numpy_helper.from_array(np.array(3e4, np.float16), "big"))
        nodes = list(graph.graph.node)
        nodes.insert(nodes.index(conv) + 1, helper.make_node("Mul", ["before_overflow", "big"],
                                                             [name]))
        del graph.graph.node[:]
        graph.graph.node.extend(nodes)
    folder = edited(overflow, name="model.fp16.onnx")
    run = validate(folder, fp16=True, batch_sizes=[4])
    fp16 = [r for r in run.records if r.runtime == "onnxruntime-fp16"]
    assert fp16 and not fp16[0].result
    assert [r for r in run.records if r.runtime == "onnxruntime"][0].result
    assert fp16[0].result["logits"].max_abs > 1  # far beyond FP16 rounding
    first = fp16[0].localization.tensors[0]
    assert first.op_type == "Mul" or any("Mul" in s for s in first.suspects)


def deployment_outputs(path, export_dir, bgr=False, **preprocessing):
    """What a deployment with its own preprocessing saves: outputs on its own tensors."""
    photos = load_images()
    names = [name for name, _ in photos]
    batch = np.stack([preprocess(image[:, :, ::-1] if bgr else image, SPEC, **preprocessing)
                      for _, image in photos])
    session = ort.InferenceSession(str(export_dir / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    logits = session.run(None, {"x": batch})[0]
    save_results(path, SavedResults(
        runs=(SavedRun(runner="deployment", outputs=({"logits": logits},)),),
        iterations=(SavedIteration.from_feed({"x": batch}, names),), model=SPEC.name))
    return path


@pytest.mark.parametrize("fault, preprocessing", [
    ("correct", {}),
    ("BGR instead of RGB", {"bgr": True}),
    ("wrong mean/std", {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}),
    ("nearest-neighbour resize", {"interpolation": "nearest"}),
])
def test_preprocessing_faults_against_golden_outputs(b0_export, tmp_path, fault, preprocessing,
                                                      capsys):
    saved = deployment_outputs(tmp_path / "deployment.json", b0_export.path, **preprocessing)
    code = crossrt.main(["validate", str(b0_export.path), "--runtimes", "onnxruntime",
                         "--batch-sizes", "4", "--no-localize", "--load-outputs", str(saved),
                         "--json", str(tmp_path / "report.json")])
    report = json.loads((tmp_path / "report.json").read_text())
    loaded = [r for r in report["comparisons"] if "deployment" in r["runtime"]]
    assert len(loaded) == 1 and loaded[0]["batch"] == 4  # matched all four photos
    if fault == "correct":
        assert code == 0
    else:
        assert code == 1 and "FAIL deployment" in capsys.readouterr().out


def test_golden_reference_npz_joins_as_saved_outputs(b0_export):
    run = validate(b0_export.path, runtimes=[], batch_sizes=[4],
                   load_outputs=[b0_export.path / "reference.npz"])
    [record] = run.records
    assert record.result and "golden" in record.runtime


def test_degenerate_weights_are_flagged(tmp_path):
    import paddle

    from exporter.export import export_onnx
    from exporter.zoo import build_model

    spec = get_spec("EfficientNetB0_small")
    paddle.jit.save(build_model(spec), str(tmp_path / "default" / "inference"),
                    input_spec=[paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")])
    export = export_onnx(spec.name, paddle_model=tmp_path / "default", out_dir=tmp_path / "e")
    run = validate(export.path, **FAST)
    assert run.passed  # everything agrees ...
    assert any("spread" in w or "degenerate" in w for w in run.context.warnings)  # ... trivially


def test_cli_exit_codes(b0_export, edited, capsys):
    assert crossrt.main(["validate", str(b0_export.path), "--atol", "1e-3", "--runtimes",
                         "onnxruntime", "--batch-sizes", "1"]) == 0
    assert "PASS" in capsys.readouterr().out

    def perturb(graph):
        tensor, weight = initializer(graph, "Conv", 5)
        replace(graph, tensor, weight * 1.05)
    assert crossrt.main(["validate", str(edited(perturb)), "--atol", "1e-3", "--runtimes",
                         "onnxruntime", "--batch-sizes", "1", "--no-localize"]) == 1
    capsys.readouterr()
    assert crossrt.main(["validate", str(b0_export.path), "--runtimes", "tensorflow"]) == 2
    assert "unknown runtime 'tensorflow'" in capsys.readouterr().err
    assert crossrt.main(["validate", str(b0_export.path), "--images", "/nonexistent"]) == 2


def test_padding_repeats_are_not_counted_as_samples(b0_export):
    """--batch-sizes 16 with the four photographs: the batch is filled by repeats, but the
    comparison counts the four distinct inputs once each."""
    run = validate(b0_export.path, runtimes=["onnxruntime"], batch_sizes=[16])
    (record,) = run.records
    assert record.result["logits"].reference_shape[0] == 4
    assert summary(record)["top1_samples"] == 4
