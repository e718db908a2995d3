"""Evaluation metrics: classification accuracy, segmentation confusion matrix / mIoU, retrieval mAP.

Conventions (METHOD.md §4.5):

* Every *reported* number is a percentage (``65.87`` means 65.87 %), as in the papers' tables. The one
  exception is :func:`average_precision`, the per-query building block, which returns a fraction in [0, 1].
* Segmentation follows the official Cityscapes script (``evalPixelLevelSemanticLabeling.py``):
  the confusion matrix has ground truth in rows and prediction in columns; pixels whose ground truth is
  ``ignore_index`` (255) are dropped; ``IoU_c = TP / (TP + FP + FN)``; a class with ``TP + FP + FN == 0``
  (absent from both ground truth and prediction) has IoU NaN and is left out of the mean; a class that is only
  predicted (never in the ground truth) has IoU 0 and *does* count. mIoU is the mean over the non-NaN classes.
* Accumulators (:class:`Accuracy`, :class:`ConfusionMatrix`) keep their counts as integer tensors on the
  device of the first update (no host sync per batch); ``all_reduce()`` sums them over the processes of an
  initialised ``torch.distributed`` group and is safe to call more than once.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

from .data.labels import TRAIN_CLASSES
from .dist import sum_over_ranks

__all__ = [
    "CITYSCAPES_CLASSES",
    "top1_accuracy", "topk_accuracy", "Accuracy",
    "confusion_matrix", "iou_from_confusion", "ConfusionMatrix", "format_iou_table", "format_iou_text",
    "average_precision", "mean_average_precision",
]

CITYSCAPES_CLASSES = TRAIN_CLASSES  # the 19 evaluation classes, in train-id order

_NAN = float("nan")


# --------------------------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------------------------
def _correct_count(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Number of samples whose target is among the top-``k`` logits (0-dim int64 tensor, no host sync).

    ``logits`` is (N, C); predicted ids (N,) are accepted too (then only ``k == 1`` makes sense).
    """
    targets = targets.reshape(-1).long().to(logits.device)
    if logits.dim() == 1 or (logits.dim() == targets.dim() and not logits.is_floating_point()):
        if k != 1:
            raise ValueError("top-k accuracy with k > 1 needs logits (N, C), not predicted ids")
        pred = logits.reshape(-1).long()
        if pred.shape != targets.shape:
            raise ValueError(f"predictions {tuple(pred.shape)} and targets {tuple(targets.shape)} differ in size")
        return (pred == targets).sum()
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"expected logits (N, C) and targets (N,); got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == targets[:, None]).any(dim=1).sum()


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Top-``k`` accuracy in percent of ``logits`` (N, C) against integer ``targets`` (N,); NaN when N == 0."""
    n = targets.numel()
    if n == 0:
        return _NAN
    return 100.0 * _correct_count(logits, targets, k).item() / n


def top1_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in percent of ``logits`` (N, C) (or predicted ids (N,)) against ``targets`` (N,)."""
    return topk_accuracy(logits, targets, 1)


class Accuracy:
    """Accumulated top-``k`` accuracy (percent): ``update(logits, targets)`` per batch, then ``compute()``."""

    def __init__(self, topk: int = 1):
        self.topk = int(topk)
        self.reset()

    def reset(self) -> None:
        self._counts: Optional[torch.Tensor] = None  # int64 [correct, total] on the device of the first update
        self._synced: Optional[torch.Tensor] = None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        correct = _correct_count(logits.detach(), targets, self.topk)
        total = torch.tensor(targets.numel(), dtype=torch.long, device=correct.device)
        batch = torch.stack([correct.long(), total])
        self._counts = batch if self._counts is None else self._counts + batch.to(self._counts.device)
        self._synced = None

    def all_reduce(self) -> "Accuracy":
        """Sum the counts over all processes (no-op without ``torch.distributed``); call before ``compute()``."""
        local = self._counts if self._counts is not None else torch.zeros(2, dtype=torch.long)
        self._synced = sum_over_ranks(local)
        return self

    @property
    def counts(self) -> tuple[int, int]:
        """``(correct, total)``: the reduced counts after ``all_reduce()``, else this process's."""
        c = self._synced if self._synced is not None else self._counts
        if c is None:
            return 0, 0
        correct, total = c.tolist()
        return int(correct), int(total)

    def compute(self) -> float:
        """Accuracy in percent (NaN before any sample)."""
        correct, total = self.counts
        return 100.0 * correct / total if total else _NAN


