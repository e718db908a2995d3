"""Tests of simmm.night: physics checks against hand-computable facts, and the API contract."""
import math

import numpy as np
import pytest
import torch

from simmm.errors import DataError, SimmmError
from simmm.night import (
    PRESETS, Light, NightParams, NightSimulator, add_sensor_noise, auto_gain, chroma_denoise, demosaic_bilinear,
    get_preset, glare, inverse_tone_curve, kelvin_to_rgb, light_field, linear_to_srgb, load_raw, mixed_presets,
    mosaic_bayer, quantize, simulate_night, simulate_night_per_image, simulate_night_raw, simulate_raw,
    srgb_to_linear, tone_curve, vignette, white_balance,
)

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tensors here are tiny: intra-op threads only add synchronisation cost on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# everything but exposure and the sensor switched off
BARE = dict(inverse_tone=False, lights=False, glare_strength=(0.0, 0.0), vignette_strength=(0.0, 0.0),
            wb_error=0.0, analog_gain=(1.0, 1.0), motion_blur_prob=0.0, white_balance="none",
            auto_gain=False, tone_curve=False, jpeg_prob=0.0)


def _images(b=2, h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, h // 8, w // 8, generator=g)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(b, 3, h, w, generator=g)).clamp(0, 1)


# ------------------------------------------------------------------------------------------ colour / tone
def test_srgb_linear_are_inverses():
    x = torch.linspace(0, 1, 2001)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    assert torch.allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-5)
    assert srgb_to_linear(torch.tensor(0.5)).item() == pytest.approx(0.21404, abs=1e-4)  # textbook value
    assert torch.allclose(tone_curve(inverse_tone_curve(x)), x, atol=1e-5)


def test_kelvin_colours():
    sodium, led = kelvin_to_rgb(2000), kelvin_to_rgb(6500)
    assert sodium[0] > sodium[1] > sodium[2]                     # orange
    assert torch.allclose(led, torch.ones(3), atol=0.15)         # ~D65 white
    luma = torch.tensor([0.2126, 0.7152, 0.0722])
    assert (sodium @ luma).item() == pytest.approx(1.0, abs=1e-4)


# ------------------------------------------------------------------------------------------ mosaic / demosaic
def test_mosaic_is_rggb():
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 2.0, 3.0
    raw = mosaic_bayer(x)
    assert raw.shape == (1, 1, 4, 4)
    assert raw[0, 0, :2, :2].tolist() == [[1.0, 2.0], [2.0, 3.0]]


def test_demosaic_constant_colour_and_planes():
    colour = torch.tensor([0.7, 0.4, 0.1]).view(1, 3, 1, 1)
    out = demosaic_bilinear(mosaic_bayer(colour.expand(2, 3, 10, 14)))
    assert out.shape == (2, 3, 10, 14)
    assert torch.allclose(out[..., 1:-1, 1:-1], colour.expand(2, 3, 8, 12), atol=1e-6)
    assert torch.allclose(out, colour.expand_as(out), atol=1e-6)          # the borders too
    # bilinear interpolation reproduces a linear ramp exactly away from the border
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    plane = torch.stack([0.01 * xx + 0.02 * yy, 0.03 * xx, 0.5 - 0.01 * yy]).unsqueeze(0)
    out = demosaic_bilinear(mosaic_bayer(plane))
    assert torch.allclose(out[..., 2:-2, 2:-2], plane[..., 2:-2, 2:-2], atol=1e-5)


# ------------------------------------------------------------------------------------------------- sensor
@pytest.mark.parametrize("bits", [10, 12])
def test_quantisation_levels(bits):
    q = quantize(torch.linspace(0, 1, 100_001), bits)
    assert q.unique().numel() == 2 ** bits
    assert q.min().item() == 0.0 and q.max().item() == 1.0
    # with a black level the code range still has 2**bits values, and a little below zero survives
    q = quantize(torch.linspace(-0.2, 1.2, 200_001), bits, black_level=0.05)
    assert q.unique().numel() == 2 ** bits and q.min().item() < 0


