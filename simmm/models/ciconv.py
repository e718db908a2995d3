r"""CIConv: a colour-invariant first layer (Lengyel et al., "Zero-Shot Day-Night Domain Adaptation with a Physics
Prior", ICCV 2021), the baseline of issue 10 §1 that the SMM paper compares with.

The image is turned into the Gaussian colour model's three channels

.. math::

    \begin{pmatrix} E \\ E_\lambda \\ E_{\lambda\lambda} \end{pmatrix} = M \begin{pmatrix} R \\ G \\ B \end{pmatrix},
    \qquad M = \begin{pmatrix} 0.06 & 0.63 & 0.27 \\ 0.30 & 0.04 & -0.35 \\ 0.34 & -0.60 & 0.17 \end{pmatrix},

each channel is filtered with a Gaussian of scale :math:`\sigma = 2^s` and its two first derivatives (``s`` is
learnable, clamped to ``[-2.5, 2.5]``; kernels truncated at :math:`\lceil k\sigma + 0.5\rceil` pixels, ``k = 3``; the
Gaussian normalised to sum 1, each derivative kernel to absolute sum 1), and the **W invariant**

.. math::

    W = \sum_{c \in \{E, E_\lambda, E_{\lambda\lambda}\}} \Big(\frac{c_x}{E + \epsilon}\Big)^2
        + \Big(\frac{c_y}{E + \epsilon}\Big)^2

(edges of the spectral derivatives relative to the local intensity; invariant to a global scaling of the light) is
returned as ``instance_norm(log(W + eps))``, one channel, which replaces the image at the backbone's first
convolution. ``E`` in the denominators is the Gaussian-smoothed intensity. Like the authors' code, the filters pad
with zeros (so image borders carry a strong edge).

In a model (``model.ciconv: true`` in any task's recipe) the layer is the model's input stage, in place of the
ImageNet normalisation (:func:`input_stage`): as in the authors' code it sees the images as they are in ``[0, 1]``
(their CODaN, segmentation and place-recognition code all skip the mean/std normalisation for the invariant; a
mean shift would also break the invariance to the light's intensity), and the backbone is built with one input
channel (:func:`backbone_options`), its pretrained RGB first convolution summed over R, G, B. The scale starts at
0 (sigma 1), the authors' value in every task, and trains with the model's other weights (same LR and weight
decay, as theirs does).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones import Normalize

__all__ = ["GAUSSIAN_COLOR_MODEL", "gaussian_derivative_basis", "gaussian_color_model", "w_invariant", "ciconv",
           "CIConv", "CHANNELS", "input_stage", "backbone_options"]

GAUSSIAN_COLOR_MODEL = ((0.06, 0.63, 0.27), (0.30, 0.04, -0.35), (0.34, -0.60, 0.17))
"""RGB -> (E, E_lambda, E_lambdalambda), the Gaussian colour model's matrix as the CIConv code uses it."""

SCALE_LIMIT = 2.5
EPS = 1e-5
CHANNELS = 1
"""Channels of the invariant: the backbone's ``in_chans`` behind a CIConv layer."""


def gaussian_derivative_basis(sigma: Tensor, k: float = 3.0) -> Tensor:
    """``(3, 1, K, K)``: the Gaussian G, dG/dy (along rows) and dG/dx (along columns) at scale ``sigma`` (a 0-d
    tensor; the kernels are differentiable in it), ``K = 2·ceil(k·sigma + 0.5) + 1``; G sums to 1, each derivative
    has absolute sum 1 (and, by its antisymmetry, sum 0)."""
    half = math.ceil(k * float(sigma.detach()) + 0.5)
    t = torch.arange(-half, half + 1, dtype=sigma.dtype, device=sigma.device)
    y, x = torch.meshgrid(t, t, indexing="ij")
    g = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
    dy, dx = -y * g, -x * g
    basis = torch.stack([g / g.sum(), dy / dy.abs().sum(), dx / dx.abs().sum()])
    return basis[:, None]


def gaussian_color_model(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` RGB -> ``(B, 3, H, W)`` (E, E_lambda, E_lambdalambda)."""
    m = torch.tensor(GAUSSIAN_COLOR_MODEL, dtype=images.dtype, device=images.device)
    return torch.einsum("oc,bchw->bohw", m, images)


def w_invariant(images: Tensor, scale: Tensor, k: float = 3.0, eps: float = EPS) -> Tensor:
    """The W invariant of ``(B, 3, H, W)`` RGB images, ``(B, 1, H, W)`` (module docstring); ``scale`` is ``s`` with
    ``sigma = 2^s``, clamped to ``[-2.5, 2.5]``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"w_invariant expects RGB images (B, 3, H, W), got {tuple(images.shape)}")
    sigma = torch.pow(2.0, scale.clamp(-SCALE_LIMIT, SCALE_LIMIT).reshape(()).to(images.dtype))
    basis = gaussian_derivative_basis(sigma, k)
    b, _, h, w = images.shape
    channels = gaussian_color_model(images).reshape(b * 3, 1, h, w)
    out = F.conv2d(channels, basis, padding=basis.shape[-1] // 2).reshape(b, 3, 3, h, w)  # (B, channel, G/dy/dx)
    e = out[:, 0, 0]
    derivatives = out[:, :, 1:]  # (B, 3 channels, 2 directions, H, W)
    return (derivatives / (e[:, None, None] + eps)).pow(2).sum(dim=(1, 2))[:, None]


def ciconv(images: Tensor, scale: Tensor, k: float = 3.0, eps: float = EPS) -> Tensor:
    """The CIConv layer: ``instance_norm(log(W + eps))`` of :func:`w_invariant`, ``(B, 1, H, W)``."""
    return F.instance_norm(torch.log(w_invariant(images, scale, k, eps) + eps))


class CIConv(nn.Module):
    """Module form of :func:`ciconv` with the learnable scale ``s`` (initial ``scale``; sigma = 2^s)."""

    def __init__(self, scale: float = 0.0, k: float = 3.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(scale)]))
        self.k = k

    def forward(self, images: Tensor) -> Tensor:
        # ratios of small derivatives to the intensity and their log: always in float32, also under autocast
        with torch.autocast(images.device.type, enabled=False):
            return ciconv(images.float() if images.dtype in (torch.float16, torch.bfloat16) else images,
                          self.scale, self.k)

    def extra_repr(self) -> str:
        return f"invariant=W, scale={float(self.scale.detach()):.3f}, k={self.k}"


def input_stage(net: nn.Module, ciconv: bool = False) -> nn.Module:
    """What a model puts in front of its backbone ``net`` for images in ``[0, 1]``: :class:`CIConv` (initial scale
    0) with ``ciconv``, else the normalisation ``net``'s weights expect (:meth:`Normalize.for_model`)."""
    return CIConv() if ciconv else Normalize.for_model(net)


def backbone_options(ciconv: bool = False) -> dict:
    """timm options of a backbone behind :func:`input_stage`: ``in_chans=1`` with ``ciconv``, none otherwise."""
    return {"in_chans": CHANNELS} if ciconv else {}
