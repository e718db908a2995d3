"""Run logging: a rich progress bar with ETA and live losses, a CSV always, TensorBoard when installed.

When the console is not a terminal (CI, nohup, a cluster job's log file) the bar is replaced by one plain line
every ``log.every`` steps: step, phase, losses, rate and ETA. Only the main process (rank 0) writes. The CSV
has one row per logged training step and one per evaluation; its columns grow as new names appear (the file
is rewritten with the wider header when that happens, which is cheap: logs are written every ``log.every``
steps).
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.errors import LiveError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from simmm import dist
from simmm.atomic import atomic_write

__all__ = ["RunLogger", "console", "print_metrics_table", "track", "write_json"]

console = Console(stderr=True)


class RunLogger:
    """Writes ``metrics.csv`` (and TensorBoard events) under ``run_dir`` and drives the progress bar."""

    def __init__(self, run_dir: str | Path, total_steps: int, tensorboard: str = "auto", progress: bool = True,
                 start_step: int = 0, every: int = 10) -> None:
        self.run_dir = Path(run_dir)
        self.total_steps = total_steps
        self.every = max(int(every), 1)
        self._start = (time.perf_counter(), start_step)
        self.enabled = dist.is_main()
        self.plain = self.enabled and progress and not console.is_terminal
        self.csv_path = self.run_dir / "metrics.csv"
        self.rows: list[dict] = self._read_existing(start_step) if self.enabled else []
        self.columns: list[str] = list(dict.fromkeys(k for row in self.rows for k in row))
        if self.rows:  # the file may hold rows of steps about to be redone: they would be listed twice
            self._write_csv()
        self.writer = self._tensorboard(tensorboard) if self.enabled else None
        self.progress: Optional[Progress] = None
        if self.enabled and progress:
            self.progress = Progress(
                TextColumn("[bold]{task.fields[phase]:>9}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                console=console, transient=False, disable=not console.is_terminal,
            )
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, phase="",
                                               losses="")
            self.progress.start()

    def _read_existing(self, start_step: int) -> list[dict]:
        """On resume, keep the rows of steps up to ``start_step`` (later ones are about to be redone); a last
        line torn by a run killed while appending it is dropped."""
        if start_step == 0 or not self.csv_path.exists():
            return []
        lines = self.csv_path.read_text().splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()
        return [row for row in csv.DictReader(lines) if int(row["step"]) <= start_step]

    def _write_csv(self) -> None:
        """Rewrite the whole CSV (a wider header, or the rows kept on resume) through a temporary file renamed
        over it, so that a run killed meanwhile leaves the old file, not a truncated one."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
        tmp.write_text(text.getvalue(), newline="")
        os.replace(tmp, self.csv_path)

    def _tensorboard(self, mode: str):
        if mode == "off":
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if mode == "on":
                console.print("[yellow]log.tensorboard is 'on' but tensorboard is not installed; "
                              "pip install tensorboard (CSV logging goes on)")
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, step: int, kind: str, values: dict[str, float]) -> None:
        """Record named scalars of one step (``kind``: the player, or ``eval``)."""
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **{k: f"{v:.6g}" for k, v in values.items()}}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        self.columns.extend(new)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if new or not self.csv_path.exists():
            self._write_csv()
        else:
            with self.csv_path.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.columns).writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{kind}/{key}" if kind != "eval" else key, value, step)

    def advance(self, step: int, phase: str, losses: dict[str, float]) -> None:
        """Move the bar to ``step``; off a terminal, print a plain line every ``every`` steps and at the end."""
        text = " ".join(f"{k}={v:.3g}" for k, v in list(losses.items())[:4])
        if self.progress is not None:
            self.progress.update(self.task, completed=step, phase=phase, losses=text)
        if self.plain and (step % self.every == 0 or step == self.total_steps):
            console.print(self._plain_line(step, phase, text), markup=False, highlight=False, soft_wrap=True)

    def _plain_line(self, step: int, phase: str, losses: str) -> str:
        started, first = self._start
        elapsed = time.perf_counter() - started
        rate = (step - first) / elapsed if elapsed > 0 and step > first else 0.0
        eta = _duration((self.total_steps - step) / rate) if rate > 0 else "?"
        return f"step {step}/{self.total_steps} {phase} {losses} | {rate:.2f} steps/s, eta {eta}"

    def resuming(self, step: int, total: int) -> None:
        """Say where a resumed run picks up."""
        self.message(f"resuming from step {step} of {total}")

    def message(self, text: str) -> None:
        if self.enabled:
            console.print(text, soft_wrap=not console.is_terminal)  # a log file gets whole lines

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()


def track(iterable, description: str, total: Optional[int] = None, every_s: float = 30.0, unit: str = "batches"):
    """Iterate ``iterable`` showing progress: a transient bar on a terminal; elsewhere a plain line every
    ``every_s`` seconds and, for a pass that took ``every_s / 6`` or longer, one when done (a quick pass
    prints nothing); ``unit`` names the items in those lines. Only the main process shows anything."""
    total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
    if not dist.is_main():
        yield from iterable
        return
    if console.is_terminal:
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=console, transient=True)
        try:
            bar.start()
        except LiveError:  # an older rich with another live display running: go without the bar
            yield from iterable
            return
        try:
            yield from bar.track(iterable, total=total, description=description)
        finally:
            bar.stop()
        return
    started = last = time.perf_counter()
    done = 0
    of = f"/{total}" if total is not None else ""
    for item in iterable:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            console.print(f"{description}: {done}{of} {unit}, {_duration(now - started)}", markup=False,
                          highlight=False, soft_wrap=True)
    took = time.perf_counter() - started
    if took >= every_s / 6:
        console.print(f"{description}: {done} {unit} in {took:.1f}s", markup=False, highlight=False,
                      soft_wrap=True)


def _duration(seconds: float) -> str:
    """``3725`` → ``1h02m05s``; ``65`` → ``1m05s``; ``4.2`` → ``4s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def print_metrics_table(metrics: dict[str, float], title: str = "evaluation") -> None:
    """Print metrics as a table (split rows, metric columns) on stdout."""
    splits: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        split, _, name = key.rpartition("/")
        splits.setdefault(split or "-", {})[name] = value
    names = list(dict.fromkeys(n for values in splits.values() for n in values))
    table = Table(title=title)
    table.add_column("split")
    for name in names:
        table.add_column(name, justify="right")
    for split, values in splits.items():
        table.add_row(split, *(f"{values[n]:.2f}" if n in values else "" for n in names))
    Console(file=sys.stdout).print(table)


def write_json(data, path: str | Path) -> None:
    """``data`` as indented JSON, written atomically (a reader never sees half a file)."""
    text = json.dumps(data, indent=2).encode()
    atomic_write(path, lambda handle: handle.write(text))
