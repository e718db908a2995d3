"""One random scale, crop, resize and flip for both images of a day–night pair, and where it moved each pixel.

DANIA trains on Dark Zurich pairs scaled by a random factor in 0.9–1.1, cropped to 960×960 at a random place,
resized to 512×512 (DANNet's code) and flipped horizontally with probability ½ — the same draw for the night
image and its day partner (METHOD.md §5). :class:`PairTransform` does that on a batch and returns the drawn
parameters as :class:`PairParams`, whose :attr:`~PairParams.matrix` says where every pixel went, so that the
alignment step can move a homography cached in the files' pixel coordinates into the sample's
(:func:`conjugate_homography`).

Coordinate convention (every matrix of this module and of :class:`~simmm.data.pair_dataset.PairDataset`):
a point is ``(x, y)`` in pixels, ``x`` along the width (column), ``y`` along the height (row), with the
*centre* of the pixel in column ``j``, row ``i`` at ``(j, i)``: the top-left pixel's centre is ``(0, 0)``
and its outer corner ``(-0.5, -0.5)`` (the convention of OpenCV's keypoints and of kornia's
``warp_perspective``). A matrix ``M`` is a 3×3 homogeneous map: ``(x', y', 1)ᵀ ∝ M (x, y, 1)ᵀ``. Resizing
``(H, W) → (h, w)`` is pixel-area aligned (``align_corners=False``, PIL's and ``F.interpolate``'s
convention): ``x' = (x + ½)·w/W − ½``; cropping at ``(x0, y0)``: ``x' = x − x0``; a horizontal flip of an
image ``w`` wide: ``x' = w − 1 − x``.

Steps, per sample (input ``(H, W)``, drawn in this order from the generator: scale, crop row, crop column,
flip):

1. scale by ``s ~ U(scale)`` to ``(round(H·s), round(W·s))`` (bilinear, antialiased when shrinking);
2. crop ``crop = (ch, cw)`` at ``(x0, y0)``, uniform over the places that fit; a scaled image smaller than the
   crop is padded at the bottom/right with ``fill`` first (the padding moves no pixel);
3. resize the crop to ``resize = (rh, rw)`` when given;
4. flip horizontally with probability ½ when ``hflip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SimmmError

__all__ = ["PairTransform", "PairParams", "resize_matrix", "conjugate_homography"]

SizeHW = Tuple[int, int]


def resize_matrix(src_hw: Sequence[int], dst_hw: Sequence[int]) -> Tensor:
    """The ``(3, 3)`` float64 matrix of a resize from ``src_hw = (H, W)`` to ``dst_hw = (h, w)``:
    ``x' = (x + ½)·w/W − ½``, ``y' = (y + ½)·h/H − ½`` (module docstring: the convention)."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    return torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


