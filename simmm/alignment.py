"""Day–night alignment (METHOD.md §5.1): a homography per night/day pair, cached, and the day *prediction* warped
into the night view of a training sample.

Conventions (all of this module):

* A homography ``H`` maps **night pixel coordinates to day pixel coordinates**: ``[x_d, y_d, 1]ᵀ ∝ H·[x_n, y_n, 1]ᵀ``.
* Pixel coordinates are ``x`` = column, ``y`` = row, and the **centre** of pixel ``(row i, column j)`` is the point
  ``(x, y) = (j, i)`` (the top-left pixel's centre is ``(0, 0)``, its outer corner ``(-0.5, -0.5)``). This is the
  convention of ``kornia.geometry.transform.warp_perspective`` with ``align_corners=True`` and of scikit-image's
  keypoints.
* A resize by a factor ``s`` (new size / old size) maps ``x ↦ (x + 0.5)·s − 0.5`` (the half-pixel rule of
  ``torch.nn.functional.interpolate(align_corners=False)``, PIL and scikit-image).

The coarse stage (:func:`estimate_homography`) matches SIFT features (scikit-image; no weights, works offline;
on two CPU cores about 0.4–0.9 s per pair at a 640-pixel long side, where kornia's SIFT took about 5 s) and fits
the homography with RANSAC (``skimage.measure.ransac`` over a ``ProjectiveTransform``). Before matching, both images
are turned to grey, stretched between their 1st and 99th percentiles and equalised locally (CLAHE), which makes a
dark, noisy night image look like its day partner to a gradient-based descriptor. The learned matchers
``"disk_lightglue"`` and ``"loftr"`` (kornia) are options; their weights download on first use (no network: a
:class:`SimmmError` says so). A pair with too few matches or inliers, or a degenerate fit, falls back to the
identity with ``ok=False`` and the reason.

:class:`HomographyCache` keeps one JSON file per pair (pair key + both files' SHA-256 and size + the settings), in
the pair's original pixel coordinates; :func:`align_pairs` fills it and counts the fallbacks.

For a training sample whose night and day images went through the same scale → crop → flip,
:func:`simmm.data.pair_transform.conjugate_homography` (with :func:`transform_matrix` or the pair transform's
matrices) gives the homography in the sample's coordinates and :func:`warp_prediction` warps the
day prediction into the night view and returns the mask of pixels whose source lies inside the day image.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from simmm.atomic import atomic_write
from simmm.errors import SimmmError

__all__ = ["AlignConfig", "Alignment", "AlignmentSummary", "HomographyCache", "MATCHERS", "align_pair", "align_pairs",
           "corner_error", "estimate_homography", "file_fingerprint", "transform_matrix",
           "warp_prediction"]

MATCHERS = ("sift", "disk_lightglue", "loftr")
CACHE_VERSION = 1


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the coarse stage.

    Attributes:
        matcher: ``"sift"`` (scikit-image, offline), ``"disk_lightglue"`` or ``"loftr"`` (kornia, weights download).
        max_side: both images are resized so that their long side is at most this many pixels before matching.
        ratio: Lowe's ratio test of the SIFT matcher (mutual nearest neighbours are kept when the best distance is
            below ``ratio`` × the second best).
        ransac_threshold: RANSAC inlier distance, in pixels of the matching resolution.
        ransac_trials: RANSAC iterations.
        min_matches: fewer matches → fallback to identity.
        min_inliers, min_inlier_ratio: fewer inliers (or a smaller inlier share) → fallback.
        max_scale: the night image's corners, mapped by H, must span an area between 1/max_scale² and max_scale²
            times the night image's area (scaled to the day image), else the fit is called degenerate.
        seed: RANSAC's random seed (results are reproducible).
    """

    matcher: str = "sift"
    max_side: int = 640
    ratio: float = 0.85
    ransac_threshold: float = 3.0
    ransac_trials: int = 2000
    min_matches: int = 12
    min_inliers: int = 15
    min_inlier_ratio: float = 0.1
    max_scale: float = 4.0
    seed: int = 0

    def __post_init__(self):
        if self.matcher not in MATCHERS:
            raise SimmmError(f"alignment matcher {self.matcher!r} is unknown; expected one of {', '.join(MATCHERS)}")
        for name in ("max_side", "ransac_trials", "min_matches", "min_inliers"):
            if int(getattr(self, name)) < 1:
                raise SimmmError(f"alignment {name} must be a positive integer, got {getattr(self, name)!r}")
        if not (0.0 < self.ratio <= 1.0):
            raise SimmmError(f"alignment ratio must be in (0, 1], got {self.ratio!r}")
        if self.ransac_threshold <= 0 or self.max_scale <= 1:
            raise SimmmError("alignment ransac_threshold must be > 0 and max_scale > 1, got "
                             f"{self.ransac_threshold!r} and {self.max_scale!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Alignment:
    """One pair's coarse alignment, in the pair's original pixel coordinates.

    Attributes:
        homography: 3×3 (nested tuples, ``H[2][2] = 1``), night pixel → day pixel (see the module docstring).
        matches: number of tentative feature matches.
        inliers: number of RANSAC inliers (0 when no fit).
        ok: ``False`` when the pair fell back to the identity.
        reason: why it fell back (``""`` when ok).
        night_size, day_size: ``(height, width)`` of the two images.
        matcher: the matcher used.
        seconds: time taken to compute it.
    """

    homography: Tuple[Tuple[float, float, float], ...]
    matches: int
    inliers: int
    ok: bool
    reason: str
    night_size: Tuple[int, int]
    day_size: Tuple[int, int]
    matcher: str = "sift"
    seconds: float = 0.0

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.matches if self.matches else 0.0

    def matrix(self, dtype=torch.float64) -> Tensor:
        """The homography as a (3, 3) tensor."""
        return torch.tensor(self.homography, dtype=dtype)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "inlier_ratio": self.inlier_ratio}

    @classmethod
    def from_dict(cls, d: dict) -> "Alignment":
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        d["homography"] = tuple(tuple(float(v) for v in row) for row in d["homography"])
        d["night_size"] = tuple(d["night_size"])
        d["day_size"] = tuple(d["day_size"])
        return cls(**d)


