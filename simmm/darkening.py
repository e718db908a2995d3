r"""Darkening module D of SMM: an exposure-guided pixel-wise mapping (METHOD.md §4.1).

D takes a day image ``I`` in ``[0, 1]`` and an exposure map ``E`` and predicts two per-pixel, per-channel
adjustment maps

.. math::

    A = \tanh(o_{0:3}) \in (-1, 1), \qquad B = 0.95 + 0.05\,\sigma(o_{3:6}) \in [0.95, 1]

from the output ``o`` of a small depthwise-separable network, then applies the quadratic curve
``h(x, a) = x + a (x^2 - x)`` eight times:

* ``mapping="code"`` (the authors' code, default): ``y = B I``; ``y <- h(y, A)`` (8x); ``D(I) = y / B``.
* ``mapping="paper"`` (paper Eq.): ``x = I / B``; ``x <- h(x, A)`` (8x); ``D(I) = x B``.

The result is clamped to ``[0, 1]``.

Functional form: :func:`darken`; module forms: :class:`Darken` (the mapping only) and :class:`DarkeningNet`
(network + mapping). :func:`exposure_response` checks that a trained D follows its exposure input.

Video: D works on images. A batch of clips ``(B, 3, T, H, W)`` is darkened as ``B·T`` frames
(:func:`fold_clips`, then :func:`unfold_clips`), each clip's exposure given to all its frames
(:func:`clip_exposure`): one exposure map per clip, shared by its frames (METHOD.md §4.1).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from .exposure import expand_exposure

__all__ = ["MAPPINGS", "EXPOSURE_CHECK_LEVELS", "DarkeningOutput", "darken", "Darken", "DarkeningNet",
           "exposure_response", "guided_upsample", "fold_clips", "unfold_clips", "clip_exposure"]

MAPPINGS = ("code", "paper")
MAP_UPSAMPLING = ("bilinear", "guided")
GUIDED_EPS = 1e-3  # the guided filter's regulariser, squared luma units


class DarkeningOutput(NamedTuple):
    """What :class:`DarkeningNet` returns.

    Attributes:
        image: the darkened image ``D(I)``, ``(B, 3, H, W)``, in ``[0, 1]``.
        A: curve map, ``(B, 3, h, w)`` in ``(-1, 1)``, at the resolution the network ran at
            (``h, w = H, W`` unless ``map_scale < 1``).
        B: scale map, ``(B, 3, h, w)`` in ``[0.95, 1]``, same resolution as ``A``.
    """

    image: Tensor
    A: Tensor
    B: Tensor


def _check_mapping(mapping: str) -> None:
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")


def _curve(y: Tensor, A: Tensor, iterations: int) -> Tensor:
    """``y <- y + A (y^2 - y)``, ``iterations`` times, differentiable.

    Written as ``y <- y * (A y + (1 - A))`` so each iteration is one ``addcmul`` and one ``mul``:
    two new tensors per iteration (the ones autograd has to keep), no other temporaries.
    """
    one_minus_a = torch.rsub(A, 1)
    for _ in range(iterations):
        y = y * torch.addcmul(one_minus_a, A, y)
    return y


def _curve_inplace(y: Tensor, A: Tensor, iterations: int) -> Tensor:
    """Same arithmetic as :func:`_curve` (bitwise), in place on ``y``; for use without autograd."""
    shape = torch.broadcast_shapes(y.shape, A.shape)
    if y.shape != shape:
        y = y.expand(shape).clone()
    one_minus_a = torch.rsub(A, 1)
    t = torch.empty_like(y)
    for _ in range(iterations):
        torch.addcmul(one_minus_a, A, y, out=t)
        y.mul_(t)
    return y


def darken(image: Tensor, A: Tensor, B: Tensor, mapping: str = "code", iterations: int = 8,
           checkpoint: bool = False) -> Tensor:
    r"""Apply SMM's exposure-guided pixel-wise mapping.

    .. math::

        \text{code:}\quad y_0 = B I,\; y_{k+1} = y_k + A (y_k^2 - y_k),\;
            D(I) = \mathrm{clamp}(y_n / B, 0, 1)

        \text{paper:}\quad x_0 = I / B,\; x_{k+1} = x_k + A (x_k^2 - x_k),\;
            D(I) = \mathrm{clamp}(x_n B, 0, 1)

    Differentiable w.r.t. ``image``, ``A`` and ``B``. Without autograd (``torch.no_grad()`` or no input
    requiring grad) the iterations run in place.

    Args:
        image: ``(B, C, H, W)`` in ``[0, 1]`` (not clamped here; :class:`DarkeningNet` clamps its input).
        A: curve parameters, broadcastable to ``image`` (normally ``(B, C, H, W)`` in ``(-1, 1)``).
        B: scale parameters, broadcastable to ``image`` (normally ``(B, C, H, W)`` in ``[0.95, 1]``).
        mapping: ``"code"`` (default) or ``"paper"``.
        iterations: number of curve iterations ``n`` (SMM: 8).
        checkpoint: recompute the curve iterations in the backward pass instead of storing their
            ``2 n`` intermediate tensors (``torch.utils.checkpoint``): less activation memory, one more
            forward of the (cheap) curve.

    Returns:
        The darkened image, broadcast shape of the inputs, in ``[0, 1]``.
    """
    _check_mapping(mapping)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    needs_grad = torch.is_grad_enabled() and (image.requires_grad or A.requires_grad or B.requires_grad)
    y = image * B if mapping == "code" else image / B
    if not needs_grad:
        y = _curve_inplace(y, A, iterations)
        y = y.div_(B) if mapping == "code" else y.mul_(B)
        return y.clamp_(0.0, 1.0)
    if checkpoint:
        y = _checkpoint(_curve, y, A, iterations, use_reentrant=False)
    else:
        y = _curve(y, A, iterations)
    y = y / B if mapping == "code" else y * B
    return y.clamp(0.0, 1.0)


class Darken(nn.Module):
    """Module form of :func:`darken` (no parameters).

    ``forward(image, A, B)``: image ``(B, C, H, W)``, ``A``/``B`` broadcastable to it -> ``(B, C, H, W)``.
    """

    def __init__(self, mapping: str = "code", iterations: int = 8, checkpoint: bool = False) -> None:
        super().__init__()
        _check_mapping(mapping)
        self.mapping, self.iterations, self.checkpoint = mapping, int(iterations), bool(checkpoint)

    def forward(self, image: Tensor, A: Tensor, B: Tensor) -> Tensor:
        return darken(image, A, B, self.mapping, self.iterations, self.checkpoint)

    def extra_repr(self) -> str:
        return f"mapping={self.mapping!r}, iterations={self.iterations}, checkpoint={self.checkpoint}"


def _check_image(image: Tensor) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"DarkeningNet expects an RGB batch (B, 3, H, W), got shape {tuple(image.shape)}")


class SeparableBlock(nn.Module):
    """3x3 depthwise conv (``groups=in_ch``, bias) followed by a 1x1 pointwise conv (bias); stride 1."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class DarkeningNet(nn.Module):
    """SMM's darkening module D: map-estimation network plus the curve mapping of :func:`darken`.

    Network (the authors' design, 40,686 parameters at ``width=64``): 8 :class:`SeparableBlock` s,
    ReLU after all but the last,

    .. code-block:: text

        x0 = b0(I || E)            4 -> w
        x1..x4 = b1..b4 (chained)  w -> w
        x5 = b5([x3, x4])          2w -> w
        x6 = b6([x2, x5])          2w -> w
        o  = b7([x1, x6])          2w -> 6
        A = tanh(o[:, 0:3]),  B = 0.95 + 0.05 * sigmoid(o[:, 3:6])

    Args:
        width: channel width ``w`` of the network (SMM: 64).
        mapping: ``"code"`` (default, the authors' code) or ``"paper"``, see :func:`darken`.
        iterations: curve iterations (SMM: 8).
        map_scale: resolution at which ``A`` and ``B`` are estimated, as a fraction of the image size,
            in ``(0, 1]``. ``1.0`` (default) is the faithful full-resolution network. Below 1 the network
            runs on the image and ``E`` resized bilinearly (antialiased) by that factor, and ``A``, ``B``
            are upsampled bilinearly (``align_corners=False``) to the image before the mapping; the
            network's cost falls roughly with ``map_scale**2``. The returned ``A`` and ``B`` (on which the
            tent-TV and flexibility losses are computed) are the *low-resolution* maps.
        map_upsample: how maps estimated below full resolution reach the image: ``"bilinear"`` (default) or
            ``"guided"`` — fast guided upsampling (:func:`guided_upsample`) with the image's luma as the guide,
            so the maps' edges follow the image's.
        checkpoint_curve: recompute the curve iterations in backward (less memory), see :func:`darken`.
        channels_last: run the network on a channels-last input. ``None`` (default) turns it on for CPU
            tensors only, where PyTorch's depthwise and 1x1 convolutions are 2.5-3x faster in that layout
            (measured: batch 16 at 224^2, 2 cores); results agree with the NCHW layout to float rounding.
            The weights keep the default layout; ``A``, ``B`` and the image are returned NCHW-contiguous.

    Shapes:
        ``forward(image, exposure)``: ``image`` ``(B, 3, H, W)`` (clamped to ``[0, 1]`` first),
        ``exposure`` a number, ``(B,)`` scalars (broadcast to constant maps) or a ``(B, 1, H, W)`` map
        -> :class:`DarkeningOutput` (``image`` ``(B, 3, H, W)``, ``A``/``B`` ``(B, 3, h, w)``).
    """

    def __init__(self, width: int = 64, mapping: str = "code", iterations: int = 8, map_scale: float = 1.0,
                 checkpoint_curve: bool = False, channels_last: Optional[bool] = None,
                 map_upsample: str = "bilinear") -> None:
        super().__init__()
        _check_mapping(mapping)
        if not 0.0 < map_scale <= 1.0:
            raise ValueError(f"map_scale must be in (0, 1], got {map_scale}")
        if map_upsample not in MAP_UPSAMPLING:
            raise ValueError(f"map_upsample must be one of {', '.join(MAP_UPSAMPLING)}, got {map_upsample!r}")
        self.map_upsample = map_upsample
        if width < 1 or iterations < 0:
            raise ValueError(f"width must be >= 1 and iterations >= 0, got {width} and {iterations}")
        self.width, self.mapping, self.iterations = int(width), mapping, int(iterations)
        self.map_scale, self.checkpoint_curve = float(map_scale), bool(checkpoint_curve)
        self.channels_last = channels_last
        w = self.width
        self.blocks = nn.ModuleList(
            [SeparableBlock(4, w)]
            + [SeparableBlock(w, w) for _ in range(4)]
            + [SeparableBlock(2 * w, w), SeparableBlock(2 * w, w), SeparableBlock(2 * w, 6)]
        )
        self.relu = nn.ReLU(inplace=True)

    def map_size(self, height: int, width: int) -> Tuple[int, int]:
        """Size ``(h, w)`` at which ``A`` and ``B`` are estimated for an ``H x W`` image."""
        if self.map_scale == 1.0:
            return height, width
        return max(1, round(height * self.map_scale)), max(1, round(width * self.map_scale))

    def _network(self, x: Tensor) -> Tensor:
        b, r = self.blocks, self.relu
        x1 = r(b[1](r(b[0](x))))
        x2 = r(b[2](x1))
        x3 = r(b[3](x2))
        x4 = r(b[4](x3))
        x5 = r(b[5](torch.cat([x3, x4], dim=1)))
        x6 = r(b[6](torch.cat([x2, x5], dim=1)))
        return b[7](torch.cat([x1, x6], dim=1))

    def estimate_maps(self, image: Tensor, exposure: Union[float, Tensor]) -> Tuple[Tensor, Tensor]:
        """Run the network only: ``(A, B)``, each ``(B, 3, h, w)`` with ``(h, w) = map_size(H, W)``.

        ``image`` is clamped to ``[0, 1]``.
        """
        _check_image(image)
        return self._maps(image.clamp(0.0, 1.0), exposure)

    def _maps(self, image: Tensor, exposure: Union[float, Tensor]) -> Tuple[Tensor, Tensor]:
        n, _, H, W = image.shape
        h, w = self.map_size(H, W)
        if (h, w) != (H, W):
            image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        e = expand_exposure(exposure, n, h, w, like=image)
        x = torch.cat([image, e], dim=1)
        use_cl = self.channels_last if self.channels_last is not None else x.device.type == "cpu"
        if use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self._network(x)
        if use_cl:
            out = out.contiguous()
        # the maps in float32 even under autocast: in bf16, B's whole range [0.95, 1] holds only ~25 values, and
        # the curve raises it to the 8th power
        out = out.to(torch.promote_types(out.dtype, torch.float32))
        A = torch.tanh(out[:, 0:3])
        B = torch.sigmoid(out[:, 3:6]).mul(0.05).add(0.95)
        return A, B

    def forward(self, image: Tensor, exposure: Union[float, Tensor]) -> DarkeningOutput:
        _check_image(image)
        image = image.clamp(0.0, 1.0)
        A, B = self._maps(image, exposure)
        A_full, B_full = A, B
        if A.shape[-2:] != image.shape[-2:]:
            A_full, B_full = self.upsample_maps(torch.cat([A, B], dim=1), image).split(3, dim=1)
        out = darken(image, A_full, B_full, self.mapping, self.iterations, self.checkpoint_curve)
        return DarkeningOutput(out, A, B)

    def upsample_maps(self, maps: Tensor, image: Tensor) -> Tensor:
        """Maps ``(B, C, h, w)`` estimated at ``map_scale`` → the image's size, by ``map_upsample``."""
        if self.map_upsample == "bilinear":
            return F.interpolate(maps, size=image.shape[-2:], mode="bilinear", align_corners=False)
        from kornia.color import rgb_to_grayscale

        # in float32 even under autocast: the window variances are differences of means of squares, which bf16
        # (8 bits of mantissa) turns into noise
        with torch.autocast(image.device.type, enabled=False):
            return guided_upsample(maps.float(), rgb_to_grayscale(image.float()))

    def extra_repr(self) -> str:
        return (f"width={self.width}, mapping={self.mapping!r}, iterations={self.iterations}, "
                f"map_scale={self.map_scale}, map_upsample={self.map_upsample!r}, "
                f"checkpoint_curve={self.checkpoint_curve}, "
                f"channels_last={self.channels_last}")


