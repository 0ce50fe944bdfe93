"""Render comparison records as a terminal table, markdown, and a JSON-able report.

Pure functions returning strings and dicts; the CLI prints them and writes the files. Every
rendering says loudly when the weights are synthetic: agreement between runtimes then proves
the toolchain, not the accuracy of a trained model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.compare import ComparisonResult, to_jsonable
from core.files import OutputKind, first_line_starts, json_with_format

if TYPE_CHECKING:
    from validation.localize import Localization

FORMAT = "crossrt-validation-report/1"
JSON_REPORT = OutputKind("validation report", json_with_format(FORMAT))
MARKDOWN_REPORT = OutputKind("validation report", first_line_starts("# Validation of "))
COLUMNS = ("runtime", "batch", "max abs", "p99 abs", "cosine", "top-1 agree", "min atol",
           "result")


@dataclass(frozen=True)
class ComparisonRecord:
    """One runtime at one batch size against the reference."""

    runtime: str
    batch_size: int
    result: ComparisonResult
    inputs: str = ""  # which inputs, when several sets ran ("photos", "random")
    localization: Localization | None = None  # where it went wrong, when it failed


@dataclass(frozen=True)
class ReportContext:
    """What the comparisons were made on; goes into every rendering."""

    model: str
    reference: str  # the reference runtime
    weights: Mapping[str, Any] = field(default_factory=dict)  # the manifest's weights source
    inputs: Mapping[str, Any] = field(default_factory=dict)  # photo names, random count, seed
    versions: Mapping[str, str] = field(default_factory=dict)
    target: str = ""  # export directory or model file
    warnings: tuple[str, ...] = ()  # degenerate reference, edited graph, ...
    # What the reference predicts for each photograph: (photo, class name, probability)
    predictions: tuple[tuple[str, str, float], ...] = ()


def weights_warning(weights: Mapping[str, Any]) -> str | None:
    """The loud line for synthetic weights (manifest ``{"kind": "synthetic", "seed": ...}``)."""
    if weights.get("kind") != "synthetic":
        return None
    seed = f" (seed {weights['seed']})" if "seed" in weights else ""
    return (f"SYNTHETIC WEIGHTS{seed}: runtimes were compared on calibrated random weights; "
            f"this proves the conversion, not ImageNet accuracy (pass --weights for real ones)")


def summary(record: ComparisonRecord) -> dict[str, Any]:
    """The table's figures for one record: the worst value over the record's outputs."""
    outputs = record.result.outputs

    def worst(attr: str, pick: Any = max) -> float | None:
        values = [getattr(o, attr) for o in outputs if getattr(o, attr) is not None]
        return pick(values) if values else None

    top1 = worst("top1_agreement", min)
    # agreement counts samples: every batch of the record, not one batch's size
    samples = next((o.reference_shape[0] for o in outputs if o.top1_agreement == top1), None)
    return {"runtime": record.runtime, "batch": record.batch_size, "inputs": record.inputs,
            "max_abs": worst("max_abs"), "p99_abs": worst("p99_abs"),
            "cosine": worst("cosine", min),
            "top1_agreed": None if top1 is None or samples is None else round(top1 * samples),
            "top1_samples": samples if top1 is not None else None,
            "top1_agreement": top1, "min_atol": worst("min_atol"),
            "passed": record.result.passed}


def text_table(rows: Sequence[Sequence[Any]], *, rule: bool = False) -> str:
    """The one terminal table of crossrt: ``rows[0]`` is the header; columns left-aligned,
    two spaces apart, lines right-stripped (stable for logs and tests); with ``rule``, a line
    of dashes under the header. Rendered by rich (display widths, not character counts),
    without box, colour, markup or wrapping, whatever the terminal."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    header, *body = rows
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="none")
    for name in header:
        table.add_column(Text(str(name)), no_wrap=True)
    if rule:
        table.add_row(*(_Rule() for _ in header))
    for row in body:
        table.add_row(*(Text(str(cell)) for cell in row))
    text = io.StringIO()
    Console(file=text, width=1 << 20, color_system=None, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in text.getvalue().splitlines())


class _Rule:
    """Dashes as wide as their column: measured as one character, so that the column keeps
    the width of its other cells."""

    def __rich_measure__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        return Measurement(1, 1)

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.segment import Segment

        yield Segment("-" * options.max_width)


