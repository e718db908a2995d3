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

CODAN_CLASSES: Tuple[str, ...] = (
    "Bicycle", "Car", "Motorbike", "Bus", "Boat", "Cat", "Dog", "Bottle", "Cup", "Chair",
)
"""CODaN's ten classes; the position in this tuple is the label id."""

CODAN_SPLITS: Tuple[str, ...] = ("train", "test_day", "test_night")
"""CODaN's three splits (10k train images, 2500 per test split)."""

_EXT_HINT = "|".join(e.lstrip(".") for e in (".jpg", ".png"))

__all__ = [
    "CODAN_CLASSES",
    "CODAN_SPLITS",
    "ImageFolderDataset",
    "InMemoryImageDataset",
    "SplitScan",
    "FolderScanReport",
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


def listing(items: Sequence[str], max_listed: int) -> str:
    """``a, b, c, ... (N more)``: at most ``max_listed`` items of a data-check finding."""
    shown = list(items[:max_listed])
    more = len(items) - len(shown)
    return ", ".join(shown) + (f", ... ({more} more)" if more > 0 else "")


def capped(messages: Sequence[str], max_listed: int, rest: str) -> List[str]:
    """The first ``max_listed`` messages, then one line ``... and N more <rest>`` for the others."""
    out = list(messages[:max_listed])
    if len(messages) > max_listed:
        out.append(f"... and {len(messages) - max_listed} more {rest}")
    return out


def report_header(title: str, root, layout: str, root_exists: bool) -> List[str]:
    """First lines of a data-check report; a missing root ends the report there."""
    out = [f"{title} root {root} (expected {layout})"]
    if not root_exists:
        out += [f"  MISSING  root folder {root}", "result: NOT OK"]
    return out


@dataclass
class SplitScan:
    """What :func:`scan_folder_dataset` found in one split folder."""

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


@dataclass
class FolderScanReport:
    """Result of :func:`scan_folder_dataset`; ``ok`` is True when every split is complete and readable.

    Problems (make ``ok`` False): missing root or split, missing class folders, unexpected folders (strict),
    unreadable images, an empty split. Warnings (reported, ``ok`` unaffected): non-image files, empty class
    folders.
    """

    root: str
    root_exists: bool
    layout: str
    classes: Optional[List[str]]
    splits: List[SplitScan] = field(default_factory=list)
    max_listed: int = 10

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> List[str]:
        """One message per problem (empty when ``ok``)."""
        out: List[str] = []
        if not self.root_exists:
            return [f"dataset root {self.root} does not exist; expected the tree {self.layout}"]
        if not self.splits:
            out.append(f"no splits were checked under {self.root}")
        for s in self.splits:
            if not s.exists:
                out.append(f"missing split folder {s.path}; expected the tree {self.layout}")
                continue
            if s.missing_classes:
                paths = [str(Path(s.path) / c) for c in s.missing_classes]
                out.append(f"missing class folder(s) {self._listing(paths)}")
            if s.unexpected_folders:
                paths = [str(Path(s.path) / f) for f in s.unexpected_folders]
                out.append(f"unexpected folder(s) {self._listing(paths)}: not among the expected classes "
                           f"{self.classes}")
            if s.total == 0:
                out.append(f"no readable images in {s.path}")
            out += capped([f"unreadable image {path}: {reason}" for path, reason in s.unreadable],
                          self.max_listed, f"unreadable images in {s.path}")
        return out

    @property
    def warnings(self) -> List[str]:
        """Things worth a look that do not stop training: empty class folders, non-image files."""
        out: List[str] = []
        for s in self.splits:
            if s.empty_classes:
                out.append(f"class folders without images: {self._listing(s.empty_classes)}")
            if s.non_image_files:
                out.append(f"non-image files (ignored): {self._listing(s.non_image_files)}")
        return out

    def _listing(self, items: Sequence[str]) -> str:
        return listing(items, self.max_listed)

    def lines(self) -> List[str]:
        """Human-readable report, one line per entry (``OK``/``MISSING``/``ERROR``/``WARN`` prefixes)."""
        out = report_header("dataset", self.root, self.layout, self.root_exists)
        if not self.root_exists:
            return out
        for s in self.splits:
            if not s.exists:
                out.append(f"  MISSING  split {s.split}: folder {s.path}")
                continue
            status = "OK     " if s.ok else "ERROR  "
            out.append(f"  {status}  split {s.split}: {s.total} images in {len(s.counts)} classes ({s.path})")
            if s.counts:
                out.append("           " + ", ".join(f"{c} {n}" for c, n in s.counts.items()))
            if s.missing_classes:
                paths = [str(Path(s.path) / c) for c in s.missing_classes]
                out.append(f"  MISSING  class folders: {self._listing(paths)}")
            if s.unexpected_folders:
                out.append(f"  ERROR    unexpected folders (not in {self.classes}): "
                           f"{self._listing([str(Path(s.path) / f) for f in s.unexpected_folders])}")
            if s.exists and s.total == 0:
                out.append(f"  ERROR    no images found in {s.path}")
            out += [f"  ERROR    {line}" for line in capped([f"unreadable image {path}: {reason}"
                                                            for path, reason in s.unreadable],
                                                           self.max_listed, "unreadable images")]
            if s.empty_classes:
                out.append(f"  WARN     class folders without images: {self._listing(s.empty_classes)}")
            if s.non_image_files:
                out.append(f"  WARN     non-image files (ignored): {self._listing(s.non_image_files)}")
        out.append("result: OK" if self.ok else "result: NOT OK")
        return out

    def format(self) -> str:
        return "\n".join(self.lines())

    def __str__(self) -> str:
        return self.format()


def scan_folder_dataset(
    root: PathLike,
    splits: Sequence[str],
    classes: Optional[Sequence[str]] = None,
    strict_classes: bool = True,
    verify: bool = True,
) -> FolderScanReport:
    """Check a ``ROOT/<split>/<Class>/*.<ext>`` tree without raising: the report says what is wrong.

    Args:
        root: dataset root.
        splits: split folders to check (e.g. :data:`CODAN_SPLITS`).
        classes: expected class folders (label order); ``None`` accepts whatever folders exist.
        strict_classes: count folders not named in ``classes`` as problems.
        verify: decode every image completely (finds truncated/corrupt files; slower).

    Returns:
        A :class:`FolderScanReport`; print ``report.format()``; ``report.ok`` for the exit status.
    """
    root_p = dataset_root(root)
    cls_list = list(classes) if classes is not None else None
    report = FolderScanReport(root=str(root_p), root_exists=root_p.is_dir(),
                              layout=folder_layout(root_p, splits), classes=cls_list)
    if not report.root_exists:
        return report
    for split in splits:
        d = root_p / split
        scan = SplitScan(split=str(split), path=str(d), exists=d.is_dir())
        report.splits.append(scan)
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
    return report
