"""``crossrt accuracy``'s report: a terminal table, markdown and JSON of an :class:`AccuracyRun`.

Pure functions returning strings and dicts; the CLI prints them and writes the files. Every
rendering puts PaddleClas's published Top1/Top5 beside the measured figures, and says loudly
when the weights are synthetic (top-1/top-5 against ImageNet labels are then meaningless;
agreement between runtimes still counts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.files import OutputKind, first_line_starts, json_with_format
from validation.report import text_table, weights_warning

if TYPE_CHECKING:
    from validation.accuracy import AccuracyRun

FORMAT = "crossrt-accuracy-report/1"
JSON_REPORT = OutputKind("accuracy report", json_with_format(FORMAT))
MARKDOWN_REPORT = OutputKind("accuracy report", first_line_starts("# Accuracy of "))

HEADER = ("runtime", "images", "top-1", "top-5", "top-1 agreement", "differ",
          "published top-1 / top-5", "reference top-1 / top-5", "note")
MEANINGLESS = "synthetic weights: top-1/top-5 meaningless, agreement counts"


def rows(run: AccuracyRun) -> list[tuple[str, ...]]:
    """One row of HEADER's cells per runtime, the reference first; PaddleClas's figures beside."""
    pub = run.published
    seed = (f"{_fraction(pub['top1'], 3)} / {_fraction(pub['top5'], 3)}",
            f"{_fraction(pub['ref_top1'], 3)} / {_fraction(pub['ref_top5'], 3)}")
    out: list[tuple[str, ...]] = []
    for result in run.results:
        is_ref = result.runtime == run.reference
        out.append((result.runtime + (" (reference)" if is_ref else ""), str(result.images),
                    _fraction(result.top1), _fraction(result.top5),
                    "-" if is_ref else _fraction(result.agreement),
                    "-" if is_ref else str(result.differ), *seed,
                    MEANINGLESS if run.synthetic else ""))
    return out


def render_table(run: AccuracyRun) -> str:
    """Plain text: one line per runtime, then the differing and excluded images and gates."""
    lines = [(f"{run.model}: accuracy on {run.dataset['evaluated']} images of "
              f"{run.dataset['root']} ({run.dataset['layout']} layout), reference "
              f"{run.reference}, {run.target}")]
    lines.append(text_table([HEADER, *rows(run)]))
    lines.append("published: PaddleClas's Top1/Top5; reference: the paper's, as PaddleClas "
                 "lists them (Reference Top1/Top5)")
    for result in run.results:
        if result.examples:
            def named(index: int) -> str:
                names = run.class_names
                return f"{names[index]} ({index})" if 0 <= index < len(names) else str(index)

            shown = ", ".join(f"{e['path']} ({run.reference} {named(e[run.reference])}, "
                              f"{result.runtime} {named(e[result.runtime])})"
                              for e in result.examples)
            lines.append(f"{result.runtime}: {result.differ} images changed their top-1, e.g. "
                         f"{shown}")
    if run.excluded:
        shown = "; ".join(f"{path}: {why}" for path, why in run.excluded[:10])
        more = f" and {len(run.excluded) - 10} more" if len(run.excluded) > 10 else ""
        lines.append(f"EXCLUDED {len(run.excluded)} missing or unreadable images (for every "
                     f"runtime): {shown}{more}")
    if run.resumed:
        lines.append(f"resumed: {run.resumed} images from {run.predictions}")
    if (speed := run.images_per_s) is not None:
        lines.append(f"{speed:.1f} images/s")
    if run.predictions is not None:
        lines.append(f"predictions: {run.predictions}")
    lines += [f"FAIL {failure}" for failure in run.failures]
    lines += [f"WARNING {w}" for w in _warnings(run)]
    return "\n".join(lines) + "\n"


def render_markdown(run: AccuracyRun) -> str:
    gates = ", ".join(f"{k} {v}" for k, v in run.gates.items() if v is not None)
    lines = [f"# Accuracy of {run.model}: {'PASS' if run.passed else 'FAIL'}", ""]
    lines += [f"> **Warning:** {w}" for w in _warnings(run)]
    lines += ["", f"- Reference runtime: {run.reference}", f"- Target: `{run.target}`",
              f"- Dataset: {', '.join(f'{k} {v}' for k, v in run.dataset.items())}",
              f"- Excluded (missing or unreadable, for every runtime): {len(run.excluded)}",
              f"- Gates: {gates or 'none'}", "",
              "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(run)]
    if run.failures:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in run.failures]
    if run.excluded:
        lines += ["", "## Excluded images", ""] + [f"- `{p}`: {w}" for p, w in run.excluded]
    return "\n".join(lines) + "\n"


def report_dict(run: AccuracyRun) -> dict[str, Any]:
    return {"format": FORMAT, "model": run.model, "passed": run.passed, "target": run.target,
            "reference": run.reference, "weights": run.weights,
            "synthetic_weights": run.synthetic, "dataset": run.dataset,
            "published": run.published, "gates": run.gates,
            "results": [r.to_dict() for r in run.results],
            "excluded": [{"path": p, "reason": w} for p, w in run.excluded],
            "failures": list(run.failures), "warnings": _warnings(run),
            "predictions": str(run.predictions) if run.predictions else None,
            "resumed": run.resumed, "seconds": run.seconds,
            "images_per_s": run.images_per_s, "versions": run.versions}


def synthetic_note(weights: dict[str, Any]) -> str | None:
    """validate's synthetic-weights line, said of accuracy."""
    synthetic = weights_warning(weights)
    if synthetic is None:
        return None
    return (synthetic.replace("runtimes were compared", "accuracy was measured")
            + "; top-1/top-5 against ImageNet labels are meaningless, agreement between "
            "runtimes still counts")


def _warnings(run: AccuracyRun) -> list[str]:
    note = synthetic_note(run.weights)
    return ([note] if note else []) + list(run.warnings)


def _fraction(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
