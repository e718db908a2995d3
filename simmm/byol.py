r"""BYOL pieces for SMM's feature-extractor phase (METHOD.md §4.3).

The extractor F learns darkness-invariant features by pulling the *online* prediction of one view towards
the *target* projection of the other view (a day view and its darkened copy):

.. math::

    \mathcal{L}_F^{sim} = \big(2 - 2 \cos(p(q(F(v))),\, q'(F'(v^+)))\big)
                        + \big(2 - 2 \cos(p(q(F(v^+))),\, q'(F'(v)))\big)

``q`` is the online projector, ``p`` the predictor, and ``F'``, ``q'`` exponential-moving-average (EMA)
copies of the backbone and projector, updated every step with momentum ``m = 0.99``:
``θ' <- m θ' + (1 − m) θ`` (:func:`update_momentum`).

Pieces, in the style of lightly: heads (:class:`MLPHead`, :class:`ConvProjector`), :func:`update_momentum`,
the loss (:func:`byol_loss`, :func:`symmetric_byol_loss`), and :class:`BYOLHeads`, which holds one
projector/predictor/target-projector triple per feature map.

Keeping an EMA copy of the backbone: ``target = copy_as_target(backbone)`` (or ``TargetNetwork(backbone)``),
compute the target features under ``torch.no_grad()``, and call ``update_momentum(backbone, target, 0.99)``
after each optimiser step. The target is never wrapped in DDP and never given to an optimiser.
"""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from .similarity import Feats, as_list, cosine

__all__ = [
    "MLPHead",
    "ConvProjector",
    "update_momentum",
    "deactivate_requires_grad",
    "copy_as_target",
    "TargetNetwork",
    "byol_loss",
    "symmetric_byol_loss",
    "BYOLHeads",
]

class MLPHead(nn.Module):
    """``Linear(in, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, out)``.

    The BYOL projector (classification: 512 -> 128 -> 128) and predictor (128 -> 128 -> 128).

    Shapes:
        ``(B, in_dim)`` -> ``(B, out_dim)``. A feature map ``(B, in_dim, *)`` is global-average-pooled first,
        so the last backbone stage map can be passed as it is. In training mode ``B`` must be > 1 (BatchNorm).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 128, out_dim: int = 128) -> None:
        super().__init__()
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() > 2:
            x = x.flatten(2).mean(dim=2)
        return self.layers(x)


class ConvProjector(nn.Module):
    """Per-stage BYOL projector for segmentation:
    ``Conv3x3(C -> mid) -> BatchNorm2d -> ReLU -> global average pool -> MLPHead(mid -> hidden -> out)``.

    Shapes:
        ``(B, C, H, W)`` -> ``(B, out)``.
    """

    def __init__(self, in_channels: int, mid: int = 64, hidden: int = 128, out: int = 128) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
        )
        self.mlp = MLPHead(mid, hidden, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.conv(x).mean(dim=(2, 3)))


def _unwrap(module: nn.Module) -> nn.Module:
    # DistributedDataParallel / DataParallel keep the model in `.module`.
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return module.module if isinstance(module, wrappers) else module


@torch.no_grad()
def update_momentum(model: nn.Module, ema_model: nn.Module, m: float) -> None:
    r"""EMA update of a target network, in place:

    .. math::  \theta_{ema} \leftarrow m\, \theta_{ema} + (1 - m)\, \theta

    for every parameter (paired in ``parameters()`` order). Buffers (BatchNorm running statistics and
    ``num_batches_tracked``) are *copied* from ``model``: the target then evaluates with the same
    normalisation statistics as the online network instead of a lagged average of them (they are not
    trained by gradient, so averaging them brings nothing and BYOL normally runs the target in train mode,
    where they are unused).

    Args:
        model: the online network (a DDP/DataParallel wrapper is unwrapped).
        ema_model: the target network, same architecture.
        m: momentum in ``[0, 1]`` (SMM: 0.99). ``m = 0`` copies, ``m = 1`` leaves the target unchanged.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"update_momentum: m must be in [0, 1], got {m}")
    model, ema_model = _unwrap(model), _unwrap(ema_model)
    online, target = list(model.parameters()), list(ema_model.parameters())
    if len(online) != len(target):
        raise ValueError(f"update_momentum: models differ ({len(online)} vs {len(target)} parameters)")
    for p_ema, p in zip(target, online):
        p_ema.mul_(m).add_(p.detach(), alpha=1.0 - m)
    online_b, target_b = list(model.buffers()), list(ema_model.buffers())
    if len(online_b) != len(target_b):
        raise ValueError(f"update_momentum: models differ ({len(online_b)} vs {len(target_b)} buffers)")
    for b_ema, b in zip(target_b, online_b):
        b_ema.copy_(b)


