"""Tiny datasets in the exact on-disk formats of CODaN, Cityscapes, Dark Zurich, Nighttime Driving, ACDC, ARID,
retrieval-SfM-120k and Tokyo 24/7 (retrieval form).

Every tree is generated, seeded, from random smooth-plus-noise images: same folders, file-name patterns
(``aachen_000000_000019_leftImg8bit.png``, ``GOPR0356_frame_000321_rgb_anon.png``, ...) and label encodings as
the real releases, including the distractor files they ship next to the labels (``*_color.png``,
``*_polygons.json``, ``*_labelColor.png``, ``*_invIds.png``). Segmentation images are 16×32 (H×W) RGB PNGs and
labels mode-L PNGs whose ids come from the Cityscapes table (ignored ids as well as evaluation classes); CODaN
images are 40×32 (W×H) JPGs and PNGs, 2–3 per class and split. ARID videos are 12-frame 32×24 MPEG-4 AVIs written
with PyAV (the library simmm decodes them with), listed in ARID's ``id<TAB>label<TAB>path`` list files.

They let the smoke recipes run out of the box and the tests check the loaders: a dataset ``root`` written
``synthetic:<name>`` (``synthetic:codan``, ``synthetic:cityscapes``, ``synthetic:darkzurich``,
``synthetic:nighttime_driving``, ``synthetic:acdc``, ``synthetic:arid``, ``synthetic:retrieval_sfm``,
``synthetic:tokyo247``) is such a tree, generated on first use under ``.cache/simmm/synthetic/<name>`` of the working
directory (see :func:`dataset_root`). They hold no real pictures: numbers trained on them only say that the code runs. (The
exception, ``synthetic:opencv_places_sfm`` and ``synthetic:opencv_places_test``, are made from the real photos that
Debian's opencv-doc ships: :mod:`simmm.data.opencv_places`.)
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from simmm.data.labels import CODAN_CLASSES, CODAN_SPLITS, LABEL_TO_TRAIN
from simmm.errors import DataError


__all__ = [
    "SYNTHETIC", "SYNTHETIC_DIR", "SEG_H", "SEG_W", "SAMPLE_LABEL_IDS", "TREES",
    "dataset_root", "synthetic_tree",
    "write_image", "write_rgb", "write_label", "label_pattern",
    "make_codan_tree", "make_cityscapes_tree", "make_darkzurich_tree", "make_nighttime_driving_tree",
    "make_acdc_tree", "make_arid_tree", "write_test_video", "ARID_LISTS",
    "make_retrieval_sfm_tree", "make_tokyo247_tree",
]

PathLike = Union[str, os.PathLike]

SYNTHETIC = "synthetic:"
SYNTHETIC_DIR = Path(".cache/simmm/synthetic")
TREE_VERSION = "2"
"""The generators' version, stamped into each tree (bump it when a generator writes something else)."""
TREE_STAMP = ".simmm-tree-version"

SEG_H, SEG_W = 16, 32

# labelIds used in the fake labels: ignored ones (0..6, 9 parking, 14 guard rail, 29 caravan) and
# evaluation classes (road, sidewalk, building, pole, vegetation, sky, person, car, bicycle).
SAMPLE_LABEL_IDS: Tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 9, 14, 29, 7, 8, 11, 17, 21, 23, 24, 26, 33)


# ------------------------------------------------------------------------------------------------- writers
def _smooth_noise(rng: np.random.Generator, h: int, w: int, base: int, ramp: float, noise: float) -> np.ndarray:
    """An ``(h, w, 3)`` uint8 image: a random colour plus a horizontal ramp plus Gaussian noise."""
    colour = rng.integers(0, base, size=(1, 1, 3))
    slope = np.linspace(0, ramp, w)[None, :, None]
    return np.clip(colour + slope + rng.normal(0, noise, size=(h, w, 3)), 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: PathLike, mode: str, fmt=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path, format=fmt)
    return path


