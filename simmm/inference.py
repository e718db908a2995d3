"""Segmentation inference: whole-image and sliding-window prediction, with optional flip test-time augmentation.

Conventions:

* ``images`` are float (B, 3, H, W) in [0, 1] (never normalised; the model owns its normalisation), and the
  model maps (B, 3, h, w) to logits (B, C, h', w'). When the model answers at another resolution (an output
  stride), its output is resized bilinearly (``align_corners=False``) to the size of its input. A model that
  returns a dict (torchvision's ``{"out": ...}``) or a tuple/list is read at ``"out"``/``"logits"`` or at
  index 0.
* The functions run under ``torch.no_grad()`` and leave ``model.train()/eval()`` alone: put the model in eval
  mode first. Outputs are float32 on the device of ``images``, whatever the model's dtype (autocast is fine).
* ``flip=True`` averages the prediction with the horizontally flipped prediction of the flipped input
  (per window in sliding mode); a flip-equivariant model gives the same result as ``flip=False``.
* Sliding windows: along each axis, windows start every ``stride`` pixels and the last one is moved back to end
  exactly at the border, so every pixel is covered at least once (``stride <= crop`` is required). An image
  smaller than the crop along an axis is padded at the bottom/right to the crop size — zeros by default
  (black, which in [0, 1] images is also the natural "nothing there" for night scenes; ``pad_mode`` may be
  ``"reflect"`` or ``"replicate"``) — and the logits of the padding are cropped away. Overlapping window
  outputs are summed and divided by the per-pixel window count. ``softmax=True`` sums probabilities instead of
  logits (the result is then a probability map).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = ["model_logits", "predict_whole", "predict_sliding", "sliding_window_starts", "sliding_windows",
           "window_count_map"]

Size2 = Union[int, Sequence[int]]


def _pair(v: Size2, name: str) -> Tuple[int, int]:
    if isinstance(v, int):
        out = (v, v)
    else:
        out = tuple(int(x) for x in v)
        if len(out) != 2:
            raise ValueError(f"{name} must be an int or (h, w), got {v!r}")
    if min(out) < 1:
        raise ValueError(f"{name} must be positive, got {v!r}")
    return out  # type: ignore[return-value]


def model_logits(model: Callable, x: torch.Tensor, num_classes: Optional[int] = None) -> torch.Tensor:
    """``model(x)`` as a float32 (B, C, h, w) tensor at the spatial size of ``x`` (see the module notes)."""
    out = model(x)
    if isinstance(out, Mapping):
        key = next((k for k in ("out", "logits") if k in out), None)
        if key is None:
            raise ValueError(f"model returned a dict without 'out' or 'logits' (keys: {list(out)})")
        out = out[key]
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return logits (B, C, h, w) for input {tuple(x.shape)}; got {shape}")
    if num_classes is not None and out.shape[1] != num_classes:
        raise ValueError(f"model returned {out.shape[1]} channels; expected num_classes={num_classes}")
    out = out.float()
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def _logits_tta(model: Callable, x: torch.Tensor, num_classes: Optional[int], flip: bool,
                softmax: bool) -> torch.Tensor:
    def once(inp: torch.Tensor) -> torch.Tensor:
        y = model_logits(model, inp, num_classes)
        return y.softmax(dim=1) if softmax else y

    y = once(x)
    if flip:
        y = (y + once(x.flip(-1)).flip(-1)) / 2
    return y


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}")


@torch.no_grad()
def predict_whole(model: Callable, images: torch.Tensor, num_classes: Optional[int] = None,
                  scale: Union[float, Sequence[int], None] = None, flip: bool = False,
                  softmax: bool = False) -> torch.Tensor:
    """Logits (B, C, H, W) from one forward pass over the whole images (two with ``flip``).

    ``scale``: run the model on the images resized bilinearly by this factor (float) or to this ``(h, w)``,
    and resize the logits back to (H, W) (bilinear). ``num_classes`` (optional) checks the model's channels.
    """
    _check_images(images)
    h, w = images.shape[-2:]
    x = images
    if scale is not None:
        if isinstance(scale, (int, float)):
            if scale <= 0:
                raise ValueError(f"scale must be positive, got {scale}")
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
        else:
            size = _pair(scale, "scale")
        if size != (h, w):
            x = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False).to(images.dtype)
    y = _logits_tta(model, x, num_classes, flip, softmax)
    if y.shape[-2:] != (h, w):
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    return y


def sliding_window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window start offsets along one axis of length ``size`` (padded to ``crop`` when shorter).

    Windows start at ``0, stride, 2*stride, ...``; the last one ends exactly at ``max(size, crop)``.
    E.g. size 11, crop 4, stride 3 -> [0, 3, 6, 7].
    """
    if crop < 1 or stride < 1:
        raise ValueError(f"crop and stride must be positive, got crop={crop}, stride={stride}")
    if stride > crop:
        raise ValueError(f"stride {stride} > crop {crop} would leave pixels uncovered")
    size = max(int(size), crop)
    n = (size - crop + stride - 1) // stride + 1
    return [min(i * stride, size - crop) for i in range(n)]


