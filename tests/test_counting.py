"""Counting: plain counts checked against the real model, table counts against PaddleClas's
published figures."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.spec import ModelSpec, Published
from exporter.specs import SPECS, get_spec

paddle = pytest.importorskip("paddle")

from exporter.counting import (  # noqa: E402
    COUNTS_FILE,
    agrees_with_published,
    count,
    count_ops,
    counts_document,
    network_key,
    tally_ops,
    zoo_table,
)
from exporter.zoo import FAMILIES, build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    return {row["name"]: row for row in zoo_table()}


def cells():
    for name in SPECS:
        for cell in ("params", "flops"):
            yield pytest.param(name, cell, id=f"{name}-{cell}")


@pytest.mark.parametrize(("name", "cell"), cells())
def test_table_counts_agree_with_the_seed(table, name, cell):
    row = table[name]
    computed, published = (row["table_params_m"], row["ref_params_m"]) if cell == "params" \
        else (row["table_flops_g"], row["ref_flops_g"])
    assert agrees_with_published(computed, published), (computed, published)


def test_zoo_table_is_the_json_record_of_every_spec(table):
    rows = json.loads(json.dumps(zoo_table()))
    assert [row["name"] for row in rows] == list(SPECS)
    keys = {"name", "crop_size", "resize_short", "params_m", "macs_g", "table_params_m",
            "table_flops_g", "ref_params_m", "ref_flops_g"}
    assert all(keys <= set(row) for row in rows)
    fix, base = table["Fix_ResNeXt101_32x48d_wsl"], table["ResNeXt101_32x48d_wsl"]
    assert fix["params_m"] == base["params_m"]  # same network, counted at 320 instead of 224
    assert fix["table_flops_g"] > 1.9 * base["table_flops_g"]


# Plain trainable parameters from the facts file (measured independently)
FACTS_PARAMS_M = {"EfficientNetB0": 5.289, "EfficientNetB7": 66.348,
                  "ResNeXt101_32x8d_wsl": 88.791, "ResNeXt101_32x48d_wsl": 828.411}


@pytest.mark.parametrize("name", FACTS_PARAMS_M)
def test_plain_parameter_count_excludes_batchnorm_statistics(table, name):
    assert table[name]["params_m"] == pytest.approx(FACTS_PARAMS_M[name], abs=5e-4)


@pytest.mark.parametrize("name", ["EfficientNetB0", "EfficientNetB0_small"])
def test_plain_counts_match_a_real_forward_pass(name):
    """The static-program walk against hooks on an eager forward pass of the built model."""
    spec = get_spec(name)
    model = build_model(spec)
    macs = []

    def conv_or_linear(layer, inputs, output):
        if isinstance(layer, paddle.nn.Conv2D):
            cout, cin_per_group, kh, kw = layer.weight.shape
            macs.append(math.prod(output.shape[1:]) * cin_per_group * kh * kw)
        elif isinstance(layer, paddle.nn.Linear):
            macs.append(math.prod(layer.weight.shape))

    handles = [m.register_forward_post_hook(conv_or_linear) for m in model.sublayers()]
    with paddle.no_grad():
        model(paddle.to_tensor(np.zeros((1, *spec.input_shape), np.float32)))
    for handle in handles:
        handle.remove()
    trainable = sum(math.prod(p.shape) for p in model.parameters() if not p.stop_gradient)
    tally = tally_ops(spec)
    assert tally.macs == sum(macs)
    assert tally.params == trainable


def test_table_convention_by_hand():
    """EfficientNetB0_small's params cell is the plain count; the others differ from it."""
    small, b0 = count(get_spec("EfficientNetB0_small")), count(get_spec("EfficientNetB0"))
    assert small["table_params_m"] == small["params_m"]
    assert b0["table_params_m"] < b0["params_m"]  # depthwise convs divided by groups twice


def test_agreement_rule():
    assert agrees_with_published(0.716, 0.72)  # 0.72 printed: covers 0.715..0.725
    assert not agrees_with_published(0.714, 0.72)
    assert agrees_with_published(456.2 * 1.004, 456.2)  # within 0.5%
    assert not agrees_with_published(456.2 * 1.006, 456.2)