def _translate(dx: float, dy: float) -> Tensor:
    return torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _hflip(width: int) -> Tensor:
    return torch.tensor([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def conjugate_homography(homography: Tensor, src_matrix: Tensor, dst_matrix: Tensor) -> Tensor:
    """A homography between two original images, expressed between their transformed versions.

    Args:
        homography: ``(..., 3, 3)``, maps pixel coordinates of the source image file to those of the
            destination image file (e.g. cached from feature matching of the day file onto the night file).
        src_matrix: ``(..., 3, 3)``, source file coordinates → source sample coordinates (the item's
            ``day_matrix`` composed with :attr:`PairParams.matrix`: ``params.matrix @ item_matrix``).
        dst_matrix: ``(..., 3, 3)``, the same for the destination image.

    Returns:
        ``dst_matrix @ homography @ src_matrix⁻¹`` (float64): maps source sample coordinates to destination
        sample coordinates.
    """
    h = homography.to(torch.float64)
    return dst_matrix.to(torch.float64) @ h @ torch.linalg.inv(src_matrix.to(torch.float64))


def _pair_of_ints(value, what: str) -> SizeHW:
    if isinstance(value, int):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(isinstance(v, int) for v in value) \
            or min(value) < 1:
        raise SimmmError(f"pair transform: {what} must be a positive int or (H, W) of positive ints, "
                         f"got {value!r}")
    return int(value[0]), int(value[1])


@dataclass
class PairParams:
    """The draws of one :class:`PairTransform` call on ``B`` pairs (what :meth:`PairTransform.apply` replays).

    Attributes:
        in_hw: ``(H, W)`` of the input images.
        scale: ``(B,)`` float64, the drawn factors ``s``.
        scaled_hw: ``(B, 2)`` int64, ``(round(H·s), round(W·s))``.
        box: ``(B, 4)`` int64, the crop ``(x0, y0, x1, y1)`` in the scaled image (``x1, y1`` exclusive; it may
            reach into the bottom/right padding).
        flip: ``(B,)`` bool, flipped horizontally.
        out_hw: ``(h, w)`` of the outputs (``resize``, else ``crop``).
        matrix: ``(B, 3, 3)`` float64, input pixel coordinates → output pixel coordinates (module docstring).
    """

    in_hw: SizeHW
    scale: Tensor
    scaled_hw: Tensor
    box: Tensor
    flip: Tensor
    out_hw: SizeHW
    matrix: Tensor


class PairTransform:
    """Random scale → crop → resize → horizontal flip, one draw per pair applied to both of its images.

    Args:
        crop: ``(ch, cw)`` or one int: the crop taken from the scaled image (DANIA on Dark Zurich: 960).
        scale: ``(lo, hi)``: the range of the random scale factor (Dark Zurich: ``(0.9, 1.1)``).
        resize: ``None`` or ``(rh, rw)``/int: the crop is resized to it (DANNet: 512).
        hflip: flip with probability ½.
        fill: value of the padding where the scaled image is smaller than the crop.
        antialias: antialiased bilinear when shrinking (as PIL's resize in DANNet's code). Its filter, sampled
            at a non-integer scale, is not quite symmetric: the matrix then holds to within ~0.1 px (exactly
            with ``antialias=False``, away from the borders).

    ``transform(night, day, generator=None) -> (night, day, params)`` for ``(B, C, H, W)`` float batches of one
    size; the draws come from ``generator`` or, when it is ``None``, from torch's global generator (which the
    engine seeds and checkpoints). :meth:`apply` replays ``params`` on any other map of the pair (a mask, a
    label map with ``mode="nearest"``).
    """

    def __init__(self, crop, scale: Sequence[float] = (1.0, 1.0), resize=None, hflip: bool = True,
                 fill: float = 0.0, antialias: bool = True):
        self.crop = _pair_of_ints(crop, "crop")
        self.resize = None if resize is None else _pair_of_ints(resize, "resize")
        if len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
            raise SimmmError(f"pair transform: scale must be (lo, hi) with 0 < lo <= hi, got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.hflip = bool(hflip)
        self.fill = float(fill)
        self.antialias = bool(antialias)

    @property
    def out_hw(self) -> SizeHW:
        return self.resize or self.crop

    def sample(self, batch: int, in_hw: Sequence[int],
               generator: Optional[torch.Generator] = None) -> PairParams:
        """Draw the parameters of ``batch`` pairs of input size ``in_hw = (H, W)``."""
        h, w = int(in_hw[0]), int(in_hw[1])
        ch, cw = self.crop
        out_h, out_w = self.out_hw
        scales, sizes, boxes, flips, matrices = [], [], [], [], []
        for _ in range(batch):
            s = float(torch.empty((), dtype=torch.float64).uniform_(*self.scale, generator=generator))
            sh, sw = max(1, round(h * s)), max(1, round(w * s))
            y0 = int(torch.randint(0, max(sh, ch) - ch + 1, (), generator=generator))
            x0 = int(torch.randint(0, max(sw, cw) - cw + 1, (), generator=generator))
            flip = bool(self.hflip and torch.rand((), generator=generator) < 0.5)
            m = _translate(-x0, -y0) @ resize_matrix((h, w), (sh, sw))
            m = resize_matrix((ch, cw), (out_h, out_w)) @ m
            if flip:
                m = _hflip(out_w) @ m
            scales.append(s)
            sizes.append((sh, sw))
            boxes.append((x0, y0, x0 + cw, y0 + ch))
            flips.append(flip)
            matrices.append(m)
        return PairParams(in_hw=(h, w), scale=torch.tensor(scales, dtype=torch.float64),
                          scaled_hw=torch.tensor(sizes, dtype=torch.int64).view(-1, 2),
                          box=torch.tensor(boxes, dtype=torch.int64).view(-1, 4),
                          flip=torch.tensor(flips, dtype=torch.bool), out_hw=(out_h, out_w),
                          matrix=torch.stack(matrices) if matrices else torch.empty(0, 3, 3,
                                                                                    dtype=torch.float64))

    def apply(self, images: Tensor, params: PairParams, mode: str = "bilinear",
              fill: Optional[float] = None) -> Tensor:
        """``params`` applied to ``images`` ``(B, C, H, W)`` → ``(B, C, h, w)``.

        ``mode``: ``"bilinear"`` (antialiased when shrinking, unless ``antialias`` is off) or ``"nearest"``
        (``nearest-exact``: pixel centres, the same geometry; for label maps and masks). ``fill``: padding value
        (default: the transform's).
        """
        if mode not in ("bilinear", "nearest"):
            raise SimmmError(f"pair transform: mode must be 'bilinear' or 'nearest', got {mode!r}")
        n = params.scale.numel()
        if images.dim() != 4 or images.shape[0] != n or tuple(images.shape[-2:]) != params.in_hw:
            raise SimmmError(f"pair transform: expected a batch of {n} maps of size "
                             f"{params.in_hw[0]}x{params.in_hw[1]} (B, C, H, W), got {tuple(images.shape)}")
        fill = self.fill if fill is None else float(fill)
        ch, cw = self.crop
        out = []
        for i, x in enumerate(images):
            x = _resize(x, tuple(params.scaled_hw[i].tolist()), mode, self.antialias)
            ph, pw = max(0, ch - x.shape[-2]), max(0, cw - x.shape[-1])
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), value=fill)
            x0, y0, x1, y1 = params.box[i].tolist()
            x = _resize(x[:, y0:y1, x0:x1], params.out_hw, mode, self.antialias)
            out.append(x.flip(-1) if bool(params.flip[i]) else x)
        return torch.stack(out)

    def __call__(self, night: Tensor, day: Tensor, generator: Optional[torch.Generator] = None
                 ) -> Tuple[Tensor, Tensor, PairParams]:
        if night.dim() != 4 or night.shape != day.shape:
            raise SimmmError(f"pair transform: night and day must be (B, C, H, W) batches of one shape, got "
                             f"{tuple(night.shape)} and {tuple(day.shape)}")
        params = self.sample(night.shape[0], night.shape[-2:], generator)
        return self.apply(night, params), self.apply(day, params), params

    def __repr__(self) -> str:
        return (f"PairTransform(crop={self.crop}, scale={self.scale}, resize={self.resize}, hflip={self.hflip}, "
                f"antialias={self.antialias})")


def _resize(x: Tensor, size: SizeHW, mode: str, antialias: bool) -> Tensor:
    """``(C, H, W)`` resized to ``size``; unchanged when it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x[None].float(), size=size, mode="nearest-exact")[0].to(x.dtype)
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False,
                         antialias=antialias and shrink)[0]