def render_table(records: Sequence[ComparisonRecord],
                 context: ReportContext | None = None) -> str:
    """A plain-text table (stable for logs and tests), then failures and warnings."""
    with_inputs = any(r.inputs for r in records)
    header = list(COLUMNS[:2]) + (["inputs"] if with_inputs else []) + list(COLUMNS[2:])
    rows = [_cells(summary(r), with_inputs) for r in records]
    lines = []
    if context is not None:
        lines.append(f"{context.model}: reference {context.reference}"
                     + (f", {context.target}" if context.target else ""))
    lines.append(text_table([header, *rows], rule=True))
    if context is not None and context.predictions:
        lines.append(f"{context.reference} predicts: {_predictions(context)}")
    lines += [f"FAIL {line}" for line in _failure_lines(records)]
    lines += [f"WARNING {w}" for w in _warnings(context)]
    return "\n".join(lines) + "\n"


def render_markdown(records: Sequence[ComparisonRecord], context: ReportContext) -> str:
    """The full report as markdown: verdict, context, table, failures, versions."""
    passed = all(r.result.passed for r in records)
    with_inputs = any(r.inputs for r in records)
    header = list(COLUMNS[:2]) + (["inputs"] if with_inputs else []) + list(COLUMNS[2:])
    lines = [f"# Validation of {context.model}: {'PASS' if passed else 'FAIL'}", ""]
    lines += [f"> **Warning:** {w}" for w in _warnings(context)]
    lines += ["", f"- Reference runtime: {context.reference}"]
    if context.target:
        lines.append(f"- Target: `{context.target}`")
    lines.append(f"- Weights: {_describe_mapping(context.weights) or 'not recorded'}")
    lines.append(f"- Inputs: {_describe_mapping(context.inputs) or 'not recorded'}")
    if context.predictions:
        lines.append(f"- Reference predictions: {_predictions(context)}")
    tolerances = sorted({r.result.tolerance.describe() for r in records})
    lines.append(f"- Tolerance: {'; '.join(tolerances) or 'none'}")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(summary(r), with_inputs)) + " |" for r in records]
    failures = _failure_lines(records)
    if failures:
        lines += ["", "## Failures", ""] + [f"- {line}" for line in failures]
    if context.versions:
        lines += ["", "## Versions", ""]
        lines += [f"- {name} {version}" for name, version in sorted(context.versions.items())]
    return "\n".join(lines) + "\n"


def report_dict(records: Sequence[ComparisonRecord], context: ReportContext) -> dict[str, Any]:
    """Everything, JSON-able (strict: non-finite floats become strings)."""
    return to_jsonable({
        "format": FORMAT, "model": context.model, "passed": all(r.result.passed for r in records),
        "reference": context.reference, "target": context.target,
        "weights": dict(context.weights),
        "synthetic_weights": context.weights.get("kind") == "synthetic",
        "inputs": dict(context.inputs), "versions": dict(context.versions),
        "warnings": list(_warnings(context)),
        "predictions": [{"input": name, "class": label, "probability": p}
                        for name, label, p in context.predictions],
        "comparisons": [{**summary(r), "comparison": r.result.to_dict(),
                         "localization": (r.localization.to_dict() if r.localization else None)}
                        for r in records],
    })


# --------------------------------------------------------------------------------------------

def _cells(row: Mapping[str, Any], with_inputs: bool) -> list[str]:
    top1 = ("-" if row["top1_agreement"] is None
            else f"{row['top1_agreed']}/{row['top1_samples']}")
    cells = [row["runtime"], str(row["batch"])] + ([row["inputs"] or "-"] if with_inputs else [])
    return cells + [_number(row["max_abs"]), _number(row["p99_abs"]),
                    _number(row["cosine"], "{:.6f}"), top1, _number(row["min_atol"]),
                    "PASS" if row["passed"] else "FAIL"]


def _number(value: float | None, fmt: str = "{:.1e}") -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return fmt.format(value)


def _failure_lines(records: Sequence[ComparisonRecord]) -> list[str]:
    lines = []
    for record in records:
        if record.result.passed:
            continue
        where = f"{record.runtime} batch {record.batch_size}"
        where += f" ({record.inputs})" if record.inputs else ""
        lines.append(f"{where}: {record.result.reason}")
        if record.localization is not None:
            lines.append(f"{where}: {record.localization.summary()}")
    return lines


def _warnings(context: ReportContext | None) -> list[str]:
    if context is None:
        return []
    synthetic = weights_warning(context.weights)
    return ([synthetic] if synthetic else []) + list(context.warnings)


def _predictions(context: ReportContext) -> str:
    def shown(name: str) -> str:  # a file name that is not UTF-8 is shown escaped
        return name.encode("utf-8", "backslashreplace").decode("utf-8")

    return "; ".join(f"{shown(name)}: {label} ({p:.2f})"
                     for name, label, p in context.predictions)


def _describe_mapping(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())
