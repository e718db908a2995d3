"""Methods: what the engine runs. A method sets up a game of *players* on *streams* of data, by a *plan* of phases.

The engine (:mod:`simmm.engine`) is only the loop; it never names a network, a loss or a player. A method
declares:

* its **players** (:class:`Player`): the modules each one trains with its own optimiser and LR schedule (from the
  recipe's ``players.<name>`` section), the data streams it reads, a step function that returns the loss and the
  terms to log (no backward inside: the engine owns backward, AMP, clipping and the NaN guard), and an optional
  after-step hook (an EMA update);
* its **streams** (:class:`Stream`): datasets batched by their own resumable, rank-sharded sampler;
* its **plan** (a list of :class:`Phase`): which players step on each iteration, in order, and for how many
  iterations;
* the **recipe sections it owns** (:attr:`Method.config`, a dataclass whose fields are top-level recipe keys,
  validated like every other section) and the players it knows (:attr:`Method.players_defaults`);
* which modules are **checkpointed** (:meth:`Method.modules`).

A method is made known to recipes with ``@register_method("name")`` (``method: name`` in a recipe); SMM
(:mod:`simmm.methods.smm`) and any user's method are built exactly this way. Several players may step on the same
iteration (a generator, then its discriminators), and a player may read several streams.

While a phase runs, the modules of its players train (train mode, gradients on); every other module the method
lists is frozen (eval mode, ``requires_grad_(False)``). :meth:`Method.activate` may then adjust (an EMA target kept
in train mode, say).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from simmm.errors import RecipeError
from simmm.registry import registrar

__all__ = ["Batches", "Context", "EmptyMethodConfig", "METHODS", "Method", "Phase", "Player", "Stream", "StepOutput",
           "get_method", "method_schemas", "register_method", "set_trainable"]

Batches = dict[str, dict]
"""The batches of one step, by stream name: ``{"source": {"image": ..., "target": ...}, ...}``."""

StepOutput = tuple[torch.Tensor, dict[str, torch.Tensor]]
"""What a step function returns: the loss to minimise and the named terms to log (detached)."""


@dataclass
class Stream:
    """A data stream: ``dataset`` in batches of ``batch_size`` per process, in an order of its own (seeded, exactly
    resumable, sharded by rank)."""

    dataset: torch.utils.data.Dataset
    batch_size: int
    on_epoch: Optional[Callable[[int], None]] = None
    """Called in the main process before the stream's first batch of each epoch, and of the epoch a resumed run
    continues in: a dataset whose items depend on the training state (place recognition's tuples, mined with the
    current model) prepares that epoch. Such a stream gets a new loader each epoch, so that workers read what it
    prepared; the preparation must be checkpointed (:meth:`TaskAdapter.state_dict`) so that a resumed run does not
    redo it."""


@dataclass
class Player:
    """Modules trained together by one optimiser and one LR schedule, and the step function of their loss.

    ``step(batches, nets)`` gets one batch of each stream in ``streams`` and ``nets``: the player's ``modules`` as
    they train, wrapped in ``DistributedDataParallel`` under torchrun. A forward whose gradient must reach the
    player's weights goes through ``nets`` (so that it is synchronised across processes); everything else (frozen
    modules, EMA targets, evaluation) uses the modules themselves.
    """

    name: str
    modules: dict[str, nn.Module]
    step: Callable[[Batches, dict[str, nn.Module]], StepOutput]
    streams: tuple[str, ...] = ()
    after_step: Optional[Callable[[], None]] = None
    steps_done: int = 0

    def parameters(self) -> list[nn.Parameter]:
        """What the optimiser trains: the modules' parameters that require gradients when the player trains."""
        return [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """:meth:`parameters` with their names, ``<module name>.<parameter name>`` (``model.model.pool.p``)."""
        return [(f"{key}.{name}", p) for key, m in self.modules.items() for name, p in m.named_parameters()
                if p.requires_grad]


@dataclass
class Phase:
    """``steps`` iterations; each iteration steps ``players`` in this order. ``evaluate``: evaluate when the phase
    ends (the last phase of a plan always does)."""

    players: tuple[str, ...]
    steps: int
    evaluate: bool = True

    @property
    def name(self) -> str:
        return "+".join(self.players)


@dataclass
class Context:
    """What the engine lends a method: the device, and its autocast (bf16/fp16 on CUDA when the recipe asks; a
    no-op on CPU)."""

    device: torch.device
    autocast: Callable[[], AbstractContextManager]


@dataclass
class EmptyMethodConfig:
    """A method that owns no recipe section."""


def set_trainable(module: nn.Module, on: bool) -> None:
    """Trainable: train mode with gradients; frozen: eval mode, ``requires_grad_(False)``."""
    module.train(on)
    module.requires_grad_(on)


class Method:
    """Base class of methods. Subclasses set :attr:`config` / :attr:`players_defaults` and override
    :meth:`streams`, :meth:`setup`, :meth:`players`, :meth:`plan` and :meth:`modules` (and, when needed,
    :meth:`player_streams`, :meth:`activate`, :meth:`eval_sets`, :meth:`eval_model`, :meth:`inference_model` and
    :meth:`write_artifacts`)."""

    name: str = ""
    config: type = EmptyMethodConfig
    """A dataclass whose fields are top-level recipe sections this method owns (``darkener:``, ``adapt:`` ...)."""
    eval_modules: tuple[str, ...] = ("model",)
    """The checkpointed modules :meth:`eval_model` uses (what ``simmm eval --checkpoint`` loads)."""
    players_defaults: dict[str, dict] = {}
    """Player name -> its default ``players.<name>`` settings (optimiser, LR, batch size); the recipe's ``players:``
    section is merged over these, and names outside them are refused."""

    def __init__(self, recipe, task, context: Context) -> None:
        self.recipe = recipe
        self.task = task
        self.context = context
        self.options = recipe.options

    # --- what the engine asks, in this order ---------------------------------------------------------------
    def streams(self) -> dict[str, Stream]:
        """The data streams, by name (their order fixes each stream's seed: keep it stable)."""
        raise NotImplementedError

    def player_streams(self) -> dict[str, tuple[str, ...]]:
        """Which streams each player reads, by player name (the first one converts ``epochs`` to steps). Default:
        each player reads the stream of its own name."""
        return {name: (name,) for name in self.players_defaults}

    def setup(self, model: nn.Module, steps: dict[str, int]) -> None:
        """Build the method's own modules around the task's ``model`` (already on the device). ``steps``: each
        player's number of steps in this run (0 for players the recipe gives no steps)."""
        raise NotImplementedError

    def players(self) -> list[Player]:
        """The players of this run (only those with steps)."""
        raise NotImplementedError

    def plan(self, steps: dict[str, int]) -> list[Phase]:
        """The phases, in order."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every module of the run by name, the task's ``model`` included: what checkpoints hold, and what is frozen
        outside its player's phases."""
        raise NotImplementedError

    def check_data(self) -> list:
        """Data checks of the method's own data (``simmm data check``; DANIA: its pair streams) as
        :class:`~simmm.data.check.DataReport` objects, without raising for data. Default: none."""
        return []

    def eval_sets(self, task_sets: list) -> list:
        """The run's evaluation sets: the task's :class:`~simmm.task.EvalSet` list, to which a method may add its
        own (DANIA: each night set again with its day partners fused). Called before :meth:`setup` (data first).
        Default: the task's."""
        return task_sets

    def eval_model(self) -> Optional[nn.Module]:
        """The module the engine evaluates, when it is not the task's model alone (DANIA: relighting, then the
        segmenter, with test-time re-weighting). Default ``None``: the task's model."""
        return None

    def inference_model(self, model: nn.Module) -> tuple[nn.Module, dict[str, nn.Module]]:
        """What ``simmm predict`` runs, built around the task's ``model`` without data or :meth:`setup`: the module
        to predict with (called like the task's model), and the checkpointed modules it needs, by name (loaded from
        the checkpoint). Default: the model alone."""
        return model, {"model": model}

    def write_artifacts(self, run_dir: Path, eval_sets: list) -> list[Path]:
        """Pictures of a finished run, written into ``run_dir`` by the main process (SMM: ``darkening.png``);
        returns their paths. Default: none."""
        return []

    def activate(self, phase: Phase, players: dict[str, Player]) -> None:
        """Called when ``phase`` starts (or resumes), after its players' modules were set trainable and all others
        frozen."""


METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    """Class decorator: make a :class:`Method` subclass available to recipes as ``method: name``."""
    return registrar(METHODS)(name)


def _load_shipped() -> None:
    import simmm.methods  # noqa: F401  (registers the methods that ship)


def get_method(name: str) -> type:
    _load_shipped()
    if name not in METHODS:
        raise RecipeError(f"method: got {name!r}; expected one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_schemas() -> dict[str, type]:
    """``method name -> method class`` of every registered method."""
    _load_shipped()
    return dict(METHODS)
