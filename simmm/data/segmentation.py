"""Common pieces of the semantic-segmentation datasets: finding image/label pairs, loading them, data check.

The four loaders (:mod:`~simmm.data.cityscapes`, :mod:`~simmm.data.darkzurich`,
:mod:`~simmm.data.nighttime_driving`, :mod:`~simmm.data.acdc`) describe their trees as :class:`TreeGroup`
objects (one per split/condition folder) and share everything else from here:

- discovery: images are found recursively under a group's image folder by their suffix
  (``*_leftImg8bit.png``, ``*_rgb_anon.png``); an image's label lies at the same relative path under the label
  folder, named by the image's stem prefix plus a label suffix (``aachen_000000_000019`` +
  ``_gtFine_labelIds.png``). Names starting with ``.`` are ignored.
- loading (:class:`SegmentationSample`): the image as ``float32 (3, H, W)`` in ``[0, 1]``, the label as
  ``int64 (H, W)`` Cityscapes train ids (0..18, 255 = ignore). Label files hold either Cityscapes *labelIds*
  (0..33, mapped through :data:`simmm.data.cityscapes.LABEL_TO_TRAIN`) or *trainIds* (0..18 and 255, used
  as they are). A value outside the table, a label of another size than its image, an unreadable file: each
  raises :class:`~simmm.errors.DataError` naming the file.
- resizing: with ``size=(H, W)`` the image is resized bilinearly (PIL, antialiased when shrinking) and the
  label with nearest neighbour, both to exactly ``(H, W)``; no interpolated ids ever appear.
- the check behind ``simmm data check`` (:func:`check_segmentation_tree`): counts per group of images present,
  images whose label is missing, labels of the wrong size, label values outside the table, unreadable files,
  returned as a :class:`SegmentationScanReport` (same style as :class:`simmm.data.folder.FolderScanReport`).

Datasets are deterministic: random augmentation happens later, on the batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError, SimmmError
from .folder import capped, listing, report_header
from .images import _decode, _Unreadable, image_size, image_to_tensor, read_image, verify_image
from .synthetic import dataset_root

PathLike = Union[str, "os.PathLike[str]"]
SizeHW = Tuple[int, int]

IGNORE_INDEX = 255
"""Target value of pixels that do not count (void classes, unlabelled pixels)."""

NUM_CLASSES = 19
"""Number of Cityscapes evaluation (train-id) classes."""

LABEL_KINDS = ("labelIds", "trainIds")
"""What a label file holds: Cityscapes labelIds (0..33) or train ids (0..18, 255)."""

__all__ = [
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "LABEL_KINDS",
    "TreeGroup",
    "SegmentationSample",
    "SegmentationDataset",
    "read_label",
    "label_to_train_ids",
    "load_segmentation_pair",
    "resize_image",
    "resize_label",
    "normalize_size",
    "require_root",
    "find_images",
    "find_label",
    "collect_samples",
    "GroupScan",
    "SegmentationScanReport",
    "scan_groups",
    "check_segmentation_tree",
    "get_dataset_class",
    "DATASETS",
]


# ------------------------------------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class TreeGroup:
    """One folder of a dataset tree (a split, a split/condition) and where its labels are.

    Attributes:
        name: short name used in reports (``"val"``, ``"val/night"``, ``"fog/train"``).
        image_dir: folder searched recursively for ``*<image_suffix>`` files.
        image_suffix: e.g. ``"_leftImg8bit.png"``.
        label_dir: folder of the labels (same relative sub-folders as the images); ``None``: no labels.
        label_suffixes: ``(suffix, kind)`` pairs in order of preference, kind in :data:`LABEL_KINDS`.
        labels_required: the data check counts an image without label as a problem.
        reference_dir / reference_suffix: optional paired reference images (ACDC's normal-condition images).
    """

    name: str
    image_dir: Path
    image_suffix: str
    label_dir: Optional[Path] = None
    label_suffixes: Tuple[Tuple[str, str], ...] = ()
    labels_required: bool = False
    reference_dir: Optional[Path] = None
    reference_suffix: Optional[str] = None

    def prefix(self, image: Path) -> str:
        """The stem prefix shared by an image and its label: the file name without :attr:`image_suffix`."""
        return image.name[: -len(self.image_suffix)]

    def label_candidates(self, image: Path) -> List[Tuple[Path, str]]:
        """Where the label of ``image`` may be, in order of preference: ``[(path, kind), ...]``."""
        if self.label_dir is None:
            return []
        rel = image.parent.relative_to(self.image_dir)
        return [(self.label_dir / rel / (self.prefix(image) + suffix), kind)
                for suffix, kind in self.label_suffixes]

    def reference_path(self, image: Path) -> Optional[Path]:
        if self.reference_dir is None or self.reference_suffix is None:
            return None
        rel = image.parent.relative_to(self.image_dir)
        return self.reference_dir / rel / (self.prefix(image) + self.reference_suffix)

    def label_pattern(self) -> str:
        return "|".join(f"*{s}" for s, _ in self.label_suffixes)


def _walk_sorted(folder: Path) -> Iterator[Path]:
    """Files below ``folder`` in a stable (sorted, depth-first) order, skipping names that start with '.'."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def find_images(folder: Path, suffix: str) -> List[Path]:
    """All files below ``folder`` (recursively) whose name ends with ``suffix``, sorted by path."""
    if not folder.is_dir():
        return []
    return [p for p in _walk_sorted(folder) if p.name.endswith(suffix) and len(p.name) > len(suffix)]


def find_label(group: TreeGroup, image: Path) -> Tuple[Optional[Path], Optional[str], Optional[Path]]:
    """``(label path, kind, expected path)`` for ``image``; the first two are ``None`` when no label exists.

    ``expected path`` is the preferred candidate (the one named in "missing label" messages).
    """
    cands = group.label_candidates(image)
    for path, kind in cands:
        if path.is_file():
            return path, kind, cands[0][0]
    return None, None, (cands[0][0] if cands else None)


def check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``allowed``, else a :class:`SimmmError` naming ``what`` and the choices."""
    if value not in allowed:
        raise SimmmError(f"{what} must be one of {list(allowed)}, got {value!r}")
    return value


def require_root(root: PathLike, layout: str) -> Path:
    """``Path(root)`` if it is a folder, else :class:`DataError` naming it and the expected tree."""
    p = dataset_root(root)
    if not p.is_dir():
        raise DataError(f"dataset root {p} does not exist or is not a folder; expected the tree {layout}")
    return p


def normalize_size(size) -> Optional[SizeHW]:
    """``None`` or ``(H, W)`` positive ints (a list from a recipe is accepted); anything else is an error."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) or not hasattr(size, "__len__") or len(size) != 2:
        raise SimmmError(f"segmentation size must be None or (H, W), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise SimmmError(f"segmentation size must be positive, got {size!r}")
    return h, w


# ------------------------------------------------------------------------------------------------ loading


def _decode_label(path: Path) -> np.ndarray:
    """Decode a single-channel id map; raises ``_Unreadable(reason)``."""
    img = _decode(path, None)  # missing, truncated and non-image files are reported there
    mode = img.mode
    if mode in ("L", "P", "1"):
        arr = np.array(img, dtype=np.uint8)  # mode P: the palette indices are the ids
    elif mode.startswith("I"):
        wide = np.array(img).astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 255):
            bad = int(wide.max()) if wide.max() > 255 else int(wide.min())
            raise _Unreadable(f"it holds the value {bad}, outside 0..255 (mode {mode})")
        arr = wide.astype(np.uint8)
    else:
        raise _Unreadable(
            f"it is a {mode} image, not a single-channel id map (mode L); a colour "
            f"visualisation (*_color.png / *_labelColor.png) is not a label file")
    if arr.ndim != 2:
        raise _Unreadable(f"expected a 2-D id map, got shape {arr.shape}")
    return arr


def read_label(path: PathLike) -> np.ndarray:
    """Read a label PNG as ``uint8 (H, W)`` ids (mode L or P; 16-bit files with values ≤ 255 are accepted).

    Raises:
        DataError: missing, truncated or non-image file, or a colour (RGB) image, naming the file.
    """
    p = Path(path)
    try:
        return _decode_label(p)
    except _Unreadable as e:
        raise DataError(f"cannot read label {p}: {e}; expected a single-channel PNG of ids") from e.__cause__


def _invalid_values(arr: np.ndarray, kind: str) -> Dict[int, int]:
    """``{value: pixel count}`` of values not allowed for ``kind`` (empty when all are valid)."""
    from .cityscapes import VALID_LABEL_IDS_MASK, VALID_TRAIN_IDS_MASK

    valid = VALID_LABEL_IDS_MASK if kind == "labelIds" else VALID_TRAIN_IDS_MASK
    counts = np.bincount(arr.ravel(), minlength=256)
    bad = np.nonzero((counts > 0) & ~valid)[0]
    return {int(v): int(counts[v]) for v in bad}


def _describe_invalid(path: Path, kind: str, bad: Dict[int, int]) -> str:
    vals = ", ".join(f"{v} ({n} px)" for v, n in list(bad.items())[:8])
    more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
    if kind == "labelIds":
        allowed = "a Cityscapes labelId (0..33)"
    else:
        allowed = "a Cityscapes train id (0..18) or 255 (ignore)"
    return (f"label {path} contains value(s) {vals}{more} not in the Cityscapes table; "
            f"each pixel must be {allowed}")


def label_to_train_ids(arr: np.ndarray, kind: str, path: PathLike = "<array>") -> np.ndarray:
    """Validate a raw label array of ``kind`` and return it as ``uint8`` train ids (255 = ignore).

    Raises:
        DataError: a value outside the table (naming ``path``, the value and its pixel count).
    """
    if kind not in LABEL_KINDS:
        raise ValueError(f"label kind must be one of {LABEL_KINDS}, got {kind!r}")
    bad = _invalid_values(arr, kind)
    if bad:
        raise DataError(_describe_invalid(Path(path), kind, bad))
    if kind == "labelIds":
        from .cityscapes import LABEL_TO_TRAIN

        return LABEL_TO_TRAIN[arr]
    return arr.astype(np.uint8, copy=False)


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

    def _init_from_group(self, group: "TreeGroup", root: Path, layout: str, size, with_labels: bool,
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
        from .cityscapes import TRAIN_CLASSES

        return TRAIN_CLASSES

    def check(self, strict: bool = True, verify: bool = True) -> "SegmentationScanReport":
        """Read every image and label of this dataset and report problems.

        Args:
            strict: raise :class:`DataError` listing every problem (each names its file, and for a value
                outside the table, the value) instead of returning a failing report.
            verify: decode the images completely (finds truncated files).
        """
        report = scan_groups(self.dataset_name, self.root or Path("."), self.layout, self.groups,
                             verify=verify, samples=self.samples, check_labels=self.with_labels)
        if strict and not report.ok:
            raise DataError(f"{self.dataset_name} data under {self.root} has problems:\n  "
                            + "\n  ".join(report.problems))
        return report

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, {len(self)} images, size={self.size}, "
                f"with_labels={self.with_labels})")


# ---------------------------------------------------------------------------------------------- data check


@dataclass
class GroupScan:
    """What :func:`scan_groups` found in one group (split / condition folder)."""

    name: str
    path: str  # image folder
    exists: bool
    labels_required: bool = False
    label_path: Optional[str] = None  # label folder (None: the group has no labels)
    label_dir_exists: bool = False
    images: int = 0  # images found (readable or not)
    labelled: int = 0  # images whose label exists
    unreadable: List[Tuple[str, str]] = field(default_factory=list)  # (image or label file, reason)
    missing_labels: List[Tuple[str, str]] = field(default_factory=list)  # (image, expected label path)
    wrong_size: List[str] = field(default_factory=list)  # messages naming label, image and both sizes
    bad_values: List[Tuple[str, Dict[int, int]]] = field(default_factory=list)  # (label, {value: pixels})
    orphan_labels: List[str] = field(default_factory=list)  # labels without an image (warning)
    references: int = 0
    references_checked: bool = False
    missing_references: List[Tuple[str, str]] = field(default_factory=list)  # (image, expected reference)

    @property
    def ok(self) -> bool:
        return (self.exists and self.images > 0 and not self.unreadable and not self.wrong_size
                and not self.bad_values and not (self.labels_required and self.missing_labels)
                and not self.missing_references)


@dataclass
class CheckItem:
    """An extra line of a report (e.g. Dark Zurich's day-night pairs): status OK / MISSING / ERROR / WARN."""

    status: str
    message: str
    summary: bool = False  # a count line: shown with its status, never counted as a problem/warning itself


@dataclass
class SegmentationScanReport:
    """Result of :func:`check_segmentation_tree`; ``ok`` is True when nothing needs fixing.

    Problems (``ok`` False): missing root or image folder, a folder without images, unreadable images or
    labels, labels of the wrong size, label values outside the Cityscapes table, missing labels where labels
    are required, missing reference images (when checked), extra problems (broken pair lists). Warnings:
    labels without an image, missing labels where they are optional.
    """

    dataset: str
    root: str
    root_exists: bool
    layout: str
    groups: List[GroupScan] = field(default_factory=list)
    extra: List[CheckItem] = field(default_factory=list)
    max_listed: int = 10

    @property
    def ok(self) -> bool:
        return not self.problems

    def _listing(self, items: Sequence[str]) -> str:
        return listing(items, self.max_listed)

    def _values(self, bad: Dict[int, int]) -> str:
        return ", ".join(f"{v} ({n} px)" for v, n in bad.items())

    @property
    def problems(self) -> List[str]:
        """One message per problem (empty when ``ok``); each names the file(s) concerned."""
        if not self.root_exists:
            return [f"dataset root {self.root} does not exist; expected the tree {self.layout}"]
        out: List[str] = []
        if not self.groups:
            out.append(f"no folders were checked under {self.root}")
        for g in self.groups:
            if not g.exists:
                out.append(f"missing image folder {g.path} ({g.name}); expected the tree {self.layout}")
                continue
            if g.images == 0:
                out.append(f"no images in {g.path} ({g.name}); expected the tree {self.layout}")
            if g.labels_required and g.missing_labels:
                if not g.label_dir_exists:
                    out.append(f"missing label folder {g.label_path} ({g.name}: {len(g.missing_labels)} "
                               f"images without label); expected the tree {self.layout}")
                else:
                    out += capped([f"missing label {lab} for image {img}" for img, lab in g.missing_labels],
                                  self.max_listed, f"images without label in {g.path}")
            out += capped([f"unreadable file {path}: {reason}" for path, reason in g.unreadable],
                          self.max_listed, f"unreadable files in {g.name}")
            out += capped(g.wrong_size, self.max_listed, "labels of the wrong size")
            out += capped([f"label {path} contains value(s) {self._values(bad)} not in the Cityscapes table"
                           for path, bad in g.bad_values],
                          self.max_listed, f"labels with values outside the table in {g.name}")
            out += capped([f"missing reference image {ref} for image {img}"
                           for img, ref in g.missing_references], self.max_listed, "missing references")
        out.extend(e.message for e in self.extra if e.status in ("MISSING", "ERROR") and not e.summary)
        return out

    @property
    def warnings(self) -> List[str]:
        """Worth a look, does not stop training: labels without image, optional labels that are missing."""
        out: List[str] = []
        for g in self.groups:
            if g.orphan_labels:
                out.append(f"label files without an image (ignored): {self._listing(g.orphan_labels)}")
            optional = g.exists and not g.labels_required and g.label_path and g.label_dir_exists
            if optional and g.missing_labels:
                out.append(f"{len(g.missing_labels)} images of {g.name} have no label")
        out.extend(e.message for e in self.extra if e.status == "WARN" and not e.summary)
        return out

    def lines(self) -> List[str]:
        """Human-readable report, one line per entry (``OK``/``MISSING``/``ERROR``/``WARN`` prefixes)."""
        out = report_header(self.dataset, self.root, self.layout, self.root_exists)
        if not self.root_exists:
            return out
        for g in self.groups:
            if not g.exists:
                out.append(f"  MISSING  {g.name}: folder {g.path}")
                continue
            status = "OK     " if g.ok else "ERROR  "
            lab = ""
            if g.label_path is not None:
                lab = f", {g.labelled} labelled, {len(g.missing_labels)} without label"
            ref = f", {g.references} references" if g.references_checked else ""
            out.append(f"  {status}  {g.name}: {g.images} images{lab}{ref} ({g.path})")
            if g.images == 0:
                out.append(f"  ERROR    no images found in {g.path}")
            if g.missing_labels and (g.labels_required or g.label_dir_exists):
                tag = "MISSING" if g.labels_required else "WARN   "
                if not g.label_dir_exists:
                    out.append(f"  {tag}  label folder {g.label_path}")
                else:
                    out.append(f"  {tag}  labels: "
                               + self._listing([lab for _, lab in g.missing_labels]))
            errors = capped([f"unreadable file {path}: {reason}" for path, reason in g.unreadable],
                            self.max_listed, "unreadable files")
            errors += capped(g.wrong_size, self.max_listed, "labels of the wrong size")
            errors += capped([f"label {path}: value(s) {self._values(bad)} not in the table"
                              for path, bad in g.bad_values], self.max_listed, "labels with bad values")
            out += [f"  ERROR    {line}" for line in errors]
            if g.missing_references:
                out.append("  MISSING  reference images: "
                           + self._listing([r for _, r in g.missing_references]))
            if g.orphan_labels:
                out.append(f"  WARN     labels without image: {self._listing(g.orphan_labels)}")
        for e in self.extra:
            out.append(f"  {e.status:<7}  {e.message}")
        out.append("result: OK" if self.ok else "result: NOT OK")
        return out

    def format(self) -> str:
        return "\n".join(self.lines())

    def __str__(self) -> str:
        return self.format()


def scan_groups(
    dataset: str,
    root: PathLike,
    layout: str,
    groups: Sequence[TreeGroup],
    verify: bool = True,
    references: bool = False,
    samples: Optional[Sequence[SegmentationSample]] = None,
    check_labels: bool = True,
    max_listed: int = 10,
) -> SegmentationScanReport:
    """Check ``groups`` without raising: every image is opened (decoded with ``verify``), every label read.

    Args:
        dataset: name shown in the report.
        root: dataset root (a missing root gives a report with one problem).
        layout: the expected tree as text.
        groups: the folders to check.
        verify: decode images completely (finds truncated files).
        references: also look for each image's reference image (groups with a reference folder).
        samples: check only these samples (a dataset's own list) instead of searching the groups.
        check_labels: read labels (False: count images only).
    """
    root_p = dataset_root(root)
    report = SegmentationScanReport(dataset=dataset, root=str(root_p), root_exists=root_p.is_dir(),
                                    layout=layout, max_listed=max_listed)
    if not report.root_exists:
        return report
    by_group: Dict[int, List[Path]] = {}
    if samples is not None:
        for s in samples:
            for i, g in enumerate(groups):
                try:
                    s.image.relative_to(g.image_dir)
                except ValueError:
                    continue
                by_group.setdefault(i, []).append(s.image)
                break
    for i, g in enumerate(groups):
        # optional labels whose folder is absent (Dark Zurich train, ACDC test) are simply not reported
        has_labels = (g.label_dir is not None and check_labels
                      and (g.labels_required or g.label_dir.is_dir()))
        scan = GroupScan(name=g.name, path=str(g.image_dir), exists=g.image_dir.is_dir(),
                         labels_required=g.labels_required and check_labels,
                         label_path=str(g.label_dir) if has_labels else None,
                         label_dir_exists=bool(has_labels and g.label_dir.is_dir()),
                         references_checked=references and g.reference_dir is not None)
        report.groups.append(scan)
        if not scan.exists:
            continue
        images = by_group.get(i, []) if samples is not None else find_images(g.image_dir, g.image_suffix)
        scan.images = len(images)
        seen_labels = set()
        for img in images:
            size, reason = image_size(img, verify)
            if reason is not None:
                scan.unreadable.append((str(img), reason))
            if scan.references_checked:
                ref = g.reference_path(img)
                if ref is not None and ref.is_file():
                    scan.references += 1
                    if verify:
                        rreason = verify_image(ref)
                        if rreason is not None:
                            scan.unreadable.append((str(ref), rreason))
                else:
                    scan.missing_references.append((str(img), str(ref)))
            if not has_labels:
                continue
            label, kind, expected = find_label(g, img)
            if label is None:
                scan.missing_labels.append((str(img), str(expected)))
                continue
            scan.labelled += 1
            seen_labels.add(label)
            try:
                arr = _decode_label(label)
            except _Unreadable as e:
                scan.unreadable.append((str(label), str(e)))
                continue
            if size is not None and arr.shape != (size[1], size[0]):
                scan.wrong_size.append(
                    f"label {label} is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image {img} is "
                    f"{size[0]}x{size[1]}")
            bad = _invalid_values(arr, kind)
            if bad:
                scan.bad_values.append((str(label), bad))
        if has_labels and scan.label_dir_exists and samples is None and g.label_suffixes:
            main_suffix = g.label_suffixes[0][0]
            for lab in find_images(g.label_dir, main_suffix):
                if lab in seen_labels:
                    continue
                rel = lab.parent.relative_to(g.label_dir)
                prefix = lab.name[: -len(main_suffix)]
                if not (g.image_dir / rel / (prefix + g.image_suffix)).is_file():
                    scan.orphan_labels.append(str(lab))
    return report


# ------------------------------------------------------------------------------------ dataset name lookup


def _dataset_table() -> Dict[str, type]:
    from .acdc import ACDCDataset
    from .cityscapes import CityscapesDataset
    from .darkzurich import DarkZurichDataset
    from .nighttime_driving import NighttimeDrivingDataset

    return {"cityscapes": CityscapesDataset, "darkzurich": DarkZurichDataset,
            "nighttime_driving": NighttimeDrivingDataset, "acdc": ACDCDataset}


def _checker_table() -> Dict[str, Callable[..., SegmentationScanReport]]:
    from .acdc import check_acdc_tree
    from .cityscapes import check_cityscapes_tree
    from .darkzurich import check_darkzurich_tree
    from .nighttime_driving import check_nighttime_driving_tree

    return {"cityscapes": check_cityscapes_tree, "darkzurich": check_darkzurich_tree,
            "nighttime_driving": check_nighttime_driving_tree, "acdc": check_acdc_tree}


_ALIASES = {"cityscapes": "cityscapes", "darkzurich": "darkzurich", "nighttimedriving": "nighttime_driving",
            "nighttimedrivingtest": "nighttime_driving", "acdc": "acdc"}


def _canonical(name: str) -> str:
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    if key not in _ALIASES:
        raise SimmmError(f"unknown segmentation dataset {name!r}; known: cityscapes, darkzurich, "
                         f"nighttime_driving, acdc")
    return _ALIASES[key]


def get_dataset_class(name: str) -> type:
    """The dataset class for ``name`` (``"cityscapes"``, ``"darkzurich"``/``"dark_zurich"``, ...)."""
    return _dataset_table()[_canonical(name)]


def check_segmentation_tree(
    dataset_name: str,
    root: PathLike,
    splits: Optional[Sequence[str]] = None,
    conditions: Optional[Sequence[str]] = None,
    *,
    verify: bool = True,
    references: bool = False,
    pairs=None,
    max_listed: int = 10,
) -> SegmentationScanReport:
    """Check a segmentation dataset tree (the work behind ``simmm data check``); never raises for data.

    Args:
        dataset_name: ``"cityscapes"``, ``"darkzurich"``, ``"nighttime_driving"`` or ``"acdc"``.
        root: the dataset root.
        splits: splits to check (defaults: Cityscapes train/val; Dark Zurich train/val/test; ACDC
            train/val/test; Nighttime Driving has only test).
        conditions: Dark Zurich (day/night/twilight) or ACDC (fog/night/rain/snow) conditions (default: the
            ones the release has for each split).
        verify: decode every image completely (finds truncated files).
        references: ACDC: also require each image's ``*_rgb_ref_anon.png`` reference.
        pairs: Dark Zurich day-night pair list: ``None`` checks ``corresp/train/night/`` when present (a
            warning when absent), ``True`` requires it, ``False`` skips it, a path checks that file.
        max_listed: how many files each report entry lists before "... and N more".

    Returns:
        A :class:`SegmentationScanReport`: ``report.ok``, ``report.problems``, ``print(report.format())``.
    """
    fn = _checker_table()[_canonical(dataset_name)]
    return fn(root, splits=splits, conditions=conditions, verify=verify, references=references,
              pairs=pairs, max_listed=max_listed)


def __getattr__(name: str):
    # DATASETS is built on first use: the dataset modules import this one.
    if name == "DATASETS":
        return _dataset_table()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
