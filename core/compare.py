"""Compare two sets of outputs: one pure function, a structured result, no printing, no raising.

The one comparison rule of crossrt: validation's verdicts, the exporter's own check against
Paddle and localisation's intermediate tensors all apply it (it lives in the exporter, the
lowest package, so that the exporter can use it; ``core.compare`` is its public name).

Pass rule per output (and every rule must hold):
- same shape;
- NaN/Inf only where the reference has the same non-finite value (NaN with NaN, +Inf with +Inf);
- with ``check_error_stat="elemwise"`` (the default), every finite element satisfies
  ``|test - ref| <= atol + rtol * |ref|``: numpy's ``isclose`` rule, as the issue asks.
  (Polygraphy's elemwise rule is ``|d| <= atol or |d| <= rtol*|ref|``, at most 2x stricter.)
- with ``max``/``mean``/``median``/``quantile``: Polygraphy's ``CompareFunc.simple`` rule
  (``SimpleThreshold.passed``): the statistic of the absolute error is at most ``atol`` OR the
  same statistic of the relative error is at most ``rtol``; so ``--check-error-stat`` means what
  it means in ``polygraphy run``. The relative error divides by ``|ref|``, with zeros replaced by
  2.22e-16 as Polygraphy does, so every statistic stays finite.
- with ``min_top1_agreement``, the share of samples whose argmax agrees is at least that, for
  every output shaped like logits ``[N, C]``.
A reference or test output that is missing fails the comparison.
:func:`scaled_to` makes atol relative to an output's magnitude, for outputs whose scale is not
known in advance (the exporter's check, intermediate tensors).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from core.errors import UsageError
from core.spec import FP16, FP32, Precision

ERROR_STATS = ("elemwise", "max", "mean", "median", "quantile")
_REL_EPSILON = 2.220446049250313e-16  # Polygraphy's stand-in for |ref| == 0
_TOPK = 5


@dataclass(frozen=True)
class Tolerance:
    """What a comparison must meet. Build one with :func:`tolerance_for`."""

    atol: float
    rtol: float
    check_error_stat: str = "elemwise"
    min_top1_agreement: float | None = None
    error_quantile: float = 0.99  # the quantile checked when check_error_stat == "quantile"
    why: str = ""  # where the figures come from, for reports

    def __post_init__(self) -> None:
        if not (0 <= self.atol < math.inf and 0 <= self.rtol < math.inf):  # and NaN
            raise UsageError(f"tolerances must be finite and >= 0 (an infinite one passes "
                             f"everything), got atol={self.atol} rtol={self.rtol}")
        if self.check_error_stat not in ERROR_STATS:
            raise UsageError(f"unknown error statistic {self.check_error_stat!r}; "
                             f"choose one of {', '.join(ERROR_STATS)}")
        if self.min_top1_agreement is not None and not 0 <= self.min_top1_agreement <= 1:
            raise UsageError(f"--min-top1-agreement must be within [0, 1], "
                             f"got {self.min_top1_agreement}")
        if not 0 <= self.error_quantile <= 1:
            raise UsageError(f"error quantile must be within [0, 1], got {self.error_quantile}")

    def describe(self) -> str:
        stat = "" if self.check_error_stat == "elemwise" else f" on {self.check_error_stat}"
        gate = ("" if self.min_top1_agreement is None
                else f", top-1 agreement >= {self.min_top1_agreement:g}")
        return f"atol {self.atol:g}, rtol {self.rtol:g}{stat}{gate}"


# Defaults per precision of the runtime under test, always against an FP32 reference.
DEFAULT_TOLERANCES: dict[Precision, Tolerance] = {
    # FP32 runtimes differ from Paddle only by float32 reassociation: measured on logits of
    # O(1) (facts file): EfficientNetB0 6e-6, B7 4e-5, ResNeXt101_32x8d 5e-4. atol 1e-3 keeps
    # a 2x margin over the worst of these while faults move logits by 1e-2 (1% weight error)
    # to 20 (BGR input). rtol stays small so that large logits do not open the gate.
    FP32: Tolerance(atol=1e-3, rtol=1e-4,
                    why="float32 rounding: measured 6e-6 (B0) to 5e-4 (ResNeXt101_32x8d)"),
    # FP16 keeps 11 significant bits (unit roundoff 4.9e-4); through 80+ layers logits of
    # O(1..10) move by 1e-3..1e-1: measured FP16 vs FP32 graph on ONNX Runtime CPU, synthetic
    # EfficientNetB0, max abs 2.7e-3 on photographs and up to 8.8e-2 on random inputs. The
    # numbers get a loose gate (still catches an overflowing layer: Inf/NaN, or errors of
    # O(1..100)), and the predictions must not change. ONNX Runtime's CPU FP16 kernels are
    # coarser than GPU ones: ResNeXt101_32x8d's FP16 graph on CPU misses this gate (max abs 0.48).
    FP16: Tolerance(atol=1e-1, rtol=2e-2, min_top1_agreement=1.0,
                    why="float16 has 11 significant bits: logits move by up to ~1e-1, "
                        "so predictions are gated instead"),
}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities of logits (shifted by the row's max: no overflow)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def tolerance_for(precision: str = FP32, *, atol: float | None = None,
                  rtol: float | None = None, check_error_stat: str | None = None,
                  min_top1_agreement: float | None = None,
                  error_quantile: float | None = None) -> Tolerance:
    """The precision's default tolerance with every option that is not None overriding it."""
    try:
        precision = Precision(precision)
    except ValueError:
        raise UsageError(f"unknown precision {precision!r}; choose one of "
                         f"{', '.join(DEFAULT_TOLERANCES)}") from None
    given = {"atol": atol, "rtol": rtol, "check_error_stat": check_error_stat,
             "min_top1_agreement": min_top1_agreement, "error_quantile": error_quantile}
    overrides: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    base = DEFAULT_TOLERANCES[precision]
    return replace(base, **overrides, why=base.why if not overrides else "set by the caller")