def deactivate_requires_grad(module: nn.Module) -> nn.Module:
    """Set ``requires_grad = False`` on every parameter of ``module``; returns ``module``."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def copy_as_target(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` (DDP wrapper unwrapped) with gradients off: a BYOL target network.

    The copy keeps the module's train/eval mode.
    """
    return deactivate_requires_grad(copy.deepcopy(_unwrap(module)))


class TargetNetwork(nn.Module):
    """EMA copy of a network (BYOL's target backbone ``F'``).

    ``TargetNetwork(backbone)`` deep-copies ``backbone`` with gradients off (the online network is *not*
    stored, so it is not duplicated in ``state_dict``); ``forward`` runs the copy under ``torch.no_grad()``;
    ``update(backbone, m)`` is ``update_momentum(backbone, self.module, m)``.
    """

    def __init__(self, online: nn.Module) -> None:
        super().__init__()
        self.module = copy_as_target(online)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def update(self, online: nn.Module, m: float = 0.99) -> None:
        update_momentum(online, self.module, m)


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    r"""BYOL regression loss, one direction:

    .. math::

        \mathcal{L}(p, z) = \frac{1}{B} \sum_b \Big(2 - 2
            \frac{\langle p_b, z_b \rangle}{\lVert p_b \rVert \lVert z_b \rVert}\Big)

    ``z`` is detached (stop-gradient on the target side). Range ``[0, 4]``.

    Args:
        p: online predictions ``(B, D)``.
        z: target projections ``(B, D)``.

    Returns:
        Scalar.
    """
    if p.shape != z.shape:
        raise ValueError(f"byol_loss: shapes differ, {tuple(p.shape)} vs {tuple(z.shape)}")
    cos = cosine(p, z.detach(), dim=-1)
    return (2.0 - 2.0 * cos).mean()


def symmetric_byol_loss(p1: Tensor, z2: Tensor, p2: Tensor, z1: Tensor) -> Tensor:
    """Both directions, summed: ``byol_loss(p1, z2) + byol_loss(p2, z1)`` (range ``[0, 8]``).

    The task's BYOL weight (SMM classification: 0.5 * 0.1) applies to this sum.
    """
    return byol_loss(p1, z2) + byol_loss(p2, z1)


