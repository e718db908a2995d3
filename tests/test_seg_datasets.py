"""Segmentation datasets (Cityscapes, Dark Zurich, Nighttime Driving, ACDC) on tiny trees in real formats."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seg_fixtures import *  # noqa: F401,F403  (fixtures tmp_cityscapes, tmp_darkzurich, ... and writers)
from seg_fixtures import (
    OFFICIAL_TRAIN_ID,
    SEG_H,
    SEG_W,
    label_pattern,
    write_label,
    write_rgb,
)
from simmm.data.acdc import ACDCDataset
from simmm.data.cityscapes import CityscapesDataset
from simmm.data.darkzurich import DarkZurichDataset, DarkZurichPairs, export_server_predictions, read_pairs
from simmm.data.labels import (
    LABEL_TO_TRAIN,
    LABELS,
    PALETTE,
    STATIC_CLASSES,
    TRAIN_CLASSES,
    TRAIN_TO_LABEL,
    colorize,
    label_ids_to_train_ids,
    train_ids_to_label_ids,
)
from simmm.data.nighttime_driving import NighttimeDrivingDataset
from simmm.data.segmentation import DATASETS, check_segmentation_tree, get_dataset_class
from simmm.errors import DataError, SimmmError

TRAIN_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
               "motorcycle", "bicycle")


def official(label_ids: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: OFFICIAL_TRAIN_ID.get(int(v), 255))(label_ids).astype(np.int64)


def read_png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


# ------------------------------------------------------------------------------------------- label table


def test_label_table_is_the_official_one():
    assert len(LABELS) == 35
    assert sorted(lab.id for lab in LABELS) == [-1] + list(range(34))
    plate = next(lab for lab in LABELS if lab.name == "license plate")
    assert plate.id == -1 and plate.trainId == -1 and plate.ignoreInEval
    for lab in LABELS:
        if lab.id >= 0:
            assert OFFICIAL_TRAIN_ID[lab.id] == lab.trainId
            assert lab.ignoreInEval == (lab.trainId == 255)
    assert LABEL_TO_TRAIN.shape == (256,) and LABEL_TO_TRAIN.dtype == np.uint8
    assert all(LABEL_TO_TRAIN[i] == OFFICIAL_TRAIN_ID[i] for i in range(34))
    assert (LABEL_TO_TRAIN[34:] == 255).all()
    assert TRAIN_CLASSES == TRAIN_NAMES
    assert PALETTE.shape == (19, 3) and PALETTE.dtype == np.uint8
    assert tuple(PALETTE[0]) == (128, 64, 128) and tuple(PALETTE[10]) == (70, 130, 180)
    assert tuple(PALETTE[13]) == (0, 0, 142) and tuple(PALETTE[18]) == (119, 11, 32)
    assert STATIC_CLASSES == tuple(range(11))
    assert [TRAIN_CLASSES[i] for i in STATIC_CLASSES][-1] == "sky"
    cats = {lab.name: lab.category for lab in LABELS}
    assert cats["road"] == "flat" and cats["car"] == "vehicle" and cats["sky"] == "sky"


def test_id_conversions_and_colorize():
    ids = np.arange(34, dtype=np.uint8).reshape(2, 17)
    train = label_ids_to_train_ids(ids)
    assert train.dtype == np.uint8 and (train == official(ids)).all()
    t = label_ids_to_train_ids(torch.tensor([[7, 26, 40, -3, 300]]))
    assert t.tolist() == [[0, 13, 255, 255, 255]]
    back = train_ids_to_label_ids(np.array([0, 1, 13, 18, 255], dtype=np.uint8))
    assert back.tolist() == [7, 8, 26, 33, 0]
    assert (LABEL_TO_TRAIN[TRAIN_TO_LABEL[:19]] == np.arange(19)).all()  # round trip
    col = colorize(np.array([[0, 10, 255]], dtype=np.uint8))
    assert col.shape == (1, 3, 3) and col.dtype == np.uint8
    assert col[0, 0].tolist() == [128, 64, 128] and col[0, 1].tolist() == [70, 130, 180]
    assert col[0, 2].tolist() == [0, 0, 0]
    tcol = colorize(torch.tensor([[13, 255]]))
    assert torch.is_tensor(tcol) and tcol.dtype == torch.uint8 and tcol[0, 0].tolist() == [0, 0, 142]
    assert tcol[0, 1].tolist() == [0, 0, 0]


def test_every_cityscapes_label_id_maps_to_its_official_train_id(tmp_path):
    root = tmp_path / "cs"
    stem = "aachen_000000_000019"
    ids = np.arange(34, dtype=np.uint8).reshape(2, 17)
    write_rgb(root / "leftImg8bit" / "val" / "aachen" / f"{stem}_leftImg8bit.png", size_hw=(2, 17))
    write_label(root / "gtFine" / "val" / "aachen" / f"{stem}_gtFine_labelIds.png", ids)
    item = CityscapesDataset(root, "val")[0]
    target = item["target"].numpy()
    for label_id in range(34):
        r, c = divmod(label_id, 17)
        assert target[r, c] == OFFICIAL_TRAIN_ID[label_id], f"labelId {label_id}"


# -------------------------------------------------------------------------------------------- Cityscapes


def test_cityscapes_items(tmp_cityscapes):
    ds = CityscapesDataset(tmp_cityscapes, "train")
    assert len(ds) == 3 and ds.size is None
    names = [s.name for s in ds.samples]
    assert names[0] == "train/aachen/aachen_000000_000019_leftImg8bit.png"
    item = ds[0]
    assert set(item) == {"image", "target", "path", "name"}
    assert item["image"].shape == (3, SEG_H, SEG_W) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["target"].shape == (SEG_H, SEG_W) and item["target"].dtype == torch.int64
    assert item["path"].endswith("aachen_000000_000019_leftImg8bit.png")
    raw = read_png(tmp_cityscapes / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png")
    assert (item["target"].numpy() == official(raw)).all()
    values = set(item["target"].unique().tolist())
    assert 255 in values and values <= set(range(19)) | {255} and len(values) > 5
    assert len(CityscapesDataset(tmp_cityscapes, "val")) == 3
    nolab = CityscapesDataset(tmp_cityscapes, "val", with_labels=False)[0]
    assert "target" not in nolab and nolab["image"].shape == (3, SEG_H, SEG_W)
    assert ds.check().ok


@pytest.mark.parametrize("size", [(8, 16), (32, 64), (11, 23)])
def test_resize_keeps_labels_nearest(tmp_cityscapes, size):
    native = CityscapesDataset(tmp_cityscapes, "val")[1]
    item = CityscapesDataset(tmp_cityscapes, "val", size=size)[1]
    assert item["image"].shape == (3, *size) and item["target"].shape == size
    assert set(item["target"].unique().tolist()) <= set(native["target"].unique().tolist())
    expected = Image.fromarray(native["target"].numpy().astype(np.uint8)).resize((size[1], size[0]),
                                                                                  Image.NEAREST)
    assert (item["target"].numpy() == np.array(expected)).all()
    # the image is resized from the file bilinearly (antialiased), not nearest
    with Image.open(native["path"]) as im:
        ref = np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255
    assert torch.allclose(item["image"], torch.from_numpy(ref).permute(2, 0, 1), atol=1e-6)


def test_cityscapes_missing_root_split_and_label(tmp_path, tmp_cityscapes):
    with pytest.raises(DataError) as e:
        CityscapesDataset(tmp_path / "nowhere", "train")
    assert str(tmp_path / "nowhere") in str(e.value) and "leftImg8bit" in str(e.value)
    with pytest.raises(DataError) as e:
        CityscapesDataset(tmp_cityscapes, "test")
    assert str(tmp_cityscapes / "leftImg8bit" / "test") in str(e.value) and "gtFine_labelIds" in str(e.value)
    label = tmp_cityscapes / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(DataError) as e:
        CityscapesDataset(tmp_cityscapes, "train")
    assert str(label) in str(e.value) and "bochum_000000_000313_leftImg8bit.png" in str(e.value)
    shutil.rmtree(tmp_cityscapes / "gtFine" / "val")
    with pytest.raises(DataError, match="with_labels=False") as e:
        CityscapesDataset(tmp_cityscapes, "val")
    assert str(tmp_cityscapes / "gtFine" / "val") in str(e.value)


def test_cityscapes_wrong_size_and_out_of_table_labels(tmp_cityscapes):
    d = tmp_cityscapes / "gtFine/val/frankfurt"
    wrong = d / "frankfurt_000000_000294_gtFine_labelIds.png"
    write_label(wrong, label_pattern([7, 26], size_hw=(8, 16)))
    bad = d / "frankfurt_000000_000576_gtFine_labelIds.png"
    arr = label_pattern([7, 26, 23], seed=1)
    arr[0, 0] = 40
    write_label(bad, arr)
    ds = CityscapesDataset(tmp_cityscapes, "val")  # construction reads no labels
    with pytest.raises(DataError) as e:
        ds[0]
    msg = str(e.value)
    assert str(wrong) in msg and "frankfurt_000000_000294_leftImg8bit.png" in msg
    assert "16x8" in msg and "32x16" in msg
    with pytest.raises(DataError) as e:
        ds[1]
    assert str(bad) in str(e.value) and "40" in str(e.value)
    with pytest.raises(DataError) as e:
        ds.check()
    assert str(bad) in str(e.value) and "40" in str(e.value) and str(wrong) in str(e.value)
    report = ds.check(strict=False)
    assert not report.ok and len(report.problems) == 2


def test_colour_label_is_rejected(tmp_cityscapes):
    lab = tmp_cityscapes / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
    Image.new("RGB", (SEG_W, SEG_H)).save(lab)
    with pytest.raises(DataError, match="single-channel") as e:
        CityscapesDataset(tmp_cityscapes, "val")[2]
    assert str(lab) in str(e.value)


# ------------------------------------------------------------------------------------------- Dark Zurich


def test_darkzurich_val_night_labels(tmp_darkzurich):
    ds = DarkZurichDataset(tmp_darkzurich, "val", "night")
    assert len(ds) == 3 and ds.with_labels
    item = ds[0]
    assert item["name"] == "val/night/GOPR0356/GOPR0356_frame_000321_rgb_anon.png"
    gt = tmp_darkzurich / "gt/val/night/GOPR0356"
    assert (item["target"].numpy() == official(read_png(gt / "GOPR0356_frame_000321_gt_labelIds.png"))).all()
    assert (item["target"].numpy() == read_png(gt / "GOPR0356_frame_000321_gt_labelTrainIds.png")).all()
    # only *_gt_labelTrainIds.png present: used as train ids, same targets
    for p in gt.glob("*_gt_labelIds.png"):
        p.unlink()
    ds2 = DarkZurichDataset(tmp_darkzurich, "val", "night", size=(8, 16))
    assert ds2.samples[0].label_kind == "trainIds"
    assert ds2[0]["target"].shape == (8, 16)
    assert (DarkZurichDataset(tmp_darkzurich, "val", "night")[0]["target"] == item["target"]).all()


def test_darkzurich_unlabelled_splits(tmp_darkzurich):
    test = DarkZurichDataset(tmp_darkzurich, "test", "night")
    assert len(test) == 2 and not test.with_labels
    assert "target" not in test[0] and test[0]["image"].shape == (3, SEG_H, SEG_W)
    day = DarkZurichDataset(tmp_darkzurich, "train", "day", size=(8, 8))
    assert len(day) == 2 and day[1]["image"].shape == (3, 8, 8) and "target" not in day[1]
    assert len(DarkZurichDataset(tmp_darkzurich, "train", "twilight")) == 2
    with pytest.raises(DataError) as e:
        DarkZurichDataset(tmp_darkzurich, "test", "night", with_labels=True)
    assert str(tmp_darkzurich / "gt" / "test" / "night") in str(e.value)
    with pytest.raises(DataError) as e:
        DarkZurichDataset(tmp_darkzurich, "val", "day")
    assert str(tmp_darkzurich / "rgb_anon" / "val" / "day") in str(e.value)
    with pytest.raises(SimmmError, match="condition"):
        DarkZurichDataset(tmp_darkzurich, "val", "dusk")
    (tmp_darkzurich / "gt/val/night/GOPR0356/GOPR0356_frame_000324_gt_labelIds.png").unlink()
    (tmp_darkzurich / "gt/val/night/GOPR0356/GOPR0356_frame_000324_gt_labelTrainIds.png").unlink()
    with pytest.raises(DataError, match="GOPR0356_frame_000324_gt_labelIds.png"):
        DarkZurichDataset(tmp_darkzurich, "val", "night")


def _pair_names(pairs):
    return [(n.name, d.name) for n, d in pairs]


EXPECTED_PAIRS = [("GOPR0351_frame_000001_rgb_anon.png", "GOPR0345_frame_000081_rgb_anon.png"),
                  ("GOPR0351_frame_000002_rgb_anon.png", "GOPR0345_frame_000081_rgb_anon.png"),
                  ("GOPR0351_frame_000003_rgb_anon.png", "GOPR0345_frame_000077_rgb_anon.png")]


def test_pairs_from_release_correspondences_and_dannet_csv(tmp_darkzurich):
    ds = DarkZurichPairs(tmp_darkzurich, size=(8, 16))
    assert _pair_names(ds.pairs) == EXPECTED_PAIRS
    assert len(ds) == 3 and ds.num_day_frames == 2
    item = ds[0]
    assert set(item) == {"night", "day", "index", "key", "night_matrix", "day_matrix", "night_path", "day_path"}
    assert item["night"].shape == item["day"].shape == (3, 8, 16) and item["night"].dtype == torch.float32
    rgb = tmp_darkzurich / "rgb_anon/train"
    assert Path(item["night_path"]) == rgb / "night/GOPR0351/GOPR0351_frame_000001_rgb_anon.png"
    assert Path(item["day_path"]) == rgb / "day/GOPR0345/GOPR0345_frame_000081_rgb_anon.png"
    native = DarkZurichPairs(tmp_darkzurich)[2]
    assert native["night"].shape == (3, SEG_H, SEG_W)
    dannet = DarkZurichPairs(tmp_darkzurich, pairs_file=tmp_darkzurich / "lists/zurich_dn_pair_train.csv")
    assert dannet.pairs == ds.pairs
    # a relative pairs_file is also looked up under the root
    assert read_pairs(tmp_darkzurich, "lists/zurich_dn_pair_train.csv") == ds.pairs
    # the merged list sitting next to the per-sequence files: duplicates are dropped
    shutil.copy(tmp_darkzurich / "lists/zurich_dn_pair_train.csv",
                tmp_darkzurich / "corresp/train/night/all.csv")
    assert DarkZurichPairs(tmp_darkzurich).pairs == ds.pairs


def test_pairs_tolerant_formats(tmp_darkzurich):
    f = tmp_darkzurich / "my_pairs.txt"
    f.write_text(
        "night_frame  day_frame\n"                                     # header
        "# comment line\n"
        "GOPR0351_frame_000001   GOPR0345_frame_000081\n"              # bare names, whitespace
        "GOPR0351_frame_000002_rgb_anon.png, GOPR0345_frame_000081_rgb_anon.png\n"
        "\n"
        "rgb_anon/train/night/GOPR0351/GOPR0351_frame_000003_rgb_anon.png,"
        "train/day/GOPR0345/GOPR0345_frame_000077,0.93\n")             # extra column ignored
    assert _pair_names(read_pairs(tmp_darkzurich, f)) == EXPECTED_PAIRS


def test_pairs_errors_name_file_line_and_path(tmp_darkzurich, tmp_path):
    f = tmp_path / "pairs.csv"
    f.write_text("night,day\n"
                 "train/night/GOPR0351/GOPR0351_frame_000001,train/day/GOPR0345/GOPR0345_frame_000081\n"
                 "train/night/GOPR0351/GOPR0351_frame_000002,train/day/GOPR0345/GOPR0345_frame_000999\n")
    with pytest.raises(DataError) as e:
        DarkZurichPairs(tmp_darkzurich, pairs_file=f)
    msg = str(e.value)
    assert str(f) in msg and "line 3" in msg
    assert str(tmp_darkzurich / "rgb_anon/train/day/GOPR0345/GOPR0345_frame_000999_rgb_anon.png") in msg
    f.write_text("train/night/GOPR0351/GOPR0351_frame_000001\n")
    with pytest.raises(DataError, match="line 1"):
        read_pairs(tmp_darkzurich, f)
    with pytest.raises(DataError, match="does not exist"):
        read_pairs(tmp_darkzurich, tmp_path / "absent.csv")
    f.write_text("GOPR0351_frame_000001,GOPR0345_frame_000081\nGOPR0351_frame_000001,GOPR0345_frame_000077\n")
    with pytest.raises(DataError, match="paired with"):
        read_pairs(tmp_darkzurich, f)
    shutil.rmtree(tmp_darkzurich / "corresp")
    with pytest.raises(DataError) as e:
        DarkZurichPairs(tmp_darkzurich)
    assert str(tmp_darkzurich / "corresp" / "train" / "night") in str(e.value)


def test_export_server_predictions(tmp_darkzurich, tmp_path):
    test = DarkZurichDataset(tmp_darkzurich, "test", "night")
    rng = np.random.default_rng(0)
    preds = {test[i]["name"]: rng.integers(0, 19, size=(SEG_H, SEG_W)).astype(np.uint8)
             for i in range(len(test))}
    k0, k1 = sorted(preds)
    invalid = {k0: np.zeros((SEG_H, SEG_W), dtype=bool)}
    invalid[k0][:4] = True
    conf = {k1: np.full((SEG_H, SEG_W), 0.5, dtype=np.float32)}
    preds[k1] = torch.from_numpy(preds[k1]).long()  # tensors of any integer dtype are accepted
    out = tmp_path / "submit"
    zpath = export_server_predictions(preds, out, invalid=invalid, confidence=conf)
    assert zpath == out / "darkzurich_test.zip" and zpath.is_file()
    name0 = "GOPR0364_frame_000001_rgb_anon.png"
    with zipfile.ZipFile(zpath) as zf:
        names = set(zf.namelist())
    assert names == {f"{d}/GOPR0364_frame_00000{i}_rgb_anon.png" for d in
                     ("labelTrainIds", "labelTrainIds_invalid", "confidence") for i in (1, 2)}
    lab = read_png(out / "labelTrainIds" / name0)
    assert lab.dtype == np.uint8 and (lab == preds[k0]).all()
    inv = read_png(out / "labelTrainIds_invalid" / name0)
    assert (inv[:4] == 255).all() and (inv[4:] == preds[k0][4:]).all()
    inv1 = read_png(out / "labelTrainIds_invalid" / "GOPR0364_frame_000002_rgb_anon.png")
    assert (inv1 == preds[k1].numpy()).all()  # no mask given: nothing invalid
    c0 = read_png(out / "confidence" / name0)
    c1 = read_png(out / "confidence" / "GOPR0364_frame_000002_rgb_anon.png")
    assert c0.dtype == np.uint16 and (c0 == 65535).all() and (c1 == 32768).all()
    rel = export_server_predictions({"rgb_anon/" + k0: preds[k0]}, tmp_path / "rel", layout="relative",
                                    zip_name="x.zip")
    with zipfile.ZipFile(rel) as zf:
        assert "labelTrainIds/test/night/GOPR0364/" + name0 in zf.namelist()
    bad = dict(preds)
    bad[k0] = np.full((SEG_H, SEG_W), 255, dtype=np.uint8)
    with pytest.raises(DataError, match="255"):
        export_server_predictions(bad, tmp_path / "bad")


# ------------------------------------------------------------------------------------ Nighttime Driving


def test_nighttime_driving(tmp_nighttime_driving):
    ds = NighttimeDrivingDataset(tmp_nighttime_driving, size=(8, 16))
    assert len(ds) == 3
    item = NighttimeDrivingDataset(tmp_nighttime_driving)[0]
    assert item["name"] == "test/night/0_frame_0046_leftImg8bit.png"
    gt = tmp_nighttime_driving / "gtCoarse_daytime_trainvaltest/test/night"
    raw = read_png(gt / "0_frame_0046_gtCoarse_labelIds.png")
    assert (item["target"].numpy() == official(raw)).all()
    assert ds[2]["target"].shape == (8, 16) and ds[2]["image"].shape == (3, 8, 16)
    lab = gt / "1_frame_0020_gtCoarse_labelIds.png"
    lab.unlink()
    with pytest.raises(DataError) as e:
        NighttimeDrivingDataset(tmp_nighttime_driving)
    assert str(lab) in str(e.value)


# ----------------------------------------------------------------------------------------------- ACDC


def test_acdc_items_and_references(tmp_acdc):
    ds = ACDCDataset(tmp_acdc, "fog", "train", with_reference=True, size=(8, 16))
    assert len(ds) == 2
    item = ds[0]
    assert set(item) == {"image", "target", "reference", "path", "name"}
    assert item["reference"].shape == item["image"].shape == (3, 8, 16)
    assert item["name"] == "fog/train/GOPR0475/GOPR0475_frame_000041_rgb_anon.png"
    native = ACDCDataset(tmp_acdc, "night", "val")[1]
    gt = tmp_acdc / "gt/night/val/GOPR0376/GOPR0376_frame_000105_gt_labelTrainIds.png"
    assert (native["target"].numpy() == read_png(gt)).all() and "reference" not in native
    test = ACDCDataset(tmp_acdc, "snow", "test", with_reference=True)
    assert "target" not in test[0] and test[0]["reference"].shape == (3, SEG_H, SEG_W)
    with pytest.raises(SimmmError, match="condition"):
        ACDCDataset(tmp_acdc, "haze", "train")
    ref = tmp_acdc / "rgb_anon/rain/val_ref/GOPR0400/GOPR0400_frame_000105_rgb_ref_anon.png"
    ref.unlink()
    assert len(ACDCDataset(tmp_acdc, "rain", "val")) == 2  # references not asked for
    with pytest.raises(DataError) as e:
        ACDCDataset(tmp_acdc, "rain", "val", with_reference=True)
    assert str(ref) in str(e.value)


def test_acdc_train_id_validation_and_label_id_fallback(tmp_acdc):
    gt = tmp_acdc / "gt/fog/val/GOPR0475"
    bad = gt / "GOPR0475_frame_000102_gt_labelTrainIds.png"
    arr = read_png(bad).copy()
    arr[3, 5] = 19
    write_label(bad, arr)
    with pytest.raises(DataError) as e:
        ACDCDataset(tmp_acdc, "fog", "val")[0]
    assert str(bad) in str(e.value) and "19" in str(e.value)
    bad.unlink()  # only *_gt_labelIds.png left: read as labelIds and mapped
    ds = ACDCDataset(tmp_acdc, "fog", "val")
    assert ds.samples[0].label_kind == "labelIds"
    raw = read_png(gt / "GOPR0475_frame_000102_gt_labelIds.png")
    assert (ds[0]["target"].numpy() == official(raw)).all()


# ------------------------------------------------------------------------------------------ data check


def test_data_check_ok_for_intact_trees(tmp_cityscapes, tmp_darkzurich, tmp_nighttime_driving, tmp_acdc):
    for name, root in (("cityscapes", tmp_cityscapes), ("darkzurich", tmp_darkzurich),
                       ("nighttime_driving", tmp_nighttime_driving), ("acdc", tmp_acdc)):
        report = check_segmentation_tree(name, root, references=True)
        assert report.ok, report.format()
        assert report.problems == [] and report.format().endswith("result: OK")
    text = check_segmentation_tree("dark_zurich", tmp_darkzurich).format()
    assert "val/night: 3 images, 3 labelled, 0 without label" in text
    assert "day-night pairs: 3 pairs, 2 distinct day frames" in text
    acdc = check_segmentation_tree("acdc", tmp_acdc, references=True).format()
    assert "fog/train: 2 images, 2 labelled, 0 without label, 2 references" in acdc


def test_data_check_reports_missing_and_malformed(tmp_cityscapes, tmp_path):
    train = tmp_cityscapes / "gtFine/train"
    missing = train / "aachen/aachen_000001_000019_gtFine_labelIds.png"
    missing.unlink()
    wrong = train / "bochum/bochum_000000_000313_gtFine_labelIds.png"
    write_label(wrong, np.full((SEG_H, SEG_W + 1), 7, dtype=np.uint8))
    bad = tmp_cityscapes / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
    arr = read_png(bad).copy()
    arr[:2, :2] = 34
    write_label(bad, arr)
    img = tmp_cityscapes / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    img.write_bytes(img.read_bytes()[:60])
    report = check_segmentation_tree("cityscapes", tmp_cityscapes, splits=["train", "val", "test"])
    assert not report.ok
    probs = "\n".join(report.problems)
    assert f"missing label {missing}" in probs
    assert str(wrong) in probs and "33x16" in probs and "32x16" in probs
    assert str(bad) in probs and "34 (4 px)" in probs
    assert f"unreadable file {img}" in probs
    assert str(tmp_cityscapes / "leftImg8bit" / "test") in probs
    lines = report.lines
    assert any(l.strip().startswith("MISSING") and "test" in l for l in lines)
    assert any(l.strip().startswith("ERROR") and str(bad) in l for l in lines)
    assert "train: 3 images, 2 labelled, 1 without label" in report.format()
    assert report.format().splitlines()[-1] == "result: NOT OK"
    assert len(report.problems) == 5
    nothing = check_segmentation_tree("cityscapes", tmp_path / "absent")
    assert not nothing.ok and str(tmp_path / "absent") in nothing.problems[0]
    assert "MISSING  root folder" in nothing.format()


def test_data_check_darkzurich_pairs_and_acdc_references(tmp_darkzurich, tmp_acdc):
    (tmp_darkzurich / "rgb_anon/train/day/GOPR0345/GOPR0345_frame_000077_rgb_anon.png").unlink()
    report = check_segmentation_tree("darkzurich", tmp_darkzurich)
    assert not report.ok
    assert any("GOPR0351.csv, line 3" in p and "GOPR0345_frame_000077_rgb_anon.png" in p
               for p in report.problems)
    assert len(report.problems) == 1 and "ERROR    day-night pairs: 2 pairs" in report.format()
    assert check_segmentation_tree("darkzurich", tmp_darkzurich, pairs=False).ok
    shutil.rmtree(tmp_darkzurich / "corresp")
    r2 = check_segmentation_tree("darkzurich", tmp_darkzurich, splits=["val"])
    assert r2.ok and any("correspondences" in w for w in r2.warnings)
    assert not check_segmentation_tree("darkzurich", tmp_darkzurich, splits=["val"], pairs=True).ok
    ref = tmp_acdc / "rgb_anon/snow/train_ref/GOPR0122/GOPR0122_frame_000041_rgb_ref_anon.png"
    ref.unlink()
    assert check_segmentation_tree("acdc", tmp_acdc, conditions=["snow"]).ok
    r3 = check_segmentation_tree("acdc", tmp_acdc, conditions=["snow"], references=True)
    assert not r3.ok and any(str(ref) in p for p in r3.problems)


def test_dataset_map():
    assert DATASETS == {"cityscapes": CityscapesDataset, "darkzurich": DarkZurichDataset,
                        "nighttime_driving": NighttimeDrivingDataset, "acdc": ACDCDataset}
    assert get_dataset_class("Dark_Zurich") is DarkZurichDataset
    assert get_dataset_class("NighttimeDrivingTest") is NighttimeDrivingDataset
    with pytest.raises(SimmmError, match="unknown segmentation dataset"):
        check_segmentation_tree("kitti", ".")
