"""simmm: make vision models work at night without night labels.

Similarity min-max (zero-shot day→night adaptation with a learned darkening module and BYOL) and DANIA
(paired day–night adaptation), run by one engine. See README.md and METHOD.md.

The submodules load on first use (``simmm.darkening.DarkeningNet`` works after ``import simmm``), so that
``import simmm`` stays light.
"""
import importlib

from simmm.errors import CheckpointError, DataError, RecipeError, SimmmError
from simmm.recipe import Recipe, load_recipe
from simmm.method import Method, Phase, Player, Stream, register_method
from simmm.task import EvalSet, Forward, TaskAdapter, TaskNet, register_task

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "DataError", "RecipeError", "SimmmError",
    "Recipe", "load_recipe",
    "Method", "Phase", "Player", "Stream", "register_method",
    "EvalSet", "Forward", "TaskAdapter", "TaskNet", "register_task",
    "Engine",
]


SUBMODULES = ("alignment", "atomic", "backbones", "byol", "checkpoint", "cli", "contrastive", "dania_losses",
              "darkening", "darkening_losses", "data", "dist", "engine", "enhance", "errors", "exposure", "inference", "logger",
              "method", "methods", "metrics", "mining", "models", "night", "night_stats", "recipe", "registry", "report", "retrieval",
              "seed", "similarity", "task", "tasks", "weights", "whitening")


def __getattr__(name):
    # the engine pulls in every model module; import it on first use so `import simmm` stays light
    if name == "Engine":
        from simmm.engine import Engine

        return Engine
    if name in SUBMODULES:
        return importlib.import_module(f"simmm.{name}")
    raise AttributeError(f"module 'simmm' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *SUBMODULES, "Engine"})
