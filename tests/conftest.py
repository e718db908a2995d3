"""Shared fixtures: tiny datasets in the exact on-disk formats, image writers, real photos.

Everything is generated (seeded) into ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

# The suite runs tiny tensors: one intra-op thread avoids oversubscription (which slows tiny ops by an order
# of magnitude on a busy 2-core machine) and keeps timings steady.
torch.set_num_threads(1)

CODAN_CLASSES = ("Bicycle", "Car", "Motorbike", "Bus", "Boat", "Cat", "Dog", "Bottle", "Cup", "Chair")
CODAN_SPLITS = ("train", "test_day", "test_night")


def write_image(path, size: Tuple[int, int] = (40, 32), seed: int = 0, fmt: Optional[str] = None,
                mode: str = "RGB") -> Path:
    """Write a random (smooth + noise) image of ``size=(W, H)``; format from the suffix or ``fmt``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, size=(1, 1, 3))
    ramp = np.linspace(0, 60, w)[None, :, None]
    arr = np.clip(base + ramp + rng.normal(0, 25, size=(h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, mode="RGB")
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def make_folder_dataset(root, splits: Sequence[str] = CODAN_SPLITS, classes: Sequence[str] = CODAN_CLASSES,
                        per_class: Tuple[int, ...] = (2, 3), size: Tuple[int, int] = (40, 32),
                        seed: int = 0) -> Path:
    """``root/<split>/<Class>/<n>.jpg|png``: ``per_class`` cycles over classes (2, 3, 2, 3, ...)."""
    root = Path(root)
    k = 0
    for s_i, split in enumerate(splits):
        for c_i, cls in enumerate(classes):
            n = per_class[(c_i + s_i) % len(per_class)]
            for j in range(n):
                ext = ".jpg" if (j + c_i) % 2 == 0 else ".png"
                path = root / split / cls / f"{cls.lower()}_{j:03d}{ext}"
                write_image(path, size=size, seed=seed * 100_003 + k)
                k += 1
    return root


@pytest.fixture
def image_writer() -> Callable[..., Path]:
    """The :func:`write_image` helper: ``image_writer(path, size=(W, H), seed=0, fmt=None, mode="RGB")``."""
    return write_image


@pytest.fixture
def folder_dataset_factory() -> Callable[..., Path]:
    """The :func:`make_folder_dataset` helper (custom splits/classes/sizes)."""
    return make_folder_dataset


@pytest.fixture
def tmp_codan(tmp_path) -> Path:
    """A tiny CODaN tree: ``ROOT/{train,test_day,test_night}/<10 classes>/``, 2–3 JPG/PNG images (40×32)."""
    return make_folder_dataset(tmp_path / "codan")


@pytest.fixture
def truncated_jpeg(tmp_path) -> Path:
    """A JPEG whose file was cut in half after writing (PIL raises 'image file is truncated')."""
    path = write_image(tmp_path / "truncated.jpg", size=(64, 48), seed=7)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def tiny_images() -> Tuple[torch.Tensor, torch.Tensor]:
    """``(images float (12, 3, 32, 32) in [0, 1], labels long (12,))`` with 3 classes, seeded."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 3, 32, 32, generator=g)
    labels = torch.arange(12) % 3
    return images, labels


@pytest.fixture(scope="session")
def real_photos() -> dict:
    """scikit-image's bundled photographs as PIL RGB images: ``{"chelsea": <cat>, "coffee": <cup>, ...}``."""
    skdata = pytest.importorskip("skimage.data")
    out = {}
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        arr = getattr(skdata, name)()
        out[name] = Image.fromarray(arr).convert("RGB")
    return out
