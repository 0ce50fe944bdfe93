"""The Paddle model zoo: one module per family, PaddleClas-compatible networks built from a spec.

Each family module (``efficientnet.py``, ``resnext_wsl.py``) satisfies
:class:`exporter.family.ModelFamily`: it declares its models' specs (sizes and PaddleClas's
published figures) and builds them; its network, which imports paddle, lives beside it
(``*_network.py``). Adding a family is those two modules and one line in ``_FAMILY_MODULES``;
``exporter.specs`` registers its models.

``build_model(spec)`` returns a fresh ``paddle.nn.Layer`` in eval mode whose state_dict keys,
shapes and numerics match PaddleClas 2.6.0, so PaddleClas ``*_pretrained.pdparams`` files load
into it unchanged. Unlike PaddleClas, no parameter has a global name: build as often as you like.
Paddle is imported only when a model is built.

Besides ``forward``, every model names its ``stages()`` (the spread check of synthetic weights
hooks their outputs) and ``residual_norms()`` (which exporter.weights scales down); ``pieces()``
are where exporter.large cuts a model too big for one ONNX protobuf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import UnknownModelError
from core.spec import ModelSpec
from exporter.family import ModelFamily
from exporter.zoo import efficientnet, resnext_wsl

if TYPE_CHECKING:
    from paddle import nn

# In PaddleClas's table order: the registry (exporter.specs) lists their models in this order.
_FAMILY_MODULES: tuple[ModelFamily, ...] = (resnext_wsl, efficientnet)
FAMILIES: dict[str, ModelFamily] = {family.FAMILY: family for family in _FAMILY_MODULES}


def family_of(spec: ModelSpec) -> ModelFamily:
    """The family that builds ``spec`` (by ``spec.family``)."""
    try:
        return FAMILIES[spec.family]
    except KeyError:
        raise UnknownModelError(f"{spec.name}: unknown model family {spec.family!r}; one of "
                                f"{', '.join(FAMILIES)} (exporter.zoo.FAMILIES)") from None


def build_model(spec: ModelSpec) -> nn.Layer:
    """A fresh model for ``spec`` with Paddle's default initialisation, in eval mode.

    Expects [N, 3, crop, crop] float32 and returns [N, num_classes] logits. Pair it with
    ``exporter.weights.load_model`` for usable (checkpoint or calibrated synthetic) weights.
    """
    model = family_of(spec).build(spec)
    model.eval()
    return model