# ---------------------------------------------------------------------------------------------------------------
# coarse stage


def _as_hwc(image) -> np.ndarray:
    """(3, H, W) / (H, W) tensor or (H, W[, 3]) array in [0, 1] (or uint8) → float (H, W[, 3]) array."""
    if isinstance(image, Tensor):
        a = image.detach().cpu().float().numpy()
        if a.ndim == 3:
            a = a.transpose(1, 2, 0)
    else:
        a = np.asarray(image)
        a = a / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise SimmmError(f"alignment expects an image of shape (3, H, W) or (H, W[, 3]), got {tuple(np.shape(image))}")
    return a


def _prepare(image, max_side: int) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Grey, resized to ``max_side``, percentile-stretched and CLAHE-equalised. Returns the image and the resize
    factors (sy, sx) (new size / old size)."""
    from skimage import color, exposure, transform

    a = _as_hwc(image)
    grey = color.rgb2gray(a) if a.ndim == 3 else a
    h, w = grey.shape
    f = min(1.0, max_side / max(h, w))
    nh, nw = max(1, round(h * f)), max(1, round(w * f))
    if (nh, nw) != (h, w):
        grey = transform.resize(grey, (nh, nw), anti_aliasing=True)
    lo, hi = np.percentile(grey, (1, 99))
    grey = np.clip((grey - lo) / max(hi - lo, 1e-6), 0, 1)
    grey = exposure.equalize_adapthist(grey)
    return grey, (nh / h, nw / w)


def transform_matrix(scale: Union[float, Sequence[float]] = 1.0,
                     crop: Optional[Sequence[int]] = None, flip: bool = False) -> Tensor:
    """The 3×3 map (float64) from an image's original pixel coordinates to a sample's, for a sample made by
    resize → crop → horizontal flip.

    Args:
        scale: resize factor(s) new size / old size: one float, or ``(sy, sx)`` (pass the exact ratios of the
            rounded sizes, ``new_h / old_h, new_w / old_w``). Maps ``x ↦ (x + 0.5)·s − 0.5``.
        crop: ``(top, left, height, width)`` in the resized image's pixels, or ``None`` (no crop; then ``flip``
            needs the width, so a flip without crop is not accepted).
        flip: the crop was mirrored left–right after cropping: ``x ↦ width − 1 − x``.
    """
    sy, sx = (float(scale), float(scale)) if np.isscalar(scale) else (float(scale[0]), float(scale[1]))
    if sy <= 0 or sx <= 0:
        raise SimmmError(f"alignment: the sample's scale must be positive, got {scale!r}")
    t = torch.tensor([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    if crop is not None:
        top, left, height, width = (float(v) for v in crop)
        t = torch.tensor([[1.0, 0.0, -left], [0.0, 1.0, -top], [0.0, 0.0, 1.0]], dtype=torch.float64) @ t
    if flip:
        if crop is None:
            raise SimmmError("alignment: a flipped sample needs its crop box (top, left, height, width)")
        t = torch.tensor([[-1.0, 0.0, width - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64) @ t
    return t


def _apply(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def _corners(size: Tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.array([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])


def corner_error(estimate, truth, night_size: Tuple[int, int]) -> float:
    """Mean distance, in day pixels, between the night image's four corner pixels mapped by ``estimate`` and by
    ``truth`` (both night → day)."""
    c = _corners(night_size)
    return float(np.linalg.norm(_apply(np.asarray(estimate, float), c) - _apply(np.asarray(truth, float), c),
                                axis=1).mean())


def _degenerate(h: np.ndarray, night_size, day_size, max_scale: float) -> str:
    """Why ``h`` is not a plausible view change, or ``""``."""
    if not np.all(np.isfinite(h)):
        return "degenerate homography (not finite)"
    c = np.c_[_corners(night_size), np.ones(4)] @ h.T
    if np.any(c[:, 2] <= 1e-8 * np.abs(c).max()):
        return "degenerate homography (the night image's corners map behind the camera)"
    q = c[:, :2] / c[:, 2:3]
    e = np.roll(q, -1, axis=0) - q
    turns = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
    if not np.all(turns > 0):
        return "degenerate homography (the night image's outline is mirrored or folded)"
    area = 0.5 * abs(np.sum(q[:, 0] * np.roll(q[:, 1], -1) - np.roll(q[:, 0], -1) * q[:, 1]))
    expected = (day_size[0] - 1) * (day_size[1] - 1)
    if not (expected / max_scale ** 2 <= area <= expected * max_scale ** 2):
        ratio = area / max(expected, 1)
        return f"degenerate homography (area ratio {ratio:.3g} outside 1/{max_scale:g}²..{max_scale:g}²)"
    return ""


def _match_sift(night: np.ndarray, day: np.ndarray, cfg: AlignConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Tentative SIFT matches as (N, 2) (x, y) arrays in the two prepared images."""
    from skimage.feature import SIFT, match_descriptors

    kps = []
    for img in (night, day):
        sift = SIFT(upsampling=1)
        try:
            sift.detect_and_extract(img)
        except RuntimeError:  # no keypoints at all (a flat or black image)
            return np.zeros((0, 2)), np.zeros((0, 2))
        kps.append(sift)
    m = match_descriptors(kps[0].descriptors, kps[1].descriptors, max_ratio=cfg.ratio, cross_check=True)
    return kps[0].keypoints[m[:, 0]][:, ::-1].astype(float), kps[1].keypoints[m[:, 1]][:, ::-1].astype(float)


