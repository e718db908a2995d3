"""A seeded physical low-light simulator: day sRGB images in, plausible simulated night photos out.

Night in a photograph is not a global dimming. A global exposure drop plus noise is largely undone by
re-estimating batch-norm statistics (AdaBN); what makes real night hard is *spatially varying, coloured*
illumination (a few street lamps, headlights, a dark ambient level), the optics around bright sources (glare,
bloom, vignetting), what a sensor does with very few photons (shot noise, read noise, row banding, clipped
lamps, coarse ADC steps) and what the camera pipeline then does to it (white balance that fails under sodium
light, auto-gain that amplifies the noise, JPEG). This module models each of these as a small, seeded,
switchable stage. It makes *evaluation* data and a synthetic-darkening baseline; it is never the target the
learned darkening module is trained to imitate.

Pipeline of one image (every stage on/off and its parameters in :class:`NightParams`); public stage function
in brackets::

    sRGB -> inverse tone curve -> inverse gamma: linear reflectance     [inverse_tone_curve, srgb_to_linear]
    x illumination: ambient + lamps with inverse-square fall-off,       [sample_lights, light_field]
      each with its colour temperature; headlight cones
      (normalised to mean luminance 1: the lights set the spatial distribution, `exposure` the level)
    + visible lamp heads, emitters far above the sensor's full well    [lamp_emission]
    -> motion blur (long exposure, camera shake)                        [motion_blur]
    -> lens glare / bloom: a point spread function with a wide tail     [glare]
    -> vignetting (cos^4 law)                                           [vignette]
    x global exposure (fraction of a day exposure) x white-balance gain error
    -> RGGB Bayer mosaic in photo-electrons, Poisson shot noise,        [mosaic_bayer, add_sensor_noise]
       full-well clipping, Gaussian read noise, row noise, analog gain
    -> ADC: black level, clipping, quantisation to 10-14 bit            [quantize]
    camera pipeline: bilinear demosaic -> white balance -> auto-gain    [demosaic_bilinear, white_balance,
       -> gamma (sRGB) -> tone curve -> chroma noise reduction           auto_gain, linear_to_srgb,
       -> JPEG -> clamp to [0, 1]                                        chroma_denoise, jpeg]

Glare is applied in the optical (linear) domain before the sensor, where it physically happens: the lens
spreads a small fraction of all light over a wide area, which only becomes visible around sources many
times brighter than their surroundings, i.e. around lamps that saturate the sensor.

Determinism: every image gets its own ``torch.Generator`` seeded from (seed, index) or from its own seed,
so the result for image i never depends on the other images of the batch. A clip (B, 3, T, H, W) is one such
"image": its frames share the parameters drawn from its seed and have sensor noise of their own.

:data:`PRESETS` make evaluation sets; :data:`TRAINING` is the distribution of the night training augmentation
(SMM's ``adapt.darkening: night``), a parameter set of its own (see its comment).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simmm.darkening import fold_clips, unfold_clips
from simmm.errors import DataError, SimmmError

__all__ = [
    "NightParams", "PRESETS", "TRAINING", "Light", "get_preset", "simulate_night", "simulate_night_per_image",
    "simulate_raw", "mixed_presets", "NightSimulator", "load_raw", "simulate_night_raw",
    "srgb_to_linear", "linear_to_srgb", "tone_curve", "inverse_tone_curve", "kelvin_to_rgb",
    "sample_lights", "light_field", "lamp_emission", "motion_blur", "glare", "vignette",
    "mosaic_bayer", "demosaic_bilinear", "add_sensor_noise", "quantize", "white_balance", "auto_gain",
    "chroma_denoise", "jpeg",
]

#: Colour-temperature ranges (kelvin) of the light kinds: high-pressure sodium street lamps, tungsten
#: bulbs, halogen headlights and white LEDs (street lights and headlights).
LIGHT_KELVIN = {"sodium": (1900.0, 2200.0), "tungsten": (2700.0, 3000.0), "halogen": (3100.0, 3500.0),
                "led": (4500.0, 6000.0)}
WHITE_BALANCE_MODES = ("gray_world", "illuminant", "none")
_LUMA = (0.2126, 0.7152, 0.0722)


# ----------------------------------------------------------------------------------------------- parameters
@dataclass
class NightParams:
    """All parameters of the simulator as plain data. A 2-tuple is a range ``(lo, hi)`` sampled uniformly
    per image (integers inclusive for ``n_lights``, ``bits``, ``jpeg_quality``); ``*_prob`` is the chance a
    stage is on for an image. Lengths and distances are in image heights unless stated otherwise."""

    # linearisation of the day image
    inverse_tone: bool = True                      # undo a camera S-curve (smoothstep) before the gamma
    # illumination: light = ambient * colour + sum_i P_i / (r_i^2 + h_i^2) * cone_i
    lights: bool = True                            # False: uniform day-like light (only exposure dims)
    n_lights: tuple = (1, 4)
    light_kinds: tuple = ("sodium", "led")
    light_power: tuple = (0.01, 0.04)             # P: irradiance at distance r is P / (r^2 + h^2)
    light_height: tuple = (0.08, 0.25)            # h: distance of the lamp from the lit surface (softening)
    light_y: tuple = (-0.1, 0.55)                 # vertical lamp position, fraction of height (0 = top)
    light_spread: tuple = (0.8, 1.4)              # angular std (rad) of the downward cone; 0 = isotropic
    ambient: tuple = (0.01, 0.04)                 # dark ambient level (fraction of day illumination)
    ambient_kelvin: tuple = (3500.0, 8000.0)      # sky glow / moonlight colour
    lamps_visible: bool = True                    # draw the lamp heads as emitters in the image
    lamp_radiance: tuple = (30.0, 150.0)          # relative to a white surface in daylight
    lamp_radius: tuple = (0.003, 0.007)
    headlight_prob: float = 0.0                   # ego-car headlight cones lighting the road from below
    headlight_power: tuple = (0.02, 0.05)
    headlight_spread: tuple = (0.25, 0.45)
    oncoming_prob: float = 0.0                    # pairs of oncoming headlamps near the horizon
    # optics
    motion_blur_prob: float = 0.0
    motion_blur_length: tuple = (0.01, 0.035)    # fraction of image width
    glare_strength: tuple = (0.0, 0.0)           # fraction of light the lens spreads widely; 0 = off
    glare_radius: tuple = (0.04, 0.12)           # std of the wide PSF lobe
    vignette_strength: tuple = (0.0, 0.0)        # relative fall-off in the corners; 0 = off
    # exposure and illuminant error
    exposure: tuple = (0.02, 0.1)                # mean sensor signal relative to a day exposure (the light
                                                  # field is normalised to mean luminance 1)
    wb_error: float = 0.0                         # std of the log R/B gain error (camera/illuminant mismatch)
    # sensor
    full_well: float = 8000.0                     # photo-electrons at saturation
    analog_gain: tuple = (1.0, 1.0)              # ISO gain before the ADC
    noise: bool = True
    read_noise: tuple = (2.0, 5.0)               # electrons rms
    row_noise: tuple = (0.0, 0.0)                # electrons rms of per-row offsets (banding)
    bits: tuple = (10, 12)
    black_level: float = 0.05                     # ADC offset, fraction of range (keeps noise below zero)
    # camera pipeline
    white_balance: str = "none"                   # gray_world | illuminant | none
    wb_strength: tuple = (1.0, 1.0)              # 1 = full correction, < 1 leaves a colour cast
    auto_gain: bool = False
    auto_gain_target: tuple = (0.06, 0.1)       # target mean linear luminance
    max_gain: float = 32.0
    tone_curve: bool = True                       # camera S-curve after the gamma
    chroma_denoise: tuple = (0.0, 0.0)           # std (px) of the ISP's chroma noise reduction; 0 = off
    jpeg_prob: float = 0.0
    jpeg_quality: tuple = (40, 85)
    jpeg_scale: int = 1                           # the camera compresses at this multiple of the output resolution
                                                  # and the stored photo is a downscaled copy (area average)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(f.default, tuple) and f.name != "light_kinds":
                if not isinstance(v, tuple) or len(v) != 2 or not all(isinstance(x, (int, float)) for x in v) \
                        or v[0] > v[1]:
                    raise SimmmError(f"NightParams.{f.name} must be a range (lo, hi) with lo <= hi, "
                                     f"got {v!r}")
        bad = [k for k in self.light_kinds if k not in LIGHT_KELVIN]
        if bad or not self.light_kinds:
            raise SimmmError(f"NightParams.light_kinds: unknown kind(s) {bad}; "
                             f"allowed: {sorted(LIGHT_KELVIN)}")
        if self.white_balance not in WHITE_BALANCE_MODES:
            raise SimmmError(f"NightParams.white_balance={self.white_balance!r}; "
                             f"allowed: {WHITE_BALANCE_MODES}")
        for name in (f.name for f in dataclasses.fields(self) if f.name.endswith("_prob")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise SimmmError(f"NightParams.{name} is a probability: expected a number in [0, 1], got {v!r}")
        if not isinstance(self.jpeg_scale, int) or self.jpeg_scale < 1:
            raise SimmmError(f"NightParams.jpeg_scale must be an integer >= 1, got {self.jpeg_scale!r}")
        if self.full_well <= 0 or not 0 <= self.black_level < 1 or not 1 <= self.bits[0] <= self.bits[1] <= 16:
            raise SimmmError("NightParams: full_well must be > 0, black_level in [0, 1) and bits in [1, 16]")

    @classmethod
    def from_dict(cls, d: dict, base: Optional["NightParams"] = None, path: str = "") -> "NightParams":
        """Build from a plain dict (e.g. a recipe section) whose keys replace those of ``base`` (default: the
        dataclass defaults). An unknown key, a value of the wrong kind (a flag, a number, a name, a range) or out of
        range raises :class:`SimmmError`; with ``path`` (a recipe key such as ``adapt.night``) the message names the
        key as ``path.key``."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k in d:
            if k not in fields:
                close = difflib.get_close_matches(str(k), list(fields), n=2)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                where = f"{path}.{k}: unknown key{hint}; " if path else f"unknown night simulator parameter {k!r}; "
                raise SimmmError(f"{where}allowed: {', '.join(fields)}")
        start = {} if base is None else base.to_dict()
        for k, v in d.items():
            where = f"{path}.{k}" if path else f"NightParams.{k}"
            default = fields[k].default
            if isinstance(default, bool):
                ok, kind = isinstance(v, bool), "true or false"
            elif isinstance(default, int):
                ok, kind = isinstance(v, int) and not isinstance(v, bool), "an integer"
            elif isinstance(default, float):
                ok, kind = isinstance(v, (int, float)) and not isinstance(v, bool), "a number"
            elif isinstance(default, str):
                ok, kind = isinstance(v, str), "a string"
            else:
                ok, kind = isinstance(v, (list, tuple)), "a list [low, high]" if k != "light_kinds" else "a list"
            if not ok:
                raise SimmmError(f"{where}: got {v!r}; expected {kind}")
            if path:  # one key at a time, so that a bad value is named by its key
                try:
                    cls(**{**start, k: v})
                except SimmmError as exc:
                    raise SimmmError(f"{where}: {exc}") from None
        return cls(**{**start, **d})

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists), YAML-friendly; ``from_dict(to_dict())`` round-trips."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes) -> "NightParams":
        """Copy with some fields changed (unknown names raise :class:`SimmmError`)."""
        d = self.to_dict()
        d.update(changes)
        return NightParams.from_dict(d)


