"""Similarity min-max (SMM, Luo et al., ICCV 2023): zero-shot day→night adaptation, as a method on the engine.

Players (METHOD.md §3.1):

* ``day``: optional day-only training of the task model F with the task loss (the baseline);
* ``darkener``: the darkening module D (:class:`simmm.darkening.DarkeningNet`), trained against the frozen F to make
  F's features of D(I) *least* similar to those of I, under the regularisers R_D (:class:`DarkeningLoss`, §4.2);
* ``extractor``: F with its task head and the BYOL heads, trained on a day view and a D-darkened view (compound
  exposure E', Eq. 13) with the task loss on both and symmetric BYOL between them (§4.3); the BYOL target (an EMA
  copy of F and of the projectors) starts as a copy of F as it enters this phase and is updated after every step.
  ``adapt.darkening`` replaces D's view by a fixed darkening (the paper's ablations) or by the physical night
  simulator (``night``: :mod:`simmm.night` with :data:`simmm.night.TRAINING`, a MAET-style augmentation baseline).

Plans (``schedule:``): ``two_stage`` (the paper's best): day, then D for N_D steps, then F for N_F steps;
``alternating``: after day, repeat (D for k_D steps, F for k_F steps) until both have had their steps.

Recipe sections owned here: ``darkener:``, ``adapt:``, ``schedule:``, ``cycle:``. Each player reads a stream of the
task's labelled day training set of its own (its own batch size and order).

The task supplies, besides its loss and data: ``forward(model, images, output)`` whose ``features`` are compared by
L_D^sim and whose ``byol`` inputs feed the BYOL heads (:meth:`TaskAdapter.build_byol_heads`), ``views`` and
``color_augment``. A task whose training items are not single images (place recognition's tuples) also gives
``image_dataset`` (what D trains on), ``epoch_hook`` (its tuples are mined anew each epoch) and ``darkened_loss``
(F's loss with the darkened query as an extra positive, no BYOL), all defaulting to the two-view form above.

Video tasks batch clips ``(B, 3, T, H, W)``: D darkens their ``B·T`` frames, every frame of a clip with its clip's
exposure (one scalar while D trains, one compound map E' for F's views: METHOD.md §4.1); F, L_D^sim and BYOL see
the clips.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from torch import nn

from simmm.byol import BYOLHeads, copy_as_target, update_momentum
from simmm.checkpoint import load_modules
from simmm.darkening import DarkeningNet, clip_exposure, exposure_response, fold_clips, unfold_clips
from simmm.darkening_losses import DarkeningLoss
from simmm.errors import RecipeError, SimmmError
from simmm.exposure import compound_exposure, sample_exposure
from simmm.logger import write_json
from simmm.method import Method, Phase, Player, Stream, register_method
from simmm.night import TRAINING, NightParams, NightSimulator
from simmm.recipe import non_negative, positive
from simmm.task import TaskNet

__all__ = ["AdaptConfig", "CompoundExposureConfig", "DarkenerConfig", "DarkenerLossWeights", "SMM", "SMMConfig",
           "darkening_grid", "fixed_darkening", "plan_schedule"]

# ------------------------------------------------------------------------------------------------ recipe sections


@dataclass
class CompoundExposureConfig:
    """Compound exposure E' used when D generates training views for F (SMM paper Eq. 13)."""

    base: tuple[float, float] = (0.0, 0.2)
    pixel_std: float = 0.025
    patch_std: float = 0.025
    patch_scale: int = 16


@dataclass
class DarkenerLossWeights:
    """Weights of the darkening objective: L_D^sim and the regularisers R_D (METHOD.md §4.2)."""

    sim: float = 0.1
    exposure: float = 10.0
    color: float = 25.0
    tv: float = 1600.0
    flex: float = 5.0


