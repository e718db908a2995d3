import pytest
import torch
from PIL import Image, ImageFile

from simmm.data.images import (
    IMAGE_EXTENSIONS,
    image_to_tensor,
    is_image_file,
    load_image_tensor,
    read_image,
    resize_short_center_crop,
    save_grid,
    save_image,
    tensor_to_image,
    verify_image,
)
from simmm.errors import DataError


def test_extensions_case_insensitive():
    assert ".webp" in IMAGE_EXTENSIONS and ".tiff" in IMAGE_EXTENSIONS
    assert is_image_file("a/B.JPG") and is_image_file("x.Png") and is_image_file("y.jpeg")
    assert not is_image_file("notes.txt") and not is_image_file("noext")


def test_read_image_rgb_and_tensor(tmp_path, image_writer):
    p = image_writer(tmp_path / "a.png", size=(40, 32))
    img = read_image(p)
    assert img.mode == "RGB" and img.size == (40, 32)
    t = image_to_tensor(img)
    assert t.shape == (3, 32, 40) and t.dtype == torch.float32
    assert 0.0 <= t.min() and t.max() <= 1.0
    gray = image_writer(tmp_path / "g.png", mode="L")
    assert read_image(gray).mode == "RGB"
    assert load_image_tensor(gray).shape == (3, 32, 40)


def test_missing_file_names_path(tmp_path):
    p = tmp_path / "nope" / "missing.jpg"
    with pytest.raises(DataError, match="missing.jpg") as e:
        read_image(p)
    assert str(p) in str(e.value) and "expected a readable RGB image file" in str(e.value)
    assert verify_image(p) is not None


def test_truncated_jpeg_detected(truncated_jpeg):
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(DataError) as e:
        read_image(truncated_jpeg)
    msg = str(e.value)
    assert str(truncated_jpeg) in msg and "truncated" in msg
    assert "truncated" in verify_image(truncated_jpeg)


def test_non_image_file(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("this is not a jpeg")
    with pytest.raises(DataError, match="fake.jpg"):
        read_image(p)
    assert verify_image(p) is not None
    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4)).save(good)
    assert verify_image(good) is None


def test_resize_short_center_crop():
    img = Image.new("RGB", (80, 40))
    out = resize_short_center_crop(img, 32, resize=36)
    assert out.size == (32, 32)
    assert resize_short_center_crop(img, (20, 30)).size == (30, 20)  # (H, W) → PIL (W, H)
    same = Image.new("RGB", (24, 24), (10, 20, 30))
    assert resize_short_center_crop(same, 24) .tobytes() == same.tobytes()  # no-op at its own size
    with pytest.raises(ValueError, match=r"resize \(16\) must be at least the crop size 32"):
        resize_short_center_crop(img, 32, resize=16)


def test_load_image_tensor_size_deterministic(tmp_path, image_writer):
    p = image_writer(tmp_path / "a.jpg", size=(50, 30))
    a = load_image_tensor(p, size=24, resize=28)
    b = load_image_tensor(p, size=24, resize=28)
    assert a.shape == (3, 24, 24) and torch.equal(a, b)


def test_save_image_roundtrip(tmp_path):
    t = torch.rand(3, 9, 7)
    p = save_image(t, tmp_path / "deep" / "dir" / "x.png")
    back = load_image_tensor(p)
    assert back.shape == (3, 9, 7)
    assert (back - t).abs().max() <= 0.5 / 255 + 1e-6
    save_image(torch.rand(5, 6), tmp_path / "gray.png")  # (H, W) accepted
    assert read_image(tmp_path / "gray.png").size == (6, 5)
    with pytest.raises(ValueError, match=r"expected an image tensor of shape \(3,H,W\).*got \(4, 5, 5\)"):
        tensor_to_image(torch.rand(4, 5, 5))


def test_save_grid(tmp_path):
    rows = [[torch.rand(3, 16, 16), torch.zeros(3, 16, 16), torch.ones(3, 12, 10)],
            [torch.rand(3, 16, 16), torch.rand(1, 16, 16)]]
    p = save_grid(rows, tmp_path / "g" / "grid.png", labels=["day", "dark", "sim"], row_labels=["a", "b"])
    img = read_image(p)
    w, h = img.size
    assert w > 3 * 16 and h > 2 * 16
    plain = read_image(save_grid(rows, tmp_path / "plain.png"))
    assert plain.size[1] < h and plain.size[0] < w  # titles take room
