"""Dark Zurich: day / twilight / night drives through Zurich, GPS-matched day-night pairs, the test export.

Tree (METHOD.md §6; the release's ``Dark_Zurich_{train,val,test}_anon`` zips unpacked into one root)::

    ROOT/rgb_anon/train/{day,night,twilight}/<SEQ>/<SEQ>_frame_<n>_rgb_anon.png
    ROOT/rgb_anon/val/night/<SEQ>/*_rgb_anon.png          ROOT/gt/val/night/<SEQ>/*_gt_labelIds.png
    ROOT/rgb_anon/test/night/<SEQ>/*_rgb_anon.png         (test labels are hidden: see the export below)
    ROOT/corresp/{train,val,test}/night/*.csv             night frame → GPS-matched day frame
    ROOT/rgb_anon/{val,test}/day/<SEQ>/*_rgb_anon.png      the day frames of val/test's correspondences

Correspondence files (read by :class:`DarkZurichPairs`). The release has one file per night sequence; each
line names a night frame and its day frame, e.g.
``train/night/GOPR0351/GOPR0351_frame_000001,train/day/GOPR0345/GOPR0345_frame_000081`` (the form SePiCo
reads from ``corresp/train/night/`` and DANNet's ``zurich_dn_pair_train.csv`` concatenates: 2416 night
frames, 1426 distinct day frames). Because the exact column layout may vary, a line is accepted as two names
separated by a comma (or, in a line without commas, by whitespace; further columns are ignored), a header
line of two words is skipped, ``#`` starts a comment (:func:`simmm.data.pair_dataset.read_pair_lines`), and
each name may be:

- a path relative to ``ROOT/rgb_anon`` or to ``ROOT`` (``train/night/SEQ/SEQ_frame_000001``,
  ``rgb_anon/train/night/...``), with or without the ``_rgb_anon.png`` suffix, or an absolute path;
- a bare frame name (``GOPR0351_frame_000001[_rgb_anon.png]``), resolved as
  ``rgb_anon/train/{night|day}/<SEQ>/<name>_rgb_anon.png`` (SEQ = the part before ``_frame_``), else
  searched by file name in that folder.

Server export (:func:`export_server_predictions`). The Dark Zurich test server (CodaLab) takes one zip whose
top level holds three folders with one PNG per test image, found by the image's ``<SEQ>_frame_<n>`` prefix:
``labelTrainIds/`` (uint8 train ids 0..18, full 1080×1920 resolution: standard IoU),
``labelTrainIds_invalid/`` (the same map with 255 where the method declares the pixel invalid: UIoU), and
``confidence/`` (uint16, 0..65535 ↔ confidence 0..1: average UIoU). This is simmm's reading of the
benchmark's instructions and of submissions known to work; with no invalid masks and no confidences given,
``labelTrainIds_invalid`` equals ``labelTrainIds`` (no pixel invalid, so UIoU = IoU) and the confidence is
65535 everywhere.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..errors import DataError, SimmmError
from .check import DataReport
from .images import IMAGE_EXTENSIONS
from .pair_dataset import PairDataset, PairList, read_pair_lines, report_pairs
from .segmentation_check import scan_groups
from .segmentation_dataset import SegmentationDataset
from .tree import PathLike, TreeGroup, check_choice, find_images, require_root
from .synthetic import dataset_root

DZ_SPLITS = ("train", "val", "test")
DZ_CONDITIONS = ("day", "night", "twilight")
DZ_SPLIT_CONDITIONS: Dict[str, Tuple[str, ...]] = {
    "train": ("day", "night", "twilight"),
    "val": ("night",),
    "test": ("night",),
}
"""The folders the release has for each split."""

IMAGE_SUFFIX = "_rgb_anon.png"
LABEL_SUFFIXES = (("_gt_labelIds.png", "labelIds"), ("_gt_labelTrainIds.png", "trainIds"))
PAIR_FILE_SUFFIXES = (".csv", ".txt")
SERVER_FOLDERS = ("labelTrainIds", "labelTrainIds_invalid", "confidence")

__all__ = [
    "DZ_SPLITS",
    "DZ_CONDITIONS",
    "DZ_SPLIT_CONDITIONS",
    "SERVER_FOLDERS",
    "DarkZurichDataset",
    "DarkZurichPairs",
    "read_pairs",
    "darkzurich_pairs",
    "export_server_predictions",
    "darkzurich_layout",
    "darkzurich_group",
    "check_darkzurich_tree",
]


def darkzurich_layout(root: PathLike, split: str = "{train,val,test}",
                      condition: str = "{day,night,twilight}") -> str:
    return (f"{root}/rgb_anon/{split}/{condition}/<SEQ>/*{IMAGE_SUFFIX}, labels (val night) "
            f"{root}/gt/val/night/<SEQ>/*{LABEL_SUFFIXES[0][0]}, "
            f"day-night pairs {root}/corresp/<split>/night/*.csv")


def darkzurich_group(root: Path, split: str, condition: str) -> TreeGroup:
    return TreeGroup(name=f"{split}/{condition}", image_dir=root / "rgb_anon" / split / condition,
                     image_suffix=IMAGE_SUFFIX, label_dir=root / "gt" / split / condition,
                     label_suffixes=LABEL_SUFFIXES, labels_required=split == "val")


class DarkZurichDataset(SegmentationDataset):
    """Dark Zurich images of one split and condition (labels for val night).

    Args:
        root: dataset root (holding ``rgb_anon/``, ``gt/``, ``corresp/``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        condition: ``"day"``, ``"night"`` or ``"twilight"`` (val and test are night only).
        size: ``None`` (native 1080×1920) or ``(H, W)``: bilinear image, nearest label.
        with_labels: ``None`` (default): labels for val (required there) and wherever a ``gt/<split>/<cond>``
            folder exists; ``True`` requires them; ``False`` loads images only (items without ``"target"``).

    Labels: ``*_gt_labelIds.png`` (mapped to train ids), or ``*_gt_labelTrainIds.png`` when only that exists.
    Items: ``{"image", "target" (when labelled), "path", "name": "<split>/<cond>/<SEQ>/<file>"}``; ``name`` is
    the key :func:`export_server_predictions` expects.
    """

    dataset_name = "darkzurich"

    def __init__(self, root: PathLike, split: str = "val", condition: str = "night", size=None,
                 with_labels: Optional[bool] = None):
        self.split = check_choice(str(split), DZ_SPLITS, "Dark Zurich split")
        self.condition = check_choice(str(condition), DZ_CONDITIONS, "Dark Zurich condition")
        layout = darkzurich_layout(dataset_root(root), self.split, self.condition)
        root_p = require_root(root, layout)
        group = darkzurich_group(root_p, self.split, self.condition)
        if with_labels is None:
            with_labels = self.split == "val" or group.label_dir.is_dir()
        self._init_from_group(group, root_p, layout, size, with_labels, name_root=root_p / "rgb_anon")


# ------------------------------------------------------------------------------------------ day-night pairs

def corresp_dir(root: Path, split: str = "train") -> Path:
    """The folder of a split's correspondence files: ``ROOT/corresp/<split>/night``."""
    return root / "corresp" / split / "night"


def _pair_files(root: Path, pairs_file: Optional[PathLike], split: str) -> List[Path]:
    if pairs_file is not None:
        p = Path(pairs_file).expanduser()
        if not p.is_absolute() and not p.exists() and (root / p).exists():
            p = root / p
        if not p.is_file():
            raise DataError(f"pairs file {p} does not exist; expected a text/CSV file of `night,day` lines")
        return [p]
    d = corresp_dir(root, split)
    if not d.is_dir():
        raise DataError(f"correspondence folder {d} does not exist; expected the release's GPS "
                        f"correspondence files under {d}/*.csv (night frame, day frame per line), or pass "
                        f"pairs_file= a `night,day` CSV such as DANNet's zurich_dn_pair_train.csv")
    files = [p for p in find_images(d, "") if p.suffix.lower() in PAIR_FILE_SUFFIXES]
    if not files:
        raise DataError(f"no correspondence files (*.csv, *.txt) in {d}; expected one file per night "
                        f"sequence listing `night frame, day frame` per line")
    return files


class _FrameResolver:
    """Turns a name from a pairs file into an existing image path (see the module docstring)."""

    def __init__(self, root: Path, split: str = "train"):
        self.root = root
        self.split = split
        self._index: Dict[str, Dict[str, Path]] = {}

    @staticmethod
    def _with_suffix(token: str) -> str:
        if token.lower().endswith(IMAGE_EXTENSIONS):
            return token
        if token.endswith("_rgb_anon"):
            return token + ".png"
        return token + IMAGE_SUFFIX

    def _by_name(self, condition: str, name: str) -> Optional[Path]:
        if condition not in self._index:
            folder = self.root / "rgb_anon" / self.split / condition
            self._index[condition] = {p.name: p for p in find_images(folder, IMAGE_SUFFIX)}
        return self._index[condition].get(name)

    def resolve(self, token: str, condition: str) -> Tuple[Optional[Path], Path]:
        """``(existing path or None, the path expected for it)``."""
        t = self._with_suffix(token.replace("\\", "/"))
        p = Path(t)
        if p.is_absolute():
            return (p if p.is_file() else None), p
        rgb = self.root / "rgb_anon"
        if "/" in t:
            if t.startswith("rgb_anon/"):
                cands = [self.root / t]
            else:
                cands = [rgb / t, self.root / t, rgb / self.split / t]
        else:
            seq = t.split("_frame_")[0] if "_frame_" in t else None
            folder = rgb / self.split / condition
            cands = [folder / seq / t] if seq else [folder / t]
        for c in cands:
            if c.is_file():
                return c, cands[0]
        if "/" not in t:
            hit = self._by_name(condition, t)
            if hit is not None:
                return hit, cands[0]
        return None, cands[0]


def darkzurich_pairs(root: Path, pairs_file: Optional[PathLike], split: str = "train") -> PairList:
    """Every pair of the pairs files (:func:`read_pairs`: the arguments) and every problem found (a malformed
    line, a missing image, a night frame paired twice); raises :class:`DataError` only when no pairs file can be
    found at all."""
    split = check_choice(str(split), DZ_SPLITS, "Dark Zurich split")
    files = _pair_files(root, pairs_file, split)
    resolver = _FrameResolver(root, split)
    found = PairList(sources=files)
    first_seen: Dict[Path, Tuple[Path, str]] = {}
    for f in files:
        lines, errs = read_pair_lines(f)
        found.errors.extend(errs)
        for pl in lines:
            night, night_exp = resolver.resolve(pl.night, "night")
            day, day_exp = resolver.resolve(pl.day, "day")
            bad = False
            for what, got, exp, tok in (("night", night, night_exp, pl.night), ("day", day, day_exp, pl.day)):
                if got is None:
                    found.errors.append(f"pairs file {f}, line {pl.lineno}: {what} image {tok!r} not found "
                                        f"(missing {exp})")
                    bad = True
            if bad:
                continue
            prev = first_seen.get(night)
            if prev is not None:
                if prev[0] != day:
                    found.errors.append(f"pairs file {f}, line {pl.lineno}: night image {night} is paired with "
                                        f"{day}, but {prev[1]} pairs it with {prev[0]}")
                continue  # the same pair listed twice (e.g. a per-sequence file and a merged list): keep one
            first_seen[night] = (day, f"{f}, line {pl.lineno}")
            found.pairs.append((night, day))
    return found


def read_pairs(root: PathLike, pairs_file: Optional[PathLike] = None, split: str = "train") -> List[Tuple[Path, Path]]:
    """The ``(night image, day image)`` paths of Dark Zurich's GPS-matched pairs of a split.

    Args:
        root: Dark Zurich root.
        pairs_file: a ``night,day`` list (DANNet's ``zurich_dn_pair_train.csv`` form); ``None`` reads every
            ``*.csv``/``*.txt`` under ``ROOT/corresp/<split>/night/`` (the release's correspondence files).
        split: ``"train"`` (DANIA's training pairs), ``"val"`` or ``"test"`` (each night image's day partner, for
            the day–night evaluation); bare frame names resolve under ``rgb_anon/<split>/``.

    Raises:
        DataError: no pairs file; a malformed line or a pair naming a missing image (the message names the
            pairs file, the line number and the missing path); one night frame paired with two day frames.
    """
    root_p = require_root(root, darkzurich_layout(dataset_root(root)))
    return darkzurich_pairs(root_p, pairs_file, split).require()


class DarkZurichPairs(PairDataset):
    """Coarsely GPS-aligned night → day training pairs (DANIA's paired mode; unlabelled).

    Args:
        root: Dark Zurich root.
        pairs_file: see :func:`read_pairs` (``None``: the release's ``corresp/<split>/night/`` files).
        size: ``None`` (native) or ``(H, W)``: both images resized bilinearly to it.
        split: the split of the pairs (``"train"``; ``"val"``/``"test"`` for the day–night evaluation).

    Items: :class:`~simmm.data.pair_dataset.PairDataset`'s (``night``, ``day``, ``index``, ``key``, the two
    file → item matrices, ``night_path``, ``day_path``).

    Attributes:
        pairs: ``[(night path, day path), ...]`` in file order (duplicates removed); ``keys``: the pair keys.
        num_day_frames: number of distinct day frames.
    """

    def __init__(self, root: PathLike, pairs_file: Optional[PathLike] = None, size=None, split: str = "train"):
        root_p = require_root(root, darkzurich_layout(dataset_root(root)))
        self.pairs_file = pairs_file
        super().__init__(read_pairs(root_p, pairs_file, split), root_p, size)

    @property
    def num_day_frames(self) -> int:
        return self.num_day_images


# ------------------------------------------------------------------------------------------ server export

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _server_name(key: str, layout: str) -> str:
    rel = Path(str(key).replace("\\", "/"))
    name = rel.name
    if not name.lower().endswith(".png"):
        name = name + (".png" if name.endswith("_rgb_anon") else IMAGE_SUFFIX)
    if layout == "flat":
        return name
    parts = [p for p in rel.parent.parts if p not in ("", ".", "/")]
    if "rgb_anon" in parts:
        parts = parts[parts.index("rgb_anon") + 1:]
    return "/".join(parts + [name])


def export_server_predictions(
    pred_train_ids: Mapping[str, ArrayLike],
    out_dir: PathLike,
    invalid: Optional[Mapping[str, ArrayLike]] = None,
    confidence: Optional[Mapping[str, ArrayLike]] = None,
    zip_name: str = "darkzurich_test.zip",
    layout: str = "flat",
) -> Path:
    """Write Dark Zurich test predictions in the server's format and zip them.

    Args:
        pred_train_ids: image key → ``(H, W)`` train ids 0..18 (uint8 or any integer array/tensor) at the
            image's full resolution (1080×1920 for the real test set). The key is the image's relative path,
            e.g. a test item's ``"name"`` (``"test/night/GOPR0364/GOPR0364_frame_000001_rgb_anon.png"``);
            ``rgb_anon/``-prefixed paths, bare file names and names without ``_rgb_anon.png`` also work.
        out_dir: output folder (created).
        invalid: optional key → ``(H, W)`` mask, nonzero/True where the pixel is declared invalid (written as
            255 in ``labelTrainIds_invalid/``). Images without a mask are all valid.
        confidence: optional key → ``(H, W)`` confidence in ``[0, 1]`` (float) or ``uint16`` 0..65535.
            Images without one get 65535 (confidence 1) everywhere.
        zip_name: the zip written in ``out_dir``.
        layout: ``"flat"`` (default: every PNG directly in its folder, named like the image,
            ``GOPR0364_frame_000001_rgb_anon.png``) or ``"relative"`` (keep ``test/night/<SEQ>/``).

    Returns:
        The path of the zip, whose top level holds ``labelTrainIds/``, ``labelTrainIds_invalid/`` and
        ``confidence/`` (see the module docstring for what each holds).

    Raises:
        DataError: no predictions, a value outside 0..18, a non-2-D map, a mask or confidence whose shape
            differs from its prediction or whose key has no prediction, two keys with the same output name.
    """
    if layout not in ("flat", "relative"):
        raise SimmmError(f"layout must be 'flat' or 'relative', got {layout!r}")
    if not pred_train_ids:
        raise DataError("export_server_predictions got no predictions")
    invalid = dict(invalid or {})
    confidence = dict(confidence or {})
    for what, extra in (("invalid mask", invalid), ("confidence map", confidence)):
        unknown = [k for k in extra if k not in pred_train_ids]
        if unknown:
            raise DataError(f"{what} given for image(s) without a prediction: {unknown[:5]}")
    out = Path(out_dir).expanduser()
    for folder in SERVER_FOLDERS:
        (out / folder).mkdir(parents=True, exist_ok=True)
    names: Dict[str, str] = {}
    written: List[str] = []
    for key in sorted(pred_train_ids):
        pred = _as_numpy(pred_train_ids[key])
        if pred.ndim != 2:
            raise DataError(f"prediction for {key} must be a 2-D (H, W) map of train ids, "
                            f"got shape {pred.shape}")
        if pred.dtype.kind not in "iub":
            raise DataError(f"prediction for {key} must hold integer train ids, got dtype {pred.dtype}")
        wide = pred.astype(np.int64)
        bad = np.unique(wide[(wide < 0) | (wide > 18)])
        if bad.size:
            raise DataError(f"prediction for {key} contains value(s) {bad[:8].tolist()} outside the train "
                            f"ids 0..18; the server takes one of the 19 classes for every pixel")
        ids = wide.astype(np.uint8)
        name = _server_name(key, layout)
        if name in names:
            raise DataError(f"predictions for {names[name]} and {key} would both be written as {name}")
        names[name] = key

        inv = ids.copy()
        if key in invalid:
            mask = _as_numpy(invalid[key])
            if mask.shape != ids.shape:
                raise DataError(f"invalid mask for {key} has shape {mask.shape}, prediction {ids.shape}")
            inv[mask.astype(bool)] = 255
        if key in confidence:
            c = _as_numpy(confidence[key])
            if c.shape != ids.shape:
                raise DataError(f"confidence map for {key} has shape {c.shape}, prediction {ids.shape}")
            if c.dtype.kind == "f":
                conf = np.round(np.clip(c.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
            else:
                conf = np.clip(c.astype(np.int64), 0, 65535).astype(np.uint16)
        else:
            conf = np.full(ids.shape, 65535, dtype=np.uint16)

        for folder, arr in (("labelTrainIds", ids), ("labelTrainIds_invalid", inv), ("confidence", conf)):
            target = out / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(target, format="PNG")  # uint8 → mode L, uint16 → 16-bit PNG
        written.append(name)
    zip_path = out / zip_name
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for folder in SERVER_FOLDERS:
            for name in written:
                zf.write(out / folder / name, arcname=f"{folder}/{name}")
    return zip_path


# ------------------------------------------------------------------------------------------------ check


def check_darkzurich_tree(root: PathLike, splits: Optional[Sequence[str]] = None,
                          conditions: Optional[Sequence[str]] = None, *, verify: bool = True,
                          references: bool = False, pairs=None,
                          max_listed: int = 10) -> DataReport:
    """Data check of a Dark Zurich tree.

    Default folders: train/{day,night,twilight}, val/night (labels required), test/night. ``pairs``:
    ``None`` checks ``corresp/train/night/`` when present (a warning when absent), ``True`` requires it,
    ``False`` skips it, a path checks that ``night,day`` file.
    """
    spl = [check_choice(s, DZ_SPLITS, "Dark Zurich split") for s in (splits or DZ_SPLITS)]
    conds = ([check_choice(c, DZ_CONDITIONS, "Dark Zurich condition") for c in conditions]
             if conditions else None)
    root_p = dataset_root(root)
    groups = [darkzurich_group(root_p, s, c) for s in spl for c in (conds or DZ_SPLIT_CONDITIONS[s])]
    report = scan_groups("darkzurich", root_p, darkzurich_layout(root_p), groups, verify=verify,
                         max_listed=max_listed)
    if not root_p.is_dir() or pairs is False:
        return report
    corresp = corresp_dir(root_p)
    if pairs is None and not corresp.is_dir():
        report.entry("WARN", f"no day-night correspondences at {corresp} (needed only for DANIA's paired "
                             f"training)")
        return report
    pairs_file = None if pairs in (None, True) else pairs
    try:
        found = darkzurich_pairs(root_p, pairs_file)
    except DataError as e:
        report.entry("MISSING", str(e))
        return report
    report_pairs(report, found, verify=verify, skip_under=[g.image_dir for g in groups], max_listed=max_listed)
    return report
