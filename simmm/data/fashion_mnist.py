"""Fashion-MNIST (Zalando's 70k 28×28 grey photographs of ten kinds of clothing) read from its idx files.

Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``, MIT) puts the four files of the
release, gzipped, in :data:`DEBIAN_ROOT`; a folder holding them uncompressed works as well. It is the only set of
real photographs with semantic classes that can be had offline here: a second classification proxy beside the
photo-crop one (:mod:`simmm.data.photos`).

The idx format (Y. LeCun's MNIST page): two zero bytes, a type code (``0x08`` unsigned byte, ``0x09`` signed byte,
``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, then each dimension
as a big-endian uint32, then the values in C order, big-endian. Images are ``(N, 28, 28)`` unsigned bytes (0 =
black background), labels ``(N,)`` unsigned bytes 0–9 in the order of :data:`CLASSES`.

Models here take colour images: the grey value is repeated over three channels, and images are resized
(bilinearly) to the size the model is trained at. ``per_class`` keeps a seeded, class-balanced subset so that a
proxy fits a CPU budget.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from simmm.errors import DataError

__all__ = ["CLASSES", "DEBIAN_ROOT", "FILES", "FashionMNISTDataset", "idx_path", "load_fashion_mnist", "read_idx"]

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
"""The ten classes, label 0 to 9 (the release's README)."""
DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` installs the four gzipped idx files."""
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
"""Split → (images file, labels file), without the ``.gz`` Debian's files carry."""

_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
PathLike = Union[str, Path]


def idx_path(root: PathLike, name: str) -> Path:
    """``root/name.gz`` (Debian's form) or ``root/name``; :class:`DataError` naming both when neither exists."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Fashion-MNIST folder {root} does not exist; expected the four idx files of the release "
                        f"({', '.join(n for pair in FILES.values() for n in pair)}, .gz or not) — "
                        f"apt-get install dataset-fashion-mnist puts them in {DEBIAN_ROOT}")
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"Fashion-MNIST folder {root} lacks {name}.gz (or {name}); expected the four idx files of the "
                    f"release: {', '.join(n for pair in FILES.values() for n in pair)}")


def read_idx(path: PathLike) -> np.ndarray:
    """The array an idx file holds (gzipped when its name ends in ``.gz``), in native byte order.

    Raises :class:`DataError` naming the file for a wrong magic number (the first two bytes must be zero, the third
    a known type code), a header shorter than its dimensions, or a body of another size than they give.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read idx file {path} ({type(e).__name__}: {e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        magic = raw[:4].hex() if raw else "(empty file)"
        raise DataError(f"{path}: not an idx file (magic {magic}); expected two zero bytes, a type code "
                        f"({', '.join(f'0x{t:02x}' for t in _IDX_TYPES)}) and the number of dimensions — "
                        f"0x00000803 for images, 0x00000801 for labels")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: idx header announces {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: idx dimensions {dims} need {expected} bytes of data, the file has "
                        f"{len(raw) - header}; truncated or not an idx file")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_fashion_mnist(root: PathLike = DEBIAN_ROOT, split: str = "train", per_class: int = 0,
                       seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``uint8 (N, 28, 28)`` and labels ``int64 (N,)`` of a split (``train``: 60k, ``test``: 10k).

    ``per_class > 0`` keeps that many images of each class, drawn without replacement by ``seed`` (and the split),
    in their file order; 0 keeps all. Raises :class:`DataError` for missing files, a wrong magic number, images
    that are not ``(N, H, W)`` bytes, labels that are not ``(N,)`` in 0–9, or a class with fewer images than asked.
    """
    if split not in FILES:
        raise DataError(f"Fashion-MNIST split {split!r}: expected one of {', '.join(FILES)}")
    images_file, labels_file = (idx_path(root, name) for name in FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_file}: expected (N, H, W) unsigned bytes, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_file}: expected ({len(images)},) labels for the {len(images)} images of "
                        f"{images_file.name}, got shape {labels.shape}")
    if len(labels) and int(labels.max()) >= len(CLASSES):
        raise DataError(f"{labels_file}: label {int(labels.max())} out of range; expected 0–{len(CLASSES) - 1}")
    images, labels = torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
    if per_class > 0:
        generator = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1))
        keep = []
        for c in range(len(CLASSES)):
            members = torch.nonzero(labels == c).flatten()
            if len(members) < per_class:
                raise DataError(f"Fashion-MNIST {split} ({images_file}): class {c} ({CLASSES[c]}) has "
                                f"{len(members)} images, fewer than per_class={per_class}")
            keep.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
        index = torch.cat(keep).sort().values
        images, labels = images[index], labels[index]
    return images, labels


class FashionMNISTDataset(Dataset):
    """``(image, label)`` items: the grey image as float ``(3, size, size)`` in ``[0, 1]`` (bilinear resize, the
    grey value in each channel). Keeps the 28×28 bytes in memory and resizes on access (60k images at 224 px would
    take 36 GB as floats)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, size: int = 28) -> None:
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise DataError(f"FashionMNISTDataset expects uint8 images (N, H, W), got {tuple(images.shape)} "
                            f"{images.dtype}")
        self.images, self.labels, self.size = images, labels.long(), int(size)
        self.targets = self.labels.tolist()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        grey = self.images[index].float().div(255.0)[None, None]
        if grey.shape[-1] != self.size or grey.shape[-2] != self.size:
            grey = F.interpolate(grey, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return grey[0].clamp(0, 1).expand(3, -1, -1).contiguous(), self.targets[index]