def test_shot_noise_variance_is_affine_in_signal():
    full_well = 1000.0
    p = NightParams(**BARE, exposure=(1.0, 1.0), full_well=full_well, read_noise=(3.0, 3.0),
                    row_noise=(0.0, 0.0), bits=(12, 12))
    levels = torch.tensor([0.1, 0.2, 0.4, 0.6, 0.8])
    flat = srgb_to_linear(levels).view(-1, 1, 1, 1).expand(-1, 3, 64, 64)
    raw = simulate_raw(linear_to_srgb(flat), p, seed=0) * full_well      # electrons (raw domain)
    mean, var = raw.mean((1, 2, 3)).double(), raw.var((1, 2, 3)).double()
    b, a = np.polyfit(mean.numpy(), var.numpy(), 1)
    assert 0.85 < b < 1.15                                              # Poisson: variance = mean (in e-)
    assert 0 < a < 25                                                   # read noise 3 e- -> ~9 e-^2
    pred = a + b * mean.numpy()
    assert np.max(np.abs(pred - var.numpy()) / var.numpy()) < 0.1       # roughly linear


def test_row_noise_is_banding():
    e = torch.full((1, 1, 256, 256), 100.0)
    g = torch.Generator().manual_seed(0)
    x = add_sensor_noise(e, read_noise=0.0, row_noise=5.0, generator=g)
    row_var = x.mean(-1).var().item()                                   # ~ 25 + 100/256
    col_var = x.mean(-2).var().item()                                   # ~ 100/256 + 0 (rows average out)
    assert 15 < row_var < 40 and col_var < 2


def test_mean_scales_with_exposure():
    img = torch.full((1, 3, 16, 16), 0.7)
    means = []
    for e in (0.02, 0.04, 0.08, 0.16):
        p = NightParams(**BARE, exposure=(e, e), noise=False, bits=(12, 12))
        means.append(simulate_raw(img, p, seed=0).mean().item())
    ratios = np.array(means[1:]) / np.array(means[:-1])
    assert np.allclose(ratios, 2.0, rtol=0.02)                          # up to ADC rounding
    # sRGB 0.7 is linear ((0.7 + 0.055) / 1.055) ** 2.4 = 0.44799 (the sRGB standard's formula)
    assert means[-1] == pytest.approx(0.16 * 0.44799, rel=0.01)


@pytest.mark.parametrize("noise", [False, True])
def test_full_well_clips_a_saturating_input(noise):
    """The sensor saturates at full_well electrons: with an analog gain of 0.5 a saturated pixel reads half of
    the ADC's full scale (the ADC alone would clip it at 1). Hand values, gain 0.5, 12 bits, no black level:
      sRGB 1.0 -> linear 1; x 4 (exposure) = 4 full wells -> clipped to 1 full well -> x 0.5 = 0.5
      sRGB 0.5 -> linear 0.21404; x 4 = 0.85616 full wells (not clipped) -> x 0.5 = 0.42808
      sRGB 0   -> 0
    each up to half an ADC step (1 / 4095). With shot noise on (read noise 0) the saturated pixel is still
    exactly one full well whatever the Poisson draw."""
    p = NightParams(**{**BARE, "analog_gain": (0.5, 0.5)}, exposure=(4.0, 4.0), full_well=1000.0, noise=noise,
                    read_noise=(0.0, 0.0), row_noise=(0.0, 0.0), bits=(12, 12), black_level=0.0)
    img = torch.zeros(1, 3, 4, 6)
    img[..., :, :2], img[..., :, 2:4] = 1.0, 0.5
    raw = simulate_raw(img, p, seed=0)[0, 0]
    step = 1 / 4095
    assert torch.allclose(raw[:, :2], torch.full((4, 2), 0.5), atol=step / 2 + 1e-7)
    assert raw[:, 4:].abs().max().item() == 0.0
    mid = raw[:, 2:4]
    if noise:  # ~856 electrons: Poisson std ~29 e- -> ~0.015 after the gain
        assert mid.mean().item() == pytest.approx(0.42808, abs=0.02) and mid.max().item() < 0.5
    else:
        assert torch.allclose(mid, torch.full((4, 2), 0.42808), atol=step / 2 + 1e-5)


