r"""Losses of DANIA, the paired day–night mode (METHOD.md §5).

Three domains: ``S`` (labelled day source), ``T_d`` (unlabelled day targets), ``T_n`` (unlabelled night targets,
coarsely paired with ``T_d``). The generator (relighting net ``R`` + segmentation net ``G``) minimises

.. math::

    \mathcal{L}_G = 0.01\,\mathcal{L}_{light} + \mathcal{L}_{seg} + \mathcal{L}_{static} + 0.01\,\mathcal{L}_{adv}

and each discriminator its least-squares loss. This module holds every term, each as a function and an
:class:`torch.nn.Module`:

- the light loss (:class:`LightLoss`: :func:`tv_loss`, :func:`ssim_loss`, :func:`patch_exposure_loss`,
  :func:`style_loss`);
- the class re-weighting ``w_k`` (:func:`class_pixel_counts`, :func:`class_shares`, :func:`class_weights`,
  :data:`CITYSCAPES_CLASS_SHARES`);
- the class-weighted source cross-entropy (:func:`weighted_cross_entropy`);
- the static loss on ``T_n`` (:func:`fuse_probabilities`, :func:`fuse_pseudo_label`, :func:`static_focal_loss`,
  :func:`static_loss`); :func:`fuse_probabilities` serves the day–night evaluation as well;
- the least-squares adversarial losses (:func:`generator_adversarial_loss`, :func:`discriminator_loss`).

Label maps are train ids ``(B, H, W)`` with ``255`` for "ignore"; the first 11 train ids (road, sidewalk, building,
wall, fence, pole, traffic light, traffic sign, vegetation, terrain, sky) are the *static* classes.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import dist
from .darkening_losses import exposure_loss

__all__ = [
    "CITYSCAPES_CLASS_SHARES",
    "NUM_STATIC",
    "tv_loss",
    "ssim_loss",
    "patch_exposure_loss",
    "night_mean",
    "gram_matrix",
    "style_loss",
    "vgg_style_features",
    "class_pixel_counts",
    "class_shares",
    "class_weights",
    "weighted_cross_entropy",
    "fuse_probabilities",
    "fuse_pseudo_label",
    "static_focal_loss",
    "static_loss",
    "generator_adversarial_loss",
    "discriminator_loss",
    "TVLoss",
    "SSIMLoss",
    "PatchExposureLoss",
    "StyleLoss",
    "LightLoss",
    "WeightedCrossEntropy",
    "StaticLoss",
    "GeneratorAdversarialLoss",
    "DiscriminatorLoss",
]

IGNORE = 255
NUM_STATIC = 11
"""Train ids ``0..10`` are the static classes (road … sky); ``11..18`` are dynamic."""

# Share a_k of the Cityscapes train pixels labelled k (train ids 0..18), as listed in DANNet's public code:
# W-zx-Y/DANNet, train.py at commit 8d2f24d7ac91cb272a29484dfc7ea44476126414 (the list passed to torch.log).
# Measured facts about the data set; they sum to 1.
CITYSCAPES_CLASS_SHARES: Tuple[float, ...] = (
    0.36869696, 0.06084986, 0.22824049, 0.00655399, 0.00877272, 0.01227341, 0.00207795, 0.0055127, 0.15928651,
    0.01157818, 0.04018982, 0.01218957, 0.00135122, 0.06994545, 0.00267456, 0.00235192, 0.00232904, 0.00098658,
    0.00413907,
)


def _check_image(name: str, x: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects (B, C, H, W) images, got {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------------------- light

def tv_loss(r: Tensor) -> Tensor:
    r"""Total variation of the relighting residual ``r`` (the ``TV(r)`` of the light loss).

    .. math::

        \mathrm{TV}(r) = \frac{2}{B} \Big( \frac{\sum (\nabla_h r)^2}{(H-1) W}
            + \frac{\sum (\nabla_w r)^2}{H (W-1)} \Big)

    with ``∇_h r = r[:, :, 1:] − r[:, :, :-1]``, ``∇_w r = r[..., 1:] − r[..., :-1]`` and the sums over batch,
    channels and positions. METHOD.md names ``TV(r)`` without a normalisation; this is the form of DANNet's code
    (squared differences, as in Zero-DCE). A direction with a single row (column) contributes 0.

    Args:
        r: ``(B, C, H, W)``.

    Returns:
        Scalar.
    """
    _check_image("tv_loss", r)
    n, _, h, w = r.shape
    loss = r.new_zeros(())
    if h > 1:
        loss = loss + (r[:, :, 1:] - r[:, :, :-1]).square().sum() / ((h - 1) * w)
    if w > 1:
        loss = loss + (r[..., 1:] - r[..., :-1]).square().sum() / (h * (w - 1))
    return 2.0 * loss / n


def ssim_loss(image: Tensor, relit: Tensor) -> Tensor:
    r"""Structural dissimilarity of the input ``I`` and the relit image ``R(I)``, 3×3 block filter.

    .. math::

        \mathrm{SSIM} = \frac{(2 \mu_I \mu_R + C_1)(2 \sigma_{IR} + C_2)}
            {(\mu_I^2 + \mu_R^2 + C_1)(\sigma_I^2 + \sigma_R^2 + C_2)}, \qquad
        \mathcal{L}_{ssim} = \operatorname{mean} \operatorname{clamp}\Big(\frac{1 - \mathrm{SSIM}}{2}, 0, 1\Big)

    ``μ``, ``σ²`` and ``σ_IR`` are 3×3 *means* (block filter, reflect padding, one value per pixel and channel),
    ``C_1 = 0.01²``, ``C_2 = 0.03²`` (a data range of 1), no extra ``eps``; the mean runs over batch, channels and
    pixels. ``kornia.metrics.ssim`` cannot do this: its window is always a Gaussian of ``σ = 1.5``, so the
    moments are taken here with ``kornia.filters.box_blur`` (reflect border) and combined in a few lines.

    Args:
        image: ``(B, C, H, W)``, ``H, W ≥ 2`` (reflect padding).
        relit: same shape.

    Returns:
        Scalar in ``[0, 1]``.
    """
    _check_image("ssim_loss", image)
    if image.shape != relit.shape:
        raise ValueError(f"ssim_loss: shapes differ, {tuple(image.shape)} vs {tuple(relit.shape)}")

    def mean3(t: Tensor) -> Tensor:
        return kornia.filters.box_blur(t, (3, 3), border_type="reflect")

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x, mu_y = mean3(image), mean3(relit)
    var_x = mean3(image * image) - mu_x * mu_x
    var_y = mean3(relit * relit) - mu_y * mu_y
    cov = mean3(image * relit) - mu_x * mu_y
    ssim = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1).mean()


def patch_exposure_loss(image: Tensor, mean: Union[float, Tensor], patch: int = 32, norm: str = "l1") -> Tensor:
    r"""Exposure loss of the relit image against the batch's night intensity ``E`` (paper Eq. 4).

    .. math::

        \mathcal{L}_{exp} = \frac{1}{M} \sum_{m=1}^{M} | Y_m - E |

    with ``Y_m`` the mean of the channel mean of ``R(I)`` over the ``m``-th ``patch × patch`` block
    (``F.avg_pool2d``, non-overlapping; a remainder narrower than ``patch`` is dropped) and ``M`` the number of
    blocks in the batch. ``norm="l2"`` squares instead of ``|.|`` (DANNet's code).

    Args:
        image: relit image ``(B, C, H, W)``, ``H, W ≥ patch``.
        mean: ``E``, a number or 0-d tensor: the mean intensity of this batch's night images (``night.mean()``).
        patch: block size (32).
        norm: ``"l1"`` (paper, default) or ``"l2"``.

    Returns:
        Scalar.
    """
    _check_image("patch_exposure_loss", image)
    if image.shape[-2] < patch or image.shape[-1] < patch:
        raise ValueError(f"patch_exposure_loss: image {tuple(image.shape)} is smaller than the {patch}x{patch} patch")
    return exposure_loss(F.avg_pool2d(image, patch), mean, norm=norm)


def gram_matrix(x: Tensor) -> Tensor:
    r"""Gram matrix over channels, normalised by the number of positions: ``G = F Fᵀ / (H W)``.

    Args:
        x: ``(B, C, H, W)`` (an image or a feature map).

    Returns:
        ``(B, C, C)``.
    """
    _check_image("gram_matrix", x)
    f = x.flatten(2)
    return f @ f.transpose(1, 2) / f.shape[-1]


Features = Optional[nn.Module]


def _feature_list(x: Tensor, features: Features) -> List[Tensor]:
    if features is None:
        return [x]
    out = features(x)
    return [out] if torch.is_tensor(out) else list(out)


def style_loss(relit: Tensor, night: Tensor, features: Features = None) -> Tensor:
    r"""Style loss of the relit image against the night image of the same batch (paper Eq. 5).

    .. math::

        \mathcal{L}_{style} = \frac{1}{N} \sum_{b=1}^{N} \big\lVert G(R(I)_b) - G(I_{tn,b}) \big\rVert_F

    ``G`` is :func:`gram_matrix`; the paper's ``‖·‖₂`` of a matrix is read as the Frobenius norm, and ``1/N`` as
    the mean over the ``N`` images of the batch (the paper does not define ``N``). The paper names no feature
    network: by default the Gram is taken over the image's own channels; ``features`` (e.g.
    :func:`vgg_style_features`) maps an image to a map or a list of maps, whose terms are summed. The night image
    is the target: it is detached.

    Args:
        relit: ``R(I)``, ``(B, C, H, W)``.
        night: ``(B, C, H', W')`` or ``(1, C, H', W')`` (broadcast); its size may differ from ``relit``'s.
        features: optional feature network.

    Returns:
        Scalar.
    """
    _check_image("style_loss", relit)
    _check_image("style_loss", night)
    if night.shape[0] not in (1, relit.shape[0]) or night.shape[1] != relit.shape[1]:
        raise ValueError(f"style_loss: night images {tuple(night.shape)} do not match relit images "
                         f"{tuple(relit.shape)} (batch must be equal or 1, channels equal)")
    loss = relit.new_zeros(())
    for fr, fn in zip(_feature_list(relit, features), _feature_list(night.detach(), features)):
        diff = gram_matrix(fr) - gram_matrix(fn)
        loss = loss + torch.linalg.vector_norm(diff.flatten(1), dim=1).mean()
    return loss


def night_mean(night: Tensor) -> Tensor:
    """``E``: the mean intensity of the batch's night images — in a distributed run, of every process's share of
    the batch (shares of one size; a collective, every process calls it)."""
    mean = night.detach().mean()
    if dist.is_distributed():
        mean = dist.sum_over_ranks(mean) / dist.world_size()
    return mean


class _VGGFeatures(nn.Module):
    def __init__(self, layers: nn.Sequential, taps: Sequence[int]) -> None:
        super().__init__()
        self.layers, self.taps = layers, tuple(taps)

    def forward(self, x: Tensor) -> List[Tensor]:
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def vgg_style_features() -> nn.Module:
    """Frozen VGG-16 (ImageNet weights from torchvision) returning relu1_2, relu2_2, relu3_3 and relu4_3.

    The input must be ImageNet-normalised. The weights download on first use (into ``$TORCH_HOME``); without them
    and without internet this raises a :class:`RuntimeError` that says so.
    """
    import torchvision

    weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # URLError, OSError, hash mismatch ...
        raise RuntimeError(
            "style loss with VGG features: could not load torchvision's VGG-16 ImageNet weights "
            f"({weights.url}); they download on first use into $TORCH_HOME and need internet once "
            f"(or use the default image-channel Gram): {type(e).__name__}: {e}"
        ) from e
    vgg = torchvision.models.vgg16()
    vgg.load_state_dict(state)
    net = _VGGFeatures(vgg.features[:23], taps=(3, 8, 15, 22)).eval()
    net.requires_grad_(False)
    return net


# ------------------------------------------------------------------------------------------------ re-weighting

def class_pixel_counts(label: Tensor, num_classes: int = 19, ignore_index: int = IGNORE) -> Tensor:
    """Pixels per class in label maps (accumulate these over a data set, then :func:`class_shares`).

    Args:
        label: integer train ids, any shape; ``ignore_index`` pixels are not counted.
        num_classes: ``C``.

    Returns:
        ``(C,)`` int64.
    """
    if label.is_floating_point():
        raise ValueError(f"class_pixel_counts expects integer labels, got {label.dtype}")
    t = label.reshape(-1).long()
    t = t[t != ignore_index]
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        raise ValueError(f"class_pixel_counts: label has ids outside [0, {num_classes}) that are not "
                         f"ignore_index={ignore_index}: {sorted(set(t[bad].tolist()))[:10]}")
    return torch.bincount(t, minlength=num_classes).cpu()


def class_shares(counts: Tensor) -> Tensor:
    """``a_k = n_k / Σ_j n_j``: the share of labelled pixels of class ``k``. ``counts`` ``(C,)``; returns float64."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("class_shares: no labelled pixels were counted")
    return counts / total


