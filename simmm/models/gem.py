"""Generalized-mean (GeM) pooling with a learnable exponent (Radenović, Tolias, Chum, TPAMI 2018).

    GeM(x)_c = ( mean over positions of clamp(x_c, eps)^p )^(1/p)

p = 1 is average pooling, p → ∞ max pooling; the image-retrieval networks learn p (initialised 3) with its own,
larger learning rate (the SMM recipes: 10× the network's, ``players.<name>.lr_mult``).

>>> pool = GeM(p=3.0)
>>> pool(torch.rand(2, 512, 7, 7)).shape        # (B, C, H, W) -> (B, C)
torch.Size([2, 512])
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["GeM", "gem"]


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """GeM pooling of ``x`` (B, C, H, W) → (B, C): the p-th root of the spatial mean of ``clamp(x, eps)^p``."""
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeM(nn.Module):
    """:func:`gem` with a learnable exponent ``p`` (a 1-element parameter, initialised to ``p``)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()):.4f}, eps={self.eps}"