@dataclass
class DarkenerConfig:
    """The darkening module D, its exposure sampling and its losses.

    ``exposure_patch``: side of the patches over which L_exp compares D(I)'s brightness with E (1: per pixel, the
    authors' default; their ``L_exp`` takes a ``patch_size``, Zero-DCE uses 16). ``train_size`` [H, W]: D's phase
    resizes its training views to this size (the SMM paper trains D on
    Cityscapes at 256×512 while F sees 384×768 crops); empty: the views as they come.

    ``map_scale`` / ``map_upsample``: D's maps A, B are estimated at this fraction of the image size and brought
    to it by this upsampling (``guided``: the image as guide). The default, 1/4 with guided upsampling, is the fast
    path: on the classification proxy it matched the full-resolution module's accuracy at under half its run time
    (benchmarks/README.md, "the fast path"); ``map_scale: 1.0`` is the authors' module, which the paper recipes pin.
    """

    width: int = 64
    mapping: Literal["code", "paper"] = "code"
    iterations: int = 8
    map_scale: float = 0.25
    map_upsample: Literal["bilinear", "guided"] = "guided"
    exposure_range: tuple[float, float] = (0.0, 0.5)
    exposure_norm: Literal["l2", "l1"] = "l2"
    exposure_patch: int = 1
    tv_alpha: float = 0.02
    weights: DarkenerLossWeights = field(default_factory=DarkenerLossWeights)
    compound: CompoundExposureConfig = field(default_factory=CompoundExposureConfig)
    train_size: list[int] = field(default_factory=list)
    checkpoint: str = ""

    def check(self, path: str) -> None:
        positive(self.width, f"{path}.width")
        positive(self.iterations, f"{path}.iterations")
        positive(self.exposure_patch, f"{path}.exposure_patch")
        if not 0.0 < self.map_scale <= 1.0:
            raise RecipeError(f"{path}.map_scale: got {self.map_scale}; expected a value in (0, 1]")
        lo, hi = self.exposure_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise RecipeError(f"{path}.exposure_range: got {list(self.exposure_range)}; expected 0 <= low <= high <= 1")
        if self.train_size and (len(self.train_size) != 2 or min(self.train_size) <= 0):
            raise RecipeError(f"{path}.train_size: got {self.train_size}; expected [height, width] or [] (the "
                              "training views' size)")


@dataclass
class AdaptConfig:
    """The feature-extractor phase of SMM (METHOD.md §4.3): BYOL and task-loss weights, and how the second view is
    darkened (``learned``: by D; ``brightness``/``gamma``: fixed darkening, the paper's ablations; ``night``: the
    physical night simulator :mod:`simmm.night` with the training distribution :data:`simmm.night.TRAINING`, whose
    fields ``night`` may replace (a MAET-style augmentation baseline); ``none``)."""

    byol_weight: float = 0.05
    momentum: float = 0.99
    day_task_weight: float = 1.0
    dark_task_weight: float = 1.0
    darkening: Literal["learned", "none", "brightness", "gamma", "night"] = "learned"
    night: dict[str, Any] = field(default_factory=dict)

    def check(self, path: str) -> None:
        if not 0.0 <= self.momentum < 1.0:
            raise RecipeError(f"{path}.momentum: got {self.momentum}; expected a value in [0, 1)")
        non_negative(self.byol_weight, f"{path}.byol_weight")
        if self.night and self.darkening != "night":
            raise RecipeError(f"{path}.night: given, but {path}.darkening is {self.darkening!r}; the night "
                              f"simulator's training parameters are used only with {path}.darkening: night")
        self.night_params(path)

    def night_params(self, path: str = "adapt") -> NightParams:
        """The night distribution of ``darkening: night``: :data:`simmm.night.TRAINING` with the fields of ``night``
        replaced (a bad key or value raises :class:`RecipeError` naming ``adapt.night.<key>``)."""
        try:
            return NightParams.from_dict(self.night, base=TRAINING, path=f"{path}.night")
        except SimmmError as exc:
            raise RecipeError(str(exc)) from None


@dataclass
class SMMConfig:
    """SMM's top-level recipe sections."""

    darkener: DarkenerConfig = field(default_factory=DarkenerConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    schedule: Literal["two_stage", "alternating"] = "two_stage"
    cycle: dict[str, int] = field(default_factory=lambda: {"darkener": 100, "extractor": 100})

    def check(self, path: str) -> None:
        for name in self.cycle:
            if name not in ("darkener", "extractor"):
                raise RecipeError(f"cycle.{name}: unknown player; allowed: darkener, extractor")
            positive(self.cycle[name], f"cycle.{name}")


# The SMM papers' optimiser settings; a recipe's ``players:`` section is merged over these.
PLAYERS = {
    "day": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 32},
    "darkener": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "clip_grad_norm": 0.1, "batch_size": 16},
    "extractor": {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 32},
}

# ------------------------------------------------------------------------------------------------ plan


