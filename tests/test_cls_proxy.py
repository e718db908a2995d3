"""benchmarks/cls_proxy.py keeps each dataset's and backbone's results and cached runs apart (the photo proxy on Lite0
keeps its first names), and its backbone table says what it claims (the benchmark itself is run by hand)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cls_proxy  # noqa: E402

LITE = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


def test_each_dataset_and_backbone_has_its_own_results_and_cache():
    root = Path("runs/cls_proxy")
    names = {(d, b, q): (cls_proxy.stem(d, b, q), cls_proxy.runs_dir(root, d, b, q))
             for d in cls_proxy.DATASETS for b in LITE for q in (False, True)}
    assert names[("photos", LITE[0], False)] == ("cls_proxy", root / "full")  # the committed table's names
    assert names[("photos", LITE[0], True)] == ("cls_proxy_quick", root / "quick")
    assert names[("fashion-mnist", LITE[0], False)] == ("cls_proxy_fmnist", root / "fmnist" / "full")
    assert names[("photos", LITE[1], False)] == ("cls_proxy_lite1", root / "lite1" / "full")
    assert names[("fashion-mnist", LITE[2], True)] == ("cls_proxy_fmnist_lite2_quick", root / "fmnist_lite2" / "quick")
    assert len({stem for stem, _ in names.values()}) == len({run for _, run in names.values()}) == len(names)


def test_overrides_pick_dataset_and_backbone_and_leave_the_photo_proxy_as_it_was():
    args = cls_proxy.argparse.Namespace(dataset="photos", backbone=LITE[0], quick=False, photo_list=["astronaut"],
                                        fmnist_root="/fm", day_steps=1, darkener_steps=2, steps=3)
    photos = cls_proxy.base_overrides(args, 0, Path("o"))
    assert not any(o.startswith(("model.", "data.kind")) for o in photos)
    assert "data.photos.per_class_train=64" in photos and "players.darkener.steps=2" in photos
    args.dataset, args.backbone = "fashion-mnist", LITE[1]
    fm = cls_proxy.base_overrides(args, 0, Path("o"))
    assert {"model.backbone=tf_efficientnet_lite1", "data.kind=fashion_mnist", "data.root=/fm",
            "data.fashion_mnist.per_class_train=100", "data.image_size=32",
            "data.night_sim.presets=[street,urban,dark,global_dim]"} <= set(fm)
    from simmm.recipe import load_recipe

    recipe = load_recipe(cls_proxy.RECIPE, fm)  # every override is a key the recipe knows
    assert recipe.model.backbone == LITE[1] and recipe.data.fashion_mnist.per_class_test == 30
    # Fashion-MNIST's training views are the whole image (no zoom onto clothes on black: benchmarks/README.md)
    assert tuple(recipe.data.crop_scale) == (1.0, 1.0) and recipe.data.resize == recipe.data.image_size == 32


def _result(day, night):
    """A proxy result with two methods, summarised as the proxy does from per-seed metrics: ``day[name]`` and
    ``night[name]`` the per-seed top-1 of the day set and, plus the set's index in SETS (1–4), of each night set."""
    from proxy import metric_keys, summarise

    def value(key, name, i):
        index = cls_proxy.SETS.index(key.split("/")[0])
        return day[name][i] if index == 0 else night[name][i] + index

    per_seed = {seed: {name: {"metrics": {key: value(key, name, i) for key in metric_keys(cls_proxy.SETS, ["top1"])},
                              "seconds": 5.0}
                       for name in ("no adaptation", "SMM")} for i, seed in enumerate((0, 1))}
    methods = ["no adaptation", "SMM"]
    return {"summary": summarise(per_seed, [0, 1], methods, metric_keys(cls_proxy.SETS, ["top1"]))}


def test_backbone_table_claims_only_what_every_seed_shows():
    better = _result({"no adaptation": [50, 50], "SMM": [60, 40]}, {"no adaptation": [10, 20], "SMM": [11, 21]})
    mixed = _result({"no adaptation": [50, 50], "SMM": [50, 50]}, {"no adaptation": [10, 20], "SMM": [12, 19]})
    text = cls_proxy.backbone_table({LITE[0]: better, LITE[1]: mixed}, [0, 1], "t")
    rows = [line for line in text.splitlines() if "SMM" in line]
    assert len(rows) == 2
    assert "18.5 ± 7.1 ▲" in rows[0]  # night mean: per seed (11, 21) + 2.5, both above (10, 20) + 2.5
    assert "50.0 ± 14.1 " in rows[0] and "50.0 ± 14.1 ▲" not in rows[0]  # day 60/40 vs 50/50: no claim
    assert "18.0 ± 4.9 " in rows[1] and "▲" not in rows[1] and "▼" not in rows[1]  # +2, -1: within the spread
    with pytest.raises(KeyError):
        cls_proxy.backbone_table({LITE[0]: {"summary": {"SMM": {}}}}, [0, 1], "t")


def test_a_backbone_comparison_writes_only_its_own_files(tmp_path, monkeypatch):
    """Runs stand in for the engine: the comparison of a few methods writes ``..._backbones`` and leaves the files of
    each backbone's full table alone."""
    from proxy import metric_keys

    keys = metric_keys(cls_proxy.DATASETS["fashion-mnist"].sets, ["top1"])
    monkeypatch.setattr(cls_proxy, "run_seed", lambda recipe, methods, names, *a: {
        name: {"metrics": {k: 50.0 + len(name) for k in keys}, "seconds": 1.0} for name in ["day model", *names]})
    (tmp_path / "cls_proxy_fmnist.txt").write_text("the full table")
    result = cls_proxy.main(["--dataset", "fashion-mnist", "--methods", "no adaptation", "SMM", "--seeds", "0", "1",
                             "--backbone", *LITE[:2], "--out", str(tmp_path), "--runs", str(tmp_path / "runs")])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "cls_proxy_fmnist.txt", "cls_proxy_fmnist_backbones.json", "cls_proxy_fmnist_backbones.txt"]
    assert (tmp_path / "cls_proxy_fmnist.txt").read_text() == "the full table"
    assert list(result["backbones"]) == list(LITE[:2])
    assert list(result["backbones"][LITE[1]]["summary"]) == ["day model", "no adaptation", "SMM"]
    text = (tmp_path / "cls_proxy_fmnist_backbones.txt").read_text()
    assert text.count("tf_efficientnet_lite1") >= 3  # its rows in the comparison and its own tables' titles
