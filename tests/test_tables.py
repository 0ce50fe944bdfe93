"""Rendering of bench records: the seed's table layout, CSV, the report and the figure's data."""

from __future__ import annotations

import csv
import io

import pytest

from exporter.specs import SPECS, get_spec
from validation.bench import BenchConfig, Cell, cell_record
from validation.figures import choose_precision, figure_points, short_name
from validation.tables import (
    CSV_COLUMNS,
    cell_text,
    csv_text,
    format_ms,
    markdown_report,
    markdown_table,
)
from validation.timing import Method, summarize

T4_HEADER = ("| Models | Crop Size | Resize Short Size | FP16 Batch Size=1 (ms) | "
             "FP16 Batch Size=4 (ms) | FP16 Batch Size=8 (ms) | FP32 Batch Size=1 (ms) | "
             "FP32 Batch Size=4 (ms) | FP32 Batch Size=8 (ms) |")
V100_HEADER = ("| Models | Crop Size | Resize Short Size | FP32 Batch Size=1 (ms) | "
               "FP32 Batch Size=4 (ms) | FP32 Batch Size=8 (ms) |")


def record(model, precision, batch_size, median=None, *, table="t4", failure=None, **extra):
    """A record made by the sweep's own record builder; ``median`` None means a failed cell."""
    config = BenchConfig(models=(model,), runtimes=("onnxruntime",), table=table)
    stats = None if median is None else summarize([median * 0.98, median, median * 1.02],
                                                  batch_size)
    cell = Cell(model, "onnxruntime", precision, batch_size)
    return cell_record(config, get_spec(model), cell, stats=stats,
                       failure=failure or (None if stats else "RuntimeError: out of memory"),
                       method={"warmup_ms": 1.0, "duration_s": 0.1, "min_iterations": 3,
                               "include_transfers": False}, **extra)