def class_weights(shares: Union[Sequence[float], Tensor] = CITYSCAPES_CLASS_SHARES, s: float = 0.1) -> Tensor:
    r"""Class re-weighting ``w_k`` from the source class shares ``a_k`` (DANNet/DANIA).

    .. math::

        w'_k = -\log a_k, \qquad w_k = \frac{w'_k - \operatorname{mean}(w')}{\operatorname{std}(w')} \, s + 1

    with the unbiased standard deviation over the ``C`` classes. Rare classes get ``w_k > 1``.

    Args:
        shares: ``a_k``, ``(C,)`` (default: :data:`CITYSCAPES_CLASS_SHARES`); only ratios matter.
        s: spread (0.1 in training; at test time 0.14 PSPNet, 0.10 RefineNet, 0.12 DeepLab-v2).

    Returns:
        ``(C,)`` float64.
    """
    a = torch.as_tensor(shares, dtype=torch.float64)
    if a.dim() != 1 or a.numel() < 2:
        raise ValueError(f"class_weights expects (C,) shares with C >= 2, got shape {tuple(a.shape)}")
    zero = (a <= 0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"class_weights: classes {zero} have share <= 0 (-log a_k is undefined); "
                         "every class needs labelled pixels")
    w = -a.log()
    return (w - w.mean()) / w.std() * s + 1.0