# --------------------------------------------------------------------------------------------------------------
# segmentation
# --------------------------------------------------------------------------------------------------------------
def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """The (C, C) int64 confusion matrix of class ids ``pred`` against ``target`` (any equal shapes).

    Entry ``[g, p]`` counts pixels with ground truth ``g`` predicted as ``p`` (rows: ground truth, columns:
    prediction). Pixels whose target is ``ignore_index`` are dropped. Computed with one ``torch.bincount`` over the
    flattened valid pixels, on the device of the inputs (CPU or CUDA). Raises ``ValueError`` for a prediction
    outside ``[0, C)`` or a target outside ``[0, C)`` that is not ``ignore_index`` (e.g. Cityscapes labelIds
    that were never mapped to train ids) — these would otherwise land silently in the wrong cell.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    c = int(num_classes)
    if c < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = pred.reshape(-1).long()
    t = target.reshape(-1).to(p.device).long()
    valid = t != ignore_index
    bad_t = (valid & ((t < 0) | (t >= c))).any()
    bad_p = (valid & ((p < 0) | (p >= c))).any()
    bad_t, bad_p = torch.stack([bad_t, bad_p]).tolist()  # one host sync for both checks
    if bad_t:
        vals = torch.unique(t[valid & ((t < 0) | (t >= c))])[:8].tolist()
        raise ValueError(f"target has class ids outside [0, {c}) that are not ignore_index={ignore_index}: "
                         f"{vals} (are the labels mapped to train ids?)")
    if bad_p:
        vals = torch.unique(p[valid & ((p < 0) | (p >= c))])[:8].tolist()
        raise ValueError(f"prediction has class ids outside [0, {c}): {vals}")
    idx = t[valid] * c + p[valid]
    return torch.bincount(idx, minlength=c * c).reshape(c, c)


def iou_from_confusion(matrix: torch.Tensor) -> torch.Tensor:
    """Per-class IoU (fraction, float64) from a (C, C) confusion matrix; NaN where ``TP + FP + FN == 0``."""
    m = matrix.double()
    tp = m.diagonal()
    denom = m.sum(0) + m.sum(1) - tp  # (TP + FP) + (TP + FN) - TP
    return torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, _NAN))


def _nanmean(values: torch.Tensor) -> float:
    ok = ~torch.isnan(values)
    return float(values[ok].mean()) if bool(ok.any()) else _NAN


class ConfusionMatrix:
    """Accumulated segmentation confusion matrix and the Cityscapes metrics derived from it.

    ``update(pred, target)``: ``pred`` is logits (B, C, H, W) (argmax over dim 1) or class ids (B, H, W);
    ``target`` is class ids (B, H, W) with ``ignore_index`` for unlabelled pixels. ``compute()`` returns
    percentages: ``mIoU`` (mean over classes with defined IoU, see the module notes), ``per_class_iou`` (list of
    C floats, NaN where undefined), ``pixel_accuracy`` (correct / valid pixels), ``mean_accuracy`` (mean over
    classes present in the ground truth of TP / (TP + FN)).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: Union[str, torch.device, None] = None):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self._device = torch.device(device) if device is not None else None
        self.reset()

    def reset(self) -> None:
        self._local: Optional[torch.Tensor] = None
        self._synced: Optional[torch.Tensor] = None

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = pred.detach()
        if pred.dim() == target.dim() + 1:  # logits / probabilities (B, C, H, W)
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"logits have {pred.shape[1]} channels; expected num_classes={self.num_classes}")
            pred = pred.argmax(dim=1)
        m = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        if self._local is None:
            self._local = m if self._device is None else m.to(self._device)
        else:
            self._local += m.to(self._local.device)
        self._synced = None

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the matrix over all processes (no-op without ``torch.distributed``).

        The local counts are kept, so calling it twice (or again after more updates) never double-counts.
        """
        self._synced = sum_over_ranks(self._local_or_zeros())
        return self

    def _local_or_zeros(self) -> torch.Tensor:
        if self._local is not None:
            return self._local
        return torch.zeros(self.num_classes, self.num_classes, dtype=torch.long, device=self._device)

    @property
    def matrix(self) -> torch.Tensor:
        """The (C, C) int64 matrix: summed over processes after ``all_reduce()``, else this process's."""
        return self._synced if self._synced is not None else self._local_or_zeros()

    def compute(self) -> dict:
        m = self.matrix.double().cpu()
        iou = iou_from_confusion(m)
        tp = m.diagonal()
        gt = m.sum(1)
        total = m.sum()
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, _NAN))
        return {
            "mIoU": 100.0 * _nanmean(iou),
            "per_class_iou": [100.0 * v for v in iou.tolist()],
            "pixel_accuracy": 100.0 * float(tp.sum() / total) if total > 0 else _NAN,
            "mean_accuracy": 100.0 * _nanmean(acc),
        }


