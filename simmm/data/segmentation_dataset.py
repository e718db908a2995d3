"""Segmentation samples and the dataset base class: loading an image and its label at one size.

- loading (:class:`SegmentationSample`): the image as ``float32 (3, H, W)`` in ``[0, 1]``, the label as
  ``int64 (H, W)`` Cityscapes train ids (0..18, 255 = ignore). Label files hold either Cityscapes *labelIds*
  (mapped through :data:`simmm.data.labels.LABEL_TO_TRAIN`) or *trainIds* (used as they are). A value outside
  the table, a label of another size than its image, an unreadable file: each raises
  :class:`~simmm.errors.DataError` naming the file.
- resizing: with ``size=(H, W)`` the image is resized bilinearly (PIL, antialiased when shrinking) and the
  label with nearest neighbour, both to exactly ``(H, W)``; no interpolated ids ever appear.
- :class:`SegmentationDataset`: the base of the four dataset classes (:mod:`~simmm.data.cityscapes`,
  :mod:`~simmm.data.darkzurich`, :mod:`~simmm.data.nighttime_driving`, :mod:`~simmm.data.acdc`), which describe
  their trees as :class:`~simmm.data.tree.TreeGroup` objects (one per split/condition folder).

Datasets are deterministic: random augmentation happens later, on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .check import DataReport
from .images import image_to_tensor, read_image
from .labels import IGNORE_INDEX, NUM_CLASSES, TRAIN_CLASSES, label_to_train_ids, read_label
from .segmentation_check import scan_groups
from .tree import PathLike, SizeHW, TreeGroup, find_images, find_label, normalize_size

__all__ = [
    "SegmentationSample",
    "SegmentationDataset",
    "load_segmentation_pair",
    "resize_image",
    "resize_label",
    "collect_samples",
]


def resize_image(img: Image.Image, size: Optional[SizeHW]) -> Image.Image:
    """Bilinear resize to ``(H, W)`` (PIL's bilinear filter, antialiased when shrinking); ``None``: no-op."""
    if size is None or img.size == (size[1], size[0]):
        return img
    return img.resize((size[1], size[0]), resample=Image.BILINEAR)


def resize_label(label: np.ndarray, size: Optional[SizeHW]) -> np.ndarray:
    """Nearest-neighbour resize of an id map to ``(H, W)``: every output value is one of the input values."""
    if size is None or label.shape == tuple(size):
        return label
    out = Image.fromarray(label, mode="L").resize((size[1], size[0]), resample=Image.NEAREST)
    return np.asarray(out, dtype=np.uint8)


def load_segmentation_pair(
    image_path: PathLike,
    label_path: Optional[PathLike] = None,
    kind: str = "labelIds",
    size: Optional[SizeHW] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Load one image (and its label) as tensors.

    Args:
        image_path: RGB image.
        label_path: label PNG, or ``None`` for an image without label.
        kind: ``"labelIds"`` (Cityscapes ids 0..33, mapped to train ids) or ``"trainIds"``.
        size: ``None`` (native resolution) or ``(H, W)``: bilinear for the image, nearest for the label.

    Returns:
        ``(image float32 (3, H, W) in [0, 1], target int64 (H, W) or None)``.

    Raises:
        DataError: unreadable files, a label whose size differs from the image's (both named, with sizes),
            label values outside the table.
    """
    img = read_image(image_path)
    target = None
    if label_path is not None:
        raw = read_label(label_path)
        if raw.shape != (img.height, img.width):
            raise DataError(
                f"label {label_path} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image {image_path} is "
                f"{img.width}x{img.height}; a label must have exactly the size of its image")
        train = label_to_train_ids(raw, kind, label_path)
        target = torch.from_numpy(resize_label(train, size).astype(np.int64))
    return image_to_tensor(resize_image(img, size)), target


@dataclass
class SegmentationSample:
    """One item of a segmentation dataset: where its files are and how to load them.

    Attributes:
        image: the RGB image.
        label: its label PNG (``None``: no label).
        label_kind: ``"labelIds"`` or ``"trainIds"`` (what :attr:`label` holds).
        reference: an optional paired image (ACDC's normal-condition reference), loaded as ``"reference"``.
        name: the image path relative to the dataset's image root (posix), e.g.
            ``"test/night/GOPR0364/GOPR0364_frame_000001_rgb_anon.png"``.
    """

    image: Path
    label: Optional[Path] = None
    label_kind: Optional[str] = None
    reference: Optional[Path] = None
    name: str = ""

    def load(self, size: Optional[SizeHW] = None, with_label: bool = True) -> Dict[str, object]:
        """Read the files: ``{"image", "target" (if labelled), "reference" (if any), "path", "name"}``.

        ``image``/``reference`` are ``float32 (3, H, W)`` in ``[0, 1]``; ``target`` is ``int64 (H, W)`` train
        ids with 255 = ignore; ``path`` is the image path as ``str``. With ``size`` everything is ``(H, W)``.
        """
        label = self.label if with_label else None
        image, target = load_segmentation_pair(self.image, label, self.label_kind or "labelIds", size)
        item: Dict[str, object] = {"image": image}
        if target is not None:
            item["target"] = target
        if self.reference is not None:
            # the image's size: ``size``, or the image's native size when a reference differs from it
            item["reference"] = image_to_tensor(resize_image(read_image(self.reference), tuple(image.shape[1:])))
        item["path"] = str(self.image)
        item["name"] = self.name
        return item


def collect_samples(
    group: TreeGroup,
    layout: str,
    with_labels: bool,
    with_reference: bool = False,
    name_root: Optional[Path] = None,
    max_listed: int = 5,
) -> List[SegmentationSample]:
    """The samples of ``group``; raises :class:`DataError` for a missing folder, no images, missing labels.

    Args:
        group: where to look.
        layout: the expected tree as text (used in messages).
        with_labels: every image must have a label (the error names the missing label files).
        with_reference: every image must have a reference image.
        name_root: :attr:`SegmentationSample.name` is the image path relative to this (default: the group's
            image folder).
    """
    if not group.image_dir.is_dir():
        raise DataError(f"image folder {group.image_dir} does not exist; expected the tree {layout}")
    images = find_images(group.image_dir, group.image_suffix)
    if not images:
        raise DataError(f"no *{group.image_suffix} images found under {group.image_dir}; "
                        f"expected the tree {layout}")
    if with_labels:
        if group.label_dir is None:
            raise DataError(f"{group.name} has no labels in this dataset; use with_labels=False")
        if not group.label_dir.is_dir():
            raise DataError(f"label folder {group.label_dir} does not exist (labels for {group.image_dir}); "
                            f"expected the tree {layout}; pass with_labels=False to load the images only")
    if with_reference and group.reference_dir is not None and not group.reference_dir.is_dir():
        raise DataError(f"reference folder {group.reference_dir} does not exist (references for "
                        f"{group.image_dir}); expected the tree {layout}")
    base = name_root if name_root is not None else group.image_dir
    samples: List[SegmentationSample] = []
    missing: List[Tuple[Path, Optional[Path]]] = []
    missing_ref: List[Tuple[Path, Optional[Path]]] = []
    for img in images:
        s = SegmentationSample(image=img, name=img.relative_to(base).as_posix())
        if with_labels:
            label, kind, expected = find_label(group, img)
            if label is None:
                missing.append((img, expected))
            s.label, s.label_kind = label, kind
        if with_reference:
            ref = group.reference_path(img)
            if ref is None or not ref.is_file():
                missing_ref.append((img, ref))
            s.reference = ref
        samples.append(s)
    for what, lst in (("label", missing), ("reference image", missing_ref)):
        if lst:
            shown = "; ".join(f"{exp} (for {img})" for img, exp in lst[:max_listed])
            more = f"; ... and {len(lst) - max_listed} more" if len(lst) > max_listed else ""
            pattern = group.label_pattern() if what == "label" else f"*{group.reference_suffix}"
            raise DataError(f"missing {what} file(s) for {len(lst)} of {len(images)} images in "
                            f"{group.image_dir}: {shown}{more}; expected {pattern} next to each image's "
                            f"relative path, i.e. the tree {layout}")
    return samples


class SegmentationDataset(Dataset):
    """A list of :class:`SegmentationSample` loaded at one size; the base of the four dataset classes.

    Items are dicts: ``{"image": float32 (3, H, W) in [0, 1], "target": int64 (H, W) train ids with 255 =
    ignore (only when labelled), "path": str, "name": str}`` (ACDC adds ``"reference"``).

    Attributes:
        samples: the samples, in a stable order.
        size: ``None`` (native resolution) or ``(H, W)``.
        with_labels: whether items carry ``"target"``.
        root, layout, groups: where the data come from (for messages and :meth:`check`).
    """

    dataset_name = "segmentation"

    def __init__(self, samples: Sequence[SegmentationSample], size=None, with_labels: bool = True,
                 root: Optional[Path] = None, layout: str = "", groups: Sequence[TreeGroup] = ()):
        self.samples: List[SegmentationSample] = list(samples)
        self.size: Optional[SizeHW] = normalize_size(size)
        self.with_labels = bool(with_labels)
        self.root = root
        self.layout = layout
        self.groups: List[TreeGroup] = list(groups)
        self.num_classes = NUM_CLASSES
        self.ignore_index = IGNORE_INDEX

    def _init_from_group(self, group: TreeGroup, root: Path, layout: str, size, with_labels: bool,
                         name_root: Path, with_reference: bool = False) -> None:
        """Initialise from the samples of one tree group (the dataset classes' shared tail); a missing folder,
        an empty one or an image without label raises :class:`DataError` naming it and ``layout``."""
        samples = collect_samples(group, layout, with_labels=with_labels, with_reference=with_reference,
                                  name_root=name_root)
        SegmentationDataset.__init__(self, samples, size=size, with_labels=with_labels, root=root, layout=layout,
                                     groups=[group])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict[str, object]:
        return self.samples[index].load(self.size, with_label=self.with_labels)

    @property
    def classes(self) -> Tuple[str, ...]:
        return TRAIN_CLASSES

    def check(self, strict: bool = True, verify: bool = True) -> DataReport:
        """Read every image and label of this dataset and report problems.

        Args:
            strict: raise :class:`DataError` listing every problem (each names its file, and for a value
                outside the table, the value) instead of returning a failing report.
            verify: decode the images completely (finds truncated files).
        """
        report = scan_groups(self.dataset_name, self.root or Path("."), self.layout, self.groups,
                             verify=verify, samples=[s.image for s in self.samples], check_labels=self.with_labels)
        if strict and not report.ok:
            raise DataError(f"{self.dataset_name} data under {self.root} has problems:\n  "
                            + "\n  ".join(report.problems))
        return report

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, {len(self)} images, size={self.size}, "
                f"with_labels={self.with_labels})")