_LEARNED: Dict[str, object] = {}


def _load_learned(name: str):
    """The kornia matcher ``name`` with its pretrained weights (downloaded once, then from torch's hub cache)."""
    if name not in _LEARNED:
        import kornia.feature as KF

        try:
            if name == "loftr":
                model = KF.LoFTR(pretrained="outdoor")
            else:
                model = (KF.DISK.from_pretrained("depth"), KF.LightGlueMatcher("disk"))
        except Exception as e:  # urllib / OSError / hub errors: no network or no cache
            raise SimmmError(
                f"alignment matcher {name!r} needs pretrained weights that kornia downloads on first use into "
                f"{torch.hub.get_dir()}; the download failed ({type(e).__name__}: {e}). Connect to the internet "
                "once, copy the weights into that folder, or use matcher 'sift' (no weights).") from e
        _LEARNED[name] = model
    return _LEARNED[name]


@torch.no_grad()
def _match_learned(night: np.ndarray, day: np.ndarray, cfg: AlignConfig, model=None):
    """Tentative matches of kornia's LoFTR or DISK + LightGlue, as (N, 2) (x, y) arrays."""
    import kornia.feature as KF

    model = model if model is not None else _load_learned(cfg.matcher)
    a, b = (torch.from_numpy(np.ascontiguousarray(x)).float()[None, None] for x in (night, day))
    if cfg.matcher == "loftr":
        out = model.eval()({"image0": a, "image1": b})
        return out["keypoints0"].numpy().astype(float), out["keypoints1"].numpy().astype(float)
    disk, glue = model
    feats = [disk(x.expand(-1, 3, -1, -1), n=2048, pad_if_not_divisible=True)[0] for x in (a, b)]
    lafs = [KF.laf_from_center_scale_ori(f.keypoints[None], torch.ones(1, len(f.keypoints), 1, 1)) for f in feats]
    _, idx = glue.eval()(feats[0].descriptors, feats[1].descriptors, lafs[0], lafs[1],
                         hw1=a.shape[-2:], hw2=b.shape[-2:])
    return (feats[0].keypoints[idx[:, 0]].numpy().astype(float), feats[1].keypoints[idx[:, 1]].numpy().astype(float))


