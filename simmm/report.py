"""What a finished run shows: the evaluation history as a table (the engine writes ``report.json``, the method its
pictures)."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from simmm import dist
from simmm.metrics import format_iou_table


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


def print_report(history: list[dict], name: str) -> None:
    """Print a run's evaluation history, and per-class IoU tables of its last evaluation (segmentation)."""
    if not dist.is_main() or not history:
        return
    console = Console(file=sys.stdout)
    console.print(history_table(history, title=f"{name}: evaluation"))
    final = history[-1]["metrics"]
    for split in dict.fromkeys(k.split("/IoU_")[0] for k in final if "/IoU_" in k):
        per_class = [(k.split("/IoU_")[1].replace("_", " "), v) for k, v in final.items()
                     if k.startswith(f"{split}/IoU_")]
        console.print(format_iou_table([v for _, v in per_class], [n for n, _ in per_class],
                                       title=f"{split}: per-class IoU (%)"))