def sliding_windows(height: int, width: int, crop: Size2, stride: Size2) -> list[Tuple[int, int, int, int]]:
    """Windows ``(top, left, bottom, right)`` over an image padded to at least ``crop``, row-major order."""
    ch, cw = _pair(crop, "crop")
    sh, sw = _pair(stride, "stride")
    return [(y, x, y + ch, x + cw)
            for y in sliding_window_starts(height, ch, sh) for x in sliding_window_starts(width, cw, sw)]


def window_count_map(height: int, width: int, crop: Size2, stride: Size2,
                     device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """(H, W) float32 map: how many windows of :func:`sliding_windows` cover each pixel of the image."""
    ch, cw = _pair(crop, "crop")
    count = torch.zeros(max(height, ch), max(width, cw), device=device)
    for y0, x0, y1, x1 in sliding_windows(height, width, crop, stride):
        count[y0:y1, x0:x1] += 1
    return count[:height, :width]


@torch.no_grad()
def predict_sliding(model: Callable, images: torch.Tensor, num_classes: int, crop: Size2 = (512, 512),
                    stride: Size2 = (341, 341), batch_size: int = 4, flip: bool = False, softmax: bool = False,
                    pad_mode: str = "constant") -> torch.Tensor:
    """Logits (B, C, H, W) stitched from overlapping ``crop`` windows taken every ``stride`` pixels.

    Windows of all images are batched, ``batch_size`` crops per forward (flip TTA runs a second forward on the
    same crops). The output at each pixel is the mean over the windows covering it. ``pad_mode``: how an image
    smaller than the crop is padded (bottom/right): ``"constant"`` (zeros), ``"reflect"`` (needs the padding
    to be smaller than the image) or ``"replicate"``.
    """
    _check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if pad_mode not in ("constant", "reflect", "replicate"):
        raise ValueError(f"pad_mode must be 'constant', 'reflect' or 'replicate', got {pad_mode!r}")
    ch, cw = _pair(crop, "crop")
    b, _, h, w = images.shape
    windows = sliding_windows(h, w, (ch, cw), stride)
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    x = images
    if ph or pw:
        if pad_mode == "reflect" and (ph >= h or pw >= w):
            raise ValueError(f"reflect padding of a {h}x{w} image to the crop {ch}x{cw} needs the padding to be "
                             "smaller than the image; use pad_mode='constant' or 'replicate'")
        x = F.pad(images, (0, pw, 0, ph), mode=pad_mode)  # zeros for "constant"
    hp, wp = x.shape[-2:]

    out = torch.zeros(b, num_classes, hp, wp, dtype=torch.float32, device=images.device)

    jobs = [(i, win) for i in range(b) for win in windows]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        crops = torch.stack([x[i, :, y0:y1, x0:x1] for i, (y0, x0, y1, x1) in chunk])
        y = _logits_tta(model, crops, num_classes, flip, softmax)
        for k, (i, (y0, x0, y1, x1)) in enumerate(chunk):
            out[i, :, y0:y1, x0:x1] += y[k]
    # every pixel is covered by construction (sliding_window_starts); the count is >= 1 everywhere
    return out[..., :h, :w] / window_count_map(h, w, (ch, cw), stride, device=images.device)
