"""The EfficientNet network, B0..B7 and B0_small, state_dict-compatible with PaddleClas 2.6.0.

The attribute tree reproduces PaddleClas's exactly, because a checkpoint is keyed by it:
``_ef._conv_stem._conv._conv._conv.weight``; the first block of each stage is registered as
``_blocks.N.`` and repeats as ``block.N.`` (N counts all blocks, the trailing dot makes keys like
``_ef._blocks.0.._dcn...``); each block holds ``_ecn`` / ``_dcn`` / ``_se`` / ``_pcn``; the head
conv is ``_conv`` and the classifier ``_fc`` (weight stored [in, out]). BatchNorm epsilon is 1e-3.

PaddleClas emulates TensorFlow's asymmetric "SAME" padding of a stride-2 convolution by padding
``before + stride`` on both sides and dropping the first output row and column; whether a
convolution needs that depends on its input size, so a model is built for one input size.
B0_small has no squeeze-excite and plain symmetric padding.

The models, their sizes and published figures: ``exporter.zoo.efficientnet``.
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

# B0's stages: (kernel, repeats, stride, expand ratio, input filters, output filters)
_B0_STAGES = ((3, 1, 1, 1, 32, 16), (3, 2, 2, 6, 16, 24), (5, 2, 2, 6, 24, 40),
              (3, 3, 2, 6, 40, 80), (5, 3, 1, 6, 80, 112), (5, 4, 2, 6, 112, 192),
              (3, 1, 1, 6, 192, 320))
# variant -> (width multiplier, depth multiplier, dropout before the classifier)
VARIANTS: dict[str, tuple[float, float, float]] = {
    "b0_small": (1.0, 1.0, 0.2), "b0": (1.0, 1.0, 0.2), "b1": (1.0, 1.1, 0.2),
    "b2": (1.1, 1.2, 0.3), "b3": (1.2, 1.4, 0.3), "b4": (1.4, 1.8, 0.4),
    "b5": (1.6, 2.2, 0.4), "b6": (1.8, 2.6, 0.5), "b7": (2.0, 3.1, 0.5),
}
SE_RATIO = 0.25
DROP_CONNECT_RATE = 0.2  # grows linearly with the block index, as in PaddleClas
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS, HEAD_FILTERS = 32, 1280


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` to a multiple of ``divisor``, never down by > 10%."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def conv_padding(kernel: int, stride: int, size: int | None) -> tuple[int, bool]:
    """(symmetric padding, crop first row/column?) giving TF "SAME" output for an input ``size``.

    ``size`` None means plain symmetric padding (B0_small).
    """
    if size is None:
        return (kernel - 1) // 2, False
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    before, after = total // 2, total - total // 2
    return (before, False) if before == after else (before + stride, True)


def _shrink(size: int | None, stride: int) -> int | None:
    return None if size is None else math.ceil(size / stride)  # SAME: ceil(size / stride)


class ConvUnit(nn.Layer):
    """A convolution, an optional activation, and the SAME-emulating crop (``Conv2ds``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 size: int | None = None, bias: bool = False, act: str | None = None):
        super().__init__()
        padding, self.crop = conv_padding(kernel, stride, size)
        self._conv = nn.Conv2D(cin, cout, kernel, stride=stride, padding=padding, groups=groups,
                               bias_attr=None if bias else False)
        self.act = act

    def forward(self, x):
        x = self._conv(x)
        if self.act == "swish":
            x = F.swish(x)
        elif self.act == "sigmoid":
            x = F.sigmoid(x)
        return x[:, :, 1:, 1:] if self.crop else x


class ConvBN(nn.Layer):
    """Convolution then BatchNorm (``ConvBNLayer``), optionally followed by swish."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 size: int | None = None, act: str | None = None):
        super().__init__()
        self._conv = ConvUnit(cin, cout, kernel, stride, groups, size)
        self._bn = nn.BatchNorm2D(cout, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        self.act = act

    def forward(self, x):
        x = self._bn(self._conv(x))
        return F.swish(x) if self.act == "swish" else x


class Holder(nn.Layer):
    """One more attribute level (``_conv``) that PaddleClas's wrapper classes add to the keys."""

    def __init__(self, inner: nn.Layer):
        super().__init__()
        self._conv = inner

    def forward(self, x):
        return self._conv(x)


class SqueezeExcite(nn.Layer):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self._conv1 = ConvUnit(channels, squeezed, 1, bias=True, act="swish")
        self._conv2 = ConvUnit(squeezed, channels, 1, bias=True, act="sigmoid")

    def forward(self, x):
        return x * self._conv2(self._conv1(F.adaptive_avg_pool2d(x, 1)))


