"""Alignment (METHOD.md §5.1): homography estimation, its cache, conjugation by a sample's transform, the warp."""
import json
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from simmm.alignment import (AlignConfig, Alignment, HomographyCache, align_pair, align_pairs,
                             corner_error, estimate_homography, transform_matrix, warp_prediction)
from simmm.alignment import _degenerate
from simmm.data.pair_transform import conjugate_homography
from simmm.errors import SimmmError


def _apply(h, x, y):
    p = torch.as_tensor(h, dtype=torch.float64) @ torch.tensor([x, y, 1.0], dtype=torch.float64)
    return (p[0] / p[2]).item(), (p[1] / p[2]).item()


# --------------------------------------------------------------------------------------------- warp

def test_identity_homography_is_identity_warp_non_square():
    p = torch.rand(2, 3, 5, 7)
    w, valid = warp_prediction(p, torch.eye(3))
    assert w.shape == (2, 3, 5, 7) and valid.shape == (2, 5, 7)
    assert valid.all()
    torch.testing.assert_close(w, p, atol=1e-6, rtol=0)


def test_translation_moves_a_one_hot_prediction_and_leaves_holes_where_expected():
    # night (x, y) sees day (x + 2, y + 1): the day's hot pixel at (x=4, y=2) appears at night (2, 1)
    day = torch.zeros(1, 2, 4, 6)
    day[0, 0, 2, 4] = 1.0
    day[0, 1] = 0.25
    h = torch.tensor([[1.0, 0, 2], [0, 1, 1], [0, 0, 1]])
    w, valid = warp_prediction(day, h)
    expect = torch.zeros(4, 6)
    expect[1, 2] = 1.0
    torch.testing.assert_close(w[0, 0], expect, atol=1e-6, rtol=0)
    holes = torch.zeros(4, 6, dtype=torch.bool)
    holes[:, 4:] = True   # x + 2 > 5
    holes[3, :] = True    # y + 1 > 3
    assert torch.equal(~valid[0], holes)
    assert torch.all(w[0, 1][valid[0]] == 0.25) and torch.all(w[0, :, ~valid[0]] == 0)


def test_scale_homography_samples_every_other_day_pixel_with_out_size():
    day = torch.arange(8 * 12, dtype=torch.float32).reshape(1, 1, 8, 12)
    w, valid = warp_prediction(day, torch.diag(torch.tensor([2.0, 2.0, 1.0])), out_size=(5, 7), mode="nearest")
    assert w.shape == (1, 1, 5, 7)
    inside = valid[0]
    assert torch.equal(inside[:4, :6], torch.ones(4, 6, dtype=torch.bool))
    assert not inside[4].any() and not inside[:, 6].any()  # 2·4 = 8 > 7 rows, 2·6 = 12 > 11 columns
    torch.testing.assert_close(w[0, 0, :4, :6], day[0, 0, ::2, ::2])


def test_batched_homographies_and_float64():
    p = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    hs = torch.stack([torch.eye(3), torch.tensor([[1.0, 0, -1], [0, 1, 0], [0, 0, 1]])])
    w, valid = warp_prediction(p, hs)
    assert w.dtype == torch.float64
    torch.testing.assert_close(w[0], p[0])
    torch.testing.assert_close(w[1, 0, :, 1:], p[1, 0, :, :-1])
    assert valid[0].all() and not valid[1, :, 0].any() and valid[1, :, 1:].all()


def test_warp_rejects_bad_shapes():
    with pytest.raises(SimmmError, match=r"\(B, C, h, w\)"):
        warp_prediction(torch.rand(3, 4, 5), torch.eye(3))
    with pytest.raises(SimmmError, match=r"\(2, 3, 3\) homography"):
        warp_prediction(torch.rand(2, 1, 4, 5), torch.eye(3).expand(3, 3, 3))


# --------------------------------------------------------------------------------------------- conjugation

H0 = [[1.1, 0.05, 7.0], [-0.02, 0.95, -3.0], [1e-4, -2e-4, 1.0]]


