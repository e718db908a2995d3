"""ACDC (Adverse Conditions Dataset with Correspondences): fog, night, rain, snow, with reference images.

Tree (METHOD.md §6)::

    ROOT/rgb_anon/<cond>/<split>/<SEQ>/<SEQ>_frame_<n>_rgb_anon.png          cond ∈ fog, night, rain, snow
    ROOT/rgb_anon/<cond>/<split>_ref/<SEQ>/<SEQ>_frame_<n>_rgb_ref_anon.png  normal-condition reference
    ROOT/gt/<cond>/<split>/<SEQ>/<SEQ>_frame_<n>_gt_labelTrainIds.png        split ∈ train, val (test hidden)

Labels are already Cityscapes train ids (0..18, 255 = ignore); a file with any other value is rejected. When
only ``*_gt_labelIds.png`` is present it is read as labelIds and mapped. (The release's
``rgb_anon_trainvaltest/`` and ``gt_trainval/`` wrappers are not part of the tree: point ``root`` at the
folder that holds ``rgb_anon/`` and ``gt/``.)

Pairs (:class:`ACDCPairs`, DANIA's paired stream on ACDC): each adverse-condition image with its reference
image, the same place in normal conditions: the condition image is the pair's ``night``, the reference its
``day``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from .check import DataReport
from .pair_dataset import PairDataset, PairList
from .segmentation_check import scan_groups
from .segmentation_dataset import SegmentationDataset
from .tree import PathLike, TreeGroup, check_choice, find_images, require_root
from .synthetic import dataset_root

ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
ACDC_SPLITS = ("train", "val", "test")
LABELLED_SPLITS = ("train", "val")
IMAGE_SUFFIX = "_rgb_anon.png"
REFERENCE_SUFFIX = "_rgb_ref_anon.png"
LABEL_SUFFIXES = (("_gt_labelTrainIds.png", "trainIds"), ("_gt_labelIds.png", "labelIds"))

__all__ = ["ACDC_CONDITIONS", "ACDC_SPLITS", "ACDCDataset", "ACDCPairs", "acdc_layout", "acdc_group",
           "acdc_pairs", "check_acdc_tree"]


def acdc_layout(root: PathLike, condition: str = "<cond>", split: str = "<split>") -> str:
    return (f"{root}/rgb_anon/{condition}/{split}/<SEQ>/*{IMAGE_SUFFIX} with labels "
            f"{root}/gt/{condition}/{split}/<SEQ>/*{LABEL_SUFFIXES[0][0]} and references "
            f"{root}/rgb_anon/{condition}/{split}_ref/<SEQ>/*{REFERENCE_SUFFIX}")


def acdc_group(root: Path, condition: str, split: str) -> TreeGroup:
    return TreeGroup(name=f"{condition}/{split}", image_dir=root / "rgb_anon" / condition / split,
                     image_suffix=IMAGE_SUFFIX, label_dir=root / "gt" / condition / split,
                     label_suffixes=LABEL_SUFFIXES, labels_required=split in LABELLED_SPLITS,
                     reference_dir=root / "rgb_anon" / condition / f"{split}_ref",
                     reference_suffix=REFERENCE_SUFFIX)


class ACDCDataset(SegmentationDataset):
    """ACDC images of one condition and split, with train-id labels and optional reference images.

    Args:
        root: dataset root (holding ``rgb_anon/`` and ``gt/``).
        condition: ``"fog"``, ``"night"``, ``"rain"`` or ``"snow"``.
        split: ``"train"``, ``"val"`` or ``"test"`` (test labels are not public).
        size: ``None`` (native 1080×1920) or ``(H, W)``: bilinear images, nearest label.
        with_reference: add each image's normal-condition reference as ``"reference"`` (same size).
        with_labels: ``None`` (default): labels for train/val, none for test.

    Items: ``{"image", "target" (int64 train ids, 255 ignore), "reference" (with_reference), "path",
    "name": "<cond>/<split>/<SEQ>/<file>"}``.
    """

    dataset_name = "acdc"

    def __init__(self, root: PathLike, condition: str = "night", split: str = "train", size=None,
                 with_reference: bool = False, with_labels: Optional[bool] = None):
        self.condition = check_choice(str(condition), ACDC_CONDITIONS, "ACDC condition")
        self.split = check_choice(str(split), ACDC_SPLITS, "ACDC split")
        layout = acdc_layout(dataset_root(root), self.condition, self.split)
        root_p = require_root(root, layout)
        if with_labels is None:
            with_labels = self.split in LABELLED_SPLITS
        self.with_reference = bool(with_reference)
        self._init_from_group(acdc_group(root_p, self.condition, self.split), root_p, layout, size, with_labels,
                              name_root=root_p / "rgb_anon", with_reference=self.with_reference)


def acdc_pairs(root: PathLike, condition: str = "night", split: str = "train") -> PairList:
    """Every ``(condition image, reference image)`` pair of one condition and split; never raises for data: a
    missing image folder, an empty one and an image without its reference are errors of the list."""
    cond = check_choice(str(condition), ACDC_CONDITIONS, "ACDC condition")
    spl = check_choice(str(split), ACDC_SPLITS, "ACDC split")
    root_p = dataset_root(root)
    group = acdc_group(root_p, cond, spl)
    found = PairList(sources=[group.image_dir])
    images = find_images(group.image_dir, IMAGE_SUFFIX)
    if not images:
        found.errors.append(f"no images *{IMAGE_SUFFIX} in {group.image_dir}; expected the tree "
                            f"{acdc_layout(root_p, cond, spl)}")
    for image in images:
        ref = group.reference_path(image)
        if ref.is_file():
            found.pairs.append((image, ref))
        else:
            found.errors.append(f"image {image} has no reference image: missing {ref}")
    return found


class ACDCPairs(PairDataset):
    """ACDC's adverse-condition images with their normal-condition references (unlabelled pairs).

    Args:
        root: dataset root (holding ``rgb_anon/``).
        condition: ``"fog"``, ``"night"``, ``"rain"`` or ``"snow"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: ``None`` (the condition image's native size) or ``(H, W)``.

    Items: :class:`~simmm.data.pair_dataset.PairDataset`'s; ``night`` is the condition image, ``day`` its
    reference.

    Raises:
        DataError: a missing root or image folder, an image without its reference (named, with the expected
            path).
    """

    def __init__(self, root: PathLike, condition: str = "night", split: str = "train", size=None):
        self.condition = check_choice(str(condition), ACDC_CONDITIONS, "ACDC condition")
        self.split = check_choice(str(split), ACDC_SPLITS, "ACDC split")
        root_p = require_root(root, acdc_layout(dataset_root(root), self.condition, self.split))
        super().__init__(acdc_pairs(root_p, self.condition, self.split).require(), root_p, size)


def check_acdc_tree(root: PathLike, splits: Optional[Sequence[str]] = None,
                    conditions: Optional[Sequence[str]] = None, *, verify: bool = True,
                    references: bool = False, pairs=None, max_listed: int = 10) -> DataReport:
    """Data check of an ACDC tree (default: all conditions × train/val/test; labels required for train/val;
    with ``references=True`` every image needs its ``*_rgb_ref_anon.png``)."""
    conds = [check_choice(c, ACDC_CONDITIONS, "ACDC condition") for c in (conditions or ACDC_CONDITIONS)]
    spl = [check_choice(s, ACDC_SPLITS, "ACDC split") for s in (splits or ACDC_SPLITS)]
    root_p = dataset_root(root)
    groups: List[TreeGroup] = [acdc_group(root_p, c, s) for c in conds for s in spl]
    return scan_groups("acdc", root_p, acdc_layout(root_p), groups, verify=verify, references=references,
                       max_listed=max_listed)