@dataclass(frozen=True)
class OutputComparison:
    """One output of the test side against the same output of the reference."""

    name: str
    passed: bool
    reason: str | None  # one line when failed
    reference_shape: tuple[int, ...]
    test_shape: tuple[int, ...]
    # Error statistics over the elements finite on both sides (None when shapes differ).
    max_abs: float | None = None
    mean_abs: float | None = None
    median_abs: float | None = None
    p99_abs: float | None = None
    max_rel: float | None = None
    mean_rel: float | None = None
    median_rel: float | None = None
    p99_rel: float | None = None
    worst_index: tuple[int, ...] | None = None  # where the tolerance is missed by the most
    cosine: float | None = None
    reference_nan: int = 0
    reference_inf: int = 0
    test_nan: int = 0
    test_inf: int = 0
    nonfinite_mismatches: int = 0  # NaN/Inf where the reference has something else
    top1_agreement: float | None = None  # share of samples with the same argmax ([N, C] only)
    top5_overlap: float | None = None  # mean |top5(ref) & top5(test)| / 5
    # The smallest atol that passes at the given rtol, and the smallest rtol at the given atol
    # (inf: none does, e.g. NaN where the reference is finite, or an error where |ref| == 0).
    min_atol: float | None = None
    min_rtol: float | None = None

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


@dataclass(frozen=True)
class ComparisonResult:
    """All outputs of one comparison; truthy iff every output passed and none is missing."""

    passed: bool
    reason: str | None
    tolerance: Tolerance
    outputs: tuple[OutputComparison, ...]
    missing: tuple[str, ...] = ()  # in the reference, not in the test
    extra: tuple[str, ...] = ()  # in the test, not in the reference

    def __bool__(self) -> bool:
        return self.passed

    def __getitem__(self, name: str) -> OutputComparison:
        for output in self.outputs:
            if output.name == name:
                return output
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"passed": self.passed, "reason": self.reason,
                          "tolerance": asdict(self.tolerance),
                          "outputs": [asdict(o) for o in self.outputs],
                          "missing": list(self.missing), "extra": list(self.extra)})


