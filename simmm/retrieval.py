"""Image retrieval: nearest-neighbour search and its scores (mAP with junk ignored, Recall@N).

* :func:`search`: cosine similarity of unit descriptors as a batched matrix product, then top-k, on the
  descriptors' device.
* :func:`average_precision` / :func:`mean_average_precision`: the trapezoid-rule AP of the image-retrieval
  tooling the SMM paper evaluated with (Radenović et al.'s ``compute_map``), so that numbers compare with the
  paper's (Tokyo 24/7: GeM 85.0, SMM 90.4). For a query with n positives found at 0-based positions r_0 < r_1 <
  ... in the ranking (junk entries removed from the ranking first, so they neither help nor hurt)::

      AP = Σ_j ½ (P_0(j) + P_1(j)) / n,   P_0(j) = j / r_j (1 when r_j = 0),   P_1(j) = (j + 1) / (r_j + 1)

  Queries without positives are left out of the mean.
* :func:`recall_at`: the share of queries (with positives) having a positive among the first N non-junk results.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["search", "rank_all", "positive_positions", "average_precision", "mean_average_precision",
           "recall_at"]


@torch.no_grad()
def search(queries: torch.Tensor, database: torch.Tensor, k: int | None = None, batch: int = 1024
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar database descriptors of each query (all of them when ``k`` is None).

    ``queries`` (Q, D) and ``database`` (N, D) are unit vectors on one device; similarity is their dot product,
    computed ``batch`` queries at a time. Returns (scores, indices), each (Q, k), best first; ties go to the lower
    database index.
    """
    k = database.shape[0] if k is None else min(int(k), database.shape[0])
    scores, indices = [], []
    for start in range(0, queries.shape[0], batch):
        sim = queries[start:start + batch] @ database.T
        if k == database.shape[0]:
            s, i = sim.sort(dim=1, descending=True, stable=True)
        else:
            s, i = sim.topk(k, dim=1)
        scores.append(s)
        indices.append(i)
    if not scores:
        empty = torch.empty(0, k, device=database.device)
        return empty, empty.long()
    return torch.cat(scores), torch.cat(indices)


def rank_all(queries: torch.Tensor, database: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """(Q, N): every database index per query, most similar first (on the CPU)."""
    return search(queries, database, None, batch)[1].cpu()


def positive_positions(ranking: Sequence[int], ok: Sequence[int], junk: Sequence[int] = ()) -> list[int]:
    """0-based positions of the ``ok`` items in ``ranking`` once the ``junk`` items are taken out of it."""
    ok, junk = set(int(i) for i in ok), set(int(i) for i in junk)
    positions, skipped = [], 0
    for place, item in enumerate(int(i) for i in ranking):
        if item in junk and item not in ok:
            skipped += 1
        elif item in ok:
            positions.append(place - skipped)
    return positions


def average_precision(positions: Sequence[int], n_positives: int) -> float:
    """Trapezoid-rule AP of positives found at sorted 0-based ``positions`` among ``n_positives`` (module doc)."""
    ap = 0.0
    for j, r in enumerate(positions):
        p0 = 1.0 if r == 0 else j / r
        p1 = (j + 1) / (r + 1)
        ap += (p0 + p1) / (2.0 * n_positives)
    return ap


def mean_average_precision(ranks: torch.Tensor, gnd: Sequence[dict]) -> tuple[float, list[float]]:
    """mAP of ``ranks`` (Q, N database indices per query, best first) against ``gnd[q]`` = ``{"ok": [...],
    "junk": [...]}``; returns (mAP, the per-query APs with NaN for queries without positives, left out of the
    mean)."""
    aps = []
    for q, g in enumerate(gnd):
        ok = list(g.get("ok", ()))
        if not ok:
            aps.append(float("nan"))
            continue
        aps.append(average_precision(positive_positions(ranks[q].tolist(), ok, g.get("junk", ())), len(ok)))
    valid = [a for a in aps if a == a]
    return (sum(valid) / len(valid) if valid else float("nan")), aps


def recall_at(ranks: torch.Tensor, gnd: Sequence[dict], ns: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@N for each N: the share of queries with positives whose first N non-junk results hold one."""
    hits = {n: 0 for n in ns}
    counted = 0
    for q, g in enumerate(gnd):
        ok = list(g.get("ok", ()))
        if not ok:
            continue
        counted += 1
        positions = positive_positions(ranks[q].tolist(), ok, g.get("junk", ()))
        first = positions[0] if positions else None
        for n in ns:
            hits[n] += int(first is not None and first < n)
    return {n: (hits[n] / counted if counted else float("nan")) for n in ns}