def _iou_rows(per_class: Iterable[float], class_names: Optional[Sequence[str]]) -> tuple[list, list, float]:
    values = [float(v) for v in (per_class.tolist() if isinstance(per_class, torch.Tensor) else per_class)]
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(len(values))]
    if len(names) != len(values):
        raise ValueError(f"{len(values)} IoU values but {len(names)} class names")
    valid = [v for v in values if not math.isnan(v)]
    mean = sum(valid) / len(valid) if valid else _NAN
    return names, values, mean


def _fmt(v: float, digits: int) -> str:
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


def format_iou_table(per_class: Iterable[float], class_names: Optional[Sequence[str]] = None,
                     title: Optional[str] = "per-class IoU (%)", digits: int = 2):
    """A ``rich.table.Table`` with one row per class (NaN shown as ``n/a``) and the mean (over non-NaN) as footer."""
    from rich.table import Table

    names, values, mean = _iou_rows(per_class, class_names)
    table = Table(title=title, show_footer=True)
    table.add_column("class", footer="mean")
    table.add_column("IoU", justify="right", footer=_fmt(mean, digits))
    for name, v in zip(names, values):
        table.add_row(name, _fmt(v, digits))
    return table


def format_iou_text(per_class: Iterable[float], class_names: Optional[Sequence[str]] = None,
                    digits: int = 2) -> str:
    """The plain-text version of :func:`format_iou_table`: aligned ``class  IoU`` lines, then ``mean``."""
    names, values, mean = _iou_rows(per_class, class_names)
    cells = [(n, _fmt(v, digits)) for n, v in zip(names, values)]
    w_name = max([len("class"), len("mean")] + [len(n) for n, _ in cells])
    w_val = max([len("IoU"), len(_fmt(mean, digits))] + [len(s) for _, s in cells])
    rule = "-" * (w_name + 2 + w_val)
    lines = [f"{'class':<{w_name}}  {'IoU':>{w_val}}", rule]
    lines += [f"{n:<{w_name}}  {s:>{w_val}}" for n, s in cells]
    lines += [rule, f"{'mean':<{w_name}}  {_fmt(mean, digits):>{w_val}}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# retrieval (place recognition)
# --------------------------------------------------------------------------------------------------------------
def _as_index_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64).reshape(-1)


def _clean_positions(ranking, ok, junk) -> tuple[np.ndarray, int]:
    """0-based ranks of the positives in ``ranking`` after junk removal, and the number of positives."""
    r = _as_index_array(ranking)
    ok = np.unique(_as_index_array(ok))
    junk = np.setdiff1d(_as_index_array(junk if junk is not None else []), ok)  # ok wins over junk
    r = r[~np.isin(r, junk)]
    return np.flatnonzero(np.isin(r, ok)), len(ok)