def compare_outputs(reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                    tolerance: Tolerance | None = None, *,
                    statistics: bool = True) -> ComparisonResult:
    """Compare every output of ``test`` with the same-named output of ``reference``.

    ``statistics=False`` computes only what the verdict needs (the max abs error, the worst
    element, and the statistic or top-1 agreement the tolerance gates on), in float32 when
    neither side is wider, and leaves the other figures None: for callers that compare
    hundreds of tensors (localisation).
    """
    tolerance = tolerance or DEFAULT_TOLERANCES[FP32]
    missing = tuple(name for name in reference if name not in test)
    extra = tuple(name for name in test if name not in reference)
    outputs = tuple(_compare_one(name, np.asarray(reference[name]), np.asarray(test[name]),
                                 tolerance, statistics)
                    for name in reference if name in test)
    reasons = [o.reason for o in outputs if o.reason]
    if missing:
        reasons.insert(0, f"missing output(s) {', '.join(missing)} "
                          f"(test has {', '.join(test) or 'none'})")
    if extra:
        reasons.append(f"unexpected output(s) {', '.join(extra)} not in the reference")
    if (tolerance.min_top1_agreement is not None and outputs
            and all(o.top1_agreement is None for o in outputs)):
        reasons.append("a top-1 agreement gate was asked for but no output is shaped [N, C]")
    if not reference:
        reasons.append("the reference has no outputs")
    return ComparisonResult(passed=not reasons, reason="; ".join(reasons) or None,
                            tolerance=tolerance, outputs=outputs, missing=missing, extra=extra)


def scaled_to(tolerance: Tolerance, reference: np.ndarray) -> Tolerance:
    """``tolerance`` with atol multiplied by max(1, max|reference|) (over finite elements).

    Float32 rounding grows with the magnitude of the values: an output of O(1) keeps atol as
    it is, one of O(100) is allowed 100 atol. The exporter's check (README: 1e-4 x max(1,
    max|logit|) for EfficientNet) and localisation's intermediate tensors, which range over
    orders of magnitude, use it.
    """
    values = np.asarray(reference)
    magnitude = float(np.max(np.abs(values), initial=0.0))
    if not math.isfinite(magnitude):  # NaN or Inf somewhere: the largest finite value
        magnitude = float(np.max(np.abs(values), where=np.isfinite(values), initial=0.0))
    return replace(tolerance, atol=tolerance.atol * max(1.0, magnitude))


def degenerate_reference(outputs: Mapping[str, np.ndarray], *,
                         atol: float = DEFAULT_TOLERANCES[FP32].atol) -> str | None:
    """A warning when the reference cannot tell runtimes apart, else None.

    Logits that barely vary (over classes, or over inputs) make any two runtimes agree: the
    case of uncalibrated synthetic EfficientNet weights, whose logits end near 1e-12.
    Spread below 10x atol is flagged, since errors of the size atol allows would then be
    comparable to the signal itself.
    """
    floor = max(10 * atol, 1e-6)
    for name, value in outputs.items():
        array = np.asarray(value, dtype=np.float64)
        if array.ndim < 2 or array.shape[-1] < 2 or not np.isfinite(array).all():
            continue
        flat = array.reshape(array.shape[0], -1)
        over_classes = float(flat.std(axis=1).max())
        over_inputs = float(flat.std(axis=0).max()) if flat.shape[0] > 1 else math.inf
        if over_classes < floor or over_inputs < floor:
            axis, spread = (("classes", over_classes) if over_classes < floor
                            else ("inputs", over_inputs))
            return (f"reference output {name!r} is nearly constant (std over {axis} at most "
                    f"{spread:.1e}, below 10x atol): any two runtimes agree on it; the weights "
                    f"are probably degenerate (uncalibrated synthetic weights?)")
    return None