def write_image(path: PathLike, size: Tuple[int, int] = (40, 32), seed: int = 0, fmt=None,
                mode: str = "RGB") -> Path:
    """A random (smooth + noise) image of ``size=(W, H)``; format from the suffix or ``fmt``; ``mode`` converts."""
    w, h = size
    img = Image.fromarray(_smooth_noise(np.random.default_rng(seed), h, w, 256, 60, 25), mode="RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def write_rgb(path: PathLike, size_hw: Tuple[int, int] = (SEG_H, SEG_W), seed: int = 0) -> Path:
    """A random smooth-plus-noise RGB PNG of ``size_hw`` (a darker draw than :func:`write_image`)."""
    return _save(_smooth_noise(np.random.default_rng(seed), *size_hw, 200, 50, 20), path, "RGB")


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


def write_label(path: PathLike, arr: np.ndarray) -> Path:
    """Write an id map as a mode-L PNG."""
    return _save(np.asarray(arr, dtype=np.uint8), path, "L")


def _colour(path: Path, label_ids: np.ndarray) -> None:
    """A stand-in for the releases' colour visualisation (an RGB PNG next to the label)."""
    ids = label_ids.astype(np.int64)
    _save(np.stack([ids * 7 % 256, ids * 13 % 256, ids * 29 % 256], -1).astype(np.uint8), path, "RGB")


# ------------------------------------------------------------------------------------------------- CODaN
def make_codan_tree(root: PathLike, splits: Optional[Sequence[str]] = None, classes: Optional[Sequence[str]] = None,
                    per_class: Tuple[int, ...] = (2, 3), size: Tuple[int, int] = (40, 32), seed: int = 0) -> Path:
    """``root/<split>/<Class>/<class>_<n>.jpg|png``; ``per_class`` cycles over classes (2, 3, 2, 3, ...).
    ``splits``/``classes`` default to CODaN's (train, test_day, test_night; the ten classes); others make any
    class-folder (ImageFolder) tree."""
    splits = CODAN_SPLITS if splits is None else splits
    classes = CODAN_CLASSES if classes is None else classes
    root = Path(root)
    k = 0
    for s_i, split in enumerate(splits):
        for c_i, cls in enumerate(classes):
            n = per_class[(c_i + s_i) % len(per_class)]
            for j in range(n):
                ext = ".jpg" if (j + c_i) % 2 == 0 else ".png"
                write_image(root / split / cls / f"{cls.lower()}_{j:03d}{ext}", size=size, seed=seed * 100_003 + k)
                k += 1
    return root


# ---------------------------------------------------------------------------------------------- Cityscapes
CITYSCAPES_FILES: Dict[str, Dict[str, List[str]]] = {
    "train": {"aachen": ["aachen_000000_000019", "aachen_000001_000019"], "bochum": ["bochum_000000_000313"]},
    "val": {"frankfurt": ["frankfurt_000000_000294", "frankfurt_000000_000576"],
            "lindau": ["lindau_000000_000019"]},
}


def make_cityscapes_tree(root: PathLike, files: Dict[str, Dict[str, List[str]]] = CITYSCAPES_FILES,
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
                (gt / f"{stem}_gtFine_polygons.json").write_text(
                    f'{{"imgHeight": {SEG_H}, "imgWidth": {SEG_W}, "objects": []}}')
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
# val night frame -> its day partner (the day-night evaluation)
DZ_VAL_PAIRS = [("GOPR0356/GOPR0356_frame_000321", "GOPR0355/GOPR0355_frame_000410"),
                ("GOPR0356/GOPR0356_frame_000324", "GOPR0355/GOPR0355_frame_000410"),
                ("GOPR0356/GOPR0356_frame_000327", "GOPR0355/GOPR0355_frame_000415")]


def make_darkzurich_tree(root: PathLike, seed: int = 100) -> Path:
    """The unpacked train/val/test releases: ``rgb_anon/``, ``gt/val/night/``, ``corresp/{train,val}/night/`` (with
    the val night frames' day partners under ``rgb_anon/val/day/``).

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
            _write_labels(root / "gt" / "val" / "night" / seq / f"{f}_gt", label_pattern(SAMPLE_LABEL_IDS,
                                                                                       seed=seed + k))
            k += 1
    for seq, frames in DZ_TEST.items():
        for f in frames:
            write_rgb(root / "rgb_anon" / "test" / "night" / seq / f"{f}_rgb_anon.png", seed=seed + k)
            k += 1
    rows = "".join(f"train/night/{n},train/day/{d}\n" for n, d in DZ_PAIRS)
    for pairs in (root / "corresp" / "train" / "night" / "GOPR0351.csv", root / "lists" / "zurich_dn_pair_train.csv"):
        pairs.parent.mkdir(parents=True, exist_ok=True)
        pairs.write_text(rows)
    for day in sorted({d for _, d in DZ_VAL_PAIRS}):
        write_rgb(root / "rgb_anon" / "val" / "day" / f"{day}_rgb_anon.png", seed=seed + k)
        k += 1
    pairs = root / "corresp" / "val" / "night" / "GOPR0356.csv"
    pairs.parent.mkdir(parents=True, exist_ok=True)
    pairs.write_text("".join(f"val/night/{n},val/day/{d}\n" for n, d in DZ_VAL_PAIRS))
    return root


def _write_labels(stem: Path, label_ids: np.ndarray) -> None:
    """Dark Zurich / ACDC ground truth: ``<stem>_labelIds``, ``_labelTrainIds``, ``_labelColor``, ``_invIds``."""
    write_label(f"{stem}_labelIds.png", label_ids)
    write_label(f"{stem}_labelTrainIds.png", LABEL_TO_TRAIN[label_ids])
    _colour(Path(f"{stem}_labelColor.png"), label_ids)
    write_label(f"{stem}_invIds.png", np.zeros_like(label_ids))


# -------------------------------------------------------------------------------------- Nighttime Driving
ND_STEMS = ["0_frame_0046", "0_frame_0117", "1_frame_0020"]


def make_nighttime_driving_tree(root: PathLike, seed: int = 200) -> Path:
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


def make_acdc_tree(root: PathLike, conditions: Iterable[str] = ("fog", "night", "rain", "snow"),
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
                    _write_labels(root / "gt" / cond / split / seq / f"{stem}_gt",
                                  label_pattern(SAMPLE_LABEL_IDS, seed=seed + k))
                k += 1
    return root


# ------------------------------------------------------------------------------------------------- ARID
ARID_LISTS = {"train": "list_cvt/ARID_split1_train.txt", "test": "list_cvt/ARID_split1_test.txt"}
"""The list files of :func:`make_arid_tree`, relative to its root (the videos are under ``clips/``)."""


def write_test_video(path: PathLike, frames: int = 12, size_hw: Tuple[int, int] = (24, 32), seed: int = 0,
                     brightness: float = 1.0) -> Path:
    """A tiny MPEG-4 AVI written with PyAV: a smooth-plus-noise background with a bright square moving across
    it, scaled by ``brightness`` (below 1: a dark video, as ARID's)."""
    from simmm.data.video import write_video

    rng = np.random.default_rng(seed)
    h, w = size_hw
    background = _smooth_noise(rng, h, w, 200, 50, 10).astype(np.float64)
    video = np.empty((frames, h, w, 3), dtype=np.uint8)
    for t in range(frames):
        frame = background.copy()
        x = (t * max(1, w // frames) + int(rng.integers(0, 3))) % max(1, w - 6)
        frame[h // 3:h // 3 + 6, x:x + 6] = 255.0
        video[t] = np.clip(frame * brightness, 0, 255).astype(np.uint8)
    return write_video(path, video)


def make_arid_tree(root: PathLike, classes: Optional[Sequence[str]] = None, per_class: Tuple[int, int] = (2, 1),
                   frames: int = 12, seed: int = 400) -> Path:
    """ARID's form: videos ``clips/<Class>/<Class>_<actor>_<n>.avi`` and the lists :data:`ARID_LISTS`
    (``id<TAB>label<TAB><Class>/<file>.avi``, paths relative to ``clips/``); ``per_class`` = (train, test) videos
    per class. Test videos are darker (brightness 0.3) than training ones."""
    from simmm.data.action import ARID_CLASSES

    classes = ARID_CLASSES if classes is None else classes
    root = Path(root)
    k = 0
    for split, count in zip(("train", "test"), per_class):
        rows = []
        for label, cls in enumerate(classes):
            for j in range(count):
                rel = f"{cls}/{cls}_{1 if split == 'train' else 2}_{j + 1}.avi"
                write_test_video(root / "clips" / rel, frames=frames, seed=seed + k,
                                 brightness=1.0 if split == "train" else 0.3)
                rows.append(f"{len(rows)}\t{label}\t{rel}\n")
                k += 1
        listed = root / ARID_LISTS[split]
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text("".join(rows))
    return root


# ---------------------------------------------------------------------- retrieval-SfM-120k and Tokyo 24/7
def _place_image(place: int, shot: int, size: Tuple[int, int], darken: float = 1.0) -> np.ndarray:
    """An ``(H, W, 3)`` image of a "place": its own smooth pattern (drawn from ``place``), a small shift and noise
    per ``shot``, scaled by ``darken`` (night shots)."""
    w, h = size
    rng = np.random.default_rng(10_000 + place)
    coarse = rng.integers(0, 256, size=(4, 4, 3)).astype(np.float64)
    big = np.kron(coarse, np.ones((-(-h // 4) + 2, -(-w // 4) + 2, 1)))
    dy, dx = shot % 3, (shot * 2) % 3
    noise = np.random.default_rng(20_000 + 97 * place + shot).normal(0, 12, size=(h, w, 3))
    return np.clip(big[dy:dy + h, dx:dx + w] * darken + noise, 0, 255).astype(np.uint8)


def make_retrieval_sfm_tree(root: PathLike, name: str = "retrieval-SfM-120k", places: int = 8, shots: int = 3,
                            size: Tuple[int, int] = (40, 32)) -> Path:
    """``root/<name>.pkl`` and ``root/ims/<cid[-2:]>/<cid[-4:-2]>/<cid[-6:-4]>/<cid>`` (JPEG files without a suffix,
    as released): ``places`` clusters of ``shots`` images; every ordered pair of shots of a place but the last is a
    (query, positive) pair of ``train``; the last place's pairs are ``val``."""
    import pickle

    from simmm.data.retrieval_db import cid_path, sfm_cid

    root = Path(root)
    cids, clusters = [], []
    for place in range(places):
        for shot in range(shots):
            cid = sfm_cid(len(cids))
            _save(_place_image(place, shot, size), cid_path(root / "ims", cid), "RGB", fmt="JPEG")
            cids.append(cid)
            clusters.append(place)
    splits = {}
    for split, chosen in (("train", range(places - 1)), ("val", [places - 1])):
        q, p = [], []
        for place in chosen:
            for a in range(shots):
                for b in range(shots):
                    if a != b:
                        q.append(place * shots + a)
                        p.append(place * shots + b)
        splits[split] = {"cids": cids, "cluster": clusters, "qidxs": q, "pidxs": p}
    with (root / f"{name}.pkl").open("wb") as handle:
        pickle.dump(splits, handle)
    return root


def make_tokyo247_tree(root: PathLike, name: str = "247tokyo1k", places: int = 4, shots: int = 3,
                       size: Tuple[int, int] = (40, 32)) -> Path:
    """``root/gnd_<name>.pkl`` and ``root/jpg/<name>.jpg``: ``places`` × ``shots`` day database images and one
    darker query per place; a query's ``ok`` are its place's first ``shots − 1`` shots, its last shot is ``junk``.
    Shot 1 of each place is portrait (``size`` transposed): test images differ in size, as real ones do."""
    import pickle

    root = Path(root)
    imlist, qimlist, gnd = [], [], []
    for place in range(places):
        for shot in range(shots):
            imlist.append(f"{place:05d}_{shot}")
            _save(_place_image(place, shot, size[::-1] if shot == 1 else size), root / "jpg" / f"{imlist[-1]}.jpg",
                  "RGB")
        qimlist.append(f"q{place:05d}")
        _save(_place_image(place, shots, size, darken=0.4), root / "jpg" / f"{qimlist[-1]}.jpg", "RGB")
        first = place * shots
        gnd.append({"ok": list(range(first, first + shots - 1)), "junk": [first + shots - 1], "bbx": None})
    with (root / f"gnd_{name}.pkl").open("wb") as handle:
        pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, handle)
    return root


# ------------------------------------------------------------------------------------- synthetic:<name> roots
TREES: Dict[str, Callable[[Path], Path]] = {
    "codan": make_codan_tree,
    "cityscapes": make_cityscapes_tree,
    "darkzurich": make_darkzurich_tree,
    "nighttime_driving": make_nighttime_driving_tree,
    "acdc": make_acdc_tree,
    "arid": make_arid_tree,
    "retrieval_sfm": make_retrieval_sfm_tree,
    "tokyo247": make_tokyo247_tree,
    # real photographs (Debian's opencv-doc), not generated pictures: see simmm.data.opencv_places
    "opencv_places_sfm": lambda root: _opencv_places("make_opencv_places_sfm", root),
    "opencv_places_test": lambda root: _opencv_places("make_opencv_places_test", root),
}


def _opencv_places(maker: str, root: Path) -> Path:
    from simmm.data import opencv_places

    return getattr(opencv_places, maker)(root)


def synthetic_tree(name: str, base: PathLike = SYNTHETIC_DIR) -> Path:
    """``base/<name>``, the tiny tree of that name, generated there on first use (written to a temporary
    folder and renamed, so a half-written tree is never used and parallel processes do not collide). A tree
    written by another version of the generators (its stamp is not :data:`TREE_VERSION`) is made anew."""
    if name not in TREES:
        raise DataError(f"dataset root {SYNTHETIC}{name}: no synthetic tree {name!r}; available: "
                        f"{', '.join(SYNTHETIC + n for n in TREES)}")
    target = Path(base) / name
    stamp = target / TREE_STAMP
    if target.is_dir():
        if stamp.is_file() and stamp.read_text() == TREE_VERSION:
            return target
        stale = target.with_name(f".{name}.stale-{os.getpid()}")
        try:
            target.rename(stale)
        except OSError:  # another process moved it first
            pass
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.with_name(f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    TREES[name](tmp)
    (tmp / TREE_STAMP).write_text(TREE_VERSION)
    try:
        tmp.rename(target)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def dataset_root(root: PathLike) -> Path:
    """A recipe's dataset ``root`` as a folder: ``~`` expanded; ``synthetic:<name>`` is the tiny generated tree
    of that name (:func:`synthetic_tree`)."""
    text = os.fspath(root)
    if text.startswith(SYNTHETIC):
        return synthetic_tree(text[len(SYNTHETIC):])
    return Path(text).expanduser()
