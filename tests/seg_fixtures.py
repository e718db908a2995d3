"""Tiny segmentation trees in the exact on-disk formats of Cityscapes, Dark Zurich, Nighttime Driving, ACDC.

Used with ``from seg_fixtures import *`` in a test module (``tests/`` is on ``sys.path`` under pytest). Every
tree is generated, seeded, into ``tmp_path``; images are 16×32 (H×W) RGB PNGs, labels are mode-L PNGs whose
ids come from the real Cityscapes table (void ids 0..6 and other ignored ids as well as evaluation classes).
Real file-name patterns are used throughout (``aachen_000000_000019_leftImg8bit.png``,
``GOPR0356_frame_000321_rgb_anon.png``, ...), together with the distractor files the releases ship next to
the labels (``*_color.png``, ``*_polygons.json``, ``*_labelColor.png``, ``*_invIds.png``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import pytest
from PIL import Image

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

SEG_H, SEG_W = 16, 32

# Official labelId -> trainId, written out independently of simmm's table (cityscapesScripts labels.py).
OFFICIAL_TRAIN_ID: Dict[int, int] = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3,
    13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}

# labelIds used in the fake labels: ignored ones (0..6, 9 parking, 14 guard rail, 29 caravan) and
# evaluation classes (road, sidewalk, building, pole, vegetation, sky, person, car, bicycle).
SAMPLE_LABEL_IDS: Tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 9, 14, 29, 7, 8, 11, 17, 21, 23, 24, 26, 33)


def write_rgb(path, size_hw: Tuple[int, int] = (SEG_H, SEG_W), seed: int = 0) -> Path:
    """A random smooth-plus-noise RGB PNG of ``size_hw``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size_hw
    base = rng.integers(0, 200, size=(1, 1, 3))
    ramp = np.linspace(0, 50, w)[None, :, None]
    arr = np.clip(base + ramp + rng.normal(0, 20, size=(h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr, mode="RGB").save(path)
    return path


def label_pattern(ids: Sequence[int], size_hw: Tuple[int, int] = (SEG_H, SEG_W), seed: int = 0,
                  block: int = 4) -> np.ndarray:
    """A ``uint8`` id map of ``block``×``block`` tiles, each tile one id drawn from ``ids`` (all ids appear
    when there are enough tiles)."""
    rng = np.random.default_rng(seed)
    h, w = size_hw
    th, tw = -(-h // block), -(-w // block)
    n = th * tw
    ids = list(ids)
    tiles = np.array((ids * (n // len(ids) + 1))[:n] if n >= len(ids) else ids[:n], dtype=np.uint8)
    rng.shuffle(tiles)
    grid = tiles.reshape(th, tw)
    return np.kron(grid, np.ones((block, block), dtype=np.uint8))[:h, :w].astype(np.uint8)


def write_label(path, arr: np.ndarray) -> Path:
    """Write an id map as a mode-L PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8), mode="L").save(path)
    return path


def _train_ids(label_ids: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for k, v in OFFICIAL_TRAIN_ID.items():
        lut[k] = v
    return lut[label_ids]


def _colour(path: Path, label_ids: np.ndarray) -> None:
    """A stand-in for the releases' colour visualisation (an RGB PNG next to the label)."""
    ids = label_ids.astype(np.int64)
    rgb = np.stack([ids * 7 % 256, ids * 13 % 256, ids * 29 % 256], -1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(path)


# ---------------------------------------------------------------------------------------------- Cityscapes

CITYSCAPES_FILES: Dict[str, Dict[str, List[str]]] = {
    "train": {"aachen": ["aachen_000000_000019", "aachen_000001_000019"], "bochum": ["bochum_000000_000313"]},
    "val": {"frankfurt": ["frankfurt_000000_000294", "frankfurt_000000_000576"],
            "lindau": ["lindau_000000_000019"]},
}


def make_cityscapes_tree(root, files: Dict[str, Dict[str, List[str]]] = CITYSCAPES_FILES,
                         seed: int = 0) -> Path:
    """``root/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` + ``root/gtFine/<split>/<city>/*_gtFine_*``."""
    root = Path(root)
    k = 0
    for split, cities in files.items():
        for city, stems in cities.items():
            for stem in stems:
                write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=seed + k)
                lab = label_pattern(SAMPLE_LABEL_IDS, seed=seed + k)
                gt = root / "gtFine" / split / city
                write_label(gt / f"{stem}_gtFine_labelIds.png", lab)
                write_label(gt / f"{stem}_gtFine_instanceIds.png", lab)
                _colour(gt / f"{stem}_gtFine_color.png", lab)
                polygons = '{"imgHeight": 16, "imgWidth": 32, "objects": []}'
                (gt / f"{stem}_gtFine_polygons.json").write_text(polygons)
                k += 1
    return root


# --------------------------------------------------------------------------------------------- Dark Zurich

DZ_TRAIN = {
    "night": {"GOPR0351": ["GOPR0351_frame_000001", "GOPR0351_frame_000002", "GOPR0351_frame_000003"]},
    "day": {"GOPR0345": ["GOPR0345_frame_000077", "GOPR0345_frame_000081"]},
    "twilight": {"GOPR0348": ["GOPR0348_frame_000010", "GOPR0348_frame_000011"]},
}
DZ_VAL = {"GOPR0356": ["GOPR0356_frame_000321", "GOPR0356_frame_000324", "GOPR0356_frame_000327"]}
DZ_TEST = {"GOPR0364": ["GOPR0364_frame_000001", "GOPR0364_frame_000002"]}
# night frame -> GPS-matched day frame (two nights share one day frame, as in the real list)
DZ_PAIRS = [("GOPR0351/GOPR0351_frame_000001", "GOPR0345/GOPR0345_frame_000081"),
            ("GOPR0351/GOPR0351_frame_000002", "GOPR0345/GOPR0345_frame_000081"),
            ("GOPR0351/GOPR0351_frame_000003", "GOPR0345/GOPR0345_frame_000077")]


def make_darkzurich_tree(root, seed: int = 100) -> Path:
    """The unpacked train/val/test releases: ``rgb_anon/``, ``gt/val/night/``, ``corresp/train/night/``.

    Also writes DANNet's pair list form at ``root/lists/zurich_dn_pair_train.csv`` (``night,day`` paths
    relative to ``rgb_anon/`` without the ``_rgb_anon.png`` suffix).
    """
    root = Path(root)
    k = 0
    for cond, seqs in DZ_TRAIN.items():
        for seq, frames in seqs.items():
            for f in frames:
                write_rgb(root / "rgb_anon" / "train" / cond / seq / f"{f}_rgb_anon.png", seed=seed + k)
                k += 1
    for seq, frames in DZ_VAL.items():
        for f in frames:
            write_rgb(root / "rgb_anon" / "val" / "night" / seq / f"{f}_rgb_anon.png", seed=seed + k)
            lab = label_pattern(SAMPLE_LABEL_IDS, seed=seed + k)
            gt = root / "gt" / "val" / "night" / seq
            write_label(gt / f"{f}_gt_labelIds.png", lab)
            write_label(gt / f"{f}_gt_labelTrainIds.png", _train_ids(lab))
            _colour(gt / f"{f}_gt_labelColor.png", lab)
            write_label(gt / f"{f}_gt_invIds.png", np.zeros_like(lab))
            k += 1
    for seq, frames in DZ_TEST.items():
        for f in frames:
            write_rgb(root / "rgb_anon" / "test" / "night" / seq / f"{f}_rgb_anon.png", seed=seed + k)
            k += 1
    rows = [f"train/night/{n},train/day/{d}" for n, d in DZ_PAIRS]
    corresp = root / "corresp" / "train" / "night"
    corresp.mkdir(parents=True, exist_ok=True)
    (corresp / "GOPR0351.csv").write_text("\n".join(rows) + "\n")
    (root / "lists").mkdir(exist_ok=True)
    (root / "lists" / "zurich_dn_pair_train.csv").write_text("\n".join(rows) + "\n")
    return root


# -------------------------------------------------------------------------------------- Nighttime Driving

ND_STEMS = ["0_frame_0046", "0_frame_0117", "1_frame_0020"]


def make_nighttime_driving_tree(root, seed: int = 200) -> Path:
    """``root/leftImg8bit/test/night/*_leftImg8bit.png`` + ``gtCoarse_daytime_trainvaltest/test/night/``."""
    root = Path(root)
    for k, stem in enumerate(ND_STEMS):
        write_rgb(root / "leftImg8bit" / "test" / "night" / f"{stem}_leftImg8bit.png", seed=seed + k)
        lab = label_pattern(SAMPLE_LABEL_IDS, seed=seed + k)
        gt = root / "gtCoarse_daytime_trainvaltest" / "test" / "night"
        write_label(gt / f"{stem}_gtCoarse_labelIds.png", lab)
        _colour(gt / f"{stem}_gtCoarse_color.png", lab)
    return root


# ------------------------------------------------------------------------------------------------- ACDC

ACDC_SEQS = {"fog": "GOPR0475", "night": "GOPR0376", "rain": "GOPR0400", "snow": "GOPR0122"}
ACDC_FRAMES = {"train": ["000041", "000043"], "val": ["000102", "000105"], "test": ["000210", "000213"]}


def make_acdc_tree(root, conditions: Iterable[str] = ("fog", "night", "rain", "snow"),
                   seed: int = 300) -> Path:
    """``rgb_anon/<cond>/<split>/<SEQ>/`` (+ ``<split>_ref/``) and ``gt/<cond>/{train,val}/<SEQ>/``."""
    root = Path(root)
    k = 0
    for cond in conditions:
        seq = ACDC_SEQS[cond]
        for split, frames in ACDC_FRAMES.items():
            for fr in frames:
                stem = f"{seq}_frame_{fr}"
                write_rgb(root / "rgb_anon" / cond / split / seq / f"{stem}_rgb_anon.png", seed=seed + k)
                write_rgb(root / "rgb_anon" / cond / f"{split}_ref" / seq / f"{stem}_rgb_ref_anon.png",
                          seed=seed + 1000 + k)
                if split != "test":
                    lab = label_pattern(SAMPLE_LABEL_IDS, seed=seed + k)
                    gt = root / "gt" / cond / split / seq
                    write_label(gt / f"{stem}_gt_labelTrainIds.png", _train_ids(lab))
                    write_label(gt / f"{stem}_gt_labelIds.png", lab)
                    _colour(gt / f"{stem}_gt_labelColor.png", lab)
                    write_label(gt / f"{stem}_gt_invIds.png", np.zeros_like(lab))
                k += 1
    return root


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
