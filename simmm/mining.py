"""Hard-negative mining for image-retrieval tuples (Radenović et al.; the SMM place-recognition recipe).

Each epoch draws ``queries`` random (query, positive) pairs and a random ``pool`` of images, describes both with
the current model, and gives each query the ``negatives`` most similar pool images that are not of its own
cluster (place), taking at most one image per cluster. The draws are seeded by (seed, epoch); the search is a
matrix product on the descriptors' device.

>>> negatives = hard_negatives(query_desc, pool_desc, pool_images, clusters, query_images, 5)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from simmm.errors import DataError

__all__ = ["EpochTuples", "draw_epoch", "hard_negatives", "mine_epoch"]


@torch.no_grad()
def hard_negatives(query_desc: torch.Tensor, pool_desc: torch.Tensor, pool_images: Sequence[int],
                   clusters: Sequence[int], query_images: Sequence[int], n: int) -> torch.Tensor:
    """(Q, n) image indices: per query, the most similar pool images (descriptors are unit vectors, similarity
    their dot product) whose cluster is neither the query's nor that of a negative already taken."""
    ranks = (query_desc @ pool_desc.T).argsort(dim=1, descending=True, stable=True).cpu().tolist()
    out = []
    for q, order in enumerate(ranks):
        taken = {clusters[query_images[q]]}
        chosen = []
        for r in order:
            image = int(pool_images[r])
            if clusters[image] not in taken:
                chosen.append(image)
                taken.add(clusters[image])
                if len(chosen) == n:
                    break
        if len(chosen) < n:
            raise DataError(f"hard-negative mining: the pool of {len(pool_images)} images holds only {len(chosen)} "
                            f"images of other clusters than query image {query_images[q]} ({n} negatives asked); "
                            "raise data.train.pool_size or lower data.train.negatives")
        out.append(chosen)
    return torch.tensor(out, dtype=torch.long).view(len(ranks), n)


@dataclass
class EpochTuples:
    """The tuples of one epoch: (query, positive, negatives) image indices, and what they were mined for."""

    key: str
    queries: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor

    def state_dict(self) -> dict:
        return {"key": self.key, "queries": self.queries, "positives": self.positives, "negatives": self.negatives}

    @classmethod
    def from_state(cls, state: dict) -> "EpochTuples":
        return cls(state["key"], state["queries"], state["positives"], state["negatives"])


def draw_epoch(qidxs: Sequence[int], pidxs: Sequence[int], n_images: int, queries: int, pool: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded draws of an epoch: ``queries`` pair positions' (query, positive) images and ``pool`` image indices."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(len(qidxs), generator=g)[:queries]
    pool_images = torch.randperm(n_images, generator=g)[:pool]
    q = torch.tensor(qidxs, dtype=torch.long)[pairs]
    p = torch.tensor(pidxs, dtype=torch.long)[pairs]
    return q, p, pool_images


def mine_epoch(describe: Callable[[torch.Tensor], torch.Tensor], clusters: Sequence[int], qidxs: Sequence[int],
               pidxs: Sequence[int], queries: int, pool: int, negatives: int, seed: int, key: str) -> EpochTuples:
    """One epoch's tuples: :func:`draw_epoch`, then ``describe(image indices) -> (n, D)`` unit descriptors of the
    queries and the pool, then :func:`hard_negatives`."""
    q, p, pool_images = draw_epoch(qidxs, pidxs, len(clusters), queries, pool, seed)
    if negatives == 0:
        return EpochTuples(key, q, p, torch.empty(len(q), 0, dtype=torch.long))
    query_desc, pool_desc = describe(q), describe(pool_images)
    n = hard_negatives(query_desc, pool_desc.to(query_desc.device), pool_images.tolist(), clusters, q.tolist(),
                       negatives)
    return EpochTuples(key, q, p, n)