def _scale_matrix(sy: float, sx: float) -> np.ndarray:
    return transform_matrix((sy, sx)).numpy()


def estimate_homography(night, day, config: AlignConfig = AlignConfig(), matcher_model=None) -> Alignment:
    """Coarse alignment of one pair: feature matches + RANSAC homography, night pixel → day pixel, in the images'
    own pixel coordinates (see the module docstring).

    Args:
        night, day: images, (3, H, W) / (H, W) tensors or (H, W[, 3]) arrays in [0, 1] (uint8 arrays too); the two
            may differ in size.
        config: :class:`AlignConfig`.
        matcher_model: a ready kornia model for the learned matchers (``None``: load the pretrained one).

    Returns:
        An :class:`Alignment`; on too few matches or inliers, or a degenerate fit, the identity with ``ok=False``.
    """
    from skimage.measure import ransac
    from skimage.transform import ProjectiveTransform

    start = time.perf_counter()
    (pn, (syn, sxn)), (pd, (syd, sxd)) = _prepare(night, config.max_side), _prepare(day, config.max_side)
    night_size, day_size = tuple(_as_hwc(night).shape[:2]), tuple(_as_hwc(day).shape[:2])
    if config.matcher == "sift":
        src, dst = _match_sift(pn, pd, config)
    else:
        src, dst = _match_learned(pn, pd, config, matcher_model)
    n = len(src)

    def result(h, inliers, reason):
        return Alignment(tuple(tuple(float(v) for v in row) for row in h), n, int(inliers), not reason, reason,
                         night_size, day_size, config.matcher, time.perf_counter() - start)

    if n < config.min_matches:
        return result(np.eye(3), 0, f"too few matches ({n} < {config.min_matches})")
    model, mask = ransac((src, dst), ProjectiveTransform, min_samples=4, residual_threshold=config.ransac_threshold,
                         max_trials=config.ransac_trials, rng=config.seed)
    k = int(mask.sum()) if mask is not None else 0
    if model is None or k < config.min_inliers or k < config.min_inlier_ratio * n:
        return result(np.eye(3), k, f"too few inliers ({k} of {n} matches)")
    h = np.linalg.inv(_scale_matrix(syd, sxd)) @ model.params @ _scale_matrix(syn, sxn)
    if not np.isfinite(h).all() or abs(h[2, 2]) < 1e-12:
        return result(np.eye(3), k, "degenerate homography (not finite)")
    h = h / h[2, 2]
    why = _degenerate(h, night_size, day_size, config.max_scale)
    return result(np.eye(3) if why else h, k, why)


