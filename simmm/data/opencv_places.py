"""Real same-place photographs that Debian's ``opencv-doc`` ships, as tiny place-recognition trees (offline).

Nine places, each photographed twice from another viewpoint (graf, leuven — also under other light —, aero, aloe,
basketball, rubber whale, Suzanne, box, left/right), plus single photos as distractors. Two trees in the
place-recognition forms of :mod:`simmm.data.retrieval_db`:

* :func:`make_opencv_places_sfm` — retrieval-SfM-120k form: per place its two photos and a crop of each (four
  shots, one cluster), every ordered pair of shots a (query, positive) pair; the distractors are single-image
  clusters (negatives only).
* :func:`make_opencv_places_test` — Tokyo 24/7 retrieval form: the database holds each place's first photo and its
  crop, and the distractors; the queries are each place's second photo turned into a night photograph by the
  physical simulator (:mod:`simmm.night`, preset ``street``, seeded); ``ok`` is the place's database images.

Training and test share their places: a realistic smoke run (real photos, real viewpoint changes, simulated night
queries), not a benchmark. Images are stored at longer side 320. ``synthetic:opencv_places_sfm`` and
``synthetic:opencv_places_test`` are these trees (generated on first use).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Union

from PIL import Image

from simmm.errors import DataError

__all__ = ["DISTRACTORS", "OPENCV_DATA", "PLACES", "make_opencv_places_sfm", "make_opencv_places_test"]

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
INSTALL = "sudo apt-get update && sudo apt-get install -y opencv-doc"
PLACES = [("graf1.png", "graf3.png"), ("leuvenA.jpg", "leuvenB.jpg"), ("aero1.jpg", "aero3.jpg"),
          ("aloeL.jpg", "aloeR.jpg"), ("basketball1.png", "basketball2.png"), ("rubberwhale1.png", "rubberwhale2.png"),
          ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"), ("box.png", "box_in_scene.png"), ("left.jpg", "right.jpg")]
DISTRACTORS = ["building.jpg", "home.jpg", "fruits.jpg", "baboon.jpg", "messi5.jpg", "lena.jpg", "orange.jpg",
               "apple.jpg", "board.jpg", "stuff.jpg"]
MAX_SIDE = 320


def _photo(name: str, crop: str = "") -> Image.Image:
    path = OPENCV_DATA / name
    if not path.is_file():
        raise DataError(f"the opencv-doc photo {path} is missing; these trees need Debian's opencv-doc package: "
                        f"{INSTALL}")
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if crop == "left":
        image = image.crop((0, 0, int(w * 0.8), h))
    elif crop == "right":
        image = image.crop((w - int(w * 0.8), 0, w, h))
    scale = MAX_SIDE / max(image.size)
    return image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR)


def _distractors() -> list[str]:
    return [name for name in DISTRACTORS if (OPENCV_DATA / name).is_file()]


def make_opencv_places_sfm(root: Union[str, Path], name: str = "retrieval-SfM-120k") -> Path:
    """The training tree (module docstring) under ``root``."""
    from simmm.data.retrieval_db import cid_path, sfm_cid

    root = Path(root)
    cids, clusters, qidxs, pidxs = [], [], [], []

    def add(image: Image.Image, cluster: int) -> int:
        cid = sfm_cid(len(cids))
        path = cid_path(root / "ims", cid)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="JPEG", quality=92)
        cids.append(cid)
        clusters.append(cluster)
        return len(cids) - 1

    for place, (a, b) in enumerate(PLACES):
        shots = [add(_photo(a), place), add(_photo(b), place), add(_photo(a, "left"), place),
                 add(_photo(b, "right"), place)]
        for q in shots:
            for p in shots:
                if q != p:
                    qidxs.append(q)
                    pidxs.append(p)
    for i, other in enumerate(_distractors()):
        add(_photo(other), len(PLACES) + i)
    split = {"cids": cids, "cluster": clusters, "qidxs": qidxs, "pidxs": pidxs}
    with (root / f"{name}.pkl").open("wb") as handle:
        pickle.dump({"train": split, "val": split}, handle)
    return root


def make_opencv_places_test(root: Union[str, Path], name: str = "247tokyo1k", preset: str = "street",
                            seed: int = 0) -> Path:
    """The test tree (module docstring) under ``root``: night queries simulated with ``preset`` and ``seed``."""
    from simmm.data.images import image_to_tensor, tensor_to_image
    from simmm.night import simulate_night

    root = Path(root)
    (root / "jpg").mkdir(parents=True, exist_ok=True)
    imlist, qimlist, gnd = [], [], []
    for place, (a, b) in enumerate(PLACES):
        first = len(imlist)
        for image, suffix in ((_photo(a), ""), (_photo(a, "left"), "_crop")):
            imlist.append(f"{Path(a).stem}{suffix}")
            image.save(root / "jpg" / f"{imlist[-1]}.jpg", quality=92)
        qimlist.append(f"{Path(b).stem}_night")
        night = simulate_night(image_to_tensor(_photo(b))[None], preset, seed=seed + place)[0]
        tensor_to_image(night.clamp(0, 1)).save(root / "jpg" / f"{qimlist[-1]}.jpg", quality=92)
        gnd.append({"ok": [first, first + 1], "junk": [], "bbx": None})
    for other in _distractors():
        imlist.append(Path(other).stem)
        _photo(other).save(root / "jpg" / f"{imlist[-1]}.jpg", quality=92)
    with (root / f"gnd_{name}.pkl").open("wb") as handle:
        pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, handle)
    return root
