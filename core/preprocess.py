"""PaddleClas's evaluation preprocessing, step for step, and the inputs crossrt feeds models.

The steps follow PaddleClas's inference configs (DecodeImage to RGB, ResizeImage
``resize_short``, CropImage, NormalizeImage, ToCHWImage) with OpenCV, the library PaddleClas
itself uses, so that tensors match bit for bit. Faults here are large (BGR instead of RGB
moves EfficientNetB0 logits by ~23), which is why validation also compares against golden
outputs stored at export time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core import limits
from core.errors import UsageError
from core.spec import DEFAULT_SCALE

if TYPE_CHECKING:
    from core.spec import ModelSpec

BUNDLED_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # shipped inside scikit-image
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 2, "area": 3, "lanczos": 4}  # cv2.INTER_*


def preprocess(image_rgb: np.ndarray, spec: ModelSpec, *, interpolation: str | None = None,
               mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
               ) -> np.ndarray:
    """One HWC uint8 RGB image -> the model's float32 CHW input (resize short, crop, normalise).

    The keyword overrides exist to reproduce a deployment's own (possibly wrong) preprocessing.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise UsageError(f"expected an RGB image of shape HxWx3, got {image_rgb.shape}")
    height, width = image_rgb.shape[:2]
    if spec.resize_short is not None:  # Python's round, as PaddleClas's ResizeImage
        factor = spec.resize_short / min(height, width)
        size = (int(round(width * factor)), int(round(height * factor)))  # (w, h)
    else:
        assert spec.resize_to is not None
        size = (spec.resize_to, spec.resize_to)
    resized = _resize(image_rgb, size, interpolation or spec.interpolation, spec.resize_backend)
    crop = spec.crop_size
    top, left = (resized.shape[0] - crop) // 2, (resized.shape[1] - crop) // 2
    cropped = resized[top:top + crop, left:left + crop]
    mean_arr = np.array(mean or spec.mean, dtype=np.float32).reshape(1, 1, 3)
    std_arr = np.array(std or spec.std, dtype=np.float32).reshape(1, 1, 3)
    normalised = (cropped.astype(np.float32) * np.float32(spec.scale) - mean_arr) / std_arr
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def _resize(image: np.ndarray, size: tuple[int, int], interpolation: str,
            backend: str) -> np.ndarray:
    """PaddleClas's UnifiedResize: OpenCV by default, Pillow where a config says backend pil."""
    if backend == "pil":
        from PIL import Image

        resample = {"nearest": Image.Resampling.NEAREST, "linear": Image.Resampling.BILINEAR,
                    "cubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
                    "lanczos": Image.Resampling.LANCZOS,
                    "hamming": Image.Resampling.HAMMING}[interpolation]
        return np.asarray(Image.fromarray(image).resize(size, resample))
    import cv2

    return cv2.resize(image, size, interpolation=_INTERPOLATIONS[interpolation])


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to HWC uint8 RGB, as PaddleClas's DecodeImage(to_rgb=True)."""
    if not Path(path).is_file():
        raise UsageError(f"cannot read image {path}: not a readable JPEG/PNG file")
    limits.check_file_size(Path(path), limits.IMAGE_BYTES, "image")
    return decode_image(np.fromfile(str(path), dtype=np.uint8), str(path))


def decode_image(data: bytes | np.ndarray, name: str = "(bytes)") -> np.ndarray:
    """Encoded image bytes (a file's, or a request's) to HWC uint8 RGB, size-checked first."""
    import cv2

    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if data.size > limits.IMAGE_BYTES:
        raise UsageError(f"image {name} has {data.size:,} bytes, over crossrt's limit of "
                         f"{limits.IMAGE_BYTES:,}")
    _check_dimensions(name, data)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UsageError(f"cannot read image {name}: not a readable JPEG/PNG file")
    return np.ascontiguousarray(image[:, :, ::-1])


def _check_dimensions(path: str | Path, data: np.ndarray) -> None:
    """The image's size from its header (Pillow reads no pixels for it), refused past
    crossrt's limits before OpenCV decodes it: a tiny file can declare a huge image."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return  # not a format Pillow knows: OpenCV decides (its own limit is 2^30 pixels)
    limits.check_image_size(path, width, height)


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """The photographs that ship inside scikit-image (no download), as (name, RGB image)."""
    import skimage.data

    return [(name, getattr(skimage.data, name)()) for name in BUNDLED_PHOTOS]


def load_images(directory: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """Every image in ``directory`` (sorted by name), or the bundled photographs if None."""
    if directory is None:
        return bundled_photos()
    folder = Path(directory)
    if not folder.is_dir():
        raise UsageError(f"image folder {folder} does not exist; pass a folder of JPEG/PNG files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no JPEG/PNG images in {folder}; add some or leave out --images")
    return [(p.name, read_image(p)) for p in files]


def random_inputs(spec: ModelSpec, count: int, seed: int = 0) -> np.ndarray:
    """``count`` seeded inputs: uniform pixels (over the range ``scale`` gives 0..255)
    normalised like photographs."""
    rng = np.random.default_rng(seed)
    pixels = rng.random((count, spec.crop_size, spec.crop_size, 3), dtype=np.float32)
    if spec.scale != DEFAULT_SCALE:
        pixels *= np.float32(255 * spec.scale)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(0, 3, 1, 2))


def photo_batch(spec: ModelSpec, directory: str | Path | None = None,
                ) -> tuple[list[str], np.ndarray]:
    """Names and the stacked [N, 3, crop, crop] tensor of the preprocessed photographs."""
    images = load_images(directory)
    return [name for name, _ in images], np.stack([preprocess(img, spec) for _, img in images])


ACTIVATION_FACTOR = 32  # a classifier's working memory per sample, in multiples of its input


def check_batch_fits(spec: ModelSpec, batch_size: int, factor: int = ACTIVATION_FACTOR,
                     what: str = "", fix: str = "use smaller --batch-sizes") -> None:
    """Refuse a batch size whose inputs and activations (``factor`` times the inputs) cannot
    fit in this machine's memory (asked for anyway, numpy or the runtime would exhaust
    memory, or the kernel kill us)."""
    need = batch_size * int(np.prod(spec.input_shape)) * 4 * factor
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > free:
        raise UsageError(f"{what or f'batch size {batch_size}'} of {spec.name} needs about "
                         f"{need / 2**30:.0f} GiB, this machine has {free / 2**30:.0f} GiB free; "
                         f"{fix}")


def batches(samples: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split samples into batches of exactly ``batch_size``, cycling samples to fill the last."""
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    count = max(1, -(-len(samples) // batch_size)) * batch_size
    cycled = samples[np.arange(count) % len(samples)]
    return [cycled[i:i + batch_size] for i in range(0, count, batch_size)]
