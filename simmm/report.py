"""What a finished run shows: the evaluation history as a table, and a picture of what the darkener learned."""
from __future__ import annotations

import sys

import torch
from rich.console import Console
from rich.table import Table

from simmm import dist
from simmm.logger import write_json
from simmm.metrics import format_iou_table

GRID_EXPOSURES = (0.05, 0.1, 0.2, 0.35)
GRID_PRESETS = ("street", "urban", "dark")


def history_table(history: list[dict], title: str = "evaluation") -> Table:
    """Rows: metrics; columns: each evaluation of the run (after which phase, at which step)."""
    table = Table(title=title)
    table.add_column("metric")
    for entry in history:
        table.add_column(f"after {entry['phase']}\n(step {entry['step']})", justify="right")
    names = [k for k in dict.fromkeys(k for entry in history for k in entry["metrics"]) if "/IoU_" not in k]
    for name in names:
        table.add_row(name, *(f"{e['metrics'][name]:.2f}" if name in e["metrics"] else "" for e in history))
    return table


@torch.no_grad()
def darkening_grid(engine, path, rows: int = 4) -> None:
    """PNG grid: day input | D(I) at several exposures | physically simulated night (presets)."""
    from simmm.data.images import save_grid
    from simmm.night import PRESETS, simulate_night

    source = engine.eval_sets[0].dataset
    step = max(1, len(source) // rows)
    images = torch.stack([source[i * step]["image"] for i in range(min(rows, len(source)))]).to(engine.device)
    engine.darkener.eval()
    grid = []
    for i, image in enumerate(images):
        row = [image.cpu()]
        for level in GRID_EXPOSURES:
            row.append(engine.darkener(image[None], torch.full((1,), level, device=image.device)).image[0].cpu())
        for preset in GRID_PRESETS:
            row.append(simulate_night(image[None].cpu(), PRESETS[preset], seed=i)[0])
        grid.append(row)
    labels = ["day"] + [f"D, E={e:g}" for e in GRID_EXPOSURES] + [f"sim. {p}" for p in GRID_PRESETS]
    save_grid(grid, path, labels=labels)


def write_report(engine) -> None:
    """Print the evaluation history; save ``report.json`` and, with a darkener, ``darkening.png``."""
    if not dist.is_main() or not engine.history:
        return
    console = Console(file=sys.stdout)
    console.print(history_table(engine.history, title=f"{engine.recipe.name}: evaluation"))
    final = engine.history[-1]["metrics"]
    for split in dict.fromkeys(k.split("/IoU_")[0] for k in final if "/IoU_" in k):
        per_class = [(k.split("/IoU_")[1].replace("_", " "), v) for k, v in final.items()
                     if k.startswith(f"{split}/IoU_")]
        console.print(format_iou_table([v for _, v in per_class], [n for n, _ in per_class],
                                       title=f"{split}: per-class IoU (%)"))
    write_json({"history": engine.history, "best": engine.best}, engine.run_dir / "report.json")
    if engine.darkener is not None:
        darkening_grid(engine, engine.run_dir / "darkening.png")
        Console(file=sys.stdout).print(f"darkening grid: {engine.run_dir / 'darkening.png'}")