# --------------------------------------------------------------------------------------------

def _compare_one(name: str, ref: np.ndarray, test: np.ndarray, tol: Tolerance,
                 statistics: bool = True) -> OutputComparison:
    shapes: dict[str, Any] = {"reference_shape": tuple(ref.shape), "test_shape": tuple(test.shape)}
    if ref.shape != test.shape:
        return OutputComparison(name=name, passed=False, **shapes,
                                reason=f"{name}: shape {list(test.shape)} != reference "
                                       f"{list(ref.shape)}")
    # Figures in float64; a verdict alone (statistics=False) in float32 when both sides fit:
    # it resolves errors of 1e-7 relative, far below any tolerance, at half the memory traffic.
    narrow = not statistics and all(np.issubdtype(a.dtype, np.floating) and a.dtype.itemsize <= 4
                                    for a in (ref, test))
    precision = np.float32 if narrow else np.float64
    ref_values, test_values = np.asarray(ref, precision), np.asarray(test, precision)
    # The common case, every element finite on both sides, masks nothing (finite None). A sum
    # is finite only when every term is (one that overflows is only checked element-wise).
    with np.errstate(invalid="ignore", over="ignore"):
        everywhere = bool(np.isfinite(ref_values.sum() + test_values.sum()))
    finite = None if everywhere else np.isfinite(ref_values) & np.isfinite(test_values)
    counts: dict[str, Any] = dict.fromkeys(_COUNTS, 0)
    nonfinite_bad = None
    ref_finite, test_finite = ref_values, test_values
    if finite is not None:
        ref_bad, test_bad = ~np.isfinite(ref_values), ~np.isfinite(test_values)
        # The same non-finite value at the same place is agreement (NaN == NaN here on purpose).
        same = (ref_values == test_values) | (np.isnan(ref_values) & np.isnan(test_values))
        nonfinite_bad = (ref_bad | test_bad) & ~(ref_bad & test_bad & same)
        counts = {"reference_nan": int(np.isnan(ref_values).sum()),
                  "reference_inf": int(np.isinf(ref_values).sum()),
                  "test_nan": int(np.isnan(test_values).sum()),
                  "test_inf": int(np.isinf(test_values).sum()),
                  "nonfinite_mismatches": int(nonfinite_bad.sum())}
        ref_finite, test_finite = (np.where(finite, ref_values, 0.0),
                                   np.where(finite, test_values, 0.0))

    def where_finite(values: np.ndarray) -> np.ndarray:
        return values.ravel() if finite is None else values[finite]

    absdiff = np.subtract(test_finite, ref_finite)
    np.abs(absdiff, out=absdiff)
    magnitude = np.abs(ref_finite)
    stat = tol.check_error_stat
    wanted = _STATISTICS if statistics else tuple({"max", stat} - {"elemwise"})
    errors = _error_stats(where_finite(absdiff), where_finite(magnitude), tol.error_quantile,
                          wanted, relative=statistics or stat != "elemwise")
    if stat == "elemwise":
        worst, min_atol, min_rtol, failure = _check_elemwise(absdiff, magnitude, finite, tol,
                                                             where_finite, statistics)
    else:
        worst, min_atol, min_rtol, failure = _check_statistic(absdiff, errors, tol)
    reasons = [failure] if failure else []
    if nonfinite_bad is not None and counts["nonfinite_mismatches"]:
        reasons.insert(0, _nonfinite_reason(ref_values, test_values, nonfinite_bad))
        if statistics:
            min_atol = min_rtol = math.inf  # no tolerance makes a NaN pass

    top1 = top5 = cosine = None
    if statistics or tol.min_top1_agreement is not None:
        top1, top5 = _agreement(ref_values, test_values)
    if statistics:
        cosine = _cosine(where_finite(ref_values), where_finite(test_values))
    if tol.min_top1_agreement is not None and top1 is not None and top1 < tol.min_top1_agreement:
        reasons.append(f"top-1 agreement {top1:.2f} < {tol.min_top1_agreement:g} "
                       f"({round(top1 * ref.shape[0])}/{ref.shape[0]} samples)")
    return OutputComparison(
        name=name, passed=not reasons, **shapes,
        reason=f"{name}: {'; '.join(reasons)}" if reasons else None,
        max_abs=errors["max_abs"], mean_abs=errors.get("mean_abs"),
        median_abs=errors.get("median_abs"), p99_abs=errors.get("p99_abs"),
        max_rel=errors.get("max_rel"), mean_rel=errors.get("mean_rel"),
        median_rel=errors.get("median_rel"), p99_rel=errors.get("p99_rel"),
        worst_index=worst, cosine=cosine,
        **counts, top1_agreement=top1, top5_overlap=top5, min_atol=min_atol, min_rtol=min_rtol)


