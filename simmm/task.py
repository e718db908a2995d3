"""The task adapter interface: everything the engine needs to know about a task, and nothing more.

The engine never imports a concrete task. A task is a subclass of :class:`TaskAdapter` that supplies the model,
the data, which features count for the similarity game, the task loss and the evaluation. It is made known to
the recipe loader with ``@register_task("name")`` (a plain dict, nothing else), or handed to
:class:`simmm.engine.Engine` directly. ``simmm.tasks`` holds the adapters that ship, built exactly this way.

Batches are dicts: ``batch["image"]`` is a float tensor in [0, 1] (B, 3, H, W) — never normalised; models own
their input normalisation — and the other keys (``"target"``, ...) belong to the task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

import torch
from torch import nn

from simmm.data.check import DataReport
from simmm.registry import registrar

__all__ = ["TASKS", "register_task", "task_schemas", "get_task", "Forward", "EmptyConfig", "EvalSet", "TaskAdapter",
           "TaskNet", "DataReport"]

TASKS: dict[str, type] = {}


def register_task(name: str) -> Callable[[type], type]:
    """Class decorator: make a :class:`TaskAdapter` subclass available to recipes as ``task: name``."""
    return registrar(TASKS)(name)


def task_schemas() -> dict[str, tuple[type, type]]:
    """``task name -> (model config dataclass, data config dataclass)`` of every registered adapter."""
    import simmm.tasks  # noqa: F401  (registers the adapters that ship)

    return {name: (cls.model_config, cls.data_config) for name, cls in TASKS.items()}


def get_task(name: str) -> type:
    import simmm.tasks  # noqa: F401

    from simmm.errors import RecipeError

    if name not in TASKS:
        raise RecipeError(f"task: got {name!r}; expected one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


class Forward(NamedTuple):
    """What a task's forward pass returns.

    ``features``: the maps the similarity game compares (METHOD.md §4.4). ``byol``: the inputs of the BYOL heads
    (pooled vectors or stage maps). ``output``: the task prediction, or None when it was not asked for.
    """

    features: list
    byol: list
    output: Optional[torch.Tensor]


class TaskNet(nn.Module):
    """A task's forward pass as a module: ``TaskNet(task, model)(images, output=True)`` is
    ``task.forward(model, images, output)``. Methods train through it, so that a distributed run can wrap it in
    ``DistributedDataParallel`` whatever the task's forward calls on the model. Its parameters are the model's."""

    def __init__(self, task: "TaskAdapter", model: nn.Module) -> None:
        super().__init__()
        self.task = task
        self.model = model

    def forward(self, images: torch.Tensor, output: bool = True) -> Forward:
        return self.task.forward(self.model, images, output)


@dataclass
class EmptyConfig:
    """A config section a task does not use."""


@dataclass
class EvalSet:
    """A named evaluation set: ``name`` carries the split (``night_test``); metrics come out as ``name/metric``.

    ``predict``: a method's own prediction for this set, ``(evaluated model, batch) -> logits`` at the batch's
    image size, scored by the task as usual (DANIA's day–night evaluation, which fuses each night image with its
    day partner); ``None``: the task's own prediction. The segmentation task honours it.
    """

    name: str
    dataset: torch.utils.data.Dataset
    options: dict = field(default_factory=dict)
    predict: Optional[Callable[[nn.Module, dict], torch.Tensor]] = None


class TaskAdapter:
    """Base class of task adapters. Subclasses override the methods that raise ``NotImplementedError``."""

    name: str = ""
    model_config: type = EmptyConfig
    data_config: type = EmptyConfig

    def __init__(self, recipe) -> None:
        self.recipe = recipe

    # --- model ---------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The model: it normalises its own input and holds backbone and head."""
        raise NotImplementedError

    def signature(self) -> dict:
        """What identifies the architecture in checkpoints (task, backbone, output shape...)."""
        return {"task": self.name}

    def forward(self, model: nn.Module, images: torch.Tensor, output: bool = True) -> Forward:
        """Run ``model`` on images in [0, 1]; give the prediction (when ``output``) and the feature maps a method
        compares: SMM's similarity features and BYOL inputs (METHOD.md §4.4). Methods call it through
        :class:`TaskNet`."""
        raise NotImplementedError

    # --- what SMM asks of a task besides the above (other methods may ignore it) --------------------------------
    def build_byol_heads(self, model: nn.Module) -> nn.Module:
        """SMM: a :class:`simmm.byol.BYOLHeads` sized for this task's BYOL inputs (``Forward.byol``)."""
        raise NotImplementedError

    def darkened_loss(self, net: nn.Module, batch: dict, darken: Callable[[torch.Tensor], torch.Tensor]
                      ) -> Optional[tuple[torch.Tensor, dict]]:
        """SMM's feature-extractor loss, for a task whose training items are not single images: ``(loss, terms)``
        of ``batch`` with ``darken`` (images in [0, 1] → D's darkened images, no gradient) and ``net`` (the
        :class:`TaskNet` being trained). ``None`` (the default): SMM's two-view form — the task loss on a day view
        and a darkened view, plus BYOL. Place recognition gives its tuples' contrastive loss with the darkened query
        as an extra positive (METHOD.md §4.3, no BYOL)."""
        return None

    # --- data ----------------------------------------------------------------------------------------------
    def train_dataset(self) -> torch.utils.data.Dataset:
        """Labelled day training data; items are dicts with at least ``image``."""
        raise NotImplementedError

    def image_dataset(self) -> Optional[torch.utils.data.Dataset]:
        """Training images one by one (``{"image"}`` items), for players that see single images (SMM's darkener),
        when :meth:`train_dataset`'s items are not (place recognition's tuples). ``None`` (the default): the
        training set itself."""
        return None

    def epoch_hook(self, stream: str) -> Optional[Callable[[int], None]]:
        """What prepares each epoch of the training set read by ``stream`` (:attr:`simmm.method.Stream.on_epoch`),
        when its items change by epoch (place recognition mines its tuples with the current model). Default:
        none."""
        return None

    def state_dict(self) -> dict:
        """Training state the task keeps outside the model (place recognition's mined tuples), checkpointed with the
        run so that a resumed run continues with it. Default: none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""

    def eval_sets(self) -> list[EvalSet]:
        """Evaluation sets, day and night, each evaluated with :meth:`evaluate`."""
        raise NotImplementedError

    def check_data(self) -> "DataReport":
        """What of the expected data tree is present, missing or malformed (``simmm data check``)."""
        raise NotImplementedError

    def views(self, batch: dict, n: int = 2) -> list[dict]:
        """``n`` independently augmented geometric views of a batch (on the batch's device)."""
        raise NotImplementedError

    def still(self, item: dict) -> torch.Tensor:
        """One ``(3, H, W)`` image in [0, 1] of an evaluation item, for pictures of a run (SMM's ``darkening.png``).
        Default: ``item["image"]``; a video task gives a frame of a clip."""
        return item["image"]

    def color_augment(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Photometric augmentation of the views after darkening (default: none). Whether the views share
        their random parameters is the task's choice (independent for classification, shared for segmentation)."""
        return views

    # --- objective and metrics -----------------------------------------------------------------------------
    def task_loss(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, eval_set: EvalSet) -> dict[str, float]:
        """Metrics of ``model`` on one evaluation set, named ``<set name>/<metric>``."""
        raise NotImplementedError
