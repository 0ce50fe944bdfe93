"""core.compare: the pass rule, the statistics, and the smallest passing tolerances."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from core.compare import (
    DEFAULT_TOLERANCES,
    ERROR_STATS,
    Tolerance,
    compare_outputs,
    degenerate_reference,
    scaled_to,
    tolerance_for,
)
from core.errors import UsageError

FP32 = DEFAULT_TOLERANCES["fp32"]


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 2, (4, 1000)).astype(np.float32)


def noisy(reference: np.ndarray, scale: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (reference + rng.normal(0, scale, reference.shape)).astype(reference.dtype)


def test_identical_outputs_pass_with_zero_error(logits):
    result = compare_outputs({"logits": logits}, {"logits": logits.copy()})
    out = result["logits"]
    assert result and out and result.reason is None
    assert out.max_abs == 0 and out.min_atol == 0 and out.min_rtol == 0
    assert out.cosine == pytest.approx(1.0)
    assert out.top1_agreement == 1.0 and out.top5_overlap == 1.0


def test_statistics_match_numpy(logits):
    test = noisy(logits, 1e-4)
    out = compare_outputs({"logits": logits}, {"logits": test})["logits"]
    absdiff = np.abs(test.astype(np.float64) - logits)
    reldiff = absdiff / np.abs(logits.astype(np.float64))
    assert out.max_abs == pytest.approx(absdiff.max())
    assert out.mean_abs == pytest.approx(absdiff.mean())
    assert out.median_abs == pytest.approx(np.median(absdiff))
    assert out.p99_abs == pytest.approx(np.quantile(absdiff, 0.99))
    assert out.max_rel == pytest.approx(reldiff.max())
    assert out.worst_index is not None and len(out.worst_index) == 2
    a, b = logits.ravel().astype(np.float64), test.ravel().astype(np.float64)
    assert out.cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_fails_by_atol_and_names_where(logits):
    test = logits.copy()
    test[1, 532] += 0.032
    result = compare_outputs({"logits": logits}, {"logits": test}, replace(FP32, rtol=0.0))
    assert not result
    assert result["logits"].worst_index == (1, 532)
    assert "logits" in result.reason and "[1, 532]" in result.reason
    assert "3.20e-02" in result.reason  # the error, and the smallest passing atol
    assert result["logits"].min_atol == pytest.approx(0.032, rel=1e-5)


def test_rtol_scales_with_the_reference():
    reference = np.array([[100.0, 1.0]], np.float32)
    test = np.array([[100.05, 1.0]], np.float32)  # 5e-2 off where |ref| = 100
    strict = Tolerance(atol=1e-3, rtol=1e-5)
    loose = Tolerance(atol=1e-3, rtol=1e-3)  # allows 1e-3 + 0.1
    assert not compare_outputs({"y": reference}, {"y": test}, strict)
    assert compare_outputs({"y": reference}, {"y": test}, loose)


@pytest.mark.parametrize("rtol", [0.0, 1e-4, 1e-2])
def test_smallest_passing_atol_is_the_threshold(logits, rtol):
    test = noisy(logits, 3e-3)
    tol = Tolerance(atol=1e-6, rtol=rtol)
    min_atol = compare_outputs({"y": logits}, {"y": test}, tol)["y"].min_atol
    assert min_atol > 0
    assert compare_outputs({"y": logits}, {"y": test}, replace(tol, atol=min_atol))
    below = float(np.nextafter(min_atol, 0))
    assert not compare_outputs({"y": logits}, {"y": test}, replace(tol, atol=below))


@pytest.mark.parametrize("atol", [0.0, 1e-4, 1e-3])
def test_smallest_passing_rtol_is_the_threshold(logits, atol):
    test = noisy(logits, 3e-3)
    tol = Tolerance(atol=atol, rtol=0.0)
    min_rtol = compare_outputs({"y": logits}, {"y": test}, tol)["y"].min_rtol
    assert 0 < min_rtol < np.inf
    assert compare_outputs({"y": logits}, {"y": test}, replace(tol, rtol=min_rtol))
    below = float(np.nextafter(min_rtol, 0))
    assert not compare_outputs({"y": logits}, {"y": test}, replace(tol, rtol=below))


def test_no_rtol_covers_an_error_where_the_reference_is_zero():
    reference = np.array([[0.0, 1.0]], np.float32)
    test = np.array([[0.5, 1.0]], np.float32)
    out = compare_outputs({"y": reference}, {"y": test}, Tolerance(atol=1e-3, rtol=0))["y"]
    assert out.min_rtol == np.inf and out.min_atol == pytest.approx(0.5)


def test_shape_mismatch_fails_without_statistics(logits):
    result = compare_outputs({"logits": logits}, {"logits": logits[:, :999]})
    out = result["logits"]
    assert not result and out.max_abs is None
    assert "[4, 999]" in result.reason and "[4, 1000]" in result.reason


def test_missing_and_extra_outputs_fail(logits):
    missing = compare_outputs({"logits": logits, "features": logits}, {"logits": logits})
    assert not missing and missing.missing == ("features",) and "features" in missing.reason
    extra = compare_outputs({"logits": logits}, {"logits": logits, "probs": logits})
    assert not extra and extra.extra == ("probs",) and "probs" in extra.reason


def test_nan_on_one_side_fails_with_counts(logits):
    test = logits.copy()
    test[2, 7] = np.nan
    result = compare_outputs({"logits": logits}, {"logits": test})
    out = result["logits"]
    assert not result
    assert (out.test_nan, out.reference_nan, out.nonfinite_mismatches) == (1, 0, 1)
    assert "NaN" in result.reason and "[2, 7]" in result.reason
    assert out.min_atol == np.inf  # no tolerance makes a NaN pass
    # The finite elements still get their statistics.
    assert out.max_abs == 0


def test_nan_and_inf_at_the_same_places_pass(logits):
    reference = logits.copy()
    reference[0, 1], reference[3, 5], reference[1, 2] = np.nan, np.inf, -np.inf
    result = compare_outputs({"y": reference}, {"y": reference.copy()})
    assert result, result.reason
    assert (result["y"].reference_nan, result["y"].reference_inf) == (1, 2)


def test_inf_of_the_wrong_sign_or_place_fails(logits):
    reference = logits.copy()
    reference[0, 1] = np.inf
    flipped = reference.copy()
    flipped[0, 1] = -np.inf
    assert not compare_outputs({"y": reference}, {"y": flipped})
    moved = logits.copy()
    moved[0, 2] = np.inf
    result = compare_outputs({"y": reference}, {"y": moved})
    assert not result and result["y"].test_inf == 1 and "Inf" in result.reason


def test_top1_gate(logits):
    test = logits.copy()
    winner = logits[0].argmax()
    test[0, winner] -= 100  # sample 0 now predicts something else
    numbers_only = Tolerance(atol=200, rtol=0)
    gated = replace(numbers_only, min_top1_agreement=1.0)
    assert compare_outputs({"y": logits}, {"y": test}, numbers_only)
    result = compare_outputs({"y": logits}, {"y": test}, gated)
    assert not result and "top-1 agreement 0.75" in result.reason and "3/4" in result.reason
    assert result["y"].top1_agreement == 0.75 and result["y"].top5_overlap < 1
    assert compare_outputs({"y": logits}, {"y": test}, replace(gated, min_top1_agreement=0.75))


def test_top1_gate_needs_logits_shaped_output():
    flat = np.arange(10, dtype=np.float32)
    result = compare_outputs({"y": flat}, {"y": flat}, Tolerance(1e-3, 0, min_top1_agreement=1))
    assert not result and "[N, C]" in result.reason
    assert result["y"].top1_agreement is None


def test_each_error_statistic_follows_polygraphy(logits):
    """Statistic checks pass when the abs statistic <= atol OR the rel statistic <= rtol."""
    test = noisy(logits, 1e-3)
    for stat in ERROR_STATS[1:]:
        out = compare_outputs({"y": logits}, {"y": test}, Tolerance(0, 0, stat))["y"]
        value = {"max": out.max_abs, "mean": out.mean_abs, "median": out.median_abs,
                 "quantile": out.p99_abs}[stat]
        assert out.min_atol == pytest.approx(value)
        assert compare_outputs({"y": logits}, {"y": test}, Tolerance(value, 0, stat)), stat
        below = float(np.nextafter(value, 0))
        assert not compare_outputs({"y": logits}, {"y": test}, Tolerance(below, 0, stat)), stat
    # The statistics order as they must: a mean-based check passes where max fails.
    out = compare_outputs({"y": logits}, {"y": test})["y"]
    between = (out.mean_abs + out.max_abs) / 2
    assert compare_outputs({"y": logits}, {"y": test}, Tolerance(between, 0, "mean"))
    assert not compare_outputs({"y": logits}, {"y": test}, Tolerance(between, 0, "max"))
    # The rel statistic alone may pass it.
    assert compare_outputs({"y": logits}, {"y": test}, Tolerance(0, out.max_rel, "max"))


def test_quantile_statistic_uses_the_given_quantile(logits):
    test = noisy(logits, 1e-3)
    absdiff = np.abs(test.astype(np.float64) - logits)
    half = Tolerance(np.quantile(absdiff, 0.5), 0, "quantile", error_quantile=0.5)
    assert compare_outputs({"y": logits}, {"y": test}, half)
    assert not compare_outputs({"y": logits}, {"y": test}, replace(half, error_quantile=0.9))


def test_elemwise_is_numpy_isclose(logits):
    test = noisy(logits, 2e-3)
    for atol, rtol in [(1e-3, 1e-3), (5e-3, 0), (0, 5e-3), (4e-3, 1e-4)]:
        expected = bool(np.isclose(test, logits, rtol=rtol, atol=atol).all())
        assert bool(compare_outputs({"y": logits}, {"y": test}, Tolerance(atol, rtol))) == expected


def test_results_are_frozen_and_strict_json(logits):
    test = logits.copy()
    test[0, 0] = np.nan
    result = compare_outputs({"logits": logits}, {"logits": test})
    with pytest.raises(AttributeError):
        result.passed = True  # type: ignore[misc]
    text = json.dumps(result.to_dict(), allow_nan=False)
    loaded = json.loads(text)
    assert loaded["passed"] is False and loaded["outputs"][0]["min_atol"] == "inf"
    assert loaded["tolerance"]["atol"] == FP32.atol


def test_degenerate_reference_is_flagged(logits):
    assert degenerate_reference({"logits": logits}) is None
    flat = np.full((4, 1000), 1e-12, np.float32) + logits * 1e-12
    warning = degenerate_reference({"logits": flat})
    assert warning and "logits" in warning and "degenerate" in warning
    same_for_every_input = np.tile(logits[:1], (4, 1))
    assert "inputs" in degenerate_reference({"logits": same_for_every_input})


def test_tolerance_defaults_and_overrides():
    assert tolerance_for("fp32") == FP32
    fp16 = tolerance_for("fp16")
    assert fp16.atol > FP32.atol and fp16.min_top1_agreement == 1.0
    assert tolerance_for("fp32", atol=0.5).atol == 0.5
    assert tolerance_for("fp32", atol=None).atol == FP32.atol
    with pytest.raises(UsageError):
        tolerance_for("int8")
    with pytest.raises(UsageError):
        Tolerance(atol=-1, rtol=0)
    with pytest.raises(UsageError):
        Tolerance(atol=0, rtol=0, check_error_stat="p95")
    with pytest.raises(UsageError):
        Tolerance(atol=0, rtol=0, min_top1_agreement=2)


@pytest.mark.parametrize("case", ["close", "far", "nan", "same-nan", "float16"])
def test_verdict_alone_agrees_with_the_full_comparison(logits, case):
    """statistics=False (localisation's hundreds of tensors) decides as the full comparison."""
    test = logits + np.float32(1e-5)
    if case == "far":
        test[2, 7] += 0.5
    elif case in ("nan", "same-nan"):
        test[1, 3] = np.nan
    reference = logits.copy()
    if case == "same-nan":
        reference[1, 3] = np.nan
    if case == "float16":
        test = test.astype(np.float16)
    full = compare_outputs({"y": reference}, {"y": test})["y"]
    light = compare_outputs({"y": reference}, {"y": test}, statistics=False)["y"]
    assert light.passed == full.passed
    if case == "far":  # elsewhere near-ties may rank differently in float32
        assert light.worst_index == full.worst_index == (2, 7)
    assert light.max_abs == pytest.approx(full.max_abs, rel=1e-6)
    assert light.nonfinite_mismatches == full.nonfinite_mismatches
    assert light.median_abs is light.cosine is light.min_atol is light.top5_overlap is None
    assert full.median_abs is not None and full.min_atol is not None


def test_verdict_alone_keeps_the_gates_it_is_asked_for(logits):
    swapped = logits.copy()
    swapped[0] = logits[1]
    gated = tolerance_for("fp16")
    light = compare_outputs({"y": logits}, {"y": swapped}, gated, statistics=False)
    assert not light and light["y"].top1_agreement == 0.75 and "top-1 agreement" in light.reason
    mean = Tolerance(atol=1e-3, rtol=0, check_error_stat="mean")
    assert compare_outputs({"y": logits}, {"y": logits + 1e-4}, mean, statistics=False)


def test_scaled_to_makes_atol_relative_to_the_largest_finite_value(logits):
    tolerance = Tolerance(atol=1e-4, rtol=0, check_error_stat="max")
    assert scaled_to(tolerance, np.full(3, 0.5, np.float32)).atol == 1e-4  # max(1, ...)
    big = np.array([-300.0, 2.0, np.nan, np.inf], np.float32)
    scaled = scaled_to(tolerance, big)
    assert scaled.atol == pytest.approx(3e-2) and scaled.check_error_stat == "max"
    assert scaled_to(tolerance, np.array([], np.float32)).atol == 1e-4
    # the exporter's rule: within 1e-4 x max(1, max|logit|) passes, beyond fails
    logits = np.array([[250.0, -10.0]], np.float32)
    rule = scaled_to(tolerance, logits)
    assert compare_outputs({"y": logits}, {"y": logits + np.float32(0.02)}, rule)
    assert not compare_outputs({"y": logits}, {"y": logits + np.float32(0.03)}, rule)