def test_counting_the_largest_model_allocates_no_weights():
    """828M float32 parameters would be 3.3 GB; counting must not materialise them."""
    # VmHWM is this program's own peak; ru_maxrss would also hold the peak of the (large)
    # pytest process it was forked from, which Linux keeps across exec.
    script = ("from exporter.counting import count_ops; from exporter.specs import get_spec; "
              "count_ops(get_spec('ResNeXt101_32x48d_wsl')); "
              "print(next(line.split()[1] for line in open('/proc/self/status') "
              "if line.startswith('VmHWM')))")
    peak_kib = int(subprocess.run([sys.executable, "-c", script], check=True, text=True,
                                  capture_output=True, cwd=ROOT).stdout.split()[-1])
    assert peak_kib < 1.5 * 2**20  # well under the 3.3 GB of its weights


@pytest.mark.slow
def test_the_committed_counts_are_a_fresh_count_of_every_model():
    """exporter/zoo/counts.json (what crossrt zoo reads) against every network counted now:
    a stale file fails here (python scripts/write_zoo_counts.py writes it again)."""
    assert json.loads(COUNTS_FILE.read_text()) == json.loads(json.dumps(counts_document()))


def test_a_network_not_in_the_committed_counts_is_counted():
    small = get_spec("EfficientNetB0_small")
    other = dataclasses.replace(small, crop_size=192)
    assert network_key(other) != network_key(small)
    assert tally_ops(small) == count_ops(small)
    assert tally_ops(other) == count_ops(other) and tally_ops(other).macs < count_ops(small).macs


def test_b0_small_flops_cell_is_counted_on_b0(table):
    """PaddleClas's table repeats EfficientNetB0's FLOPs for B0_small (spec.flops_counted_as)."""
    small, b0 = table["EfficientNetB0_small"], table["EfficientNetB0"]
    assert small["table_flops_g"] == b0["table_flops_g"]
    assert small["own_table_flops_g"] < b0["own_table_flops_g"]  # no squeeze-excite
    assert not agrees_with_published(small["own_table_flops_g"], small["ref_flops_g"])


def test_a_spec_without_published_figures_is_counted():
    small = get_spec("EfficientNetB0_small")
    unpublished = dataclasses.replace(small, name="EfficientNetB0_small_192", crop_size=192,
                                      resize_short=220, published=Published(),
                                      flops_counted_as=None)
    row, base = count(unpublished), count(small)
    assert row["ref_params_m"] is None and row["ref_flops_g"] is None
    assert row["params_m"] == base["params_m"]  # the same network, at a smaller input
    assert 0 < row["macs_g"] < base["macs_g"]
    assert 0 < row["table_flops_g"] == row["own_table_flops_g"] < base["own_table_flops_g"]


def test_a_family_declares_the_counting_rules_it_needs(monkeypatch):
    """An op outside exporter.counting's rules (tanh) counts through its family's rule."""

    class Tiny(paddle.nn.Layer):
        def __init__(self, num_classes: int):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1)
            self.fc = paddle.nn.Linear(4, num_classes)

        def forward(self, x):
            pooled = paddle.nn.functional.adaptive_avg_pool2d(paddle.tanh(self.conv(x)), 1)
            return self.fc(paddle.flatten(pooled, 1))

    class TinyFamily:
        MODELS: tuple[ModelSpec, ...] = ()

        def __init__(self, name: str, rules: dict):
            self.FAMILY = self.PADDLECLAS_MODULE = name
            self.COUNTING_RULES = rules

        def build(self, spec: ModelSpec) -> Tiny:
            return Tiny(spec.num_classes)

        def short_name(self, model: str) -> str:
            return model

    def family(name: str, rules: dict) -> ModelSpec:
        monkeypatch.setitem(FAMILIES, name, TinyFamily(name, rules))
        return ModelSpec(name=f"{name}_s", family=name, crop_size=32, resize_short=36,
                         export_tolerance=1e-4, num_classes=10)

    elements = {"tanh": lambda op: (0.0, float(math.prod(op.result(0).shape)), 0)}
    with_rule, without = tally_ops(family("TinyTanh", elements)), tally_ops(family("TinyPlain", {}))
    assert with_rule.output_shape == (1, 10)
    assert with_rule.table_flops - without.table_flops == 4 * 32 * 32  # tanh's output elements
    assert with_rule.table_params == without.table_params == 4 * 3 * 3 * 3 + 4 * 10 + 1