def row_of(markdown: str, model: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {model} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_headers_follow_the_seed_layout():
    recs = [record("EfficientNetB0", "fp32", 1, 4.0)]
    assert markdown_table(recs, "t4").splitlines()[0] == T4_HEADER
    assert markdown_table([record("EfficientNetB0", "fp32", 1, 4.0, table="v100")],
                          "v100").splitlines()[0] == V100_HEADER


def test_cells_show_measured_published_and_ratio():
    spec = get_spec("EfficientNetB1")
    published = spec.published.t4_fp32_ms  # (bs1, bs4, bs8)
    recs = [record("EfficientNetB1", "fp32", 1, 12.5), record("EfficientNetB1", "fp32", 4, 40.0),
            record("EfficientNetB1", "fp32", 8, None)]
    row = row_of(markdown_table(recs, "t4"), "EfficientNetB1")
    assert row[:3] == ["EfficientNetB1", str(spec.crop_size), str(spec.resize_short)]
    assert row[3:6] == [f"- ({format_ms(p)})" for p in spec.published.t4_fp16_ms]  # not run
    assert row[6] == f"12.5 ({format_ms(published[0])}, ×{12.5 / published[0]:.2f})"
    assert row[7] == f"40.0 ({format_ms(published[1])}, ×{40.0 / published[1]:.2f})"
    assert row[8] == f"- ({format_ms(published[2])})"  # failed: published still shown


def test_dash_where_the_seed_has_no_figure():
    assert get_spec("EfficientNetB6").published.t4_fp32_ms[1:] == (None, None)
    recs = [record("EfficientNetB6", "fp32", 4, 900.0), record("EfficientNetB6", "fp32", 8, None)]
    row = row_of(markdown_table(recs, "t4"), "EfficientNetB6")
    assert row[7] == "900 (-)"  # measured, nothing published
    assert row[8] == "-"  # failed and nothing published


def test_rows_in_seed_order_and_extra_batch_sizes_get_columns():
    recs = [record("EfficientNetB0", "fp32", 2, 7.0),
            record("ResNeXt101_32x8d_wsl", "fp32", 1, 80.0)]
    table = markdown_table(recs, "v100")
    header = table.splitlines()[0]
    assert "FP32 Batch Size=2 (ms)" in header and header.count("Batch Size=") == 4
    models = [row.split("|")[1].strip() for row in table.splitlines()[2:]]
    assert models == ["ResNeXt101_32x8d_wsl", "EfficientNetB0"]  # the seed lists ResNeXt first
    assert row_of(table, "EfficientNetB0")[4] == "7.00 (-)"  # bs2 has no published figure


def test_substituted_precision_is_marked_and_explained():
    recs = [record("EfficientNetB0", "fp16", 1, 5.0, runtime_info={"precision": "fp32"})]
    assert row_of(markdown_table(recs), "EfficientNetB0")[3].startswith("5.00* (")
    doc = {"table": "t4", "runtimes": ["onnxruntime"], "method_text": Method().describe(),
           "machine": {"cpu": "Test CPU", "usable_cpus": 2, "logical_cpus": 4}, "records": recs}
    report = markdown_report(doc)
    assert "EfficientNetB0 FP16 bs1*: ran in fp32" in report
    assert "Test CPU, 2 usable of 4 logical CPUs" in report and "warm-up 200 ms" in report


def test_report_lists_failures_and_noise():
    noisy = record("EfficientNetB0", "fp32", 4, 10.0)
    noisy.update(noisy=True, cv=0.12)
    recs = [record("EfficientNetB0", "fp32", 1, None, failure="RuntimeError: out of memory"), noisy]
    doc = {"table": "t4", "runtimes": ["onnxruntime-cuda"], "method_text": "m",
           "machine": {"gpus": [{"name": "NVIDIA H200", "compute_capability": "9.0",
                                 "driver": "12.8", "max_sm_clock_mhz": 1980}]}, "records": recs}
    report = markdown_report(doc)
    assert "EfficientNetB0 FP32 bs1: failed: RuntimeError: out of memory" in report
    assert "12.0% > 5%" in report
    assert "NVIDIA H200 (sm 9.0, CUDA driver 12.8, peak SM clock 1980 MHz)" in report
    assert T4_HEADER in report


def test_cell_text_when_nothing_is_known():
    assert cell_text(None, None) == "-"
    assert cell_text(None, 3.4) == "- (3.40)"


def test_csv_has_every_statistic_and_blank_failures():
    ok, failed = record("EfficientNetB0", "fp32", 1, 4.0), record("EfficientNetB0", "fp32", 4, None)
    rows = list(csv.DictReader(io.StringIO(csv_text([ok, failed]))))
    assert tuple(rows[0]) == CSV_COLUMNS
    for key in ("min", "median", "mean", "p90", "p99", "max"):
        assert float(rows[0][f"latency_{key}_ms"]) == pytest.approx(ok["latency_ms"][key])
    published = get_spec("EfficientNetB0").published.t4_fp32_ms[0]
    assert float(rows[0]["ratio"]) == pytest.approx(4.0 / published)
    assert rows[0]["status"] == "ok" and rows[0]["duration_s"] == "0.1"
    assert rows[1]["status"] == "failed" and rows[1]["latency_median_ms"] == ""
    assert "out of memory" in rows[1]["reason"]


def test_figure_data_per_family_measured_and_published():
    recs = [record("EfficientNetB0", "fp32", 1, 4.0), record("EfficientNetB1", "fp32", 1, 6.0),
            record("EfficientNetB1", "fp16", 1, 5.0),
            record("ResNeXt101_32x8d_wsl", "fp32", 1, None)]
    assert choose_precision(recs) == "fp32"
    points = figure_points(recs, "t4", "fp32", 1)
    assert set(points) == {"EfficientNet", "ResNeXt101_wsl"}
    top1 = {name: SPECS[name].published.top1 for name in ("EfficientNetB0", "EfficientNetB1")}
    assert points["EfficientNet"]["measured"] == [(4.0, top1["EfficientNetB0"], "B0"),
                                                  (6.0, top1["EfficientNetB1"], "B1")]
    assert points["ResNeXt101_wsl"]["measured"] == []  # failed: only the published point
    assert points["ResNeXt101_wsl"]["published"] == [
        (SPECS["ResNeXt101_32x8d_wsl"].published.t4_fp32_ms[0],
         SPECS["ResNeXt101_32x8d_wsl"].published.top1, "32x8d")]
    assert short_name("Fix_ResNeXt101_32x48d_wsl") == "Fix_32x48d"
