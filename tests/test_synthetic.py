"""`synthetic:<name>` dataset roots: tiny format-exact trees generated on first use, so the smoke recipes run
out of the box."""
from pathlib import Path

import pytest

from simmm.cli import main
from simmm.data.folder import CODAN_CLASSES, ImageFolderDataset
from simmm.data.segmentation import check_segmentation_tree, get_dataset_class
from simmm.data.synthetic import dataset_root, synthetic_tree
from simmm.errors import DataError


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_synthetic_root_is_generated_once_under_the_working_directory(in_tmp):
    root = dataset_root("synthetic:codan")
    assert root == Path(".cache/simmm/synthetic/codan") and root.is_dir()
    # 10 classes, 2 or 3 images each (alternating, shifted by one per split): 25 per split
    assert [len(list((root / split).rglob("*.*"))) for split in ("train", "test_day", "test_night")] == [25, 25, 25]
    marker = root / "train" / "Car" / "kept.txt"
    marker.write_text("x")
    assert dataset_root("synthetic:codan") == root and marker.exists()  # not generated again
    assert not list(root.parent.glob(".*tmp*"))  # no temporary folder left behind


def test_plain_roots_only_expand_the_home_folder():
    assert dataset_root("~/data/CODaN") == Path.home() / "data" / "CODaN"
    assert dataset_root("data/synthetic:codan") == Path("data/synthetic:codan")


def test_unknown_synthetic_tree_lists_the_known_ones(in_tmp):
    with pytest.raises(DataError, match=r"synthetic:kodan: no synthetic tree 'kodan'; available: synthetic:codan, "
                                        r"synthetic:cityscapes, synthetic:darkzurich"):
        dataset_root("synthetic:kodan")


def test_loaders_take_synthetic_roots(in_tmp):
    train = ImageFolderDataset("synthetic:codan", "train", classes=CODAN_CLASSES, size=32, resize=40)
    assert len(train) == 25 and train.root == Path(".cache/simmm/synthetic/codan")
    for name, kwargs, n in [("cityscapes", {"split": "val"}, 3), ("darkzurich", {"split": "val"}, 3),
                            ("nighttime_driving", {}, 3), ("acdc", {"split": "val", "condition": "night"}, 2)]:
        assert len(get_dataset_class(name)(f"synthetic:{name}", **kwargs)) == n, name
        assert check_segmentation_tree(name, f"synthetic:{name}").ok, name


def test_smoke_recipes_check_out_of_the_box(in_tmp, capsys):
    assert main(["data", "check", "cls_smoke"]) == 0
    assert main(["data", "check", "seg_smoke"]) == 0
    assert sorted(p.name for p in (in_tmp / ".cache/simmm/synthetic").iterdir()) == ["cityscapes", "codan",
                                                                                     "darkzurich"]


def test_a_tree_made_by_another_process_meanwhile_is_used(in_tmp, monkeypatch):
    from simmm.data import synthetic

    def make_and_race(root):
        synthetic.make_codan_tree(root, splits=("train",), classes=("A",), per_class=(1,))
        theirs = in_tmp / ".cache/simmm/synthetic/codan"  # the other process renames its tree first
        theirs.mkdir(parents=True)
        (theirs / "theirs.txt").write_text("x")

    monkeypatch.setitem(synthetic.TREES, "codan", make_and_race)
    assert synthetic_tree("codan") == Path(".cache/simmm/synthetic/codan")
    assert (in_tmp / ".cache/simmm/synthetic/codan/theirs.txt").exists()
    assert not list(Path(".cache/simmm/synthetic").glob(".*"))


def test_data_check_says_where_a_missing_dataset_comes_from(in_tmp, capsys):
    assert main(["data", "check", "cls_codan", "--set", "data.root=nowhere/CODaN"]) == 1
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "CODaN is not at nowhere/CODaN: download it from https://github.com/Attila94/CODaN" in out
    (in_tmp / "empty").mkdir()  # a root that exists: the report lists what is missing in it, no download line
    assert main(["data", "check", "cls_codan", "--set", "data.root=empty"]) == 1
    assert "CODaN is not" not in capsys.readouterr().out
    assert main(["data", "check", "seg_darkzurich", "--set", "data.train.root=synthetic:cityscapes",
                 "--set", "data.eval.cs_val.root=synthetic:cityscapes",
                 "--set", "data.eval.nd_test.root=synthetic:nighttime_driving"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert ("Dark Zurich is not at data/dark_zurich: download it from "
            "https://www.trace.ethz.ch/publications/2019/GCMA_UIoU/") in out
    assert "Cityscapes is not" not in out and "Nighttime Driving is not" not in out


def test_dataset_roots_of_a_segmentation_recipe():
    from simmm import load_recipe
    from simmm.data.sources import dataset_roots

    assert list(dataset_roots(load_recipe("seg_darkzurich").data)) == [
        ("cityscapes", "data/cityscapes"), ("cityscapes", "data/cityscapes"),
        ("nighttime_driving", "data/nighttime_driving"), ("darkzurich", "data/dark_zurich")]
    assert list(dataset_roots(load_recipe("cls_codan").data)) == [("codan", "data/CODaN")]


def test_a_tree_of_another_generator_version_is_made_anew(in_tmp, monkeypatch):
    from simmm.data import synthetic

    root = synthetic_tree("darkzurich")
    assert (root / synthetic.TREE_STAMP).read_text() == synthetic.TREE_VERSION
    (root / "old.txt").write_text("x")
    assert synthetic_tree("darkzurich") == root and (root / "old.txt").exists()  # same version: kept
    monkeypatch.setattr(synthetic, "TREE_VERSION", "next")
    assert synthetic_tree("darkzurich") == root
    assert not (root / "old.txt").exists() and (root / "rgb_anon/val/day").is_dir()
    assert (root / synthetic.TREE_STAMP).read_text() == "next"
    assert not list(Path(".cache/simmm/synthetic").glob(".*"))  # no stale or temporary folder left
