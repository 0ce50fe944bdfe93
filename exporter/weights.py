"""Zoo weights: PaddleClas checkpoints, or deterministic, well-conditioned synthetic ones.

Synthetic weights exist so that numerical comparisons downstream mean something without a
download. Paddle's default initialisation is useless for that: its Conv2D init ignores
``groups``, so EfficientNet's depthwise weights are ~sqrt(C) too small, activations shrink
10-30x per stage and the logits end near 1e-12 with one argmax for every input, which makes
every tolerance check pass trivially. Instead:

1. seeded initialisation from numpy (same seed, same bits): He-normal by each convolution's real
   fan-in (groups included), classifier scaled by 1/sqrt(in), zero biases, unit BatchNorm except
   the last one of each residual branch, at 1/2 so the residual stream does not grow with depth;
2. BatchNorm calibration on two kinds of input, the bundled photographs through the model's own
   preprocessing and seeded uniform noise: weights calibrated on one kind blow up on the other
   (noise-calibrated EfficientNetB1 reaches logits of 5e4 on photographs). One eval-mode pass;
   just before each BatchNorm runs, a hook sets its statistics from the input it is about to
   normalise (which went through already-calibrated layers), weighting both kinds equally;
3. the classifier loses the directions of each kind's mean feature and is centred and scaled to
   unit logit spread on the same batch: otherwise the input-independent part of the pooled
   features decides the argmax, one class for every input of a kind.

Dropout and drop-connect are off throughout (the model stays in eval mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import WeightsError, first_line
from core.provenance import sha256_file

if TYPE_CHECKING:
    from paddle import nn

    from core.spec import ModelSpec

CALIBRATION_NOISE = 2  # seeded noise samples next to the photographs (noise is homogeneous)
RESIDUAL_SCALE = 0.5  # scale of the BatchNorm that ends a residual branch
STD_RANGE = (0.1, 10.0)  # where every stage's output std must lie, on photos and on noise
_NAME_TABLE_KEY = "StructuredToParameterName@@"  # bookkeeping entry of old Paddle checkpoints


def load_model(spec: ModelSpec, weights: str | Path | None = None, seed: int = 0,
               ) -> tuple[nn.Layer, dict[str, Any]]:
    """The eval-mode model for ``spec`` and a JSON-able record of where its weights came from.

    ``weights`` is a PaddleClas ``.pdparams`` checkpoint; None means synthetic weights
    (``{"kind": "synthetic", "seed": ..., "calibration": ...}``). The model is built under
    ``paddle.LazyGuard`` so Paddle's own (slow, discarded) initialisation never runs.
    """
    import paddle

    from exporter.zoo import build_model

    with paddle.LazyGuard():
        model = build_model(spec)
    if weights is None:
        return model, synthesize(model, spec, seed)
    return model, load_checkpoint(model, weights, model_name=spec.name)


def synthesize(model: nn.Layer, spec: ModelSpec, seed: int = 0) -> dict[str, Any]:
    """Give ``model`` seeded, calibrated synthetic weights in place; returns the source record."""
    seeded_init(model, seed)
    photos, noise = calibration_inputs(spec, seed)
    calibrate(model, [photos, noise])
    return {"kind": "synthetic", "seed": seed,
            "calibration": f"BatchNorm statistics and classifier from {len(photos)} photographs "
                           f"and {len(noise)} random inputs (seed {seed}), weighted equally"}


def seeded_init(model: nn.Layer, seed: int) -> None:
    """Overwrite every parameter and BatchNorm statistic from numpy's seeded generator."""
    rng = np.random.default_rng(seed)
    for key, tensor in model.state_dict().items():  # registration order: deterministic
        shape = tuple(tensor.shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "weight" and len(shape) == 4:  # conv [out, in / groups, kh, kw]
            value = _normal(rng, shape, np.sqrt(2.0 / np.prod(shape[1:])))
        elif leaf == "weight" and len(shape) == 2:  # linear [in, out]
            value = _normal(rng, shape, np.sqrt(1.0 / shape[0]))
        elif leaf in ("weight", "_variance"):  # BatchNorm scale and variance
            value = np.ones(shape, np.float32)
        else:  # biases, BatchNorm shift and mean
            value = np.zeros(shape, np.float32)
        tensor.set_value(value)
    for bn in model.residual_norms():
        bn.weight.set_value(np.full(bn.weight.shape, RESIDUAL_SCALE, np.float32))


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    value = rng.standard_normal(shape, dtype=np.float32)
    value *= np.float32(std)
    return value


def calibration_inputs(spec: ModelSpec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The two kinds of calibration input: the bundled photographs and seeded noise."""
    from core.preprocess import photo_batch, random_inputs

    return photo_batch(spec)[1], random_inputs(spec, CALIBRATION_NOISE, seed)


def calibrate(model: nn.Layer, kinds: list[np.ndarray]) -> None:
    """Calibrate every BatchNorm, then the classifier, on batches of each kind of input.

    A BatchNorm's mean is the mean of the kinds' means, its variance the mean of the kinds'
    second moments about it: each kind weighs the same whatever its batch size.
    """
    import paddle

    sizes = [len(batch) for batch in kinds]

    def set_statistics(bn, inputs):
        groups = paddle.split(inputs[0], sizes)
        mean = paddle.stack([g.mean(axis=[0, 2, 3]) for g in groups]).mean(axis=0)
        shift = mean.reshape([1, -1, 1, 1])
        bn._mean.set_value(mean)
        bn._variance.set_value(
            paddle.stack([((g - shift) ** 2).mean(axis=[0, 2, 3]) for g in groups]).mean(axis=0))

    features: list[np.ndarray] = []

    def keep_features(layer, inputs):
        features.append(inputs[0].numpy().astype(np.float64))

    classifier = _classifier(model)
    hooked: list[tuple[Any, Any]] = [(layer, set_statistics) for layer in model.sublayers()
                                     if isinstance(layer, paddle.nn.layer.norm._BatchNormBase)]
    hooked.append((classifier, keep_features))
    handles = [layer.register_forward_pre_hook(hook) for layer, hook in hooked]
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.to_tensor(np.concatenate(kinds)))
    finally:
        for handle in handles:
            handle.remove()
    _calibrate_classifier(classifier, features[0], sizes)


def _calibrate_classifier(classifier: nn.Layer, features: np.ndarray, sizes: list[int]) -> None:
    """Remove the kinds' mean-feature directions, then centre the logits at unit spread."""
    means = np.stack([g.mean(axis=0) for g in np.split(features, np.cumsum(sizes)[:-1])])
    basis = np.linalg.qr(means.T)[0]  # orthonormal, [in, kinds]
    weight = classifier.weight.numpy().astype(np.float64)
    weight -= basis @ (basis.T @ weight)
    logits = features @ weight + classifier.bias.numpy()
    spread = max(float(logits.std()), 1e-12)
    bias = (classifier.bias.numpy() - logits.mean(axis=0)) / spread
    classifier.weight.set_value((weight / spread).astype(np.float32))
    classifier.bias.set_value(bias.astype(np.float32))


def _classifier(model: nn.Layer) -> nn.Layer:
    import paddle

    return [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.Linear)][-1]


def stage_stds(model: nn.Layer, batch: np.ndarray) -> tuple[list[tuple[str, float]], np.ndarray]:
    """(stage, std of its output over ``batch``) for each stage of ``model`` and the logits,
    and the logits themselves (one forward pass)."""
    import paddle

    stds: list[tuple[str, float]] = []

    def recorder(name: str):
        return lambda layer, inputs, output: stds.append((name, float(output.numpy().std())))

    handles = [layer.register_forward_post_hook(recorder(name)) for name, layer in model.stages()]
    try:
        with paddle.no_grad():
            logits = model(paddle.to_tensor(batch)).numpy()
    finally:
        for handle in handles:
            handle.remove()
    return [*stds, ("logits", float(logits.std()))], logits


def conditioning(model: nn.Layer, spec: ModelSpec, noise: int = 4, seed: int = 12345,
                 ) -> dict[str, Any]:
    """The spread check of synthetic weights, on the photographs and on seeded noise.

    ``ok`` when every stage's output std lies within STD_RANGE on both kinds of input and the
    argmax of the logits is not the same for every photograph. Pick a ``seed`` other than the
    calibration seed to check on noise the calibration did not see.
    """
    from core.preprocess import photo_batch, random_inputs

    report: dict[str, Any] = {}
    for kind, batch in (("photos", photo_batch(spec)[1]),
                        ("random", random_inputs(spec, noise, seed))):
        report[kind], logits = stage_stds(model, batch)
        report[f"argmax_{kind}"] = logits.argmax(axis=1).tolist()
    low, high = STD_RANGE
    report["ok"] = (all(low <= std <= high for kind in ("photos", "random")
                        for _, std in report[kind])
                    and len(set(report["argmax_photos"])) > 1)
    return report


def load_checkpoint(model: nn.Layer, path: str | Path, model_name: str = "this model",
                    ) -> dict[str, Any]:
    """Load a ``.pdparams`` state_dict into ``model`` strictly; WeightsError says what is wrong."""
    import paddle

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; pass the path of a .pdparams file")
    try:
        state = paddle.load(str(path))
    except Exception as error:  # garbage makes paddle.load raise many types; all mean this
        raise WeightsError(f"{path} is not a readable Paddle checkpoint ({type(error).__name__}: "
                           f"{first_line(error, limit=120)}); pass a PaddleClas "
                           "*_pretrained.pdparams file"
                           ) from error
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path} holds {type(state).__name__!r}, not a state_dict; pass a "
                           f"PaddleClas *_pretrained.pdparams file")
    state.pop(_NAME_TABLE_KEY, None)
    own = model.state_dict()
    _check_keys(path, model_name, {key: tuple(value.shape) for key, value in own.items()}, state,
                {key: np.dtype(_numpy_dtype(value.dtype)) for key, value in own.items()})
    model.set_state_dict(state)
    model.eval()
    return {"kind": "checkpoint", "path": str(path.resolve()), "sha256": sha256_file(path)}