# ---------------------------------------------------------------------------------------------------------------
# cache


def file_fingerprint(path: Union[str, Path]) -> dict:
    """``{"sha256", "bytes", "size": [H, W]}`` of an image file: the cache's key for its content."""
    from simmm.data.images import read_image

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SimmmError(f"alignment: cannot read image {p}: {e}") from e
    w, h = read_image(p).size
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "size": [h, w]}


class HomographyCache:
    """One JSON file per pair under ``folder``, named by a hash of the pair key, holding the key, both images'
    fingerprints (:func:`file_fingerprint`), the :class:`AlignConfig` and the :class:`Alignment`. An entry is used
    only when all of these agree; files are written atomically, so several processes may fill one cache."""

    def __init__(self, folder: Union[str, Path]):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"

    def get(self, key: str, fingerprint: dict, config: AlignConfig) -> Optional[Alignment]:
        """The cached alignment of ``key`` if it was computed from the same images and settings, else ``None``."""
        p = self.path(key)
        try:
            entry = json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise SimmmError(f"alignment cache file {p} is unreadable ({e}); delete it to recompute") from e
        if (entry.get("version") != CACHE_VERSION or entry.get("key") != key
                or entry.get("images") != fingerprint or entry.get("config") != config.to_dict()):
            return None
        try:
            return Alignment.from_dict(entry["alignment"])
        except (KeyError, TypeError, ValueError) as e:
            raise SimmmError(f"alignment cache file {p} has no valid 'alignment' entry ({e}); delete it") from e

    def put(self, key: str, fingerprint: dict, config: AlignConfig, alignment: Alignment) -> None:
        entry = {"version": CACHE_VERSION, "key": key, "images": fingerprint, "config": config.to_dict(),
                 "alignment": alignment.to_dict()}
        text = json.dumps(entry, indent=1).encode()
        atomic_write(self.path(key), lambda f: f.write(text))


def align_pair(key: str, night_path, day_path, cache: Optional[HomographyCache] = None,
               config: AlignConfig = AlignConfig()) -> Tuple[Alignment, bool]:
    """The alignment of one pair of image files, from ``cache`` when it holds it, else computed (and stored).
    Returns ``(alignment, was_cached)``."""
    from simmm.data.images import image_to_tensor, read_image

    fingerprint = {"night": file_fingerprint(night_path), "day": file_fingerprint(day_path)}
    if cache is not None:
        hit = cache.get(key, fingerprint, config)
        if hit is not None:
            return hit, True
    result = estimate_homography(image_to_tensor(read_image(night_path)), image_to_tensor(read_image(day_path)),
                                 config)
    if cache is not None:
        cache.put(key, fingerprint, config, result)
    return result, False


@dataclass
class AlignmentSummary:
    """Counts of :func:`align_pairs`: pairs, fallbacks (by reason), and how many came from the cache."""

    pairs: int = 0
    cached: int = 0
    fallbacks: Dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def fallback(self) -> int:
        return sum(self.fallbacks.values())

    def line(self) -> str:
        """One log line, e.g. ``alignment: 10 pairs (4 cached), 2 fell back to identity (too few matches: 2)``."""
        why = ", ".join(f"{k}: {v}" for k, v in sorted(self.fallbacks.items()))
        return (f"alignment: {self.pairs} pairs ({self.cached} cached), {self.fallback} fell back to identity"
                + (f" ({why})" if why else ""))


