"""The embedded demo over several seeds: day model vs SMM, with and without AdaBN, on simulated night sets.

Each seed re-draws the training/test crops, the initialisation of the new layers, the augmentation and the
night simulation. The day model is the run's state after its day phase; "SMM" is the same run after the
darkening and adaptation phases. Prints mean ± std over seeds and writes ``results/cls_demo_seeds.json|png``.

    python benchmarks/cls_demo_seeds.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from simmm.engine import Engine
from simmm.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def run(seed: int, out: Path) -> dict:
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml", [f"seed={seed}", f"output_dir={out / f'seed{seed}'}",
                                                          "log.progress=false"])
    engine = Engine(recipe)
    engine.fit(resume=(out / f"seed{seed}" / "checkpoints" / "last.pt").exists())
    day = next(h for h in engine.history if h["phase"] == "day")["metrics"]
    return {"day model": day, "SMM": engine.history[-1]["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default=str(ROOT / "runs" / "cls_demo_seeds"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    results = {seed: run(seed, Path(args.runs)) for seed in args.seeds}

    metrics = list(results[args.seeds[0]]["day model"])
    summary = {}
    for method in ("day model", "SMM"):
        for name in metrics:
            values = [results[s][method][name] for s in args.seeds]
            summary.setdefault(name, {})[method] = {
                "mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values}

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"demo over seeds {args.seeds}: top-1 (%), mean ± std")
    table.add_column("evaluation set")
    for method in ("day model", "SMM", "SMM − day (per seed)"):
        table.add_column(method, justify="right")
    for name, row in summary.items():
        diffs = [b - a for a, b in zip(row["day model"]["values"], row["SMM"]["values"])]
        table.add_row(name, *(f"{row[m]['mean']:.2f} ± {row[m]['std']:.2f}" for m in ("day model", "SMM")),
                      " ".join(f"{d:+.1f}" for d in diffs))
    Console(width=140).print(table)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cls_demo_seeds.json").write_text(json.dumps({"seeds": args.seeds, "per_seed": results,
                                                         "summary": summary}, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 3.8))
        for i, method in enumerate(("day model", "SMM")):
            ax.bar([x + 0.4 * i for x in range(len(summary))], [summary[n][method]["mean"] for n in summary],
                   yerr=[summary[n][method]["std"] for n in summary], width=0.4, label=method, capsize=3)
        ax.set_xticks([x + 0.2 for x in range(len(summary))], [n.replace("/", "\n") for n in summary], fontsize=7)
        ax.set_ylabel("top-1 (%)")
        ax.set_title(table.title, fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "cls_demo_seeds.png", dpi=120)
    except ImportError:
        print("matplotlib not installed: no PNG written (pip install matplotlib)")
    print(f"wrote {out / 'cls_demo_seeds.json'}")


if __name__ == "__main__":
    main()