def _weights(weights: Optional[Union[Sequence[float], Tensor]], like: Tensor, n: int, who: str) -> Tensor:
    if weights is None:
        return like.new_ones(n)
    w = torch.as_tensor(weights).to(device=like.device, dtype=like.dtype)
    if w.shape != (n,):
        raise ValueError(f"{who}: weights must have shape ({n},), got {tuple(w.shape)}")
    return w


# ---------------------------------------------------------------------------------------------------- source

def weighted_cross_entropy(logits: Tensor, target: Tensor, weights: Optional[Union[Sequence[float], Tensor]] = None,
                           normalize: str = "paper", ignore_index: int = IGNORE) -> Tensor:
    r"""Class-weighted cross-entropy on the labelled source (paper Eq. 8).

    .. math::

        \mathcal{L}_{seg}^{paper} = -\frac{1}{N |C|} \sum_{i=1}^{N} \sum_{c \in C} w_c \, y_{c,i} \log P_{c,i},
        \qquad
        \mathcal{L}_{seg}^{torch} = -\frac{\sum_i w_{y_i} \log P_{y_i,i}}{\sum_i w_{y_i}}

    ``N`` is the number of labelled (not ``ignore_index``) pixels of the batch, ``|C|`` the number of classes. In a
    distributed run the batch is every process's share together: each process divides by the per-process mean of
    ``N`` (of ``Σ w_y`` for ``"torch"``; :func:`simmm.dist.per_process`), so the gradients DDP averages are those
    of the whole batch.
    ``normalize="paper"`` (default) divides by ``N·|C|`` as Eq. 8 does (as recorded in METHOD.md §5; ``|C|``
    times smaller than an unweighted mean); ``"torch"`` is ``F.cross_entropy(weight=w)`` (DANNet's code), dividing
    by the summed weights. With no labelled pixel the paper form returns 0 (with graph).

    Args:
        logits: ``(B, C, H, W)``.
        target: ``(B, H, W)`` train ids.
        weights: ``w_k``, ``(C,)``; ``None`` = all 1.
        normalize: ``"paper"`` or ``"torch"``.

    Returns:
        Scalar.
    """
    if normalize not in ("paper", "torch"):
        raise ValueError(f"weighted_cross_entropy: normalize must be 'paper' or 'torch', got {normalize!r}")
    c = logits.shape[1]
    w = _weights(weights, logits, c, "weighted_cross_entropy")
    if normalize == "torch" and not dist.is_distributed():
        return F.cross_entropy(logits, target, weight=w, ignore_index=ignore_index)
    nll = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")  # 0 at ignored pixels
    valid = target != ignore_index
    wmap = w[torch.where(valid, target, 0)] * valid
    if normalize == "torch":  # distributed: the summed weights of the whole batch (simmm.dist.per_process)
        return (wmap * nll).sum() / dist.per_process(wmap.sum())
    return (wmap * nll).sum() / (dist.per_process(valid.sum()).clamp(min=1) * c)


