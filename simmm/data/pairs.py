"""The paired datasets by name, and the check of a pair stream (``simmm data check`` for DANIA's pairs).

Three sources of unlabelled day–night pairs, each a :class:`~simmm.data.pair_dataset.PairDataset`:

- ``darkzurich``: Dark Zurich's GPS-matched night → day frames of a ``split`` (default ``train``), from the
  release's ``corresp/<split>/night/`` files or a ``night,day`` list (``pairs_file``, e.g. DANNet's
  ``zurich_dn_pair_train.csv``);
- ``acdc``: ACDC's ``condition`` images of a ``split`` with their normal-condition reference images;
- ``csv``: users' own data, a CSV of ``night,day`` image paths relative to ``root`` (``pairs_file``).

Imports run one way: pair_transform → pair_dataset → darkzurich, acdc → this module.
"""

from __future__ import annotations

from typing import Dict, Optional

from ..errors import DataError, SimmmError
from .acdc import ACDCPairs, acdc_layout, acdc_pairs
from .check import DataReport
from .darkzurich import DarkZurichPairs, darkzurich_layout, darkzurich_pairs
from .pair_dataset import CSVPairs, PairDataset, PairList, read_csv_pairs, report_pairs
from .synthetic import dataset_root
from .tree import PathLike

__all__ = ["PAIR_SOURCES", "pair_dataset", "check_pairs"]

PAIR_SOURCES: Dict[str, type] = {"darkzurich": DarkZurichPairs, "acdc": ACDCPairs, "csv": CSVPairs}
"""The dataset class of each pair source."""


def _check_args(source: str, pairs_file: Optional[PathLike], condition: Optional[str],
                split: Optional[str]) -> None:
    if source not in PAIR_SOURCES:
        raise SimmmError(f"unknown pair source {source!r}; known: {', '.join(PAIR_SOURCES)}")
    if source == "csv" and pairs_file is None:
        raise SimmmError("pair source 'csv' needs pairs_file: a CSV of `night,day` image paths relative to root")
    if source == "acdc" and pairs_file is not None:
        raise SimmmError(f"pair source 'acdc' takes no pairs_file (got {pairs_file!r}): each image is paired "
                         f"with its reference image")
    if source != "acdc" and condition is not None:
        raise SimmmError(f"pair source {source!r} takes no condition (got {condition!r}); it chooses ACDC's folder")
    if source == "csv" and split is not None:
        raise SimmmError(f"pair source 'csv' takes no split (got {split!r}); the CSV names the images")


def pair_dataset(source: str, root: PathLike, *, pairs_file: Optional[PathLike] = None,
                 condition: Optional[str] = None, split: Optional[str] = None, size=None) -> PairDataset:
    """The paired dataset of ``source`` (``"darkzurich"``, ``"acdc"`` or ``"csv"``).

    Args:
        root: the dataset root (``synthetic:darkzurich`` and ``synthetic:acdc`` work too).
        pairs_file: Dark Zurich: a ``night,day`` list instead of ``corresp/<split>/night/``; csv: the CSV.
        condition: ACDC only (default ``night``); split: ACDC and Dark Zurich (default ``train``).
        size: ``None`` (native size of the night image) or ``(H, W)``.

    Raises:
        SimmmError: an unknown source, an argument the source does not take, csv without ``pairs_file``.
        DataError: the data (a missing root, pairs file, partner image; the message names them).
    """
    _check_args(source, pairs_file, condition, split)
    if source == "darkzurich":
        return DarkZurichPairs(root, pairs_file=pairs_file, size=size, split=split or "train")
    if source == "acdc":
        return ACDCPairs(root, condition=condition or "night", split=split or "train", size=size)
    return CSVPairs(root, pairs_file, size=size)


def check_pairs(source: str, root: PathLike, *, pairs_file: Optional[PathLike] = None,
                condition: Optional[str] = None, split: Optional[str] = None, verify: bool = True,
                max_listed: int = 10) -> DataReport:
    """Check a pair stream without raising for data: every missing partner, malformed line and (with
    ``verify``) unreadable pair image is a problem of the report, named. Arguments as :func:`pair_dataset`."""
    _check_args(source, pairs_file, condition, split)
    root_p = dataset_root(root)
    if source == "darkzurich":
        layout = darkzurich_layout(root_p, split or "train")
    elif source == "acdc":
        layout = acdc_layout(root_p, condition or "night", split or "train")
    else:
        layout = f"{root_p}/<the images named in {pairs_file}>"
    report = DataReport.for_root(f"{source} pairs", root_p, layout)
    if not report.ok:
        return report
    try:
        if source == "darkzurich":
            found = darkzurich_pairs(root_p, pairs_file, split or "train")
        elif source == "acdc":
            found = acdc_pairs(root_p, condition or "night", split or "train")
        else:
            found = read_csv_pairs(root_p, pairs_file)
    except DataError as e:  # no pairs file at all
        found = PairList(errors=[str(e)])
    report_pairs(report, found, verify=verify, max_listed=max_listed)
    return report