class BYOLHeads(nn.Module):
    r"""BYOL heads for ``M`` feature maps: online projectors ``q_m``, predictors ``p_m`` and EMA target
    projectors ``q'_m`` (one per map: 1 for a pooled vector, 4 for the stages of a segmentation encoder).

    .. math::

        \mathcal{L} = \frac{1}{M} \sum_m \Big[\mathcal{L}\big(p_m(q_m(f^{day}_m)),\, q'_m(f'^{dark}_m)\big)
                      + \mathcal{L}\big(p_m(q_m(f^{dark}_m)),\, q'_m(f'^{day}_m)\big)\Big]

    with :func:`byol_loss` ``L``, ``f`` online-backbone and ``f'`` target-backbone features.

    Build with :meth:`for_vectors` or :meth:`for_stages`, or pass the projectors and predictors. The
    target projectors are created here as copies of the online ones; they are submodules (saved in
    ``state_dict``) with ``requires_grad=False``: give the optimiser :meth:`online_parameters`.
    """

    def __init__(self, projectors: Sequence[nn.Module], predictors: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(projectors) != len(predictors) or not projectors:
            raise ValueError("BYOLHeads: need the same non-zero number of projectors and predictors")
        self.projectors = nn.ModuleList(projectors)
        self.predictors = nn.ModuleList(predictors)
        self.target_projectors = copy_as_target(self.projectors)

    @classmethod
    def for_vectors(cls, dim: int, proj_hidden: int = 128, proj_out: int = 128,
                    pred_hidden: int = 128) -> "BYOLHeads":
        """One head for a pooled ``dim``-vector.

        Classification: ``for_vectors(512)`` (projector 512 -> 128 -> 128, predictor 128 -> 128 -> 128);
        action recognition: ``for_vectors(2048, 64, 64, 64)``. Feature maps are pooled by :class:`MLPHead`.
        """
        return cls([MLPHead(dim, proj_hidden, proj_out)], [MLPHead(proj_out, pred_hidden, proj_out)])

    @classmethod
    def for_stages(cls, channels: Sequence[int], mid: int = 64, hidden: int = 128,
                   out: int = 128) -> "BYOLHeads":
        """One :class:`ConvProjector` (``C -> mid``, then ``mid -> hidden -> out``) and predictor
        (``out -> hidden -> out``) per stage, e.g. ``channels=[256, 512, 1024, 2048]``."""
        return cls([ConvProjector(c, mid, hidden, out) for c in channels],
                   [MLPHead(out, hidden, out) for _ in channels])

    def __len__(self) -> int:
        return len(self.projectors)

    def online_parameters(self):
        """Parameters of the online projectors and predictors (what the optimiser trains)."""
        yield from self.projectors.parameters()
        yield from self.predictors.parameters()

    def _check(self, feats: List[Tensor]) -> List[Tensor]:
        if len(feats) != len(self.projectors):
            raise ValueError(f"BYOLHeads: got {len(feats)} feature maps, built for {len(self.projectors)}")
        return feats

    def forward_online(self, feats: Feats) -> List[Tensor]:
        """Predictions ``p_m(q_m(f_m))``, one ``(B, out)`` tensor per map."""
        feats = self._check(as_list(feats))
        return [pred(proj(f)) for f, proj, pred in zip(feats, self.projectors, self.predictors)]

    @torch.no_grad()
    def forward_target(self, feats: Feats) -> List[Tensor]:
        """Target projections ``q'_m(f_m)``, one ``(B, out)`` tensor per map, without graph."""
        feats = self._check(as_list(feats))
        return [proj(f.detach()) for f, proj in zip(feats, self.target_projectors)]

    def forward(self, feats_day: Feats, feats_dark: Feats, target_feats_day: Optional[Feats] = None,
                target_feats_dark: Optional[Feats] = None) -> Tensor:
        """The loss (:meth:`loss`): calling the module is what lets ``DistributedDataParallel`` synchronise the
        heads' gradients."""
        return self.loss(feats_day, feats_dark, target_feats_day, target_feats_dark)

    def loss(self, feats_day: Feats, feats_dark: Feats, target_feats_day: Optional[Feats] = None,
             target_feats_dark: Optional[Feats] = None) -> Tensor:
        """Symmetric BYOL loss averaged over maps (formula in the class docstring).

        Args:
            feats_day, feats_dark: online-backbone features of the day view and the darkened view.
            target_feats_day, target_feats_dark: target (EMA) backbone features of the same views. ``None``
                uses the online features, detached (no EMA backbone: only the projector is averaged).
        """
        target_feats_day = feats_day if target_feats_day is None else target_feats_day
        target_feats_dark = feats_dark if target_feats_dark is None else target_feats_dark
        p_day, p_dark = self.forward_online(feats_day), self.forward_online(feats_dark)
        z_day, z_dark = self.forward_target(target_feats_day), self.forward_target(target_feats_dark)
        total = None
        for pd, pn, zd, zn in zip(p_day, p_dark, z_day, z_dark):
            term = symmetric_byol_loss(pd, zn, pn, zd)
            total = term if total is None else total + term
        return total / len(p_day)

    def update_target(self, m: float = 0.99) -> None:
        """EMA update of the target projectors from the online ones (:func:`update_momentum`)."""
        update_momentum(self.projectors, self.target_projectors, m)
