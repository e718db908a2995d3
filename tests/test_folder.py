import shutil

import pytest
import torch

from simmm.data.folder import (
    CODAN_CLASSES,
    CODAN_SPLITS,
    ImageFolderDataset,
    InMemoryImageDataset,
    scan_folder_dataset,
    scan_splits,
)
from simmm.errors import DataError


def test_codan_dataset_items(tmp_codan):
    ds = ImageFolderDataset(tmp_codan, "train", classes=CODAN_CLASSES, size=24, resize=28)
    assert ds.classes == list(CODAN_CLASSES)
    assert 20 <= len(ds) <= 30 and len(ds.targets) == len(ds.samples) == len(ds)
    assert set(ds.targets) == set(range(10))
    # label ids follow the class list order, not the alphabet
    path, label = next(s for s in ds.samples if "/Cat/" in s[0].replace("\\", "/"))
    assert label == CODAN_CLASSES.index("Cat") == 5
    x, y = ds[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and isinstance(y, int)
    assert 0 <= x.min() and x.max() <= 1
    assert torch.equal(ds[3][0], ds[3][0])  # deterministic
    assert sum(ds.class_counts().values()) == len(ds)


def test_default_classes_sorted_and_resize_none(tmp_codan):
    ds = ImageFolderDataset(tmp_codan, "test_night", size=32, resize=None)
    assert ds.classes == sorted(CODAN_CLASSES)
    assert ds[0][0].shape == (3, 32, 32)
    with pytest.raises(DataError, match="resize"):
        ImageFolderDataset(tmp_codan, "train", size=32, resize=16)


def test_missing_root_and_split(tmp_path, tmp_codan):
    with pytest.raises(DataError) as e:
        ImageFolderDataset(tmp_path / "nowhere", "train", classes=CODAN_CLASSES)
    assert str(tmp_path / "nowhere") in str(e.value) and "<Class>" in str(e.value)
    with pytest.raises(DataError) as e:
        ImageFolderDataset(tmp_codan, "val", classes=CODAN_CLASSES,
                           expected_layout="ROOT/{train,test_day,test_night}/<Class>/*.jpg")
    assert str(tmp_codan / "val") in str(e.value) and "{train,test_day,test_night}" in str(e.value)


def test_class_mismatch_errors(tmp_codan):
    (tmp_codan / "train" / "Truck").mkdir()
    with pytest.raises(DataError) as e:
        ImageFolderDataset(tmp_codan, "train", classes=CODAN_CLASSES)
    assert "Truck" in str(e.value) and "Bicycle" in str(e.value) and "Chair" in str(e.value)
    ds = ImageFolderDataset(tmp_codan, "train", classes=CODAN_CLASSES, strict_classes=False,
                            size=16, resize=None)
    assert "Truck" not in ds.classes
    shutil.rmtree(tmp_codan / "test_day" / "Cup")
    with pytest.raises(DataError) as e:
        ImageFolderDataset(tmp_codan, "test_day", classes=CODAN_CLASSES)
    assert str(tmp_codan / "test_day" / "Cup") in str(e.value)


def test_empty_split(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "root" / "train" / c).mkdir(parents=True)
    (tmp_path / "root" / "train" / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        ImageFolderDataset(tmp_path / "root", "train")


def test_unreadable_image_named_at_load(tmp_codan):
    ds = ImageFolderDataset(tmp_codan, "train", classes=CODAN_CLASSES, size=16, resize=None)
    path, _ = ds.samples[4]
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.truncate()
        f.write(data[: len(data) // 3])
    with pytest.raises(DataError) as e:
        ds[4]
    assert path in str(e.value)


def test_scan_reports_everything(tmp_codan, image_writer):
    ok = scan_folder_dataset(tmp_codan, CODAN_SPLITS, classes=CODAN_CLASSES)
    assert ok.ok and ok.problems == []
    splits = scan_splits(tmp_codan, CODAN_SPLITS, classes=CODAN_CLASSES)
    assert [s.split for s in splits] == list(CODAN_SPLITS)
    assert list(splits[0].counts) == list(CODAN_CLASSES) and splits[0].total > 0
    assert "result: OK" in ok.format()

    # break it in every way the check knows
    bad = tmp_codan / "test_night" / "Dog" / "broken.jpg"
    image_writer(bad, size=(64, 64))
    bad.write_bytes(bad.read_bytes()[:200])
    (tmp_codan / "test_night" / "Dog" / "readme.txt").write_text("hi")
    (tmp_codan / "test_night" / "Dog" / ".DS_Store").write_text("hidden")
    shutil.rmtree(tmp_codan / "test_day" / "Boat")
    (tmp_codan / "train" / "Truck").mkdir()
    for f in (tmp_codan / "train" / "Cup").iterdir():
        f.unlink()
    rep = scan_folder_dataset(tmp_codan, [*CODAN_SPLITS, "val"], classes=CODAN_CLASSES)
    assert not rep.ok
    by = {s.split: s for s in scan_splits(tmp_codan, [*CODAN_SPLITS, "val"], classes=CODAN_CLASSES)}
    assert by["test_day"].missing_classes == ["Boat"] and by["test_day"].counts["Boat"] == 0
    assert by["train"].unexpected_folders == ["Truck"]
    assert by["train"].counts["Cup"] == 0 and str(tmp_codan / "train" / "Cup") in by["train"].empty_classes
    assert [p for p, _ in by["test_night"].unreadable] == [str(bad)]
    assert by["test_night"].non_image_files == [str(tmp_codan / "test_night" / "Dog" / "readme.txt")]
    assert not by["val"].exists
    text = rep.format()
    for needle in ("broken.jpg", "Boat", "Truck", "readme.txt", str(tmp_codan / "val"), "NOT OK"):
        assert needle in text
    assert any("broken.jpg" in p for p in rep.problems)
    assert any("readme.txt" in w for w in rep.warnings)


def test_scan_missing_root(tmp_path):
    rep = scan_folder_dataset(tmp_path / "absent", CODAN_SPLITS, classes=CODAN_CLASSES)
    assert not rep.ok and str(tmp_path / "absent") in rep.format()
    assert "{train,test_day,test_night}" in rep.problems[0]


def test_in_memory_dataset(tiny_images):
    images, labels = tiny_images
    ds = InMemoryImageDataset(images, labels, classes=["a", "b", "c"])
    assert len(ds) == 12 and ds.targets == labels.tolist()
    x, y = ds[5]
    assert torch.equal(x, images[5]) and y == 2 and isinstance(y, int)
    with pytest.raises(DataError, match=r"expects images of shape \(N, 3, H, W\), got \(12, 1, "):
        InMemoryImageDataset(images[:, :1], labels)
    with pytest.raises(DataError, match=r"expects labels of shape \(12,\), got \(3,\)"):
        InMemoryImageDataset(images, labels[:3])
    with pytest.raises(DataError, match=r"label [12] out of range for 1 classes \['a'\]"):
        InMemoryImageDataset(images, labels, classes=["a"])


def test_capped_listing():
    from simmm.data.check import capped

    assert capped(["a", "b", "c"], 2, "bad files") == ["a", "b", "... and 1 more bad files"]
    assert capped(["a", "b"], 2, "bad files") == ["a", "b"]