# -------------------------------------------------------------------------------------------- illumination
def test_point_light_inverse_square():
    h, w, r0, c0, d = 40, 64, 20, 10, 8
    light = Light(x=(c0 + 0.5) / w, y=(r0 + 0.5) / h, power=1.0, height=0.0)
    L = light_field(h, w, [light], ambient=0.0)
    assert torch.allclose(L[:, r0, c0 + d] / L[:, r0, c0 + 2 * d], torch.full((3,), 4.0), rtol=1e-4)
    assert L[0, r0 + d, c0].item() == pytest.approx(L[0, r0, c0 + d].item(), rel=1e-5)  # isotropic
    assert L[0, r0, c0 + d].item() == pytest.approx(1.0 / (d / h) ** 2, rel=1e-4)        # power / r^2
    soft = light_field(h, w, [Light(light.x, light.y, 1.0, height=0.2)])
    assert soft[0, r0, c0 + d] / soft[0, r0, c0 + 2 * d] < 4.0                           # softened near field
    cone = light_field(h, w, [Light(light.x, light.y, 1.0, direction=math.pi / 2, spread=0.3)])
    assert cone[0, r0 + d, c0] > 10 * cone[0, r0 - d, c0]                                # points down


def test_vignette_and_glare():
    x = torch.ones(1, 3, 41, 61)
    v = vignette(x, 0.4)
    assert v[0, 0, 20, 30].item() == pytest.approx(1.0, abs=1e-3)
    assert v[0, 0, 0, 0].item() == pytest.approx(0.6, abs=0.02)
    spot = torch.zeros(1, 3, 81, 81)
    spot[..., 40, 40] = 1000.0
    out = glare(spot, 0.05, 0.1)
    assert out.sum().item() == pytest.approx(spot.sum().item(), rel=0.03)  # energy ~conserved (low-res blur)
    sigma = 0.1 * 81                                                      # wide lobe, pixels
    halo = 0.05 / 2 * 1000.0 * math.exp(-0.5 * (20 / sigma) ** 2) / (2 * math.pi * sigma ** 2)
    assert out[0, 0, 40, 60].item() == pytest.approx(halo, rel=0.3)       # Gaussian halo at 2.5 sigma


def test_white_balance_and_auto_gain():
    tex = _images(1, 32, 32)
    cast = tex * torch.tensor([0.5, 0.25, 0.125]).view(1, 3, 1, 1)
    wb = white_balance(cast, "gray_world", 1.0)
    m = wb.mean((2, 3))[0]
    assert torch.allclose(m, m[1].expand(3), rtol=1e-4)
    half = white_balance(cast, "gray_world", 0.5)
    assert cast.mean((2, 3))[0, 0] > half.mean((2, 3))[0, 2]                # partial correction keeps a cast
    dark = 0.01 * tex
    luma = torch.tensor([0.2126, 0.7152, 0.0722]).view(1, 3, 1, 1)
    assert (auto_gain(dark, 0.1, 32.0) * luma).sum(1).mean().item() == pytest.approx(0.1, rel=1e-4)
    assert torch.allclose(auto_gain(dark, 0.1, 2.0), 2 * dark)             # gain capped


def test_chroma_denoise_blurs_colour_not_luma():
    # grey stripes Y = 0.5 +- 0.1 (columns) under a colour checkerboard of +-0.1 on Cr (R = Y +- 0.1402,
    # G = Y -+ 0.0714, B = Y in JPEG's YCbCr). Blurring Cr with a Gaussian of sigma 2 px averages the +-1 pattern
    # away (its response at the Nyquist frequency is exp(-2 pi^2 sigma^2 / 4) = 2.7e-9): away from the border the
    # output is the grey stripes (Y, Y, Y), whose luma is untouched.
    sign = (-1.0) ** torch.arange(32).add(torch.arange(32).view(-1, 1))
    cr = 0.1 * sign
    luma_in = (0.5 + 0.1 * (-1.0) ** torch.arange(32)).expand(32, 32)
    x = torch.stack([luma_in + 1.402 * cr, luma_in - 0.714136 * cr, luma_in]).unsqueeze(0)
    y = chroma_denoise(x, 2.0)
    assert torch.allclose(y[..., 8:-8, 8:-8], luma_in[8:-8, 8:-8].expand(1, 3, 16, 16), atol=1e-4)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose((y * weights).sum(1), (x * weights).sum(1), atol=1e-5)
    assert torch.equal(chroma_denoise(x, 0.0), x)


