"""What a model family declares: the :class:`ModelFamily` protocol and its models' specs.

A family is one module in ``exporter/zoo/`` (``efficientnet.py``, ``resnext_wsl.py``) that
satisfies :class:`ModelFamily`: its name, one :class:`ModelSpec` entry per model (with named
fields; PaddleClas's published figures are optional), how to build a model from a spec, its
short display names and any extra counting rules. Everything downstream (preprocessing,
export shapes, engine profiles, bench tables) resolves sizes and reference figures from a
spec; no other module hard-codes a shape. Nothing here imports paddle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from core.spec import ModelSpec

if TYPE_CHECKING:
    from paddle import nn

# Where PaddleClas keeps its official dygraph checkpoints (``<model>_pretrained.pdparams``)
DYGRAPH = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/"

# An op of a static program -> (table params, table FLOPs, plain MACs); see exporter.counting
CountingRule = Callable[[Any], tuple[float, float, int]]


class ModelFamily(Protocol):
    """Everything the rest of crossrt needs from a family, declared by its zoo module.

    Adding a family is its module in ``exporter/zoo/`` (these declarations; it must import
    without paddle), its network in a module beside it (imported by ``build``), and one line
    in ``exporter/zoo/__init__.py``'s list of families.
    """

    @property
    def FAMILY(self) -> str:
        """The name PaddleClas groups these models under (``ModelSpec.family``)."""
        ...

    @property
    def MODELS(self) -> Sequence[ModelSpec]:
        """One spec per model, in PaddleClas's table order."""
        ...

    @property
    def PADDLECLAS_MODULE(self) -> str:
        """``ppcls.arch.backbone.model_zoo.<this>``: where scripts/paddleclas_fixtures.py finds
        PaddleClas's own network to record the reference keys and logits."""
        ...

    @property
    def MODEL_URLS(self) -> Mapping[str, str]:
        """Model -> its official ``*_pretrained.pdparams``, as PaddleClas's model_zoo code (or,
        where the code has none, its model-zoo page) declares it: ``--pretrained``."""
        ...

    @property
    def COUNTING_RULES(self) -> Mapping[str, CountingRule]:
        """Op name -> rule for ops beyond exporter.counting's (usually none)."""
        ...

    def build(self, spec: ModelSpec) -> nn.Layer:
        """A fresh model for ``spec`` with Paddle's default initialisation (imports paddle)."""
        ...

    def short_name(self, model: str) -> str:
        """The model's label in PaddleClas's latency/accuracy figure (EfficientNetB0 -> B0)."""
        ...
