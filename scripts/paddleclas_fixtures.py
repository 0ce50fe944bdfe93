"""Regenerate tests/data/paddleclas_*.json/.npz from PaddleClas 2.6.0 itself, and check parity.

crossrt never imports PaddleClas; this script does, to record what a PaddleClas model looks
like (state_dict keys and shapes) and computes (logits for crossrt's synthetic weights), so
that CI, which cannot install it, can check the zoo against it. Set up once:

    python -m venv /tmp/pcvenv --system-site-packages
    /tmp/pcvenv/bin/pip install --no-deps paddleclas==2.6.0
    /tmp/pcvenv/bin/python scripts/paddleclas_fixtures.py

PaddleClas names every parameter globally, so each of its models is built in a subprocess.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
KEYS_FILE = DATA / "paddleclas_keys.json"
LOGITS_FILE = DATA / "paddleclas_logits.npz"
LISTED = ("EfficientNetB0", "EfficientNetB0_small", "EfficientNetB3", "ResNeXt101_32x8d_wsl")
# PaddleClas has no builder for the Fix model: it is ResNeXt101_32x48d_wsl served at 320
_BUILDERS = {"Fix_ResNeXt101_32x48d_wsl": "ResNeXt101_32x48d_wsl"}


def key_shapes(layer) -> list[list]:
    """[[key, shape], ...] of a layer's state_dict, in order."""
    return [[key, list(value.shape)] for key, value in layer.state_dict().items()]


def digest(pairs: list[list]) -> str:
    """sha256 of the sorted "key shape" lines: equal for equal sets of keys and shapes."""
    lines = sorted(f"{key} {'x'.join(map(str, shape))}" for key, shape in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def parity_input(spec) -> np.ndarray:
    """One bundled photograph and one seeded noise image: the input the logits are stored for."""
    from core.preprocess import photo_batch, random_inputs

    return np.concatenate([photo_batch(spec)[1][:1], random_inputs(spec, 1, seed=7)])


def weights_checksum(state: dict) -> float:
    """A float64 sum over all values: tells whether crossrt's synthetic weights changed."""
    return float(sum(np.abs(np.asarray(v, np.float64)).sum() for v in state.values()))


def _paddleclas_model(name: str, module_name: str):
    """Import PaddleClas's backbone module by file, without its package's heavy imports."""
    found = importlib.util.find_spec("paddleclas")  # locate it; importing it needs extras
    if found is None or not found.submodule_search_locations:
        raise SystemExit("paddleclas is not installed: pip install --no-deps paddleclas==2.6.0")
    root = Path(list(found.submodule_search_locations)[0])
    for package in ("ppcls", "ppcls.arch", "ppcls.arch.backbone", "ppcls.arch.backbone.base",
                    "ppcls.arch.backbone.model_zoo", "ppcls.utils"):
        module = types.ModuleType(package)
        module.__path__ = [str(root / package.replace(".", "/"))]
        sys.modules.setdefault(package, module)
    loader = types.ModuleType("ppcls.utils.save_load")  # pulls in download helpers otherwise
    loader.load_dygraph_pretrain = None  # type: ignore[attr-defined]
    sys.modules.setdefault(loader.__name__, loader)
    module = importlib.import_module(f"ppcls.arch.backbone.model_zoo.{module_name}")
    return getattr(module, _BUILDERS.get(name, name))()


def describe_one(name: str, logits: bool) -> dict:
    """Keys of PaddleClas's model ``name``; with ``logits``, parity on crossrt's weights."""
    import paddle

    from exporter.specs import get_spec
    from exporter.weights import load_model
    from exporter.zoo import family_of

    spec = get_spec(name)
    module_name = family_of(spec).PADDLECLAS_MODULE
    if not logits:
        with paddle.LazyGuard():
            reference = _paddleclas_model(name, module_name)
        return {"keys": key_shapes(reference)}
    reference = _paddleclas_model(name, module_name)
    reference.eval()
    ours, _ = load_model(spec, seed=0)
    state = {key: value.numpy() for key, value in ours.state_dict().items()}
    missing, unexpected = reference.set_state_dict(state)
    x = paddle.to_tensor(parity_input(spec))
    with paddle.no_grad():
        expected, got = reference(x).numpy(), ours(x).numpy()
    return {"keys": key_shapes(reference), "missing": list(missing),
            "unexpected": list(unexpected), "logits": expected.tolist(),
            "max_abs_diff": float(np.abs(expected - got).max()),
            "logits_std": float(expected.std()), "checksum": weights_checksum(state)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one model per process
    parser.add_argument("--logits", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(describe_one(args.one, args.logits)))
        return

    from exporter.specs import SPECS

    keys: dict[str, dict] = {}
    logits: dict[str, np.ndarray] = {}
    for name in SPECS:
        command = [sys.executable, __file__, "--one", name] + (["--logits"] * (name in LISTED))
        output = subprocess.run(command, check=True, capture_output=True, text=True,
                                env={**os.environ, "GLOG_minloglevel": "3"}).stdout
        result = json.loads(output.strip().splitlines()[-1])
        pairs = result["keys"]
        keys[name] = {"count": len(pairs), "values": int(sum(np.prod(s) for _, s in pairs)),
                      "sha256": digest(pairs)}
        if name in LISTED:
            keys[name]["keys"] = pairs
            logits[name] = np.asarray(result["logits"], np.float32)
            logits[f"{name}.checksum"] = np.float64(result["checksum"])
            print(f"{name}: {len(pairs)} keys, missing {len(result['missing'])}, unexpected "
                  f"{len(result['unexpected'])}, PaddleClas vs crossrt max |diff| "
                  f"{result['max_abs_diff']:.3g} (logits std {result['logits_std']:.3g})")
        else:
            print(f"{name}: {len(pairs)} keys")
    DATA.mkdir(parents=True, exist_ok=True)
    _write_atomic(KEYS_FILE, lambda path: path.write_text(
        "{\n" + ",\n".join(f"{json.dumps(n)}: {json.dumps(v)}" for n, v in keys.items())
        + "\n}\n"))
    arrays: dict[str, Any] = logits
    _write_atomic(LOGITS_FILE, lambda path: np.savez_compressed(path, **arrays))


def _write_atomic(target: Path, write) -> None:
    handle, temp = tempfile.mkstemp(dir=target.parent, suffix=target.suffix)
    os.close(handle)
    try:
        write(Path(temp))
        os.chmod(temp, 0o644)  # mkstemp creates 0600
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


if __name__ == "__main__":
    main()