def _check_keys(path: Path, model_name: str, expected: dict[str, tuple[int, ...]],
                state: dict, dtypes: dict[str, np.dtype] | None = None) -> None:
    """Keys, shapes, then (with ``dtypes``) each tensor's dtype and finiteness, named by key."""
    dtypes = dtypes or {}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if len(missing) == len(expected):
        raise WeightsError(f"{path} shares no key with {model_name} ({len(unexpected)} foreign "
                           f"keys, e.g. {_few(unexpected)}); is it the checkpoint of another "
                           f"model?")
    if missing or unexpected:
        raise WeightsError(f"{path} does not fit {model_name}: {len(missing)} missing keys "
                           f"({_few(missing)}), {len(unexpected)} unexpected keys "
                           f"({_few(unexpected)}); pass a checkpoint of {model_name}")
    for key, shape in expected.items():
        found = tuple(getattr(state[key], "shape", ()))
        if found != shape:
            raise WeightsError(f"{path}: {key} has shape {list(found)} but {model_name} expects "
                               f"{list(shape)}; pass a checkpoint of {model_name}")
    for key, dtype in dtypes.items():
        value = np.asarray(state[key])
        if value.dtype != dtype:
            raise WeightsError(f"{path}: {key} is {value.dtype}, {model_name} expects {dtype}; "
                               f"convert the checkpoint's tensors to {dtype}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int(value.size - np.isfinite(value).sum())
            raise WeightsError(f"{path}: {key} holds {bad} NaN/Inf values; the checkpoint is "
                               "damaged (pass a good copy)")


def _numpy_dtype(dtype: Any) -> str:
    """numpy's name of a Paddle dtype (``paddle.float32`` -> ``float32``)."""
    return str(dtype).rsplit(".", 1)[-1]


def _few(keys: list[str], count: int = 3) -> str:
    shown = ", ".join(keys[:count])
    return shown + ", ..." if len(keys) > count else shown or "none"