def guided_upsample(maps: Tensor, guide: Tensor, eps: float = GUIDED_EPS, radius: int = 1) -> Tensor:
    """Fast guided upsampling (He & Sun, "Fast Guided Filter", 2015) of low-resolution ``maps`` ``(B, C, h, w)``
    to the size of ``guide`` ``(B, 1, H, W)``. At low resolution, in each ``(2r+1)²`` window, each map is fitted
    as a linear function of the guide (area-averaged to ``h × w``):

        a = cov(g, m) / (var(g) + eps),  b = mean(m) − a·mean(g)

    then the window-averaged ``a``, ``b`` are upsampled bilinearly and applied to the full-resolution guide:
    ``out = a↑ · G + b↑``. A constant map stays constant; a map that follows the guide at low resolution follows
    its full-resolution edges. Differentiable in ``maps``. Window means by kornia's ``box_blur`` (reflect border).
    """
    from kornia.filters import box_blur

    size = tuple(guide.shape[-2:])
    k = 2 * radius + 1
    g = F.interpolate(guide, size=maps.shape[-2:], mode="area")

    def mean(x: Tensor) -> Tensor:
        return box_blur(x, k, border_type="reflect")

    mean_g, mean_m = mean(g), mean(maps)
    a = (mean(g * maps) - mean_g * mean_m) / (mean(g * g) - mean_g * mean_g + eps)
    b = mean_m - a * mean_g

    def up(x: Tensor) -> Tensor:
        return F.interpolate(mean(x), size=size, mode="bilinear", align_corners=False)

    return up(a) * guide + up(b)


