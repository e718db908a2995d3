r"""Exposure levels for the darkening module D (SMM, METHOD.md §4.1).

D is told how dark to make an image by an exposure map ``E`` of one channel, the same size as the image.

* While D itself is trained, every image gets one scalar ``E ~ U[0, 0.5]`` (:func:`sample_exposure`),
  broadcast to a constant map (:func:`expand_exposure`).
* When the trained D generates night views for the feature extractor, the exposure is *compound*
  (paper Eq. 13, :func:`compound_exposure`):

  .. math::

      E'(x) = e + n_{pix}(x) + \mathrm{up}(n_{patch})(x), \qquad
      e \sim U(0, 0.2),\; n_{pix} \sim N(0, 0.025^2),\; n_{patch} \sim N(0, 0.025^2)

  where ``n_patch`` is drawn on a grid of ``ceil(H / s) x ceil(W / s)`` cells (``s`` = 16 for classification,
  32 for place recognition, 64 for segmentation) and bilinearly upsampled (``align_corners=False``).

Every sampler takes an optional :class:`torch.Generator`. With a generator the numbers are drawn on the
generator's device and then moved to ``device``, so one seed gives the same exposures on every device;
without one they are drawn from the global RNG directly on ``device``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "sample_exposure",
    "compound_exposure",
    "expand_exposure",
    "ExposureSampler",
    "CompoundExposure",
]

ExposureLike = Union[float, Tensor]


def _draw_device(generator: Optional[torch.Generator], device) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _finish(t: Tensor, generator: Optional[torch.Generator], device) -> Tensor:
    if generator is not None and device is not None:
        t = t.to(device)
    return t


def _check_range(name: str, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{name}: expected a finite range low <= high, got ({low}, {high})")


def sample_exposure(
    batch: int,
    low: float = 0.0,
    high: float = 0.5,
    generator: Optional[torch.Generator] = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """One exposure level per image, ``E ~ U[low, high]`` (used while D is trained).

    Args:
        batch: number of images ``B``.
        low, high: the range of the uniform distribution (SMM: ``[0, 0.5]``).
        generator: optional RNG; numbers are drawn on its device, then moved to ``device``.
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        Tensor of shape ``(B,)``.
    """
    _check_range("sample_exposure", low, high)
    u = torch.rand(batch, generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return _finish(u.mul_(high - low).add_(low), generator, device)


def compound_exposure(
    batch: int,
    height: int,
    width: int,
    base: Tuple[float, float] = (0.0, 0.2),
    pixel_std: float = 0.025,
    patch_std: float = 0.025,
    patch_scale: int = 16,
    frames: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Compound exposure map ``E'`` of SMM, paper Eq. 13.

    .. math::

        E'(x) = e + n_{pix}(x) + \mathrm{up}(n_{patch})(x),\quad
        e \sim U(\text{base}),\; n_{pix} \sim N(0, \sigma_{pix}^2),\;
        n_{patch} \sim N(0, \sigma_{patch}^2)
            \ \text{on a } \lceil H/s \rceil \times \lceil W/s \rceil \text{ grid}

    The low-frequency term is drawn per cell of ``patch_scale`` pixels and upsampled bilinearly
    (``align_corners=False``), as the paper describes. Interpolating between independent cells lowers the
    per-pixel standard deviation of that term to about ``2/3 * patch_std`` (exactly ``patch_std`` when
    ``patch_scale == 1``); ``patch_std`` is the std of the cells, not of the upsampled field.
    The map is not clipped: values slightly below 0 are possible, as in the paper.

    Args:
        batch: number of images (or clips) ``B``.
        height, width: size ``H x W`` of the map.
        base: range of the per-image uniform level (paper: ``(0, 0.2)``).
        pixel_std: std of the per-pixel Gaussian noise.
        patch_std: std of the low-frequency Gaussian noise (per cell).
        patch_scale: cell size ``s`` in pixels (16 classification, 32 place recognition, 64 segmentation).
        frames: for video, the number of frames ``T``; one map is drawn per clip and shared by all frames.
        generator: optional RNG; numbers are drawn on its device, then moved to ``device``.
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        ``(B, 1, H, W)``; with ``frames=T``, ``(B, T, 1, H, W)`` where all ``T`` frames are the same map
        (an expanded view, no copy: call ``.contiguous()`` or ``.reshape(B * T, 1, H, W)`` to materialise).
    """
    _check_range("compound_exposure base", float(base[0]), float(base[1]))
    if pixel_std < 0 or patch_std < 0:
        raise ValueError(f"compound_exposure: stds must be >= 0, got {pixel_std} and {patch_std}")
    if patch_scale < 1:
        raise ValueError(f"compound_exposure: patch_scale must be >= 1, got {patch_scale}")
    if frames is not None and frames < 1:
        raise ValueError(f"compound_exposure: frames must be >= 1, got {frames}")
    dev = _draw_device(generator, device)
    kw = dict(generator=generator, device=dev, dtype=dtype)
    lo, hi = float(base[0]), float(base[1])
    # Draw order is fixed (level, pixel, patch) so a seeded generator gives a reproducible map.
    level = torch.rand(batch, 1, 1, 1, **kw).mul_(hi - lo).add_(lo)
    e = torch.randn(batch, 1, height, width, **kw).mul_(pixel_std).add_(level)
    gh, gw = math.ceil(height / patch_scale), math.ceil(width / patch_scale)
    patch = torch.randn(batch, 1, gh, gw, **kw).mul_(patch_std)
    if (gh, gw) != (height, width):
        patch = F.interpolate(patch, size=(height, width), mode="bilinear", align_corners=False)
    e.add_(patch)
    e = _finish(e, generator, device)
    if frames is not None:
        e = e.unsqueeze(1).expand(batch, frames, 1, height, width)
    return e


