"""PaddleClas's figure, redrawn from bench records: latency against top-1 accuracy per family.

One colour per family; measured medians as filled markers joined by a solid line, the
published figures as hollow markers joined by a dashed line, every point labelled with the
model's short name (its family's ``short_name``); a model without a published top-1 has no
point. Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend
switch), imported only when a figure is asked for.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import files
from core.spec import FP32
from exporter.specs import SPECS
from exporter.zoo import family_of
from validation.tables import published_ms

Record = dict[str, Any]


def is_crossrt_figure(path: Path) -> bool:
    """A PNG that matplotlib wrote (its Software tag), as :func:`latency_accuracy_figure` does."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"Matplotlib" in head


def short_name(model: str) -> str:
    """EfficientNetB0 -> B0, ResNeXt101_32x8d_wsl -> 32x8d, as PaddleClas's figure labels them
    (a name outside the registry stays as it is)."""
    spec = SPECS.get(model)
    return family_of(spec).short_name(model) if spec else model


def choose_precision(records: Sequence[Record], batch_size: int = 1) -> str:
    """FP32 when it was measured at this batch size (comparable on every machine), else FP16."""
    measured = {r["precision"] for r in records
                if r["status"] == "ok" and r["batch_size"] == batch_size}
    return FP32 if FP32 in measured or not measured else sorted(measured)[0]


def figure_points(records: Sequence[Record], table: str, precision: str, batch_size: int,
                  ) -> dict[str, dict[str, list[tuple[float, float, str]]]]:
    """family -> {"measured": [...], "published": [...]} of (latency ms, top-1, label)."""
    order = {name: i for i, name in enumerate(SPECS)}
    models = sorted({r["model"] for r in records}, key=lambda m: order.get(m, len(order)))
    points: dict[str, dict[str, list[tuple[float, float, str]]]] = {}
    for model in models:
        spec = SPECS.get(model)
        top1 = spec.published.top1 if spec else None
        if spec is None or top1 is None:  # a model without a published top-1 has no point
            continue
        series = points.setdefault(spec.family, {"measured": [], "published": []})
        measured = [r for r in records if r["model"] == model and r["status"] == "ok"
                    and r["precision"] == precision and r["batch_size"] == batch_size]
        if measured:
            series["measured"].append((measured[-1]["latency_ms"]["median"], top1,
                                       short_name(model)))
        if (published := published_ms(spec, table, precision, batch_size)) is not None:
            series["published"].append((published, top1, short_name(model)))
    return points


def latency_accuracy_figure(records: Sequence[Record], path: str | Path, *, table: str = "t4",
                            precision: str | None = None, batch_size: int = 1) -> Path:
    """Write the PNG (atomically) and return its path."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    precision = precision or choose_precision(records, batch_size)
    points = figure_points(records, table, precision, batch_size)
    fig = Figure(figsize=(8, 5.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    latencies: list[float] = []
    for index, (family, series) in enumerate(points.items()):
        colour = f"C{index}"
        for kind, style, face in (("measured", "-", colour), ("published", "--", "none")):
            if not series[kind]:
                continue
            xs, ys, labels = zip(*sorted(series[kind]))
            latencies.extend(xs)
            source = "measured here" if kind == "measured" else f"published, {table.upper()} GPU"
            ax.plot(xs, ys, style, marker="o", color=colour, markerfacecolor=face,
                    label=f"{family} ({source})")
            for x, y, label in zip(xs, ys, labels):
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=colour)
    if latencies and max(latencies) / min(latencies) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.margins(x=0.12, y=0.08)  # room for the point labels
    ax.set_xlabel(f"{precision.upper()} latency at batch size {batch_size} (ms, median)")
    ax.set_ylabel("ImageNet top-1 accuracy (published)")
    ax.set_title("Latency against accuracy: measured (filled) and published (hollow)")
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend(fontsize=8, loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return files.write_atomic(path, buffer.getvalue())
