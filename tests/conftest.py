"""Shared fixtures: real exports made once per test session, and the fast lane.

Tests that need a real export (the fixtures in EXPORTS, seconds each) or do the work of one are
marked ``slow``: ``pytest -m "not slow"`` is the fast lane (README); plain ``pytest`` runs all.
"""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("POLYGRAPHY_AUTOINSTALL_DEPS", "0")  # nothing may pip-install in tests
warnings.filterwarnings("ignore", message="No ccache found")

EXPORTS = {"b0_export", "small_export"}  # fixtures that run crossrt export-onnx


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if EXPORTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def b0_export(tmp_path_factory):
    """A real EfficientNetB0 export (synthetic weights, FP32 + FP16 graphs) shared by tests."""
    from exporter.export import export_onnx

    return export_onnx("EfficientNetB0", out_dir=tmp_path_factory.mktemp("exports") / "B0",
                       fp16=True)