def expand_exposure(exposure: ExposureLike, batch: int, height: int, width: int,
                    like: Optional[Tensor] = None) -> Tensor:
    """Bring an exposure given in any accepted form to a ``(B, 1, H, W)`` map.

    Accepted forms: a Python number or 0-d tensor (same level for every image), ``(B,)``, ``(B, 1)`` or
    ``(B, 1, 1, 1)`` scalars per image (returned as an expanded view, no copy), or a ``(B, 1, h, w)`` map
    (resized bilinearly, ``align_corners=False``, when ``(h, w) != (H, W)``; antialiased when shrinking).

    Args:
        exposure: the exposure.
        batch, height, width: target ``B``, ``H``, ``W``.
        like: optional tensor whose dtype and device the result takes.

    Returns:
        Tensor of shape ``(B, 1, H, W)``.
    """
    if not torch.is_tensor(exposure):
        exposure = torch.tensor(float(exposure))
    if like is not None:
        exposure = exposure.to(device=like.device, dtype=like.dtype)
    e = exposure
    if e.dim() == 0:
        return e.reshape(1, 1, 1, 1).expand(batch, 1, height, width)
    if e.shape[0] != batch:
        raise ValueError(f"exposure has batch size {e.shape[0]}, expected {batch} (shape {tuple(e.shape)})")
    if e.dim() == 1 or (e.dim() == 2 and e.shape[1] == 1):
        return e.reshape(batch, 1, 1, 1).expand(batch, 1, height, width)
    if e.dim() == 4 and e.shape[1] == 1:
        h, w = e.shape[-2:]
        if (h, w) == (1, 1):
            return e.expand(batch, 1, height, width)
        if (h, w) != (height, width):
            shrink = h > height or w > width
            e = F.interpolate(e, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
        return e
    raise ValueError(
        "exposure must be a number, (B,), (B, 1), (B, 1, 1, 1) or a (B, 1, H, W) map; "
        f"got shape {tuple(e.shape)}"
    )


class ExposureSampler(nn.Module):
    """Module form of :func:`sample_exposure`: holds the range ``[low, high]`` (SMM: ``[0, 0.5]``).

    ``forward(batch, generator=None, device=None) -> (B,)``.
    """

    def __init__(self, low: float = 0.0, high: float = 0.5) -> None:
        super().__init__()
        _check_range("ExposureSampler", low, high)
        self.low, self.high = float(low), float(high)

    def forward(self, batch: int, generator: Optional[torch.Generator] = None, device=None,
                dtype: torch.dtype = torch.float32) -> Tensor:
        return sample_exposure(batch, self.low, self.high, generator=generator, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class CompoundExposure(nn.Module):
    """Module form of :func:`compound_exposure` (paper Eq. 13); holds the ranges and the cell size.

    ``forward(batch, height, width, frames=None, generator=None, device=None)`` returns ``(B, 1, H, W)``,
    or ``(B, T, 1, H, W)`` (frames share one map) when ``frames=T``.
    """

    def __init__(self, base: Sequence[float] = (0.0, 0.2), pixel_std: float = 0.025, patch_std: float = 0.025,
                 patch_scale: int = 16) -> None:
        super().__init__()
        if len(base) != 2:
            raise ValueError(f"CompoundExposure: base must be (low, high), got {base!r}")
        _check_range("CompoundExposure base", float(base[0]), float(base[1]))
        if pixel_std < 0 or patch_std < 0 or patch_scale < 1:
            raise ValueError("CompoundExposure: stds must be >= 0 and patch_scale >= 1")
        self.base = (float(base[0]), float(base[1]))
        self.pixel_std, self.patch_std = float(pixel_std), float(patch_std)
        self.patch_scale = int(patch_scale)

    def forward(self, batch: int, height: int, width: int, frames: Optional[int] = None,
                generator: Optional[torch.Generator] = None, device=None,
                dtype: torch.dtype = torch.float32) -> Tensor:
        return compound_exposure(batch, height, width, base=self.base, pixel_std=self.pixel_std,
                                 patch_std=self.patch_std, patch_scale=self.patch_scale, frames=frames,
                                 generator=generator, device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return (f"base={self.base}, pixel_std={self.pixel_std}, patch_std={self.patch_std}, "
                f"patch_scale={self.patch_scale}")
