"""PaddleClas preprocessing, step by step, on constructed images whose answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.errors import UsageError
from core.preprocess import batches, load_images, photo_batch, preprocess, read_image
from exporter.specs import get_spec

B0 = get_spec("EfficientNetB0")


def test_constant_image_normalises_to_mean_std():
    image = np.full((300, 400, 3), (255, 0, 128), np.uint8)
    x = preprocess(image, B0)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    expected = (np.array([1.0, 0.0, 128 / 255]) - B0.mean) / B0.std
    np.testing.assert_allclose(x.reshape(3, -1).mean(1), expected, rtol=1e-6)


def test_short_side_resize_then_center_crop():
    # a 300x600 image: short side 300 -> 256, long side 600 -> 512; the crop starts at
    # ((512 - 224) // 2, (256 - 224) // 2) = (144, 16) in the resized image
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 600, 3), np.uint8)
    resized = cv2.resize(image, (512, 256), interpolation=cv2.INTER_LINEAR)
    expected = resized[16:240, 144:368].astype(np.float32) / 255
    expected = ((expected - np.float32(B0.mean)) / np.float32(B0.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess(image, B0), expected, atol=1e-6)


def test_interpolation_and_channel_faults_change_the_tensor():
    _, chelsea = load_images()[0]
    x = preprocess(chelsea, B0)
    assert np.abs(preprocess(chelsea, B0, interpolation="nearest") - x).max() > 0.1
    assert np.abs(preprocess(chelsea[:, :, ::-1], B0) - x).max() > 0.5


def test_read_image_decodes_to_rgb(tmp_path):
    image = np.zeros((10, 12, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    cv2.imwrite(str(tmp_path / "red.png"), image[:, :, ::-1])  # cv2 writes BGR
    np.testing.assert_array_equal(read_image(tmp_path / "red.png"), image)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UsageError, match="cannot read image"):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(UsageError, match="does not exist"):
        load_images(tmp_path / "red.png")  # a file, not a folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no JPEG/PNG"):
        load_images(tmp_path / "empty")


def test_bundled_photos_and_batching():
    names, photos = photo_batch(B0)
    assert (names == ["chelsea", "coffee", "astronaut", "rocket"]
            and photos.shape == (4, 3, 224, 224))
    split = batches(photos, 3)
    assert [b.shape[0] for b in split] == [3, 3]
    np.testing.assert_array_equal(split[1][1:], photos[:2])  # cycled to fill the last batch