PRESETS: dict[str, NightParams] = {
    # Calibrated against statistics of real night photographs (simmm/real_night_stats.json, measured by
    # benchmarks/night_realism.py): light concentrated in pools (a low ambient, lamps close to what they light),
    # a dark bulk (median luma ~0.02) and little visible noise. The real photos, like most stored night photos,
    # were downscaled from a multi-megapixel sensor, so the sensor values are per *output* pixel: averaging
    # k x k sensor pixels multiplies the full well by k^2 and the read noise by k, and adds log2(k) ADC bits.
    # comparison preset: a global exposure drop and sensor noise, nothing else (deliberately unrealistic in its
    # spatial statistics: no light sources, so no dark bulk and no concentrated light)
    "global_dim": NightParams(inverse_tone=False, lights=False, exposure=(0.01, 0.1), full_well=150000.0,
                              read_noise=(6.0, 15.0), tone_curve=False),
    # sodium / LED street lamps over a dark ambient, glare, vignetting, partial AWB, auto-gain
    "street": NightParams(n_lights=(2, 4), light_kinds=("sodium", "sodium", "led"), light_height=(0.03, 0.12),
                          ambient=(0.002, 0.01), glare_strength=(0.01, 0.03), vignette_strength=(0.3, 0.6),
                          exposure=(0.015, 0.06), wb_error=0.1, full_well=150000.0, read_noise=(10.0, 20.0),
                          row_noise=(2.5, 7.5), bits=(12, 14), white_balance="gray_world",
                          wb_strength=(0.65, 0.95), auto_gain=True, auto_gain_target=(0.015, 0.04)),
    # mixed sources, ego headlights and oncoming cars, motion blur, JPEG at a camera's quality, compressed at the
    # camera's resolution (6x the output) and stored downscaled, as the real reference photos were (their 8-px
    # blocks are gone: blockiness 0.99 +- 0.03; compressing at the output resolution gave 1.46)
    "urban": NightParams(n_lights=(2, 5), light_kinds=("sodium", "tungsten", "led"), light_height=(0.03, 0.12),
                         ambient=(0.002, 0.01), headlight_prob=0.7, oncoming_prob=0.6, motion_blur_prob=0.5,
                         glare_strength=(0.01, 0.04), vignette_strength=(0.2, 0.5), exposure=(0.02, 0.08),
                         wb_error=0.15, full_well=80000.0, read_noise=(10.0, 25.0), row_noise=(2.5, 10.0),
                         bits=(12, 14), white_balance="gray_world", wb_strength=(0.6, 0.95), auto_gain=True,
                         auto_gain_target=(0.015, 0.04), jpeg_prob=1.0, jpeg_quality=(85, 95),
                         jpeg_scale=6),
    # very low light: weak sources, few photo-electrons, the strongest noise (at the top of the real spread) and
    # banding, no auto-gain (a high analog gain keeps the picture just visible), the ISP's chroma noise reduction
    "dark": NightParams(n_lights=(1, 3), light_kinds=("sodium", "tungsten"), light_height=(0.03, 0.12),
                        ambient=(0.003, 0.012), lamp_radiance=(10.0, 60.0), glare_strength=(0.005, 0.02),
                        vignette_strength=(0.3, 0.6), exposure=(0.006, 0.02), wb_error=0.15, full_well=30000.0,
                        analog_gain=(6.0, 12.0), read_noise=(10.0, 20.0), row_noise=(4.0, 10.0), bits=(12, 12),
                        white_balance="gray_world", wb_strength=(0.5, 0.9), chroma_denoise=(2.0, 4.0)),
}
MIXED = "mixed"

