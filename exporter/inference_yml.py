"""A Paddle inference model brought by the user: its spec, read from its ``inference.yml``.

PaddleClas's export (``Global.export_for_fd``, or driven by PaddleX) writes ``inference.yml``
beside ``inference.json`` (or a legacy ``inference.pdmodel``) and ``inference.pdiparams``:

    PreProcess: {transform_ops: [ResizeImage, CropImage, NormalizeImage, ToCHWImage]}
    PostProcess: {Topk: {topk: 5, label_list: [...]}}   (or class_id_map_file: a path)

Both vocabularies of ResizeImage's ``interpolation`` are read: PaddleClas's (``bilinear``,
``bicubic``, ... or an int flag of the backend) and PaddleX's (``LINEAR``, ``BICUBIC``, ...),
with ``backend: cv2`` (the default) or ``pil``. The ops run in that order, as PaddleClas runs
them; the model's input is square (its CropImage, or its ResizeImage ``size`` without a crop)
and must be the program's own input size. Anything else, or a key crossrt does not know, is
one UsageError naming the key (exit 2). The spec goes into the export's manifest, and every
later command reads it from there. Notes on both formats: docs/notes/paddle-inference-models.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core import limits
from core.errors import UsageError
from core.labels import IMAGENET_1K
from core.layout import find_paddle_program
from core.spec import CUSTOM, DEFAULT_SCALE, INTERPOLATIONS, PIL_INTERPOLATIONS, ModelSpec

YML = "inference.yml"
EXPORT_TOLERANCE = 1e-3  # float32 rounding relative to max(1, max|output|): as the zoo's widest

# Interpolation names of both vocabularies (lower-cased) -> crossrt's (core.spec)
_NAMES = {"nearest": "nearest", "bilinear": "linear", "linear": "linear", "bicubic": "cubic",
          "cubic": "cubic", "area": "area", "lanczos": "lanczos", "lanczos4": "lanczos",
          "box": "box", "hamming": "hamming"}
_CV2_FLAGS = {0: "nearest", 1: "linear", 2: "cubic", 3: "area", 4: "lanczos"}  # cv2.INTER_*
_PIL_CODES = {0: "nearest", 1: "lanczos", 2: "linear", 3: "cubic", 4: "box", 5: "hamming"}
_ORDER = ("ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage")


def is_inference_model(path: str | Path) -> bool:
    """A folder holding a Paddle inference model and its ``inference.yml``."""
    return Path(path).is_dir() and (Path(path) / YML).is_file()


def spec_from_folder(folder: str | Path) -> ModelSpec:
    """The spec of the Paddle inference model in ``folder`` (its preprocessing, classes and
    input), from its ``inference.yml`` and its program; bad or unknown entries are refused."""
    folder = Path(folder)
    program = find_paddle_program(folder)
    input_name, input_side = _program_input(program)
    return spec_from_yml(folder / YML, input_name=input_name, input_side=input_side,
                         input_of=program.name)


def spec_from_yml(path: str | Path, *, input_name: str = "x", input_side: int | None = None,
                  input_of: str = "the model") -> ModelSpec:
    """The spec an ``inference.yml`` describes, for a model whose input is ``input_name`` of
    side ``input_side`` (None: any); its label file is looked up beside it."""
    path = Path(path)
    config = _read(path)
    steps = _steps(config)
    resize = steps.get("ResizeImage") or {}
    crop = steps.get("CropImage")
    normalize = steps.get("NormalizeImage") or {}
    resize_short, resize_to = _resize(resize)
    side = _square("CropImage.size", crop.get("size", 224)) if crop is not None else resize_to
    if side is None:
        raise UsageError(f"{path}: ResizeImage.resize_short without a CropImage gives "
                         "inputs of every size; crossrt needs a fixed input (add a CropImage)")
    labels = _labels(path.parent, config)
    label_set = labels if isinstance(labels, str) else None
    names = () if isinstance(labels, str) else labels
    if input_side is not None and input_side != side:
        raise UsageError(f"{path}: the preprocessing gives {side}x{side} inputs but "
                         f"{input_of} takes {input_side}x{input_side}; fix CropImage.size "
                         "(or ResizeImage.size)")
    global_section = config.get("Global") or {}
    name = global_section.get("model_name") if isinstance(global_section, dict) else None
    interpolation, backend = _interpolation(resize)
    return ModelSpec(
        name=str(name or path.resolve().parent.name), family=CUSTOM, crop_size=side,
        resize_short=resize_short, resize_to=resize_to, export_tolerance=EXPORT_TOLERANCE,
        interpolation=interpolation, resize_backend=backend, scale=_scale(normalize),
        mean=_triple("NormalizeImage.mean", normalize.get("mean", (0.485, 0.456, 0.406))),
        std=_triple("NormalizeImage.std", normalize.get("std", (0.229, 0.224, 0.225))),
        input_name=input_name, labels=names, label_set=label_set,
        num_classes=len(names) or 1000)


def _read(path: Path) -> dict[str, Any]:
    import yaml

    limits.check_file_size(path, limits.TEXT_BYTES, "model config")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not YAML ({str(error).splitlines()[0]}); pass the "
                         "inference.yml PaddleClas's export wrote") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path} holds no mapping; pass the inference.yml PaddleClas's export "
                         "wrote")
    return config


def _steps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """PreProcess.transform_ops by op name, checked: known ops, each once, in PaddleClas's order."""
    ops = (config.get("PreProcess") or {}).get("transform_ops") \
        if isinstance(config.get("PreProcess"), dict) else None
    if not isinstance(ops, list) or not ops:
        raise UsageError(f"{YML}: no PreProcess.transform_ops; crossrt reads the preprocessing "
                         "from there")
    steps: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(ops):
        key = f"PreProcess.transform_ops[{index}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise UsageError(f"{YML}: {key} is not one operator (a one-key mapping)")
        (op, params), = entry.items()
        if op == "DecodeImage":
            continue  # PaddleClas's exports leave it out; decoding is to RGB either way
        if op not in _ORDER:
            raise UsageError(f"{YML}: {key} is {op}, which crossrt does not run (it runs "
                             f"{', '.join(_ORDER)})")
        if op in steps or (steps and _ORDER.index(op) < _ORDER.index(list(steps)[-1])):
            raise UsageError(f"{YML}: {key} {op} is out of PaddleClas's order "
                             f"({' -> '.join(_ORDER)})")
        if params is not None and not isinstance(params, dict):
            raise UsageError(f"{YML}: {key}.{op} has no parameters mapping")
        steps[op] = dict(params or {})
    for needed in ("ResizeImage", "NormalizeImage", "ToCHWImage"):
        if needed not in steps:
            raise UsageError(f"{YML}: PreProcess.transform_ops has no {needed}; crossrt feeds "
                             "resized, normalised NCHW inputs as PaddleClas does")
    _known(steps["ResizeImage"], "ResizeImage", {"resize_short", "size", "interpolation",
                                                 "backend", "return_numpy"})
    _known(steps.get("CropImage") or {}, "CropImage", {"size"})
    _known(steps["NormalizeImage"], "NormalizeImage", {"scale", "mean", "std", "order",
                                                       "channel_num", "output_fp16"})
    _known(steps["ToCHWImage"], "ToCHWImage", set())
    normalize = steps["NormalizeImage"]
    if normalize.get("channel_num", 3) != 3:
        raise UsageError(f"{YML}: NormalizeImage.channel_num {normalize['channel_num']}: crossrt "
                         "feeds 3-channel inputs")
    if normalize.get("output_fp16"):
        raise UsageError(f"{YML}: NormalizeImage.output_fp16: crossrt feeds float32 inputs "
                         "(an FP16 graph converts them itself)")
    if normalize.get("order", "") not in ("", "hwc", "chw"):
        raise UsageError(f"{YML}: NormalizeImage.order {normalize['order']!r}: expected '', "
                         "'hwc' or 'chw'")
    return steps