# ---------------------------------------------------------------------------------------------- the pipeline
@pytest.mark.parametrize("preset", list(PRESETS) + ["mixed"])
def test_presets_contract(preset):
    x = _images(2, 32, 48)
    y = simulate_night(x, preset, seed=1)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1 and torch.isfinite(y).all()
    assert y.mean() < x.mean()                                          # night is darker than day
    single = simulate_night(x[0], preset, seed=1)
    assert single.shape == x[0].shape


def test_determinism():
    x = _images(2, 32, 48)
    for preset in ("urban", "dark"):
        a, b = simulate_night(x, preset, seed=7), simulate_night(x, preset, seed=7)
        assert torch.equal(a, b)
        assert not torch.equal(a, simulate_night(x, preset, seed=8))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(simulate_night(x, "street", generator=g1), simulate_night(x, "street", generator=g2))


def test_per_image_independence_from_batch():
    x, other = _images(3, 32, 48, seed=0), _images(2, 32, 48, seed=5)
    full = simulate_night_per_image(x, "urban", [11, 12, 13])
    alone = simulate_night_per_image(x[1:2], "urban", [12])
    mixed_batch = simulate_night_per_image(torch.cat([other, x[1:2]]), "urban", [1, 2, 12])
    assert torch.equal(full[1], alone[0]) and torch.equal(full[1], mixed_batch[2])
    assert torch.equal(simulate_night(x, "street", seed=[4, 5, 6])[2],
                       simulate_night(x[2:], "street", seed=[6])[0])


def test_mixed_presets_stream():
    x = _images(8, 24, 32)
    y, names = mixed_presets(x, seed=0)
    assert y.shape == x.shape and len(names) == 8
    assert set(names) <= set(PRESETS) and len(set(names)) >= 2
    y2, names2 = mixed_presets(x, seed=0)
    assert names == names2 and torch.equal(y, y2)
    for i in (0, 5):                      # image i is the plain simulation of its preset with seed (0, i)
        assert torch.equal(y[i], simulate_night(x, names[i], seed=0)[i])
    assert mixed_presets(x[:2], presets=["dark"], seed=1)[1] == ["dark", "dark"]


def test_module_form():
    x = _images(2, 24, 32)
    m1, m2 = NightSimulator("street", seed=3), NightSimulator("street", seed=3)
    a = m1(x)
    assert torch.equal(a, m2(x))
    assert not torch.equal(a, m1(x))                                    # the stream moves on
    m1.reset()
    assert torch.equal(a, m1(x))
    assert NightSimulator(get_preset("dark"))(x[0]).shape == x[0].shape
    assert NightSimulator("mixed", seed=0)(x).shape == x.shape


# ------------------------------------------------------------------------------------------------ params
def test_params_errors_and_roundtrip():
    with pytest.raises(SimmmError, match="moonlight") as e:
        simulate_night(_images(1), "moonlight")
    for name in PRESETS:
        assert name in str(e.value)
    with pytest.raises(SimmmError, match="exposre"):
        NightParams.from_dict({"exposre": (0.1, 0.2)})
    with pytest.raises(SimmmError, match="white_balance"):
        NightParams(white_balance="auto")
    with pytest.raises(SimmmError, match="light_kinds"):
        NightParams(light_kinds=("neon",))
    with pytest.raises(SimmmError, match="exposure"):
        NightParams(exposure=(0.5, 0.1))
    with pytest.raises(SimmmError, match="read_noise"):
        NightParams.from_dict({"read_noise": 3.0})
    for bad in (1.5, -0.1, "0.5", True):
        with pytest.raises(SimmmError, match=r"NightParams.headlight_prob is a probability: .* in \[0, 1\]"):
            NightParams(headlight_prob=bad)
    with pytest.raises(SimmmError, match=r"adapt.night.jpeg_prob.*\[0, 1\]"):
        NightParams.from_dict({"jpeg_prob": 2}, path="adapt.night")
    for p in PRESETS.values():
        assert NightParams.from_dict(p.to_dict()) == p
    d = PRESETS["street"].to_dict()
    assert isinstance(d["exposure"], list)
    assert NightParams.from_dict(d).exposure == PRESETS["street"].exposure
    assert get_preset("street") is not PRESETS["street"]


