"""simmm.night_stats: each statistic against hand-computed values on small constructed images."""
import math

import numpy as np
import pytest
import torch

from simmm.night_stats import (
    STATS, blockiness, colour_cast, dark_flat_mask, light50_fraction, load_real_stats, luma, luma_stats,
    night_stats, noise_stats, nonuniformity, resize_long_side, robust_noise, saturation_stats, summarize, to_uint8,
    z_scores,
)


def _two_level(h=128, w=256, low=0.0, high=(0.8, 0.4, 0.2)):
    """Left half ``low`` (grey), right half the colour ``high``: float (H, W, 3)."""
    img = np.full((h, w, 3), low, np.float64)
    img[:, w // 2:] = high
    return img


def test_luma_and_its_distribution_on_a_two_level_image():
    img = _two_level()
    y_hi = 0.2126 * 0.8 + 0.7152 * 0.4 + 0.0722 * 0.2          # 0.47456
    assert luma(img)[0, -1] == pytest.approx(y_hi)
    s = luma_stats(luma(img))
    assert s["mean_luma"] == pytest.approx(y_hi / 2)
    assert s["p5"] == 0.0 and s["p99"] == pytest.approx(y_hi)
    # numpy's linear percentile: the median of 2n values, n of them 0, lies halfway between 0 and y_hi
    assert s["p50"] == pytest.approx(y_hi / 2)
    assert s["frac_lt_0.05"] == 0.5 and s["frac_gt_0.95"] == 0.0
    assert luma_stats(luma(_two_level(high=1.0)))["frac_gt_0.95"] == 0.5


def test_colour_cast_of_the_mean_colour():
    img = _two_level(low=0.0, high=(0.8, 0.4, 0.2))
    c = colour_cast(img)
    assert c["R/B"] == pytest.approx(4.0) and c["G/B"] == pytest.approx(2.0)   # (0.4, 0.2, 0.1) mean colour
    grey = colour_cast(np.full((4, 4, 3), 0.3))
    assert grey["chroma_C"] == pytest.approx(0.0, abs=0.01)          # skimage's D65 white point, to 1e-2
    # sRGB pure red is CIELAB (53.24, 80.09, 67.20): hue 40.0 deg, chroma 104.55 (the standard's values)
    red = colour_cast(np.tile(np.array([1.0, 0.0, 0.0]), (4, 4, 1)))
    assert red["hue_deg"] == pytest.approx(40.0, abs=0.1) and red["chroma_C"] == pytest.approx(104.55, abs=0.1)
    blue = colour_cast(np.tile(np.array([0.0, 0.0, 1.0]), (4, 4, 1)))        # b* < 0: hue in [270, 360)
    assert blue["hue_deg"] == pytest.approx(306.3, abs=0.2)


def test_light50_fraction():
    # two levels, all light in the right half: half of it sits in a quarter of the pixels
    assert light50_fraction(_two_level(high=0.6)) == pytest.approx(0.25, abs=1 / (128 * 256))
    # a linear-luminance ramp 0..1: the top fraction f holds 1 - (1 - f)^2 of the light -> f = 1 - 1/sqrt(2)
    ramp = (np.arange(10000) + 0.5) / 10000
    srgb = np.where(ramp <= 0.0031308, 12.92 * ramp, 1.055 * ramp ** (1 / 2.4) - 0.055)
    img = np.repeat(srgb.reshape(100, 100, 1), 3, axis=2)
    assert light50_fraction(img) == pytest.approx(1 - 1 / math.sqrt(2), abs=2e-4)


def test_nonuniformity_of_a_cosine():
    # Y = 0.5 + 0.25 cos(2 pi (x + 1/2) / 64) on 256 columns: even about both borders, so the reflecting border
    # continues it exactly; a Gaussian of sigma 16 scales it by exp(-2 pi^2 16^2 / 64^2) = 0.29121; over whole
    # periods std = amplitude / sqrt(2) -> nonunif = 0.25 * 0.29121 / sqrt(2) / 0.5 = 0.10296
    x = np.arange(256) + 0.5
    y = np.tile(0.5 + 0.25 * np.cos(2 * np.pi * x / 64), (64, 1))
    expected = 0.25 * math.exp(-2 * math.pi ** 2 * 16 ** 2 / 64 ** 2) / math.sqrt(2) / 0.5
    assert nonuniformity(y) == pytest.approx(expected, rel=1e-3)
    assert nonuniformity(np.full((32, 32), 0.3)) == pytest.approx(0.0, abs=1e-9)


def test_robust_noise_of_a_gaussian_patch_and_a_checkerboard():
    rng = np.random.default_rng(0)
    plane = 20.0 + 2.0 * rng.standard_normal((256, 256))
    mask = np.ones(plane.shape, bool)
    mask[[0, -1], :] = mask[:, [0, -1]] = False
    assert robust_noise(plane, mask) == pytest.approx(2.0, rel=0.03)
    # a checkerboard +-d: the kernel gives +-(4 + 4*2 + 4*1) d = +-16 d, / 6; median 0, MAD 16 d / 6
    d = 0.5
    board = 20.0 + d * (-1.0) ** np.add.outer(np.arange(16), np.arange(16))
    inner = np.zeros(board.shape, bool)
    inner[1:-1, 1:-1] = True
    assert robust_noise(board, inner) == pytest.approx(1.4826 * 16 * d / 6)
    assert math.isnan(robust_noise(board, np.zeros_like(inner)))


def test_noise_stats_pick_the_dark_flat_pixels():
    rng = np.random.default_rng(1)
    h, w = 128, 256
    base = np.empty((h, w, 3))
    base[:, : w // 2] = 0.1 * 255                               # dark: Y 0.1 -> counted
    base[:, w // 2:] = 0.6 * 255                                # bright: left out
    grey = rng.standard_normal((h, w, 1))                       # the same noise in R, G, B: luma noise only
    img = base + np.where(np.arange(w) < w // 2, 2.0, 8.0)[None, :, None] * grey
    s = noise_stats(img)
    assert s["noise_dark"] == pytest.approx(2.0, rel=0.05)
    assert s["chroma_noise_dark"] == pytest.approx(0.0, abs=1e-9)
    # independent noise of sigma 2 per channel: R-G and B-G have sigma 2 sqrt(2)
    img = base + np.where(np.arange(w) < w // 2, 2.0, 8.0)[None, :, None] * rng.standard_normal((h, w, 3))
    assert noise_stats(img)["chroma_noise_dark"] == pytest.approx(2 * math.sqrt(2), rel=0.05)
    # the lower half of the dark set by smoothed gradient: a steep dark ramp (top half) is left out, the flat
    # bottom half kept (the rows near the seam and the ramp's border columns have gradients in between)
    y = np.full((64, 64), 0.05)
    y[:32] = np.linspace(0, 0.19, 64)[None, :]
    mask = dark_flat_mask(y)
    assert not mask[:28, 6:-6].any() and mask[36:-1, 1:-1].all()
    # noise_mid counts smoothed Y in [0.05, 0.3): the bright half (0.6) is outside, the dark half (0.1) inside
    assert s["noise_mid"] == pytest.approx(2.0, rel=0.05)


def test_blockiness_of_an_8px_step():
    # within blocks a ramp of step a; across each 8-px grid line the value jumps by 3a (-7a + 10a); rows are
    # constant (vertical steps 0 everywhere, as many on and off the grid as the horizontal ones) -> ratio 3
    a = 1.0 / 255
    col = np.arange(64)
    y = np.tile(a * (col % 8) + 10 * a * (col // 8), (64, 1))
    assert blockiness(y) == pytest.approx(3.0)
    assert blockiness(np.tile(a * col, (64, 1))) == pytest.approx(1.0)      # a smooth ramp: no blocks


def test_saturation_stats():
    h, w = 10, 100                                              # 1000 pixels: the brightest 2% are 20
    img = np.full((h, w, 3), 0.02)                              # dark grey (Y < 0.05): not in sat_all
    img[0, :20] = (0.9, 0.9, 0.45)                              # the 20 brightest: saturation 0.5
    img[1, :] = (0.3, 0.15, 0.15)                               # lit, saturation 0.5 ... and 100 of them
    img[2, :50] = (0.3, 0.3, 0.3)                               # lit, saturation 0
    s = saturation_stats(img)
    assert s["sat_bright"] == pytest.approx(0.5)
    assert s["sat_all"] == pytest.approx((20 * 0.5 + 100 * 0.5 + 50 * 0.0) / 170)


def test_night_stats_resizes_and_quantises():
    # a float image, 512 x 1024: statistics at 128 x 256 (Lanczos keeps a constant colour), block at 512 x 1024
    img = torch.full((3, 512, 1024), 77 / 255)
    img[0] = 153 / 255
    s = night_stats(img)
    assert set(s) == set(STATS)
    code = np.array([153, 77, 77]) / 255
    assert s["mean_luma"] == pytest.approx(float(code @ [0.2126, 0.7152, 0.0722]))
    assert s["R/B"] == pytest.approx(code[0] / code[2])
    assert resize_long_side(to_uint8(img)).shape == (128, 256, 3)
    assert to_uint8(torch.full((3, 2, 2), 0.5))[0, 0, 0] == 128
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        night_stats(np.zeros((4, 4)))


def test_summary_and_z_scores_match_the_json():
    real = load_real_stats()["real_night"]
    rows = list(real["per_image"].values())
    s = summarize(rows)
    for k in STATS:
        if k == "hue_deg":
            assert s[k]["circular_mean"] == pytest.approx(real["summary"][k]["circular_mean"], abs=1e-2)
            assert s[k]["circular_std"] == pytest.approx(real["summary"][k]["circular_std"], abs=1e-2)
        else:
            assert s[k]["mean"] == pytest.approx(real["summary"][k]["mean"], rel=1e-3, abs=1e-6)
            assert s[k]["std"] == pytest.approx(real["summary"][k]["std"], rel=1e-3, abs=1e-6)
    sim = {"mean_luma": {"mean": 0.066114 + 2 * 0.037153, "std": 0.0},
           "hue_deg": {"circular_mean": 74.8174 - 360 + 41.5006, "circular_std": 1.0}}
    z = z_scores(sim, real["summary"])
    assert z["mean_luma"] == pytest.approx(2.0, rel=1e-4) and z["hue_deg"] == pytest.approx(1.0, rel=1e-4)


def test_a_real_photo_by_an_independent_route():
    """chelsea (scikit-image): the colour cast via kornia's CIELAB and the median luma via PIL's own Lanczos
    resize of the luma computed in torch, against night_stats."""
    kornia = pytest.importorskip("kornia")
    from PIL import Image
    import skimage.data

    photo = skimage.data.chelsea()
    s = night_stats(photo)
    h, w = photo.shape[:2]
    small = torch.from_numpy(np.array(Image.fromarray(photo).resize((256, round(h * 256 / w)),
                                                                        Image.LANCZOS))).double() / 255
    mean = small.reshape(-1, 3).mean(0).float()
    lab = kornia.color.rgb_to_lab(mean.view(1, 3, 1, 1))[0, :, 0, 0]
    assert s["chroma_C"] == pytest.approx(torch.hypot(lab[1], lab[2]).item(), abs=0.05)
    assert s["hue_deg"] == pytest.approx(math.degrees(math.atan2(lab[2], lab[1])) % 360, abs=0.1)
    y = small @ torch.tensor([0.2126, 0.7152, 0.0722], dtype=torch.float64)
    assert s["p50"] == pytest.approx(torch.quantile(y.flatten(), 0.5).item(), abs=1e-9)
    assert s["R/B"] == pytest.approx((mean[0] / mean[2]).item(), rel=1e-5)
