"""Hold-out models: small Paddle classifiers outside the 14, saved as PaddleClas saves them.

Each is a real Paddle network (random weights, fixed seed) saved with ``paddle.jit.save`` under
an ``InputSpec([None, 3, S, S], name="x")``, wrapped as PaddleClas's ``ExportModel`` wraps a
backbone (a Softmax appended unless ``infer_add_softmax: False``), and given the
``inference.yml`` its export writes:

- PaddleClas's own format: :func:`dump_infer_config` is PaddleClas's ``ppcls/utils/config.py``
  function of that name (2.6 / develop), line for line, run on a PaddleClas config's ``Infer``
  section and its ``class_id_map_file``;
- PaddleX's vocabulary: the file PaddleX's export writes (``Global.model_name``, the ``Hpi``
  section with its YAML anchor, upper-case interpolation names).
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import paddle
import yaml
from paddle import nn


class TinyMobileNet(nn.Layer):
    """MobileNetV3-style: a stem, depthwise-separable blocks with squeeze-excitation, hardswish."""

    def __init__(self, classes: int):
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Layer:
            return nn.Sequential(
                nn.Conv2D(cin, cin, 3, stride, 1, groups=cin, bias_attr=False),
                nn.BatchNorm2D(cin), nn.Hardswish(), SqueezeExcite(cin),
                nn.Conv2D(cin, cout, 1, bias_attr=False), nn.BatchNorm2D(cout))

        self.stem = nn.Sequential(nn.Conv2D(3, 16, 3, 2, 1, bias_attr=False),
                                  nn.BatchNorm2D(16), nn.Hardswish())
        self.blocks = nn.Sequential(block(16, 24, 2), block(24, 32, 2), block(32, 48, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.Linear(48, classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class SqueezeExcite(nn.Layer):
    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.reduce = nn.Conv2D(channels, max(8, channels // 4), 1)
        self.expand = nn.Conv2D(max(8, channels // 4), channels, 1)

    def forward(self, x):
        return x * nn.functional.hardsigmoid(self.expand(nn.functional.relu(
            self.reduce(self.pool(x)))))


class TinyResNet(nn.Layer):
    """ResNet-style: basic residual blocks (a projection shortcut where the shape changes)."""

    def __init__(self, classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, 16, 3, 1, 1, bias_attr=False),
                                  nn.BatchNorm2D(16), nn.ReLU(), nn.MaxPool2D(2))
        self.layers = nn.LayerList([Basic(16, 16, 1), Basic(16, 32, 2), Basic(32, 64, 2)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class Basic(nn.Layer):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2D(cin, cout, 3, stride, 1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(cout)
        self.conv2 = nn.Conv2D(cout, cout, 3, 1, 1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(cout)
        self.short = (nn.Sequential(nn.Conv2D(cin, cout, 1, stride, bias_attr=False),
                                    nn.BatchNorm2D(cout)) if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn2(self.conv2(nn.functional.relu(self.bn1(self.conv1(x)))))
        return nn.functional.relu(y + (self.short(x) if self.short is not None else x))


class ExportModel(nn.Layer):
    """PaddleClas's ExportModel: the backbone, then a Softmax (``infer_add_softmax``)."""

    def __init__(self, backbone: nn.Layer, softmax: bool):
        super().__init__()
        self.backbone = backbone
        self.out_act = nn.Softmax(axis=-1) if softmax else None

    def forward(self, x):
        x = self.backbone(x)
        return self.out_act(x) if self.out_act is not None else x


ARCHITECTURES = {"TinyMobileNet": TinyMobileNet, "TinyResNet": TinyResNet}