def fold_clips(clips: Tensor) -> Tensor:
    """Clips ``(B, C, T, H, W)`` → frames ``(B·T, C, H, W)``, clip by clip (frame ``t`` of clip ``b`` is row
    ``b·T + t``)."""
    if clips.dim() != 5:
        raise ValueError(f"fold_clips expects clips (B, C, T, H, W), got shape {tuple(clips.shape)}")
    b, c, t, h, w = clips.shape
    return clips.transpose(1, 2).reshape(b * t, c, h, w)


def unfold_clips(frames: Tensor, length: int) -> Tensor:
    """Frames ``(B·T, C, H, W)`` (as :func:`fold_clips` lays them out) → clips ``(B, C, T, H, W)``,
    ``T = length``."""
    n, c, h, w = frames.shape
    if n % length:
        raise ValueError(f"unfold_clips: {n} frames are not whole clips of {length}")
    return frames.reshape(n // length, length, c, h, w).transpose(1, 2)


def clip_exposure(exposure: Tensor, length: int) -> Tensor:
    """Each clip's exposure for each of its ``length`` frames, in :func:`fold_clips` order: per-clip scalars
    ``(B,)`` → ``(B·T,)``; a map ``(B, 1, H, W)`` → ``(B·T, 1, H, W)``; frames sharing one map ``(B, T, 1, H, W)``
    (:func:`simmm.exposure.compound_exposure` with ``frames=T``) → ``(B·T, 1, H, W)``."""
    if exposure.dim() == 5:
        if exposure.shape[1] != length:
            raise ValueError(f"clip_exposure: a map for {exposure.shape[1]} frames, clips of {length}")
        return exposure.reshape(-1, *exposure.shape[2:])
    return exposure.repeat_interleave(length, dim=0)


EXPOSURE_CHECK_LEVELS = (0.05, 0.1, 0.2, 0.35)


@torch.no_grad()
def exposure_response(darkener: nn.Module, images, levels=EXPOSURE_CHECK_LEVELS, batch_size: int = 64) -> list:
    """Does D follow ``E``? Mean brightness of ``D(I, E)`` over ``images`` at each exposure level.

    Brightness is the mean over channels and pixels of the darkened image, averaged over the images (the quantity
    an exposure level asks for, METHOD.md §4.1). Runs D in eval mode on the device of its parameters, batch by batch,
    and restores its training mode.

    Args:
        darkener: a :class:`DarkeningNet` (or any module ``(images, exposure) -> output with .image``).
        images: ``(N, 3, H, W)`` in ``[0, 1]``, or a list of ``(3, H, W)`` images whose sizes may differ (each
            then goes through D on its own); normally held-out photos D was not trained on.
        levels: the exposure levels ``E`` to try (default 0.05, 0.1, 0.2, 0.35).
        batch_size: images per forward pass.

    Returns:
        One dict per level: ``{"exposure": E, "mean": brightness, "error": brightness - E, "image_std": std over
        the images of their own brightness}``.
    """
    if isinstance(images, (list, tuple)):
        if not images or any(im.dim() != 3 for im in images):
            raise ValueError("exposure_response expects a non-empty list of (3, H, W) images")
        if len({tuple(im.shape) for im in images}) == 1:
            images = torch.stack(list(images))
        else:
            batches = [im[None] for im in images]
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[0] == 0:
            raise ValueError(f"exposure_response expects a non-empty (N, 3, H, W) batch, got {tuple(images.shape)}")
        batches = images.split(batch_size)
    param = next(darkener.parameters(), None)
    device = param.device if param is not None else batches[0].device
    was_training = darkener.training
    darkener.eval()
    try:
        rows = []
        for level in levels:
            means = []
            for chunk in batches:
                chunk = chunk.to(device)
                e = torch.full((chunk.shape[0],), float(level), device=device)
                means.append(darkener(chunk, e).image.float().mean(dim=(1, 2, 3)).cpu())
            m = torch.cat(means)
            mean = float(m.mean())
            rows.append({"exposure": float(level), "mean": mean, "error": mean - float(level),
                         "image_std": float(m.std()) if m.numel() > 1 else 0.0})
        return rows
    finally:
        darkener.train(was_training)