def _check_elemwise(absdiff: np.ndarray, magnitude: np.ndarray, finite: np.ndarray | None,
                    tol: Tolerance, where_finite: Callable[[np.ndarray], np.ndarray],
                    minimums: bool,
                    ) -> tuple[tuple[int, ...], float | None, float | None, str | None]:
    """numpy's rule per element: (worst index, min atol, min rtol, failure or None); the
    smallest passing tolerances only with ``minimums`` (None otherwise)."""
    excess = np.multiply(magnitude, tol.rtol)
    excess += tol.atol
    np.subtract(absdiff, excess, out=excess)  # what each element exceeds its allowance by
    if finite is not None:
        excess = np.where(finite, excess, -np.inf)
    if not excess.size:
        return (), 0.0, 0.0, None
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), excess.shape))
    min_atol, min_rtol = (_elemwise_minimums(where_finite(absdiff), where_finite(magnitude), tol)
                          if minimums else (None, None))
    if excess[worst] <= 0:
        return worst, min_atol, min_rtol, None
    smallest = f"; smallest passing atol {min_atol:.2e}" if min_atol is not None else ""
    return worst, min_atol, min_rtol, (
        f"abs error {absdiff[worst]:.2e} > atol {tol.atol:g} + rtol {tol.rtol:g}*|ref| at "
        f"{list(worst)} (|ref| {magnitude[worst]:.2e}){smallest}")


def _check_statistic(absdiff: np.ndarray, errors: Mapping[str, float], tol: Tolerance,
                     ) -> tuple[tuple[int, ...], float, float, str | None]:
    """Polygraphy's rule, an OR: the abs statistic within atol, or the rel one within rtol."""
    stat = tol.check_error_stat
    stat_abs, stat_rel = errors[f"{stat}_abs"], errors[f"{stat}_rel"]
    worst = (tuple(int(i) for i in np.unravel_index(int(np.argmax(absdiff)), absdiff.shape))
             if absdiff.size else ())
    min_atol = 0.0 if stat_rel <= tol.rtol else stat_abs
    min_rtol = 0.0 if stat_abs <= tol.atol else stat_rel
    if stat_abs <= tol.atol or stat_rel <= tol.rtol:
        return worst, min_atol, min_rtol, None
    return worst, min_atol, min_rtol, (
        f"{stat} abs error {stat_abs:.2e} > atol {tol.atol:g} and {stat} rel error "
        f"{stat_rel:.2e} > rtol {tol.rtol:g}")


_STATISTICS = ("max", "mean", "median", "p99", "quantile")
_COUNTS = ("reference_nan", "reference_inf", "test_nan", "test_inf", "nonfinite_mismatches")