def _known(params: dict[str, Any], op: str, keys: set[str]) -> None:
    if unknown := sorted(set(params) - keys):
        raise UsageError(f"{YML}: {op}.{unknown[0]} is not a parameter crossrt knows of {op} "
                         f"({', '.join(sorted(keys)) or 'none'})")


def _resize(params: dict[str, Any]) -> tuple[int | None, int | None]:
    short = params.get("resize_short")
    if short is not None:
        if not isinstance(short, int) or isinstance(short, bool) or short < 1:
            raise UsageError(f"{YML}: ResizeImage.resize_short {short!r} is not a size in pixels")
        return short, None
    if "size" not in params:
        raise UsageError(f"{YML}: ResizeImage has neither resize_short nor size")
    return None, _square("ResizeImage.size", params["size"])


def _square(key: str, value: Any) -> int:
    """A size PaddleClas writes as ``224`` or ``[w, h]``; crossrt feeds square inputs."""
    sides = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(sides, list) and len(sides) == 2 and
            all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sides)):
        raise UsageError(f"{YML}: {key} {value!r} is not a size (an int or [width, height])")
    if sides[0] != sides[1]:
        raise UsageError(f"{YML}: {key} {value!r} is not square; crossrt feeds square inputs")
    return int(sides[0])


def _interpolation(params: dict[str, Any]) -> tuple[str, str]:
    """(crossrt's interpolation name, backend) from either vocabulary."""
    backend = str(params.get("backend", "cv2")).lower()
    if backend not in ("cv2", "pil"):
        raise UsageError(f"{YML}: ResizeImage.backend {params['backend']!r}: expected cv2 or pil")
    value = params.get("interpolation")
    if value is None:  # PaddleClas's deploy UnifiedResize: INTER_LINEAR, Image.BILINEAR
        return "linear", backend
    if isinstance(value, int) and not isinstance(value, bool):  # the backend's own flag
        codes = _CV2_FLAGS if backend == "cv2" else _PIL_CODES
        if value not in codes:
            raise UsageError(f"{YML}: ResizeImage.interpolation {value} is not a {backend} "
                             f"flag crossrt knows ({', '.join(map(str, codes))})")
        return codes[value], backend
    name = _NAMES.get(str(value).lower())
    if name is None or name not in (INTERPOLATIONS if backend == "cv2" else PIL_INTERPOLATIONS):
        why = " (it picks at random: not reproducible)" if str(value).lower() == "random" else ""
        raise UsageError(f"{YML}: ResizeImage.interpolation {value!r} is not one crossrt runs "
                         f"with {backend}{why}")
    return name, backend