# ---------------------------------------------------------------------------------------------------- static

def _valid_mask(valid: Optional[Tensor], shape: torch.Size) -> Optional[Tensor]:
    if valid is None:
        return None
    if valid.dim() == 4 and valid.shape[1] == 1:
        valid = valid[:, 0]
    if valid.shape != shape:
        raise ValueError(f"fuse_pseudo_label: valid mask must be (B, H, W) = {tuple(shape)}, got {tuple(valid.shape)}")
    return valid.bool()


def fuse_probabilities(night_prob: Tensor, day_prob: Tensor, valid: Optional[Tensor] = None, h1: float = 0.8,
                       h2: float = 0.6, u: float = 0.4, num_static: int = NUM_STATIC) -> Tensor:
    r"""The fused day–night class probabilities of DANIA Eq. 11, per pixel:

    .. math::

        F_c = h_c P'_{td,c} + (1 - h_c) P_{tn,c}, \quad
        h_c = \begin{cases} h_1 & P'_{td,c} > u \\ h_2 & \text{else} \end{cases}
        \quad (c \text{ static}), \qquad F_c = P_{tn,c} \quad (c \text{ dynamic})

    Where ``valid`` is false (warp holes) the night prediction stands alone: ``P'_td := P_tn`` there, so
    ``F = P_tn`` (paper §3.5.3). Used by the static loss's pseudo label (:func:`fuse_pseudo_label`) and by the
    day–night evaluation (the day partner fused at test time).

    Args:
        night_prob: ``(B, C, H, W)`` probabilities of the night image ``P_tn``.
        day_prob: ``(B, C, H, W)`` probabilities of the day image warped to the night view ``P'_td``.
        valid: ``(B, H, W)`` (or ``(B, 1, H, W)``) bool, false at warp holes; ``None`` = no holes.
        h1, h2, u: fusion weights and threshold (0.8, 0.6, 0.4).
        num_static: the first ``num_static`` train ids are static (11).

    Returns:
        ``(B, C, H, W)`` in ``night_prob``'s dtype; differentiable in both inputs (callers detach them).
    """
    if night_prob.dim() != 4 or day_prob.shape != night_prob.shape:
        raise ValueError(f"fuse_probabilities: night {tuple(night_prob.shape)} and day {tuple(day_prob.shape)} "
                         f"probabilities must both be (B, C, H, W)")
    s = num_static
    p_tn, p_td = night_prob, day_prob.to(night_prob.dtype)
    mask = _valid_mask(valid, night_prob.shape[:1] + night_prob.shape[2:])
    if mask is not None:
        p_td = torch.where(mask[:, None], p_td, p_tn)
    h = torch.where(p_td[:, :s] > u, h1, h2).to(p_tn.dtype)
    return torch.cat([h * p_td[:, :s] + (1 - h) * p_tn[:, :s], p_tn[:, s:]], dim=1)