def plan_schedule(kind: str, steps: dict[str, int], cycle: dict[str, int]) -> list[Phase]:
    """Expand a schedule into phases. ``steps`` maps player name to its total number of steps. A phase that changed
    the model (day; extractor in two-stage) is evaluated when it ends; the engine always evaluates the last."""
    plan = [Phase(("day",), steps.get("day", 0))]
    n_d, n_f = steps.get("darkener", 0), steps.get("extractor", 0)
    if kind == "two_stage":
        plan += [Phase(("darkener",), n_d, evaluate=False), Phase(("extractor",), n_f)]
    elif kind == "alternating":
        k_d, k_f = cycle.get("darkener", 100), cycle.get("extractor", 100)
        while n_d > 0 or n_f > 0:
            plan += [Phase(("darkener",), min(k_d, n_d), evaluate=False),
                     Phase(("extractor",), min(k_f, n_f), evaluate=False)]
            n_d, n_f = n_d - min(k_d, n_d), n_f - min(k_f, n_f)
    else:
        raise RecipeError(f"schedule: got {kind!r}; expected two_stage or alternating")
    return [p for p in plan if p.steps > 0]


# ------------------------------------------------------------------------------------------------ the method


@register_method("smm")
class SMM(Method):
    """Similarity min-max: players ``day``, ``darkener``, ``extractor`` (see the module docstring)."""

    config = SMMConfig
    players_defaults = PLAYERS

    def streams(self) -> dict[str, Stream]:
        train = self.task.train_dataset()
        images = self.task.image_dataset() if "darkener" in self.recipe.players else None
        streams = {}
        for name, cfg in self.recipe.players.items():
            if name == "darkener" and images is not None:  # D sees single images
                streams[name] = Stream(images, cfg.batch_size)
            else:
                streams[name] = Stream(train, cfg.batch_size, on_epoch=self.task.epoch_hook(name))
        return streams

    def setup(self, model: nn.Module, steps: dict[str, int]) -> None:
        o, device = self.options, self.context.device
        active = {p.players[0] for p in self.plan(steps)}
        self.model = model
        self.net = TaskNet(self.task, model)
        learned = "extractor" in active and o.adapt.darkening == "learned"  # F trains on D's images
        d = o.darkener
        if learned and "darkener" not in active and not d.checkpoint:
            raise RecipeError("adapt.darkening is 'learned' but the darkener is neither trained in this run "
                              "(players.darkener.steps/epochs are 0) nor loaded (darkener.checkpoint is empty); "
                              "give one of them, or choose adapt.darkening: none, brightness or gamma")
        if "darkener" in active and "extractor" in active and o.adapt.darkening != "learned":
            raise RecipeError(f"players.darkener trains D ({steps.get('darkener', 0)} steps), but adapt.darkening is "
                              f"{o.adapt.darkening!r}: F's views never use D; set players.darkener.steps (or "
                              "epochs) to 0, or adapt.darkening: learned")
        self.darkener = None
        if "darkener" in active or learned:
            self.darkener = DarkeningNet(width=d.width, mapping=d.mapping, iterations=d.iterations,
                                         map_scale=d.map_scale, map_upsample=d.map_upsample).to(device)
        if d.checkpoint:
            load_modules(d.checkpoint, {"darkener": self.darkener})  # None (not used here): only checked
        # physical night for F's views: per-image seeds from the global torch RNG, which checkpoints hold
        self.night = None
        if "extractor" in active and o.adapt.darkening == "night":
            self.night = NightSimulator(o.adapt.night_params())
        self.darkening_loss = DarkeningLoss(sim=d.weights.sim, exposure=d.weights.exposure, color=d.weights.color,
                                            tv=d.weights.tv, flex=d.weights.flex, exposure_norm=d.exposure_norm,
                                            tv_alpha=d.tv_alpha, exposure_patch=d.exposure_patch)
        self.byol: Optional[BYOLHeads] = None
        self.target: Optional[nn.Module] = None
        if "extractor" in active and o.adapt.byol_weight > 0:
            self.byol = self.task.build_byol_heads(model).to(device)
            self.target = copy_as_target(model)
        self._players = {}
        step_fns = {"day": self.day_step, "darkener": self.darkener_step, "extractor": self.extractor_step}
        for name in PLAYERS:
            if name not in active:
                continue
            modules = {"darkener": self.darkener} if name == "darkener" else {"model": self.net}
            if name == "extractor" and self.byol is not None:
                modules["byol"] = self.byol
            after = self.update_targets if name == "extractor" and self.byol is not None else None
            self._players[name] = Player(name, modules, step_fns[name], streams=(name,), after_step=after)
        for player in self._players.values():
            for module in player.modules.values():
                module.requires_grad_(True)
        self._freeze_targets()

    def players(self) -> list[Player]:
        return list(self._players.values())

    def plan(self, steps: dict[str, int]) -> list[Phase]:
        return plan_schedule(self.options.schedule, steps, self.options.cycle)

    def modules(self) -> dict[str, nn.Module]:
        out = {"model": self.model}
        if self.darkener is not None:
            out["darkener"] = self.darkener
        if self.byol is not None:
            out["byol"] = self.byol
            out["target"] = self.target
        return out

    def activate(self, phase: Phase, players: dict[str, Player]) -> None:
        extractor = "extractor" in phase.players
        if self.target is not None:
            self.target.train(extractor)
            if extractor and players["extractor"].steps_done == 0:
                # BYOL's target starts as a copy of the model as it enters adaptation (after any day phase)
                self.target.load_state_dict(self.model.state_dict())
        self._freeze_targets()

    def _freeze_targets(self) -> None:
        if self.target is not None:
            self.target.requires_grad_(False)
        if self.byol is not None:
            self.byol.target_projectors.requires_grad_(False)

    # --- steps -------------------------------------------------------------------------------------------------
    def day_step(self, batches, nets):
        """Day-only training (the baseline): task loss on one augmented view."""
        view = self.task.views(batches["day"], 1)[0]
        images = self.task.color_augment([view["image"]])[0]
        with self.context.autocast():
            loss = self.task.task_loss(nets["model"](images).output, view)
        return loss, {"task": loss.detach()}

    def darkener_step(self, batches, nets):
        """D's step (METHOD.md §4.2): make F's features of D(I) unlike those of I, under the regularisers R_D."""
        d = self.options.darkener
        images = self.task.views(batches["darkener"], 1)[0]["image"]
        length = images.shape[2] if images.dim() == 5 else 0  # clips: D sees their frames, F the clips
        frames = fold_clips(images) if length else images
        if d.train_size:
            frames = nn.functional.interpolate(frames, size=tuple(d.train_size), mode="bilinear",
                                               align_corners=False, antialias=True)
        lo, hi = d.exposure_range
        exposure = sample_exposure(images.shape[0], lo, hi, device=images.device)  # one per image or clip
        if length:
            exposure = clip_exposure(exposure, length)
        with self.context.autocast():
            out = nets["darkener"](frames, exposure)
            day = dark = None
            if self.darkening_loss.weights["sim"]:  # F's features only feed L_D^sim (no_dsim ablation: skip F)
                with torch.no_grad():
                    day = self.net(unfold_clips(frames, length) if length else frames, output=False).features
                dark = self.net(unfold_clips(out.image, length) if length else out.image, output=False).features
            loss, terms = self.darkening_loss(out, exposure, day, dark)
        return loss, terms

    def darken(self, images: torch.Tensor) -> torch.Tensor:
        """Darken a batch for the extractor phase with compound exposure E' (no gradient). Clips ``(B, 3, T, H, W)``
        are darkened frame by frame with one map E' per clip, shared by its frames (METHOD.md §4.1).

        ``adapt.darkening: night``: the physical night simulator instead, on the batch's device, each image (each
        clip: one night shared by its frames, noise per frame) with parameters drawn from the training distribution
        (``adapt.night`` over :data:`simmm.night.TRAINING`) under a seed drawn from the global torch RNG (the
        training RNG, which checkpoints save and restore: a resumed run draws the same nights), in float32 also when
        called under autocast (place recognition's ``darkened_loss`` is)."""
        if self.night is not None:
            with torch.autocast(images.device.type, enabled=False):
                return self.night(images)
        c = self.options.darkener.compound
        length = images.shape[2] if images.dim() == 5 else None
        exposure = compound_exposure(images.shape[0], images.shape[-2], images.shape[-1], base=c.base,
                                     pixel_std=c.pixel_std, patch_std=c.patch_std, patch_scale=c.patch_scale,
                                     frames=length, device=images.device)
        if length:
            return unfold_clips(self._darken(fold_clips(images), clip_exposure(exposure, length)), length)
        return self._darken(images, exposure)

    def _darken(self, images: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        kind = self.options.adapt.darkening
        with torch.no_grad():
            if kind == "learned":
                with self.context.autocast():
                    return self.darkener(images, exposure).image  # float32: the maps are (DarkeningNet)
            return fixed_darkening(images, exposure, kind)

    def extractor_step(self, batches, nets):
        """F's step (METHOD.md §4.3): task loss on day and darkened views, plus symmetric BYOL between them."""
        a = self.options.adapt
        with self.context.autocast():
            own = self.task.darkened_loss(nets["model"], batches["extractor"], self.darken)
        if own is not None:
            return own
        day, dark = self.task.views(batches["extractor"], 2)
        dark = {**dark, "image": self.darken(dark["image"])}
        day_images, dark_images = self.task.color_augment([day["image"], dark["image"]])
        with self.context.autocast():
            fd = nets["model"](day_images)
            fn = nets["model"](dark_images)
            task_day = self.task.task_loss(fd.output, day)
            task_dark = self.task.task_loss(fn.output, dark)
            loss = a.day_task_weight * task_day + a.dark_task_weight * task_dark
            terms = {"task_day": task_day.detach(), "task_dark": task_dark.detach()}
            if self.byol is not None:
                with torch.no_grad():
                    td = self.task.forward(self.target, day_images, output=False).byol
                    tn = self.task.forward(self.target, dark_images, output=False).byol
                byol = nets["byol"](fd.byol, fn.byol, td, tn)
                loss = loss + a.byol_weight * byol
                terms["byol"] = byol.detach()
        return loss, terms

    def update_targets(self) -> None:
        """BYOL's EMA update of the target backbone and projectors, after every extractor step."""
        momentum = self.options.adapt.momentum
        update_momentum(self.model, self.target, momentum)
        self.byol.update_target(momentum)

    # --- what a finished run shows ----------------------------------------------------------------------------
    def write_artifacts(self, run_dir: Path, eval_sets) -> list[Path]:
        """``darkening.png``: what the darkener learned, beside the physical night simulator;
        ``darkener_exposure.json``: whether D follows E (:func:`simmm.darkening.exposure_response` on the first evaluation set, held out)."""
        if self.darkener is None or not eval_sets:
            return []
        path = Path(run_dir) / "darkening.png"
        dataset = eval_sets[0].dataset
        darkening_grid(self.darkener, dataset, path, self.context.device, still=self.task.still)
        images = [self.task.still(dataset[i]) for i in range(min(len(dataset), EXPOSURE_CHECK_IMAGES))]
        rows = exposure_response(self.darkener, images)
        table = Path(run_dir) / "darkener_exposure.json"
        write_json({"eval_set": eval_sets[0].name, "images": len(images), "levels": rows,
                    "max_abs_error": max(abs(r["error"]) for r in rows)}, table)
        return [path, table]


def fixed_darkening(images: torch.Tensor, exposure: torch.Tensor, kind: str) -> torch.Tensor:
    """Fixed (not learned) darkening for the paper's ablations, aimed at the same mean exposure as D.

    ``brightness``: I·s with s = E/mean(I) (PIL's brightness enhancer is this scaling); ``gamma``: I^γ with γ
    chosen per image so that the mean of I^γ is about E (γ = log E / log mean(I)); ``none``: the image itself.
    """
    if kind == "none":
        return images
    target = exposure.flatten(1).mean(1).clamp(0.01, 0.99).view(-1, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True).clamp(0.01, 0.99)
    if kind == "brightness":
        return (images * target / mean).clamp(0, 1)
    gamma = torch.log(target) / torch.log(mean)
    return images.clamp_min(1e-6).pow(gamma).clamp(0, 1)


GRID_EXPOSURES = (0.05, 0.1, 0.2, 0.35)
EXPOSURE_CHECK_IMAGES = 256  # held-out images darkener_exposure.json is measured on
GRID_PRESETS = ("street", "urban", "dark")


@torch.no_grad()
def darkening_grid(darkener: DarkeningNet, dataset, path, device, rows: int = 4, still=None) -> None:
    """PNG grid, one row per image: day input | D(I) at several exposures | physically simulated night (presets).
    ``still(item)``: the ``(3, H, W)`` image of a dataset item (default ``item["image"]``; a video task gives a
    frame, :meth:`simmm.task.TaskAdapter.still`)."""
    from simmm.data.images import save_grid
    from simmm.night import PRESETS, simulate_night

    still = still or (lambda item: item["image"])
    step = max(1, len(dataset) // rows)
    images = [still(dataset[i * step]).to(device) for i in range(min(rows, len(dataset)))]  # sizes may differ
    darkener.eval()
    grid = []
    for i, image in enumerate(images):
        row = [image.cpu()]
        for level in GRID_EXPOSURES:
            row.append(darkener(image[None], torch.full((1,), level, device=image.device)).image[0].cpu())
        for preset in GRID_PRESETS:
            row.append(simulate_night(image[None].cpu(), PRESETS[preset], seed=i)[0])
        grid.append(row)
    labels = ["day"] + [f"D, E={e:g}" for e in GRID_EXPOSURES] + [f"sim. {p}" for p in GRID_PRESETS]
    save_grid(grid, path, labels=labels)
