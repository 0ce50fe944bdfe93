"""The registry against PaddleClas's published figures (the seed document holds its page) and
the committed published tables; a spec, and a family, declared without published figures."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import UnknownModelError
from core.spec import ModelSpec, Published
from exporter import zoo
from exporter.family import ModelFamily
from exporter.specs import SPECS, get_spec
from exporter.zoo import FAMILIES, efficientnet, family_of, resnext_wsl

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "tests" / "data" / "paddleclas_efficientnet_resnext101_wsl_page.txt"  # the seed


def _page() -> str:
    """PaddleClas's page as text, model names joined where the page wraps them (``Fix_\n``)."""
    return PAGE.read_text().replace("_\n", "_")


def test_fourteen_models_with_the_pages_sizes():
    assert len(SPECS) == 14
    page = _page()
    for spec in SPECS.values():  # every latency-table row: name, crop size, resize-short size
        assert f"{spec.name} {spec.crop_size} {spec.resize_short} " in page.replace("\n", " "), \
            spec.name


def test_every_published_number_appears_in_the_seed():
    text = _page()
    for spec in SPECS.values():
        p = spec.published
        numbers = [p.top1, p.top5, p.ref_top1, p.ref_top5, p.flops_g, p.params_m,
                   *p.v100_fp32_ms, *p.t4_fp16_ms, *p.t4_fp32_ms]
        for value in (n for n in numbers if n is not None):
            assert any(f"{value:.{d}f}" in text for d in range(1, 9)), (spec.name, value)


def test_missing_cells_stay_missing():
    b6 = get_spec("EfficientNetB6").published
    assert b6.t4_fp16_ms == (30.05911, None, None) and b6.t4_fp32_ms[1:] == (None, None)
    small = get_spec("EfficientNetB0_small").published
    assert small.ref_top1 is None and small.top1 == 0.758
    assert get_spec("EfficientNetB0").published.latency("v100", "fp16") == (None, None, None)


def test_unknown_names_suggest_close_ones():
    assert get_spec("efficientnetb3").name == "EfficientNetB3"
    with pytest.raises(UnknownModelError, match="EfficientNetB7"):
        get_spec("EfficientNetB8")


def test_committed_published_tables_match_the_registry():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "write_published_tables.py"),
                           "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_family_declares_its_models_in_one_module():
    assert list(FAMILIES) == ["ResNeXt101_wsl", "EfficientNet"]  # PaddleClas's table order
    assert [s.name for f in FAMILIES.values() for s in f.MODELS] == list(SPECS)
    for family in (efficientnet, resnext_wsl):
        assert family_of(family.MODELS[0]) is family
    with pytest.raises(UnknownModelError, match="EfficientNet"):
        family_of(dataclasses.replace(get_spec("EfficientNetB0"), family="MobileNet"))


def _declare(monkeypatch, spec: ModelSpec) -> ModelSpec:
    monkeypatch.setitem(SPECS, spec.name, spec)
    return spec


# B0_small's network at 192x192: a model PaddleClas publishes no figures for
SMALL_192 = ModelSpec(name="EfficientNetB0_small_192", family="EfficientNet", crop_size=192,
                      resize_short=220, export_tolerance=efficientnet.EXPORT_TOLERANCE,
                      builder_args=(("variant", "b0_small"),))


def test_a_spec_without_published_figures_is_declared_and_used(monkeypatch):
    from core.preprocess import photo_batch
    from validation.bench import BenchConfig, Cell, cell_record
    from validation.figures import figure_points, short_name
    from validation.tables import csv_text, markdown_table
    from validation.timing import summarize

    spec = _declare(monkeypatch, SMALL_192)
    assert spec.published == Published() and spec.published.latency("t4", "fp16") == (None,) * 3
    assert get_spec("efficientnetb0_small_192") is spec and spec.input_shape == (3, 192, 192)
    assert spec.preprocessing()["crop_size"] == 192
    names, batch = photo_batch(spec)
    assert batch.shape == (len(names), 3, 192, 192)

    config = BenchConfig(models=(spec.name,), runtimes=("onnxruntime",), table="t4")
    stats = summarize([3.92, 4.0, 4.08], 1)
    ran = cell_record(config, spec, Cell(spec.name, "onnxruntime", "fp32", 1), stats=stats)
    failed = cell_record(config, spec, Cell(spec.name, "onnxruntime", "fp32", 4),
                         failure="RuntimeError: oom")
    assert ran["published_ms"] is None and ran["ratio"] is None and ran["published_top1"] is None
    row = next(line for line in markdown_table([ran, failed], "t4").splitlines()
               if line.startswith(f"| {spec.name} "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == [spec.name, "192", "220"]
    assert cells[3:6] == ["-", "-", "-"]  # FP16: not run, nothing published
    assert cells[6:] == ["4.00 (-)", "-", "-"]  # measured beside "-"; failed; not run
    assert spec.name in csv_text([ran, failed])
    assert figure_points([ran], "t4", "fp32", 1) == {}  # no published top-1: no point
    assert short_name(spec.name) == "B0_small_192"


def test_published_tables_show_dashes_for_a_spec_without_figures(monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import write_published_tables as tables
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    spec = _declare(monkeypatch, SMALL_192)
    markdown = tables.published_markdown()
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {spec.name} ")]
    assert rows == [f"| {spec.name} | - | - | - | - | - | - |",
                    f"| {spec.name} | 192 | 220 | - | - | - |",
                    f"| {spec.name} | 192 | 220 | - | - | - | - | - | - |"]
    row = json.loads(tables.published_json())["models"][-1]
    assert row["name"] == spec.name and row["top1"] is None and row["t4_fp32_ms"] == [None] * 3


def test_a_new_family_is_one_module_satisfying_the_protocol(monkeypatch):
    """A family declared in one place: its specs, builder, display names, counting rules."""
    built = []

    class Network:
        def eval(self):
            built.append(self)

    class TinyNet:  # a zoo module's module-level names, here as a class
        FAMILY, PADDLECLAS_MODULE, COUNTING_RULES = "TinyNet", "tinynet", {}
        MODELS = (ModelSpec(name="TinyNet_s", family="TinyNet", crop_size=64, resize_short=72,
                            export_tolerance=1e-5),)

        def build(self, spec: ModelSpec) -> Any:  # a paddle.nn.Layer in a real family
            return Network()

        def short_name(self, model: str) -> str:
            return model.removeprefix("TinyNet_")

    tiny: ModelFamily = TinyNet()
    monkeypatch.setitem(FAMILIES, tiny.FAMILY, tiny)
    spec = _declare(monkeypatch, tiny.MODELS[0])

    from validation.figures import short_name

    assert family_of(spec) is tiny and short_name("TinyNet_s") == "s"
    assert isinstance(zoo.build_model(spec), Network) and len(built) == 1  # built, then eval()
    assert get_spec("TinyNet_s").export_tolerance == 1e-5