@torch.no_grad()
def fuse_pseudo_label(night_logits: Tensor, day_prob: Tensor, valid: Optional[Tensor] = None,
                      weights: Optional[Union[Sequence[float], Tensor]] = None, h1: float = 0.8, h2: float = 0.6,
                      u: float = 0.4, fill_holes: bool = False, num_static: int = NUM_STATIC,
                      ignore_index: int = IGNORE) -> Tensor:
    r"""Pseudo label of the night image from the fused day and night predictions (DANIA Eq. 11).

    The label is ``argmax_c w_c F_c`` over all ``C`` classes, ``F`` the fusion of :func:`fuse_probabilities`
    with ``P_tn`` the softmax of the night logits; pixels whose argmax is a dynamic class (``≥ num_static``)
    become ``ignore_index``. Both inputs are detached (the whole function runs without grad).

    Warp holes (``valid`` false): ignored by default (paper §4.4); with ``fill_holes=True`` the night prediction
    fills them through the fusion — ``P'_td := P_tn`` there, so ``F = P_tn`` (paper §3.5.3).

    Args:
        night_logits: ``(B, C, H, W)`` logits of the night image.
        day_prob: ``(B, C, H, W)`` probabilities of the day image, warped to the night view.
        valid: ``(B, H, W)`` (or ``(B, 1, H, W)``) bool, false at warp holes; ``None`` = no holes.
        weights: ``w_k``, ``(C,)``; ``None`` = all 1.
        h1, h2, u: fusion weights and threshold (0.8, 0.6, 0.4).
        fill_holes: see above.
        num_static: the first ``num_static`` train ids are static (11).

    Returns:
        ``(B, H, W)`` int64 labels in ``[0, num_static)`` or ``ignore_index``; a new tensor.
    """
    if night_logits.dim() != 4 or day_prob.shape != night_logits.shape:
        raise ValueError(f"fuse_pseudo_label: night logits {tuple(night_logits.shape)} and day probabilities "
                         f"{tuple(day_prob.shape)} must both be (B, C, H, W)")
    mask = _valid_mask(valid, night_logits.shape[:1] + night_logits.shape[2:])
    fused = fuse_probabilities(F.softmax(night_logits, dim=1), day_prob, mask if fill_holes else None, h1=h1,
                               h2=h2, u=u, num_static=num_static)
    fused = fused * _weights(weights, fused, fused.shape[1], "fuse_pseudo_label").view(1, -1, 1, 1)
    label = fused.argmax(dim=1)
    label[label >= num_static] = ignore_index
    if mask is not None and not fill_holes:
        label[~mask] = ignore_index
    return label


