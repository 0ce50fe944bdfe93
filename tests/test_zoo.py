"""The zoo against PaddleClas: structure, state_dict keys and shapes, shapes of the outputs.

The PaddleClas side is recorded in tests/data/paddleclas_keys.json by
scripts/paddleclas_fixtures.py (CI cannot install paddleclas); logits parity is in
test_weights.py, next to the synthetic weights it uses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from exporter.specs import SPECS, get_spec

paddle = pytest.importorskip("paddle")

from exporter.counting import count_ops  # noqa: E402
from exporter.weights import seeded_init  # noqa: E402
from exporter.zoo import build_model  # noqa: E402

KEYS = json.loads((Path(__file__).parent / "data" / "paddleclas_keys.json").read_text())


def lazy_model(name: str):
    """The model's structure with no weight allocated (the 32x48d has 828M parameters)."""
    with paddle.LazyGuard():
        return build_model(get_spec(name))


def digest(pairs) -> str:
    lines = sorted(f"{key} {'x'.join(map(str, shape))}" for key, shape in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.parametrize("name", SPECS)
def test_every_spec_traces_at_its_crop_size_to_logits(name):
    spec = SPECS[name]
    # Paddle's own shape inference through every layer, without allocating any weight
    assert count_ops(spec).output_shape == (1, spec.num_classes)


@pytest.mark.parametrize("name", SPECS)
def test_state_dict_keys_and_shapes_match_paddleclas(name):
    pairs = [[key, list(value.shape)] for key, value in lazy_model(name).state_dict().items()]
    reference = KEYS[name]
    if "keys" in reference:  # listed in full: show the difference, in order
        expected = [tuple(map(str, pair)) for pair in reference["keys"]]
        assert [tuple(map(str, pair)) for pair in pairs] == expected
    assert len(pairs) == reference["count"]
    assert sum(int(np.prod(shape)) for _, shape in pairs) == reference["values"]
    assert digest(pairs) == reference["sha256"]


@pytest.mark.parametrize("name", ["EfficientNetB0", "EfficientNetB0_small"])
def test_forward_yields_logits_per_sample(name):
    spec = get_spec(name)
    model = build_model(spec)
    assert not model.training
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, *spec.input_shape),
                                                                  dtype=np.float32))
    with paddle.no_grad():
        logits = model(x).numpy()
    assert logits.shape == (2, spec.num_classes) and np.isfinite(logits).all()


def test_a_model_builds_twice_in_one_process():
    spec = get_spec("EfficientNetB0_small")
    first, second = build_model(spec), build_model(spec)
    names = {p.name for p in first.parameters()} & {p.name for p in second.parameters()}
    assert not names  # no global parameter names (PaddleClas fails here)
    second.set_state_dict(first.state_dict())
    x = paddle.to_tensor(np.ones((1, *spec.input_shape), np.float32))
    with paddle.no_grad():
        np.testing.assert_array_equal(first(x).numpy(), second(x).numpy())


# Facts file: stride-2 convolutions that need TF-SAME's pad-and-crop, per variant
SAME_CROPS = {"EfficientNetB0": 5, "EfficientNetB1": 4, "EfficientNetB2": 2,
              "EfficientNetB3": 3, "EfficientNetB4": 4, "EfficientNetB5": 3,
              "EfficientNetB6": 4, "EfficientNetB7": 4, "EfficientNetB0_small": 0}


@pytest.mark.parametrize("name", SAME_CROPS)
def test_same_padding_crops_where_paddleclas_does(name):
    crops = sum(getattr(layer, "crop", False) for layer in lazy_model(name).sublayers())
    assert crops == SAME_CROPS[name]


def test_batchnorm_epsilon_and_classifier_layout_follow_paddleclas():
    model = lazy_model("EfficientNetB0")
    norms = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert norms and {bn._epsilon for bn in norms} == {1e-3}
    assert list(model._fc.weight.shape) == [1280, 1000]  # [in, out]


def test_dropout_and_drop_connect_only_act_in_train_mode():
    spec = get_spec("EfficientNetB0_small")
    model = build_model(spec)
    seeded_init(model, seed=0)  # Paddle's default init gives logits of ~1e-10
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal((2, *spec.input_shape),
                                                                  dtype=np.float32))
    with paddle.no_grad():
        eval_a, eval_b = model(x).numpy(), model(x).numpy()
        model.train()
        for layer in model.sublayers():  # BatchNorm keeps its running statistics
            if isinstance(layer, paddle.nn.BatchNorm2D):
                layer.eval()
        paddle.seed(0)
        train = model(x).numpy()
    np.testing.assert_array_equal(eval_a, eval_b)
    assert np.abs(train - eval_a).max() > 1e-3 * np.abs(eval_a).max()


@pytest.mark.parametrize("name", ["ResNeXt101_32x8d_wsl", "EfficientNetB0_small"])
def test_pieces_compose_to_the_whole_network(name):
    """exporter.large exports a model too big for one protobuf (the 32x48d) piece by piece."""
    spec = get_spec(name)
    model = lazy_model(name)  # the 32x8d is the 32x48d's class, smaller
    seeded_init(model, seed=0)  # materialises every weight
    size = 64 if spec.family == "ResNeXt101_wsl" else spec.crop_size  # SAME padding fixes it
    x = paddle.to_tensor(np.random.default_rng(2).standard_normal((1, 3, size, size),
                                                                  dtype=np.float32))
    with paddle.no_grad():
        whole = model(x).numpy()
        piecewise = x
        for piece in model.pieces():
            piecewise = piece(piecewise)
    np.testing.assert_array_equal(piecewise.numpy(), whole)
    assert whole.std() > 0
    in_pieces = [p.name for piece in model.pieces() for p in piece.parameters()]
    assert sorted(in_pieces) == sorted(p.name for p in model.parameters())  # each weight once