def align_pairs(pairs: Iterable[Tuple[str, object, object]], cache: Optional[HomographyCache] = None,
                config: AlignConfig = AlignConfig(), log: Optional[Callable[[str], None]] = None
                ) -> Tuple[Dict[str, Alignment], AlignmentSummary]:
    """Align every ``(key, night_path, day_path)`` (cached ones are read back); returns ``{key: Alignment}`` and an
    :class:`AlignmentSummary`, whose :meth:`~AlignmentSummary.line` is passed to ``log`` at the end."""
    out: Dict[str, Alignment] = {}
    summary = AlignmentSummary()
    for key, night, day in pairs:
        a, cached = align_pair(key, night, day, cache, config)
        out[key] = a
        summary.pairs += 1
        summary.cached += int(cached)
        if not a.ok:
            kind = a.reason.split(" (")[0]
            summary.fallbacks[kind] = summary.fallbacks.get(kind, 0) + 1
    if log is not None:
        log(summary.line())
    return out, summary


# ---------------------------------------------------------------------------------------------------------------
# warping


def warp_prediction(day_prob: Tensor, homography: Tensor, out_size: Optional[Tuple[int, int]] = None,
                    mode: str = "bilinear") -> Tuple[Tensor, Tensor]:
    """Warp a day prediction into the night view.

    Args:
        day_prob: (B, C, h, w) class probabilities of the day image.
        homography: (3, 3) or (B, 3, 3), night pixel → day pixel **in the coordinates of these tensors** (use
            :func:`simmm.data.pair_transform.conjugate_homography` for a transformed sample).
        out_size: ``(H, W)`` of the night view (default ``(h, w)``).
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        ``(warped, valid)``: warped (B, C, H, W) with ``warped[..., y, x] = day_prob`` sampled at ``H·(x, y)`` and 0
        in holes; ``valid`` (B, H, W) bool, ``False`` exactly where ``H·(x, y)`` falls outside the day image's pixel
        centres ``[0, w − 1] × [0, h − 1]`` (or behind the camera).
    """
    from kornia.geometry.transform import warp_perspective

    if day_prob.dim() != 4:
        raise SimmmError(f"warp_prediction expects day_prob of shape (B, C, h, w), got {tuple(day_prob.shape)}")
    b, _, h, w = day_prob.shape
    hh, ww = out_size if out_size is not None else (h, w)
    hom = torch.as_tensor(homography, dtype=torch.float64, device=day_prob.device)
    if hom.shape == (3, 3):
        hom = hom.expand(b, 3, 3)
    if hom.shape != (b, 3, 3):
        raise SimmmError(f"warp_prediction expects a (3, 3) or ({b}, 3, 3) homography, got {tuple(hom.shape)}")
    dtype = day_prob.dtype if day_prob.dtype in (torch.float32, torch.float64) else torch.float32
    warped = warp_perspective(day_prob.to(dtype), torch.linalg.inv(hom).to(dtype), (hh, ww), mode=mode,
                              padding_mode="zeros", align_corners=True).to(day_prob.dtype)
    ys, xs = torch.meshgrid(torch.arange(hh, dtype=torch.float64, device=hom.device),
                            torch.arange(ww, dtype=torch.float64, device=hom.device), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3) @ hom.transpose(1, 2)
    z = pts[..., 2]
    eps = 1e-6
    u, v = pts[..., 0] / z, pts[..., 1] / z
    valid = (z > 0) & (u >= -eps) & (u <= w - 1 + eps) & (v >= -eps) & (v <= h - 1 + eps)
    valid = valid.reshape(b, hh, ww)
    return warped * valid.unsqueeze(1).to(warped.dtype), valid
