"""The ResNeXt101 32xNd (WSL) network, state_dict-compatible with PaddleClas 2.6.0 checkpoints.

Keys follow PaddleClas: ``_conv_stem._conv.weight``, blocks ``_conv{stage}_{index}`` each with
``_conv0`` (1x1), ``_conv1`` (3x3, 32 groups, carries the stride), ``_conv2`` (1x1) and, in the
first block of a stage, the projection shortcut ``_short._conv``; the classifier is ``_out``
(weight stored [in, out]). The network is fully convolutional up to a global average pool,
so the same weights serve any input size (Fix_ResNeXt101_32x48d_wsl runs it at 320).

The models, their sizes and published figures: ``exporter.zoo.resnext_wsl``.
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

DEPTHS = (3, 4, 23, 3)  # bottleneck blocks per stage (ResNeXt-101)
CARDINALITY = 32
STEM_CHANNELS = 64


class ConvBN(nn.Layer):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 relu: bool = False):
        super().__init__()
        self._conv = nn.Conv2D(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2,
                               groups=groups, bias_attr=False)
        self._bn = nn.BatchNorm2D(cout)
        self.relu = relu

    def forward(self, x):
        x = self._bn(self._conv(x))
        return F.relu(x) if self.relu else x


class Shortcut(nn.Layer):
    """Identity, or a strided 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.project = cin != cout or stride != 1
        if self.project:
            self._conv = ConvBN(cin, cout, 1, stride)

    def forward(self, x):
        return self._conv(x) if self.project else x


class Bottleneck(nn.Layer):
    def __init__(self, cin: int, mid: int, cout: int, stride: int):
        super().__init__()
        self._conv0 = ConvBN(cin, mid, 1, relu=True)
        self._conv1 = ConvBN(mid, mid, 3, stride, groups=CARDINALITY, relu=True)
        self._conv2 = ConvBN(mid, cout, 1)
        self._short = Shortcut(cin, cout, stride)

    def forward(self, x):
        return F.relu(self._conv2(self._conv1(self._conv0(x))) + self._short(x))


class PoolAndClassify(nn.Layer):
    """Global average pool, flatten, classifier: the head, as one piece (see ``pieces``)."""

    def __init__(self, classifier: nn.Linear):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ResNeXt101WSL(nn.Layer):
    def __init__(self, width: int = 8, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = ConvBN(3, STEM_CHANNELS, 7, 2, relu=True)
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.blocks: list[Bottleneck] = []
        self.stage_ends: list[Bottleneck] = []
        cin = STEM_CHANNELS
        for stage, depth in enumerate(DEPTHS):
            mid, cout = CARDINALITY * width * 2 ** stage, 256 * 2 ** stage
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 else 1
                block = Bottleneck(cin, mid, cout, stride)
                setattr(self, f"_conv{stage + 1}_{index}", block)
                self.blocks.append(block)
                cin = cout
            self.stage_ends.append(self.blocks[-1])
        self._out = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self._pool(self._conv_stem(x))
        for block in self.blocks:
            x = block(x)
        return self._out(paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def pieces(self) -> list[nn.Layer]:
        """Consecutive layers whose composition is ``forward``: where exporter.large may cut
        a model whose ONNX would pass protobuf's 2 GB limit (the 32x48d is 3.3 GB)."""
        return [self._conv_stem, self._pool, *self.blocks, PoolAndClassify(self._out)]

    def residual_norms(self) -> list[nn.Layer]:
        """The BatchNorm ending each residual branch (synthetic weights scale these down)."""
        return [block._conv2._bn for block in self.blocks]

    def stages(self) -> list[tuple[str, nn.Layer]]:
        """The layers whose outputs end each stage: stem (after max-pool), the four stages."""
        return [("stem", self._pool),
                *((f"stage{i + 1}", block) for i, block in enumerate(self.stage_ends))]