class MBConv(nn.Layer):
    """Inverted residual block: expand 1x1, depthwise kxk, squeeze-excite, project 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 size: int | None, use_se: bool, drop_connect: float):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._ecn = Holder(ConvBN(cin, mid, 1, size=size))
        self._dcn = Holder(ConvBN(mid, mid, kernel, stride, groups=mid, size=size))
        if use_se:
            self._se = SqueezeExcite(mid, max(1, int(cin * SE_RATIO)))
        self._pcn = Holder(ConvBN(mid, cout, 1, size=size))
        self.expand, self.use_se = expand, use_se
        self.residual = stride == 1 and cin == cout
        self.drop_connect = drop_connect

    def forward(self, inputs):
        x = F.swish(self._ecn(inputs)) if self.expand != 1 else inputs
        x = F.swish(self._dcn(x))
        if self.use_se:
            x = self._se(x)
        x = self._pcn(x)
        if not self.residual:
            return x
        if self.training and self.drop_connect:
            keep = 1.0 - self.drop_connect
            mask = paddle.floor(keep + paddle.rand([x.shape[0], 1, 1, 1], dtype=x.dtype))
            x = x * mask / keep
        return x + inputs


class Features(nn.Layer):
    """The stem and all MBConv blocks (PaddleClas's ``ExtractFeatures``, attribute ``_ef``)."""

    def __init__(self, width: float, depth: float, input_size: int, same_padding: bool,
                 use_se: bool):
        super().__init__()
        size = input_size if same_padding else None  # each stage's input size, for padding
        self._conv_stem = Holder(ConvBN(3, round_filters(STEM_FILTERS, width), 3, 2, size=size))
        size = _shrink(size, 2)
        plan = []  # (first block of its stage?, cin, cout, kernel, stride, expand, input size)
        for kernel, repeats, stride, expand, cin, cout in _B0_STAGES:
            cin, cout = round_filters(cin, width), round_filters(cout, width)
            for i in range(math.ceil(depth * repeats)):
                plan.append((i == 0, cin if i == 0 else cout, cout, kernel,
                             stride if i == 0 else 1, expand, size))
            size = _shrink(size, stride)
        self.blocks: list[MBConv] = []
        self.stage_ends: list[MBConv] = []  # last block of each stage
        for index, (first, cin, cout, kernel, stride, expand, block_size) in enumerate(plan):
            block = MBConv(cin, cout, kernel, stride, expand, block_size, use_se,
                           DROP_CONNECT_RATE * index / len(plan))
            self.add_sublayer(f"{'_blocks' if first else 'block'}.{index}.", block)
            if first and self.blocks:
                self.stage_ends.append(self.blocks[-1])
            self.blocks.append(block)
        self.stage_ends.append(self.blocks[-1])
        self.out_channels = plan[-1][2]

    def forward(self, x):
        x = F.swish(self._conv_stem(x))
        for block in self.blocks:
            x = block(x)
        return x


class PoolAndClassify(nn.Layer):
    """Global average pool, dropout, classifier: the last piece (see ``EfficientNet.pieces``)."""

    def __init__(self, dropout: nn.Layer, classifier: nn.Linear):
        super().__init__()
        self.dropout, self.classifier = dropout, classifier

    def forward(self, x):
        return self.classifier(self.dropout(paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


class EfficientNet(nn.Layer):
    def __init__(self, variant: str = "b0", input_size: int = 224, num_classes: int = 1000):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet variant {variant!r}; one of {list(VARIANTS)}")
        width, depth, dropout = VARIANTS[variant]
        small = variant == "b0_small"
        self._ef = Features(width, depth, input_size, same_padding=not small, use_se=not small)
        head = round_filters(HEAD_FILTERS, width)
        self._conv = ConvBN(self._ef.out_channels, head, 1, act="swish")
        self._drop = nn.Dropout(dropout)
        self._fc = nn.Linear(head, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self._conv(self._ef(x)), 1)
        return self._fc(self._drop(paddle.flatten(x, 1)))

    def pieces(self) -> list[nn.Layer]:
        """Consecutive layers whose composition is ``forward`` (see exporter.large)."""
        return [self._ef._conv_stem, nn.Swish(), *self._ef.blocks, self._conv,
                PoolAndClassify(self._drop, self._fc)]

    def residual_norms(self) -> list[nn.Layer]:
        """The BatchNorm ending each residual branch (synthetic weights scale these down)."""
        return [block._pcn._conv._bn for block in self._ef.blocks if block.residual]

    def stages(self) -> list[tuple[str, nn.Layer]]:
        """The layers whose outputs end each stage: stem, the seven block stages, the head."""
        blocks = [(f"stage{i + 1}", block) for i, block in enumerate(self._ef.stage_ends)]
        return [("stem", self._ef._conv_stem), *blocks, ("head", self._conv)]
