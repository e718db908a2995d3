"""The report of a data check (``simmm data check``): one type for every dataset and every task.

A :class:`DataReport` is a title, the lines a person reads (``OK``/``MISSING``/``ERROR``/``WARN`` prefixes),
the problems (each names the file or folder concerned; any problem makes ``ok`` False) and the warnings (worth
a look, they do not stop training). The folder check (:func:`simmm.data.folder.scan_folder_dataset`), the
segmentation check (:func:`simmm.data.segmentation.check_segmentation_tree`) and the task adapters'
``check_data`` all return one; a task combines the reports of its datasets with :meth:`DataReport.add`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence

__all__ = ["DataReport", "listing", "capped"]


@dataclass
class DataReport:
    """Result of a data check: one line per finding, the problems and the warnings.

    Attributes:
        title: the first line (what was checked, where, and the expected tree).
        lines: the body, one line per finding, e.g. ``"OK       train: 3 images (/data/x/train)"``.
        problems: what must be fixed before training (``ok`` is False while there is any).
        warnings: worth a look, does not stop training.
    """

    title: str
    lines: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @classmethod
    def for_root(cls, name: str, root: Path, layout: str) -> "DataReport":
        """An empty report on the dataset ``name`` at ``root``; a missing root is its one problem."""
        report = cls(f"{name} root {root} (expected {layout})")
        if not root.is_dir():
            report.lines.append(f"MISSING  root folder {root}")
            report.problems.append(f"dataset root {root} does not exist; expected the tree {layout}")
        return report

    @property
    def ok(self) -> bool:
        return not self.problems

    def entry(self, status: str, message: str, summary: bool = False) -> None:
        """Add the line ``STATUS   message``; ``MISSING``/``ERROR`` make it a problem too, ``WARN`` a warning,
        unless it is a ``summary`` (a count line, shown with its status and never counted itself)."""
        self.lines.append(f"{status:<7}  {message}")
        if summary:
            return
        if status in ("MISSING", "ERROR"):
            self.problems.append(message)
        elif status == "WARN":
            self.warnings.append(message)

    def add(self, other: "DataReport") -> None:
        """Take in the report of a part (one dataset of a task): its lines, indented, and its findings."""
        self.lines.extend(other.format().splitlines())
        self.problems.extend(other.problems)
        self.warnings.extend(other.warnings)

    def format(self) -> str:
        """The title, the lines indented by two spaces, and ``result: OK`` or ``result: NOT OK``."""
        body = [f"  {line}" for line in self.lines]
        return "\n".join([self.title, *body, "result: OK" if self.ok else "result: NOT OK"])

    def __str__(self) -> str:
        return self.format()


def listing(items: Sequence[str], max_listed: int) -> str:
    """``a, b, c, ... (N more)``: at most ``max_listed`` items of a data-check finding."""
    shown = list(items[:max_listed])
    more = len(items) - len(shown)
    return ", ".join(shown) + (f", ... ({more} more)" if more > 0 else "")


def capped(messages: Sequence[str], max_listed: int, rest: str) -> List[str]:
    """The first ``max_listed`` messages, then one line ``... and N more <rest>`` for the others."""
    out = list(messages[:max_listed])
    if len(messages) > max_listed:
        out.append(f"... and {len(messages) - max_listed} more {rest}")
    return out