def save_inference_model(folder: Path, architecture: str, *, classes: int, side: int,
                         softmax: bool = True, legacy: bool = False, seed: int = 0) -> Path:
    """The network saved as PaddleClas's export saves it: ``inference.json`` (PIR) or, with
    ``legacy``, ``inference.pdmodel``, beside ``inference.pdiparams``."""
    paddle.seed(seed)
    model = ExportModel(ARCHITECTURES[architecture](classes), softmax)
    model.eval()
    _calibrate(model, side)
    with warnings.catch_warnings():  # Paddle's note on full_graph, as PaddleClas's export gets
        warnings.simplefilter("ignore", UserWarning)
        static = paddle.jit.to_static(model, input_spec=[
            paddle.static.InputSpec(shape=[None, 3, side, side], dtype="float32", name="x")])
    folder.mkdir(parents=True, exist_ok=True)
    if legacy:
        with paddle.pir_utils.OldIrGuard():
            paddle.jit.save(static, str(folder / "inference"))
    else:
        paddle.jit.save(static, str(folder / "inference"))
    return folder


def _calibrate(model: ExportModel, side: int) -> None:
    """Statistics a trained network would have (random weights give activations of 1e-4 and
    the same class for every image): each BatchNorm's mean and variance measured on the
    bundled photographs and seeded noise images, layer by layer, then the head's logits
    standardised over them, so that predictions differ from image to image."""
    import cv2
    import numpy as np

    from core.preprocess import bundled_photos

    images = [cv2.resize(p, (side, side)) for _, p in bundled_photos()]
    images += list(np.random.default_rng(0).integers(0, 256, (4, side, side, 3), np.uint8))
    batch = paddle.to_tensor(np.stack([(i.astype(np.float32) / 255 - 0.5) / 0.25
                                       for i in images]).transpose(0, 3, 1, 2))

    def seen(layer: nn.Layer) -> np.ndarray:
        captured: list[Any] = []
        hook = layer.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0]))
        with paddle.no_grad():
            model.backbone(batch)
        hook.remove()
        return captured[0].numpy()

    for layer in model.sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            x = seen(layer)
            layer._mean.set_value(x.mean(axis=(0, 2, 3)))
            layer._variance.set_value(x.var(axis=(0, 2, 3)) + 1e-3)
    head = [layer for layer in model.sublayers() if isinstance(layer, nn.Linear)][-1]
    logits = seen(head) @ head.weight.numpy()
    scale = 3 / (logits.std(axis=0) + 1e-6)
    head.weight.set_value((head.weight.numpy() * scale).astype("float32"))
    head.bias.set_value((-logits.mean(axis=0) * scale).astype("float32"))


def paddleclas_config(*, resize_short: int, crop: int, class_id_map_file: Path,
                      interpolation: str | None = None) -> dict[str, Any]:
    """A PaddleClas ImageNet config's Global and Infer sections (as in ppcls/configs)."""
    resize: dict[str, Any] = {"resize_short": resize_short}
    if interpolation is not None:
        resize["interpolation"] = interpolation
    return {
        "Global": {"image_shape": [3, crop, crop], "export_for_fd": True},
        "Infer": {
            "infer_imgs": "docs/images/inference_deployment/whl_demo.jpg", "batch_size": 10,
            "transforms": [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
                           {"ResizeImage": resize}, {"CropImage": {"size": crop}},
                           {"NormalizeImage": {"scale": "1.0/255.0",
                                               "mean": [0.485, 0.456, 0.406],
                                               "std": [0.229, 0.224, 0.225], "order": ""}},
                           {"ToCHWImage": None}],
            "PostProcess": {"name": "Topk", "topk": 5,
                            "class_id_map_file": str(class_id_map_file)}}}


