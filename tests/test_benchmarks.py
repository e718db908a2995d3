"""The benchmarks' measuring helpers count what they claim (the benchmarks themselves are run by hand)."""
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from seg_memory import resident_bytes, transient_peak_bytes  # noqa: E402

MIB = 2**20
GIB = 2**30


def test_transient_peak_counts_a_temporary_and_a_kept_tensor():
    kept = []

    def step():
        a = torch.ones(4 * MIB // 4)  # 4 MiB, freed at the end of the step
        b = torch.ones(2 * MIB // 4)  # 2 MiB, kept
        kept.append(b)
        return float(a.sum())

    peak = transient_peak_bytes(step)
    assert 6 * MIB <= peak < 6.1 * MIB


def test_resident_bytes_counts_shared_storage_once():
    class Fake:
        optimizers = {}

        def __init__(self, modules):
            self._modules = modules

        def modules(self):
            return self._modules

    linear = torch.nn.Linear(256, 256)  # 65,792 float32 weights
    linear.weight.grad = torch.zeros_like(linear.weight)
    batch = torch.zeros(1024)
    engine = Fake({"model": linear, "alias": linear})
    assert resident_bytes(engine, [batch, batch[:10]]) == (2 * 256 * 256 + 256 + 1024) * 4


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_rss_peak_growth_sees_a_large_temporary():
    """A 64 MiB temporary shows as peak growth, measured as seg_memory.py's main measures: in a process whose C
    allocator hands freed blocks back (MALLOC_MMAP_THRESHOLD_). In the test process itself, memory freed by earlier
    tests may still be resident and serve the temporary unseen (seen: growth 0 in one order of the suite)."""
    import subprocess

    code = ("import torch; from seg_memory import rss_peak_growth_bytes; "
            "print(rss_peak_growth_bytes(lambda: float(torch.ones(64 * 2**20 // 4).add_(1).sum())))")
    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": benchmarks}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) >= 60 * MIB


SMALLEST = ("--backbone resnet18 --decoders pspnet --checkpointing off --time-backbone resnet18 --time-decoder pspnet "
            "--time-size 32 64 --source-size 32 64 --crop 32 64 --pair-size 32 64 --pair-crop 32 64 --resize 32 64 "
            "--steps 1 --warmup 0").split()


def test_dania_cost_runs_and_counts_the_dania_players_and_their_optimiser_state(tmp_path):
    """benchmarks/dania_cost.py in its smallest setting: both tables are written, and the DANIA iteration's resident
    memory holds, beyond the plain step's (the same model with its SGD momentum), R with its momentum and D_d, D_n
    with Adam's two moments — 4 bytes × (2·|R| + 3·2·|D|) — plus no more than a few MiB of batches and buffers."""
    from dania_cost import main

    from simmm.models import OutputDiscriminator, RelightNet

    result = main([*SMALLEST, "--out", str(tmp_path)])
    assert (tmp_path / "dania_cost_cpu_resnet18_b2.json").exists()
    assert "DANIA / plain" in (tmp_path / "dania_cost_cpu_resnet18_b2.txt").read_text()
    t = result["time"]
    assert t["iteration"] > t["plain"] > 0 and t["iteration_vs_plain"] > 1
    rows = result["memory"]["pspnet"]["plain_backward"]
    plain, dania = rows["plain"], rows["dania"]
    assert dania["transient_gib"] > plain["transient_gib"] > 0

    def count(module):
        return sum(p.numel() for p in module.parameters())

    players = 4 * (2 * count(RelightNet()) + 3 * 2 * count(OutputDiscriminator(19)))  # bytes, float32
    extra = (dania["resident_gib"] - plain["resident_gib"]) * GIB
    assert players <= extra <= players + 4 * MIB


def test_night_realism_flags_beyond_two_real_std_and_never_noise_mid(tmp_path):
    import json

    from night_realism import compare, main
    from simmm.night_stats import STATS, load_real_stats

    real = load_real_stats()["real_night"]["summary"]
    rows = [{k: (real[k]["circular_mean"] if k == "hue_deg" else real[k]["mean"]) for k in STATS} for _ in range(2)]
    rows[0]["mean_luma"] = rows[1]["mean_luma"] = real["mean_luma"]["mean"] + 2.5 * real["mean_luma"]["std"]
    rows[0]["p5"] = rows[1]["p5"] = real["p5"]["mean"] + 1.9 * real["p5"]["std"]
    rows[0]["noise_mid"] = rows[1]["noise_mid"] = real["noise_mid"]["mean"] + 10 * real["noise_mid"]["std"]
    res = compare(rows, real)
    assert res["z"]["mean_luma"] == pytest.approx(2.5) and res["z"]["p5"] == pytest.approx(1.9)
    assert res["flagged"] == ["mean_luma"]                       # noise_mid (z = 10) is never a verdict

    report = main(["--quick", "--photos", "astronaut", "--presets", "street", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "night_realism.json").read_text())
    assert saved["presets"]["street"]["z"] == pytest.approx(report["presets"]["street"]["z"])
    assert set(saved["presets"]["street"]["z"]) == set(STATS) and saved["max_side"] == 256
    assert "street" in (tmp_path / "night_realism.txt").read_text()


def test_step_speed_floors_do_what_they_claim(monkeypatch):
    """The darkener floor never runs D and back-propagates to its input only; the quick settings build and every
    step kind runs on them."""
    from types import SimpleNamespace

    import step_speed

    setting = SimpleNamespace(**step_speed.TASKS["classification"][2])
    engine = step_speed.classification(setting, ("darkener", "extractor"), 1.0)
    batch, steps = step_speed.step_functions(engine)
    assert set(steps) == {"darkener", "darkener_floor", "extractor", "extractor_floor"}
    darkener = engine.method.darkener
    monkeypatch.setattr(darkener, "forward", lambda *a, **k: pytest.fail("the darkener floor ran D"))
    seen = []
    real = engine.method.net.forward

    def spy(images, output=True):
        seen.append((images.requires_grad, torch.is_grad_enabled()))
        return real(images, output=output)

    monkeypatch.setattr(engine.method.net, "forward", spy)
    steps["darkener_floor"]()
    assert seen == [(False, False), (True, True)]  # F on I without grad, then F on an input that takes a gradient
    assert all(p.grad is None for p in engine.model.parameters())  # F is frozen in the darkener phase
    monkeypatch.undo()
    for name in ("darkener", "extractor", "extractor_floor"):
        steps[name]()


@pytest.mark.parametrize("task", ["place_recognition", "action"])
def test_step_speed_times_every_task(task):
    """Place recognition and action build at their quick settings and every step kind runs on the batches its
    player reads: mined tuples for F, single images for D (place recognition, whose adaptation step is its own
    floor), clips for both (action: the floor darkens a clip's frames)."""
    from types import SimpleNamespace

    import step_speed

    setting = SimpleNamespace(**step_speed.TASKS[task][2])
    engine = step_speed.TASKS[task][0](setting, ("darkener", "extractor"), 1.0)
    batches, steps = step_speed.step_functions(engine)
    floors = {"darkener_floor"} | ({"extractor_floor"} if task == "action" else set())
    assert set(steps) == {"darkener", "extractor"} | floors
    if task == "action":
        assert batches["extractor_floor"]["image"].dim() == 5
    else:
        assert batches["darkener"]["image"].dim() == 4 and batches["extractor"]["image"].dim() == 5  # tuples
    seen = {}
    real = engine.run_step

    def spy(player, player_batches):
        seen[player] = {stream: b["image"].dim() for stream, b in player_batches.items()}
        return real(player, player_batches)

    engine.run_step = spy
    for fn in steps.values():
        fn()
    want = 5 if task == "action" else 4  # D reads clips (action) or single images (place recognition)
    assert seen == {"darkener": {"darkener": want}, "extractor": {"extractor": 5}}


def test_proxy_claims_nothing_inside_the_seed_spread():
    """The proxies' verdict: better/worse only when every seed's paired difference with 'no adaptation' has one sign;
    its summary's mean ± std (sample std) and paired differences by hand."""
    from proxy import metric_keys, summarise, verdict

    assert verdict([0.4, 2.0, 0.1]) == "better" and verdict([-1.0, -0.2]) == "worse"
    assert verdict([3.0, -0.1, 5.0]) == "within seed spread" and verdict([0.0, 1.0]) == "within seed spread"
    assert verdict([9.0]) == "one seed: no claim"
    key = "night_dark/top1"
    per_seed = {s: {"no adaptation": {"metrics": {key: ref}, "seconds": 10.0},
                    "SMM": {"metrics": {key: smm}, "seconds": t}}
                for s, ref, smm, t in ((0, 10.0, 12.0, 30.0), (1, 20.0, 23.0, 50.0), (2, 30.0, 31.0, 40.0))}
    row = summarise(per_seed, [0, 1, 2], ["no adaptation", "SMM"], metric_keys(["night_dark"], ["top1"]))["SMM"]
    assert row[key]["mean"] == pytest.approx(22.0) and row[key]["std"] == pytest.approx(9.5394, abs=1e-4)
    assert row[key]["vs_no_adaptation"] == {"diffs": [2.0, 3.0, 1.0], "verdict": "better"}
    assert row["seconds"]["mean"] == pytest.approx(40.0) and row["seconds"]["std"] == pytest.approx(10.0)


def test_fast_path_rows_are_paired_with_the_full_darkener_seed_by_seed():
    """against(): per seed, the fast row's day score and its night mean (over the night sets) minus the full row's,
    without and with AdaBN; mean ± std and the verdict by hand."""
    from proxy import against, metric_keys, summarise

    sets = ["day_test", "night_a", "night_b"]

    def metrics(day, a, b, shift):
        return {"day_test/top1": day, "night_a/top1": a, "night_b/top1": b,
                "day_test/top1_adabn": day + shift, "night_a/top1_adabn": a + shift, "night_b/top1_adabn": b}

    per_seed = {0: {"SMM": {"metrics": metrics(50, 10, 20, 1), "seconds": 9.0},
                    "fast": {"metrics": metrics(52, 13, 21, 0), "seconds": 3.0}},
                1: {"SMM": {"metrics": metrics(60, 30, 10, 1), "seconds": 11.0},
                    "fast": {"metrics": metrics(59, 31, 12, 5), "seconds": 5.0}}}
    result = {"per_seed": per_seed, "seeds": [0, 1],
              "summary": summarise(per_seed, [0, 1], ["SMM", "fast"], metric_keys(sets, ["top1"]))}
    rows, text = against(result, "SMM", ["fast"], "top1", "day_test", sets[1:])
    row = rows["fast"]
    assert row["day"]["diffs"] == [2, -1] and row["day"]["verdict"] == "within seed spread"
    assert row["night mean"]["diffs"] == [2.0, 1.5] and row["night mean"]["verdict"] == "better"
    assert row["night mean"]["mean"] == pytest.approx(1.75)
    assert row["night mean"]["std"] == pytest.approx(0.35355, abs=1e-5)
    # with AdaBN: night_a shifted by 1 for SMM, 0 / 5 for the fast row -> (13 + 21) / 2 - (11 + 20) / 2 = 1.5, 3.5
    assert row["night mean (AdaBN)"]["diffs"] == [1.5, 3.5] and row["day (AdaBN)"]["diffs"] == [1, 3]
    assert row["seconds"]["mean"] == 4.0 and "+1.8 ± 0.4 ▲" in text


def test_a_cached_proxy_run_of_another_recipe_is_refused(tmp_path):
    """A cached run is reused only while its recipe is unchanged (output settings aside); the darkener's settings
    do not count for a run that gives the darkener no steps."""
    import json

    from proxy import measured

    from simmm.recipe import load_recipe, save_recipe

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"
    for name, base in (("smm", []), ("plain", ["players.darkener.steps=0"])):
        run = tmp_path / name
        overrides = base + [f"output_dir={run}"]
        save_recipe(load_recipe(recipe, overrides), run / "config.yaml")
        (run / "proxy_result.json").write_text(json.dumps({"metrics": {"a": 1.0}, "seconds": 2.0}))
        assert measured(recipe, overrides + ["log.every=3"], run)["metrics"] == {"a": 1.0}
        changed = overrides + ["darkener.weights.tv=7"]
        if name == "plain":
            assert measured(recipe, changed, run)["seconds"] == 2.0
        else:
            with pytest.raises(SystemExit, match=r"smm holds a cached run of another recipe "
                                                 r"\(changed: darkener.weights.tv\); delete that folder"):
                measured(recipe, changed, run)
        with pytest.raises(SystemExit, match=r"changed: players.extractor.lr"):
            measured(recipe, overrides + ["players.extractor.lr=0.5"], run)


@pytest.mark.parametrize("task", ["classification", "segmentation", "place_recognition", "action", "dania"])
def test_paper_protocol_plans_runs_that_are_valid_recipes(task, tmp_path):
    """Every run the paper protocol plans is a shipped recipe whose overrides validate; fine-tuned and evaluated
    methods start from this seed's day model, scratch methods from nothing; every published number names a method
    and a metric of the table."""
    from paper_protocol import PROTOCOLS, RECIPES, plan

    from simmm.recipe import load_recipe

    protocol = PROTOCOLS[task]
    runs = plan(protocol, 3, tmp_path / "seed3", ["num_workers=0"], list(protocol.methods))
    assert runs[0][0] == "day model" and len(runs) == len(protocol.methods) + 1
    day = str(tmp_path / "seed3" / "day" / "checkpoints" / "last.pt")
    for name, recipe, overrides, run, train in runs:
        loaded = load_recipe(RECIPES / recipe, overrides)
        assert loaded.seed == 3 and Path(loaded.output_dir) == run
        start = protocol.methods[name].start if name != "day model" else "day"
        assert (loaded.init == day) == (start in ("finetune", "eval")), name
        assert train == (start != "eval")
    for name, numbers in protocol.paper.items():
        assert name == "day model" or name in protocol.methods
        assert set(numbers) <= set(protocol.metrics)


def test_paper_protocol_runs_and_prints_the_papers_numbers_beside(tmp_path):
    """End to end on the tiny CODaN-format tree: per seed the day model, the equal-budget reference, SMM and an
    enhancer evaluated on the day model; the summary has mean ± std over the seeds and the paper's numbers."""
    from paper_protocol import main

    tiny = ["model.backbone=test_resnet", "data.image_size=32", "data.resize=40", "data.eval_resize=32",
            "num_workers=0", "log.progress=false", "log.tensorboard='off'", "eval.every=0", "eval.batch_size=16",
            "checkpoint.every=1000", "players.day.epochs=0", "players.day.steps=2", "players.day.batch_size=4",
            "darkener.width=8", "players.extractor.epochs=0", "players.extractor.steps=2",
            "players.extractor.batch_size=4"]
    args = ["classification", "--data", "codan=synthetic:codan", "--seeds", "0", "1", "--methods", "SMM", "CLAHE",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    # SMM's darkener phase: 2 steps (its recipe counts epochs; the reference's own overrides switch it off)
    result = main(args + sum((["--set", o] for o in tiny + ["players.darkener.epochs=0", "players.darkener.steps=2",
                                                             "players.darkener.batch_size=4"]), []))
    summary = result["summary"]
    assert list(summary) == ["day model", "no adaptation", "SMM", "CLAHE"]
    key = "night_test/top1"
    values = [result["per_seed"][s]["SMM"]["metrics"][key] for s in (0, 1)]
    assert summary["SMM"][key]["mean"] == pytest.approx(sum(values) / 2)
    assert "night_test/top1_adabn" in summary["day model"]
    assert result["paper"]["SMM"][key] == 65.87
    text = (tmp_path / "out" / "paper_classification.txt").read_text()
    assert "65.87" in text and "53.32" in text and (tmp_path / "out" / "paper_classification.png").exists()
    seed0 = tmp_path / "runs" / "classification" / "seed0"
    assert not (seed0 / "no_adaptation" / "darkening.png").exists()  # the reference trains no darkener
    assert (seed0 / "SMM" / "darkening.png").exists()


# ------------------------------------------------------------------------------------------------- vpr_proxy data

def _vpr():
    import vpr_places

    return vpr_places


def test_shot_cuts_are_the_frames_that_jump():
    vp = _vpr()
    frames = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    frames[4:] = 100   # a cut at 4 (mean difference 100)
    frames[7:] = 110   # a small change at 7 (10): not a cut
    frames[9] = 200    # a cut at 9
    assert vp.shot_cuts(frames, threshold=25) == [4, 9]


def test_shot_views_take_two_frames_of_one_shot():
    vp = _vpr()
    # shots [0, 30), [30, 33) (too short), [33, 100)
    assert vp.shot_views([30, 33], 100, gap=24) == [(1, 25), (34, 58)]
    assert vp.shot_views([], 10, gap=24) == [(1, 8)]  # at most the shot's last frame but one


def test_mixed_stream_takes_the_presets_in_turn():
    vp = _vpr()
    assert vp.mixed_presets(5) == ["street", "urban", "dark", "street", "urban"]


def test_disjointness_compares_files_and_videos():
    from simmm.errors import DataError

    vp = _vpr()
    vp.check_disjoint(["astronaut", "/a/apple.jpg"], ["graf1.png", "bikes.mp4"])
    with pytest.raises(DataError, match="apple.jpg"):
        vp.check_disjoint(["/x/apple.jpg"], ["/y/apple.jpg"])
    with pytest.raises(DataError, match="bikes.mp4"):
        vp.check_disjoint(["bikes.mp4#3"], ["bikes.mp4#200"])


@pytest.mark.skipif(not Path("/usr/share/doc/opencv-doc/examples/data/graf1.png").is_file(), reason="needs opencv-doc")
def test_training_and_test_places_are_disjoint():
    vp = _vpr()
    test = [s for place in vp.held_out_sources() for s in place]
    vp.check_disjoint(vp.train_sources(), test)
    names = {Path(s).name for s in vp.train_sources()}
    assert not names & {Path(s).name for s in test}
    assert len(vp.train_sources()) == 8 + len(vp.TRAIN_PHOTOS)


def _tiny_places(n):
    from PIL import Image

    return [{"name": f"p{i}", "source": [f"p{i}a.png", f"p{i}b.png"],
             "database": [Image.new("RGB", (32, 24), (40 * i, 100, 200))] * (1 + i % 2),
             "query": Image.new("RGB", (32, 24), (40 * i, 120, 180))} for i in range(n)]


def test_test_trees_are_in_the_retrieval_form_with_seeded_cached_nights(tmp_path, monkeypatch):
    from simmm.data.retrieval_db import read_ground_truth

    vp = _vpr()
    monkeypatch.setattr(vp, "held_out_places", lambda: _tiny_places(4))
    monkeypatch.setattr(vp, "TEST_DISTRACTORS", ())
    roots = vp.make_test_trees(tmp_path / "a", seed=3, side=32)
    assert list(roots) == ["day", "street", "urban", "dark", "mixed"]
    gts = {name: read_ground_truth(root, vp.GND) for name, root in roots.items()}
    gt = gts["day"]
    # database: p0 (1 image), p1 (2), p2 (1), p3 (2); ok = the place's own database images
    assert [p.name for p in gt.database] == ["p0_db0.jpg", "p1_db0.jpg", "p1_db1.jpg", "p2_db0.jpg", "p3_db0.jpg",
                                             "p3_db1.jpg"]
    assert [g["ok"] for g in gt.gnd] == [[0], [1, 2], [3], [4, 5]]
    assert all(g["gnd"] == gt.gnd for g in [{"gnd": x.gnd} for x in gts.values()])
    read = lambda path: path.read_bytes()  # noqa: E731
    for i, preset in enumerate(vp.mixed_presets(4)):  # the mixed stream's query i is preset i's night image
        assert read(gts["mixed"].queries[i]) == read(gts[preset].queries[i])
    assert read(gts["street"].queries[0]) != read(gts["urban"].queries[0]) != read(gt.queries[0])
    again = vp.make_test_trees(tmp_path / "b", seed=3, side=32)  # seeded: the same nights elsewhere
    assert read(read_ground_truth(again["dark"], vp.GND).queries[2]) == read(gts["dark"].queries[2])
    other = vp.make_test_trees(tmp_path / "c", seed=4, side=32)
    assert read(read_ground_truth(other["dark"], vp.GND).queries[2]) != read(gts["dark"].queries[2])
    monkeypatch.setattr(vp, "held_out_places", lambda: pytest.fail("built twice"))
    assert vp.make_test_trees(tmp_path / "a", seed=3, side=32) == roots  # cached


def test_train_tree_pairs_views_of_one_place_only(tmp_path, monkeypatch):
    from simmm.data.retrieval_db import read_sfm

    vp = _vpr()
    monkeypatch.setattr(vp, "train_sources", lambda: ["astronaut", "coffee"])
    monkeypatch.setattr(vp, "held_out_sources", lambda: [["graf1.png", "graf3.png"]])
    db = read_sfm(vp.make_train_tree(tmp_path / "train"), vp.SFM)
    n = vp.TRAIN_VIEWS
    assert db.clusters == [0] * n + [1] * n and all(p.is_file() for p in db.images)
    pairs = set(zip(db.qidxs, db.pidxs))
    assert len(pairs) == len(db.qidxs) == 2 * n * (n - 1)  # every ordered pair of views of one place, once
    assert all(db.clusters[q] == db.clusters[p] and q != p for q, p in pairs)
    monkeypatch.setattr(vp, "held_out_sources", lambda: [["coffee"]])  # a training photo in the test set: refused
    from simmm.errors import DataError

    with pytest.raises(DataError, match="coffee"):
        vp.make_train_tree(tmp_path / "other")


def test_vpr_proxy_methods_are_valid_recipes_with_equal_budgets(tmp_path):
    import argparse

    import vpr_proxy
    from simmm.recipe import load_recipe

    args = argparse.Namespace(eval_size=64, train_size=64, queries=8, lr=1e-4, scales=[1.0], day_steps=5,
                              darkener_steps=3, steps=7)
    tests = {name: tmp_path / name for name in ("day", "street", "urban", "dark", "mixed")}
    base = vpr_proxy.base_overrides(args, 0, tmp_path / "run", tmp_path / "train", tests)
    for name, method in vpr_proxy.METHODS.items():
        recipe = load_recipe(vpr_proxy.RECIPE, base + method.overrides)
        assert set(recipe.data.eval) == set(vpr_proxy.SETS) and recipe.data.adabn
        assert recipe.players["extractor"].steps == 7 and recipe.players["extractor"].lr == 1e-4, name
        assert recipe.players["day"].lr == 1e-4


@pytest.mark.parametrize("setting", ["photos", "fashion-mnist", "places"])
def test_darkener_terms_variants_train_the_darkener_alone_from_the_day_model(setting, tmp_path, monkeypatch):
    import darkener_terms as dt
    import vpr_proxy
    from simmm.recipe import load_recipe

    trees = {name: tmp_path / name for name in set(vpr_proxy.TREES.values())}
    monkeypatch.setattr(vpr_proxy, "data", lambda args, seed: (tmp_path / "train", trees))
    if setting == "photos":
        monkeypatch.setattr(dt.cls_proxy, "photos", lambda kind: ["astronaut", "coffee"])
    s = dt.Setting(setting)
    for maps, scale in (("full", 1.0), ("guided", 0.25)):
        for variant in dt.DEFAULT_VARIANTS[setting]:
            recipe = load_recipe(s.recipe, s.overrides(0, tmp_path / variant) + [f"init={tmp_path / 'day.pt'}"]
                                 + s.d_only + dt.MAPS[maps] + dt.VARIANTS[variant])
            steps = {name: player.steps for name, player in recipe.players.items()}
            assert steps["day"] == steps["extractor"] == 0 and steps["darkener"] > 0, (variant, steps)
            assert recipe.options.darkener.map_scale == scale and not recipe.data.adabn, variant
            assert str(recipe.init) == str(tmp_path / "day.pt")
            if setting != "places":  # the variant runs skip the night test sets ...
                assert not recipe.data.night_sim.presets and not recipe.data.night_sim.mixed
    if setting != "places":  # ... but a day model trained here is the proxy's own, night sets and all
        from proxy import DAY_ONLY

        day = load_recipe(s.recipe, s.overrides(0, tmp_path / "day") + DAY_ONLY)
        assert day.data.night_sim.presets and day.players["darkener"].steps == 0
    paper = load_recipe(s.recipe, s.overrides(0, tmp_path) + dt.VARIANTS["base"])
    assert paper.options.darkener.weights.tv == 1600
    assert dt.stem("photos", "full") == "darkener_terms"
    assert dt.stem(setting, "guided") == f"darkener_terms_{setting}_guided"
