"""Place recognition as a task: the retrieval data forms and their checks, the SMM hook (the darkened query as an
extra positive), the smoke recipe trained end to end and resumed bitwise with its mined tuples, the descriptor
cache, `simmm predict` and `simmm data check`."""
import csv
import pickle

import pytest
import torch

from simmm.cli import main
from simmm.contrastive import contrastive_loss, tuple_labels
from simmm.data.retrieval_db import check_sfm, read_ground_truth, read_sfm
from simmm.data.synthetic import make_retrieval_sfm_tree, make_tokyo247_tree
from simmm.engine import Engine
from simmm.errors import DataError
from simmm.recipe import load_recipe
from simmm.task import TaskNet
from test_engine import assert_same_state, crash_and_resume

RECIPE = "recipes/vpr_smoke.yaml"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("vpr")
    return make_retrieval_sfm_tree(base / "sfm"), make_tokyo247_tree(base / "tokyo")


@pytest.fixture
def mined(monkeypatch):
    """The keys (``stream:epoch``) of the epochs whose tuples were mined, in order."""
    import simmm.tasks.place_recognition as pr

    keys = []
    real = pr.mine_epoch

    def counting(*args, **kw):
        keys.append(args[-1])
        return real(*args, **kw)

    monkeypatch.setattr(pr, "mine_epoch", counting)
    return keys


def overrides(trees, tmp_path, *extra):
    sfm, tokyo = trees
    return [f"data.train.root={sfm}", f"data.eval.tokyo247.root={tokyo}", f"data.cache_dir={tmp_path / 'cache'}",
            f"output_dir={tmp_path / 'run'}", *extra]


def rewrite_pickle(path, change):
    with open(path, "rb") as handle:
        data = pickle.load(handle)
    change(data)
    with open(path, "wb") as handle:
        pickle.dump(data, handle)


# ------------------------------------------------------------------------------------------------- data forms


def test_synthetic_trees_are_in_the_release_forms(tmp_path):
    sfm, tokyo = make_retrieval_sfm_tree(tmp_path / "sfm"), make_tokyo247_tree(tmp_path / "tokyo")
    db = read_sfm(sfm)
    cid = pickle.load(open(sfm / "retrieval-SfM-120k.pkl", "rb"))["train"]["cids"][5]
    assert db.images[5] == sfm / "ims" / cid[-2:] / cid[-4:-2] / cid[-6:-4] / cid and db.images[5].is_file()
    assert all(db.clusters[q] == db.clusters[p] for q, p in zip(db.qidxs, db.pidxs))
    gt = read_ground_truth(tokyo)
    assert gt.database[0] == tokyo / "jpg" / "00000_0.jpg" and gt.queries[0] == tokyo / "jpg" / "q00000.jpg"
    assert gt.gnd[1] == {"ok": [3, 4], "junk": [5]}


def test_opencv_places_are_real_same_place_photos_with_night_queries(tmp_path):
    from simmm.data.opencv_places import OPENCV_DATA, PLACES, make_opencv_places_sfm, make_opencv_places_test
    from simmm.data.images import load_image_tensor

    if not (OPENCV_DATA / PLACES[0][0]).is_file():
        pytest.skip("Debian's opencv-doc is not installed")
    db = read_sfm(make_opencv_places_sfm(tmp_path / "sfm"))
    assert len(set(db.clusters[:4 * len(PLACES)])) == len(PLACES) and len(db.qidxs) == 12 * len(PLACES)
    assert all(db.clusters[q] == db.clusters[p] for q, p in zip(db.qidxs, db.pidxs))
    gt = read_ground_truth(make_opencv_places_test(tmp_path / "test"))
    assert len(gt.queries) == len(PLACES) and gt.gnd[0] == {"ok": [0, 1], "junk": []}
    assert gt.database[0].name == "graf1.jpg" and gt.queries[0].name == "graf3_night.jpg"
    day, night = load_image_tensor(gt.database[0]), load_image_tensor(gt.queries[0])
    assert night.mean() < 0.5 * day.mean()  # the query is a simulated night photo


