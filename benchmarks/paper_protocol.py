"""The papers' protocols on the real data sets, every baseline beside SMM (or DANIA), the published numbers printed
beside the measured ones.

For a user who has the data (and a GPU): one command per task trains, per seed, the day model with the task's
baseline recipe, then every method from it with the recipes that ship (``recipes/``), and evaluates each as the
paper does. The methods and the equal budget are those of the proxies (``benchmarks/proxy.py``): ``no adaptation``
is the day model trained the same further steps as SMM's adaptation on two day views, the reference of every ▲/▼;
SMM's ablations and the fixed-darkening, night-augmentation, CIConv and enhance-then-recognise baselines are the
shipped recipes of that name; the enhancers are applied in front of the day model, as in the paper.

    PYTHONPATH=. python benchmarks/paper_protocol.py classification --data codan=data/CODaN
    PYTHONPATH=. python benchmarks/paper_protocol.py segmentation --data cityscapes=data/cityscapes \\
        --data nighttime_driving=data/nighttime_driving --data dark_zurich=data/dark_zurich
    PYTHONPATH=. python benchmarks/paper_protocol.py place_recognition --data sfm=data/retrieval-SfM-120k \\
        --data tokyo247=data/247tokyo1k
    PYTHONPATH=. python benchmarks/paper_protocol.py action --data normal_light=data/normal_light --data arid=data/ARID/raw
    PYTHONPATH=. python benchmarks/paper_protocol.py dania --data cityscapes=data/cityscapes \\
        --data nighttime_driving=data/nighttime_driving --data dark_zurich=data/dark_zurich
    ... --dry-run                  # the runs it would make (recipe and overrides) and the papers' numbers, no training
    ... --set num_workers=8        # any recipe override, applied to every run (before the method's own)

Runs go to ``--runs/<task>/seed<N>/<method>`` and are cached: a finished run is not trained again, an interrupted one
resumes from its last checkpoint. Writes ``results/paper_<task>.json|txt|png``. Segmentation has no proxy here (no
labelled real segmentation data ships offline): this script is its only benchmark, and it needs the data.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import REFERENCE, Method, last_checkpoint, mark, measured, run_dir, summarise, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
NO_DARKENER = ["players.darkener.steps=0", "players.darkener.epochs=0"]
NO_ADAPTATION = NO_DARKENER + ["adapt.darkening=none", "adapt.byol_weight=0"]


@dataclass
class Protocol:
    """One paper's table: the day recipe (and its overrides), each method's recipe and how it starts (``Method``:
    ``finetune`` from the day model, ``scratch``, ``eval`` = the day model evaluated with the recipe's test-time
    settings), the data roots a ``--data NAME=PATH`` sets (recipe keys), the metric keys of the table, and the
    published numbers (method → key → value) with where they come from."""

    day: str
    methods: dict
    data: dict
    metrics: list
    paper: dict
    source: str
    day_overrides: list = field(default_factory=list)
    notes: str = ""


def m(start: str, recipe: str, *overrides: str, note: str = "") -> Method:
    return Method(start, list(overrides), note, recipe)


PSPNET = ["model.decoder=pspnet", "model.output_stride=8", "model.pretrained=timm"]
DANIA_ON_SOURCE = [*PSPNET, "players.day.epochs=0", "players.day.steps=50000", "players.day.batch_size=2",
                   "players.day.lr=2.5e-4", "players.day.weight_decay=5.0e-4", "players.day.lr_schedule=poly",
                   "data.train.size=[1024, 2048]", "data.crop=[512, 512]", "data.scale=[0.5, 1.0]", "data.blur=0",
                   "data.cutout=0", "data.color_jitter=0"]
SEGMENTATION_DATA = {"cityscapes": ["data.train.root", "data.eval.cs_val.root"],
                     "nighttime_driving": ["data.eval.nd_test.root"], "dark_zurich": ["data.eval.dz_val.root"]}

PROTOCOLS = {
    "classification": Protocol(
        day="cls_codan_baseline.yaml",
        methods={
            REFERENCE: m("finetune", "cls_codan.yaml", *NO_ADAPTATION, note="SMM's adaptation budget, day views"),
            "SMM": m("finetune", "cls_codan.yaml"),
            "brightness": m("finetune", "cls_codan_fixed_brightness.yaml"),
            "gamma": m("finetune", "cls_codan_fixed_gamma.yaml"),
            "no L_D^sim": m("finetune", "cls_codan_no_dsim.yaml"),
            "no L_F^sim": m("finetune", "cls_codan_no_fsim.yaml"),
            "alternating": m("finetune", "cls_codan_alternating.yaml"),
            "night aug.": m("finetune", "cls_codan_night_aug.yaml"),
            "CIConv": m("scratch", "cls_codan_ciconv.yaml", note="the authors' optimiser, from scratch"),
            "Zero-DCE": m("eval", "cls_codan_zero_dce.yaml", note="neuro-low-light's Zero-DCE (paper: Zero-DCE++)"),
            "CLAHE": m("eval", "cls_codan_clahe.yaml"),
        },
        data={"codan": ["data.root"]},
        metrics=["night_test/top1", "night_test/top1_adabn", "day_test/top1"],
        paper={"day model": {"night_test/top1": 53.32, "night_test/top1_adabn": 54.25},
               "SMM": {"night_test/top1": 65.87}, "CIConv": {"night_test/top1": 60.32},
               "Zero-DCE": {"night_test/top1": 57.96}, "brightness": {"night_test/top1": 57.96},
               "gamma": {"night_test/top1": 63.96}, "no L_D^sim": {"night_test/top1": 64.56},
               "no L_F^sim": {"night_test/top1": 64.88}, "alternating": {"night_test/top1": 63.84}},
        source="SMM paper, CODaN night test, ResNet-18 (the Zero-DCE row is the paper's Zero-DCE++)"),
    "segmentation": Protocol(
        day="seg_cityscapes_baseline.yaml",
        methods={
            REFERENCE: m("finetune", "seg_darkzurich.yaml", *NO_ADAPTATION, note="SMM's adaptation budget"),
            "SMM": m("finetune", "seg_darkzurich.yaml"),
            "night aug.": m("finetune", "seg_darkzurich_night_aug.yaml"),
            "CIConv": m("scratch", "seg_cityscapes_ciconv.yaml"),
            "Zero-DCE": m("eval", "seg_cityscapes_zero_dce.yaml"),
        },
        data=SEGMENTATION_DATA,
        metrics=["nd_test/mIoU", "nd_test/mIoU_adabn", "dz_val/mIoU", "dz_val/mIoU_adabn", "cs_val/mIoU"],
        paper={"day model": {"nd_test/mIoU": 34.3, "dz_val/mIoU": 30.6}, "SMM": {"nd_test/mIoU": 44.9,
               "dz_val/mIoU": 40.2}, "CIConv": {"nd_test/mIoU": 41.2, "dz_val/mIoU": 34.5}},
        source="SMM paper, RefineNet (ResNet-101); its Dark Zurich column is the paper's Dark Zurich number, "
               "measured here on Dark Zurich val (the test labels are hidden: export with simmm predict)"),
    "place_recognition": Protocol(
        day="vpr_tokyo247_baseline.yaml",
        methods={
            REFERENCE: m("finetune", "vpr_tokyo247.yaml", *NO_ADAPTATION, note="SMM's adaptation budget"),
            "SMM": m("finetune", "vpr_tokyo247.yaml"),
            "night aug.": m("finetune", "vpr_tokyo247_night_aug.yaml"),
            "CIConv": m("scratch", "vpr_tokyo247_ciconv.yaml"),
            "Zero-DCE": m("eval", "vpr_tokyo247_zero_dce.yaml"),
        },
        data={"sfm": ["data.train.root"], "tokyo247": ["data.eval.tokyo247.root"]},
        metrics=["tokyo247/mAP", "tokyo247/mAP_adabn", "tokyo247/R@1", "tokyo247/R@5", "tokyo247/R@10"],
        paper={"day model": {"tokyo247/mAP": 85.0}, "SMM": {"tokyo247/mAP": 90.4}, "CIConv": {"tokyo247/mAP": 88.3}},
        source="SMM paper, Table 4, GeM ResNet-101 (CIConv: the CIConv paper's W-ResNet-101 GeM)"),
    "action": Protocol(
        day="act_arid_baseline.yaml",
        methods={
            REFERENCE: m("finetune", "act_arid.yaml", *NO_ADAPTATION, note="SMM's adaptation budget"),
            "SMM": m("finetune", "act_arid.yaml"),
            "night aug.": m("finetune", "act_arid_night_aug.yaml"),
            "CIConv": m("scratch", "act_arid_ciconv.yaml"),
            "Zero-DCE": m("eval", "act_arid_zero_dce.yaml"),
        },
        data={"normal_light": ["data.train.root"], "arid": ["data.eval.arid_test.root"]},
        metrics=["arid_test/top1", "arid_test/top1_adabn", "arid_test/top5"],
        paper={"day model": {"arid_test/top1": 47.02}, "SMM": {"arid_test/top1": 51.52}},
        source="SMM paper, I3D on ARID test (20 clips per video)"),
    "dania": Protocol(
        day="seg_cityscapes_baseline.yaml",
        day_overrides=PSPNET,
        methods={
            REFERENCE: m("finetune", "seg_cityscapes_baseline.yaml", *DANIA_ON_SOURCE,
                         note="the PSPNet trained DANIA's 50k iterations more on Cityscapes alone, DANIA's optimiser"),
            "DANIA": m("finetune", "dania_darkzurich.yaml"),
        },
        data={**SEGMENTATION_DATA, "dark_zurich": ["data.eval.dz_val.root", "dania.pairs.root"]},
        metrics=["nd_test/mIoU", "dz_val/mIoU"],
        paper={"DANIA": {"nd_test/mIoU": 48.38, "dz_val/mIoU": 38.14}},
        source="DANIA paper, PSPNet: Nighttime Driving test 48.38; Dark Zurich val 38.14 (its ablation table's full "
               "model; the test-set 47.0 needs the benchmark server)"),
}


def for_recipe(recipe: str, overrides: list) -> list:
    """``overrides`` without the ``dania.`` keys when ``recipe`` does not run DANIA (its pairs' root is data only
    the DANIA run reads)."""
    from simmm.recipe import read_recipe_dict

    if read_recipe_dict(RECIPES / recipe).get("method") == "dania":
        return overrides
    return [o for o in overrides if not o.startswith("dania.")]


def plan(protocol: Protocol, seed: int, seed_dir: Path, common: list, names: list) -> list:
    """``(name, recipe, overrides, run, train)`` of every run of one seed, the day model first."""
    day_dir = seed_dir / "day"
    runs = [("day model", protocol.day, [f"seed={seed}", f"output_dir={day_dir}", *protocol.day_overrides,
                                         *for_recipe(protocol.day, common)], day_dir, True)]
    day = last_checkpoint(day_dir)
    for name in names:
        method = protocol.methods[name]
        run = run_dir(seed_dir, name)
        start = {"finetune": [f"init={day}"], "scratch": [], "eval": [f"init={day}"]}[method.start]
        base = [f"seed={seed}", f"output_dir={run}", *for_recipe(method.recipe, common), *start]
        if method.start == "eval":
            base += protocol.day_overrides
        runs.append((name, method.recipe, base + method.overrides, run, method.start != "eval"))
    return runs


def data_overrides(protocol: Protocol, given: list) -> list:
    overrides = []
    for item in given:
        name, sep, path = item.partition("=")
        if not sep or name not in protocol.data:
            raise SystemExit(f"--data {item!r}: expected NAME=PATH with NAME one of {', '.join(protocol.data)}")
        overrides += [f"{key}={path}" for key in protocol.data[name]]
    return overrides


def render(protocol: Protocol, summary: dict, seeds: list, title: str) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=220, record=True)
    table = Table(title=f"{title}: measured mean ± std over seeds {seeds} | the paper's number")
    table.add_column("method")
    for key in protocol.metrics:
        table.add_column(key, justify="right")
        table.add_column("paper", justify="right")
    table.add_column("s / run", justify="right")
    for name, row in summary.items():
        cells = []
        for key in protocol.metrics:
            cell = row.get(key)
            cells.append("—" if cell is None else f"{cell['mean']:.2f} ± {cell['std']:.2f}{mark(cell)}")
            published = protocol.paper.get(name, {}).get(key)
            cells.append("" if published is None else f"{published:.2f}")
        table.add_row(name, *cells, f"{row['seconds']['mean']:.0f}")
    console.print(table)
    console.print(f"paper: {protocol.source}. ▲ / ▼: better / worse than '{REFERENCE}' on every seed (paired); "
                  "unmarked: within the seed spread.")
    return console.export_text()


def plot(protocol: Protocol, summary: dict, path: Path, title: str) -> None:
    """Measured bars (std as error bars) with the paper's number as a marker, per method, for the first metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = protocol.metrics[0]
    names = [n for n in summary if key in summary[n]]
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.8))
    ax.bar(range(len(names)), [summary[n][key]["mean"] for n in names],
           yerr=[summary[n][key]["std"] for n in names], capsize=3, label="measured")
    published = [(i, protocol.paper[n][key]) for i, n in enumerate(names) if key in protocol.paper.get(n, {})]
    if published:
        ax.scatter(*zip(*published), color="black", marker="_", s=400, label="paper", zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(key)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=list(PROTOCOLS))
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="a data set's root (default: the recipes' data/... paths)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", metavar="METHOD", help="default: all of the task's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a recipe override for every run (before each method's own)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and the papers' numbers, train nothing")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "paper"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    protocol = PROTOCOLS[args.task]
    names = args.methods or list(protocol.methods)
    unknown = [n for n in names if n not in protocol.methods]
    if unknown:
        raise SystemExit(f"--methods: {unknown[0]!r} is not a {args.task} method; expected some of "
                         f"{', '.join(protocol.methods)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    common = data_overrides(protocol, args.data) + args.overrides
    plans = {seed: plan(protocol, seed, Path(args.runs) / args.task / f"seed{seed}", common, names)
             for seed in args.seeds}
    if args.dry_run:
        for seed, runs in plans.items():
            for name, recipe, overrides, run, train in runs:
                command = f"simmm train recipes/{recipe}" if train else \
                    f"simmm eval recipes/{recipe} --checkpoint {last_checkpoint(runs[0][3])}"
                print(f"seed {seed} · {name}: {command} " + " ".join(f"--set {shlex.quote(o)}" for o in overrides))
        print(json.dumps({"paper": protocol.paper, "source": protocol.source}, indent=1))
        return {"plans": plans}
    start = time.perf_counter()
    per_seed = {seed: {name: measured(RECIPES / recipe, overrides, run, train=train)
                       for name, recipe, overrides, run, train in runs} for seed, runs in plans.items()}
    methods = ["day model"] + names
    summary = summarise(per_seed, args.seeds, methods, protocol.metrics)
    title = f"{args.task}: the paper's protocol"
    text = render(protocol, summary, args.seeds, title)
    print(text)
    result = {"task": args.task, "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "data": args.data,
              "overrides": args.overrides, "paper": protocol.paper, "paper_source": protocol.source,
              "per_seed": per_seed, "summary": summary, "wall_seconds": time.perf_counter() - start}
    out = Path(args.out)
    write_results(out, f"paper_{args.task}", result, text)
    plot(protocol, summary, out / f"paper_{args.task}.png", title)
    return result


if __name__ == "__main__":
    main()