def _error_stats(absdiff: np.ndarray, magnitude: np.ndarray, quantile: float,
                 wanted: Sequence[str] = _STATISTICS, relative: bool = True) -> dict[str, float]:
    """``wanted`` statistics of the abs error (and of the rel error, ``relative``) over the
    elements given: those finite on both sides."""
    kinds = [("abs", absdiff)]
    if relative:
        kinds.append(("rel", absdiff / np.where(magnitude == 0, _REL_EPSILON, magnitude)))
    stats: dict[str, float] = {}
    for kind, values in kinds:
        if not values.size:  # nothing finite to compare: no error to speak of
            values = np.zeros(1)
        for stat in wanted:
            stats[f"{stat}_{kind}"] = float(
                values.max() if stat == "max" else values.mean() if stat == "mean"
                else np.median(values) if stat == "median"
                else np.quantile(values, 0.99 if stat == "p99" else quantile))
    return stats


def _elemwise_minimums(absdiff: np.ndarray, magnitude: np.ndarray,
                       tol: Tolerance) -> tuple[float, float]:
    """The exact (to the last ulp) smallest atol at ``tol.rtol`` and rtol at ``tol.atol``."""
    if not absdiff.size:
        return 0.0, 0.0

    def passes_atol(atol: float) -> bool:
        return bool(np.all(absdiff <= atol + tol.rtol * magnitude))

    def passes_rtol(rtol: float) -> bool:
        return bool(np.all(absdiff <= tol.atol + rtol * magnitude))

    min_atol = _tighten(passes_atol, max(0.0, float(np.max(absdiff - tol.rtol * magnitude))))
    over = absdiff > tol.atol
    if not over.any():
        min_rtol = 0.0
    elif np.any(magnitude[over] == 0):
        min_rtol = math.inf  # an error where the reference is 0: no rtol covers it
    else:
        min_rtol = _tighten(passes_rtol,
                            float(np.max((absdiff[over] - tol.atol) / magnitude[over])))
    return min_atol, min_rtol


def _tighten(passes, estimate: float, steps: int = 64) -> float:
    """Move a float estimate by ulps until it is the smallest value for which passes() holds."""
    value = estimate
    for _ in range(steps):
        if passes(value):
            break
        value = float(np.nextafter(value, math.inf))
    for _ in range(steps):
        lower = float(np.nextafter(value, -math.inf))
        if value <= 0 or not passes(lower):
            break
        value = lower
    return value


def _agreement(ref: np.ndarray, test: np.ndarray) -> tuple[float | None, float | None]:
    """Top-1 agreement and top-5 overlap over the batch, for logits shaped [N, C]."""
    if ref.ndim != 2 or ref.shape[0] == 0 or ref.shape[1] < 2:
        return None, None
    top1 = float(np.mean(ref.argmax(axis=1) == test.argmax(axis=1)))
    k = min(_TOPK, ref.shape[1])
    ref_top = np.argpartition(-ref, k - 1, axis=1)[:, :k]
    test_top = np.argpartition(-test, k - 1, axis=1)[:, :k]
    overlap = [len(np.intersect1d(r, t)) / k for r, t in zip(ref_top, test_top)]
    return top1, float(np.mean(overlap))


def _cosine(ref: np.ndarray, test: np.ndarray) -> float | None:
    if not ref.size:
        return None
    norms = float(np.linalg.norm(ref)) * float(np.linalg.norm(test))
    if norms == 0:
        return 1.0 if not ref.any() and not test.any() else 0.0
    return float(np.dot(ref.ravel(), test.ravel()) / norms)


def _nonfinite_reason(ref: np.ndarray, test: np.ndarray, bad: np.ndarray) -> str:
    first = [int(i) for i in np.argwhere(bad)[0]]
    kinds = []
    for label, where in (("NaN", np.isnan(test) & bad), ("Inf", np.isinf(test) & bad)):
        if where.any():
            kinds.append(f"{int(where.sum())} {label} in test")
    lost = (np.isfinite(test) & bad).sum()
    if lost:
        kinds.append(f"{int(lost)} finite values where the reference is NaN/Inf")
    return f"{', '.join(kinds)} not matched by the reference (first at {first})"


def to_jsonable(value: Any) -> Any:
    """Turn tuples into lists and non-finite floats into strings, so json.dumps is strict."""
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan"
    return value