@pytest.mark.parametrize("flip", [False, True])
def test_conjugation_agrees_with_transforming_points_by_hand(flip):
    sy, sx, top, left, ch, cw = 0.5, 0.75, 3, 5, 20, 30   # non-square, per-axis scale

    def by_hand(x, y):
        x, y = (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5   # resize, half-pixel rule
        x, y = x - left, y - top                            # crop
        return (cw - 1 - x if flip else x), y               # flip

    t = transform_matrix((sy, sx), (top, left, ch, cw), flip)
    hs = conjugate_homography(torch.as_tensor(H0, dtype=torch.float64), t, t)
    for x, y in [(0.0, 0.0), (40.0, 17.0), (13.5, 29.0)]:
        got = _apply(hs, *by_hand(x, y))
        want = by_hand(*_apply(H0, x, y))
        assert got == pytest.approx(want, abs=1e-9)


def test_transform_matrix_of_a_plain_scale_and_errors():
    t = transform_matrix(2.0)
    assert _apply(t, 0.0, 0.0) == pytest.approx((0.5, 0.5))       # centre of pixel 0 → between pixels 0 and 1
    assert _apply(t, -0.5, -0.5) == pytest.approx((-0.5, -0.5))    # outer corners stay outer corners
    t = transform_matrix(0.7, (1, 2, 3, 4), True)
    torch.testing.assert_close(conjugate_homography(torch.eye(3, dtype=torch.float64), t, t), torch.eye(3).double())
    with pytest.raises(SimmmError, match="crop box"):
        transform_matrix(1.0, None, True)
    with pytest.raises(SimmmError, match="scale must be positive"):
        transform_matrix(0.0)


def test_conjugated_warp_of_a_transformed_sample_matches_the_transformed_warp():
    # original pair 8×12: night (x, y) sees day (x + 2, y); sample: crop (top 2, left 1, 4×6), flipped
    t = transform_matrix(1.0, (2, 1, 4, 6), True)
    hs = conjugate_homography(torch.tensor([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]], dtype=torch.float64), t, t)
    day = torch.rand(1, 1, 8, 12)
    day_sample = day[..., 2:6, 1:7].flip(-1)
    w, valid = warp_prediction(day_sample, hs)
    # the flipped crop's column c is original column 6 − c; night column 6 − c sees day column 8 − c = sample c − 2
    torch.testing.assert_close(w[0, 0, :, 2:], day_sample[0, 0, :, :4], atol=1e-6, rtol=0)
    assert not valid[0, :, :2].any() and valid[0, :, 2:].all()


# --------------------------------------------------------------------------------------------- estimation

@pytest.fixture(scope="module")
def photo():
    from skimage import data, transform

    return transform.resize(data.astronaut(), (150, 200), anti_aliasing=True)


def _warp_image(img, h_night_to_day):
    from skimage import transform

    return transform.warp(img, transform.ProjectiveTransform(np.asarray(h_night_to_day)), output_shape=img.shape[:2])


@pytest.mark.parametrize("max_side", [640, 150])  # 150: matched at a reduced size, mapped back
def test_estimate_recovers_a_known_homography_on_a_darkened_photo(photo, max_side):
    truth = np.array([[1.05, 0.04, 6.0], [-0.03, 0.97, -4.0], [2e-4, 1e-4, 1.0]])
    night = torch.from_numpy(_warp_image(photo, truth)).permute(2, 0, 1).float()
    night = (night * 0.08 + 0.01 * torch.randn(night.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    a = estimate_homography(night, photo, AlignConfig(max_side=max_side))
    assert a.ok and a.reason == "" and a.night_size == (150, 200) and a.day_size == (150, 200)
    assert a.matches >= a.inliers >= 15 and 0 < a.inlier_ratio <= 1
    assert corner_error(a.homography, truth, (150, 200)) < 2.0


@pytest.mark.parametrize("preset,seed", [("dark", 1), ("dark", 4), ("street", 1)])
def test_simulated_night_pairs_align(photo, preset, seed):
    # needs the percentile stretch + CLAHE before SIFT: without them dark-1 is 6.7 px off, the others fall back
    # the presets calibrated to real night (benchmarks/night_realism.py) leave most pixels near black: at 150x200
    # about half of the draws keep too few lit features to align (they fall back); these seeds keep enough
    from simmm.night import simulate_night

    truth = np.array([[1.05, 0.04, 6.0], [-0.03, 0.97, -4.0], [2e-4, 1e-4, 1.0]])
    night = simulate_night(torch.from_numpy(_warp_image(photo, truth)).permute(2, 0, 1).float(), preset, seed=seed)
    a = estimate_homography(night, photo)
    assert a.ok and corner_error(a.homography, truth, (150, 200)) < 4.5


def test_too_few_inliers_fall_back(photo):
    night = torch.from_numpy(photo).permute(2, 0, 1).float()
    for config in (AlignConfig(min_inliers=1000), AlignConfig(min_inlier_ratio=1.01)):
        a = estimate_homography(night, photo, config)
        assert not a.ok and a.reason.startswith("too few inliers") and a.homography[0] == (1.0, 0.0, 0.0)


def test_a_flat_image_falls_back_to_identity(photo):
    a = estimate_homography(np.zeros((60, 80)), photo)
    assert not a.ok and a.reason.startswith("too few matches")
    assert a.homography == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)) and a.inliers == 0


