"""validation.results: outputs round-trip, Polygraphy reads them, broken files fail cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.compare import compare_outputs
from core.errors import UsageError
from core.provenance import sha256_array
from validation.results import (
    SavedIteration,
    SavedResults,
    SavedRun,
    load_golden,
    load_results,
    save_results,
)

PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]


@pytest.fixture
def saved() -> SavedResults:
    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    four = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    iterations = (SavedIteration.from_feed({"x": one}, PHOTOS[:1]),
                  SavedIteration.from_feed({"x": four}, PHOTOS))

    def outputs(offset: float) -> tuple[dict[str, np.ndarray], ...]:
        return tuple({"logits": (feed["x"].reshape(len(feed["x"]), -1)[:, :10] + offset)}
                     for feed in (it.feed for it in iterations))

    runs = (SavedRun("paddle", outputs(0.0), "Paddle Inference CPU, oneDNN", "fp32", (0.01, 0.02)),
            SavedRun("onnxruntime-cuda", outputs(1e-5), "ORT CUDA FP16 graph", "fp16"))
    return SavedResults(runs=runs, iterations=iterations, model="EfficientNetB0",
                        inputs={"photos": "bundled", "random": 0, "seed": 0},
                        metadata={"versions": {"numpy": np.__version__}})


def test_round_trip_keeps_outputs_inputs_and_metadata(tmp_path, saved):
    path = save_results(tmp_path / "outputs.json", saved)
    loaded = load_results(path)
    assert loaded.model == "EfficientNetB0"
    assert dict(loaded.inputs) == {"photos": "bundled", "random": 0, "seed": 0}
    assert loaded.metadata["versions"]["numpy"] == np.__version__
    assert [r.runner for r in loaded.runs] == ["paddle", "onnxruntime-cuda"]
    cuda = loaded.run("onnxruntime-cuda")
    assert (cuda.description, cuda.precision) == ("ORT CUDA FP16 graph", "fp16")
    assert loaded.run("paddle").runtimes_s == (0.01, 0.02)
    for original, restored in zip(saved.runs, loaded.runs):
        for a, b in zip(original.outputs, restored.outputs):
            assert b["logits"].dtype == a["logits"].dtype
            np.testing.assert_array_equal(a["logits"], b["logits"])
    for original, restored in zip(saved.iterations, loaded.iterations):
        np.testing.assert_array_equal(original.feed["x"], restored.feed["x"])
        assert restored.samples == original.samples
    assert loaded.iterations[1].samples[2].name == "astronaut"
    assert loaded.iterations[1].samples[2].sha256 == sha256_array(saved.iterations[1].feed["x"][2])


def test_polygraphy_loads_and_compares_what_we_save(tmp_path, saved):
    from polygraphy.comparator import Comparator, CompareFunc, RunResults

    path = save_results(tmp_path / "outputs.json", saved)
    results = RunResults.load(str(path))
    assert list(results.keys()) == ["paddle", "onnxruntime-cuda"]
    np.testing.assert_array_equal(results["paddle"][1]["logits"],
                                  saved.runs[0].outputs[1]["logits"])
    # The runs are 1e-5 apart: Polygraphy's own comparison sees exactly that.
    loose = CompareFunc.simple(atol=1e-4, rtol=0)
    tight = CompareFunc.simple(atol=1e-7, rtol=0)
    assert bool(Comparator.compare_accuracy(results, compare_func=loose))
    assert not bool(Comparator.compare_accuracy(results, compare_func=tight))


def test_plain_polygraphy_files_load_without_inputs(tmp_path):
    from polygraphy.comparator import RunResults

    results = RunResults()
    results.add([{"logits": np.ones((2, 5), np.float32)}], runner_name="trt-runner")
    path = tmp_path / "polygraphy.json"
    results.save(str(path))
    loaded = load_results(path)
    assert loaded.iterations == () and loaded.run("trt-runner").outputs[0]["logits"].shape == (2, 5)
    with pytest.raises(UsageError, match="no inputs"):
        loaded.outputs_by_sample("trt-runner")


def test_replayed_outputs_join_a_comparison_like_a_live_runner(tmp_path, saved):
    loaded = load_results(save_results(tmp_path / "outputs.json", saved))
    feed = {"x": saved.iterations[1].feed["x"].copy()}
    with loaded.replay("paddle") as reference, loaded.replay("onnxruntime-cuda") as test:
        result = compare_outputs(reference.infer(feed), test.infer(feed))
    assert result and result["logits"].max_abs == pytest.approx(1e-5, rel=1e-2)
    other = {"x": feed["x"] + 1}
    with pytest.raises(UsageError, match="other inputs"):
        loaded.replay("paddle").infer(other)
    with pytest.raises(UsageError, match="paddle, onnxruntime-cuda"):
        loaded.replay("tensorrt")


def test_outputs_align_by_photo_name(tmp_path, saved):
    loaded = load_results(save_results(tmp_path / "outputs.json", saved))
    rows = loaded.outputs_by_sample("paddle")
    assert sorted(rows) == sorted(PHOTOS)
    np.testing.assert_array_equal(rows["coffee"]["logits"], saved.runs[0].outputs[1]["logits"][1])


def test_golden_outputs_of_an_export_load_as_results(tmp_path):
    from exporter.export import _golden_npz  # the exporter's own writer of reference.npz

    rng = np.random.default_rng(1)
    photos = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    logits = rng.normal(size=(4, 10)).astype(np.float32)
    (tmp_path / "reference.npz").write_bytes(_golden_npz(PHOTOS, photos, logits))
    golden = load_golden(tmp_path / "reference.npz")
    rows = golden.outputs_by_sample("golden")
    np.testing.assert_array_equal(rows["rocket"]["logits"], logits[3])
    assert golden.iterations[0].samples[0].sha256 == sha256_array(photos[0])
    np.testing.assert_array_equal(golden.replay("golden").infer({"x": photos})["logits"], logits)


def test_saving_writes_atomically_and_reports_unwritable_paths(tmp_path, saved):
    path = save_results(tmp_path / "outputs.json", saved)
    assert [p.name for p in tmp_path.iterdir()] == ["outputs.json"]  # no temporary left over
    json.loads(path.read_text())  # one complete JSON document
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError) as error:
        save_results(blocker / "outputs.json", saved)
    assert "\n" not in str(error.value)


def test_iteration_counts_must_agree(tmp_path, saved):
    short = SavedResults(runs=(SavedRun("paddle", saved.runs[0].outputs[:1]),),
                         iterations=saved.iterations)
    with pytest.raises(UsageError, match="iterations"):
        save_results(tmp_path / "outputs.json", short)


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00",  # not text
    b'{"lst": [["a", [{"outputs"',  # truncated
    b'{"format": "something else"}',  # JSON, not run results
    b'{"lst": 5, "polygraphy_class": "RunResults"}',  # broken structure
    b'{"lst": [["a", [{"outputs": {"y": {"array": "AAAA", "polygraphy_class": "ndarray"}}, '
    b'"runtime": null, "runner_name": "a", "polygraphy_class": "IterationResult"}]]], '
    b'"polygraphy_class": "RunResults"}',  # broken array payload
])
def test_broken_or_foreign_files_are_one_line_usage_errors(tmp_path, content, capsys):
    path = tmp_path / "outputs.json"
    path.write_bytes(content)
    with pytest.raises(UsageError) as error:
        load_results(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert "[E]" not in capsys.readouterr().out  # Polygraphy's own error log stays quiet


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        load_results(tmp_path / "absent.json")