def static_focal_loss(night_logits: Tensor, label: Tensor, weights: Optional[Union[Sequence[float], Tensor]] = None,
                      gamma: float = 1.0, num_static: int = NUM_STATIC, eps: float = 1e-7) -> Tensor:
    r"""Static loss: focal loss on the static classes, pseudo label accepted over a 3×3 neighbourhood (DANNet/DANIA).

    .. math::

        P^S_{tn}(c, i) = w_c \operatorname{softmax}_{c' < 11}(z_{c'}(i))_c, \qquad
        p(c, i) = \max_{j \in \mathcal{N}(i)} o(c, j) \, P^S_{tn}(c, i), \\
        \mathcal{L}_{static} = -\frac{1}{N} \sum_{i} (1 - p_i)^\gamma \log p_i, \qquad p_i = \max_c p(c, i)

    ``z`` the night logits, ``o(c, j)`` the one-hot pseudo label at pixel ``j``, ``N(i)`` the pixel ``i`` and its 8
    neighbours: the prediction of class ``c`` at ``i`` counts if *any* pixel of the 3×3 neighbourhood (the centre
    included) carries ``c`` — a true union (``max_pool2d`` of the one-hot map). How METHOD.md §5 is read here:

    - the sum runs over the ``N`` pixels whose own label is a static class (``0 ≤ label < num_static``); any
      other label (the ignore index 255, a dynamic class; warp holes arrive as 255) is not in the loss and never
      counts as a neighbour; neighbours outside the image do not exist; ``1/N`` is the mean over those pixels of
      the whole batch (0, with graph, when there are none) — in a distributed run, of every process's share
      together (:func:`simmm.dist.per_process`);
    - the paper's sum over ``c`` would take ``log 0`` for classes absent from the neighbourhood; as DANNet's code
      does, one term per pixel is formed from ``p_i = max_c p(c, i)``, the best weighted probability among the
      classes present around ``i``;
    - ``w_c > 1`` can push ``p`` above 1: ``p`` is clamped to ``[eps, 1 − eps]`` (as in DANNet's code), so such a
      pixel costs about 0 and passes no gradient;
    - ``label`` is not modified.

    Piecewise differentiable in the logits (``max`` over classes, the clamp).

    Args:
        night_logits: ``(B, C, H, W)`` with ``C ≥ num_static``; only the first ``num_static`` channels are used.
        label: ``(B, H, W)`` pseudo label (e.g. :func:`fuse_pseudo_label`).
        weights: ``w_k`` for the static classes, ``(num_static,)`` or all ``(C,)`` (the first ``num_static`` are
            used); ``None`` = all 1.
        gamma: focal exponent ``γ`` (1; DANNet's code runs 0).
        eps: the clamp of ``p``.

    Returns:
        Scalar.
    """
    s = num_static
    if night_logits.dim() != 4 or night_logits.shape[1] < s:
        raise ValueError(f"static_focal_loss expects (B, C>={s}, H, W) logits, got {tuple(night_logits.shape)}")
    if label.shape != night_logits.shape[:1] + night_logits.shape[2:]:
        raise ValueError(f"static_focal_loss: label {tuple(label.shape)} does not match logits "
                         f"{tuple(night_logits.shape)}")
    if weights is not None and torch.as_tensor(weights).numel() > s:
        weights = torch.as_tensor(weights)[:s]
    w = _weights(weights, night_logits, s, "static_focal_loss")
    prob = F.softmax(night_logits[:, :s], dim=1) * w.view(1, -1, 1, 1)
    valid = (label >= 0) & (label < s)
    onehot = F.one_hot(torch.where(valid, label, 0).long(), s).permute(0, 3, 1, 2).to(prob.dtype)
    onehot = onehot * valid[:, None]
    union = F.max_pool2d(onehot, 3, stride=1, padding=1)  # padding counts as -inf: outside pixels never count
    p = (union * prob).max(dim=1).values.clamp(eps, 1 - eps)
    loss = -(1 - p).pow(gamma) * p.log()
    if dist.is_distributed():  # the mean over the whole batch of all processes (simmm.dist.per_process)
        return loss[valid].sum() / dist.per_process(valid.sum()).clamp(min=1)
    if not valid.any():
        return night_logits.sum() * 0
    return loss[valid].mean()


def static_loss(night_logits: Tensor, day_prob: Tensor, valid: Optional[Tensor] = None,
                weights: Optional[Union[Sequence[float], Tensor]] = None, h1: float = 0.8, h2: float = 0.6,
                u: float = 0.4, gamma: float = 1.0, fill_holes: bool = False, num_static: int = NUM_STATIC,
                ignore_index: int = IGNORE) -> Tensor:
    r"""Static loss on ``T_n``: :func:`static_focal_loss` of the night logits against :func:`fuse_pseudo_label`.

    .. math::

        \mathcal{L}_{static} = \mathrm{Focal}_{3\times3}\big(z_{tn}, \operatorname{argmax}_c w_c F_c\big)

    Args: as the two functions (``weights`` ``(C,)``: all classes for the fusion, the static ones for the loss).

    Returns:
        Scalar; gradient flows into ``night_logits`` through the focal term only.
    """
    label = fuse_pseudo_label(night_logits, day_prob, valid, weights, h1, h2, u, fill_holes, num_static,
                              ignore_index)
    return static_focal_loss(night_logits, label, weights, gamma, num_static)


