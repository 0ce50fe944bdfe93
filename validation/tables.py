"""Bench records rendered as PaddleClas's latency tables (markdown), as CSV and as a readable
report.

The markdown keeps PaddleClas's layout (``Models | Crop Size | Resize Short Size | FP16 Batch
Size=1 (ms) | ...``) and puts the published figure and the ratio beside each measured median:
``3.95 (3.40, ×1.16)``; "-" stands for a cell not run, failed, or not published. Pure
functions over records (the dicts :mod:`validation.bench` writes); nothing is measured here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from core.spec import BATCH_SIZES, LATENCY_TABLES, ModelSpec, Precision
from exporter.specs import SPECS
from validation.timing import NOISY_CV

MISSING = "-"
_LATENCY_KEYS = ("min", "median", "mean", "p90", "p99", "max")
CSV_COLUMNS = (
    "model", "family", "runtime", "table", "precision", "precision_used", "batch_size", "status",
    "reason", *(f"latency_{k}_ms" for k in _LATENCY_KEYS), "throughput_ips", "cv", "noisy",
    "iterations", "published_ms", "ratio", "crop_size", "resize_short", "published_top1",
    "threads", "warmup_ms", "duration_s", "min_iterations", "include_transfers", "machine",
    "runtime_info", "weights", "measured_at")

Record = dict[str, Any]


def published_ms(spec: ModelSpec, table: str, precision: str, batch_size: int) -> float | None:
    """PaddleClas's latency for one cell; None where its table prints "-" or has no such column."""
    if batch_size not in BATCH_SIZES:
        return None
    return spec.published.latency(table, precision)[BATCH_SIZES.index(batch_size)]


def ran_other_precision(record: Record) -> bool:
    """Whether the runner reports running another precision than the cell asked for.

    Runners describe what ran, e.g. "fp32" or "fp16 (Paddle-TRT subgraphs)"; the first word
    is the precision.
    """
    used = record.get("precision_used")
    return bool(used) and str(used).split()[0] != record["precision"]


def format_ms(value: float) -> str:
    """About three significant figures (3.40, 12.5, 316), never scientific notation."""
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3
    return f"{value:.{decimals}f}"


def cell_text(record: Record | None, published: float | None) -> str:
    """``measured (published, ×ratio)``, with "-" for what is missing on either side."""
    shown_published = MISSING if published is None else format_ms(published)
    if record is None or record["status"] != "ok":
        return MISSING if published is None else f"{MISSING} ({shown_published})"
    median = record["latency_ms"]["median"]
    measured = format_ms(median) + ("*" if ran_other_precision(record) else "")  # see notes
    if published is None:
        return f"{measured} ({MISSING})"
    ratio = median / published
    return f"{measured} ({shown_published}, ×{ratio:.2f})" if ratio >= 0.1 else \
        f"{measured} ({shown_published}, ×{ratio:.2g})"


def columns(table: str, records: Iterable[Record]) -> list[tuple[str, int]]:
    """(precision, batch size) columns: PaddleClas's, plus any other the records hold."""
    records = list(records)
    precisions = set(LATENCY_TABLES[table].precisions) | {r["precision"] for r in records}
    batch_sizes = set(BATCH_SIZES) | {r["batch_size"] for r in records}
    return [(p, b) for p in Precision if p in precisions for b in sorted(batch_sizes)]


