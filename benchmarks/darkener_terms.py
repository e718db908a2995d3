"""Which of the darkener's settings keeps D from following its exposure input (issue 10 §2).

The darkener phase alone (nothing else trained), from a proxy's day model, once per variant that changes one
setting; for each, the mean brightness of D(I, E) on the proxy's held-out day images at E = 0.05, 0.1, 0.2, 0.35
(``simmm.darkening.exposure_response``, the ``darkener_exposure.json`` every SMM run writes) and the largest
|brightness − E|. The target: within 0.05 at every E.

``--setting`` picks the proxy, with its own darkener settings as the base every variant changes:

- ``photos`` — the classification proxy (22 photos, 64-px crops; ``recipes/demo.yaml``'s darkener), its variants
  from the paper's tent-TV weight (:data:`PAPER_TV`: the shipped recipe runs a smaller one, chosen here);
- ``fashion-mnist`` — the classification proxy on Fashion-MNIST (32 px, grey clothes on black);
- ``places`` — the place-recognition proxy (128-px training tuples, its darkener: ``vpr_proxy.DARKENER``).

``--maps full`` (default) is the authors' full-resolution module, ``--maps guided`` simmm's default fast path
(quarter-resolution maps, guided upsampling). Over several ``--seeds`` a row gives the mean brightness and the max
|error| as mean ± std.

    PYTHONPATH=. python benchmarks/darkener_terms.py                      # every photo variant (~2 min each, 2 cores)
    PYTHONPATH=. python benchmarks/darkener_terms.py --variants base tv0
    PYTHONPATH=. python benchmarks/darkener_terms.py --setting places --maps guided --variants shipped l2 --seeds 0 1 2

The day model is the proxy's own (``runs/<proxy>/full/seed<N>/day``; trained here when missing). Runs are cached
under ``--runs``. Writes ``results/darkener_terms.json|txt`` (photos, full maps) or
``results/darkener_terms_<setting>_<maps>.json|txt``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cls_proxy  # noqa: E402
import vpr_proxy  # noqa: E402
from proxy import FAST_MAPS, FULL_MAPS, day_run, last_checkpoint, measured, spread  # noqa: E402
from simmm.weights import OFFLINE_ARCH  # noqa: E402

ROOT = cls_proxy.ROOT
PAPER_TV = ["darkener.weights.tv=1600"]
"""The photo variants start from the paper's tent-TV weight and change one setting."""
VARIANTS = {
    "base": PAPER_TV,
    "steps900": PAPER_TV + ["players.darkener.steps=900"],
    "exp50": PAPER_TV + ["darkener.weights.exposure=50"],
    "flex0": PAPER_TV + ["darkener.weights.flex=0"],
    "color0": PAPER_TV + ["darkener.weights.color=0"],
    "tv0": ["darkener.weights.tv=0"],
    "tv400": ["darkener.weights.tv=400"],
    "tv160": ["darkener.weights.tv=160"],
    "tv100": ["darkener.weights.tv=100"],
    "tv50": ["darkener.weights.tv=50"],
    # from the setting's own darkener (the shipped one)
    "shipped": [],
    "l1": ["darkener.exposure_norm=l1"],
    "l2": ["darkener.exposure_norm=l2"],
    "steps600": ["players.darkener.steps=600"],
    "steps100": ["players.darkener.steps=100"],
    "batch64": ["players.darkener.batch_size=64"],
    # L_exp on one patch the size of the image (32 px): its mean brightness, the quantity E asks for
    "patch32": ["darkener.exposure_patch=32"],
    # classification only: Fashion-MNIST's former training views, random resized crops (scale 0.5-1) of the image
    # at 36 px, which zoom in on clothes on black
    "zoom": ["data.crop_scale=[0.5,1.0]", "data.resize=36"],
}
DEFAULT_VARIANTS = {
    "photos": ["base", "steps900", "exp50", "flex0", "color0", "tv0", "tv400", "tv160", "tv100", "tv50"],
    "fashion-mnist": ["shipped", "steps100", "zoom", "l1", "batch64", "patch32"],
    "places": ["shipped", "l1", "l2", "steps600"],
}
MAPS = {"full": FULL_MAPS, "guided": FAST_MAPS}
D_ONLY = ["players.day.steps=0", "players.extractor.steps=0", "data.adabn=false"]
"""Every variant run: the darkener phase alone from the day model, no AdaBN pass."""
NO_NIGHT_SETS = ["data.night_sim.presets=[]", "data.night_sim.mixed=false"]
"""The classification variant runs skip simulating the night test sets (only the day set is measured)."""


