"""Distributed training with torchrun on CPU (gloo), 2 processes: the same run as one process with twice the batch,
exact resume, identical EMA targets on every rank, and a crashing rank that ends the run with a clear message.

The equivalence needs the same *samples* and the same *draws*: each process draws its own augmentation, so these
runs switch random augmentation off (crop scale 1, no flip, jitter, blur or cutout; one exposure), and use
``sync_bn: true`` (batch statistics over both processes' samples, as one process sees them).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import make_folder_dataset
from seg_fixtures import make_cityscapes_tree, make_darkzurich_tree

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "ddp_driver.py"

DETERMINISTIC = ["sync_bn=true", "darkener.exposure_range=[0.2, 0.2]", "darkener.compound.base=[0.1, 0.1]",
                 "darkener.compound.pixel_std=0", "darkener.compound.patch_std=0", "data.color_jitter=0",
                 "data.hflip=false", "log.every=1", "checkpoint.every=1"]


def cls_overrides(tmp_path, batch):
    codan = make_folder_dataset(tmp_path / "codan")
    return [f"data.root={codan}", f"data.cache_dir={tmp_path / 'cache'}", "data.crop_scale=[1.0, 1.0]",
            "data.adabn=false", *DETERMINISTIC,
            *(f"players.{p}.batch_size={batch}" for p in ("day", "darkener", "extractor"))]


def seg_overrides(tmp_path, batch):
    cs, dz = make_cityscapes_tree(tmp_path / "cityscapes"), make_darkzurich_tree(tmp_path / "dark_zurich")
    return [f"data.train.root={cs}", f"data.eval.cs_val.root={cs}", f"data.eval.dz_val.root={dz}",
            "data.scale=[1.0, 1.0]", "data.blur=0", "data.cutout=0", *DETERMINISTIC,
            # 32x64 crops: the last stage still has 2x2 positions, so its batch statistics are not those of 2 values
            "data.train.size=[32, 64]", "data.crop=[32, 64]",
            *(f"players.{p}.batch_size={batch}" for p in ("day", "darkener", "extractor"))]


def act_overrides(tmp_path, batch):
    from simmm.data.synthetic import make_arid_tree

    arid = make_arid_tree(tmp_path / "arid")
    # clips from the middle of each video, fitted to the crop: no random start, scale or crop; 64x64 frames: the last
    # stage keeps 2x2 positions (batch statistics of more than 2 values, as in seg_overrides)
    return [f"data.train.root={arid}", f"data.eval.arid_test.root={arid}", "data.random_start=false",
            "data.load_size=[64, 64]", "data.scale=[64, 64]", "data.crop=64", *DETERMINISTIC,
            *(f"players.{p}.batch_size={batch}" for p in ("day", "darkener", "extractor"))]


def launch(nproc, recipe, out, overrides, *extra, timeout=240):
    """Run the driver under torchrun (or plainly for one process); returns the finished process."""
    # this checkout's simmm first (a script's folder, not the working directory, heads sys.path), then the driver's
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(DRIVER.parent)])}
    sets = [a for o in [*overrides, f"output_dir={out / 'run'}"] for a in ("--set", o)]
    args = [str(DRIVER), str(ROOT / "recipes" / recipe), "--out", str(out / "ranks"), *sets, *extra]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def losses(run_dir):
    import csv

    with open(run_dir / "metrics.csv") as handle:
        return [(r["step"], r["kind"], float(r["loss"])) for r in csv.DictReader(handle) if r["kind"] != "eval"]


def weights(path):
    return torch.load(path, weights_only=True)


def assert_close_states(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        for key, value in a[name].items():
            other = b[name][key]
            if value.is_floating_point():
                assert torch.allclose(value, other, atol=atol, rtol=1e-4), f"{name}.{key}"
            else:
                assert torch.equal(value, other), f"{name}.{key}"


# Adam divides each step by the gradient's running RMS, so a weight whose gradient is float noise (~1e-9) moves by
# ±lr whichever way the noise falls: the two runs' sums, reduced in another order, would part by a few lr. SGD
# moves such a weight by lr × noise, so "the same final weights" can be checked tightly.
SGD = [f"players.{p}.optimizer=sgd" for p in ("day", "darkener", "extractor")]


@pytest.mark.parametrize("recipe,overrides", [("cls_smoke.yaml", cls_overrides), ("seg_smoke.yaml", seg_overrides),
                                              ("act_smoke.yaml", act_overrides)])
def test_two_processes_match_one_process_with_twice_the_batch(tmp_path, recipe, overrides):
    b = 1 if recipe.startswith("seg") else 2
    ok(launch(1, recipe, tmp_path / "one", overrides(tmp_path, 2 * b) + SGD))
    ok(launch(2, recipe, tmp_path / "two", overrides(tmp_path, b) + SGD))
    l1, l2 = losses(tmp_path / "one" / "run"), losses(tmp_path / "two" / "run")
    assert [s[:2] for s in l1] == [s[:2] for s in l2]
    assert {kind for _, kind, _ in l1} == {"day", "darkener", "extractor"}
    for (step, kind, a), (_, _, b) in zip(l1, l2):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5), (step, kind)
    # float rounding differs (sums in another order); batch norm over the 2 samples of a BYOL head's batch
    # amplifies it in the segmentation run's statistics to about 1e-4
    assert_close_states(weights(tmp_path / "one" / "ranks" / "rank0.pt"),
                        weights(tmp_path / "two" / "ranks" / "rank0.pt"), atol=1e-5 if b == 2 else 2e-4)
    # evaluation: each process scored its share of every set (odd sizes included); the reduced metrics agree
    import json

    m1 = json.loads((tmp_path / "one" / "run" / "eval.json").read_text())[-1]["metrics"]
    m2 = json.loads((tmp_path / "two" / "run" / "eval.json").read_text())[-1]["metrics"]
    assert m1.keys() == m2.keys()
    for key in m1:
        assert m1[key] == pytest.approx(m2[key], abs=1e-3, nan_ok=True), key


def test_every_rank_holds_the_same_weights_and_targets(tmp_path):
    ok(launch(2, "cls_smoke.yaml", tmp_path, cls_overrides(tmp_path, 2)))
    r0, r1 = weights(tmp_path / "ranks" / "rank0.pt"), weights(tmp_path / "ranks" / "rank1.pt")
    assert {"model", "target", "byol", "darkener"} <= set(r0)
    for name in r0:  # the EMA target (never wrapped) included: bitwise equal on both ranks
        for key in r0[name]:
            assert torch.equal(r0[name][key], r1[name][key]), f"{name}.{key}"


def test_interrupted_two_process_run_resumes_bitwise(tmp_path):
    overrides = cls_overrides(tmp_path, 2) + ["data.crop_scale=[0.5, 1.0]", "data.hflip=true"]  # random again
    ok(launch(2, "cls_smoke.yaml", tmp_path / "ref", overrides))
    crashed = launch(2, "cls_smoke.yaml", tmp_path / "b", overrides, "--crash-at", "5")
    assert crashed.returncode != 0 and "planted crash" in crashed.stderr + crashed.stdout
    ok(launch(2, "cls_smoke.yaml", tmp_path / "b", overrides, "--resume"))
    ref, got = weights(tmp_path / "ref" / "ranks" / "rank0.pt"), weights(tmp_path / "b" / "ranks" / "rank0.pt")
    for name in ref:
        for key in ref[name]:
            assert torch.equal(ref[name][key], got[name][key]), f"{name}.{key}"


def test_a_crashing_rank_ends_the_run_with_a_clear_message(tmp_path):
    start = time.monotonic()
    proc = launch(2, "cls_smoke.yaml", tmp_path, cls_overrides(tmp_path, 2), "--crash-at", "3", "--crash-rank", "1",
                  timeout=180)
    assert proc.returncode != 0
    assert time.monotonic() - start < 150  # ended, not hung
    text = proc.stdout + proc.stderr
    assert "planted crash on rank 1 at step 3" in text
    # the last checkpoint written before the crash is whole
    from simmm.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] >= 2


def test_cli_under_torchrun(tmp_path):
    """`torchrun --nproc_per_node 2 -m simmm train RECIPE` as the README writes it."""
    codan = make_folder_dataset(tmp_path / "codan")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "simmm",
           "train", "recipes/cls_smoke.yaml", "--set", f"data.root={codan}", "--set",
           f"output_dir={tmp_path / 'run'}", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    proc = ok(subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240))
    assert (tmp_path / "run" / "report.json").exists() and (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert proc.stdout.count("cls_smoke: evaluation") == 1  # rank 0 reports, once



def dania_overrides(tmp_path, batch):
    """recipes/dania_smoke.yaml on fresh trees, every random draw of both streams switched off (the source at scale 1,
    no flip, blur or cutout; each pair loaded at 32x64 and cropped and resized to 32x64 at scale 1, no flip). One
    source label is two-thirds ignore: the processes' shares hold different numbers of labelled pixels."""
    from simmm.data.synthetic import label_pattern, write_label, SAMPLE_LABEL_IDS

    cs, dz = make_cityscapes_tree(tmp_path / "cityscapes"), make_darkzurich_tree(tmp_path / "dark_zurich")
    label = label_pattern(SAMPLE_LABEL_IDS, seed=0)
    label[: 2 * label.shape[0] // 3] = 0  # id 0: unlabeled -> ignore
    write_label(cs / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", label)
    return [f"data.train.root={cs}", f"data.eval.dz_val.root={dz}", f"dania.pairs.root={dz}",
            f"dania.eval_with_day.dz_val.root={dz}",
            f"dania.align.cache_dir={tmp_path / 'align'}", "sync_bn=true", "log.every=1", "checkpoint.every=1",
            "data.scale=[1.0, 1.0]", "data.blur=0", "data.cutout=0", "data.hflip=false", "data.color_jitter=0",
            "data.train.size=[32, 64]", "data.crop=[32, 64]", "dania.pairs.size=[32, 64]",
            "dania.pairs.crop=[32, 64]", "dania.pairs.resize=[32, 64]", "dania.pairs.scale=[1.0, 1.0]",
            "dania.pairs.hflip=false", "players.generator.steps=4",
            *(f"players.{p}.batch_size={batch}" for p in ("generator", "discriminators"))]


def logged_terms(run_dir):
    """Every logged training value by (step, player, term): the loss and each term of it."""
    import csv

    with open(run_dir / "metrics.csv") as handle:
        return {(r["step"], r["kind"], k): float(v) for r in csv.DictReader(handle) if r["kind"] != "eval"
                for k, v in r.items() if k not in ("step", "kind", "lr") and v != ""}


def test_dania_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    """Each loss term of DANIA that is a mean over a batch-dependent count (the labelled source pixels of L_seg, the
    accepted night pixels of L_static) or a batch statistic (E, the night mean of the exposure loss) is taken over
    the whole batch of both processes, as one process sees it: the logged terms agree to the 6 digits the log keeps
    (a per-process mean is off by 0.4% in L_static), the weights to float rounding (measured: ≤ 1e-8 for weights,
    ≤ 1e-6 for batch-norm running statistics; a per-process mean moves R's weights by ~2e-5 in 4 steps)."""
    sgd = ["players.discriminators.optimizer=sgd", "players.discriminators.lr=1e-3"]  # see SGD above
    ok(launch(1, "dania_smoke.yaml", tmp_path / "one", dania_overrides(tmp_path, 2) + sgd))
    ok(launch(2, "dania_smoke.yaml", tmp_path / "two", dania_overrides(tmp_path, 1) + sgd))
    t1, t2 = logged_terms(tmp_path / "one" / "run"), logged_terms(tmp_path / "two" / "run")
    assert t1.keys() == t2.keys()
    assert {k[2] for k in t1} == {"loss", "light", "seg", "static", "adv", "d_day", "d_night"}
    for key, value in t1.items():
        assert value == pytest.approx(t2[key], rel=1e-5, abs=1e-6), key
    assert_close_states(weights(tmp_path / "one" / "ranks" / "rank0.pt"),
                        weights(tmp_path / "two" / "ranks" / "rank0.pt"), atol=1e-6)
    import json

    m1 = json.loads((tmp_path / "one" / "run" / "eval.json").read_text())[-1]["metrics"]
    m2 = json.loads((tmp_path / "two" / "run" / "eval.json").read_text())[-1]["metrics"]
    assert m1.keys() == m2.keys() and "dz_val/mIoU" in m1
    for key in m1:
        assert m1[key] == pytest.approx(m2[key], abs=1e-3, nan_ok=True), key


def test_interrupted_two_process_dania_run_resumes_bitwise(tmp_path):
    overrides = dania_overrides(tmp_path, 1) + ["data.scale=[0.5, 1.0]", "data.hflip=true",  # random again
                                                "dania.pairs.scale=[0.9, 1.1]", "dania.pairs.hflip=true",
                                                "dania.pairs.crop=[24, 48]"]
    ok(launch(2, "dania_smoke.yaml", tmp_path / "ref", overrides))
    crashed = launch(2, "dania_smoke.yaml", tmp_path / "b", overrides, "--crash-at", "2")
    assert crashed.returncode != 0 and "planted crash" in crashed.stderr + crashed.stdout
    ok(launch(2, "dania_smoke.yaml", tmp_path / "b", overrides, "--resume"))
    for rank in ("rank0.pt", "rank1.pt"):
        ref, got = weights(tmp_path / "ref" / "ranks" / rank), weights(tmp_path / "b" / "ranks" / rank)
        assert set(ref) == {"model", "relight", "disc_day", "disc_night"}
        for name in ref:
            for key in ref[name]:
                assert torch.equal(ref[name][key], got[name][key]), f"{rank} {name}.{key}"
    assert logged_terms(tmp_path / "ref" / "run") == logged_terms(tmp_path / "b" / "run")