# The training distribution of the physical-night augmentation (SMM's ``adapt.darkening: night``, a MAET-style
# baseline). It must not be an evaluation preset: a model trained on a preset's own distribution would be tested on
# simulated night it has already seen. So it is a parameter set of its own, broader than any preset, and in several
# fields outside all of them: all four light kinds (halogen lamps appear in no preset), 0-5 sources (0: only the dim
# ambient light, a global-dim-like night with the camera's tone curve, unlike `global_dim`), ambient light up to 0.03
# (presets: <= 0.012), lamps anywhere from 0.03 to 0.2 image heights above what they light, exposure 0.005-0.08
# (spanning `dark` to `urban`), one full well of 50 000 e- (presets: 30 000, 80 000, 150 000) with analog gain 1-3 and
# auto-gain to 0.008-0.05, 10-14 bit ADCs, read noise 4-25 e-, row noise 0-8 e-, white balance 0.4-1.0 of a
# gray-world correction with a larger illuminant error (0.2), chroma noise reduction 0-3 px, and each of headlights,
# oncoming cars (0.3), motion blur (0.2) and JPEG at quality 60-95 (0.3) only sometimes. Its ranges overlap the
# presets' (night is night), but none of its sampled ranges or probabilities equals a preset's (only the switches of
# the pipeline and fixed constants such as the black level are shared; tests/test_night_augmentation.py checks it).
# On day photos its images match the real night photos' statistics (simmm/real_night_stats.json) within 2 real
# stds in every statistic but JPEG blockiness (README "Baselines"). Its per-image seeds come from the training RNG with
# entropy [draw, 7] (:func:`_seed_entropies`), never the evaluation's [seed, i] or the benchmark's [seed].
TRAINING = NightParams(
    n_lights=(0, 5), light_kinds=("sodium", "tungsten", "halogen", "led"), light_power=(0.005, 0.05),
    light_height=(0.03, 0.2), light_y=(-0.15, 0.6), light_spread=(0.6, 1.6), ambient=(0.002, 0.03),
    ambient_kelvin=(3000.0, 9000.0), lamp_radiance=(10.0, 150.0), lamp_radius=(0.002, 0.008), headlight_prob=0.3,
    headlight_power=(0.015, 0.06), headlight_spread=(0.2, 0.5), oncoming_prob=0.3, motion_blur_prob=0.2,
    motion_blur_length=(0.005, 0.03), glare_strength=(0.0, 0.04), glare_radius=(0.03, 0.15),
    vignette_strength=(0.0, 0.6), exposure=(0.005, 0.08), wb_error=0.2, full_well=50000.0, analog_gain=(1.0, 3.0),
    read_noise=(4.0, 25.0), row_noise=(0.0, 8.0), bits=(10, 14), white_balance="gray_world", wb_strength=(0.4, 1.0),
    auto_gain=True, auto_gain_target=(0.008, 0.05), chroma_denoise=(0.0, 3.0), jpeg_prob=0.3, jpeg_quality=(60, 95))


