"""Day–night image pairs as a dataset: the base of the paired datasets, pair lists, users' own CSV of pairs.

- :class:`PairDataset`: a list of ``(night image, day image)`` files under a root, loaded at one size. Dark
  Zurich's GPS-matched pairs (:class:`~simmm.data.darkzurich.DarkZurichPairs`) and ACDC's condition/reference
  pairs (:class:`~simmm.data.acdc.ACDCPairs`) are built on it, and so is :class:`CSVPairs`, users' own data: a
  plain CSV of ``night,day`` paths relative to a root.
- :class:`PairList`: the pairs a source names, the files it was read from and every problem found (a missing
  partner, a malformed line); the datasets raise on the first problem, :func:`report_pairs` lists them all
  and names unreadable pair images (the work behind ``simmm data check`` for a pair stream).
- :class:`WithDayPartner`: a labelled night evaluation set with each image's day partner (DANIA's day–night
  evaluation).

Items::

    {"night": float32 (3, H, W) in [0, 1], "day": float32 (3, H, W), "index": int,
     "key": str,                      # "<night path>|<day path>", relative to the root: the pair's cache key
     "night_matrix": float64 (3, 3),  # night file pixel coordinates -> item pixel coordinates
     "day_matrix": float64 (3, 3),    # day file pixel coordinates -> item pixel coordinates
     "night_path": str, "day_path": str}

The matrices follow :mod:`simmm.data.pair_transform`'s convention (pixel centres at integer coordinates): they
are resizes (the identity at native size). With ``size=None`` both images come at the night image's native
size (a day image of another size is resized to it); with ``size=(H, W)`` both are resized to it (bilinear,
PIL). A homography cached between the two *files* is moved into a training sample's coordinates with
:func:`~simmm.data.pair_transform.conjugate_homography`, composing ``params.matrix @ item["night_matrix"]``
(and the same for the day).

Pair files (Dark Zurich's correspondences, a CSV): one pair a line, two names separated by a comma (or, in a
line without commas, by whitespace); further columns are ignored; a first line whose two fields are words
(letters, spaces, ``_``, ``-``: no dot, digit or slash, e.g. ``night,day``) is a header; ``#`` starts a
comment; blank lines are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from torch.utils.data import Dataset

from ..errors import DataError
from .check import DataReport, capped
from .images import image_size, image_to_tensor, read_image, verify_image
from .pair_transform import resize_matrix
from .segmentation_dataset import resize_image
from .tree import PathLike, normalize_size, require_root

__all__ = ["PairLine", "PairList", "PairDataset", "WithDayPartner", "CSVPairs", "read_pair_lines", "read_csv_pairs",
           "report_pairs", "pair_key"]

_HEADER_RE = re.compile(r"^[A-Za-z][A-Za-z _\-]*$")


@dataclass
class PairLine:
    """One line of a pairs file: ``source`` (the file), ``lineno`` (1-based), the two names as written."""

    source: Path
    lineno: int
    night: str
    day: str


def read_pair_lines(path: Path) -> Tuple[List[PairLine], List[str]]:
    """The pairs of one pairs file (module docstring: the format); returns ``(lines, errors)``, each error
    naming the file and the line. An unreadable file is one error."""
    out: List[PairLine] = []
    errors: List[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        return out, [f"cannot read pairs file {path}: {e}"]
    first = True
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(",") if "," in line else line.split()
        fields = [f.strip().strip("\"'") for f in parts if f.strip()]
        if first:
            first = False
            if len(fields) >= 2 and all(_HEADER_RE.match(f) for f in fields[:2]):
                continue  # a header such as "night,day"
        if len(fields) < 2:
            errors.append(f"pairs file {path}, line {lineno}: expected two names (night, day) separated by a "
                          f"comma, got {raw.strip()!r}")
            continue
        out.append(PairLine(path, lineno, fields[0], fields[1]))
    return out, errors


@dataclass
class PairList:
    """What a pair source holds.

    Attributes:
        pairs: ``[(night path, day path), ...]`` whose files both exist, in source order.
        sources: the files (or folders) the pairs were read from, for messages.
        errors: every problem, each naming its file (and line): a missing partner, a malformed line.
    """

    pairs: List[Tuple[Path, Path]] = field(default_factory=list)
    sources: List[Path] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    def require(self) -> List[Tuple[Path, Path]]:
        """The pairs, or :class:`DataError` with the first problem (and how many more there are)."""
        if self.errors:
            more = f" (and {len(self.errors) - 1} more problems)" if len(self.errors) > 1 else ""
            raise DataError(self.errors[0] + more)
        if not self.pairs:
            raise DataError(f"no pairs in {', '.join(str(s) for s in self.sources) or 'the pair list'}")
        return self.pairs


def pair_key(root: Path, night: Path, day: Path) -> str:
    """``"<night>|<day>"``, each path relative to ``root`` when below it (POSIX form), else absolute: stable
    for a tree wherever it is mounted; a cache file name can be made from it (e.g. a hash of it)."""

    def rel(p: Path) -> str:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            return p.as_posix()

    return f"{rel(night)}|{rel(day)}"


class PairDataset(Dataset):
    """Night/day image pairs loaded at one size (module docstring: the items).

    Args:
        pairs: ``[(night path, day path), ...]``.
        root: the dataset root (keys are relative to it).
        size: ``None`` (the night image's native size) or ``(H, W)``.

    Attributes:
        pairs, root, size; ``keys``: the pair keys (:func:`pair_key`), ``keys[i]`` for item ``i``.
    """

    def __init__(self, pairs: Sequence[Tuple[Path, Path]], root: Path, size=None):
        self.pairs: List[Tuple[Path, Path]] = [(Path(n), Path(d)) for n, d in pairs]
        self.root = Path(root)
        self.size = normalize_size(size)
        self.keys: List[str] = [pair_key(self.root, n, d) for n, d in self.pairs]

    @property
    def num_day_images(self) -> int:
        return len({d for _, d in self.pairs})

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Dict[str, object]:
        night_path = self.pairs[index][0]
        night = read_image(night_path)
        native = (night.height, night.width)
        return {"night": image_to_tensor(resize_image(night, self.size or native)), "index": index,
                "night_path": str(night_path), **self.partner(index, native)}

    def partner(self, index: int, night_size: Tuple[int, int]) -> Dict[str, object]:
        """Pair ``index`` without its night image, whose native ``(H, W)`` is ``night_size``: ``"day"`` (at the
        item size), ``"key"``, ``"night_matrix"``, ``"day_matrix"``, ``"day_path"``."""
        day_path = self.pairs[index][1]
        day = read_image(day_path)
        size = self.size or night_size
        return {"day": image_to_tensor(resize_image(day, size)), "key": self.keys[index],
                "night_matrix": resize_matrix(night_size, size), "day_matrix": resize_matrix((day.height, day.width), size),
                "day_path": str(day_path)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, {len(self)} pairs, "
                f"{self.num_day_images} day images, size={self.size})")


class WithDayPartner(Dataset):
    """A labelled night set whose every image has a day partner: the day–night evaluation's data.

    Items: ``{"image", "target"}`` of ``dataset`` plus the partner's ``"day"`` (at the item's size), the pair's
    ``"key"`` and its ``"night_matrix"``/``"day_matrix"`` (file → item pixel coordinates), as in
    :class:`PairDataset`.

    Args:
        dataset: a labelled segmentation dataset (items with ``"image"``, ``"target"``, ``"path"``; its
            ``samples[i].image`` is the night file) at size ``dataset.size``.
        pairs: the pairs naming each of those night files with its day file, loaded at the same size.

    Raises:
        DataError: a night image of ``dataset`` that no pair names (listed), or sizes that differ.
    """

    def __init__(self, dataset, pairs: PairDataset, max_listed: int = 10):
        if pairs.size != dataset.size:
            raise DataError(f"the day partners load at {pairs.size}, the night set at {dataset.size}; expected one size")
        by_night = {Path(n).resolve(): i for i, (n, _) in enumerate(pairs.pairs)}
        self.dataset, self.pairs = dataset, pairs
        self.partner = [by_night.get(Path(s.image).resolve()) for s in dataset.samples]
        missing = [str(s.image) for s, j in zip(dataset.samples, self.partner) if j is None]
        if missing:
            raise DataError(f"{len(missing)} of {len(dataset)} night images have no day partner in {pairs!r}:\n  "
                            + "\n  ".join(capped(missing, max_listed, "night images without a partner")))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, object]:
        item = self.dataset[index]  # the night image is decoded once, here
        if self.dataset.size is None:
            native = tuple(item["image"].shape[-2:])
        else:
            (w, h), _ = image_size(self.dataset.samples[index].image, verify=False)  # the header only
            native = (h, w)
        pair = self.pairs.partner(self.partner[index], native)
        return {"image": item["image"], "target": item["target"],
                **{k: pair[k] for k in ("day", "key", "night_matrix", "day_matrix")}}


# ------------------------------------------------------------------------------------------ users' own data


def _resolve(root: Path, name: str) -> Path:
    p = Path(name.replace("\\", "/")).expanduser()
    return p if p.is_absolute() else root / p


def read_csv_pairs(root: PathLike, pairs_file: PathLike) -> PairList:
    """The pairs of a ``night,day`` CSV whose paths are relative to ``root`` (or absolute); never raises for
    data: a missing CSV, a malformed line, a row naming a missing image are errors of the list."""
    root_p = Path(root)
    f = Path(pairs_file).expanduser()
    if not f.is_absolute() and not f.exists() and (root_p / f).exists():
        f = root_p / f
    out = PairList(sources=[f])
    if not f.is_file():
        out.errors.append(f"pairs file {f} does not exist; expected a CSV of `night,day` image paths "
                          f"relative to {root_p}")
        return out
    lines, out.errors = read_pair_lines(f)
    for pl in lines:
        night, day = _resolve(root_p, pl.night), _resolve(root_p, pl.day)
        missing = [(what, p) for what, p in (("night", night), ("day", day)) if not p.is_file()]
        for what, p in missing:
            out.errors.append(f"pairs file {f}, line {pl.lineno}: {what} image {p} does not exist")
        if not missing:
            out.pairs.append((night, day))
    return out


class CSVPairs(PairDataset):
    """Users' own day–night pairs: a CSV of ``night,day`` image paths relative to ``root``.

    Args:
        root: the folder the paths are relative to.
        pairs_file: the CSV (absolute, relative to the working directory, or relative to ``root``).
        size: ``None`` or ``(H, W)`` (:class:`PairDataset`).

    Raises:
        DataError: a missing root or CSV, a malformed line, a row naming a missing image (the message names
            the CSV, the line and the path).
    """

    def __init__(self, root: PathLike, pairs_file: PathLike, size=None):
        root_p = require_root(root, f"{root}/<images named in {pairs_file}>")
        self.pairs_file = pairs_file
        super().__init__(read_csv_pairs(root_p, pairs_file).require(), root_p, size)


# ------------------------------------------------------------------------------------------------ check


def report_pairs(report: DataReport, found: PairList, *, verify: bool = True, skip_under: Sequence[Path] = (),
                 max_listed: int = 10) -> None:
    """Add a pair list's findings to ``report``: a count line, every problem of the list (missing partners,
    malformed lines) and, with ``verify``, every pair image that cannot be decoded (each file once, named with
    the reason). Images below a folder of ``skip_under`` are not decoded again (the tree check already read
    them)."""
    unreadable: List[str] = []
    if verify:
        seen = set()
        for night, day in found.pairs:
            for what, p in (("night", night), ("day", day)):
                if p in seen or any(_below(p, d) for d in skip_under):
                    continue
                seen.add(p)
                reason = verify_image(p)
                if reason is not None:
                    unreadable.append(f"unreadable {what} image {p}: {reason}")
    problems = found.errors + unreadable
    where = ", ".join(str(f) for f in found.sources[:3])
    if len(found.sources) > 3:
        where += f", ... ({len(found.sources)} files)"
    report.entry("OK" if not problems else "ERROR",
                 f"day-night pairs: {len(found.pairs)} pairs, {len({d for _, d in found.pairs})} distinct day "
                 f"frames ({where})", summary=True)
    for msg in capped(problems, max_listed, "problems in the pairs"):
        report.entry("ERROR", msg)
    if not found.pairs and not problems:
        report.entry("ERROR", f"no pairs in {where}")


def _below(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False
