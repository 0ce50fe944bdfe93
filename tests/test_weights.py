"""Synthetic weights (deterministic, well-conditioned, PaddleClas's logits) and checkpoints."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import WeightsError
from exporter.specs import get_spec

paddle = pytest.importorskip("paddle")

from exporter.weights import STD_RANGE, conditioning, load_checkpoint, load_model, seeded_init  # noqa: E402
from exporter.zoo import build_model  # noqa: E402

DATA = Path(__file__).parent / "data"
REFERENCE = np.load(DATA / "paddleclas_logits.npz")  # scripts/paddleclas_fixtures.py
CHECKED = ("EfficientNetB0", "EfficientNetB0_small", "EfficientNetB1", "ResNeXt101_32x8d_wsl")
PARITY = ("EfficientNetB0", "EfficientNetB0_small", "EfficientNetB3", "ResNeXt101_32x8d_wsl")
_models: dict[str, tuple] = {}


def synthetic(name: str):
    """load_model(spec) with seed 0, built once per test session (calibration takes seconds)."""
    if name not in _models:
        _models[name] = load_model(get_spec(name), seed=0)
    return _models[name]


def logits(model, x: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def state(model) -> dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in model.state_dict().items()}


def test_same_seed_same_bits_other_seed_other_weights():
    spec = get_spec("EfficientNetB0_small")
    first, source = synthetic(spec.name)
    again, _ = load_model(spec, seed=0)
    other, _ = load_model(spec, seed=1)
    a, b, c = state(first), state(again), state(other)
    assert all(np.array_equal(a[key], b[key]) for key in a)
    assert not np.array_equal(a["_fc.weight"], c["_fc.weight"])
    assert json.loads(json.dumps(source))["kind"] == "synthetic" and source["seed"] == 0


@pytest.mark.slow  # calibrates weights, as every synthetic export does
@pytest.mark.parametrize("name", CHECKED)
def test_synthetic_weights_are_well_conditioned_on_photos_and_noise(name):
    model, _ = synthetic(name)
    report = conditioning(model, get_spec(name), noise=2)
    low, high = STD_RANGE
    for kind in ("photos", "random"):
        assert all(low <= std <= high for _, std in report[kind]), (kind, report[kind])
    assert len(set(report["argmax_photos"])) > 1, report["argmax_photos"]
    assert len(set(report["argmax_photos"] + report["argmax_random"])) > 2
    assert report["ok"]


def test_default_paddle_init_would_be_degenerate():
    """Why calibration exists: without it, logits are ~1e-10 and comparisons are void."""
    spec = get_spec("EfficientNetB0_small")
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape), dtype=np.float32)
    assert np.abs(logits(build_model(spec), x)).max() < 1e-3
    assert np.abs(logits(synthetic(spec.name)[0], x)).max() > 0.1


def _fixture_script():
    """scripts/paddleclas_fixtures.py, which made REFERENCE: same input, same checksum."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "paddleclas_fixtures.py"
    spec = importlib.util.spec_from_file_location("paddleclas_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PARITY)
def test_logits_equal_paddleclas_on_the_same_weights(name):
    """PaddleClas 2.6.0's own model, given these synthetic weights, computed REFERENCE[name]."""
    tools = _fixture_script()
    model, _ = synthetic(name)
    recorded = float(REFERENCE[f"{name}.checksum"])
    assert tools.weights_checksum(state(model)) == pytest.approx(recorded, rel=1e-5), \
        "synthetic weights changed: rerun scripts/paddleclas_fixtures.py (needs paddleclas)"
    got = logits(model, tools.parity_input(get_spec(name)))
    np.testing.assert_allclose(got, REFERENCE[name], rtol=0, atol=1e-3)
    assert REFERENCE[name].std() > 0.1  # the comparison means something


# --- checkpoints ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real .pdparams of EfficientNetB0_small (seeded weights), and its state."""
    model = build_model(get_spec("EfficientNetB0_small"))
    seeded_init(model, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "EfficientNetB0_small.pdparams"
    paddle.save(model.state_dict(), str(path))
    return path, state(model)


def test_checkpoint_round_trip_gives_the_same_logits(checkpoint):
    path, values = checkpoint
    spec = get_spec("EfficientNetB0_small")
    original = build_model(spec)
    original.set_state_dict(values)
    loaded, source = load_model(spec, weights=path)
    x = np.random.default_rng(5).standard_normal((2, *spec.input_shape), dtype=np.float32)
    np.testing.assert_array_equal(logits(loaded, x), logits(original, x))
    assert source == {"kind": "checkpoint", "path": str(path.resolve()),
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _save(values):
    return lambda bad, good: paddle.save(values(good), str(bad))


def _without_first_two(good):
    return {key: value for key, value in list(paddle.load(str(good)).items())[2:]}


# case -> (writes the bad file from the good one, substrings of the one-line message)
BAD = {
    "missing file": (lambda bad, good: None, ("does not exist",)),
    "not a checkpoint": (lambda bad, good: bad.write_text("not a checkpoint\n"),
                         ("not a readable Paddle checkpoint",)),
    "truncated": (lambda bad, good: bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
                  ("not a readable Paddle checkpoint",)),
    "empty": (lambda bad, good: bad.write_bytes(b""), ("not a readable Paddle checkpoint",)),
    "not a state_dict": (_save(lambda good: [1, 2, 3]), ("not a state_dict",)),
    "missing keys": (_save(_without_first_two),
                     ("2 missing keys", "_ef._conv_stem._conv._conv._conv.weight",
                      "0 unexpected")),
    "unexpected keys": (_save(lambda good: dict(paddle.load(str(good)),
                                                extra=np.ones(3, np.float32))),
                        ("0 missing keys", "1 unexpected keys (extra)")),
    "foreign": (_save(lambda good: {"conv1.weight": np.ones(3, np.float32)}),
                ("shares no key", "conv1.weight")),
    "wrong shape": (_save(lambda good: dict(paddle.load(str(good)),
                                            **{"_fc.weight": np.zeros((10, 1000), np.float32)})),
                    ("_fc.weight", "[10, 1000]", "[1280, 1000]")),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_checkpoints_raise_one_line_weights_errors(checkpoint, tmp_path, case):
    write, expected = BAD[case]
    bad = tmp_path / "bad.pdparams"
    write(bad, checkpoint[0])
    with pytest.raises(WeightsError) as caught:
        load_checkpoint(build_model(get_spec("EfficientNetB0_small")), bad)
    message = str(caught.value)
    assert "\n" not in message and str(bad) in message
    for part in expected:
        assert part in message, (part, message)