# --------------------------------------------------------------------------------------------------- RAW
def _write_dng(path, raw):
    """A minimal uncompressed RGGB DNG whose camera space is linear sRGB (ColorMatrix1 = XYZ->sRGB)."""
    tifffile = pytest.importorskip("tifffile")
    xyz_to_srgb = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]

    def rationals(vals):
        return [int(v) for x in vals for v in (round(x * 10000), 10000)]

    tags = [
        (271, "s", 0, "simmm", True), (272, "s", 0, "synthetic", True),
        (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),  # CFA RGGB
        (50706, "B", 4, (1, 4, 0, 0), True), (50707, "B", 4, (1, 1, 0, 0), True),  # DNG version
        (50708, "s", 0, "simmm synthetic", True), (50714, "I", 1, 0, True), (50717, "I", 1, 65535, True),
        (50721, "2i", 9, rationals(xyz_to_srgb), True), (50778, "H", 1, 21, True),  # D65
        (50728, "2I", 3, rationals([1, 1, 1]), True),                               # AsShotNeutral
    ]
    tifffile.imwrite(path, raw, photometric=32803, compression=None, subfiletype=0, metadata=None,
                     extratags=tags)


def test_load_raw_reads_a_real_dng(tmp_path):
    raw = np.zeros((32, 48), np.uint16)
    raw[0::2, 0::2], raw[0::2, 1::2], raw[1::2, 0::2], raw[1::2, 1::2] = 30000, 20000, 20000, 10000
    path = tmp_path / "flat.dng"
    _write_dng(str(path), raw)
    lin = load_raw(path)
    assert lin.shape == (3, 32, 48) and lin.dtype == torch.float32
    expected = torch.tensor([30000.0, 20000.0, 10000.0]) / 65535
    assert torch.allclose(lin[:, 4:-4, 4:-4].mean((1, 2)), expected, atol=2e-3)
    night = simulate_night_raw(path, "street", seed=0)
    assert night.shape == (3, 32, 48) and 0 <= night.min() and night.max() <= 1
    assert torch.equal(night, simulate_night_raw(path, "street", seed=0))


def test_load_raw_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.dng"
    with pytest.raises(DataError, match="nope.dng"):
        load_raw(missing)
    bad = tmp_path / "not_a_raw.nef"
    bad.write_bytes(b"this is not a raw file" * 10)
    with pytest.raises(DataError, match="not_a_raw.nef"):
        load_raw(bad)
    with pytest.raises(DataError, match="nope.dng"):
        simulate_night_raw(missing, "street", seed=0)


def test_jpeg_at_the_camera_resolution_then_downscaled():
    """jpeg(x, q, scale): compressed at scale x the size (bilinear) and area-averaged back: a flat image stays flat
    (JPEG keeps a flat 8x8 block exactly), the size is kept, and the 8-px block steps of a textured image shrink."""
    from simmm.night import jpeg
    from simmm.night_stats import night_stats

    flat = torch.full((1, 3, 16, 24), 128 / 255)
    assert torch.equal(jpeg(flat, 50, scale=3), jpeg(flat, 50))
    assert jpeg(flat, 50, scale=3).shape == flat.shape
    from simmm.data.photos import load_photo

    photo = torch.nn.functional.interpolate(load_photo("astronaut")[None], size=(128, 128), mode="bilinear",
                                            antialias=True).clamp(0, 1)
    blocky = night_stats(jpeg(photo, 30)[0])["block"]            # 1.36 measured
    soft = night_stats(jpeg(photo, 30, scale=6)[0])["block"]     # 1.03
    assert blocky > 1.3 and soft < 1.05
    with pytest.raises(SimmmError, match="jpeg_scale must be an integer >= 1"):
        NightParams(jpeg_scale=0)
