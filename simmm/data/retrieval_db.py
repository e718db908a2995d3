"""The two image-retrieval data forms of place recognition: training tuples of retrieval-SfM-120k and test sets in
the retrieval-benchmark form (Tokyo 24/7).

Training (retrieval-SfM-120k, as Radenović et al. release it)::

    ROOT/retrieval-SfM-120k.pkl           {"train": {...}, "val": {...}}, each split a dict with
                                            cids     list of image ids (str); image i is the file
                                                     ims/<cid[-2:]>/<cid[-4:-2]>/<cid[-6:-4]>/<cid>
                                            cluster  list, the 3D-model (place) of each image
                                            qidxs    list of query image indices
                                            pidxs    list, the matching positive of each query
    ROOT/ims/...

Test (Tokyo 24/7 in the retrieval form, ``247tokyo1k``)::

    ROOT/gnd_247tokyo1k.pkl               {"imlist": [...], "qimlist": [...], "gnd": [{"ok": [...], "junk": [...],
                                            "bbx": ...}, ...]}, one gnd entry per query; ok/junk index imlist
    ROOT/jpg/<name>.jpg                   database images (imlist) and query images (qimlist)

Every reader checks the file before any work starts and names the file, the key and what was expected.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
import torch
from PIL import Image

from simmm.data.check import DataReport, capped, listing
from simmm.data.images import image_to_tensor, read_image
from simmm.errors import DataError

__all__ = ["RetrievalTestSet", "SfMDatabase", "TestGroundTruth", "cid_path", "check_sfm", "check_test_set",
           "read_ground_truth", "read_sfm", "resize_max", "sfm_cid", "ImageList"]

SFM_KEYS = ("cids", "cluster", "qidxs", "pidxs")
GND_KEYS = ("imlist", "qimlist", "gnd")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def sfm_cid(i: int) -> str:
    """A made-up training image id in the release's form (32 hexadecimal characters), for generated trees."""
    import hashlib

    return hashlib.md5(f"image-{i}".encode()).hexdigest()


def cid_path(ims: Path, cid: str) -> Path:
    """The file of training image ``cid`` under ``ims/`` (three folder levels from its last six characters)."""
    return Path(ims) / cid[-2:] / cid[-4:-2] / cid[-6:-4] / cid


def _load_pickle(path: Path, what: str) -> object:
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)
    except Exception as exc:  # pickle raises many types for a damaged file
        raise DataError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}; expected a Python pickle") from None


def _check_indices(path: Path, key: str, values, size: int, against: str) -> None:
    bad = [int(v) for v in values if not 0 <= int(v) < size]
    if bad:
        raise DataError(f"{path}: {key} holds {len(bad)} index(es) outside 0..{size - 1} (the {against}), e.g. "
                        f"{listing([str(b) for b in bad], 5)}")


# ------------------------------------------------------------------------------------------------- training


@dataclass
class SfMDatabase:
    """One split of retrieval-SfM-120k: image files, their clusters, and the (query, positive) pairs."""

    images: list[Path]
    clusters: list[int]
    qidxs: list[int]
    pidxs: list[int]


def read_sfm(root: str | Path, name: str = "retrieval-SfM-120k", split: str = "train") -> SfMDatabase:
    """Read and check ``ROOT/<name>.pkl`` (module docstring); image files are not opened here."""
    path = Path(root) / f"{name}.pkl"
    db = _load_pickle(path, "training database")
    if not isinstance(db, dict) or split not in db:
        found = ", ".join(map(str, db)) if isinstance(db, dict) else type(db).__name__
        raise DataError(f"{path}: no split {split!r} (found: {found}); expected a dict with 'train' and 'val'")
    part = db[split]
    missing = [k for k in SFM_KEYS if not isinstance(part, dict) or k not in part]
    if missing:
        raise DataError(f"{path}: split {split!r} lacks key(s) {', '.join(missing)}; expected "
                        f"{', '.join(SFM_KEYS)}")
    cids, clusters, qidxs, pidxs = (list(part[k]) for k in SFM_KEYS)
    if len(clusters) != len(cids):
        raise DataError(f"{path}: {split}.cluster has {len(clusters)} entries but cids has {len(cids)}; expected "
                        "one cluster per image")
    if len(qidxs) != len(pidxs):
        raise DataError(f"{path}: {split}.qidxs has {len(qidxs)} entries but pidxs has {len(pidxs)}; expected one "
                        "positive per query")
    if not qidxs:
        raise DataError(f"{path}: {split}.qidxs is empty; expected at least one (query, positive) pair")
    _check_indices(path, f"{split}.qidxs", qidxs, len(cids), "images of cids")
    _check_indices(path, f"{split}.pidxs", pidxs, len(cids), "images of cids")
    ims = Path(root) / "ims"
    return SfMDatabase([cid_path(ims, str(c)) for c in cids], [int(c) for c in clusters],
                       [int(q) for q in qidxs], [int(p) for p in pidxs])


