"""Which of the darkener's loss terms keeps D from following its exposure input (issue 10 §2).

The darkener phase alone (``--steps`` steps, nothing else trained, full-resolution maps), from the classification
proxy's day model of one seed, once per variant that changes one setting; for each, the mean brightness of D(I, E)
on the proxy's held-out day crops at E = 0.05, 0.1, 0.2, 0.35 (``simmm.darkening.exposure_response``, the
``darkener_exposure.json`` every SMM run writes) and the largest |brightness − E|. The target: within 0.05 at
every E.

    PYTHONPATH=. python benchmarks/darkener_terms.py                      # every variant (about 2 min each, 2 cores)
    PYTHONPATH=. python benchmarks/darkener_terms.py --variants base tv0

The day model is ``cls_proxy.py``'s (``runs/cls_proxy/full/seed<N>/day``; trained here when missing). Runs are cached
under ``--runs``. Writes ``results/darkener_terms.json|txt``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cls_proxy import RECIPE, ROOT, base_overrides, photos  # noqa: E402
from simmm.weights import OFFLINE_ARCH  # noqa: E402
from proxy import FULL_MAPS, last_checkpoint, measured  # noqa: E402

PAPER_TV = ["darkener.weights.tv=1600"]
"""Every variant starts from the paper's tent-TV weight (the shipped recipe runs a smaller one on its small crops,
chosen by this benchmark) and changes one setting."""
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
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300, help="darkener steps (a variant may change them)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "darkener_terms"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    # the classification proxy's full setting: 22 photos, its day model of this seed
    proxy = argparse.Namespace(quick=False, dataset="photos", backbone=OFFLINE_ARCH, photos="skimage+opencv",
                               photo_list=photos("skimage+opencv"), day_steps=150, darkener_steps=args.steps, steps=0)
    day_dir = ROOT / "runs" / "cls_proxy" / "full" / f"seed{args.seed}" / "day"
    if not last_checkpoint(day_dir).exists():
        measured(RECIPE, base_overrides(proxy, args.seed, day_dir) + ["players.darkener.steps=0",
                                                                      "players.extractor.steps=0"], day_dir)
    rows = {}
    for name in args.variants:
        run = Path(args.runs) / f"seed{args.seed}" / name
        overrides = base_overrides(proxy, args.seed, run) + [
            f"init={last_checkpoint(day_dir)}", "players.day.steps=0", "players.extractor.steps=0",
            "data.night_sim.presets=[]", "data.night_sim.mixed=false", "data.adabn=false"] + FULL_MAPS + VARIANTS[name]
        result = measured(RECIPE, overrides, run)
        exposure = result["darkener_exposure"]
        rows[name] = {"overrides": VARIANTS[name], "levels": [(lv["exposure"], lv["mean"]) for lv in exposure["levels"]],
                      "max_abs_error": exposure["max_abs_error"], "seconds": result["seconds"]}
        print(f"{name}: " + ", ".join(f"E={e:g}: {m:.3f}" for e, m in rows[name]["levels"])
              + f"; max |error| {exposure['max_abs_error']:.3f} ({result['seconds']:.0f} s)", flush=True)
    lines = ["| variant | change | " + " | ".join(f"E = {e:g}" for e, _ in next(iter(rows.values()))["levels"])
             + " | max abs error |", "|---|---|" + "---|" * (len(next(iter(rows.values()))["levels"]) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | {' '.join(row['overrides']) or 'none'} | "
                     + " | ".join(f"{m:.3f}" for _, m in row["levels"]) + f" | {row['max_abs_error']:.3f} |")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "steps": args.steps, "rows": rows,
              "torch": torch.__version__}
    (out / "darkener_terms.json").write_text(json.dumps(result, indent=1))
    (out / "darkener_terms.txt").write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
