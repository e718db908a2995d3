import math

import pytest
import torch

from simmm.exposure import (
    CompoundExposure,
    ExposureSampler,
    compound_exposure,
    expand_exposure,
    sample_exposure,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sample_exposure_range_and_stats():
    e = sample_exposure(20000, generator=_gen())
    assert e.shape == (20000,) and e.dtype == torch.float32
    assert e.min() >= 0 and e.max() <= 0.5
    assert e.mean().item() == pytest.approx(0.25, abs=0.005)
    assert e.std().item() == pytest.approx(0.5 / math.sqrt(12), abs=0.003)
    e2 = ExposureSampler(0.1, 0.2)(5000, generator=_gen())
    assert e2.min() >= 0.1 and e2.max() <= 0.2


def test_sample_exposure_determinism():
    assert torch.equal(sample_exposure(7, generator=_gen(3)), sample_exposure(7, generator=_gen(3)))
    assert not torch.equal(sample_exposure(7, generator=_gen(3)), sample_exposure(7, generator=_gen(4)))
    with pytest.raises(ValueError, match=r"expected a finite range low <= high, got \(0.5, 0.1\)"):
        sample_exposure(3, low=0.5, high=0.1)


def test_compound_base_component():
    e = compound_exposure(4000, 3, 5, pixel_std=0.0, patch_std=0.0, generator=_gen())
    assert e.shape == (4000, 1, 3, 5)
    flat = e.flatten(1)
    assert torch.equal(flat.min(1).values, flat.max(1).values)  # constant per image
    level = flat[:, 0]
    assert level.min() >= 0 and level.max() <= 0.2
    assert level.mean().item() == pytest.approx(0.1, abs=0.004)
    assert level.std().item() == pytest.approx(0.2 / math.sqrt(12), abs=0.003)


def test_compound_pixel_component():
    e = compound_exposure(16, 64, 64, base=(0.1, 0.1), patch_std=0.0, generator=_gen())
    noise = e - 0.1
    assert noise.mean().item() == pytest.approx(0.0, abs=0.001)
    assert noise.std().item() == pytest.approx(0.025, rel=0.03)
    # white: neighbouring pixels uncorrelated
    a, b = noise[..., 1:].flatten(), noise[..., :-1].flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.03


def test_compound_patch_component_stats_and_smoothness():
    # patch_scale=1: the grid is the image, no interpolation, so the per-pixel std is patch_std
    e1 = compound_exposure(16, 64, 64, base=(0.0, 0.0), pixel_std=0.0, patch_scale=1, generator=_gen())
    assert e1.std().item() == pytest.approx(0.025, rel=0.03)
    # patch_scale=16 on 64x80 -> a 4x5 grid upsampled; smooth and correlated
    e = compound_exposure(2000, 64, 80, base=(0.0, 0.0), pixel_std=0.0, patch_scale=16, generator=_gen())
    assert e.mean().item() == pytest.approx(0.0, abs=0.001)
    # bilinear interpolation between independent cells: per-pixel std about 2/3 of the cell std
    assert 0.5 * 0.025 < e.std().item() < 0.8 * 0.025
    dh = (e[..., 1:, :] - e[..., :-1, :]).abs().max().item()
    dw = (e[..., 1:] - e[..., :-1]).abs().max().item()
    assert max(dh, dw) < 0.025  # a neighbour step is at most 1/16 of a cell-to-cell jump
    assert (e[..., 1:] - e[..., :-1]).std().item() < 0.1 * e.std().item()
    # ceil: 65 rows need 5 cells
    assert compound_exposure(1, 65, 17, generator=_gen()).shape == (1, 1, 65, 17)


def test_compound_total_and_determinism():
    a = compound_exposure(3, 20, 30, generator=_gen(1))
    b = CompoundExposure()(3, 20, 30, generator=_gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, compound_exposure(3, 20, 30, generator=_gen(2)))
    big = compound_exposure(400, 32, 32, generator=_gen())
    assert big.mean().item() == pytest.approx(0.1, abs=0.01)


def test_compound_video_shares_one_map():
    e = compound_exposure(2, 8, 8, frames=5, generator=_gen())
    assert e.shape == (2, 5, 1, 8, 8)
    assert torch.equal(e[:, 0], e[:, 4])
    assert not torch.equal(e[0, 0], e[1, 0])


def test_expand_exposure_forms():
    x = torch.tensor([0.1, 0.3])
    want = x.view(2, 1, 1, 1).expand(2, 1, 4, 6)
    for form in (x, x.view(2, 1), x.view(2, 1, 1, 1), want.contiguous()):
        assert torch.equal(expand_exposure(form, 2, 4, 6), want)
    assert torch.equal(expand_exposure(0.2, 2, 4, 6), torch.full((2, 1, 4, 6), 0.2))
    assert expand_exposure(torch.rand(2, 1, 8, 12), 2, 4, 6).shape == (2, 1, 4, 6)
    with pytest.raises(ValueError, match="exposure has batch size 3, expected 2"):
        expand_exposure(torch.rand(3), 2, 4, 6)
    with pytest.raises(ValueError, match=r"or a \(B, 1, H, W\) map; got shape \(2, 3, 4, 6\)"):
        expand_exposure(torch.rand(2, 3, 4, 6), 2, 4, 6)