def test_unrelated_images_fall_back(photo):
    from skimage import data, transform

    other = transform.resize(data.coffee(), (150, 200), anti_aliasing=True)
    a = estimate_homography(other, photo, AlignConfig(min_inliers=25))
    assert not a.ok and a.homography[0] == (1.0, 0.0, 0.0)


def test_degenerate_homographies_are_named():
    size = (10, 20)
    assert _degenerate(np.eye(3), size, size, 4.0) == ""
    assert "behind the camera" in _degenerate(np.array([[1, 0, 0], [0, 1, 0], [-0.2, 0, 1.0]]), size, size, 4.0)
    assert "mirrored" in _degenerate(np.array([[-1.0, 0, 19], [0, 1, 0], [0, 0, 1]]), size, size, 4.0)
    assert "area ratio" in _degenerate(np.diag([10.0, 10.0, 1.0]), size, size, 4.0)
    assert "area ratio" in _degenerate(np.diag([0.1, 0.1, 1.0]), size, size, 4.0)
    assert "not finite" in _degenerate(np.full((3, 3), np.nan), size, size, 4.0)


def test_corner_error_by_hand():
    shift = [[1.0, 0, 3], [0, 1, 4], [0, 0, 1]]
    assert corner_error(shift, np.eye(3), (10, 20)) == pytest.approx(5.0)


def test_config_errors():
    with pytest.raises(SimmmError, match="matcher 'orb' is unknown"):
        AlignConfig(matcher="orb")
    with pytest.raises(SimmmError, match="min_inliers must be a positive integer"):
        AlignConfig(min_inliers=0)
    with pytest.raises(SimmmError, match="ratio must be in"):
        AlignConfig(ratio=1.5)


def test_learned_matcher_offline_fails_with_a_clear_message(monkeypatch, photo):
    import kornia.feature.loftr.loftr as loftr_module

    from simmm import alignment

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(loftr_module, "load_state_dict_from_url", offline)
    monkeypatch.setattr(alignment, "_LEARNED", {})
    with pytest.raises(SimmmError, match=r"matcher 'loftr' needs pretrained weights .* use matcher 'sift'"):
        estimate_homography(photo, photo, AlignConfig(matcher="loftr"))


def test_loftr_path_runs_with_a_given_model(photo):
    import kornia.feature as KF

    torch.manual_seed(0)
    a = estimate_homography(photo[:64, :64], photo[:64, :64], AlignConfig(matcher="loftr", max_side=64),
                            matcher_model=KF.LoFTR(pretrained=None))
    assert a.matcher == "loftr" and a.night_size == (64, 64)
    assert a.ok or a.homography[0] == (1.0, 0.0, 0.0)


# --------------------------------------------------------------------------------------------- cache

@pytest.fixture
def pair_files(tmp_path, photo):
    truth = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 3.0], [0.0, 0.0, 1.0]])
    night = (_warp_image(photo, truth) * 255).round().astype(np.uint8)
    day = (photo * 255).round().astype(np.uint8)
    Image.fromarray(night).save(tmp_path / "n.png")
    Image.fromarray(day).save(tmp_path / "d.png")
    return tmp_path / "n.png", tmp_path / "d.png", truth


