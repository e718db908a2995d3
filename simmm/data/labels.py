"""The Cityscapes label table, id conversions, colours, and reading label files.

``*_labelIds.png`` files hold *labelIds* (0..33 of :data:`LABELS`); the 19 evaluation classes get train ids
0..18 and everything else (void classes, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan,
trailer) the ignore value 255. The table is the one of cityscapesScripts' ``helpers/labels.py``; Dark Zurich,
ACDC and Nighttime Driving use the same ids.

Label files hold either labelIds (mapped through :data:`LABEL_TO_TRAIN`) or train ids (0..18 and 255, used as
they are): :func:`read_label` decodes one, :func:`label_to_train_ids` validates and maps it. A value outside the
table or an unreadable file raises :class:`~simmm.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, NamedTuple, Tuple, Union

import numpy as np
import torch

from ..errors import DataError
from .images import _decode, _Unreadable

PathLike = Union[str, "os.PathLike[str]"]

CODAN_CLASSES: Tuple[str, ...] = (
    "Bicycle", "Car", "Motorbike", "Bus", "Boat", "Cat", "Dog", "Bottle", "Cup", "Chair",
)
"""CODaN's ten classes; the position in this tuple is the label id."""

CODAN_SPLITS: Tuple[str, ...] = ("train", "test_day", "test_night")
"""CODaN's three splits (10k train images, 2500 per test split)."""

IGNORE_INDEX = 255
"""Target value of pixels that do not count (void classes, unlabelled pixels)."""

NUM_CLASSES = 19
"""Number of Cityscapes evaluation (train-id) classes."""

LABEL_KINDS = ("labelIds", "trainIds")
"""What a label file holds: Cityscapes labelIds (0..33) or train ids (0..18, 255)."""

__all__ = [
    "CODAN_CLASSES", "CODAN_SPLITS",
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "LABEL_KINDS",
    "CityscapesLabel",
    "LABELS",
    "ID_TO_LABEL",
    "NAME_TO_LABEL",
    "TRAIN_LABELS",
    "TRAIN_CLASSES",
    "PALETTE",
    "STATIC_CLASSES",
    "DYNAMIC_CLASSES",
    "VALID_LABEL_IDS",
    "LABEL_TO_TRAIN",
    "TRAIN_TO_LABEL",
    "label_ids_to_train_ids",
    "train_ids_to_label_ids",
    "colorize",
    "read_label",
    "label_to_train_ids",
]

class CityscapesLabel(NamedTuple):
    """One row of the Cityscapes label table (field names as in cityscapesScripts)."""

    name: str
    id: int  # labelId, the value in *_labelIds.png (-1: not drawn, license plate)
    trainId: int  # 0..18 for the evaluation classes, 255 ignored (-1 for the license plate)
    category: str
    categoryId: int
    hasInstances: bool
    ignoreInEval: bool
    color: Tuple[int, int, int]


