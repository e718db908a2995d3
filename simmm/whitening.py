"""Learned whitening of retrieval descriptors from matching pairs (Radenović et al.'s "Lw", computed once from
training descriptors, no gradient).

With X the descriptors (N, D) and (q_i, p_i) matching pairs: m = mean of the query descriptors; the
within-pair covariance S = mean_i (x_qi − x_pi)(x_qi − x_pi)ᵀ is whitened by L⁻¹ (S = L Lᵀ, Cholesky; a small
ridge is added until S is positive definite); the whitened, centred descriptors are then rotated onto their
principal axes, largest variance first. Applied: x ↦ normalise(P (x − m)).

>>> mean, projection = learn_whitening(descriptors, qidx, pidx)
>>> white = apply_whitening(descriptors, mean, projection)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["apply_whitening", "learn_whitening"]


def _cholesky(s: torch.Tensor) -> torch.Tensor:
    ridge = 0.0
    eye = torch.eye(s.shape[0], dtype=s.dtype, device=s.device)
    while True:
        factor, info = torch.linalg.cholesky_ex(s + ridge * eye)
        if int(info) == 0:
            return factor
        ridge = 1e-10 if ridge == 0.0 else ridge * 10


@torch.no_grad()
def learn_whitening(descriptors: torch.Tensor, qidx, pidx) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), projection (D, D)) learned from ``descriptors`` (N, D) and the pairs ``qidx[i]``–``pidx[i]``
    (computed in float64)."""
    x = descriptors.double()
    qidx, pidx = torch.as_tensor(qidx, dtype=torch.long), torch.as_tensor(pidx, dtype=torch.long)
    mean = x[qidx].mean(0)
    diff = x[qidx] - x[pidx]
    cov = diff.T @ diff / diff.shape[0]
    inv_l = torch.linalg.inv(_cholesky(cov))
    centred = (x - mean) @ inv_l.T
    _, vectors = torch.linalg.eigh(centred.T @ centred)            # ascending eigenvalues
    projection = vectors.flip(1).T @ inv_l
    return mean.to(descriptors.dtype), projection.to(descriptors.dtype)


def apply_whitening(descriptors: torch.Tensor, mean: torch.Tensor, projection: torch.Tensor,
                    dims: int | None = None) -> torch.Tensor:
    """``normalise(P (x − m))`` of each row of ``descriptors`` (N, D); ``dims`` keeps the first dimensions."""
    p = projection if dims is None else projection[:dims]
    return F.normalize((descriptors - mean) @ p.T, dim=1)