# ----------------------------------------------------------------------------------------------- adversarial

def generator_adversarial_loss(*d_outputs: Tensor, source_label: float = 0.0) -> Tensor:
    r"""Least-squares adversarial loss of the generator (paper Eq. 14).

    .. math::

        \mathcal{L}_{adv} = \sum_{k} \operatorname{mean}\big( (D_k(P_{t_k}) - r)^2 \big), \qquad r = 0

    The generator pushes the discriminators' outputs on the target predictions (``D_d(P_td)``, ``D_n(P_tn)``) to
    the *source* label ``r``; the mean runs over the output map of each discriminator.

    Args:
        *d_outputs: one or more discriminator outputs ``(B, 1, h, w)``.
        source_label: ``r`` (0).

    Returns:
        Scalar.
    """
    if not d_outputs:
        raise ValueError("generator_adversarial_loss needs at least one discriminator output")
    return sum((d - source_label).square().mean() for d in d_outputs)


def discriminator_loss(d_source: Tensor, d_target: Tensor, source_label: float = 0.0,
                       target_label: float = 1.0) -> Tensor:
    r"""Least-squares loss of one discriminator (paper Eqs. 16, 17).

    .. math::

        \mathcal{L}_D = \tfrac12 \operatorname{mean}\big((D(P_s) - r)^2\big)
            + \tfrac12 \operatorname{mean}\big((D(P_t) - f)^2\big), \qquad r = 0,\ f = 1

    Args:
        d_source: ``D(P_s)``, the output on the (detached) source prediction.
        d_target: ``D(P_t)``, the output on the (detached) target prediction (``P_td`` for ``D_d``, ``P_tn`` for
            ``D_n``).

    Returns:
        Scalar.
    """
    return 0.5 * (d_source - source_label).square().mean() + 0.5 * (d_target - target_label).square().mean()


# --------------------------------------------------------------------------------------------------- modules

