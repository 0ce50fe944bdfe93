"""The model registry: every model crossrt knows, by name, each declared once by its family.

A model's spec (crop and resize-short sizes, interpolation, mean/std, PaddleClas's published
figures, counting conventions, export tolerance) is one :class:`ModelSpec` entry in its family's
zoo module: EfficientNetB3's is in ``exporter/zoo/efficientnet.py``. This module gathers them,
in PaddleClas's table order, and looks them up. Everything downstream (preprocessing, export
shapes, engine profiles, bench tables) resolves sizes and reference figures from a spec; no
other module hard-codes a shape.
"""

from __future__ import annotations

import difflib
from typing import Any

from core.errors import UnknownModelError, UsageError
from core.spec import CUSTOM, ModelSpec
from exporter.zoo import FAMILIES

__all__ = ["DEFAULT_MODEL", "SPECS", "get_spec", "spec_of"]

SPECS: dict[str, ModelSpec] = {spec.name: spec for family in FAMILIES.values()
                               for spec in family.MODELS}
DEFAULT_MODEL = "EfficientNetB0"


def get_spec(name: str) -> ModelSpec:
    """The spec called ``name`` (case-insensitive); an UnknownModelError suggests close names."""
    if name in SPECS:
        return SPECS[name]
    folded = {key.lower(): key for key in SPECS}
    if name.lower() in folded:
        return SPECS[folded[name.lower()]]
    close = difflib.get_close_matches(name.lower(), folded, n=3, cutoff=0.5)
    hint = ", ".join(folded[c] for c in close) if close else ", ".join(SPECS)
    raise UnknownModelError(
        f"unknown model {name!r}; did you mean: {hint}? (`crossrt zoo` lists all {len(SPECS)})")


def spec_of(manifest: dict[str, Any]) -> ModelSpec:
    """The spec an export was made from: the registry's for a zoo model (with PaddleClas's
    figures), else the one its manifest records (a model brought as a Paddle inference model)."""
    recorded = manifest.get("spec")
    if isinstance(recorded, dict) and recorded.get("family") == CUSTOM:
        try:
            return ModelSpec.from_dict(recorded)
        except ValueError as error:
            raise UsageError(f"the export of {manifest['model']} records a broken model spec "
                             f"({error}); export it again") from None
    return get_spec(manifest["model"])