def test_malformed_training_pkl_is_named(tmp_path):
    sfm = make_retrieval_sfm_tree(tmp_path / "sfm")
    pkl = sfm / "retrieval-SfM-120k.pkl"
    rewrite_pickle(pkl, lambda d: d["train"].pop("pidxs"))
    with pytest.raises(DataError, match=r"retrieval-SfM-120k.pkl: split 'train' lacks key\(s\) pidxs"):
        read_sfm(sfm)
    make_retrieval_sfm_tree(sfm)
    rewrite_pickle(pkl, lambda d: d["train"]["qidxs"].__setitem__(0, 999))
    with pytest.raises(DataError, match=r"train.qidxs holds 1 index\(es\) outside 0..23 .* e.g. 999"):
        read_sfm(sfm)
    pkl.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read training database .*expected a Python pickle"):
        read_sfm(sfm)


def test_malformed_ground_truth_is_named(tmp_path):
    tokyo = make_tokyo247_tree(tmp_path / "tokyo")
    pkl = tokyo / "gnd_247tokyo1k.pkl"
    rewrite_pickle(pkl, lambda d: d.pop("qimlist"))
    with pytest.raises(DataError, match=r"gnd_247tokyo1k.pkl: lacks key\(s\) qimlist"):
        read_ground_truth(tokyo)
    make_tokyo247_tree(tokyo)
    rewrite_pickle(pkl, lambda d: d["gnd"][2]["junk"].append(12))
    with pytest.raises(DataError, match=r"gnd\[2\].junk holds 1 index\(es\) outside 0..11"):
        read_ground_truth(tokyo)


