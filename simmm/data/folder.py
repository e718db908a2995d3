"""Class-per-folder image datasets (CODaN's layout) and the check behind ``simmm data check``.

Layout: ``ROOT/<split>/<Class>/<image>.<ext>`` with one folder per class, images directly inside it
(non-recursive), extensions from :data:`~simmm.data.images.IMAGE_EXTENSIONS`. Names starting with ``.`` are
ignored everywhere (``.DS_Store``, hidden folders).

Datasets here are deterministic: an item is the image scaled on its short side and centre-cropped. Random
augmentation is done later on the whole batch, on the training device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .check import DataReport, capped, listing
from .labels import CODAN_CLASSES, CODAN_SPLITS
from .synthetic import dataset_root
from .images import (
    IMAGE_EXTENSIONS,
    image_to_tensor,
    is_image_file,
    read_image,
    resize_short_center_crop,
    verify_image,
)

PathLike = Union[str, "os.PathLike[str]"]

_EXT_HINT = "|".join(e.lstrip(".") for e in (".jpg", ".png"))

__all__ = [
    "CODAN_CLASSES",
    "CODAN_SPLITS",
    "ImageFolderDataset",
    "InMemoryImageDataset",
    "SplitScan",
    "scan_splits",
    "scan_folder_dataset",
    "folder_layout",
]


def folder_layout(root: PathLike, splits: Optional[Sequence[str]] = None) -> str:
    """The expected tree as one line, e.g. ``/data/codan/{train,test_day,test_night}/<Class>/*.jpg|png``."""
    if splits is None:
        split_part = "<split>"
    elif len(splits) == 1:
        split_part = str(splits[0])
    else:
        split_part = "{" + ",".join(splits) + "}"
    return f"{root}/{split_part}/<Class>/*.{_EXT_HINT}"


def _visible(entries) -> List[Path]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda p: p.name)


def _list_images(folder: Path) -> List[Path]:
    return [p for p in _visible(folder.iterdir()) if p.is_file() and is_image_file(p)]


class ImageFolderDataset(Dataset):
    """Images in ``ROOT/<split>/<Class>/*.<ext>``, one folder per class.

    Args:
        root: dataset root.
        split: sub-folder of ``root`` (``"train"``, ``"test_night"``, ...).
        classes: class folder names in label order; ``None`` → the sorted folder names found in the split.
            With an explicit list, a named class without a folder is an error, and so (with
            ``strict_classes=True``) is a folder that is not named.
        size: output size (``int`` square or ``(H, W)``); ``None`` keeps each image's own size.
        resize: the short side is scaled to this before the centre crop; ``None`` scales it to the crop
            size (no margin: CODaN's 224² images pass unchanged at ``size=224``, its "no test-time resize"
            protocol).
        strict_classes: reject class folders not named in ``classes``; ``False`` ignores them.
        expected_layout: text used in error messages to describe the expected tree (defaults to
            ``ROOT/<split>/<Class>/*.jpg|png`` with the real root).

    Items are ``(image, label)``: ``float32 (3, size, size)`` in ``[0, 1]`` and an ``int``. Loading an
    unreadable image raises :class:`DataError` naming the file.

    Attributes:
        samples: list of ``(path, label)``.
        targets: list of labels, aligned with ``samples``.
        classes: class names in label order; ``class_to_idx`` the reverse map.
        root, split, split_dir: where the images come from.
    """

    def __init__(
        self,
        root: PathLike,
        split: str,
        classes: Optional[Sequence[str]] = None,
        size: Optional[Union[int, Tuple[int, int]]] = 224,
        resize: Optional[int] = 256,
        strict_classes: bool = True,
        expected_layout: Optional[str] = None,
    ):
        self.root = dataset_root(root)
        self.split = str(split)
        self.split_dir = self.root / self.split
        self.size = size
        self.resize = resize
        layout = expected_layout or folder_layout(self.root)
        if size is not None and resize is not None:
            crop = size if isinstance(size, int) else max(size)
            if resize < crop:
                raise DataError(
                    f"resize ({resize}) must be at least the crop size ({crop}) for {self.split_dir}"
                )

        if not self.root.is_dir():
            raise DataError(
                f"dataset root {self.root} does not exist or is not a folder; expected the tree {layout}"
            )
        if not self.split_dir.is_dir():
            raise DataError(f"split folder {self.split_dir} does not exist; expected the tree {layout}")

        folders = [p.name for p in _visible(self.split_dir.iterdir()) if p.is_dir()]
        if classes is None:
            classes = folders
            if not classes:
                raise DataError(
                    f"split folder {self.split_dir} has no class folders; expected the tree {layout}"
                )
        else:
            classes = [str(c) for c in classes]
            if len(set(classes)) != len(classes):
                raise DataError(f"class list {classes} names a class twice")
            missing = [c for c in classes if c not in folders]
            if missing:
                paths = ", ".join(str(self.split_dir / c) for c in missing)
                raise DataError(
                    f"missing class folder(s) {paths}; expected one folder per class {list(classes)} "
                    f"in the tree {layout}"
                )
            extra = [f for f in folders if f not in classes]
            if extra and strict_classes:
                paths = ", ".join(str(self.split_dir / f) for f in extra)
                raise DataError(
                    f"unexpected folder(s) {paths} in {self.split_dir}: not among the expected classes "
                    f"{list(classes)}; remove or rename them, or fix the class list"
                )
        self.classes: List[str] = list(classes)
        self.class_to_idx: Dict[str, int] = {c: i for i, c in enumerate(self.classes)}

        self.samples: List[Tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            for p in _list_images(self.split_dir / name):
                self.samples.append((str(p), label))
        if not self.samples:
            raise DataError(
                f"split folder {self.split_dir} holds no images (extensions {', '.join(IMAGE_EXTENSIONS)}) "
                f"in its class folders; expected the tree {layout}"
            )
        self.targets: List[int] = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int):
        """The preprocessed PIL image of sample ``index`` (before conversion to a tensor)."""
        path, _ = self.samples[index]
        img = read_image(path)
        if self.size is not None:
            img = resize_short_center_crop(img, self.size, self.resize)
        return img

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        return image_to_tensor(self.load(index)), self.targets[index]

    def class_counts(self) -> Dict[str, int]:
        """Number of images per class name."""
        counts = {c: 0 for c in self.classes}
        for t in self.targets:
            counts[self.classes[t]] += 1
        return counts

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"{len(self)} images, {len(self.classes)} classes, size={self.size}, resize={self.resize})")


class InMemoryImageDataset(Dataset):
    """A dataset of images already in memory (generated data, the demo).

    Args:
        images: ``float (N, 3, H, W)`` in ``[0, 1]``.
        labels: ``int (N,)``.
        classes: optional class names (``len`` > max label).

    Items are ``(images[i], int(labels[i]))``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Optional[Sequence[str]] = None):
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise DataError(f"InMemoryImageDataset expects images of shape (N, 3, H, W), got {shape}")
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"InMemoryImageDataset expects labels of shape ({images.shape[0]},), "
                f"got {tuple(labels.shape)}"
            )
        if labels.is_floating_point():
            raise DataError("InMemoryImageDataset expects integer labels")
        self.images = images
        self.labels = labels.long()
        self.targets: List[int] = self.labels.tolist()
        if classes is not None:
            classes = list(classes)
            if self.targets and max(self.targets) >= len(classes):
                raise DataError(
                    f"label {max(self.targets)} out of range for {len(classes)} classes {classes}"
                )
        self.classes = classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


# --------------------------------------------------------------------------------------------- data check


@dataclass
class SplitScan:
    """What :func:`scan_splits` found in one split folder."""

    split: str
    path: str
    exists: bool
    counts: Dict[str, int] = field(default_factory=dict)  # images per class (expected classes, in order)
    missing_classes: List[str] = field(default_factory=list)  # expected class folders that are absent
    unexpected_folders: List[str] = field(default_factory=list)  # folders not named in the class list
    unreadable: List[Tuple[str, str]] = field(default_factory=list)  # (file, reason): truncated / corrupt
    non_image_files: List[str] = field(default_factory=list)  # files without an image extension
    empty_classes: List[str] = field(default_factory=list)  # class folders present but without images

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> bool:
        return (self.exists and not self.missing_classes and not self.unexpected_folders
                and not self.unreadable and self.total > 0)

    def report_to(self, report: DataReport, layout: str, classes: Optional[List[str]],
                  max_listed: int) -> None:
        """Add this split's lines, problems (missing split or class folders, unexpected folders, unreadable
        images, no images) and warnings (empty class folders, non-image files) to ``report``."""
        if not self.exists:
            report.lines.append(f"MISSING  split {self.split}: folder {self.path}")
            report.problems.append(f"missing split folder {self.path}; expected the tree {layout}")
            return
        status = "OK     " if self.ok else "ERROR  "
        report.lines.append(f"{status}  split {self.split}: {self.total} images in {len(self.counts)} classes "
                            f"({self.path})")
        if self.counts:
            report.lines.append("         " + ", ".join(f"{c} {n}" for c, n in self.counts.items()))
        if self.missing_classes:
            paths = listing([str(Path(self.path) / c) for c in self.missing_classes], max_listed)
            report.lines.append(f"MISSING  class folders: {paths}")
            report.problems.append(f"missing class folder(s) {paths}")
        if self.unexpected_folders:
            paths = listing([str(Path(self.path) / f) for f in self.unexpected_folders], max_listed)
            report.lines.append(f"ERROR    unexpected folders (not in {classes}): {paths}")
            report.problems.append(f"unexpected folder(s) {paths}: not among the expected classes {classes}")
        if self.total == 0:
            report.lines.append(f"ERROR    no images found in {self.path}")
            report.problems.append(f"no readable images in {self.path}")
        unreadable = [f"unreadable image {path}: {reason}" for path, reason in self.unreadable]
        report.lines += [f"ERROR    {line}" for line in capped(unreadable, max_listed, "unreadable images")]
        report.problems += capped(unreadable, max_listed, f"unreadable images in {self.path}")
        if self.empty_classes:
            line = f"class folders without images: {listing(self.empty_classes, max_listed)}"
            report.lines.append(f"WARN     {line}")
            report.warnings.append(line)
        if self.non_image_files:
            line = f"non-image files (ignored): {listing(self.non_image_files, max_listed)}"
            report.lines.append(f"WARN     {line}")
            report.warnings.append(line)


def scan_splits(
    root: Path,
    splits: Sequence[str],
    classes: Optional[Sequence[str]] = None,
    strict_classes: bool = True,
    verify: bool = True,
) -> List[SplitScan]:
    """What each split folder of a ``ROOT/<split>/<Class>/*.<ext>`` tree holds (arguments as in
    :func:`scan_folder_dataset`); ``root`` must exist."""
    cls_list = list(classes) if classes is not None else None
    scans: List[SplitScan] = []
    for split in splits:
        d = root / split
        scan = SplitScan(split=str(split), path=str(d), exists=d.is_dir())
        scans.append(scan)
        if not scan.exists:
            continue
        entries = _visible(d.iterdir())
        folders = [e.name for e in entries if e.is_dir()]
        scan.non_image_files.extend(str(e) for e in entries if not e.is_dir())
        if cls_list is None:
            wanted = folders
        else:
            wanted = [c for c in cls_list if c in folders]
            scan.missing_classes = [c for c in cls_list if c not in folders]
            if strict_classes:
                scan.unexpected_folders = [f for f in folders if f not in cls_list]
        for name in wanted:
            n = 0
            for e in _visible((d / name).iterdir()):
                if e.is_dir():
                    continue
                if not is_image_file(e):
                    scan.non_image_files.append(str(e))
                    continue
                if verify:
                    reason = verify_image(e)
                    if reason is not None:
                        scan.unreadable.append((str(e), reason))
                        continue
                n += 1
            scan.counts[name] = n
            if n == 0:
                scan.empty_classes.append(str(d / name))
        for c in scan.missing_classes:
            scan.counts[c] = 0
        if cls_list is not None:
            scan.counts = {c: scan.counts[c] for c in cls_list}
    return scans


def scan_folder_dataset(
    root: PathLike,
    splits: Sequence[str],
    classes: Optional[Sequence[str]] = None,
    strict_classes: bool = True,
    verify: bool = True,
    max_listed: int = 10,
) -> DataReport:
    """Check a ``ROOT/<split>/<Class>/*.<ext>`` tree without raising: the report says what is wrong.

    Args:
        root: dataset root.
        splits: split folders to check (e.g. :data:`CODAN_SPLITS`).
        classes: expected class folders (label order); ``None`` accepts whatever folders exist.
        strict_classes: count folders not named in ``classes`` as problems.
        verify: decode every image completely (finds truncated/corrupt files; slower).
        max_listed: how many files each report entry lists before "... (N more)".

    Returns:
        A :class:`~simmm.data.check.DataReport`; print ``report.format()``; ``report.ok`` for the exit status.
        Problems: missing root or split, missing class folders, unexpected folders (strict), unreadable
        images, an empty split. Warnings: non-image files, empty class folders.
    """
    root_p = dataset_root(root)
    layout = folder_layout(root_p, splits)
    report = DataReport.for_root("dataset", root_p, layout)
    if not report.ok:
        return report
    if not splits:
        report.problems.append(f"no splits were checked under {root_p}")
    cls_list = list(classes) if classes is not None else None
    for scan in scan_splits(root_p, splits, cls_list, strict_classes, verify):
        scan.report_to(report, layout, cls_list, max_listed)
    return report