# fmt: off
LABELS: Tuple[CityscapesLabel, ...] = (
    #               name                   id  trainId  category        catId  instances ignore  color
    CityscapesLabel("unlabeled",             0, 255, "void",         0, False, True,  (0, 0, 0)),
    CityscapesLabel("ego vehicle",           1, 255, "void",         0, False, True,  (0, 0, 0)),
    CityscapesLabel("rectification border",  2, 255, "void",         0, False, True,  (0, 0, 0)),
    CityscapesLabel("out of roi",            3, 255, "void",         0, False, True,  (0, 0, 0)),
    CityscapesLabel("static",                4, 255, "void",         0, False, True,  (0, 0, 0)),
    CityscapesLabel("dynamic",               5, 255, "void",         0, False, True,  (111, 74, 0)),
    CityscapesLabel("ground",                6, 255, "void",         0, False, True,  (81, 0, 81)),
    CityscapesLabel("road",                  7,   0, "flat",         1, False, False, (128, 64, 128)),
    CityscapesLabel("sidewalk",              8,   1, "flat",         1, False, False, (244, 35, 232)),
    CityscapesLabel("parking",               9, 255, "flat",         1, False, True,  (250, 170, 160)),
    CityscapesLabel("rail track",           10, 255, "flat",         1, False, True,  (230, 150, 140)),
    CityscapesLabel("building",             11,   2, "construction", 2, False, False, (70, 70, 70)),
    CityscapesLabel("wall",                 12,   3, "construction", 2, False, False, (102, 102, 156)),
    CityscapesLabel("fence",                13,   4, "construction", 2, False, False, (190, 153, 153)),
    CityscapesLabel("guard rail",           14, 255, "construction", 2, False, True,  (180, 165, 180)),
    CityscapesLabel("bridge",               15, 255, "construction", 2, False, True,  (150, 100, 100)),
    CityscapesLabel("tunnel",               16, 255, "construction", 2, False, True,  (150, 120, 90)),
    CityscapesLabel("pole",                 17,   5, "object",       3, False, False, (153, 153, 153)),
    CityscapesLabel("polegroup",            18, 255, "object",       3, False, True,  (153, 153, 153)),
    CityscapesLabel("traffic light",        19,   6, "object",       3, False, False, (250, 170, 30)),
    CityscapesLabel("traffic sign",         20,   7, "object",       3, False, False, (220, 220, 0)),
    CityscapesLabel("vegetation",           21,   8, "nature",       4, False, False, (107, 142, 35)),
    CityscapesLabel("terrain",              22,   9, "nature",       4, False, False, (152, 251, 152)),
    CityscapesLabel("sky",                  23,  10, "sky",          5, False, False, (70, 130, 180)),
    CityscapesLabel("person",               24,  11, "human",        6, True,  False, (220, 20, 60)),
    CityscapesLabel("rider",                25,  12, "human",        6, True,  False, (255, 0, 0)),
    CityscapesLabel("car",                  26,  13, "vehicle",      7, True,  False, (0, 0, 142)),
    CityscapesLabel("truck",                27,  14, "vehicle",      7, True,  False, (0, 0, 70)),
    CityscapesLabel("bus",                  28,  15, "vehicle",      7, True,  False, (0, 60, 100)),
    CityscapesLabel("caravan",              29, 255, "vehicle",      7, True,  True,  (0, 0, 90)),
    CityscapesLabel("trailer",              30, 255, "vehicle",      7, True,  True,  (0, 0, 110)),
    CityscapesLabel("train",                31,  16, "vehicle",      7, True,  False, (0, 80, 100)),
    CityscapesLabel("motorcycle",           32,  17, "vehicle",      7, True,  False, (0, 0, 230)),
    CityscapesLabel("bicycle",              33,  18, "vehicle",      7, True,  False, (119, 11, 32)),
    CityscapesLabel("license plate",        -1,  -1, "vehicle",      7, False, True,  (0, 0, 142)),
)
"""The official Cityscapes label table: 34 labelIds (0..33) plus the license plate (id -1, never drawn)."""
# fmt: on

ID_TO_LABEL: Dict[int, CityscapesLabel] = {lab.id: lab for lab in LABELS}
NAME_TO_LABEL: Dict[str, CityscapesLabel] = {lab.name: lab for lab in LABELS}

