"""Shared fixtures: real exports made once per test session."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")  # nothing may pip-install in tests
warnings.filterwarnings("ignore", message="No ccache found")


@pytest.fixture(scope="session")
def b0_export(tmp_path_factory):
    """A real EfficientNetB0 export (synthetic weights, FP32 + FP16 graphs) shared by tests."""
    from exporter.export import export_onnx

    return export_onnx("EfficientNetB0", out_dir=tmp_path_factory.mktemp("exports") / "B0",
                       fp16=True)