class Setting:
    """One proxy with its full settings (its own command line's defaults): its recipe, its overrides of a seed, its
    day model of a seed, and what a darkener-only run from that day model adds."""

    def __init__(self, name: str):
        self.name = name
        if name == "places":
            self.recipe, self.args = vpr_proxy.RECIPE, vpr_proxy.arguments().parse_args([])
            self.runs = vpr_proxy.runs_dir(self.args)
            self.d_only = D_ONLY
        else:
            dataset = "photos" if name == "photos" else "fashion-mnist"
            self.recipe, self.args = cls_proxy.RECIPE, cls_proxy.settle(cls_proxy.arguments().parse_args(
                ["--dataset", dataset]))
            self.args.backbone = OFFLINE_ARCH  # the proxy runs one backbone at a time (cls_proxy.main sets it so)
            self.runs = cls_proxy.runs_dir(Path(self.args.runs), dataset, OFFLINE_ARCH, self.args.quick)
            self.d_only = D_ONLY + NO_NIGHT_SETS

    def overrides(self, seed: int, out: Path) -> list:
        """The proxy's overrides of this seed (its data, phases and darkener settings), output in ``out``: what its
        own runs of the seed take."""
        if self.name == "places":
            train, tests = vpr_proxy.data(self.args, seed)
            return vpr_proxy.base_overrides(self.args, seed, out, train, tests)
        return cls_proxy.base_overrides(self.args, seed, out)

    def day_model(self, seed: int) -> Path:
        """The seed's day model checkpoint: the proxy's own run (trained here, as the proxy would, when missing)."""
        day = self.runs / f"seed{seed}" / "day"
        if not last_checkpoint(day).exists():
            day_run(self.recipe, lambda run: self.overrides(seed, run), day)
        return last_checkpoint(day)


def stem(setting: str, maps: str) -> str:
    return "darkener_terms" if (setting, maps) == ("photos", "full") else f"darkener_terms_{setting}_{maps}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=("photos", "fashion-mnist", "places"), default="photos")
    parser.add_argument("--maps", choices=list(MAPS), default="full")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: the setting's list")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, help="darkener steps (a variant may change them; default: the proxy's: "
                                                  "photos 300, fashion-mnist 300, places 300)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "darkener_terms"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    setting = Setting(args.setting)
    if args.steps is not None:
        setting.args.darkener_steps = args.steps
    variants = args.variants or DEFAULT_VARIANTS[args.setting]
    name = stem(args.setting, args.maps)
    runs = Path(args.runs) / name.removeprefix("darkener_terms").lstrip("_")  # the photo runs' folder: the first one
    rows = {}
    for variant in variants:
        per_seed = []
        for seed in args.seeds:
            run = runs / f"seed{seed}" / variant
            overrides = (setting.overrides(seed, run) + [f"init={setting.day_model(seed)}"] + setting.d_only
                         + MAPS[args.maps] + VARIANTS[variant])
            per_seed.append(measured(setting.recipe, overrides, run))
        levels = [[lv["mean"] for lv in r["darkener_exposure"]["levels"]] for r in per_seed]
        exposures = [lv["exposure"] for lv in per_seed[0]["darkener_exposure"]["levels"]]
        rows[variant] = {"overrides": VARIANTS[variant],
                         "levels": [(e, statistics.mean(m)) for e, m in zip(exposures, zip(*levels))],
                         "max_abs_error": spread([r["darkener_exposure"]["max_abs_error"] for r in per_seed]),
                         "seconds": statistics.mean(r["seconds"] for r in per_seed)}
        error = rows[variant]["max_abs_error"]
        print(f"{variant}: " + ", ".join(f"E={e:g}: {m:.3f}" for e, m in rows[variant]["levels"])
              + f"; max |error| {error['mean']:.3f} ± {error['std']:.3f} ({rows[variant]['seconds']:.0f} s a run)",
              flush=True)
    several = len(args.seeds) > 1
    lines = ["| variant | change | " + " | ".join(f"E = {e:g}" for e in exposures) + " | max abs error |",
             "|---|---|" + "---|" * (len(exposures) + 1)]
    for variant, row in rows.items():
        error = row["max_abs_error"]
        cell = f"{error['mean']:.3f}" + (f" ± {error['std']:.3f}" if several else "")
        lines.append(f"| {variant} | {' '.join(row['overrides']) or 'none'} | "
                     + " | ".join(f"{m:.3f}" for _, m in row["levels"]) + f" | {cell} |")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d"), "setting": args.setting, "maps": args.maps, "seeds": args.seeds,
              "steps": setting.args.darkener_steps, "rows": rows, "torch": torch.__version__}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.txt").write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