def get_preset(name: str) -> NightParams:
    """A copy of the preset ``name``; unknown names raise :class:`SimmmError` listing the presets."""
    if name not in PRESETS:
        raise SimmmError(f"unknown night preset {name!r}; available: {', '.join(PRESETS)} (or {MIXED!r})")
    return dataclasses.replace(PRESETS[name])


def _resolve(params) -> Union[NightParams, str]:
    if isinstance(params, NightParams):
        return params
    if isinstance(params, dict):
        return NightParams.from_dict(params)
    if params == MIXED:
        return MIXED
    if isinstance(params, str):
        return get_preset(params)
    raise SimmmError("night params must be a NightParams, a dict or a preset name, "
                     f"got {type(params).__name__}")


# ----------------------------------------------------------------------------------------- random helpers
def _u(g: torch.Generator, rng) -> float:
    lo, hi = float(rng[0]), float(rng[1])
    return lo if hi == lo else lo + (hi - lo) * torch.rand((), generator=g, device=g.device).item()


def _i(g: torch.Generator, rng) -> int:
    return int(torch.randint(int(rng[0]), int(rng[1]) + 1, (), generator=g, device=g.device).item())


def _chance(g: torch.Generator, p: float) -> bool:
    return p > 0 and torch.rand((), generator=g, device=g.device).item() < p


