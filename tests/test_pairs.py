"""Day–night pairs: the paired datasets (Dark Zurich, ACDC, users' CSV), the pair check, the pair transform and
its coordinate matrices (expected values worked out by hand in the comments)."""

import shutil
from pathlib import Path

import kornia
import numpy as np
import pytest
import torch
from PIL import Image

from seg_fixtures import *  # noqa: F401,F403 (the tmp_darkzurich, tmp_acdc fixtures)
from simmm.data.darkzurich import check_darkzurich_tree
from simmm.data.images import image_to_tensor, read_image
from simmm.data.pair_transform import PairTransform, conjugate_homography, resize_matrix
from simmm.data.pairs import check_pairs, pair_dataset
from simmm.errors import DataError, SimmmError

NIGHT1 = "rgb_anon/train/night/GOPR0351/GOPR0351_frame_000001_rgb_anon.png"
NIGHT2 = "rgb_anon/train/night/GOPR0351/GOPR0351_frame_000002_rgb_anon.png"
DAY81 = "rgb_anon/train/day/GOPR0345/GOPR0345_frame_000081_rgb_anon.png"
DAY77 = "rgb_anon/train/day/GOPR0345/GOPR0345_frame_000077_rgb_anon.png"


def _f64(rows):
    return torch.tensor(rows, dtype=torch.float64)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------------------------------------ datasets


def test_darkzurich_pair_items(tmp_darkzurich):
    ds = pair_dataset("darkzurich", tmp_darkzurich, size=(8, 16))
    item = ds[0]
    assert item["index"] == 0 and item["key"] == f"{NIGHT1}|{DAY81}" == ds.keys[0]
    assert item["night"].shape == item["day"].shape == (3, 8, 16)
    # 16x32 file -> 8x16: x' = (x + 1/2)/2 - 1/2 = x/2 - 1/4
    half = _f64([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])
    assert torch.equal(item["night_matrix"], half) and torch.equal(item["day_matrix"], half)
    native = pair_dataset("darkzurich", tmp_darkzurich)[2]
    assert native["night"].shape == (3, SEG_H, SEG_W)
    assert torch.equal(native["night_matrix"], torch.eye(3).double())
    assert torch.equal(native["day"], image_to_tensor(read_image(tmp_darkzurich / DAY77)))
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["key"] == ds.keys[:2] and batch["index"].tolist() == [0, 1]
    assert batch["night_matrix"].shape == (2, 3, 3)


def test_darkzurich_val_pairs_for_the_day_night_evaluation(tmp_darkzurich):
    ds = pair_dataset("darkzurich", tmp_darkzurich, split="val")
    names = [(n.relative_to(tmp_darkzurich / "rgb_anon").as_posix(), d.relative_to(tmp_darkzurich / "rgb_anon")
              .as_posix()) for n, d in ds.pairs]
    assert names == [("val/night/GOPR0356/GOPR0356_frame_000321_rgb_anon.png",
                      "val/day/GOPR0355/GOPR0355_frame_000410_rgb_anon.png"),
                     ("val/night/GOPR0356/GOPR0356_frame_000324_rgb_anon.png",
                      "val/day/GOPR0355/GOPR0355_frame_000410_rgb_anon.png"),
                     ("val/night/GOPR0356/GOPR0356_frame_000327_rgb_anon.png",
                      "val/day/GOPR0355/GOPR0355_frame_000415_rgb_anon.png")]
    # bare frame names resolve under the split's folders
    (tmp_darkzurich / "val.csv").write_text("GOPR0356_frame_000324,GOPR0355_frame_000415\n")
    ds = pair_dataset("darkzurich", tmp_darkzurich, split="val", pairs_file=tmp_darkzurich / "val.csv")
    assert ds.pairs == [(tmp_darkzurich / "rgb_anon/val/night/GOPR0356/GOPR0356_frame_000324_rgb_anon.png",
                         tmp_darkzurich / "rgb_anon/val/day/GOPR0355/GOPR0355_frame_000415_rgb_anon.png")]
    with pytest.raises(DataError, match=r"correspondence folder .*corresp/test/night does not exist"):
        pair_dataset("darkzurich", tmp_darkzurich, split="test")