def _scale(params: dict[str, Any]) -> float:
    """NormalizeImage.scale: a number, or the text ``1.0/255.0`` PaddleClas configs write."""
    value = params.get("scale", DEFAULT_SCALE)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9.]+)\s*(?:/\s*([0-9.]+)\s*)?", value)
        if match is None:
            raise UsageError(f"{YML}: NormalizeImage.scale {value!r} is not a number or a "
                             "fraction like 1.0/255.0")
        try:
            value = float(match[1]) / float(match[2] or 1)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"{YML}: NormalizeImage.scale {value!r} is not a number") from None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1e6:
        raise UsageError(f"{YML}: NormalizeImage.scale {value!r} is not a positive number")
    return float(value)


def _triple(key: str, value: Any) -> tuple[float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise UsageError(f"{YML}: {key} {value!r} is not three numbers (one per channel)")
    if key.endswith(".std") and any(v == 0 for v in value):
        raise UsageError(f"{YML}: {key} {value!r} divides by zero")
    a, b, c = (float(v) for v in value)
    return a, b, c


def _labels(folder: Path, config: dict[str, Any]) -> tuple[str, ...] | str:
    """PostProcess.Topk's label_list, or the lines of its class_id_map_file (``id name``), or
    the name of the bundled list it names; none: classes are known by index only."""
    post = config.get("PostProcess")
    topk = post.get("Topk") if isinstance(post, dict) else None
    if not isinstance(topk, dict):
        return ()
    if "label_list" in topk:
        names = topk["label_list"]
        if not isinstance(names, list) or not names or \
                not all(isinstance(n, (str, int)) for n in names):
            raise UsageError(f"{YML}: PostProcess.Topk.label_list is not a list of class names")
        return tuple(str(name) for name in names)
    if "class_id_map_file" in topk:
        path = folder / str(topk["class_id_map_file"])
        if not path.is_file() and path.name == "imagenet1k_label_list.txt":
            return IMAGENET_1K  # PaddleClas's own list, which its exports point to unshipped
        if not path.is_file():
            raise UsageError(f"{YML}: PostProcess.Topk.class_id_map_file {path} does not exist; "
                             "put the label file there or give PostProcess.Topk.label_list")
        limits.check_file_size(path, limits.TEXT_BYTES, "label file")
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()
                 if line.strip()]
        return tuple(line.split(" ", 1)[1] if " " in line else line for line in lines)
    return ()


def _program_input(program: Path) -> tuple[str, int | None]:
    """The program's one input name and its square side (None when dynamic)."""
    from runtimes.paddle_inference import program_inputs

    inputs = program_inputs(program)
    if len(inputs) != 1:
        raise UsageError(f"{program} takes {len(inputs)} inputs; crossrt exports classifiers "
                         "of one image input")
    (name, spec), = inputs.items()
    shape = spec.shape
    if len(shape) != 4 or shape[1] not in (3, None):
        raise UsageError(f"{program}'s input {name!r} is {list(shape)}, not N x 3 x H x W")
    height, width = shape[2], shape[3]
    if height is not None and width is not None and height != width:
        raise UsageError(f"{program}'s input is {height}x{width}; crossrt feeds square inputs")
    return name, height
