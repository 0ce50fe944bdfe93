"""The registry against the seed document, and the committed published tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.errors import UnknownModelError
from exporter.specs import BATCH_SIZES, SPECS, get_spec

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "000_f654070a041dc8bd.txt"


def test_fourteen_models_with_the_seed_sizes():
    assert len(SPECS) == 14
    sizes = {name: (s.crop_size, s.resize_short) for name, s in SPECS.items()}
    assert sizes["EfficientNetB7"] == (600, 632) and sizes["Fix_ResNeXt101_32x48d_wsl"] == (320, 320)
    assert all(s.input_shape == (3, s.crop_size, s.crop_size) for s in SPECS.values())
    assert all(len(s.published.t4_fp16_ms) == len(BATCH_SIZES) for s in SPECS.values())


@pytest.mark.skipif(not SEED.is_file(), reason="the seed document lies outside the repository")
def test_every_published_number_appears_in_the_seed():
    text = SEED.read_text()
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