def test_acdc_pairs_condition_image_with_its_reference(tmp_acdc):
    ds = pair_dataset("acdc", tmp_acdc, condition="snow", split="val")
    assert len(ds) == 2
    item = ds[1]
    night = "rgb_anon/snow/val/GOPR0122/GOPR0122_frame_000105_rgb_anon.png"
    ref = "rgb_anon/snow/val_ref/GOPR0122/GOPR0122_frame_000105_rgb_ref_anon.png"
    assert item["key"] == f"{night}|{ref}"
    assert torch.equal(item["night"], image_to_tensor(read_image(tmp_acdc / night)))
    assert torch.equal(item["day"], image_to_tensor(read_image(tmp_acdc / ref)))
    (tmp_acdc / ref).unlink()
    with pytest.raises(DataError, match=f"GOPR0122_frame_000105_rgb_anon.png has no reference image: missing "
                                        f".*{ref}"):
        pair_dataset("acdc", tmp_acdc, condition="snow", split="val")


def test_csv_pairs_of_users_own_data(tmp_path):
    root = tmp_path / "mine"
    write_rgb(root / "night" / "a.png", (16, 32), seed=1)
    write_rgb(root / "day" / "a.png", (20, 24), seed=2)  # another camera: another size
    write_rgb(root / "night" / "b b.png", (16, 32), seed=3)
    write_rgb(tmp_path / "elsewhere.png", (16, 32), seed=4)
    (root / "pairs.csv").write_text(f"night,day\nnight/a.png,day/a.png\n# a comment\n\n"
                                    f"night/b b.png, {tmp_path / 'elsewhere.png'}\n")
    ds = pair_dataset("csv", root, pairs_file="pairs.csv")  # relative to the root
    assert ds.keys == ["night/a.png|day/a.png", f"night/b b.png|{(tmp_path / 'elsewhere.png').as_posix()}"]
    item = ds[0]
    assert item["night"].shape == item["day"].shape == (3, 16, 32)
    # the day file (20x24) comes at the night's size (16x32):
    # x' = (x + 1/2)*32/24 - 1/2 = 4x/3 + 1/6, y' = (y + 1/2)*16/20 - 1/2 = 0.8y - 0.1
    assert torch.allclose(item["day_matrix"], _f64([[4 / 3, 0, 1 / 6], [0, 0.8, -0.1], [0, 0, 1]]))
    assert torch.equal(item["night_matrix"], torch.eye(3).double())
    (root / "pairs.csv").write_text("night,day\nnight/a.png,day/a.png\nnight/b b.png,day/missing.png\n")
    with pytest.raises(DataError, match=r"pairs.csv, line 3: day image .*day/missing.png does not exist"):
        pair_dataset("csv", root, pairs_file=root / "pairs.csv")
    (root / "pairs.csv").write_text("night/a.png\n")
    with pytest.raises(DataError, match=r"pairs.csv, line 1: expected two names"):
        pair_dataset("csv", root, pairs_file=root / "pairs.csv")


def test_pair_dataset_arguments_are_checked(tmp_darkzurich, tmp_path):
    with pytest.raises(SimmmError, match="unknown pair source 'zurich'; known: darkzurich, acdc, csv"):
        pair_dataset("zurich", tmp_darkzurich)
    with pytest.raises(SimmmError, match="'csv' needs pairs_file"):
        pair_dataset("csv", tmp_darkzurich)
    with pytest.raises(SimmmError, match="'acdc' takes no pairs_file"):
        pair_dataset("acdc", tmp_darkzurich, pairs_file="x.csv")
    with pytest.raises(SimmmError, match="'darkzurich' takes no condition"):
        pair_dataset("darkzurich", tmp_darkzurich, condition="night")
    with pytest.raises(SimmmError, match="'csv' takes no split"):
        pair_dataset("csv", tmp_darkzurich, pairs_file="x.csv", split="val")
    with pytest.raises(SimmmError, match="Dark Zurich split"):
        pair_dataset("darkzurich", tmp_darkzurich, split="evening")
    with pytest.raises(DataError, match="pairs file .*absent.csv does not exist"):
        pair_dataset("csv", tmp_path, pairs_file=tmp_path / "absent.csv")


# ------------------------------------------------------------------------------------------------ check


