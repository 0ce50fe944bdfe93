"""The bench sweep on real small models with ONNX Runtime CPU: files, failures, resume.

The model is a small Paddle CNN taking the zoo's 224x224 input, exported with paddle2onnx
once per module (a few seconds), so every sweep here runs real inference on the real
``onnxruntime`` runner in well under a second. The sweep is told which export to use (the
exporter is injectable), which is what lets one small file stand in for zoo models; the
real EfficientNetB0 sweep is marked slow.
"""

from __future__ import annotations

import csv
import io
import json
import os
from importlib import metadata
from pathlib import Path

import pytest
from rt_fixtures import write_manifest

import runtimes
from core.errors import DependencyError, ExportError, UsageError
from exporter.specs import get_spec
from validation.bench import (
    CSV_FILE,
    FIGURE_FILE,
    MARKDOWN_FILE,
    RESULTS_FILE,
    BenchConfig,
    best_runtime,
    progress_reporter,
    record_key,
    run_bench,
    run_sweep,
)
from validation.progress import LineProgress
from validation.tables import CSV_COLUMNS, format_ms

WEIGHTS = {"kind": "synthetic", "seed": 7}
FAST = {"warmup_ms": 5, "duration_s": 0.05, "min_iterations": 3, "threads": 1}


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> Path:
    """An export folder (model.onnx, paddle/, manifest.json) of a small real Paddle CNN."""
    os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")
    paddle = pytest.importorskip("paddle", reason="the test model is built with paddle")
    paddle2onnx = pytest.importorskip("paddle2onnx")

    class TinyNet(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 8, 7, stride=4, padding=3)
            self.bn = paddle.nn.BatchNorm2D(8)
            self.pool = paddle.nn.AdaptiveAvgPool2D(1)
            self.fc = paddle.nn.Linear(8, 1000)

        def forward(self, x):
            return self.fc(paddle.flatten(self.pool(paddle.nn.functional.relu(self.bn(
                self.conv(x)))), 1))

    folder = tmp_path_factory.mktemp("tiny")
    paddle.seed(0)
    net = TinyNet()
    net.eval()
    paddle.jit.save(net, str(folder / "paddle" / "inference"),
                    input_spec=[paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")])
    paddle2onnx.export(str(folder / "paddle" / "inference.json"),
                       str(folder / "paddle" / "inference.pdiparams"), str(folder / "model.onnx"),
                       opset_version=13)
    assert (folder / "model.onnx").stat().st_size > 0
    write_manifest(folder, "tiny", WEIGHTS)
    return folder


@pytest.fixture(scope="module")
def batch1_export(tiny_export, tmp_path_factory) -> Path:
    """The same model with its batch dimension fixed to 1: larger batches fail for real."""
    import onnx

    graph = onnx.load(tiny_export / "model.onnx")
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    folder = tmp_path_factory.mktemp("batch1")
    onnx.save(graph, folder / "model.onnx")
    return folder


def counting_runner(bound: list[int]):
    """runtimes.create_runner, noting the batch size of every ``bind`` (what got timed)."""
    def make(kind, target, **options):
        runner = runtimes.create_runner(kind, target, **options)
        bind = runner.bind

        def counted(feed):
            bound.append(len(next(iter(feed.values()))))
            bind(feed)
        runner.bind = counted
        return runner
    return make


def exporting(folder: Path, failing: tuple[str, ...] = ()):
    def export(model, *, fp16):
        if model in failing:
            raise ExportError(f"paddle2onnx wrote an empty file for {model}")
        return folder
    return export


def config(models, **options) -> BenchConfig:
    return BenchConfig.resolve(models, runtimes=["onnxruntime"], **{**FAST, **options})


def test_real_sweep_writes_markdown_json_csv_and_png(tmp_path, tiny_export):
    cfg = config(["EfficientNetB0", "resnext101_32x8d_wsl"], precisions=["fp32"],
                 batch_sizes=[1, 2])
    lines = io.StringIO()
    result = run_bench(cfg, tmp_path / "out", json_path=tmp_path / "copy.json",
                       export=exporting(tiny_export), progress=progress_reporter(lines))
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {RESULTS_FILE, MARKDOWN_FILE, CSV_FILE, FIGURE_FILE}

    doc = json.loads((out / RESULTS_FILE).read_text())
    assert doc == json.loads((tmp_path / "copy.json").read_text()) == result.to_json()
    records = doc["records"]
    assert [(r["model"], r["batch_size"]) for r in records] == [
        ("EfficientNetB0", 1), ("EfficientNetB0", 2),
        ("ResNeXt101_32x8d_wsl", 1), ("ResNeXt101_32x8d_wsl", 2)]
    for r in records:
        lat = r["latency_ms"]
        assert (r["status"], r["reason"]) == ("ok", None)
        assert r["runtime"] == "onnxruntime"
        assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["iterations"] >= FAST["min_iterations"]
        assert r["throughput_ips"] == pytest.approx(r["batch_size"] * 1000 / lat["mean"])
        assert r["precision_used"] == "fp32" and r["runtime_info"]["threads"] == 1
        assert r["runtime_info"]["providers"] == ["CPUExecutionProvider"]
        assert r["weights"] == WEIGHTS and r["machine"]["cpu"] and r["machine"]["versions"]
    b0 = get_spec("EfficientNetB0").published.t4_fp32_ms[0]
    assert records[0]["published_ms"] == b0
    assert records[0]["ratio"] == pytest.approx(records[0]["latency_ms"]["median"] / b0)
    assert records[1]["published_ms"] is None and records[1]["ratio"] is None  # no bs2 column

    rows = list(csv.DictReader((out / CSV_FILE).open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4
    assert [float(r["latency_median_ms"]) for r in rows] == pytest.approx(
        [r["latency_ms"]["median"] for r in records])

    markdown = (out / MARKDOWN_FILE).read_text()
    assert "| Models | Crop Size | Resize Short Size | FP16 Batch Size=1 (ms) |" in markdown
    b0_row = next(line for line in markdown.splitlines() if line.startswith("| EfficientNetB0 |"))
    assert f"{format_ms(records[0]['latency_ms']['median'])} ({format_ms(b0)}, ×" in b0_row
    assert "warm-up 5 ms" in markdown and "synthetic" in markdown
    assert f"onnxruntime {metadata.version('onnxruntime')}" in markdown  # runtime provenance

    png = (out / FIGURE_FILE).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(out / FIGURE_FILE).shape
    assert 400 <= height <= 2000 and 600 <= width <= 3000

    progress = lines.getvalue().splitlines()
    assert len(progress) == 4 and progress[-1].startswith(
        "crossrt: bench: ResNeXt101_32x8d_wsl onnxruntime FP32 bs2")
    assert "; 4/4 cells" in progress[-1]
    assert all("ms median" in line and "ETA" in line for line in progress)


def test_failing_cells_are_recorded_and_the_sweep_goes_on(tmp_path, batch1_export):
    cfg = config(["EfficientNetB0", "EfficientNetB1", "EfficientNetB0_small"],
                 precisions=["fp16", "fp32"], batch_sizes=[1, 2])
    result = run_sweep(cfg, tmp_path / RESULTS_FILE,
                       export=exporting(batch1_export, failing=("EfficientNetB1",)))
    status = {(r["model"], r["precision"], r["batch_size"]): (r["status"], r["reason"])
              for r in json.loads((tmp_path / RESULTS_FILE).read_text())["records"]}
    assert len(status) == len(result.records) == 12
    for model in ("EfficientNetB0", "EfficientNetB0_small"):  # the last model still ran
        assert status[(model, "fp32", 1)] == ("ok", None)
        state, reason = status[(model, "fp32", 2)]  # the batch-1 graph cannot take 2
        assert state == "failed" and "expected shape 1x3x224x224" in reason
        for batch in (1, 2):  # no FP16 graph in this export: its runner cannot start
            state, reason = status[(model, "fp16", batch)]
            assert state == "failed" and reason.startswith("runner failed:")
            assert "model.fp16.onnx is missing" in reason
    for key, (state, reason) in status.items():
        if key[0] == "EfficientNetB1":
            assert state == "failed"
            assert reason == ("export failed: ExportError: paddle2onnx wrote an empty file "
                              "for EfficientNetB1")
    assert any("expected shape" in w for w in result.warnings)


class StopAfterFirstCell(LineProgress):
    def advance(self, count=1, **what):
        super().advance(count, **what)
        if count:  # the first cell is done
            raise KeyboardInterrupt


def test_resume_runs_only_the_cells_left_after_an_interrupt(tmp_path, tiny_export):
    cfg = config(["EfficientNetB0", "EfficientNetB0_small"], precisions=["fp32"],
                 batch_sizes=[1, 2])
    path = tmp_path / RESULTS_FILE
    bound: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, path, export=exporting(tiny_export), make_runner=counting_runner(bound),
                  progress=StopAfterFirstCell(io.StringIO(), "bench", "cells"))
    first = json.loads(path.read_text())["records"]
    assert [record_key(r) for r in first] == [("EfficientNetB0", "onnxruntime", "fp32", 1)]

    bound.clear()
    lines = io.StringIO()
    result = run_sweep(cfg, path, resume=True, export=exporting(tiny_export),
                       make_runner=counting_runner(bound), progress=progress_reporter(lines))
    assert bound == [2, 1, 2]  # the three cells left, nothing twice
    final = json.loads(path.read_text())["records"]
    assert final == result.records and final[0] == first[0]  # kept as measured
    assert sorted(record_key(r) for r in final) == sorted(
        (m, "onnxruntime", "fp32", b) for m in ("EfficientNetB0", "EfficientNetB0_small")
        for b in (1, 2))
    assert lines.getvalue().startswith("crossrt: bench: resuming, 1 of 4 cells already done")
    assert "; 2/4 cells" in lines.getvalue().splitlines()[1]

    bound.clear()  # without resume the sweep starts over
    run_sweep(cfg, path, export=exporting(tiny_export), make_runner=counting_runner(bound))
    assert bound == [1, 2, 1, 2]


def test_resume_refuses_a_file_that_is_not_a_bench_result(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"records": "nope"}')
    with pytest.raises(UsageError, match="bench result .* is corrupt .*without --resume"):
        run_sweep(config(["EfficientNetB0"]), path, resume=True, export=exporting(tmp_path))


def test_defaults_follow_the_table_and_the_best_runtime():
    only_cpu = lambda kind: (kind == "onnxruntime", "no GPU visible")  # noqa: E731
    cfg = BenchConfig.resolve(["efficientnetb0"], is_available=only_cpu)
    assert (cfg.models, cfg.runtimes, cfg.table) == (("EfficientNetB0",), ("onnxruntime",), "t4")
    assert cfg.precisions == ("fp16", "fp32") and cfg.batch_sizes == (1, 4, 8)
    assert cfg.method.warmup_ms == 200 and cfg.method.min_iterations == 10
    assert BenchConfig.resolve(["EfficientNetB0"], table="v100",
                               is_available=only_cpu).precisions == ("fp32",)
    assert cfg.runner_options("fp32") == {} and cfg.runner_options("fp16") == {"fp16": True}
    assert best_runtime(lambda kind: (True, "")) == "tensorrt"
    assert best_runtime(lambda kind: (kind != "tensorrt", "not installed")) == "onnxruntime-cuda"
    with pytest.raises(DependencyError, match="tensorrt: missing"):
        best_runtime(lambda kind: (False, "missing"))
    for bad in ({"table": "a100"}, {"precisions": ["int8"]}, {"batch_sizes": [0]}):
        with pytest.raises(UsageError):
            BenchConfig.resolve(["EfficientNetB0"], runtimes=["onnxruntime"], **bad)
    with pytest.raises(UsageError, match="--all"):
        BenchConfig.resolve([], runtimes=["onnxruntime"])


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_and_lines_in_logs(tmp_path, tiny_export):
    assert isinstance(progress_reporter(io.StringIO()), LineProgress)
    screen = FakeTerminal()
    bar = progress_reporter(screen)
    assert not isinstance(bar, LineProgress)
    run_sweep(config(["EfficientNetB0"], precisions=["fp32"], batch_sizes=[1]),
              tmp_path / RESULTS_FILE, export=exporting(tiny_export), progress=bar)
    assert "1/1" in screen.getvalue()


@pytest.mark.slow
def test_real_efficientnet_b0_sweep_fp16_and_fp32(tmp_path, b0_export):
    """The real B0 export (FP32 and FP16 graphs) on the real ONNX Runtime CPU runner."""
    cfg = config(["EfficientNetB0"], batch_sizes=[1, 2], duration_s=0.2)
    result = run_bench(cfg, tmp_path, export=lambda model, fp16: b0_export.path)
    assert [(r["precision"], r["batch_size"], r["status"]) for r in result.records] == [
        ("fp16", 1, "ok"), ("fp16", 2, "ok"), ("fp32", 1, "ok"), ("fp32", 2, "ok")]
    assert [r["precision_used"] for r in result.records] == ["fp16", "fp16", "fp32", "fp32"]
    assert result.records[0]["weights"] == b0_export.manifest["weights"]
    row = next(line for line in (tmp_path / MARKDOWN_FILE).read_text().splitlines()
               if line.startswith("| EfficientNetB0 |"))
    assert row.count("×") == 2  # bs1 of both precisions has a published T4 figure
    assert (tmp_path / FIGURE_FILE).read_bytes().startswith(b"\x89PNG")


def test_an_export_edited_since_export_is_timed_and_said_so(b0_export, tmp_path):
    import shutil

    from validation.bench import export_facts
    from validation.tables import notes

    copy = Path(shutil.copytree(b0_export.path, tmp_path / "copy"))
    assert export_facts(copy)["edited_since_export"] == []
    with open(copy / "model.fp16.onnx", "ab") as graph:
        graph.write(b"\0")
    facts = export_facts(copy)
    assert facts["edited_since_export"] == ["model.fp16.onnx"]
    record = {"model": "EfficientNetB0", "precision": "fp16", "batch_size": 1, "status": "ok",
              "precision_used": "fp16", **facts}
    assert any("as edited after export" in line for line in notes([record]))
