"""The contrastive loss of image-retrieval fine-tuning (Radenović et al.; SMM §4.3: margin 0.85).

A training tuple is a query, its positives and its negatives. With d the Euclidean distance between the query's
descriptor and another's (computed as ‖q − x + ε‖, ε = 1e-6, as the image-retrieval tooling does)::

    L(tuple) = Σ_positives ½ d²  +  Σ_negatives ½ max(0, margin − d)²

Labels mark each descriptor of a tuple: −1 the query, 1 a positive, 0 a negative. SMM adds the darkened query as
one more positive. A batch's loss is the mean over its tuples (the tooling sums them; the mean keeps the gradient
of 2 processes × b tuples equal to that of 1 process × 2b).

>>> loss = contrastive_loss(desc, labels, margin=0.85)   # desc (B, T, D), labels (T,) or (B, T)
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ContrastiveLoss", "contrastive_loss", "tuple_labels"]


def tuple_labels(positives: int, negatives: int, device=None) -> torch.Tensor:
    """``[-1, 1 × positives, 0 × negatives]``: the labels of a tuple laid out query, positives, negatives."""
    return torch.tensor([-1] + [1] * positives + [0] * negatives, dtype=torch.float32, device=device)


def contrastive_loss(descriptors: torch.Tensor, labels: torch.Tensor, margin: float = 0.85,
                     eps: float = 1e-6) -> torch.Tensor:
    """Mean over tuples of the per-tuple contrastive loss (module docstring).

    Args:
        descriptors: (B, T, D), tuple b's descriptors in the order of ``labels``.
        labels: (T,) or (B, T): −1 for the query (exactly one per tuple), 1 positive, 0 negative.
        margin: negatives farther than this cost nothing.
    """
    if labels.dim() == 1:
        labels = labels.expand(descriptors.shape[0], -1)
    is_query = labels == -1
    if not bool((is_query.sum(1) == 1).all()):
        raise ValueError("contrastive_loss: every tuple needs exactly one query (label -1)")
    query = descriptors[is_query].unsqueeze(1)                        # (B, 1, D)
    dist = (query - descriptors + eps).pow(2).sum(-1).sqrt()          # (B, T)
    pos = (labels == 1).to(dist.dtype)
    neg = (labels == 0).to(dist.dtype)
    per_pair = 0.5 * pos * dist.pow(2) + 0.5 * neg * (margin - dist).clamp(min=0).pow(2)
    return per_pair.sum(1).mean()


class ContrastiveLoss(nn.Module):
    """:func:`contrastive_loss` as a module."""

    def __init__(self, margin: float = 0.85, eps: float = 1e-6) -> None:
        super().__init__()
        self.margin, self.eps = margin, eps

    def forward(self, descriptors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return contrastive_loss(descriptors, labels, self.margin, self.eps)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
