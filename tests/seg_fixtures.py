"""Tiny segmentation trees in the exact on-disk formats of Cityscapes, Dark Zurich, Nighttime Driving, ACDC.

Used with ``from seg_fixtures import *`` in a test module (``tests/`` is on ``sys.path`` under pytest). The trees
and writers are :mod:`simmm.data.synthetic`'s (16×32 RGB PNGs, mode-L labels with ids from the Cityscapes table,
the real file-name patterns and the distractor files the releases ship); each fixture generates its tree,
seeded, into ``tmp_path``. ``OFFICIAL_TRAIN_ID`` is the test oracle for simmm's label table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from simmm.data.synthetic import (
    SAMPLE_LABEL_IDS,
    SEG_H,
    SEG_W,
    label_pattern,
    make_acdc_tree,
    make_cityscapes_tree,
    make_darkzurich_tree,
    make_nighttime_driving_tree,
    write_label,
    write_rgb,
)

__all__ = [
    "SEG_H",
    "SEG_W",
    "SAMPLE_LABEL_IDS",
    "OFFICIAL_TRAIN_ID",
    "write_rgb",
    "write_label",
    "label_pattern",
    "make_cityscapes_tree",
    "make_darkzurich_tree",
    "make_nighttime_driving_tree",
    "make_acdc_tree",
    "tmp_cityscapes",
    "tmp_darkzurich",
    "tmp_nighttime_driving",
    "tmp_acdc",
]

# Official labelId -> trainId, written out independently of simmm's table (cityscapesScripts labels.py).
OFFICIAL_TRAIN_ID: Dict[int, int] = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3,
    13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def tmp_cityscapes(tmp_path) -> Path:
    """Cityscapes: train (aachen ×2, bochum ×1) and val (frankfurt ×2, lindau ×1), 16×32, gtFine labelIds."""
    return make_cityscapes_tree(tmp_path / "cityscapes")


@pytest.fixture
def tmp_darkzurich(tmp_path) -> Path:
    """Dark Zurich: train day/night/twilight, val night with labels, test night, correspondences."""
    return make_darkzurich_tree(tmp_path / "dark_zurich")


@pytest.fixture
def tmp_nighttime_driving(tmp_path) -> Path:
    """Nighttime Driving: 3 test/night images with gtCoarse labelIds."""
    return make_nighttime_driving_tree(tmp_path / "NighttimeDrivingTest")


@pytest.fixture
def tmp_acdc(tmp_path) -> Path:
    """ACDC: 4 conditions × train/val/test × 2 images, references, train/val labelTrainIds (+ labelIds)."""
    return make_acdc_tree(tmp_path / "acdc")