def test_check_pairs_names_missing_and_unreadable_partners(tmp_darkzurich, tmp_acdc, tmp_path):
    assert check_pairs("darkzurich", tmp_darkzurich).ok
    (tmp_darkzurich / DAY77).unlink()
    _truncate(tmp_darkzurich / DAY81)
    report = check_pairs("darkzurich", tmp_darkzurich)
    assert not report.ok and len(report.problems) == 2
    assert any("line 3: day image" in p and str(tmp_darkzurich / DAY77) in p for p in report.problems)
    assert any(p.startswith(f"unreadable day image {tmp_darkzurich / DAY81}: ") for p in report.problems)
    assert "ERROR    day-night pairs: 2 pairs, 1 distinct day frames" in report.format()
    # the tree check decodes the day folder itself: the truncated file is named once, not twice
    tree = check_darkzurich_tree(tmp_darkzurich)
    assert sum(str(tmp_darkzurich / DAY81) in p for p in tree.problems) == 1
    # verify=False only looks for the files
    assert len(check_pairs("darkzurich", tmp_darkzurich, verify=False).problems) == 1

    ref = tmp_acdc / "rgb_anon/fog/train_ref/GOPR0475/GOPR0475_frame_000041_rgb_ref_anon.png"
    _truncate(ref)
    acdc = check_pairs("acdc", tmp_acdc, condition="fog", split="train")
    assert [p.split(":")[0] for p in acdc.problems] == [f"unreadable day image {ref}"]

    write_rgb(tmp_path / "n.png", seed=1)
    write_rgb(tmp_path / "d.png", seed=2)
    (tmp_path / "pairs.csv").write_text("n.png,d.png\nn.png,gone.png\n")
    csv = check_pairs("csv", tmp_path, pairs_file="pairs.csv")
    assert csv.problems == [f"pairs file {tmp_path / 'pairs.csv'}, line 2: day image {tmp_path / 'gone.png'} "
                            f"does not exist"]
    shutil.rmtree(tmp_darkzurich / "corresp")
    missing = check_pairs("darkzurich", tmp_darkzurich)
    assert not missing.ok and str(tmp_darkzurich / "corresp/train/night") in missing.problems[0]
    assert not check_pairs("csv", tmp_path / "absent", pairs_file="p.csv").ok


# ------------------------------------------------------------------------------------------- pair transform


