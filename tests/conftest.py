"""Shared fixtures: tiny datasets in the exact on-disk formats, image writers, real photos.

Everything is generated (seeded, by :mod:`simmm.data.synthetic`) into ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Tuple

import pytest
import torch
from PIL import Image

from simmm.data.synthetic import make_codan_tree, write_image

# The suite runs tiny tensors: one intra-op thread avoids oversubscription (which slows tiny ops by an order
# of magnitude on a busy 2-core machine) and keeps timings steady.
torch.set_num_threads(1)


make_folder_dataset = make_codan_tree  # root/<split>/<Class>/<n>.jpg|png; other splits/classes/sizes by argument


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