TRAIN_LABELS: Tuple[CityscapesLabel, ...] = tuple(
    sorted((lab for lab in LABELS if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId))

TRAIN_CLASSES: Tuple[str, ...] = tuple(lab.name for lab in TRAIN_LABELS)
"""The 19 evaluation classes in train-id order: road, sidewalk, ..., bicycle."""

PALETTE: np.ndarray = np.array([lab.color for lab in TRAIN_LABELS], dtype=np.uint8)
"""``uint8 (19, 3)``: the official colour of each train id."""
PALETTE.setflags(write=False)

STATIC_CLASSES: Tuple[int, ...] = tuple(range(11))
"""Train ids of the 11 static classes (road .. sky) used by DANIA's static loss."""

DYNAMIC_CLASSES: Tuple[int, ...] = tuple(range(11, 19))
"""Train ids of the 8 dynamic classes (person .. bicycle)."""

VALID_LABEL_IDS: Tuple[int, ...] = tuple(lab.id for lab in LABELS if lab.id >= 0)
"""The labelIds that may appear in a ``*_labelIds.png``: 0..33."""

VALID_LABEL_IDS_MASK = np.zeros(256, dtype=bool)
VALID_LABEL_IDS_MASK[list(VALID_LABEL_IDS)] = True
VALID_LABEL_IDS_MASK.setflags(write=False)

VALID_TRAIN_IDS_MASK = np.zeros(256, dtype=bool)
VALID_TRAIN_IDS_MASK[list(range(19)) + [IGNORE_INDEX]] = True
VALID_TRAIN_IDS_MASK.setflags(write=False)

LABEL_TO_TRAIN: np.ndarray = np.full(256, IGNORE_INDEX, dtype=np.uint8)
"""``uint8 (256,)`` lookup table labelId → trainId; ids outside the 19 classes (or the table) → 255."""
for _lab in LABELS:
    if _lab.id >= 0 and 0 <= _lab.trainId < 255:
        LABEL_TO_TRAIN[_lab.id] = _lab.trainId
LABEL_TO_TRAIN.setflags(write=False)

TRAIN_TO_LABEL: np.ndarray = np.zeros(256, dtype=np.uint8)
"""``uint8 (256,)`` lookup table trainId → labelId (0..18 → their labelId; 255 and others → 0, unlabeled)."""
for _lab in TRAIN_LABELS:
    TRAIN_TO_LABEL[_lab.trainId] = _lab.id
TRAIN_TO_LABEL.setflags(write=False)

_COLOR_LUT = np.zeros((256, 3), dtype=np.uint8)
_COLOR_LUT[:19] = PALETTE
_COLOR_LUT.setflags(write=False)

ArrayLike = Union[np.ndarray, torch.Tensor]


def _apply_lut(values: ArrayLike, lut: np.ndarray, fill: int) -> ArrayLike:
    """Map ``values`` through a 256-entry table; values outside 0..255 become ``fill``. Keeps numpy/torch."""
    if torch.is_tensor(values):
        t = values.long()
        lut_t = torch.from_numpy(lut.copy()).to(values.device)
        inside = (t >= 0) & (t <= 255)
        out = lut_t[t.clamp(0, 255)]
        return torch.where(inside, out, torch.full_like(out, fill))
    arr = np.asarray(values)
    if arr.dtype == np.uint8:
        return lut[arr]
    wide = arr.astype(np.int64)
    inside = (wide >= 0) & (wide <= 255)
    return np.where(inside, lut[np.clip(wide, 0, 255)], np.uint8(fill)).astype(np.uint8)


def label_ids_to_train_ids(label_ids: ArrayLike) -> ArrayLike:
    """Cityscapes labelIds → train ids (0..18), everything else → 255.

    Args:
        label_ids: integer array/tensor of any shape (numpy or torch).

    Returns:
        ``uint8`` of the same shape and kind (numpy → numpy, tensor → tensor on the same device).
        Values outside the table (including > 255 or < 0) map to 255; use the datasets (or
        :func:`label_to_train_ids`) to reject such files instead.
    """
    return _apply_lut(label_ids, LABEL_TO_TRAIN, IGNORE_INDEX)


def train_ids_to_label_ids(train_ids: ArrayLike) -> ArrayLike:
    """Train ids (0..18) → Cityscapes labelIds (for exporters and servers that want labelIds).

    255 and any other value map to 0 (``unlabeled``). Returns ``uint8`` of the same shape and kind.
    """
    return _apply_lut(train_ids, TRAIN_TO_LABEL, 0)


def colorize(train_ids: ArrayLike) -> ArrayLike:
    """Train ids ``(H, W)`` → colour image ``uint8 (H, W, 3)`` with the official palette; 255 (and any value
    that is not a train id) → black. numpy in → numpy out; tensor in → ``uint8`` tensor on the same device.
    """
    if torch.is_tensor(train_ids):
        t = train_ids.long()
        lut = torch.from_numpy(_COLOR_LUT.copy()).to(train_ids.device)
        inside = (t >= 0) & (t <= 255)
        out = lut[t.clamp(0, 255)]
        return out * inside.unsqueeze(-1).to(out.dtype)
    arr = np.asarray(train_ids)
    if arr.dtype != np.uint8:
        wide = arr.astype(np.int64)
        arr = np.where((wide >= 0) & (wide <= 255), wide, IGNORE_INDEX).astype(np.uint8)
    return _COLOR_LUT[arr]


# ------------------------------------------------------------------------------------------- label files


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
        return LABEL_TO_TRAIN[arr]
    return arr.astype(np.uint8, copy=False)

