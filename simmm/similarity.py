"""Cosine similarity of features, shared by the darkening module's L_D^sim and the BYOL loss."""
from __future__ import annotations

from typing import List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

Feats = Union[Tensor, Sequence[Tensor]]
"""One feature tensor, or a list of them (one per stage)."""


def as_list(feats: Feats) -> List[Tensor]:
    """``feats`` as a list of tensors."""
    return [feats] if torch.is_tensor(feats) else list(feats)


def cosine(a: Tensor, b: Tensor, dim: int) -> Tensor:
    r"""Cosine similarity :math:`\langle a / \lVert a \rVert, b / \lVert b \rVert \rangle` along ``dim``.

    Taken in at least float32: under bf16 autocast the features come in bf16, whose rounding would show in the
    similarity (float64 stays float64, for gradient checks).
    """
    a, b = (t.to(torch.promote_types(t.dtype, torch.float32)) for t in (a, b))
    return (F.normalize(a, dim=dim) * F.normalize(b, dim=dim)).sum(dim=dim)