def _image_generator(entropy: Sequence[int], device) -> torch.Generator:
    seed = int(np.random.SeedSequence([int(e) % 2**63 for e in entropy]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed % 2**63)


# --------------------------------------------------------------------------------------- colour and tone
def srgb_to_linear(x: Tensor) -> Tensor:
    """Inverse sRGB transfer function (IEC 61966-2-1). Any shape, values in [0, 1]."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    """sRGB transfer function (gamma encoding) of linear values, clamped to [0, 1] first."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def tone_curve(x: Tensor) -> Tensor:
    """A camera's global S-curve, modelled as smoothstep ``3x^2 - 2x^3`` on gamma-encoded values."""
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def inverse_tone_curve(y: Tensor) -> Tensor:
    """Exact inverse of :func:`tone_curve`: ``x = 1/2 - sin(asin(1 - 2y) / 3)``."""
    return 0.5 - torch.sin(torch.asin((1 - 2 * y.clamp(0, 1)).clamp(-1, 1)) / 3)


def _lobe(lam, mu, s1, s2):
    s = np.where(lam < mu, s1, s2)
    return np.exp(-0.5 * ((lam - mu) / s) ** 2)


@functools.lru_cache(maxsize=512)
def _kelvin_rgb(kelvin: float) -> tuple:
    lam = np.arange(380.0, 781.0, 5.0)
    planck = lam ** -5 / np.expm1(1.4388e7 / (lam * kelvin))          # c2 = 1.4388e7 nm K
    # analytic multi-lobe fit of the CIE 1931 colour-matching functions (Wyman, Sloan & Shirley 2013)
    xb = 1.056 * _lobe(lam, 599.8, 37.9, 31.0) + 0.362 * _lobe(lam, 442.0, 16.0, 26.7) \
        - 0.065 * _lobe(lam, 501.1, 20.4, 26.2)
    yb = 0.821 * _lobe(lam, 568.8, 46.9, 40.5) + 0.286 * _lobe(lam, 530.9, 16.3, 31.1)
    zb = 1.217 * _lobe(lam, 437.0, 11.8, 36.0) + 0.681 * _lobe(lam, 459.0, 26.0, 13.8)
    xyz = np.array([(planck * xb).sum(), (planck * yb).sum(), (planck * zb).sum()])
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    rgb = np.clip(m @ (xyz / xyz[1]), 1e-3, None)
    return tuple(float(v) for v in rgb / (np.array(_LUMA) @ rgb))


def kelvin_to_rgb(kelvin: float) -> Tensor:
    """Linear-sRGB colour (3,) of a black body at ``kelvin``, scaled to luminance 1 (so ~6500 K is ~white).
    Planck's law integrated against the CIE 1931 observer, then XYZ -> linear sRGB."""
    return torch.tensor(_kelvin_rgb(round(float(kelvin), 1)), dtype=torch.float32)


# ------------------------------------------------------------------------------------------ illumination
@dataclass
class Light:
    """One light source. Position ``(x, y)`` as fractions of width and height (may lie outside the frame).
    Irradiance at image distance r (image heights): ``power / (r^2 + height^2)``, times the cone factor
    ``exp(-angle^2 / (2 spread^2))`` around ``direction`` (radians, image coordinates: 0 = right,
    pi/2 = down) when ``direction`` is set. ``height = 0`` and no direction is a pure inverse-square point
    light; ``height > 0`` softens it like a lamp hanging above the lit surface (an area light at a distance).
    ``radiance > 0`` draws the lamp itself as a Gaussian emitter of that radiance and ``radius``."""

    x: float
    y: float
    power: float
    color: tuple = (1.0, 1.0, 1.0)
    height: float = 0.0
    direction: Optional[float] = None
    spread: float = 1.0
    radiance: float = 0.0
    radius: float = 0.01


def _grid(h: int, w: int, device) -> tuple:
    v = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    u = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / h
    return u.view(1, w), v.view(h, 1)


def light_field(height: int, width: int, lights: Sequence[Light], ambient: float = 0.0,
                ambient_color=(1.0, 1.0, 1.0), device=None) -> Tensor:
    """Illumination (3, H, W), relative to daylight, that multiplies the linear scene reflectance:
    ``ambient * ambient_color + sum_i color_i * power_i / (r_i^2 + height_i^2) * cone_i``."""
    u, v = _grid(height, width, device)
    out = torch.as_tensor(ambient_color, dtype=torch.float32, device=device).view(3, 1, 1) * ambient
    out = out.expand(3, height, width).clone()
    for L in lights:
        du, dv = u - L.x * width / height, v - L.y
        e = L.power / ((du * du + dv * dv).clamp_min(1e-10) + L.height ** 2)
        if L.direction is not None and L.spread > 0:
            ang = torch.atan2(dv, du) - L.direction
            ang = torch.atan2(torch.sin(ang), torch.cos(ang))
            e = e * torch.exp(-0.5 * (ang / L.spread) ** 2)
        out += torch.as_tensor(L.color, dtype=torch.float32, device=device).view(3, 1, 1) * e
    return out


def lamp_emission(height: int, width: int, lights: Sequence[Light], device=None) -> Tensor:
    """Radiance (3, H, W) of the visible lamp heads: Gaussian spots far brighter than any lit surface, which
    saturate the sensor and produce glare."""
    u, v = _grid(height, width, device)
    out = torch.zeros(3, height, width, device=device)
    for L in lights:
        if L.radiance > 0:
            r2 = (u - L.x * width / height) ** 2 + (v - L.y) ** 2
            spot = L.radiance * torch.exp(-0.5 * r2 / L.radius ** 2)
            out += torch.as_tensor(L.color, dtype=torch.float32, device=device).view(3, 1, 1) * spot
    return out


def sample_lights(params: NightParams, generator: torch.Generator) -> list:
    """Draw the light sources of one image: street lamps (cones pointing down), optional ego headlights
    (cones from below the frame pointing up the road) and optional pairs of oncoming headlamps."""
    p, g = params, generator
    out = []
    if not p.lights:
        return out

    def col(kind_range):
        return tuple(kelvin_to_rgb(_u(g, kind_range)).tolist())

    for _ in range(_i(g, p.n_lights)):
        kind = p.light_kinds[_i(g, (0, len(p.light_kinds) - 1))]
        spread = _u(g, p.light_spread)
        out.append(Light(x=_u(g, (-0.1, 1.1)), y=_u(g, p.light_y), power=_u(g, p.light_power),
                         color=col(LIGHT_KELVIN[kind]), height=_u(g, p.light_height),
                         direction=math.pi / 2 if spread > 0 else None, spread=spread,
                         radiance=_u(g, p.lamp_radiance) if p.lamps_visible else 0.0,
                         radius=_u(g, p.lamp_radius)))
    if _chance(g, p.headlight_prob):
        c, off, power, spread = col((4200.0, 6000.0)), _u(g, (0.1, 0.2)), _u(g, p.headlight_power), \
            _u(g, p.headlight_spread)
        for side in (-1, 1):
            out.append(Light(x=0.5 + side * off, y=_u(g, (1.1, 1.3)), power=power, color=c, height=0.15,
                             direction=-math.pi / 2, spread=spread))
    if _chance(g, p.oncoming_prob):
        for _ in range(_i(g, (1, 2))):
            x0, y0, sep, c = _u(g, (0.1, 0.9)), _u(g, (0.45, 0.7)), _u(g, (0.02, 0.06)), col((4500.0, 6000.0))
            rad = _u(g, p.lamp_radiance) * 2 if p.lamps_visible else 0.0
            for side in (-1, 1):
                out.append(Light(x=x0 + side * sep, y=y0, power=_u(g, (0.001, 0.004)), color=c, height=0.03,
                                 direction=math.pi / 2, spread=0.8, radiance=rad,
                                 radius=0.6 * _u(g, p.lamp_radius)))
    return out


# ------------------------------------------------------------------------------------------------- optics
def _gauss_blur(x: Tensor, sigma_px: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W); wide kernels are run on an area-downsampled copy."""
    if sigma_px < 0.3:
        return x
    b, c, h, w = x.shape
    f = max(1, int(sigma_px // 3))
    y = F.avg_pool2d(F.pad(x, (0, -w % f, 0, -h % f), mode="replicate"), f) if f > 1 else x
    s = sigma_px / f
    r = int(math.ceil(3 * s))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) / s) ** 2)
    k = k / k.sum()
    y = F.pad(y, (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.interpolate(y, scale_factor=f, mode="bilinear", align_corners=False)[..., :h, :w] if f > 1 else y


def glare(x: Tensor, strength: float, radius: float) -> Tensor:
    """Lens glare and bloom on linear irradiance (B, 3, H, W): the point spread function is
    ``(1 - s) delta + s (G(radius / 8) + G(radius)) / 2`` (a short bloom lobe and a wide veiling-glare lobe,
    radius in image heights). Energy is conserved; halos only show around sources far brighter than their
    surroundings."""
    if strength <= 0:
        return x
    h = x.shape[-2]
    return (1 - strength) * x + strength * 0.5 * (_gauss_blur(x, radius * h / 8) + _gauss_blur(x, radius * h))


def vignette(x: Tensor, strength: float) -> Tensor:
    """Natural vignetting by the cos^4 law, ``V = 1 / (1 + (r / f)^2)^2`` with r the distance from the centre
    over the half-diagonal, f chosen so that the corners lose the fraction ``strength`` of their light."""
    if strength <= 0:
        return x
    h, w = x.shape[-2:]
    yy = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5 - h / 2).view(h, 1)
    xx = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5 - w / 2).view(1, w)
    r2 = (xx ** 2 + yy ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    f2 = 1.0 / ((1 - min(strength, 0.99)) ** -0.5 - 1)
    return x / (1 + r2 / f2) ** 2


def motion_blur(x: Tensor, length_px: float, angle_deg: float) -> Tensor:
    """Linear motion blur (camera shake during a long exposure) of (B, C, H, W): a line kernel of
    ``length_px`` pixels at ``angle_deg``."""
    k = int(round(length_px)) | 1
    if k < 3:
        return x
    from kornia.filters import motion_blur as _mb
    return _mb(x, k, float(angle_deg), 0.0, border_type="replicate", mode="bilinear")


# ------------------------------------------------------------------------------------------------- sensor
def _bayer_masks(h: int, w: int, device, dtype=torch.float32) -> Tensor:
    """(3, H, W) 0/1 masks of the R, G, B sites of an RGGB colour filter array."""
    yy = torch.arange(h, device=device).view(h, 1) % 2
    xx = torch.arange(w, device=device).view(1, w) % 2
    r = (yy == 0) & (xx == 0)
    b = (yy == 1) & (xx == 1)
    return torch.stack([r, ~(r | b), b]).to(dtype)


def mosaic_bayer(linear: Tensor) -> Tensor:
    """Sample (B, 3, H, W) through an RGGB colour filter array -> (B, 1, H, W): R at (even, even),
    G at (even, odd) and (odd, even), B at (odd, odd)."""
    m = _bayer_masks(*linear.shape[-2:], linear.device, linear.dtype)
    return (linear * m).sum(1, keepdim=True)


def demosaic_bilinear(raw: Tensor) -> Tensor:
    """Bilinear demosaicing of an RGGB mosaic (B, 1, H, W) -> (B, 3, H, W). Each missing value is the mean
    of the nearest same-colour sites, i.e. convolution with the standard kernels
    ``[[0,1,0],[1,4,1],[0,1,0]]/4`` (G) and ``[[1,2,1],[2,4,2],[1,2,1]]/4`` (R, B), written as a normalised
    convolution (the same kernels over the site masks, divided by their sum) so that the borders are
    interpolated from the sites that exist: a constant colour is reproduced everywhere."""
    h, w = raw.shape[-2:]
    m = _bayer_masks(h, w, raw.device, raw.dtype).unsqueeze(0)
    kg = torch.tensor([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=raw.dtype, device=raw.device) / 4
    krb = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=raw.dtype, device=raw.device) / 4
    k = torch.stack([krb, kg, krb]).unsqueeze(1)
    num = F.conv2d(F.pad(raw * m, (1, 1, 1, 1)), k, groups=3)
    den = F.conv2d(F.pad(m, (1, 1, 1, 1)), k, groups=3)
    return num / den


def add_sensor_noise(electrons: Tensor, read_noise: float = 0.0, row_noise: float = 0.0,
                     generator: Optional[torch.Generator] = None, shot: bool = True) -> Tensor:
    """Noise of a photo-electron image (B, C, H, W): Poisson shot noise (variance = mean, the photon
    statistics), Gaussian read noise of ``read_noise`` e- rms per pixel, and one Gaussian offset of
    ``row_noise`` e- rms per row (readout banding). Variance = read^2 + row^2 + mean."""
    x = torch.poisson(electrons.clamp_min(0), generator=generator) if shot else electrons
    if read_noise > 0:
        x = x + read_noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if row_noise > 0:
        b, c, h, _ = x.shape
        x = x + row_noise * torch.randn((b, c, h, 1), generator=generator, device=x.device, dtype=x.dtype)
    return x


def quantize(x: Tensor, bits: int, black_level: float = 0.0) -> Tensor:
    """ADC: map ``x`` (1 = full scale) to ``2**bits`` codes after adding a black-level offset (a fraction of
    the range, so that noise below zero survives), clip to the code range, and map back to the same scale.
    With ``black_level = 0`` the outputs are exactly the ``2**bits`` values ``k / (2**bits - 1)``."""
    levels = float(2 ** int(bits) - 1)
    v = (x * (1 - black_level) + black_level).clamp(0, 1)
    return (torch.round(v * levels) / levels - black_level) / (1 - black_level)


# ------------------------------------------------------------------------------------------ camera pipeline
def white_balance(x: Tensor, mode: str = "gray_world", strength: float = 1.0,
                  illuminant: Optional[Tensor] = None, max_gain: float = 8.0) -> Tensor:
    """White balance of linear (B, 3, H, W). ``gray_world`` assumes the unsaturated scene averages to grey;
    ``illuminant`` divides by an illuminant estimate (3,). The gains (green = 1) are raised to ``strength``:
    cameras deliberately keep part of a warm cast at night, and under sodium light the blue channel holds
    so little signal that correcting it amplifies noise."""
    if mode == "none" or strength <= 0:
        return x
    if mode == "illuminant":
        ill = illuminant.to(x).view(1, 3, 1, 1).clamp_min(1e-6)
        gains = ill[:, 1:2] / ill
    else:
        ok = (x < 0.95).all(1, keepdim=True).to(x.dtype)
        mean = (x.clamp_min(0) * ok).sum((2, 3), keepdim=True) / ok.sum((2, 3), keepdim=True).clamp_min(1)
        gains = mean[:, 1:2] / mean.clamp_min(1e-6)
    return x * gains.clamp(1 / max_gain, max_gain) ** strength


def auto_gain(x: Tensor, target: float, max_gain: float = 32.0) -> Tensor:
    """Digital auto-gain: scale linear (B, 3, H, W) so that its mean luminance reaches ``target`` (gain in
    [1, max_gain]); noise and quantisation steps are amplified with the signal, as in a real camera."""
    luma = (x.clamp(0, 1) * torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1)
    gain = (target / luma.mean((1, 2)).clamp_min(1e-6)).clamp(1.0, max_gain)
    return x * gain.view(-1, 1, 1, 1)


def chroma_denoise(x: Tensor, sigma_px: float) -> Tensor:
    """Chroma noise reduction of a camera ISP on display-referred (B, 3, H, W) in [0, 1]: the colour-difference
    planes Cb and Cr (JPEG's full-range YCbCr) blurred with a Gaussian of ``sigma_px`` pixels, Y untouched.
    Cameras do this at high gain: sensor noise is independent per colour site, so without it colour noise would
    exceed luma noise, which real photos do not show."""
    if sigma_px <= 0:
        return x
    from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb
    ycc = rgb_to_ycbcr(x)
    return ycbcr_to_rgb(torch.cat([ycc[:, :1], _gauss_blur(ycc[:, 1:], sigma_px)], 1))


def jpeg(x: Tensor, quality: int, scale: int = 1) -> Tensor:
    """JPEG round trip (Pillow's libjpeg, 4:2:0 chroma) of (B, 3, H, W) in [0, 1] at ``quality``. With ``scale``
    > 1 the image is compressed at ``scale`` times its size (bilinear) and the result area-averaged back, as a photo
    compressed by the camera and stored downscaled: its 8-px blocks shrink to ``8 / scale`` px and soften."""
    import io
    from PIL import Image
    if scale > 1:
        big = F.interpolate(x.clamp(0, 1), scale_factor=scale, mode="bilinear", align_corners=False)
        return F.avg_pool2d(jpeg(big, quality), scale)
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for im in u8:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=int(quality))
        out.append(torch.from_numpy(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()))
    return torch.stack(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255


# --------------------------------------------------------------------------------------------- the pipeline
def _front(lin: Tensor, p: NightParams, g: torch.Generator, noise: Optional[torch.Generator] = None) -> tuple:
    """Scene (1, 3, H, W linear reflectance) -> raw ADC mosaic (1, 1, H, W) and the illuminant estimate.
    ``g`` draws the image's parameters, ``noise`` (default ``g``) the sensor noise: a clip's frames share ``g``'s
    draws (its night) and have noise of their own. The parameter draws never depend on the image's content, so
    generators seeded alike give the same parameters whatever the frames hold."""
    n = g if noise is None else noise
    _, _, h, w = lin.shape
    dev = lin.device
    lights = sample_lights(p, g)
    if p.lights:
        amb = _u(g, p.ambient)
        amb_col = kelvin_to_rgb(_u(g, p.ambient_kelvin))
        illum = light_field(h, w, lights, amb, amb_col, dev).unsqueeze(0)
        # normalise to mean luminance 1: `exposure` sets the overall level, the lights only its distribution
        norm = (illum * torch.tensor(_LUMA, device=dev).view(1, 3, 1, 1)).sum(1).mean().clamp_min(1e-12)
        x = (lin * illum + lamp_emission(h, w, lights, dev).unsqueeze(0)) / norm
        ill_est = illum.mean((0, 2, 3))
    else:
        x, ill_est = lin, torch.ones(3, device=dev)
    if _chance(g, p.motion_blur_prob):
        x = motion_blur(x, _u(g, p.motion_blur_length) * w, _u(g, (0.0, 180.0)))
    s = _u(g, p.glare_strength)
    if s > 0:
        x = glare(x, s, _u(g, p.glare_radius))
    x = vignette(x, _u(g, p.vignette_strength))
    x = x * _u(g, p.exposure)
    if p.wb_error > 0:
        err = torch.exp(p.wb_error * torch.randn(3, generator=g, device=g.device)).to(dev)
        err[1] = 1.0
        x = x * err.view(1, 3, 1, 1)
        ill_est = ill_est * err
    e = mosaic_bayer(x) * p.full_well                                  # photo-electrons
    gain = _u(g, p.analog_gain)
    if p.noise:
        e = torch.poisson(e.clamp_min(0), generator=n)
    e = e.clamp(max=p.full_well)                                        # full well
    if p.noise:
        e = add_sensor_noise(e, _u(g, p.read_noise), _u(g, p.row_noise), n, shot=False)
    raw = quantize(e * gain / p.full_well, _i(g, p.bits), p.black_level)  # ADC (clips at full scale)
    return raw, ill_est


def _back(raw: Tensor, ill_est: Tensor, p: NightParams, g: torch.Generator) -> Tensor:
    """Camera pipeline: raw mosaic (1, 1, H, W) -> display image (1, 3, H, W) in [0, 1]."""
    x = demosaic_bilinear(raw)
    x = white_balance(x, p.white_balance, _u(g, p.wb_strength), illuminant=ill_est)
    if p.auto_gain:
        x = auto_gain(x, _u(g, p.auto_gain_target), p.max_gain)
    x = linear_to_srgb(x)
    if p.tone_curve:
        x = tone_curve(x)
    x = chroma_denoise(x, _u(g, p.chroma_denoise))
    if _chance(g, p.jpeg_prob):
        x = jpeg(x, _i(g, p.jpeg_quality), p.jpeg_scale)
    return x.clamp(0, 1).to(torch.float32)


def _linearize(img: Tensor, p: NightParams) -> Tensor:
    return srgb_to_linear(inverse_tone_curve(img) if p.inverse_tone else img)


def _as_batch(images: Tensor) -> tuple:
    if not torch.is_tensor(images) or images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise SimmmError(f"night simulator expects images of shape (B, 3, H, W) or (3, H, W), got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
    single = images.dim() == 3
    return (images.unsqueeze(0) if single else images).float(), single


def _seed_entropies(n: int, seed, generator) -> list:
    if isinstance(seed, (list, tuple)):
        if len(seed) != n:
            raise SimmmError(f"got {len(seed)} seeds for a batch of {n} images")
        return [[int(s)] for s in seed]
    if seed is not None:
        return [[int(seed), i] for i in range(n)]
    dev = generator.device if generator is not None else "cpu"
    draws = torch.randint(0, 2 ** 62, (n,), generator=generator, device=dev)
    return [[int(d), 7] for d in draws]


def _run(images, params, seed, generator, raw_only: bool = False, linear_input: bool = False,
         entropies: Optional[list] = None, noise_entropies: Optional[list] = None):
    if torch.is_tensor(images) and images.dim() == 5:
        return _run_clips(images, params, seed, generator, raw_only)
    x, single = _as_batch(images)
    p = _resolve(params)
    if p == MIXED:
        return mixed_presets(images, seed=seed, generator=generator)[0]
    entropies = entropies or _seed_entropies(x.shape[0], seed, generator)
    outs = []
    for k, (img, ent) in enumerate(zip(x, entropies)):
        g = _image_generator(ent, img.device)
        noise = None if noise_entropies is None else _image_generator(noise_entropies[k], img.device)
        lin = img.unsqueeze(0).clamp(0, None) if linear_input else _linearize(img.unsqueeze(0), p)
        raw, ill = _front(lin, p, g, noise)
        outs.append(raw if raw_only else _back(raw, ill, p, g))
    out = torch.cat(outs)
    return out[0] if single else out


def _run_clips(clips: Tensor, params, seed, generator, raw_only: bool = False) -> Tensor:
    """Clips (B, 3, T, H, W): one night per clip. Every frame of clip b draws its parameters (lights, exposure,
    white balance, gains, JPEG, ...) from the clip's seed entropy ``e_b``, so the frames share them; the sensor noise
    of frame t comes from ``e_b + [2, t]``, so each frame has noise of its own, as a video camera's frames do."""
    if clips.shape[1] != 3:
        raise SimmmError(f"night simulator expects clips of shape (B, 3, T, H, W), got {tuple(clips.shape)}")
    p = _resolve(params)
    if p == MIXED:
        raise SimmmError("night simulator: 'mixed' draws a preset per image; give clips one preset or NightParams")
    b, t = clips.shape[0], clips.shape[2]
    frames = fold_clips(clips)
    clip_entropies = _seed_entropies(b, seed, generator)
    out = _run(frames, p, None, None, raw_only=raw_only, entropies=[e for e in clip_entropies for _ in range(t)],
               noise_entropies=[e + [2, i] for e in clip_entropies for i in range(t)])
    return unfold_clips(out, t).contiguous()


def simulate_night(images: Tensor, params: Union[NightParams, str, dict] = "street",
                   generator: Optional[torch.Generator] = None, seed=None) -> Tensor:
    """Simulated night photos of day sRGB ``images`` (B, 3, H, W) or (3, H, W) in [0, 1] -> same shape,
    float32 in [0, 1]. ``params``: a :class:`NightParams`, a dict, a preset name, or ``"mixed"`` (see
    :func:`mixed_presets`). Every image draws its own parameters. ``seed``: an int (image i uses (seed, i))
    or a list of one seed per image; without it per-image seeds are drawn from ``generator`` (CPU) or the
    global torch RNG. The same seed gives bitwise the same output.

    Clips (B, 3, T, H, W) get one night per clip: the seed is the clip's, its frames share the drawn parameters
    and each frame has sensor noise of its own (:func:`_run_clips`); ``"mixed"`` is refused for clips."""
    return _run(images, params, seed, generator)


def simulate_night_per_image(images: Tensor, params: Union[NightParams, str, dict],
                             seeds: Sequence[int]) -> Tensor:
    """:func:`simulate_night` with one seed per image: image i's result depends only on it and ``seeds[i]``,
    never on the rest of the batch."""
    return _run(images, params, list(seeds), None)


def simulate_raw(images: Tensor, params: Union[NightParams, str, dict] = "street",
                 generator: Optional[torch.Generator] = None, seed=None) -> Tensor:
    """The sensor half only: day sRGB (B, 3, H, W) -> raw RGGB mosaic (B, 1, H, W) after noise, clipping and
    quantisation, on the linear scale where 1 is full scale of the ADC (black level removed)."""
    return _run(images, params, seed, generator, raw_only=True)


def mixed_presets(images: Tensor, presets: Optional[Sequence[str]] = None, seed=None,
                  generator: Optional[torch.Generator] = None) -> tuple:
    """Mixed-condition batch: each image of (B, 3, H, W) gets a preset drawn (from its own seed) out of
    ``presets`` (default: all of :data:`PRESETS`). Returns (images (B, 3, H, W), list of preset names).
    Used for evaluation streams whose batches do not come from one uniform night domain."""
    x, single = _as_batch(images)
    names = list(presets) if presets else list(PRESETS)
    params = [get_preset(n) for n in names]
    outs, chosen = [], []
    for img, ent in zip(x, _seed_entropies(x.shape[0], seed, generator)):
        k = int(torch.randint(len(names), (), generator=_image_generator(ent + [1], "cpu")).item())
        outs.append(_run(img.unsqueeze(0), params[k], None, None, entropies=[ent]))
        chosen.append(names[k])
    out = torch.cat(outs)
    return (out[0] if single else out), chosen


class NightSimulator(nn.Module):
    """Module form of :func:`simulate_night`. ``preset``: a preset name, ``"mixed"`` or a
    :class:`NightParams`. With ``seed`` the sequence of outputs is reproducible (each call draws per-image
    seeds from an internal generator; :meth:`reset` restarts it); without it the global torch RNG is used.
    forward: (B, 3, H, W), (3, H, W) or clips (B, 3, T, H, W) in [0, 1] -> same shape, float32 in [0, 1]."""

    def __init__(self, preset: Union[str, NightParams] = "street", seed: Optional[int] = None):
        super().__init__()
        self.params = _resolve(preset)
        self.preset = preset if isinstance(preset, str) else "custom"
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self._gen = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return _run(images, self.params, None, self._gen)

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}, seed={self.seed}"


# ------------------------------------------------------------------------------------------------ RAW files
def load_raw(path: Union[str, os.PathLike]) -> Tensor:
    """Decode a camera RAW file (anything libraw reads: DNG, CR2, NEF, ...) to linear RGB (3, H, W) in
    [0, 1]: camera white balance, no gamma, no auto-brightening, 16-bit. Raises :class:`DataError` naming
    the path if it is missing or unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"RAW file not found: {path}")
    try:
        import rawpy
        with rawpy.imread(path) as r:
            rgb = r.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True)
    except Exception as e:  # libraw raises several unrelated exception types
        raise DataError(f"cannot decode RAW file {path}: {type(e).__name__}: {e}") from e
    return torch.from_numpy(rgb.astype(np.float32) / 65535.0).permute(2, 0, 1).contiguous()


def simulate_night_raw(path: Union[str, os.PathLike], params: Union[NightParams, str, dict] = "street",
                       seed: Optional[int] = None) -> Tensor:
    """Night version (3, H, W) of a RAW photo: the pipeline starts from the decoded linear RAW (the true
    scene-referred values) instead of inverting an sRGB rendering."""
    p = _resolve(params)
    if p == MIXED:
        raise SimmmError("simulate_night_raw needs a single preset, not 'mixed'")
    lin = load_raw(path)
    return _run(lin, p, None if seed is None else [seed], None, linear_input=True)
