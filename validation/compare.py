"""The comparison of two sets of outputs: :func:`compare_outputs` and its :class:`Tolerance`.

Implemented in :mod:`exporter.compare` (the lowest package, so that the exporter's own check
against Paddle applies the same rule); this is its public name for validation and its users.
"""

from exporter.compare import (DEFAULT_TOLERANCES, ERROR_STATS, ComparisonResult,
                              OutputComparison, Tolerance, compare_outputs, degenerate_reference,
                              scaled_to, to_jsonable, tolerance_for)

__all__ = ["DEFAULT_TOLERANCES", "ERROR_STATS", "ComparisonResult", "OutputComparison",
           "Tolerance", "compare_outputs", "degenerate_reference", "scaled_to", "to_jsonable",
           "tolerance_for"]