def _coordinate_map(b, h, w):
    """``(b, 3, h, w)``: channel 0 holds each pixel's x, channel 1 its y, channel 2 ones."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    return torch.stack([xs, ys, torch.ones_like(xs)])[None].repeat(b, 1, 1, 1)


def test_matrix_by_hand():
    # 8x8 -> x0.5 -> 4x4, crop 4x4 at (0, 0), resize to 8x8: x' = 2((x + 1/2)/2 - 1/2 + 1/2) - 1/2 = x
    t = PairTransform(crop=4, scale=(0.5, 0.5), resize=8, hflip=False)
    p = t.sample(2, (8, 8))
    assert torch.equal(p.matrix, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    assert p.box.tolist() == [[0, 0, 4, 4]] * 2 and p.scaled_hw.tolist() == [[4, 4]] * 2 and p.out_hw == (8, 8)
    flipped = PairTransform(crop=4, scale=(0.5, 0.5), resize=8, hflip=True)
    g = torch.Generator().manual_seed(0)
    p = flipped.sample(8, (8, 8), g)
    assert p.flip.any() and not p.flip.all()
    for m, f in zip(p.matrix, p.flip):  # a flip of an 8-wide image: x' = 7 - x
        assert torch.equal(m, _f64([[-1, 0, 7], [0, 1, 0], [0, 0, 1]]) if f else torch.eye(3).double())
    # 10x12 -> x2 -> 20x24, crop 6x5 at (x0, y0): x' = (x + 1/2)*2 - 1/2 - x0 = 2x + 1/2 - x0
    t = PairTransform(crop=(6, 5), scale=(2, 2), hflip=False)
    p = t.sample(3, (10, 12), torch.Generator().manual_seed(1))
    for (x0, y0, x1, y1), m in zip(p.box.tolist(), p.matrix):
        assert 0 <= x0 <= 24 - 5 and 0 <= y0 <= 20 - 6 and (x1 - x0, y1 - y0) == (5, 6)
        assert torch.equal(m, _f64([[2, 0, 0.5 - x0], [0, 2, 0.5 - y0], [0, 0, 1]]))


@pytest.mark.parametrize("antialias,tol", [(False, 1e-9), (True, 0.1)])
def test_matrix_maps_each_point_to_the_pixel_it_lands_on(antialias, tol):
    """Warp a map of coordinates: the output pixel (u, v) holds the input point p it came from, and
    matrix @ p must be (u, v). Pixels whose source lies within 2 px of the input border are left out (the
    interpolation clamps there)."""
    h, w = 40, 60
    t = PairTransform(crop=(24, 30), scale=(0.8, 1.3), resize=(14, 18), antialias=antialias)
    night = _coordinate_map(6, h, w)
    out_n, out_d, p = t(night, night * 2, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out_d, out_n * 2)  # one draw for both images
    assert p.flip.any() and not p.flip.all() and (p.scale != 1).all()
    v, u = torch.meshgrid(torch.arange(14, dtype=torch.float64), torch.arange(18, dtype=torch.float64),
                          indexing="ij")
    for i in range(6):
        mapped = torch.einsum("ij,jhw->ihw", p.matrix[i], out_n[i])
        src = out_n[i]
        inside = (src[0] >= 2) & (src[0] <= w - 3) & (src[1] >= 2) & (src[1] <= h - 3)
        assert inside.sum() > 100
        err = (mapped[:2] - torch.stack([u, v])).abs().amax(0)
        assert err[inside].max() < tol, (i, err[inside].max())


def test_padding_draws_and_replay():
    t = PairTransform(crop=(12, 12), scale=(0.5, 0.5), hflip=False, fill=-1.0)
    night = _coordinate_map(1, 10, 10)
    out, _, p = t(night, night)
    assert p.scaled_hw.tolist() == [[5, 5]] and p.box.tolist() == [[0, 0, 12, 12]]
    assert (out[0, :, 5:, :] == -1).all() and (out[0, :, :, 5:] == -1).all()  # bottom/right padding
    # 10 -> 5: x' = (x + 1/2)/2 - 1/2; the padding moves nothing
    assert torch.equal(p.matrix[0], _f64([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]]))
    t = PairTransform(crop=8, scale=(0.9, 1.1), resize=6)
    x = torch.rand(3, 3, 20, 30)
    torch.manual_seed(7)
    a = t(x, x)
    b = t(x, x, generator=torch.Generator().manual_seed(7))  # the global generator unless one is given
    assert torch.equal(a[0], b[0]) and torch.equal(a[2].matrix, b[2].matrix)
    labels = torch.randint(0, 5, (3, 1, 20, 30)).float()
    replay = t.apply(labels, a[2], mode="nearest")
    assert replay.shape == (3, 1, 6, 6) and set(replay.unique().tolist()) <= set(range(5))
    assert torch.equal(t.apply(x, a[2]), a[0])


def test_nearest_mode_keeps_the_geometry():
    # 12x12 -> x1/3 -> 4x4: output pixel u comes from x = (u + 1/2)*3 - 1/2 = 3u + 1, a pixel centre, which
    # "nearest" must pick (not 3u, as floor(u*3) would)
    t = PairTransform(crop=4, scale=(1 / 3, 1 / 3), hflip=False)
    night = _coordinate_map(1, 12, 12)
    p = t.sample(1, (12, 12))
    out = t.apply(night, p, mode="nearest")[0]
    assert out[0, 0].tolist() == [1, 4, 7, 10] and out[1, :, 0].tolist() == [1, 4, 7, 10]
    mapped = torch.einsum("ij,jhw->ihw", p.matrix[0], out)
    v, u = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    assert torch.allclose(mapped[:2].float(), torch.stack([u, v]))


def test_conjugate_homography_by_hand():
    # the day file is the night file moved 3 px right: H(x, y) = (x + 3, y); both halved (x' = x/2 - 1/4):
    # in the samples, x -> 2x + 1/2 -> 2x + 7/2 -> (2x + 7/2)/2 - 1/4 = x + 3/2
    shift = _f64([[1, 0, 3], [0, 1, 0], [0, 0, 1]])
    half = resize_matrix((16, 32), (8, 16))
    assert torch.allclose(conjugate_homography(shift, half, half), _f64([[1, 0, 1.5], [0, 1, 0], [0, 0, 1]]))
    # a flip on both sides turns a right shift into a left one (the flip of a 16-wide image: x' = 15 - x)
    flip = _f64([[-1, 0, 15], [0, 1, 0], [0, 0, 1]])
    assert torch.allclose(conjugate_homography(shift, flip, flip), _f64([[1, 0, -3], [0, 1, 0], [0, 0, 1]]))


def test_cached_homography_warps_the_day_sample_onto_the_night_sample(tmp_path):
    """End to end: files of two sizes related by a known homography, loaded at another size (the items'
    matrices), transformed (scale, crop, resize, flip), the homography conjugated and the day sample warped
    with kornia (``align_corners=True``: pixel centres at integers, this module's convention). Each image
    encodes the night file's coordinates (red = 4x/255, green = 4y/255), so the warped day sample must read
    the same coordinates as the night sample, up to the 8-bit rounding of the resized files (1/8 px)."""
    def save(red, green, name):
        Image.fromarray(np.stack([red, green, np.full_like(red, 100)], -1).astype(np.uint8)).save(tmp_path / name)

    y, x = np.mgrid[0:48, 0:64]
    save(4 * x, 4 * y, "n.png")
    y, x = np.mgrid[0:40, 0:48]  # day pixel (x, y) shows night point (1.25x + 3, 1.25y): 4·(1.25x + 3) = 5x + 12
    save(5 * x + 12, 5 * y, "d.png")
    (tmp_path / "pairs.csv").write_text("n.png,d.png\n")  # a first row of file names is not a header
    day_to_night = _f64([[1.25, 0, 3], [0, 1.25, 0], [0, 0, 1]])
    ds = pair_dataset("csv", tmp_path, pairs_file="pairs.csv", size=(24, 32))
    batch = torch.utils.data.default_collate([ds[0]] * 4)
    t = PairTransform(crop=20, scale=(0.9, 1.1), resize=16, antialias=False)
    night, day, p = t(batch["night"], batch["day"], generator=torch.Generator().manual_seed(0))
    assert p.flip.any() and not p.flip.all()
    h = conjugate_homography(day_to_night, p.matrix @ batch["day_matrix"], p.matrix @ batch["night_matrix"])
    warped = kornia.geometry.warp_perspective(day.double(), h, (16, 16), align_corners=True)
    covered = kornia.geometry.warp_perspective(torch.ones_like(day[:, :1]).double(), h, (16, 16),
                                               align_corners=True)[:, 0] > 0.999
    xn, yn = night[:, 0] * 255 / 4, night[:, 1] * 255 / 4
    inside = covered & (xn > 3) & (xn < 60) & (yn > 3) & (yn < 44)  # away from the files' borders
    assert inside.sum() > 500
    assert (warped[:, 0] * 255 / 4 - xn)[inside].abs().max() < 0.2
    assert (warped[:, 1] * 255 / 4 - yn)[inside].abs().max() < 0.2


def test_pair_transform_bad_arguments():
    with pytest.raises(SimmmError, match="crop must be a positive int or"):
        PairTransform(crop=0)
    with pytest.raises(SimmmError, match=r"scale must be \(lo, hi\) with 0 < lo <= hi"):
        PairTransform(crop=4, scale=(1.2, 1.0))
    t = PairTransform(crop=4)
    with pytest.raises(SimmmError, match="one shape"):
        t(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 9))
    p = t.sample(2, (8, 8))
    with pytest.raises(SimmmError, match=r"2 maps of size 8x8 \(B, C, H, W\), got \(2, 3, 9, 8\)"):
        t.apply(torch.rand(2, 3, 9, 8), p)


@pytest.mark.parametrize("size", [None, (8, 16)])
def test_with_day_partner_adds_each_night_image_s_partner(tmp_darkzurich, size):
    from simmm.data.darkzurich import DarkZurichDataset
    from simmm.data.pair_dataset import WithDayPartner

    night = DarkZurichDataset(tmp_darkzurich, split="val", condition="night", size=size)
    pairs = pair_dataset("darkzurich", tmp_darkzurich, split="val", size=size)
    joined = WithDayPartner(night, pairs)
    for i in range(len(night)):
        item, pair = joined[i], pairs[i]  # the val pairs list the night images in the dataset's order
        assert torch.equal(item["image"], night[i]["image"]) and torch.equal(item["target"], night[i]["target"])
        assert torch.equal(item["image"], pair["night"]) and item["key"] == pair["key"]
        for k in ("day", "night_matrix", "day_matrix"):
            assert torch.equal(item[k], pair[k]), k