def dump_infer_config(inference_config: dict[str, Any], path: Path,
                      infer_shape: list[int]) -> None:
    """PaddleClas's ``ppcls.utils.config.dump_infer_config`` (the ``Infer`` branch)."""
    yaml.add_representer(OrderedDict, lambda dumper, data: dumper.represent_mapping(
        "tag:yaml.org,2002:map", data.items()))
    infer_cfg: OrderedDict[str, Any] = OrderedDict()
    config = copy.deepcopy(inference_config)
    if config["Global"].get("pdx_model_name", None):
        infer_cfg["Global"] = {"model_name": config["Global"]["pdx_model_name"]}
    transforms = config["Infer"]["transforms"]
    if config["Global"].get("uniform_output_enabled"):
        infer_shape_with_batch = [[1] + infer_shape, [1] + infer_shape, [8] + infer_shape]
        dynamic_shapes = {"x": infer_shape_with_batch}
        infer_cfg["Hpi"] = {"backend_configs": {
            key: {"dynamic_shapes" if key == "tensorrt" else "trt_dynamic_shapes": dynamic_shapes}
            for key in ["paddle_infer", "tensorrt"]}}
    for transform in transforms:
        if "NormalizeImage" in transform:
            transform["NormalizeImage"]["channel_num"] = 3
            numerator, denominator = transform["NormalizeImage"]["scale"].split("/")
            transform["NormalizeImage"]["scale"] = float(float(numerator) / float(denominator))
    infer_cfg["PreProcess"] = {"transform_ops": [t for t in transforms if "DecodeImage" not in t]}
    postprocess_dict = config["Infer"]["PostProcess"]
    with open(postprocess_dict["class_id_map_file"], encoding="utf-8") as f:
        label_names = [line.strip().split(" ", 1)[1:][0] for line in f.readlines()]
    postprocess_name = postprocess_dict.get("name", None)
    postprocess_dict.pop("class_id_map_file")
    postprocess_dict.pop("name")
    dic: OrderedDict[str, Any] = OrderedDict(postprocess_dict.items())
    dic["label_list"] = label_names
    infer_cfg["PostProcess"] = {postprocess_name: dic}
    with open(path, "w") as f:
        yaml.dump(infer_cfg, f)


def paddlex_yml(path: Path, *, model_name: str, side: int, labels: list[str],
                resize: dict[str, Any]) -> None:
    """The inference.yml PaddleX's export writes (its vocabulary: LINEAR, BICUBIC, ...)."""
    shapes = {"x": [[1, 3, side, side], [1, 3, side, side], [8, 3, side, side]]}
    config = {
        "Global": {"model_name": model_name},
        "Hpi": {"backend_configs": {"paddle_infer": {"trt_dynamic_shapes": shapes},
                                    "tensorrt": {"dynamic_shapes": shapes}}},
        "PreProcess": {"transform_ops": [
            {"ResizeImage": resize},
            {"NormalizeImage": {"channel_num": 3, "mean": [0.5, 0.5, 0.5], "order": "",
                                "scale": 0.00392156862745098, "std": [0.5, 0.5, 0.5]}},
            {"ToCHWImage": None}]},
        "PostProcess": {"Topk": {"topk": 1, "label_list": labels}}}
    path.write_text(yaml.dump(config, default_flow_style=False, allow_unicode=True))


FLOWERS = ["daisy", "dandelion", "rose", "sunflower", "tulip", "lily", "orchid", "iris",
           "poppy", "lotus"]


def paddleclas_flowers(folder: Path) -> Path:
    """TinyMobileNet fine-tuned to 10 flower classes (a Softmax head), exported by PaddleClas
    (PIR program, inference.yml by dump_infer_config): resize_short 72, crop 64, bicubic."""
    save_inference_model(folder, "TinyMobileNet", classes=len(FLOWERS), side=64)
    id_map = folder.parent / f"{folder.name}_label_list.txt"
    id_map.write_text("".join(f"{i} {name}\n" for i, name in enumerate(FLOWERS)))
    config = paddleclas_config(resize_short=72, crop=64, class_id_map_file=id_map,
                               interpolation="bicubic")
    dump_infer_config(config, folder / "inference.yml", config["Global"]["image_shape"])
    return folder


def paddlex_defects(folder: Path) -> Path:
    """TinyResNet with 3 classes and no Softmax (logits), a legacy ``.pdmodel`` program, with
    PaddleX's inference.yml: the whole image resized to 48x48 with Pillow's BICUBIC."""
    save_inference_model(folder, "TinyResNet", classes=3, side=48, softmax=False, legacy=True)
    paddlex_yml(folder / "inference.yml", model_name="PP-TinyResNet_defects", side=48,
                labels=["scratch", "dent", "clean"],
                resize={"size": [48, 48], "interpolation": "BICUBIC", "backend": "pil"})
    return folder
