r"""Losses of the darkening module D in SMM (METHOD.md §4.2).

D is trained to minimise

.. math::

    \mathcal{L}_D = \lambda_{sim} \mathcal{L}_D^{sim} + \lambda_{exp} \mathcal{L}_{exp}
        + \lambda_{col} \mathcal{L}_{col} + \lambda_{tv} \mathcal{L}_{ltv} + \lambda_{flex} \mathcal{L}_{flex}

with the weights ``0.1, 10, 25, 1600, 5`` (``λ_flex = 1`` for segmentation and action recognition).
``L_D^sim`` is the *similarity* of the frozen day model's features on the day image and on the darkened
image; D minimises it (it makes the features dissimilar), the regularisers ``R_D`` keep the image plausible.

Each loss is a function and an :class:`torch.nn.Module`.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .exposure import expand_exposure
from .similarity import Feats, as_list, cosine

__all__ = [
    "feature_similarity",
    "exposure_loss",
    "color_constancy_loss",
    "tent",
    "tent_tv_loss",
    "flexibility_loss",
    "FeatureSimilarity",
    "ExposureLoss",
    "ColorConstancyLoss",
    "TentTVLoss",
    "FlexibilityLoss",
    "DarkeningLoss",
]

def feature_similarity(feats_a: Feats, feats_b: Feats) -> Tensor:
    r"""Feature similarity ``L_D^sim`` (SMM Eq. for the darkening phase).

    .. math::

        \mathcal{L}_D^{sim} = \frac{1}{M} \sum_{m=1}^{M} \frac{1}{|\Omega_m|} \sum_{i \in \Omega_m}
            \Big\langle \frac{F_m(I)_i}{\lVert F_m(I)_i \rVert_2},
                          \frac{F_m(D(I))_i}{\lVert F_m(D(I))_i \rVert_2} \Big\rangle

    where ``Ω_m`` runs over batch and spatial positions of map ``m`` and the norm is over channels.

    Args:
        feats_a: one tensor or a list of ``M`` tensors ``(B, C, *)`` (maps ``(B, C, H, W)``, clips
            ``(B, C, T, H, W)`` or pooled vectors ``(B, C)``); normally ``F(I)``, computed without grad.
        feats_b: same shapes; normally ``F(D(I))``.

    Returns:
        Scalar in ``[-1, 1]``: mean cosine similarity, averaged over the maps.
    """
    fa, fb = as_list(feats_a), as_list(feats_b)
    if len(fa) != len(fb) or not fa:
        raise ValueError(f"feature_similarity: got {len(fa)} and {len(fb)} maps")
    total = None
    for a, b in zip(fa, fb):
        if a.shape != b.shape:
            raise ValueError(f"feature_similarity: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
        s = cosine(a, b, dim=1).mean()
        total = s if total is None else total + s
    return total / len(fa)


def exposure_loss(image: Tensor, exposure: Union[float, Tensor], norm: str = "l2", patch: int = 1) -> Tensor:
    r"""Exposure control loss ``L_exp``.

    .. math::

        \mathcal{L}_{exp} = \frac{1}{BHW} \sum_{b, x} \Big( \tfrac{1}{3} \sum_c D(I)_{b,c,x} - E_{b,x} \Big)^2
            \quad (\text{l2, the authors' code})

    or ``|.|`` instead of ``(.)^2`` (l1, as the paper writes it).

    With ``patch = p > 1`` both the channel mean of ``D(I)`` and ``E`` are first averaged over non-overlapping
    ``p x p`` patches (``avg_pool2d``, a remainder at the right/bottom edge is dropped), as in Zero-DCE's
    exposure loss and the ``patch_size`` argument of the SMM authors' ``L_exp`` (their default 1). Per pixel
    (``p = 1``) the loss also charges the image's own contrast, which grows with the exposure asked for: on
    high-contrast photos a D that keeps contrast and follows ``E`` then scores barely better than one that
    ignores ``E`` (see ``docs``/README "The darkener follows E"). ``p`` is clipped to the image size.

    Args:
        image: darkened image ``(B, C, H, W)``.
        exposure: target level: a number, ``(B,)`` scalars or a ``(B, 1, H, W)`` map (resized bilinearly
            if its size differs from the image's).
        norm: ``"l2"`` (default) or ``"l1"``.
        patch: side ``p`` of the averaging patches (default 1: per pixel, the authors' default).

    Returns:
        Scalar.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"exposure_loss: norm must be 'l1' or 'l2', got {norm!r}")
    if patch < 1:
        raise ValueError(f"exposure_loss: patch must be >= 1, got {patch}")
    n, _, h, w = image.shape
    gray, target = image.mean(dim=1, keepdim=True), expand_exposure(exposure, n, h, w, like=image)
    if patch > 1:
        kernel = (min(patch, h), min(patch, w))
        gray, target = F.avg_pool2d(gray, kernel), F.avg_pool2d(target, kernel)
    d = gray - target
    return d.square().mean() if norm == "l2" else d.abs().mean()


def color_constancy_loss(image: Tensor) -> Tensor:
    r"""Colour constancy loss ``L_col`` (grey-world prior, as in Zero-DCE).

    .. math::

        \mathcal{L}_{col} = \frac{1}{B} \sum_b \sqrt{(m_R - m_G)^4 + (m_R - m_B)^4 + (m_B - m_G)^4}

    with ``m_c`` the mean of channel ``c`` of image ``b``. The square root is taken as the Euclidean norm
    of the three squared differences (``torch.linalg.vector_norm``), whose gradient PyTorch defines as 0
    where the norm is 0: the value is exact (no ``eps`` bias) and the gradient is finite for a grey image.

    Args:
        image: ``(B, 3, H, W)``.

    Returns:
        Scalar.
    """
    if image.dim() < 2 or image.shape[1] != 3:
        raise ValueError(f"color_constancy_loss expects (B, 3, ...) images, got {tuple(image.shape)}")
    m = image.flatten(2).mean(dim=2)  # (B, 3)
    r, g, b = m.unbind(dim=1)
    d = torch.stack([(r - g).square(), (r - b).square(), (b - g).square()], dim=1)
    return torch.linalg.vector_norm(d, dim=1).mean()


def tent(d: Tensor, alpha: float = 0.02) -> Tensor:
    """Tent function ``φ(d) = clamp(α − ||d| − α|, 0, 1)``.

    0 at ``d = 0`` and for ``|d| ≥ 2α``, peak ``α`` at ``|d| = α``; elementwise, any shape.
    """
    return (alpha - (d.abs() - alpha).abs()).clamp(0.0, 1.0)


def tent_tv_loss(A: Tensor, alpha: float = 0.02) -> Tensor:
    r"""Tent total-variation loss ``L_ltv`` on the curve map ``A`` (SMM).

    .. math::

        \mathcal{L}_{ltv} = \frac{2}{B} \Big( \frac{\sum \varphi(\nabla_h A)^2}{(H-1) W}
            + \frac{\sum \varphi(\nabla_w A)^2}{H (W-1)} \Big),
        \qquad \varphi(d) = \mathrm{clamp}(\alpha - ||d| - \alpha|, 0, 1)

    with ``∇_h A = A[:, :, 1:, :] − A[:, :, :-1, :]``, ``∇_w A = A[..., 1:] − A[..., :-1]`` and the sums
    over batch, channels and positions. Unlike plain TV, flat regions *and* strong edges (``|d| ≥ 2α``)
    cost nothing; only small ripples are penalised. A direction with a single row (column) contributes 0.

    Args:
        A: ``(B, C, H, W)``.
        alpha: tent half-width ``α`` (SMM: 0.02).

    Returns:
        Scalar.
    """
    if A.dim() != 4:
        raise ValueError(f"tent_tv_loss expects (B, C, H, W), got {tuple(A.shape)}")
    n, _, h, w = A.shape
    loss = A.new_zeros(())
    if h > 1:
        loss = loss + tent(A[:, :, 1:, :] - A[:, :, :-1, :], alpha).square().sum() / ((h - 1) * w)
    if w > 1:
        loss = loss + tent(A[..., 1:] - A[..., :-1], alpha).square().sum() / (h * (w - 1))
    return 2.0 * loss / n


def flexibility_loss(B: Tensor) -> Tensor:
    """Flexibility loss ``L_flex = mean(1 − B)``: keeps the scale map ``B`` near 1 (a near-invertible ``g``).

    Args:
        B: ``(B, C, H, W)`` in ``[0.95, 1]``.

    Returns:
        Scalar.
    """
    return torch.rsub(B, 1.0).mean()


class FeatureSimilarity(nn.Module):
    """Module form of :func:`feature_similarity`."""

    def forward(self, feats_a: Feats, feats_b: Feats) -> Tensor:
        return feature_similarity(feats_a, feats_b)


class ExposureLoss(nn.Module):
    """Module form of :func:`exposure_loss`."""

    def __init__(self, norm: str = "l2", patch: int = 1) -> None:
        super().__init__()
        if norm not in ("l1", "l2"):
            raise ValueError(f"ExposureLoss: norm must be 'l1' or 'l2', got {norm!r}")
        if patch < 1:
            raise ValueError(f"ExposureLoss: patch must be >= 1, got {patch}")
        self.norm, self.patch = norm, int(patch)

    def forward(self, image: Tensor, exposure: Union[float, Tensor]) -> Tensor:
        return exposure_loss(image, exposure, self.norm, self.patch)

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}, patch={self.patch}"


class ColorConstancyLoss(nn.Module):
    """Module form of :func:`color_constancy_loss`."""

    def forward(self, image: Tensor) -> Tensor:
        return color_constancy_loss(image)


class TentTVLoss(nn.Module):
    """Module form of :func:`tent_tv_loss`."""

    def __init__(self, alpha: float = 0.02) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, A: Tensor) -> Tensor:
        return tent_tv_loss(A, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class FlexibilityLoss(nn.Module):
    """Module form of :func:`flexibility_loss`."""

    def forward(self, B: Tensor) -> Tensor:
        return flexibility_loss(B)


class DarkeningLoss(nn.Module):
    r"""Total loss of the darkening module D (SMM):

    .. math::

        \mathcal{L}_D = \lambda_{sim} \mathcal{L}_D^{sim}(F(I), F(D(I)))
            + \lambda_{exp} \mathcal{L}_{exp}(D(I), E) + \lambda_{col} \mathcal{L}_{col}(D(I))
            + \lambda_{tv} \mathcal{L}_{ltv}(A) + \lambda_{flex} \mathcal{L}_{flex}(B)

    ``L_D^sim`` enters with a plus sign: D *minimises* the similarity, i.e. it makes the day model's
    features of the darkened image dissimilar to those of the day image.

    ``A`` and ``B`` are taken from :class:`~simmm.darkening.DarkeningOutput` as returned, i.e. at the
    resolution the network ran at (low resolution when ``map_scale < 1``).

    A term whose weight is 0 is not computed and is reported as 0; with ``sim=0`` the features may be
    ``None`` (the "no L_D^sim" ablation).

    Args:
        sim, exposure, color, tv, flex: the weights ``λ`` (defaults: 0.1, 10, 25, 1600, 5).
        exposure_norm: ``"l2"`` (code, default) or ``"l1"`` (paper), see :func:`exposure_loss`.
        exposure_patch: patch side over which ``L_exp`` averages (default 1: per pixel), see
            :func:`exposure_loss`.
        tv_alpha: ``α`` of :func:`tent_tv_loss`.

    ``forward(output, exposure, feats_day, feats_dark) -> (total, terms)``: ``terms`` maps
    ``"sim"``, ``"exposure"``, ``"color"``, ``"tv"``, ``"flex"`` to the *unweighted*, detached scalar
    values (for logging); ``total`` is the weighted sum, with graph.
    """

    TERMS = ("sim", "exposure", "color", "tv", "flex")

    def __init__(self, sim: float = 0.1, exposure: float = 10.0, color: float = 25.0, tv: float = 1600.0,
                 flex: float = 5.0, exposure_norm: str = "l2", tv_alpha: float = 0.02,
                 exposure_patch: int = 1) -> None:
        super().__init__()
        if exposure_norm not in ("l1", "l2"):
            raise ValueError(f"DarkeningLoss: exposure_norm must be 'l1' or 'l2', got {exposure_norm!r}")
        if exposure_patch < 1:
            raise ValueError(f"DarkeningLoss: exposure_patch must be >= 1, got {exposure_patch}")
        self.weights: Dict[str, float] = {
            "sim": float(sim), "exposure": float(exposure), "color": float(color),
            "tv": float(tv), "flex": float(flex),
        }
        self.exposure_norm, self.tv_alpha, self.exposure_patch = exposure_norm, float(tv_alpha), int(exposure_patch)

    def forward(self, output, exposure: Union[float, Tensor], feats_day: Optional[Feats] = None,
                feats_dark: Optional[Feats] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
        image, A, B = output.image, output.A, output.B
        w = self.weights
        fns = {
            "sim": lambda: feature_similarity(feats_day, feats_dark),
            "exposure": lambda: exposure_loss(image, exposure, self.exposure_norm, self.exposure_patch),
            "color": lambda: color_constancy_loss(image),
            "tv": lambda: tent_tv_loss(A, self.tv_alpha),
            "flex": lambda: flexibility_loss(B),
        }
        if w["sim"] != 0 and (feats_day is None or feats_dark is None):
            raise ValueError("DarkeningLoss: feats_day and feats_dark are needed when the sim weight is > 0")
        total = image.new_zeros(())
        terms: Dict[str, Tensor] = {}
        for name in self.TERMS:
            if w[name] == 0:
                terms[name] = image.new_zeros(())
                continue
            value = fns[name]()
            total = total + w[name] * value
            terms[name] = value.detach()
        return total, terms

    def extra_repr(self) -> str:
        ws = ", ".join(f"{k}={v}" for k, v in self.weights.items())
        return (f"{ws}, exposure_norm={self.exposure_norm!r}, exposure_patch={self.exposure_patch}, "
                f"tv_alpha={self.tv_alpha}")
