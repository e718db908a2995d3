"""The photo-crop classification set (simmm.data.photos): bundled photos by name, any photo by path."""
import numpy as np
import pytest
import torch
from PIL import Image

from simmm.data.photos import load_photo, photo_crops
from simmm.errors import DataError


def test_a_photo_by_path_is_read_as_its_pixels(tmp_path):
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[1, 2] = (255, 51, 0)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    photo = load_photo(str(tmp_path / "p.png"))
    assert photo.shape == (3, 4, 6)
    assert photo[:, 1, 2].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert float(photo.sum()) == pytest.approx(1.2)


def test_paths_and_names_make_one_class_each(tmp_path):
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "grey.png")
    images, labels = photo_crops(["chelsea", str(tmp_path / "grey.png")], "test", per_class=3, size=8)
    assert images.shape == (6, 3, 8, 8) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.allclose(images[3:], torch.full_like(images[3:], 200 / 255), atol=1e-6)


def test_a_bad_photo_is_named(tmp_path):
    with pytest.raises(DataError, match="not a photo scikit-image ships.*astronaut"):
        load_photo("no_such_photo")
    with pytest.raises(DataError, match=r"cannot read image .*missing\.jpg"):
        load_photo(str(tmp_path / "missing.jpg"))
