"""`crossrt accuracy` on a real EfficientNetB0 export and small labelled datasets built here.

The images are deterministic variations (crops, flips, scales; JPEG and PNG) of the bundled
photographs, labelled by the reference's (Paddle's) own predictions, with a known fifth of
them deliberately wrong. Every expected figure is computed here, independently of the
command: Paddle through its runner, ONNX Runtime through a bare session, top-1/top-5 from
the rank of the label's logit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

import crossrt
import runtimes
from core.errors import UsageError
from core.preprocess import bundled_photos, preprocess, read_image
from exporter.specs import get_spec
from validation.accuracy import evaluate_accuracy
from validation.datasets import load_dataset

SPEC = get_spec("EfficientNetB0")
COUNT = 100  # the 1% rule needs at least 100 images before one may be excluded
ORT_ONLY = ["--reference", "onnxruntime", "--runtimes", "onnxruntime"]


def variations(count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` distinct RGB images: photo i % 4 cropped, flipped and scaled by i // 4."""
    photos = bundled_photos()
    out = []
    for i in range(count):
        name, image = photos[i % len(photos)]
        v = i // len(photos)
        height, width = image.shape[:2]
        keep = (1.0, 0.9, 0.8, 0.7, 0.6)[v % 5]
        h, w = int(height * keep), int(width * keep)
        top, left = ((height - h) * (v // 5 % 3)) // 2, ((width - w) * (v % 3)) // 2
        crop = image[top:top + h, left:left + w]
        if v % 2:
            crop = crop[:, ::-1]
        short = (256, 290, 330)[v % 3]
        scale = short / min(crop.shape[:2])
        crop = cv2.resize(np.ascontiguousarray(crop), (round(crop.shape[1] * scale),
                                                       round(crop.shape[0] * scale)))
        out.append((f"{name}_{v:02d}.{'png' if i % 7 == 0 else 'jpg'}", crop))
    return out


def top1_and_top5(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: top-1 correct, and label within the top 5 (by the rank of its logit)."""
    own = logits[np.arange(len(labels)), labels]
    return logits.argmax(1) == labels, (logits > own[:, None]).sum(1) < 5


@pytest.fixture(scope="module")
def images(b0_export, tmp_path_factory):
    """The images on disk, their Paddle and bare-ONNX-Runtime logits (clean and with the
    channels swapped), and labels: Paddle's top-1, every fifth replaced by a wrong class."""
    folder = tmp_path_factory.mktemp("images")
    names, tensors = [], []
    for name, image in variations(COUNT):
        cv2.imwrite(str(folder / name), image[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 92] if name.endswith(".jpg") else [])
        names.append(name)
        tensors.append(preprocess(read_image(folder / name), SPEC))
    batch = np.stack(tensors)
    with runtimes.create_runner("paddle", b0_export.path) as runner:
        paddle = np.concatenate([runner.infer({"x": batch[i:i + 8]})["logits"]
                                 for i in range(0, COUNT, 8)])
    session = ort.InferenceSession(str(b0_export.path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    onnx = session.run(None, {"x": batch})[0]
    swapped = session.run(None, {"x": np.ascontiguousarray(batch[:, ::-1])})[0]
    labels = paddle.argmax(1)
    order = np.argsort(-paddle, axis=1)
    for i in range(0, COUNT, 5):  # wrong labels: Paddle's 2nd, 5th, 6th or 10th class
        labels[i] = order[i, (1, 4, 5, 9)[i // 5 % 4]]
    assert len(set(labels.tolist())) > 10  # the photographs' variations differ in class
    return {"folder": folder, "names": names, "paddle": paddle, "onnx": onnx,
            "swapped": swapped, "labels": labels}


@pytest.fixture(scope="module")
def list_dataset(images):
    """PaddleClas layout: ``val_list.txt`` beside ``val/``, one name missing on disk."""
    root = images["folder"].parent / "list-dataset"
    (root / "val").mkdir(parents=True)
    lines = []
    for index, (name, label) in enumerate(zip(images["names"], images["labels"])):
        os.link(images["folder"] / name, root / "val" / name)
        lines.append(f"val/{name} {label}")
        if index == 40:
            lines.append("val/not_there.jpg 3")
    (root / "val_list.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def folder_dataset(images):
    """One folder per class, 1000 of them (most empty), images under their label's folder,
    plus one file that is no image at all."""
    root = images["folder"].parent / "folder-dataset"
    classes = [f"n{index:08d}" for index in range(SPEC.num_classes)]
    for name in classes:
        (root / name).mkdir(parents=True)
    for name, label in zip(images["names"], images["labels"]):
        os.link(images["folder"] / name, root / classes[label] / name)
    (root / classes[7] / "broken.jpg").write_bytes(b"not a JPEG at all")
    return root


class Planted:
    """A runner whose every feed goes through ``change`` first: a fault planted in it."""

    def __init__(self, runner, change):
        self.runner, self.change = runner, change

    def __enter__(self):
        self.runner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.runner.__exit__(*exc)

    def infer(self, feed):
        return self.runner.infer(self.change(feed))


def plant(monkeypatch, change, kind=None, made=None):
    """Every runner (or those of ``kind``) made by create_runner gets ``change``; each
    (kind, options) asked for goes into ``made``."""
    real = runtimes.create_runner

    def create(k, target, **options):
        if made is not None:
            made.append((k, options))
        runner = real(k, target, **options)
        return Planted(runner, change) if kind in (None, k) else runner
    monkeypatch.setattr(runtimes, "create_runner", create)
    return real


def run_json(tmp_path, argv, capsys):
    code = crossrt.main(["accuracy", *argv, "--json", str(tmp_path / "report.json")])
    out, err = capsys.readouterr()
    report = json.loads((tmp_path / "report.json").read_text()) if code in (0, 1) else None
    return code, out, err, report


def test_list_layout_figures_equal_an_independent_count(b0_export, images, list_dataset,
                                                        tmp_path, capsys):
    code, out, err, report = run_json(tmp_path, [
        str(b0_export.path), "--dataset", str(list_dataset), "--labels",
        str(list_dataset / "val_list.txt"), "--runtimes", "onnxruntime", "--predictions",
        str(tmp_path / "predictions.jsonl"), "--max-top1-drop", "0", "--min-top1", "0.5"],
        capsys)
    assert code == 0, err
    paddle, onnx = report["results"]
    labels = images["labels"]
    for result, logits in ((paddle, images["paddle"]), (onnx, images["onnx"])):
        top1, top5 = top1_and_top5(logits, labels)
        assert result["images"] == COUNT  # the missing one excluded for both
        assert (result["top1_correct"], result["top5_correct"]) == (top1.sum(), top5.sum())
    assert (paddle["top1"], paddle["top5"]) == (0.8, 0.9)  # the planted wrong labels
    assert (images["onnx"].argmax(1) == images["paddle"].argmax(1)).all()
    assert onnx["top1_agreement"] == 1.0 and onnx["top1_differ"] == 0
    assert report["excluded"] == [{"path": "val/not_there.jpg",
                                   "reason": report["excluded"][0]["reason"]}]
    assert "EXCLUDED 1 missing or unreadable" in out and "val/not_there.jpg" in out
    assert report["synthetic_weights"] and "meaningless" in out
    assert report["published"] == {"top1": 0.774, "top5": 0.933, "ref_top1": 0.773,
                                   "ref_top5": 0.935}
    assert all(line.count("meaningless") == 1 and "0.774 / 0.933" in line
               for line in out.splitlines() if line.startswith(("paddle", "onnxruntime ")))
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text()
            .splitlines()[1:]]
    assert len(rows) == COUNT + 1
    assert not (tmp_path / "predictions.jsonl.partial").exists()


def test_folder_layout_sorted_class_order(b0_export, images, folder_dataset, tmp_path, capsys):
    code, _, err, report = run_json(tmp_path, [
        str(b0_export.path), "--dataset", str(folder_dataset), *ORT_ONLY, "--workers", "3",
        "--batch-size", "5"], capsys)
    assert code == 0, err
    [result] = report["results"]
    top1, top5 = top1_and_top5(images["onnx"], images["labels"])
    assert result["images"] == COUNT
    assert (result["top1_correct"], result["top5_correct"]) == (top1.sum(), top5.sum())
    [excluded] = report["excluded"]  # the file that is no image, listed, excluded
    assert excluded["path"] == "n00000007/broken.jpg" and "cannot read image" in excluded["reason"]
    assert report["dataset"]["layout"] == "folders"


def test_planted_channel_swap_lowers_agreement_and_trips_the_gate(
        b0_export, images, list_dataset, tmp_path, capsys, monkeypatch):
    made = []
    plant(monkeypatch, lambda feed: {k: np.ascontiguousarray(v[:, ::-1])  # BGR fed
                                     for k, v in feed.items()}, kind="onnxruntime", made=made)
    predictions = tmp_path / "predictions.jsonl"
    code, out, err, report = run_json(tmp_path, [
        str(b0_export.path), "--dataset", str(list_dataset), "--labels",
        str(list_dataset / "val_list.txt"), "--runtimes", "onnxruntime", "--limit", "30",
        "--predictions", str(predictions), "--max-top1-drop", "0.002"], capsys)
    assert code == 1 and "--max-top1-drop" in err and len(err.strip().splitlines()[-1]) < 400
    paddle, swapped = report["results"]
    index = {name: i for i, name in enumerate(images["names"])}
    rows = [json.loads(line) for line in predictions.read_text().splitlines()[1:]]
    seen = [index[Path(r["path"]).name] for r in rows if "top5" in r]
    assert len(seen) == swapped["images"] == 30
    expected = images["swapped"][seen].argmax(1)
    assert [r["top5"]["onnxruntime"][0] for r in rows if "top5" in r] == expected.tolist()
    agreed = (expected == images["paddle"][seen].argmax(1)).sum()
    assert swapped["top1_differ"] == 30 - agreed > 0
    assert swapped["top1_agreement"] == agreed / 30 < 1
    top1, _ = top1_and_top5(images["swapped"][seen], images["labels"][seen])
    assert swapped["top1_correct"] == top1.sum() < paddle["top1_correct"]
    assert "FAIL onnxruntime: top-1" in out
    # ONNX Runtime's idle threads wait rather than spin while decoding threads run beside
    assert made == [("paddle", {}), ("onnxruntime", {"spinning": False})]


def test_min_top1_gate(b0_export, list_dataset, tmp_path, capsys):
    code, _, err, report = run_json(tmp_path, [
        str(b0_export.path), "--dataset", str(list_dataset), "--labels",
        str(list_dataset / "val_list.txt"), *ORT_ONLY, "--limit", "20", "--min-top1", "0.95"],
        capsys)
    [result] = report["results"]
    assert code == 1 and result["top1"] < 0.95 and "--min-top1 0.95" in err


def test_resume_after_an_interruption_equals_one_run(b0_export, list_dataset, tmp_path,
                                                     monkeypatch):
    options = {"labels": list_dataset / "val_list.txt", "reference": "onnxruntime",
               "runtimes": ["onnxruntime"], "batch_size": 4, "limit": 40, "workers": 2}
    whole = evaluate_accuracy(b0_export.path, list_dataset,
                              predictions=tmp_path / "whole.jsonl", **options)
    calls = []

    def interrupt_at_the_fourth_batch(feed):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return feed

    real = plant(monkeypatch, interrupt_at_the_fourth_batch)
    predictions = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        evaluate_accuracy(b0_export.path, list_dataset, predictions=predictions, **options)
    partial = predictions.with_name(predictions.name + ".partial")
    assert not predictions.exists() and partial.is_file()  # nothing half-written in place
    with partial.open("a") as handle:
        handle.write('{"index": 99, "pa')  # a row cut short by the kill
    monkeypatch.setattr(runtimes, "create_runner", real)
    resumed = evaluate_accuracy(b0_export.path, list_dataset, predictions=predictions,
                                resume=True, **options)
    assert resumed.resumed == 12 and not partial.exists()  # three batches of four were kept
    assert [r.to_dict() for r in resumed.results] == [r.to_dict() for r in whole.results]
    assert resumed.excluded == whole.excluded
    assert sorted(predictions.read_text().splitlines()) == sorted(
        (tmp_path / "whole.jsonl").read_text().splitlines())
    again = evaluate_accuracy(b0_export.path, list_dataset, predictions=predictions,
                              resume=True, **options)  # a finished run: nothing to redo
    assert again.resumed == 40 and [r.to_dict() for r in again.results] == [
        r.to_dict() for r in whole.results]
    with pytest.raises(UsageError, match="written for another run"):
        evaluate_accuracy(b0_export.path, list_dataset, predictions=predictions, resume=True,
                          **{**options, "limit": 30})


def test_limit_is_an_even_deterministic_spread(folder_dataset):
    full = load_dataset(folder_dataset, num_classes=SPEC.num_classes)
    subset = load_dataset(folder_dataset, num_classes=SPEC.num_classes, limit=10)
    assert [s.index for s in subset.samples] == [i * full.listed // 10 for i in range(10)]
    assert len({s.label for s in subset.samples}) > 5  # spread over classes, not the first
    assert subset == load_dataset(folder_dataset, num_classes=SPEC.num_classes, limit=10)


def write_list(root: Path, lines: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "list.txt").write_text("".join(f"{line}\n" for line in lines))
    return root / "list.txt"


def bad_cases(images: dict, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments after the target, what the one line must say)."""
    good = f"{images['folder'].name}/{images['names'][0]}"
    root = images["folder"].parent
    few = tmp / "few"
    for index in range(5):
        (few / f"class{index}").mkdir(parents=True)
    empty = tmp / "empty"
    for index in range(SPEC.num_classes):
        (empty / f"c{index:04d}").mkdir(parents=True)
    unreadable = tmp / "unreadable"
    unreadable.mkdir()
    os.link(images["folder"] / images["names"][0], unreadable / "good.jpg")
    (unreadable / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    return {
        "malformed line": (["--dataset", str(root), "--labels", str(write_list(
            tmp / "m", [f"{good} 1", f"{good} 2", "just-a-path"]))], "line 3"),
        "non-integer label": (["--dataset", str(root), "--labels", str(write_list(
            tmp / "n", [f"{good} cat"]))], "line 1"),
        "label outside the classes": (["--dataset", str(root), "--labels", str(write_list(
            tmp / "o", [f"{good} 1", f"{good} 1000"]))], "line 2: label 1000 is outside"),
        "empty list": (["--dataset", str(root), "--labels", str(write_list(tmp / "e", []))],
                       "empty"),
        "empty folders": (["--dataset", str(empty)], "empty"),
        "class count": (["--dataset", str(few)], "its 5 folders are not one per class (1000)"),
        "too many missing": (["--dataset", str(root), "--labels", str(write_list(
            tmp / "x", [f"{good} 1"] * 60 + ["gone.jpg 1"] * 2))], "2 of 62 images do not exist"),
        "too many unreadable": (["--dataset", str(unreadable), "--labels", str(write_list(
            tmp / "u", ["good.jpg 1"] * 9 + ["bad.jpg 2"]))],
            "1 of 10 images are missing or unreadable"),
        "no dataset": (["--dataset", str(tmp / "nowhere")], "does not exist"),
        "no list file": (["--dataset", str(root), "--labels", str(tmp / "none.txt")],
                         "does not exist"),
        "resume without predictions": (["--dataset", str(root), "--resume"], "--predictions"),
        "gate not a fraction": (["--dataset", str(root), "--max-top1-drop", "2"], "fraction"),
        "report into a folder": (["--dataset", str(root), "--json", str(tmp)], "is a folder"),
    }


def test_bad_input_is_one_line_exit_2(b0_export, images, tmp_path, capsys):
    cases = bad_cases(images, tmp_path)
    for name, (argv, fragment) in cases.items():
        predictions = tmp_path / f"{name}.jsonl"
        if "--resume" not in argv:
            argv += ["--predictions", str(predictions)]
        code = crossrt.main(["accuracy", str(b0_export.path), *ORT_ONLY, *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert fragment in err[-1] and err[-1].startswith("crossrt accuracy: error:"), (name, err)
        assert not predictions.exists() and not Path(f"{predictions}.partial").exists(), name


def test_a_list_file_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Windows editors put a byte-order mark first: it is not part of the first path."""
    from validation.datasets import load_dataset

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "list.txt").write_bytes("\ufeffa.jpg 3\n".encode())
    data = load_dataset(tmp_path, tmp_path / "list.txt", num_classes=10)
    assert [(s.path, s.label) for s in data.samples] == [("a.jpg", 3)]


def test_class_folders_named_by_synset_class_name_or_index_any_subset(tmp_path):
    """ImageNette-style folders: a few synsets (n01440764 is tench, class 0), or class names
    (whole or their first part), mapped through the label list, whatever their sorted order."""
    from core.labels import IMAGENET_1K, imagenet_synsets, label_set

    names = label_set(IMAGENET_1K)
    layouts = {"synsets": ["n03888257", "n01440764", "n02102040"],  # 701, 0, 217
               "names": ["parachute, chute", "tench", "English springer, English springer "
                         "spaniel"],
               "indices": ["701", "0", "217"]}
    for layout, folders in layouts.items():
        root = tmp_path / layout
        for folder in folders:
            (root / folder).mkdir(parents=True)
            (root / folder / "a.jpg").write_bytes(b"x")
        data = load_dataset(root, num_classes=1000, class_names=names,
                            synsets=imagenet_synsets())
        assert sorted(s.label for s in data.samples) == [0, 217, 701], layout
        assert {Path(s.path).parent.name: s.label for s in data.samples}[folders[0]] == 701
    (tmp_path / "synsets" / "n99999999").mkdir()  # a folder that names no class
    with pytest.raises(UsageError, match="class folder 'n99999999' names no class"):
        load_dataset(tmp_path / "synsets", num_classes=1000, class_names=names,
                     synsets=imagenet_synsets())
    (tmp_path / "synsets" / "n99999999").rmdir()
    (tmp_path / "synsets" / "tench").mkdir()  # tench twice
    with pytest.raises(UsageError, match="two folders of one class"):
        load_dataset(tmp_path / "synsets", num_classes=1000, class_names=names,
                     synsets=imagenet_synsets())


def test_changed_predictions_are_named_by_class():
    """The report names the classes an image moved between, by the model's label list."""
    from validation.accuracy import AccuracyRun, RuntimeAccuracy
    from validation.accuracy_report import render_table

    ref, fp16 = RuntimeAccuracy("paddle"), RuntimeAccuracy("onnxruntime-fp16")
    ref.images = fp16.images = ref.agreed = 1
    fp16.examples.append({"path": "roses/a.jpg", "label": 2, "paddle": 2,
                          "onnxruntime-fp16": 0})
    run = AccuracyRun(model="flowers", target="t", reference="paddle", results=(ref, fp16),
                      dataset={"evaluated": 1, "root": "d", "layout": "folders"}, excluded=(),
                      published={"top1": None, "top5": None, "ref_top1": None,
                                 "ref_top5": None}, weights={}, gates={}, failures=(),
                      class_names=("daisy", "dandelion", "rose"))
    assert ("onnxruntime-fp16: 1 images changed their top-1, e.g. roses/a.jpg (paddle rose "
            "(2), onnxruntime-fp16 daisy (0))") in render_table(run)