def check_sfm(root: str | Path, name: str, split: str) -> DataReport:
    """``simmm data check`` of the training database: the pkl, its keys and indices, and every image file."""
    root = Path(root)
    report = DataReport.for_root(name, root, f"{name}.pkl and ims/<cid[-2:]>/<cid[-4:-2]>/<cid[-6:-4]>/<cid>")
    if not report.ok:
        return report
    try:
        db = read_sfm(root, name, split)
    except DataError as exc:
        report.entry("ERROR", str(exc))
        return report
    report.entry("OK", f"{root / (name + '.pkl')}: {len(db.images)} images, {len(db.qidxs)} query-positive pairs, "
                 f"{len(set(db.clusters))} clusters ({split})")
    _report_files(report, db.images, "training image")
    return report


def _report_files(report: DataReport, files: list[Path], what: str) -> None:
    missing = [p for p in files if not p.is_file()]
    for line in capped([f"{what} {p} does not exist" for p in missing], 10, f"missing {what}s"):
        report.entry("MISSING", line)
    if not missing:
        report.entry("OK", f"all {len(files)} {what}s present")


# ------------------------------------------------------------------------------------------------- test


@dataclass
class TestGroundTruth:
    """A retrieval test set: database files, query files, and per query the ``ok`` and ``junk`` database
    indices."""

    database: list[Path]
    queries: list[Path]
    gnd: list[dict]


def _image_file(folder: Path, name: str) -> Path:
    name = str(name)
    return folder / (name if name.lower().endswith(IMAGE_SUFFIXES) else name + ".jpg")


def read_ground_truth(root: str | Path, name: str = "247tokyo1k") -> TestGroundTruth:
    """Read and check ``ROOT/gnd_<name>.pkl`` (module docstring); image files are not opened here."""
    path = Path(root) / f"gnd_{name}.pkl"
    cfg = _load_pickle(path, "ground-truth file")
    missing = [k for k in GND_KEYS if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise DataError(f"{path}: lacks key(s) {', '.join(missing)}; expected {', '.join(GND_KEYS)}")
    imlist, qimlist, gnd = list(cfg["imlist"]), list(cfg["qimlist"]), list(cfg["gnd"])
    if len(gnd) != len(qimlist):
        raise DataError(f"{path}: gnd has {len(gnd)} entries but qimlist has {len(qimlist)}; expected one per query")
    out = []
    for i, g in enumerate(gnd):
        if not isinstance(g, dict) or "ok" not in g:
            raise DataError(f"{path}: gnd[{i}] lacks key 'ok'; expected a dict with 'ok' (and 'junk') index lists")
        ok, junk = [int(v) for v in g["ok"]], [int(v) for v in (g.get("junk") if g.get("junk") is not None else [])]
        _check_indices(path, f"gnd[{i}].ok", ok, len(imlist), "images of imlist")
        _check_indices(path, f"gnd[{i}].junk", junk, len(imlist), "images of imlist")
        out.append({"ok": ok, "junk": junk})
    jpg = Path(root) / "jpg"
    return TestGroundTruth([_image_file(jpg, n) for n in imlist], [_image_file(jpg, n) for n in qimlist], out)


def check_test_set(root: str | Path, name: str) -> DataReport:
    """``simmm data check`` of a retrieval test set: the ground-truth pkl, its keys and indices, and the images."""
    root = Path(root)
    report = DataReport.for_root(name, root, f"gnd_{name}.pkl and jpg/<name>.jpg")
    if not report.ok:
        return report
    try:
        gt = read_ground_truth(root, name)
    except DataError as exc:
        report.entry("ERROR", str(exc))
        return report
    empty = sum(1 for g in gt.gnd if not g["ok"])
    report.entry("OK", f"{root / f'gnd_{name}.pkl'}: {len(gt.database)} database images, {len(gt.queries)} queries")
    if empty:
        report.entry("WARN", f"{empty} queries have no positive ('ok' empty); they are left out of the scores")
    _report_files(report, gt.database + gt.queries, "test image")
    return report


# ------------------------------------------------------------------------------------------------- images


def resize_max(image: Image.Image, max_size: int) -> Image.Image:
    """Scale so that the longer side is ``max_size`` (aspect kept; 0: unchanged)."""
    if not max_size:
        return image
    w, h = image.size
    scale = max_size / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image if size == (w, h) else image.resize(size, resample=Image.BILINEAR)


class ImageList(torch.utils.data.Dataset):
    """Images from a list of files as ``{"image", "index"}``. ``max_size``: longer side (aspect kept); ``square``:
    resized to ``square``×``square`` instead (training batches need one size)."""

    def __init__(self, files: list[Path], max_size: int = 0, square: int = 0) -> None:
        self.files, self.max_size, self.square = list(files), max_size, square

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        image = read_image(self.files[index])
        if self.square:
            image = image.resize((self.square, self.square), resample=Image.BILINEAR)
        else:
            image = resize_max(image, self.max_size)
        return image_to_tensor(image)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.load(index), "index": torch.tensor(index)}


class RetrievalTestSet(ImageList):
    """A retrieval test set as one image list, the database first, then the queries; ``gt`` holds the ground
    truth."""

    def __init__(self, gt: TestGroundTruth, max_size: int = 1024) -> None:
        super().__init__(gt.database + gt.queries, max_size=max_size)
        self.gt = gt
