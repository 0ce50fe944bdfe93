"""A piece of a network: consecutive sublayers applied in order (see exporter.large)."""

from __future__ import annotations

from paddle import nn


class Chain(nn.Layer):
    def __init__(self, parts: list[nn.Layer]):
        super().__init__()
        self.parts = nn.LayerList(parts)

    def forward(self, x):
        for part in self.parts:
            x = part(x)
        return x
