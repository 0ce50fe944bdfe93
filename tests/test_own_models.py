"""Bring your own model: Paddle classifiers outside the 14, as PaddleClas and PaddleX export them.

Two hold-out architectures (tests/holdout.py) with heads of 10 and 3 classes, one given the
``inference.yml`` PaddleClas's own ``dump_infer_config`` writes (PIR program, resize_short,
bicubic OpenCV, Softmax), one PaddleX's (legacy .pdmodel, the whole image resized with Pillow's
BICUBIC, logits), go through the CLI: export, validate, accuracy on a class-subset dataset named
by class, bench. Every expected figure is computed here: the preprocessing with OpenCV/Pillow
directly, the model's outputs by Paddle Inference's own predictor and a bare ONNX Runtime session.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import holdout
import numpy as np
import onnxruntime as ort
import pytest
import yaml
from PIL import Image

import crossrt
import runtimes
from core.layout import ExportDir
from core.preprocess import bundled_photos, preprocess
from exporter.inference_yml import spec_from_folder
from exporter.specs import spec_of
from runtimes.trt_backends import TENSORRT_RTX
from validation.artifacts import bare_file

pytestmark = pytest.mark.slow  # each export runs Paddle, paddle2onnx and onnxsim for real


@pytest.fixture(scope="module")
def flowers(tmp_path_factory) -> tuple[Path, Path]:
    """(the PaddleClas inference model, its export by ``crossrt export-onnx PATH --fp16``)."""
    root = tmp_path_factory.mktemp("flowers")
    model = holdout.paddleclas_flowers(root / "flowers_infer")
    assert crossrt.main(["export-onnx", str(model), "--out", str(root / "export"), "--fp16"]) == 0
    return model, root / "export"


@pytest.fixture(scope="module")
def defects(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("defects")
    model = holdout.paddlex_defects(root / "defects_infer")
    assert crossrt.main(["export-onnx", str(model), "--out", str(root / "export")]) == 0
    return model, root / "export"


def onnx_outputs(export: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


def paddle_outputs(model: Path, batch: np.ndarray) -> np.ndarray:
    """Paddle Inference's own predictor on the program as saved (PIR or legacy)."""
    from paddle import inference

    program = next(model / f"inference{s}" for s in (".json", ".pdmodel")
                   if (model / f"inference{s}").is_file())
    config = inference.Config(str(program), str(model / "inference.pdiparams"))
    config.disable_gpu()
    predictor = inference.create_predictor(config)
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(batch)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def test_paddleclas_export_records_the_models_own_spec(flowers):
    model, export = flowers
    manifest = ExportDir(export).manifest()
    spec = spec_of(manifest)
    assert (spec.custom, spec.num_classes, spec.labels) == (True, 10, tuple(holdout.FLOWERS))
    assert (spec.resize_short, spec.crop_size, spec.interpolation) == (72, 64, "cubic")
    assert spec.output_name == "probabilities"  # PaddleClas's export appends a Softmax
    assert manifest["outputs"] == [{"name": "probabilities", "dtype": "float32",
                                    "shape": ["batch", 10]}]
    assert manifest["check"]["passed"] and manifest["fp16"]["top1_agreement_photos"] == 1.0
    # The preprocessing is PaddleClas's, as its yml says: short side 72 (bicubic), crop 64
    name, photo = bundled_photos()[0]
    h, w = photo.shape[:2]
    scale = 72 / min(h, w)
    resized = cv2.resize(photo, (round(w * scale), round(h * scale)),
                         interpolation=cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - 64) // 2, (resized.shape[1] - 64) // 2
    crop = resized[top:top + 64, left:left + 64].astype(np.float32) / 255
    expected = ((crop - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    ours = preprocess(photo, spec)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    # and the graph computes what Paddle's own loader computes, on every photograph
    batch = np.stack([preprocess(p, spec) for _, p in bundled_photos()])
    np.testing.assert_allclose(onnx_outputs(export, batch), paddle_outputs(model, batch),
                               atol=1e-5)


def test_paddlex_vocabulary_and_a_legacy_program(defects):
    model, export = defects
    assert (model / "inference.pdmodel").is_file()
    spec = spec_of(ExportDir(export).manifest())
    assert spec.name == "PP-TinyResNet_defects"  # PaddleX's Global.model_name
    assert (spec.num_classes, spec.labels, spec.output_name) == (3, ("scratch", "dent", "clean"),
                                                                 "logits")
    assert (spec.resize_to, spec.resize_backend, spec.interpolation) == (48, "pil", "cubic")
    _, photo = bundled_photos()[1]
    pil = np.asarray(Image.fromarray(photo).resize((48, 48), Image.Resampling.BICUBIC))
    expected = ((pil.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess(photo, spec), expected, atol=1e-5)
    batch = np.stack([preprocess(p, spec) for _, p in bundled_photos()])
    np.testing.assert_allclose(onnx_outputs(export, batch), paddle_outputs(model, batch),
                               rtol=1e-4, atol=1e-4)


def test_validate_reads_the_spec_from_the_export_and_names_classes(flowers, tmp_path, capsys):
    model, export = flowers
    moved = tmp_path / "elsewhere"
    shutil.copytree(export, moved)  # the original Paddle folder plays no part any more
    report = tmp_path / "report.json"
    code = crossrt.main(["validate", str(moved), "--runtimes", "onnxruntime,onnxruntime-fp16",
                         "--atol", "1e-3", "--json", str(report)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["model"] == "flowers_infer" and data["passed"]
    assert {c["runtime"] for c in data["comparisons"]} == {"onnxruntime", "onnxruntime-fp16"}
    batch = np.stack([preprocess(p, spec_from_folder(model)) for _, p in bundled_photos()])
    expected = onnx_outputs(export, batch)
    assert [p["class"] for p in data["predictions"]] == \
        [holdout.FLOWERS[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([p["probability"] for p in data["predictions"]],
                               expected.max(1), atol=1e-5)


def test_accuracy_on_class_folders_named_by_class_a_subset(flowers, tmp_path):
    """ImageNette-style: only the classes present, each folder named after its class."""
    model, export = flowers
    spec = spec_from_folder(model)
    photos = bundled_photos()
    predicted = onnx_outputs(export, np.stack([preprocess(p, spec) for _, p in photos])).argmax(1)
    dataset = tmp_path / "flowers"
    for (name, photo), label in zip(photos, predicted):
        folder = dataset / holdout.FLOWERS[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{name}.png"), photo[:, :, ::-1])
    wrong = next(c for c in holdout.FLOWERS if c not in {holdout.FLOWERS[i] for i in predicted})
    (dataset / wrong).mkdir()
    cv2.imwrite(str(dataset / wrong / "mislabelled.png"), photos[0][1][:, :, ::-1])
    report = tmp_path / "accuracy.json"
    code = crossrt.main(["accuracy", str(export), "--dataset", str(dataset), "--reference",
                         "onnxruntime", "--runtimes", "onnxruntime", "--json", str(report)])
    data = json.loads(report.read_text())
    assert code == 0 and data["dataset"]["evaluated"] == len(photos) + 1
    result = data["results"][0]
    assert (result["images"], result["top1_correct"]) == (len(photos) + 1, len(photos))


def test_bench_times_an_export_folder_and_says_where_it_wrote(defects, tmp_path, capsys):
    _, export = defects
    results = tmp_path / "bench"
    code = crossrt.main(["bench", str(export), "--runtimes", "onnxruntime", "--precision", "fp32",
                         "--batch-sizes", "1,2",
                         "--duration-s", "0.05", "--min-iterations", "3", "--warmup-ms", "10",
                         "--results", str(results)])
    out = capsys.readouterr().out
    assert code == 0 and f"results: {results}" in out
    data = json.loads((results / "bench.json").read_text())
    cells = [(r["model"], r["runtime"], r["precision"], r["batch_size"]) for r in data["records"]]
    assert cells == [("PP-TinyResNet_defects", "onnxruntime", "fp32", 1),
                     ("PP-TinyResNet_defects", "onnxruntime", "fp32", 2)]
    assert all(r["latency_ms"]["median"] > 0 for r in data["records"])
    assert "PP-TinyResNet_defects" in (results / "bench.md").read_text()


BAD_YML = {
    "an op crossrt does not run": (
        lambda c: c["PreProcess"]["transform_ops"].insert(0, {"RandCropImage": {"size": 64}}),
        "transform_ops[0] is RandCropImage"),
    "a random interpolation": (
        lambda c: c["PreProcess"]["transform_ops"][0]["ResizeImage"].update(
            interpolation="random"), "ResizeImage.interpolation 'random'"),
    "an unknown parameter": (
        lambda c: c["PreProcess"]["transform_ops"][1]["CropImage"].update(pad=2),
        "CropImage.pad"),
    "a crop that is not the program's input": (
        lambda c: c["PreProcess"]["transform_ops"][1]["CropImage"].update(size=96),
        "takes 64x64; fix CropImage.size"),
    "no NormalizeImage": (
        lambda c: c["PreProcess"]["transform_ops"].pop(2), "has no NormalizeImage"),
    "a non-square size": (
        lambda c: c["PreProcess"]["transform_ops"][1]["CropImage"].update(size=[64, 48]),
        "CropImage.size [64, 48] is not square"),
    "a label list of another model": (
        lambda c: c["PostProcess"]["Topk"].update(label_list=["a", "b"]),
        "label list names 2 classes but the program gives 10"),
}


@pytest.mark.parametrize("case", list(BAD_YML))
def test_a_bad_inference_yml_is_one_line_naming_the_key(flowers, tmp_path, capsys, case):
    model, _ = flowers
    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    config = yaml.safe_load((model / "inference.yml").read_text())
    edit, fragment = BAD_YML[case]
    edit(config)
    (broken / "inference.yml").write_text(yaml.safe_dump(config))
    code = crossrt.main(["export-onnx", str(broken), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and fragment in err[-1] and err[-1].startswith("crossrt export-onnx: error:")
    assert not (tmp_path / "out").exists()


def test_a_legacy_yml_pointing_to_paddleclas_unshipped_label_file(flowers, tmp_path):
    """PaddleClas's older exports copy a deploy yml whose Topk.class_id_map_file is a relative
    path into PaddleClas's tree (never shipped with the model): ImageNet-1k's bundled list."""
    model, _ = flowers
    legacy = tmp_path / "legacy"
    shutil.copytree(model, legacy)
    config = yaml.safe_load((model / "inference.yml").read_text())
    config["PostProcess"] = {"main_indicator": "Topk", "Topk": {
        "topk": 5, "class_id_map_file": "../ppcls/utils/imagenet1k_label_list.txt"},
        "SavePreLabel": {"save_dir": "./pre_label/"}}
    config["Global"] = {"infer_imgs": "./images", "batch_size": 1, "use_gpu": True}
    (legacy / "inference.yml").write_text(yaml.safe_dump(config))
    spec = spec_from_folder(legacy)
    assert (spec.name, spec.num_classes, spec.labels) == ("legacy", 1000, ())
    assert spec.class_names()[0] == "tench, Tinca tinca" and len(spec.class_names()) == 1000


# --- bare files: an .onnx graph or an engine plan as the target -----------------------------

def bare_copy(export: Path, folder: Path) -> tuple[Path, Path]:
    """The export's two graphs copied where no manifest or inference.yml says what they are."""
    folder.mkdir()
    return (Path(shutil.copy(export / "model.onnx", folder / "flowers.onnx")),
            Path(shutil.copy(export / "model.fp16.onnx", folder / "flowers.fp16.onnx")))


def test_a_bare_onnx_file_against_another_then_replayed_by_polygraphy(flowers, tmp_path, capsys):
    _, export = flowers
    fp32, fp16 = bare_copy(export, tmp_path / "bare")
    saved, report = tmp_path / "outs.json", tmp_path / "report.json"
    code = crossrt.main(["validate", str(fp32), "--compare", str(fp16), "--save-outputs",
                         str(saved), "--json", str(report)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert [(c["runtime"], c["passed"]) for c in data["comparisons"]] == \
        [("onnxruntime-fp16 (flowers.fp16.onnx)", True)] * 2  # FP16 weights: FP16 tolerances
    assert data["reference"] == "onnxruntime" and data["weights"]["kind"] == "file"
    assert any("preprocessing unknown" in w and "8 random inputs only" in w
               for w in data["warnings"])
    # the inputs beside the outputs: Polygraphy replays them and agrees
    inputs = tmp_path / "outs.inputs.json"
    from polygraphy.json import load_json

    feeds = load_json(str(inputs))
    assert [feed["x"].shape for feed in feeds] == [(1, 3, 64, 64)] * 8 + [(4, 3, 64, 64)] * 2
    ours = onnx_outputs(export, np.concatenate([f["x"] for f in feeds[:8]]))
    from validation.results import load_results

    np.testing.assert_array_equal(np.concatenate(
        [o["probabilities"] for o in load_results(saved).run("onnxruntime").outputs[:8]]), ours)
    # Polygraphy replays a run of the graph alone (it compares with every run in the file):
    # here the photographs, against Paddle's golden outputs that the export holds
    alone = tmp_path / "alone.json"
    code = crossrt.main(["validate", str(fp32), "--spec", str(export), "--load-outputs",
                         str(export / "reference.npz"), "--save-outputs", str(alone)])
    assert code == 0, capsys.readouterr().err
    polygraphy = Path(sys.executable).with_name("polygraphy")  # its console script
    done = subprocess.run([str(polygraphy), "run", str(fp32), "--onnxrt", "--load-inputs",
                           str(tmp_path / "alone.inputs.json"), "--load-outputs", str(alone),
                           "--atol", "1e-6", "--rtol", "1e-6"], capture_output=True, text=True)
    assert done.returncode == 0 and "PASSED" in done.stdout + done.stderr, done.stdout[-2000:]
    # and crossrt reads them back as the inputs
    code = crossrt.main(["validate", str(fp32), "--load-inputs", str(inputs), "--compare",
                         str(fp16), "--json", str(report)])
    data = json.loads(report.read_text())
    assert code == 0 and data["comparisons"][0]["top1_samples"] == 8 + 2 * 4
    assert data["predictions"] == [] and data["inputs"]["photos"] == []  # no photograph here
    assert not any("preprocessing unknown" in w for w in data["warnings"])


def test_a_bare_file_fed_photographs_through_spec(flowers, tmp_path, capsys):
    model, export = flowers
    fp32, fp16 = bare_copy(export, tmp_path / "bare")
    report = tmp_path / "report.json"
    code = crossrt.main(["validate", str(fp32), "--spec", str(model / "inference.yml"),
                         "--compare", str(fp16), "--json", str(report)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert [p["input"] for p in data["predictions"]] == [n for n, _ in bundled_photos()]
    assert all(p["class"] in holdout.FLOWERS for p in data["predictions"])
    # accuracy needs the preprocessing: refused without one, run with --spec
    dataset = tmp_path / "data" / "rose"
    dataset.mkdir(parents=True)
    cv2.imwrite(str(dataset / "a.png"), bundled_photos()[0][1])
    code = crossrt.main(["accuracy", str(fp32), "--dataset", str(dataset.parent)])
    assert code == 2 and "preprocessing is unknown" in capsys.readouterr().err
    code = crossrt.main(["accuracy", str(fp32), "--spec", str(model), "--dataset",
                         str(dataset.parent), "--json", str(tmp_path / "accuracy.json")])
    assert code == 0
    assert json.loads((tmp_path / "accuracy.json").read_text())["results"][0]["images"] == 1


BAD_BARE = {
    "FP16 of a file that runs as it is": (["--fp16"], "runs as it is"),
    "a non-square --shapes": (["--shapes", "x:1x3x64x48"], "square RGB inputs"),
    "--shapes naming another input": (["--shapes", "image:1x3x64x64"], "input is 'x'"),
    "a --spec of another size": (["--spec", "EfficientNetB0"], "takes 64x64 inputs but"),
    "--compare with another model's input": (["--compare", "B0"], "compare models of one input"),
    "a runtime that runs no graphs": (["--runtimes", "paddle"], "runtime paddle does not run"),
}


@pytest.mark.parametrize("case", list(BAD_BARE))
def test_bad_bare_file_requests_are_one_line_exit_2(flowers, defects, tmp_path, capsys, case):
    _, export = flowers
    fp32, _ = bare_copy(export, tmp_path / "bare")
    argv, fragment = BAD_BARE[case]
    argv = [str(defects[1] / "model.onnx") if a == "B0" else a for a in argv]
    code = crossrt.main(["validate", str(fp32), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and fragment in err[-1] and err[-1].startswith("crossrt validate: error:"), err


def test_bench_times_a_bare_file_at_its_own_precision(flowers, tmp_path, capsys):
    _, export = flowers
    _, fp16 = bare_copy(export, tmp_path / "bare")
    quick = ["--runtimes", "onnxruntime", "--batch-sizes", "1", "--duration-s", "0.05",
             "--min-iterations", "3", "--warmup-ms", "10", "--results", str(tmp_path / "b")]
    assert crossrt.main(["bench", str(fp16), "--precision", "fp32", *quick]) == 2
    assert "runs as it is, at FP16" in capsys.readouterr().err
    assert crossrt.main(["bench", str(fp16), *quick]) == 0
    records = json.loads((tmp_path / "b" / "bench.json").read_text())["records"]
    assert [(r["model"], r["precision"], r["status"]) for r in records] == \
        [("flowers.fp16", "fp16", "ok")]  # no manifest beside it: named by the file


@pytest.mark.skipif(TENSORRT_RTX.build_reason() is not None,
                    reason=str(TENSORRT_RTX.build_reason()))
def test_a_plan_built_elsewhere_is_validated_by_path(flowers, tmp_path, capsys):
    """build-engine --saveEngine writes a plan anywhere; validate takes it by path, its input
    and preprocessing known from its sidecar and the export it was built from."""
    _, export = flowers
    plan = tmp_path / "plans" / "flowers.plan"
    plan.parent.mkdir()
    assert crossrt.main(["build-engine", "--onnx", str(export / "model.onnx"), "--saveEngine",
                         str(plan)]) == 0
    saved = tmp_path / "onnx.json"
    assert crossrt.main(["validate", str(export / "model.onnx"), "--compare",
                         str(export / "model.fp16.onnx"), "--save-outputs", str(saved)]) == 0
    bare = bare_file(plan)
    assert bare is not None and bare.kinds() == ["tensorrt"]
    assert (bare.spec.name, bare.spec.crop_size, bare.preprocessing) == \
        ("flowers_infer", 64, f"the export {export}")
    capsys.readouterr()
    code = crossrt.main(["validate", str(plan), "--load-outputs", str(saved)])
    if not runtimes.is_available("tensorrt")[0]:  # the run needs a GPU; all else ran
        assert code == 2 and "runtime tensorrt is not available" in capsys.readouterr().err
        pytest.skip(f"the plan runs on a GPU: {runtimes.is_available('tensorrt')[1]}")
    assert code == 0, capsys.readouterr()