class TVLoss(nn.Module):
    """Module form of :func:`tv_loss`."""

    def forward(self, r: Tensor) -> Tensor:
        return tv_loss(r)


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss`."""

    def forward(self, image: Tensor, relit: Tensor) -> Tensor:
        return ssim_loss(image, relit)


def _check_norm(who: str, norm: str) -> None:
    if norm not in ("l1", "l2"):
        raise ValueError(f"{who}: exposure norm must be 'l1' or 'l2', got {norm!r}")


class PatchExposureLoss(nn.Module):
    """Module form of :func:`patch_exposure_loss`."""

    def __init__(self, patch: int = 32, norm: str = "l1") -> None:
        super().__init__()
        _check_norm("PatchExposureLoss", norm)
        self.patch, self.norm = int(patch), norm

    def forward(self, image: Tensor, mean: Union[float, Tensor]) -> Tensor:
        return patch_exposure_loss(image, mean, self.patch, self.norm)

    def extra_repr(self) -> str:
        return f"patch={self.patch}, norm={self.norm!r}"


class StyleLoss(nn.Module):
    """Module form of :func:`style_loss`; ``features="image"`` (default) or ``"vgg"`` (:func:`vgg_style_features`,
    built here: fails with a clear :class:`RuntimeError` when the weights cannot be loaded)."""

    def __init__(self, features: str = "image") -> None:
        super().__init__()
        if features not in ("image", "vgg"):
            raise ValueError(f"StyleLoss: features must be 'image' or 'vgg', got {features!r}")
        self.kind = features
        self.features = vgg_style_features() if features == "vgg" else None

    def forward(self, relit: Tensor, night: Tensor) -> Tensor:
        return style_loss(relit, night, self.features)

    def extra_repr(self) -> str:
        return f"features={self.kind!r}"


class LightLoss(nn.Module):
    r"""Light loss of one domain (DANNet/DANIA):

    .. math::

        \mathcal{L}_{light} = \alpha_{tv} \mathrm{TV}(r) + \alpha_{ssim} \mathcal{L}_{ssim}(I, R(I))
            + \alpha_{exp} \mathcal{L}_{exp}(R(I), E) + \alpha_{style} \mathcal{L}_{style}(R(I), I_{tn})

    with ``R(I) = I + r``, ``E = mean(I_tn)`` (:func:`night_mean`: all pixels and channels of this batch's night
    images — of every process's share in a distributed run —, a new value every iteration) and the style target
    the night images of the same batch (both detached).
    Paper weights ``α_tv, α_ssim, α_exp, α_style = 10, 1, 1, 10``; DANNet's code has no style term. A term whose
    weight is 0 is not computed and reported as 0.

    ``forward(image, r, night) -> (total, terms)``: ``terms`` maps ``"tv"``, ``"ssim"``, ``"exposure"``,
    ``"style"`` to the *unweighted*, detached values.

    Args:
        tv, ssim, exposure, style: the weights ``α``.
        exposure_norm: ``"l1"`` (paper, default) or ``"l2"`` (DANNet's code).
        patch: exposure block size (32).
        style_features: ``"image"`` (default) or ``"vgg"``, see :class:`StyleLoss`.
    """

    TERMS = ("tv", "ssim", "exposure", "style")

    def __init__(self, tv: float = 10.0, ssim: float = 1.0, exposure: float = 1.0, style: float = 10.0,
                 exposure_norm: str = "l1", patch: int = 32, style_features: str = "image") -> None:
        super().__init__()
        _check_norm("LightLoss", exposure_norm)
        self.weights: Dict[str, float] = {"tv": float(tv), "ssim": float(ssim), "exposure": float(exposure),
                                          "style": float(style)}
        self.exposure = PatchExposureLoss(patch, exposure_norm)
        self.style = StyleLoss(style_features) if style != 0 else None

    def forward(self, image: Tensor, r: Tensor, night: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        relit = image + r
        night = night.detach()
        fns = {
            "tv": lambda: tv_loss(r),
            "ssim": lambda: ssim_loss(image, relit),
            "exposure": lambda: self.exposure(relit, night_mean(night)),
            "style": lambda: self.style(relit, night),
        }
        total, terms = relit.new_zeros(()), {}
        for name in self.TERMS:
            if self.weights[name] == 0:
                terms[name] = relit.new_zeros(())
                continue
            value = fns[name]()
            total = total + self.weights[name] * value
            terms[name] = value.detach()
        return total, terms

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.weights.items())


class WeightedCrossEntropy(nn.Module):
    """Module form of :func:`weighted_cross_entropy`; ``weights`` (a buffer) default to
    :func:`class_weights` of the Cityscapes shares with ``s = 0.1``."""

    def __init__(self, weights: Optional[Union[Sequence[float], Tensor]] = None, normalize: str = "paper",
                 ignore_index: int = IGNORE) -> None:
        super().__init__()
        if normalize not in ("paper", "torch"):
            raise ValueError(f"WeightedCrossEntropy: normalize must be 'paper' or 'torch', got {normalize!r}")
        w = class_weights() if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.register_buffer("weights", w.float(), persistent=False)
        self.normalize, self.ignore_index = normalize, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return weighted_cross_entropy(logits, target, self.weights, self.normalize, self.ignore_index)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize!r}"


class StaticLoss(nn.Module):
    """Module form of :func:`static_loss`; ``weights`` ``(C,)`` (a buffer) default to :func:`class_weights` of the
    Cityscapes shares with ``s = 0.1``."""

    def __init__(self, weights: Optional[Union[Sequence[float], Tensor]] = None, h1: float = 0.8, h2: float = 0.6,
                 u: float = 0.4, gamma: float = 1.0, fill_holes: bool = False, num_static: int = NUM_STATIC,
                 ignore_index: int = IGNORE) -> None:
        super().__init__()
        w = class_weights() if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.register_buffer("weights", w.float(), persistent=False)
        self.h1, self.h2, self.u, self.gamma = float(h1), float(h2), float(u), float(gamma)
        self.fill_holes, self.num_static, self.ignore_index = bool(fill_holes), int(num_static), ignore_index

    def forward(self, night_logits: Tensor, day_prob: Tensor, valid: Optional[Tensor] = None) -> Tensor:
        return static_loss(night_logits, day_prob, valid, self.weights, self.h1, self.h2, self.u, self.gamma,
                           self.fill_holes, self.num_static, self.ignore_index)

    def extra_repr(self) -> str:
        return f"h1={self.h1}, h2={self.h2}, u={self.u}, gamma={self.gamma}, fill_holes={self.fill_holes}"


class GeneratorAdversarialLoss(nn.Module):
    """Module form of :func:`generator_adversarial_loss`."""

    def __init__(self, source_label: float = 0.0) -> None:
        super().__init__()
        self.source_label = float(source_label)

    def forward(self, *d_outputs: Tensor) -> Tensor:
        return generator_adversarial_loss(*d_outputs, source_label=self.source_label)


class DiscriminatorLoss(nn.Module):
    """Module form of :func:`discriminator_loss`."""

    def __init__(self, source_label: float = 0.0, target_label: float = 1.0) -> None:
        super().__init__()
        self.source_label, self.target_label = float(source_label), float(target_label)

    def forward(self, d_source: Tensor, d_target: Tensor) -> Tensor:
        return discriminator_loss(d_source, d_target, self.source_label, self.target_label)