def _ap_from_positions(pos: np.ndarray, n_ok: int, trapezoid: bool) -> float:
    if n_ok == 0:
        return _NAN
    j = np.arange(len(pos), dtype=np.float64)  # how many positives came before
    r = pos.astype(np.float64)                  # 0-based rank of this positive
    if not trapezoid:
        return float(np.sum((j + 1) / (r + 1)) / n_ok)
    p0 = np.where(r == 0, 1.0, j / np.maximum(r, 1))
    p1 = (j + 1) / (r + 1)
    return float(np.sum((p0 + p1) / 2) / n_ok)


def average_precision(ranking, ok, junk=(), *, trapezoid: bool = False) -> float:
    """Average precision (fraction in [0, 1]) of one query.

    ``ranking``: database indices, best match first (the full ranking, or only its top part: positives that never
    appear count as not retrieved). ``ok``: indices of the positives; ``junk``: indices removed from the ranking
    before anything is counted (an index in both lists counts as ok). NaN when ``ok`` is empty.

    ``trapezoid=False`` (default): the usual non-interpolated AP, the mean over positives of the precision at
    their rank — ranking [ok, bad, ok] gives (1/1 + 2/3) / 2. ``trapezoid=True``: the trapezoidal rule of the
    revisited Oxford/Paris ``compute_ap`` (also used by cnnimageretrieval-pytorch), which averages the precision
    just before and at each positive — the same ranking gives ((1 + 1)/2 + (1/2 + 2/3)/2) / 2.
    """
    pos, n_ok = _clean_positions(ranking, ok, junk)
    return _ap_from_positions(pos, n_ok, trapezoid)


def _gnd_lists(g) -> tuple:
    if isinstance(g, Mapping):
        return g.get("ok", ()), g.get("junk", ())
    return g, ()


def mean_average_precision(ranks=None, gnd: Sequence = (), *, scores=None, ks: Sequence[int] = (1, 5, 10),
                           trapezoid: bool = False) -> dict:
    """mAP and Recall@K (percent) over queries, Tokyo 24/7 / revisited-Oxford style.

    Give either ``ranks`` — (Q, N) database indices per query, best first (tensor, array, or a list of
    per-query sequences of any lengths) — or ``scores`` — (Q, N) similarities, higher is better, ranked with a
    stable descending sort (ties keep database order). ``gnd[q]`` is a dict with ``"ok"`` (positives) and
    optionally ``"junk"`` (ignored) index lists, or just the sequence of positives.

    Per query, junk is removed from the ranking first; AP is :func:`average_precision`; a query counts for
    Recall@K when at least one positive is among its first K (junk-free) results. Queries without positives
    have AP NaN and are left out of every mean (as in revisitop's ``compute_map``).

    Returns ``{"mAP": ..., "recall@1": ..., "recall@5": ..., "recall@10": ..., "per_query_ap": [...]}``, all in
    percent (``per_query_ap`` holds NaN for queries without positives), plus ``"num_queries"`` evaluated.
    """
    if (ranks is None) == (scores is None):
        raise ValueError("give exactly one of ranks= or scores=")
    if scores is not None:
        s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
        if s.ndim != 2:
            raise ValueError(f"scores must be (Q, N), got shape {s.shape}")
        ranks = np.argsort(-s, axis=1, kind="stable")
    elif isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    if len(ranks) != len(gnd):
        raise ValueError(f"{len(ranks)} rankings but {len(gnd)} ground-truth entries")
    ks = [int(k) for k in ks]
    aps, hits = [], {k: 0 for k in ks}
    for ranking, g in zip(ranks, gnd):
        ok, junk = _gnd_lists(g)
        pos, n_ok = _clean_positions(ranking, ok, junk)
        ap = _ap_from_positions(pos, n_ok, trapezoid)
        aps.append(ap)
        if n_ok == 0:
            continue
        first = int(pos[0]) if len(pos) else None
        for k in ks:
            hits[k] += int(first is not None and first < k)
    valid = [a for a in aps if not math.isnan(a)]
    n = len(valid)
    out = {"mAP": 100.0 * sum(valid) / n if n else _NAN}
    for k in ks:
        out[f"recall@{k}"] = 100.0 * hits[k] / n if n else _NAN
    out["per_query_ap"] = [100.0 * a for a in aps]
    out["num_queries"] = n
    return out