def test_data_check_names_missing_images_and_bad_files(tmp_path, trees, capsys):
    sfm = make_retrieval_sfm_tree(tmp_path / "sfm")
    gone = read_sfm(sfm).images[7]
    gone.unlink()
    report = check_sfm(sfm, "retrieval-SfM-120k", "train")
    assert not report.ok and any(str(gone) in p for p in report.problems)
    tokyo = make_tokyo247_tree(tmp_path / "tokyo")
    (tokyo / "jpg" / "q00002.jpg").unlink()
    rewrite_pickle(sfm / "retrieval-SfM-120k.pkl", lambda d: d["train"].pop("cluster"))
    code = main(["data", "check", RECIPE, "--set", f"data.train.root={sfm}", "--set",
                 f"data.eval.tokyo247.root={tokyo}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "lacks key(s) cluster" in out and "q00002.jpg does not exist" in out and "result: NOT OK" in out
    code = main(["data", "check", RECIPE, *sum((["--set", o] for o in overrides(trees, tmp_path)), [])])
    assert code == 0 and "result: OK" in capsys.readouterr().out


def test_training_refuses_missing_images_before_any_step(tmp_path):
    sfm = make_retrieval_sfm_tree(tmp_path / "sfm")
    read_sfm(sfm).images[3].unlink()
    tokyo = make_tokyo247_tree(tmp_path / "tokyo")
    with pytest.raises(DataError, match=r"1 image\(s\) of retrieval-SfM-120k .* do not exist"):
        Engine(load_recipe(RECIPE, overrides((sfm, tokyo), tmp_path)))


# ------------------------------------------------------------------------------------------------- training


def test_darkened_query_is_an_extra_positive(trees, tmp_path):
    engine = Engine(load_recipe(RECIPE, overrides(trees, tmp_path)))
    task = engine.adapter
    task.prepare_epoch("extractor", 0)
    batch = torch.utils.data.default_collate([task.train_dataset()[i] for i in range(2)])
    images = batch["image"]  # (2, 4, 3, 64, 64): query, positive, 2 negatives
    seen = []

    def darken(x):
        seen.append(x)
        return x * 0.25

    net = TaskNet(task, engine.model)
    loss, terms = task.darkened_loss(net, batch, darken)
    assert torch.equal(seen[0], images[:, 0])  # D darkens the queries
    tuples = torch.cat([images[:, :2], images[:, :1] * 0.25, images[:, 2:]], 1)
    desc = engine.model(tuples.flatten(0, 1)).view(2, 5, -1)
    expected = contrastive_loss(desc, torch.tensor([-1.0, 1, 1, 0, 0]), 0.85)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and terms["contrastive"] == loss.detach()
    assert tuple_labels(2, 2).tolist() == [-1, 1, 1, 0, 0]


def test_smoke_trains_and_mines_every_epoch(trees, tmp_path, mined):
    engine = Engine(load_recipe(RECIPE, overrides(trees, tmp_path)))
    groups = engine.optimizers["extractor"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3]) and groups[1]["params"] == [engine.model.pool.p]
    assert [g["weight_decay"] for g in groups] == [1e-6, 0.0]  # GeM's p: 10x LR and no weight decay (cirtorch)
    metrics = engine.fit()
    # day: 3 steps of 2 tuples, 4 queries an epoch -> epochs 0, 1; extractor likewise; D reads single images
    assert mined == ["day:0", "day:1", "extractor:0", "extractor:1"]
    assert set(metrics) == {"tokyo247/mAP", "tokyo247/R@1", "tokyo247/R@5", "tokyo247/R@10"}
    assert 0 <= metrics["tokyo247/mAP"] <= 100 and metrics["tokyo247/R@10"] == 100.0  # 12 images: all in the top 10
    assert (tmp_path / "run" / "darkening.png").is_file()


def test_resume_is_bitwise_and_keeps_the_mined_tuples(trees, tmp_path, mined):
    def make(folder):
        return Engine(load_recipe(RECIPE, overrides(trees, tmp_path / folder, "eval.every=0")))

    # checkpoints every 2 steps: the crash at step 7 resumes from step 6, the first step of the extractor's epoch 0
    reference, resumed = crash_and_resume(make, crash_at=7)
    assert_same_state(reference, resumed)
    assert mined[-1:] == ["extractor:1"] and mined.count("extractor:0") == 2  # not mined again on resume
    assert torch.equal(reference.adapter.train_dataset().tuples.negatives,
                       resumed.adapter.train_dataset().tuples.negatives)


def test_data_workers_read_each_epochs_tuples(trees, tmp_path):
    """With loader workers, every epoch gets a new loader (its workers copy the dataset with the new tuples)."""
    def run(folder, workers):
        engine = Engine(load_recipe(RECIPE, overrides(trees, tmp_path / folder, f"num_workers={workers}",
                                                      "players.darkener.steps=0", "players.extractor.steps=0",
                                                      "eval.every=0")))
        engine.fit()
        return engine

    assert_same_state(run("inline", 0), run("workers", 1))


# ------------------------------------------------------------------------------------------------- evaluation


def test_descriptors_are_cached_per_weights(trees, tmp_path):
    engine = Engine(load_recipe(RECIPE, overrides(trees, tmp_path)))
    first = engine.evaluate()
    cached = list((tmp_path / "cache" / "descriptors").glob("tokyo247_*.pt"))
    assert len(cached) == 1
    assert engine.evaluate() == first and len(list(cached[0].parent.glob("*.pt"))) == 1
    with torch.no_grad():
        engine.model.pool.p.add_(1.0)  # other weights: other descriptors, another cache file
    engine.evaluate()
    assert len(list(cached[0].parent.glob("tokyo247_*.pt"))) == 2


def test_whitening_is_learned_from_training_pairs(trees, tmp_path):
    engine = Engine(load_recipe(RECIPE, overrides(trees, tmp_path, "data.whitening=true",
                                                  "data.whitening_pairs=10")))
    metrics = engine.evaluate()
    assert list((tmp_path / "cache" / "descriptors").glob("whitening_*.pt"))
    assert 0 <= metrics["tokyo247/mAP"] <= 100


def test_predict_writes_matches_and_strips(trees, tmp_path, capsys):
    engine = Engine(load_recipe(RECIPE, overrides(trees, tmp_path, "players.darkener.steps=0",
                                                  "players.extractor.steps=0")))
    engine.fit()
    _, tokyo = trees
    queries = [str(tokyo / "jpg" / "q00000.jpg"), str(tokyo / "jpg" / "q00003.jpg")]
    sets = sum((["--set", o] for o in overrides(trees, tmp_path)), [])
    out = tmp_path / "pred"
    code = main(["predict", RECIPE, *queries, *sets, "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.pt"),
                 "--out", str(out), "--database", str(tokyo / "jpg"), "--top-k", "3"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "matches.csv")))
    assert [(r["query"], r["rank"]) for r in rows] == [(q, str(k)) for q in queries for k in (1, 2, 3)]
    scores = [float(r["score"]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True)
    assert (out / "q00000_matches.png").is_file() and (out / "q00003_matches.png").is_file()
    code = main(["predict", RECIPE, *queries, *sets, "--checkpoint", "x.pt", "--out", str(out), "--database",
                 str(tmp_path / "nowhere")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "nowhere: expected a folder of database images" in err


# ------------------------------------------------------------------------------------------------- distributed


@pytest.mark.distributed
def test_two_processes_match_one_process_with_twice_the_batch(trees, tmp_path):
    """2 processes × 1 tuple ≡ 1 process × 2 tuples: each process mines its share of the descriptors (gathered),
    batch norm is frozen, the loss is a mean over tuples; evaluation is sharded and gathered."""
    import json

    from test_distributed import launch, losses, ok, weights

    def sets(folder, batch):
        sfm, tokyo = trees
        fixed = ["darkener.exposure_range=[0.2, 0.2]", "darkener.compound.base=[0.1, 0.1]",
                 "darkener.compound.pixel_std=0", "darkener.compound.patch_std=0", "log.every=1"]
        return [f"data.train.root={sfm}", f"data.eval.tokyo247.root={tokyo}", f"data.cache_dir={folder / 'cache'}",
                *fixed, *(f"players.{p}.optimizer=sgd" for p in ("day", "darkener", "extractor")),
                f"players.day.batch_size={batch}", f"players.extractor.batch_size={batch}",
                f"players.darkener.batch_size={2 * batch}", "players.day.steps=1", "players.darkener.steps=1"]

    ok(launch(1, "vpr_smoke.yaml", tmp_path / "one", sets(tmp_path / "one", 2)))
    ok(launch(2, "vpr_smoke.yaml", tmp_path / "two", sets(tmp_path / "two", 1)))
    l1, l2 = losses(tmp_path / "one" / "run"), losses(tmp_path / "two" / "run")
    assert [s[:2] for s in l1] == [s[:2] for s in l2] and {k for _, k, _ in l1} == {"day", "darkener", "extractor"}
    for (step, kind, a), (_, _, b) in zip(l1, l2):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5), (step, kind)
    w1, w2 = weights(tmp_path / "one" / "ranks" / "rank0.pt"), weights(tmp_path / "two" / "ranks" / "rank0.pt")
    for name in w1:
        for key, value in w1[name].items():
            if value.is_floating_point():
                assert torch.allclose(value, w2[name][key], atol=1e-5, rtol=1e-4), f"{name}.{key}"
    m1 = json.loads((tmp_path / "one" / "run" / "eval.json").read_text())[-1]["metrics"]
    m2 = json.loads((tmp_path / "two" / "run" / "eval.json").read_text())[-1]["metrics"]
    assert m1.keys() == m2.keys() and all(m1[k] == pytest.approx(m2[k], abs=1e-3) for k in m1)


def test_adabn_re_estimates_batch_norm_that_train_keeps_frozen():
    from simmm.adabn import adabn
    from simmm.models.retrieval_net import RetrievalNet

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.BatchNorm2d(4))
    net.forward_features = net.forward
    net.num_features = 4
    model = RetrievalNet(net, freeze_bn=True, normalize=torch.nn.Identity())
    x = torch.rand(2, 3, 5, 5)
    adapted = adabn(model, [x])
    expected = net[0](x).mean(dim=(0, 2, 3))  # one batch: the statistics are its own
    assert torch.allclose(adapted.net[1].running_mean, expected, atol=1e-6)
    assert torch.equal(model.net[1].running_mean, torch.zeros(4))  # the model itself is untouched


def test_adabn_describes_queries_with_statistics_of_the_queries_only(trees, tmp_path):
    engine = Engine(load_recipe(RECIPE, overrides(trees, tmp_path, "data.adabn=true")))
    metrics = engine.evaluate()
    assert {"tokyo247/mAP_adabn", "tokyo247/R@1_adabn", "tokyo247/R@5_adabn", "tokyo247/R@10_adabn"} <= set(metrics)
    folder = tmp_path / "cache" / "descriptors"
    plain = lambda: sorted(p.name for p in folder.glob("tokyo247_*.pt") if "_adabn_" not in p.name)  # noqa: E731
    adapted = lambda: sorted(folder.glob("tokyo247_adabn_*.pt"))  # noqa: E731
    assert len(plain()) == 1 and len(adapted()) == 1
    assert torch.load(adapted()[0]).shape[0] == len(read_ground_truth(trees[1]).queries)  # queries only
    bns = [m for m in engine.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():  # other running statistics: other plain descriptors, but AdaBN replaces them all
        for m in bns:
            m.running_mean.add_(0.5)
            m.running_var.mul_(4.0)
    changed = engine.evaluate()
    assert len(plain()) == 2 and len(adapted()) == 1
    assert changed["tokyo247/mAP"] != metrics["tokyo247/mAP"] or changed["tokyo247/R@1"] != metrics["tokyo247/R@1"]