def markdown_table(records: Sequence[Record], table: str = "t4") -> str:
    """PaddleClas's latency table for ``table`` with measured medians beside the published ones."""
    cols = columns(table, records)
    latest = {(r["model"], r["runtime"], r["precision"], r["batch_size"]): r for r in records}
    runtimes = list(dict.fromkeys(r["runtime"] for r in records))
    order = {name: i for i, name in enumerate(SPECS)}
    models = sorted({r["model"] for r in records}, key=lambda m: order.get(m, len(order)))
    header = ["Models", "Crop Size", "Resize Short Size",
              *(f"{p.upper()} Batch Size={b} (ms)" for p, b in cols)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        spec = SPECS.get(model)  # None: a model brought by the user, without published figures
        for runtime in runtimes:
            rows = [latest.get((model, runtime, p, b)) for p, b in cols]
            if not any(rows):
                continue
            sizes = next(r for r in rows if r)  # a record says its crop and resize sizes
            label = model if len(runtimes) == 1 else f"{model} ({runtime})"
            cells = [cell_text(row, published_ms(spec, table, p, b) if spec else None)
                     for row, (p, b) in zip(rows, cols)]
            lines.append("| " + " | ".join([label, str(sizes["crop_size"]),
                                             str(sizes["resize_short"]), *cells]) + " |")
    return "\n".join(lines) + "\n"


def machine_summary(machine: dict[str, Any]) -> str:
    """One line: the GPUs with driver and SM clock when present, else the CPU and its threads."""
    if gpus := machine.get("gpus"):
        return "; ".join(f"{g['name']} (sm {g['compute_capability']}, CUDA driver "
                         f"{g['driver']}, peak SM clock {g['max_sm_clock_mhz']} MHz)" for g in gpus)
    return (f"{machine.get('cpu', 'unknown CPU')}, {machine.get('usable_cpus')} usable of "
            f"{machine.get('logical_cpus')} logical CPUs")


def runtime_summary(info: dict[str, Any]) -> str:
    """A runner's ``describe()`` in one line: ``onnxruntime: onnxruntime 1.32.0, device ...``."""
    versions = [f"{name} {version}" for name, version in (info.get("versions") or {}).items()]
    facts = [f"{key} {'+'.join(map(str, value)) if isinstance(value, list) else value}"
             for key, value in sorted(info.items())
             if key not in ("runtime", "name", "model", "versions", "options")
             and not isinstance(value, dict)]
    return f"{info.get('runtime', 'runtime')}: {', '.join(versions + facts)}"


def notes(records: Sequence[Record]) -> list[str]:
    """Why a cell is "-" or marked: failures, substituted precisions, noisy measurements."""
    lines = []
    for r in records:
        where = f"{r['model']} {r['precision'].upper()} bs{r['batch_size']}"
        if r["status"] != "ok":
            lines.append(f"{where}: {r['status']}: {r['reason']}")
            continue
        if ran_other_precision(r):
            lines.append(f"{where}*: ran in {r['precision_used']}")
        if r.get("edited_since_export"):
            lines.append(f"{where}: timed {', '.join(r['edited_since_export'])} as edited after "
                         "export (its sha256 is not the manifest's)")
        if r.get("noisy"):
            lines.append(f"{where}: coefficient of variation {r['cv']:.1%} > {NOISY_CV:.0%}: "
                         "noisy machine; lock clocks / close other work")
    return lines


def _bullets(lines: Iterable[str], empty: str) -> str:
    return "\n".join(f"- {line}" for line in dict.fromkeys(lines)) or f"- {empty}"


def markdown_report(doc: dict[str, Any]) -> str:
    """The bench document (bench.json) as a short markdown page around the table in
    PaddleClas's layout."""
    records, table = doc["records"], doc["table"]
    runtimes = (runtime_summary(r["runtime_info"]) for r in records if r.get("runtime_info"))
    weights = (json.dumps(r["weights"], sort_keys=True) for r in records if r.get("weights"))
    parts = [
        f"# crossrt bench: {', '.join(doc['runtimes'])}, {table.upper()} layout\n",
        f"Median latency per batch (ms) measured on this machine, beside the published "
        f"{LATENCY_TABLES[table].title} figure and the ratio measured / published: "
        f"`measured (published, ×ratio)`; {MISSING} where not run, failed or not published.\n",
        markdown_table(records, table),
        f"**Method:** {doc['method_text']}.\n",
        f"**Machine:** {machine_summary(doc['machine'])}.\n",
        f"**Runtime:**\n{_bullets(runtimes, 'no runner started')}\n",
        f"**Weights:**\n{_bullets((f'`{w}`' for w in weights), 'unknown')}\n",
    ]
    if cell_notes := notes(records):
        parts.append(f"**Notes:**\n{_bullets(cell_notes, '')}\n")
    return "\n".join(parts)


def csv_row(record: Record) -> dict[str, Any]:
    latency = record.get("latency_ms") or {}
    method = record.get("method") or {}
    row = {key: record.get(key) for key in CSV_COLUMNS}
    row.update({f"latency_{k}_ms": latency.get(k) for k in _LATENCY_KEYS})
    row.update({k: method.get(k) for k in ("warmup_ms", "duration_s", "min_iterations",
                                            "include_transfers")})
    row["machine"] = machine_summary(record["machine"]) if record.get("machine") else None
    for key in ("runtime_info", "weights"):
        row[key] = json.dumps(record[key], sort_keys=True) if record.get(key) else None
    return row


def csv_text(records: Sequence[Record]) -> str:
    """Every statistic of every cell, one row per cell (empty where a cell failed)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(r) for r in records)
    return buffer.getvalue()
