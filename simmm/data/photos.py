"""A small real-photo classification set made on the spot from the photographs scikit-image ships.

It is the embedded default that lets ``simmm train recipes/demo.yaml`` run the whole method with no download:
each bundled colour photograph is one class ("which scene is this crop from?"). Training crops come from the
left part of each photo and test crops from the held-out right part, so the test measures recognition of
unseen image regions, not memorised pixels. Crops are drawn with a fixed seed; the set is the same on every
machine with the same scikit-image photos.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from simmm.errors import DataError

__all__ = ["PHOTOS", "load_photo", "photo_crops"]

# real colour photographs bundled with scikit-image (CC0 / public domain, see skimage/data/README.txt)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "stereo_motorcycle", "retina")


def load_photo(name: str) -> torch.Tensor:
    """One photo as float (3, H, W) in [0, 1]: a scikit-image bundled photo by name (``"astronaut"``), or an image
    file by path (any name with a ``/``, e.g. a photo of Debian's opencv-doc; a missing or unreadable file raises
    :class:`~simmm.errors.DataError` naming it)."""
    if "/" in name:
        from simmm.data.images import image_to_tensor, read_image

        return image_to_tensor(read_image(name))
    import skimage.data

    if not callable(getattr(skimage.data, name, None)):
        raise DataError(f"photo {name!r}: not a photo scikit-image ships (skimage.data.{name}) and not a file path; "
                        f"the bundled colour photos: {', '.join(PHOTOS)}")
    array = getattr(skimage.data, name)()
    if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity); keep the left view
        array = array[0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float() / 255.0


def photo_crops(photos=PHOTOS, split: str = "train", per_class: int = 64, size: int = 64,
                train_fraction: float = 0.7, scale=(0.15, 0.45),
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Square crops of each photo, resized to ``size``; returns images (N, 3, size, size) and labels (N,).

    ``split="train"`` crops lie in the left ``train_fraction`` of the photo, ``"test"`` crops in the rest.
    The crop side is ``scale`` times the photo's shorter side (clipped to the region's width).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    generator = torch.Generator().manual_seed(seed + (0 if split == "train" else 10_000))
    images, labels = [], []
    for label, name in enumerate(photos):
        photo = load_photo(name)
        _, height, width = photo.shape
        cut = int(width * train_fraction)
        x0, x1 = (0, cut) if split == "train" else (cut, width)
        for _ in range(per_class):
            s = float(torch.empty(1).uniform_(*scale, generator=generator))
            side = max(8, min(int(s * min(height, width)), x1 - x0, height))
            x = x0 + int(torch.randint(0, x1 - x0 - side + 1, (1,), generator=generator))
            y = int(torch.randint(0, height - side + 1, (1,), generator=generator))
            crop = photo[:, y:y + side, x:x + side].unsqueeze(0)
            images.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False).clamp(0, 1))
            labels.append(label)
    return torch.cat(images), torch.tensor(labels)
