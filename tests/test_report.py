"""validation.report: the terminal table, markdown and JSON renderings of real comparisons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.compare import compare_outputs, degenerate_reference, tolerance_for
from validation.report import (
    COLUMNS,
    ComparisonRecord,
    ReportContext,
    render_markdown,
    render_table,
    report_dict,
    summary,
    text_table,
)

SYNTHETIC = {"kind": "synthetic", "seed": 0, "calibration": "BatchNorm statistics"}
CHECKPOINT = {"kind": "checkpoint", "sha256": "ab" * 32}


def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reference, a run within float rounding of it, and a broken run."""
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 2, (4, 1000)).astype(np.float32)
    close = reference + rng.normal(0, 1e-5, reference.shape).astype(np.float32)
    broken = reference.copy()
    broken[1, 532] += 0.5
    broken[2, reference[2].argmin()] = reference[2].max() + 1  # sample 2 predicts its worst class
    return reference, close, broken


@pytest.fixture
def records() -> list[ComparisonRecord]:
    reference, close, broken = arrays()
    return [
        ComparisonRecord("onnxruntime", 1, compare_outputs({"logits": reference[:1]},
                                                           {"logits": close[:1]})),
        ComparisonRecord("onnxruntime", 4, compare_outputs({"logits": reference},
                                                           {"logits": close})),
        ComparisonRecord("tensorrt", 4, compare_outputs({"logits": reference},
                                                        {"logits": broken})),
    ]


def context(weights=SYNTHETIC, warnings=()) -> ReportContext:
    return ReportContext(model="EfficientNetB0", reference="paddle", weights=weights,
                         inputs={"photos": "chelsea, coffee, astronaut, rocket", "seed": 0},
                         versions={"onnxruntime": "1.32.0", "paddlepaddle": "3.3.1"},
                         target="artifacts/EfficientNetB0", warnings=tuple(warnings))


def test_table_has_every_column_and_marks_the_failure(records):
    text = render_table(records, context(CHECKPOINT))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("runtime"))
    for column in COLUMNS:
        assert column in header
    rows = [line for line in lines if line.startswith(("onnxruntime", "tensorrt"))]
    assert len(rows) == 3
    assert rows[0].endswith("PASS") and rows[1].endswith("PASS") and rows[2].endswith("FAIL")
    assert "3/4" in rows[2]  # top-1 agreement of the broken run
    failure = next(line for line in lines if line.startswith("FAIL tensorrt batch 4"))
    assert records[2].result.reason in failure
    assert "SYNTHETIC" not in text


def test_top1_agreement_counts_samples_not_batches():
    """Four photographs at batch 1 are four samples (validate concatenates every batch)."""
    reference, _, broken = arrays()
    record = ComparisonRecord("tensorrt", 1, compare_outputs({"logits": reference},
                                                             {"logits": broken}))
    row = summary(record)
    assert (row["top1_agreed"], row["top1_samples"]) == (3, 4)
    assert "3/4" in render_table([record]).splitlines()[-2]


def test_an_empty_comparison_renders_without_error():
    assert render_table([]).splitlines()[0].startswith("runtime")


def test_table_figures_are_the_comparison_figures(records):
    row = summary(records[2])
    out = records[2].result["logits"]
    assert row["max_abs"] == out.max_abs and row["min_atol"] == out.min_atol
    assert f"{out.max_abs:.1e}" in render_table(records).splitlines()[-2]


def test_synthetic_weights_are_said_loudly_everywhere(records):
    ctx = context(SYNTHETIC)
    assert "WARNING SYNTHETIC WEIGHTS (seed 0)" in render_table(records, ctx)
    assert "SYNTHETIC WEIGHTS" in render_markdown(records, ctx)
    report = report_dict(records, ctx)
    assert report["synthetic_weights"] is True
    assert any("SYNTHETIC" in w for w in report["warnings"])
    assert report_dict(records, context(CHECKPOINT))["synthetic_weights"] is False


def test_markdown_report(records):
    degenerate = degenerate_reference({"logits": np.full((4, 1000), 1e-12, np.float32)})
    text = render_markdown(records, context(CHECKPOINT, [degenerate]))
    assert text.startswith("# Validation of EfficientNetB0: FAIL")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert all(column in table[0] for column in COLUMNS)
    assert len(table) == 2 + len(records) and "FAIL" in table[-1]
    assert "## Failures" in text and "tensorrt batch 4" in text
    assert "degenerate" in text
    assert "- onnxruntime 1.32.0" in text and "paddle" in text
    passing = render_markdown(records[:2], context(CHECKPOINT))
    assert passing.startswith("# Validation of EfficientNetB0: PASS")
    assert "## Failures" not in passing


def test_json_report_is_complete_and_strict(records):
    report = report_dict(records, context())
    text = json.dumps(report, allow_nan=False)
    loaded = json.loads(text)
    assert loaded["passed"] is False and loaded["model"] == "EfficientNetB0"
    assert loaded["versions"]["paddlepaddle"] == "3.3.1"
    assert loaded["weights"]["kind"] == "synthetic"
    assert loaded["inputs"]["seed"] == 0
    failed = loaded["comparisons"][2]
    assert failed["runtime"] == "tensorrt" and failed["passed"] is False
    reference = arrays()[0]
    assert failed["comparison"]["outputs"][0]["worst_index"] == [2, int(reference[2].argmin())]
    assert failed["comparison"]["tolerance"]["atol"] == tolerance_for("fp32").atol


def test_inputs_column_appears_only_when_records_carry_inputs(records):
    assert "inputs" not in render_table(records).splitlines()[0]
    labelled = [ComparisonRecord(r.runtime, r.batch_size, r.result, inputs="photos")
                for r in records]
    assert "inputs" in render_table(labelled).splitlines()[0]


def test_one_text_table_for_every_terminal_table():
    """crossrt's zoo/runtimes tables and validate's: aligned columns, verbatim cells."""
    rows = [("runtime", "available", "why"), ("paddle", "yes", ""),
            ("tensorrt", "no", "[bold]not[/] installed: pip install 'tensorrt-cu12'")]
    assert text_table(rows).splitlines() == [
        "runtime   available  why",
        "paddle    yes",
        "tensorrt  no         [bold]not[/] installed: pip install 'tensorrt-cu12'"]
    ruled = text_table([("a", "bb"), ("ccc", 1)], rule=True).splitlines()
    assert ruled == ["a    bb", "---  --", "ccc  1"]
    long = "x" * 300  # never wrapped, whatever the terminal width
    assert text_table([("h",), (long,)]).splitlines()[1] == long