def test_cache_computes_once_and_recomputes_when_an_image_or_the_settings_change(tmp_path, pair_files, monkeypatch):
    from simmm import alignment

    night, day, truth = pair_files
    cache = HomographyCache(tmp_path / "cache")
    calls = []
    real = alignment.estimate_homography
    monkeypatch.setattr(alignment, "estimate_homography", lambda *a, **k: calls.append(1) or real(*a, **k))
    a1, cached1 = align_pair("zurich/0001", night, day, cache)
    a2, cached2 = align_pair("zurich/0001", night, day, cache)
    assert (cached1, cached2, len(calls)) == (False, True, 1)
    assert a1 == a2 and a1.ok and corner_error(a1.homography, truth, (150, 200)) < 1.0
    entry = json.loads(cache.path("zurich/0001").read_text())
    assert entry["key"] == "zurich/0001" and entry["images"]["night"]["size"] == [150, 200]
    assert entry["alignment"]["inliers"] == a1.inliers
    align_pair("zurich/0001", night, day, cache, AlignConfig(ransac_threshold=2.0))
    assert len(calls) == 2
    Image.open(day).transpose(Image.FLIP_LEFT_RIGHT).save(day)
    _, cached = align_pair("zurich/0001", night, day, cache, AlignConfig(ransac_threshold=2.0))
    assert not cached and len(calls) == 3


def test_corrupt_cache_file_is_named(tmp_path, pair_files):
    night, day, _ = pair_files
    cache = HomographyCache(tmp_path / "cache")
    cache.path("k").parent.mkdir(parents=True)
    cache.path("k").write_text("{not json")
    with pytest.raises(SimmmError, match=r"alignment cache file .*\.json is unreadable"):
        align_pair("k", night, day, cache)


def test_align_pairs_counts_fallbacks_and_logs(tmp_path, pair_files):
    night, day, _ = pair_files
    Image.new("RGB", (80, 60)).save(tmp_path / "black.png")
    lines = []
    out, summary = align_pairs([("a", night, day), ("b", tmp_path / "black.png", day)],
                               HomographyCache(tmp_path / "c"), log=lines.append)
    assert out["a"].ok and not out["b"].ok
    assert (summary.pairs, summary.cached, summary.fallback) == (2, 0, 1)
    assert lines == ["alignment: 2 pairs (0 cached), 1 fell back to identity (too few matches: 1)"]
    _, again = align_pairs([("a", night, day)], HomographyCache(tmp_path / "c"))
    assert again.cached == 1


def test_alignment_round_trips_through_a_dict():
    a = Alignment(((1.0, 0.0, 2.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), 10, 4, True, "", (5, 6), (7, 8))
    assert Alignment.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert a.inlier_ratio == 0.4
    torch.testing.assert_close(a.matrix()[0, 2], torch.tensor(2.0, dtype=torch.float64))


def test_warp_passes_gradients_to_the_sampled_day_pixels():
    day = torch.rand(1, 1, 4, 6, requires_grad=True)
    w, _ = warp_prediction(day, torch.tensor([[1.0, 0, 2], [0, 1, 1], [0, 0, 1]]))
    w.sum().backward()
    expect = torch.zeros(4, 6)
    expect[1:, 2:] = 1.0  # night (x, y) with x ≤ 3, y ≤ 2 reads day (x + 2, y + 1), once each
    torch.testing.assert_close(day.grad[0, 0], expect)


def test_benchmark_reads_an_opencv_homography_file(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from align import random_homography, read_opencv_homography

    f = tmp_path / "H.xml"
    f.write_text('<?xml version="1.0"?>\n<opencv_storage>\n<H13 type_id="opencv-matrix">\n<rows>3</rows><cols>3</cols>'
                 "<dt>d</dt>\n<data>\n 1. 2. 3.\n 4. 5. 6.\n 7. 8. 1. </data></H13>\n</opencv_storage>\n")
    assert read_opencv_homography(f).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 1]]
    h = random_homography(np.random.default_rng(0), (100, 200), spread=0.1)
    moved = np.array([_apply(h, x, y) for x, y in [(0, 0), (199, 0), (199, 99), (0, 99)]])
    shift = np.abs(moved - [[0, 0], [199, 0], [199, 99], [0, 99]])
    assert (shift[:, 0] <= 20 + 1e-6).all() and (shift[:, 1] <= 10 + 1e-6).all() and shift.max() > 1
