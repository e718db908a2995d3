"""Image statistics of night photographs, to check that simulated night looks like real night.

The statistics are exactly those of ``real_night_stats.json`` (statistics of 9 real outdoor night photos of
the Zero-DCE test sets, kept as numbers only; :data:`REAL_NIGHT` holds the summary), each computed as that
file's ``definitions`` say:

* every statistic is computed on the image resized to 256 px on its long side with PIL's Lanczos filter,
  except ``block`` and ``noise_dark_native`` (stored resolution);
* ``luma`` ``Y = 0.2126 R + 0.7152 G + 0.0722 B`` of the sRGB values in [0, 1] (not linearised);
  ``light50_frac`` alone linearises sRGB first;
* the image is an 8-bit photo: float images are rounded to 8-bit codes first (as a saved file would be).

Choices where the definitions leave one open (the library defaults): Gaussian filters are
:func:`scipy.ndimage.gaussian_filter` (reflecting border, truncated at 4 sigma); the "smoothed gradient
magnitude" is :func:`scipy.ndimage.gaussian_gradient_magnitude` of Y with sigma 1.5; the Immerkaer residual is
taken where the 3x3 kernel fits inside the image; "the lower half" of the dark set is magnitude <= its
median; "the brightest 2%" are the ``ceil(0.02 N)`` pixels of largest Y; CIELAB is scikit-image's (D65, 2°);
the blockiness pools horizontal and vertical steps, grid lines between pixel 8k-1 and 8k (JPEG's grid from the
top-left corner). Summaries of several images are mean and sample std (ddof 1); hue uses circular statistics
(:func:`scipy.stats.circmean`, :func:`scipy.stats.circstd`), as in the JSON.

Functional form: :func:`night_stats` (one image -> dict), :func:`summarize` (dicts -> mean/std per
statistic), :func:`z_scores`; and the building blocks, each on arrays: :func:`luma`, :func:`luma_stats`,
:func:`nonuniformity`, :func:`light50_fraction`, :func:`colour_cast`, :func:`robust_noise`,
:func:`noise_stats`, :func:`saturation_stats`, :func:`blockiness`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

__all__ = ["STATS", "VERDICT_STATS", "REAL_STATS_PATH", "load_real_stats", "to_uint8", "resize_long_side",
           "luma", "luma_stats", "nonuniformity", "light50_fraction", "colour_cast", "dark_flat_mask",
           "robust_noise", "noise_stats", "saturation_stats", "blockiness", "night_stats", "summarize",
           "z_scores"]

LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)
LONG_SIDE = 256
#: every statistic of the JSON, in its order
STATS = ("mean_luma", "p5", "p50", "p95", "p99", "frac_lt_0.05", "frac_gt_0.95", "nonunif", "light50_frac",
         "R/B", "G/B", "hue_deg", "chroma_C", "noise_dark", "chroma_noise_dark", "noise_dark_native",
         "noise_mid", "sat_bright", "sat_all", "block")
#: statistics to judge realism by (the JSON: noise_mid is "unreliable ..., not for verdicts")
VERDICT_STATS = tuple(s for s in STATS if s != "noise_mid")
CIRCULAR = ("hue_deg",)
#: where the real statistics are kept (a copy of the shared file, numbers only)
REAL_STATS_PATH = Path(__file__).with_name("real_night_stats.json")

ImageLike = Union[np.ndarray, "torch.Tensor"]  # noqa: F821


def load_real_stats(path: Union[str, Path, None] = None) -> dict:
    """The real-night statistics file (``definitions``, ``real_night``, ``real_indoor``, ``caveats``)."""
    path = Path(path) if path else REAL_STATS_PATH
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        from simmm.errors import DataError
        raise DataError(f"cannot read the real night statistics {path}: {e}") from e


# -------------------------------------------------------------------------------------------- input form
def to_uint8(image: ImageLike) -> np.ndarray:
    """(H, W, 3) uint8 of an RGB image given as uint8 (H, W, 3) or float in [0, 1] as (H, W, 3) numpy or a
    (3, H, W) tensor; floats are rounded to the nearest 8-bit code (an image saved to a file)."""
    if hasattr(image, "detach"):  # torch tensor (3, H, W)
        image = image.detach().cpu().float().permute(1, 2, 0).numpy()
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"night_stats: expected an RGB image (H, W, 3) or a tensor (3, H, W), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    return np.clip(np.round(a.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def resize_long_side(image: np.ndarray, long_side: int = LONG_SIDE) -> np.ndarray:
    """uint8 (H, W, 3) resized with PIL's Lanczos filter so that its long side is ``long_side`` px (the short
    side rounded); an image already that size is returned unchanged."""
    from PIL import Image

    h, w = image.shape[:2]
    s = long_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if size == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


# ------------------------------------------------------------------------------------------ the statistics
def luma(rgb: np.ndarray) -> np.ndarray:
    """Y = 0.2126 R + 0.7152 G + 0.0722 B of (H, W, 3) sRGB values (any scale), float64 (H, W)."""
    return np.asarray(rgb, np.float64) @ np.array(LUMA_WEIGHTS)


def luma_stats(y: np.ndarray) -> dict:
    """mean, 5/50/95/99th percentiles of Y in [0, 1], and the fractions below 0.05 and above 0.95."""
    p5, p50, p95, p99 = np.percentile(y, [5, 50, 95, 99])
    return {"mean_luma": float(y.mean()), "p5": float(p5), "p50": float(p50), "p95": float(p95),
            "p99": float(p99), "frac_lt_0.05": float((y < 0.05).mean()), "frac_gt_0.95": float((y > 0.95).mean())}


def nonuniformity(y: np.ndarray, sigma: float = 16.0) -> float:
    """std / mean of Y blurred with a Gaussian of ``sigma`` px: how uneven the illumination is."""
    from scipy.ndimage import gaussian_filter

    b = gaussian_filter(np.asarray(y, np.float64), sigma)
    return float(b.std() / b.mean()) if b.mean() > 0 else float("nan")


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def light50_fraction(rgb: np.ndarray) -> float:
    """Smallest fraction of pixels that holds half of the summed linear luminance of sRGB (H, W, 3) in [0, 1]:
    the pixels sorted by linear luminance, brightest first, counted until their sum reaches half the total."""
    lum = np.sort(luma(_srgb_to_linear(np.asarray(rgb, np.float64))).ravel())[::-1]
    total = lum.sum()
    if total <= 0:
        return float("nan")
    k = int(np.searchsorted(np.cumsum(lum), 0.5 * total)) + 1
    return k / lum.size


def colour_cast(rgb: np.ndarray) -> dict:
    """R/B and G/B of the image-mean colour (sRGB values), and the CIELAB hue angle (degrees in [0, 360)) and
    chroma of that mean colour."""
    from skimage.color import rgb2lab

    m = np.asarray(rgb, np.float64).reshape(-1, 3).mean(0)
    _, a, b = rgb2lab(m.reshape(1, 1, 3))[0, 0]
    return {"R/B": float(m[0] / m[2]) if m[2] > 0 else float("inf"),
            "G/B": float(m[1] / m[2]) if m[2] > 0 else float("inf"),
            "hue_deg": float(math.degrees(math.atan2(b, a)) % 360.0), "chroma_C": float(math.hypot(a, b))}


IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def dark_flat_mask(y: np.ndarray, low: float = 0.0, high: float = 0.2, sigma: float = 1.5) -> np.ndarray:
    """Pixels whose smoothed Y (Gaussian ``sigma``) lies in ``[low, high)`` and whose smoothed gradient
    magnitude is in the lower half (<= the median) of that set; Y in [0, 1]. The one-pixel border is left out
    (where the Immerkaer kernel does not fit)."""
    from scipy.ndimage import gaussian_filter, gaussian_gradient_magnitude

    y = np.asarray(y, np.float64)
    s = gaussian_filter(y, sigma)
    inside = np.zeros(y.shape, bool)
    inside[1:-1, 1:-1] = True
    dark = inside & (s >= low) & (s < high)
    if not dark.any():
        return dark
    g = gaussian_gradient_magnitude(y, sigma)
    return dark & (g <= np.median(g[dark]))


def robust_noise(plane: np.ndarray, mask: np.ndarray) -> float:
    """Robust noise std of ``plane`` (8-bit code values) over ``mask``: the Immerkaer residual (3x3 kernel
    ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` / 6, which has unit gain for white noise) and 1.4826 x its median absolute
    deviation. NaN over an empty mask."""
    from scipy.ndimage import correlate

    if not mask.any():
        return float("nan")
    r = correlate(np.asarray(plane, np.float64), IMMERKAER)[mask] / 6.0
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def noise_stats(rgb_u8: np.ndarray) -> dict:
    """``noise_dark`` (luma noise over dark flat pixels: smoothed Y < 0.2), ``chroma_noise_dark`` (the same
    on R-G and on B-G, mean of the two) and ``noise_mid`` (luma noise over smoothed Y in [0.05, 0.3)), all in
    8-bit code values, of a uint8 (H, W, 3) image at the resolution it comes in."""
    c = np.asarray(rgb_u8, np.float64)
    y = luma(c)
    dark = dark_flat_mask(y / 255.0)
    chroma = 0.5 * (robust_noise(c[..., 0] - c[..., 1], dark) + robust_noise(c[..., 2] - c[..., 1], dark))
    return {"noise_dark": robust_noise(y, dark), "chroma_noise_dark": float(chroma),
            "noise_mid": robust_noise(y, dark_flat_mask(y / 255.0, 0.05, 0.3))}


def saturation_stats(rgb: np.ndarray) -> dict:
    """Mean HSV saturation of the brightest 2% of pixels (by Y) and of all pixels with Y > 0.05."""
    from skimage.color import rgb2hsv

    rgb = np.asarray(rgb, np.float64)
    s = rgb2hsv(rgb)[..., 1].ravel()
    y = luma(rgb).ravel()
    k = max(1, math.ceil(0.02 * y.size))
    top = np.argsort(-y, kind="stable")[:k]
    lit = y > 0.05
    return {"sat_bright": float(s[top].mean()), "sat_all": float(s[lit].mean()) if lit.any() else float("nan")}


def blockiness(y: np.ndarray, block: int = 8) -> float:
    """JPEG blockiness of Y: mean |step| between neighbouring pixels across the ``block``-px grid lines
    (between pixel 8k-1 and 8k, horizontally and vertically) divided by the mean |step| elsewhere; 1.0 = none."""
    y = np.asarray(y, np.float64)
    dx, dy = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))
    on_x = (np.arange(1, y.shape[1]) % block) == 0   # step between column j-1 and j with j = 8k
    on_y = (np.arange(1, y.shape[0]) % block) == 0
    across = np.concatenate([dx[:, on_x].ravel(), dy[on_y, :].ravel()])
    other = np.concatenate([dx[:, ~on_x].ravel(), dy[~on_y, :].ravel()])
    if across.size == 0 or other.size == 0 or other.mean() == 0:
        return float("nan")
    return float(across.mean() / other.mean())


def night_stats(image: ImageLike) -> dict:
    """Every statistic of :data:`STATS` for one RGB image (uint8 (H, W, 3), float (H, W, 3) in [0, 1] or a
    (3, H, W) tensor), as ``real_night_stats.json`` defines them."""
    native = to_uint8(image)
    small = resize_long_side(native)
    rgb = small / 255.0
    out = luma_stats(luma(rgb))
    out["nonunif"] = nonuniformity(luma(rgb))
    out["light50_frac"] = light50_fraction(rgb)
    out.update(colour_cast(rgb))
    out.update(noise_stats(small))
    out["noise_dark_native"] = noise_stats(native)["noise_dark"]
    out.update(saturation_stats(rgb))
    out["block"] = blockiness(luma(native / 255.0))
    return {k: out[k] for k in STATS}


# --------------------------------------------------------------------------------------------- summaries
def summarize(per_image: Sequence[dict], stats: Iterable[str] = STATS) -> dict:
    """Mean and sample std (ddof 1) of each statistic over images (NaNs left out, ``n`` says how many count);
    for ``hue_deg`` the circular mean and circular std in degrees, as in the JSON."""
    from scipy.stats import circmean, circstd

    out = {}
    for k in stats:
        v = np.array([d[k] for d in per_image], np.float64)
        v = v[np.isfinite(v)]
        if k in CIRCULAR:
            r = np.radians(v)
            out[k] = {"circular_mean": float(np.degrees(circmean(r))) if v.size else float("nan"),
                      "circular_std": float(np.degrees(circstd(r))) if v.size else float("nan"), "n": int(v.size)}
        else:
            out[k] = {"mean": float(v.mean()) if v.size else float("nan"),
                      "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}
    return out


def _centre(s: dict) -> tuple:
    return (s["circular_mean"], s["circular_std"]) if "circular_mean" in s else (s["mean"], s["std"])


def z_scores(simulated: dict, real: dict, stats: Optional[Iterable[str]] = None) -> dict:
    """z of the simulated mean against the real spread, per statistic: ``(sim mean - real mean) / real std``;
    for hue the signed circular difference (degrees, in (-180, 180]) over the real circular std. Both
    arguments are :func:`summarize` outputs (or the JSON's ``summary``)."""
    out = {}
    for k in stats or [k for k in simulated if k in real]:
        (m, _), (rm, rs) = _centre(simulated[k]), _centre(real[k])
        d = (m - rm + 180.0) % 360.0 - 180.0 if k in CIRCULAR else m - rm
        out[k] = float(d / rs) if rs > 0 else float("nan")
    return out
