"""The engine: one training loop that runs the similarity min-max game (and any other game of players).

A run is a game between *players*. A player owns some modules, one optimiser, one LR schedule and a step
function that returns its loss. The *plan* is the list of (player, steps) segments the schedule expands to:

* ``two_stage`` (default, the SMM paper's best): ``day`` (optional day-only training of F with the task loss),
  then ``darkener`` for N_D steps against the frozen day model, then ``extractor`` for N_F steps with D frozen.
* ``alternating``: after the optional ``day`` segment, repeat (darkener for k_D steps, extractor for k_F steps)
  until both have had their steps.

The engine owns the loop, AMP, clipping, the BYOL momentum update, evaluation, best/last checkpoints, exact
resume, the NaN/Inf guard and logging. The task adapter (:mod:`simmm.task`) owns everything task-specific.
"""
from __future__ import annotations

import math
import signal
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from simmm import dist
from simmm.byol import copy_as_target, update_momentum
from simmm.checkpoint import load_checkpoint, load_module_state, save_checkpoint
from simmm.darkening import DarkeningNet
from simmm.darkening_losses import DarkeningLoss
from simmm.data.loader import next_batch
from simmm.data.sampler import ResumableBatchSampler
from simmm.errors import CheckpointError, RecipeError, SimmmError
from simmm.exposure import compound_exposure, sample_exposure
from simmm.logger import RunLogger, write_json
from simmm.recipe import PlayerConfig, Recipe, recipe_to_dict, save_recipe
from simmm.seed import get_rng_state, seed_everything, set_rng_state
from simmm.task import TaskAdapter, get_task


def resolve_amp(amp: str, device: torch.device) -> str:
    """The autocast a recipe's ``amp`` means on ``device``: ``"bf16"``, ``"fp16"`` or ``"off"``. ``auto`` is bf16 on
    a GPU that has it; on CPU it is always off (AMP is a CUDA feature here; CPU runs stay float32 and bitwise
    repeatable)."""
    if device.type != "cuda":
        return "off"
    if amp == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "off"
    return amp


# ------------------------------------------------------------------------------------------------ schedules


@dataclass
class Segment:
    """``steps`` consecutive steps of one player."""

    player: str
    steps: int


def plan_schedule(kind: str, steps: dict[str, int], cycle: dict[str, int]) -> list[Segment]:
    """Expand a schedule into segments. ``steps`` maps player name to its total number of steps."""
    plan = [Segment("day", steps.get("day", 0))]
    n_d, n_f = steps.get("darkener", 0), steps.get("extractor", 0)
    if kind == "two_stage":
        plan += [Segment("darkener", n_d), Segment("extractor", n_f)]
    elif kind == "alternating":
        k_d, k_f = cycle.get("darkener", 100), cycle.get("extractor", 100)
        while n_d > 0 or n_f > 0:
            plan += [Segment("darkener", min(k_d, n_d)), Segment("extractor", min(k_f, n_f))]
            n_d, n_f = n_d - min(k_d, n_d), n_f - min(k_f, n_f)
    else:
        raise SimmmError(f"schedule: got {kind!r}; expected two_stage or alternating")
    return [s for s in plan if s.steps > 0]


def lr_lambda(cfg: PlayerConfig, total: int) -> Callable[[int], float]:
    """The LR multiplier of a player's schedule at its step ``t`` (of ``total``)."""
    total = max(total, 1)
    if cfg.lr_schedule == "constant":
        return lambda t: 1.0
    if cfg.lr_schedule == "multistep":
        bounds = [round(m * total) for m in cfg.milestones]
        return lambda t: cfg.gamma ** sum(t >= b for b in bounds)
    if cfg.lr_schedule == "poly":
        return lambda t: max(0.0, 1.0 - t / total) ** cfg.power
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))


def build_optimizer(cfg: PlayerConfig, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


# ------------------------------------------------------------------------------------------------ players


@dataclass
class Player:
    """Modules trained together with one optimiser and one LR schedule, and the step function of their loss."""

    name: str
    modules: dict[str, nn.Module]
    config: PlayerConfig
    total_steps: int
    step_fn: Callable[[dict], tuple[torch.Tensor, dict[str, float]]]
    optimizer: Optional[torch.optim.Optimizer] = None
    scheduler: Optional[torch.optim.lr_scheduler.LambdaLR] = None
    params: list = field(default_factory=list)

    def setup(self) -> None:
        self.params = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.config, self.params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.config, self.total_steps))


def set_trainable(module: nn.Module, on: bool) -> None:
    """Trainable: train mode with gradients; frozen: eval mode, ``requires_grad_(False)``."""
    module.train(on)
    module.requires_grad_(on)


class BadStepsError(SimmmError):
    pass


class Interrupted(KeyboardInterrupt):
    """A stop asked for by SIGINT/SIGTERM, raised at the next step boundary after the state was saved."""


# ------------------------------------------------------------------------------------------------ engine


class Engine:
    """Runs a recipe: builds the task's model and data, the players, and trains them by the schedule.

    >>> engine = Engine(recipe)          # or Engine(recipe, adapter=MyTask(recipe))
    >>> engine.fit()                     # resume=True continues run_dir/checkpoints/last.pt exactly
    >>> engine.evaluate()                # {'day_test/top1': ..., 'night_test/top1': ...}
    """

    def __init__(self, recipe: Recipe, adapter: Optional[TaskAdapter] = None, device: Optional[str] = None,
                 run_dir: Optional[str | Path] = None) -> None:
        self.recipe = recipe
        self.adapter = adapter if adapter is not None else get_task(recipe.task)(recipe)
        self.device = torch.device(device or self._pick_device(recipe.device))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # training crops have one size: let cuDNN time its kernels once
        self.run_dir = Path(run_dir) if run_dir is not None else recipe.run_dir
        self.callbacks: list[Callable[["Engine", int], None]] = []
        seed_everything(recipe.seed)

        # data first: every bad input fails here, before any model is built or step is taken
        self.train_set = self.adapter.train_dataset()
        self.eval_sets = self.adapter.eval_sets()
        self.steps = {name: self._player_steps(cfg) for name, cfg in recipe.players.items()}
        self.plan = plan_schedule(recipe.schedule, self.steps, recipe.cycle)
        self.total_steps = sum(s.steps for s in self.plan)
        active = {s.player for s in self.plan}

        self.model = self.adapter.build_model().to(self.device)
        if recipe.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if recipe.init:
            self.load_weights(recipe.init, modules=("model",))
        learned = "extractor" in active and recipe.adapt.darkening == "learned"  # F trains on D's images
        uses_darkener = "darkener" in active or learned
        d = recipe.darkener
        if learned and "darkener" not in active and not d.checkpoint:
            raise RecipeError("adapt.darkening is 'learned' but the darkener is neither trained in this run "
                              "(players.darkener.steps/epochs are 0) nor loaded (darkener.checkpoint is empty); "
                              "give one of them, or choose adapt.darkening: none, brightness or gamma")
        self.darkener = DarkeningNet(width=d.width, mapping=d.mapping, iterations=d.iterations,
                                     map_scale=d.map_scale).to(self.device) if uses_darkener else None
        if d.checkpoint:
            self.load_weights(d.checkpoint, modules=("darkener",))
        self.darkening_loss = DarkeningLoss(sim=d.weights.sim, exposure=d.weights.exposure, color=d.weights.color,
                                            tv=d.weights.tv, flex=d.weights.flex, exposure_norm=d.exposure_norm,
                                            tv_alpha=d.tv_alpha)
        self.byol = self.target = None
        if "extractor" in active and recipe.adapt.byol_weight > 0:
            self.byol = self.adapter.build_byol_heads(self.model).to(self.device)
            self.target = copy_as_target(self.model)

        self.players: dict[str, Player] = {}
        step_fns = {"day": self.day_step, "darkener": self.darkener_step, "extractor": self.extractor_step}
        for name in ("day", "darkener", "extractor"):
            if name not in active:
                continue
            modules = {"darkener": {"darkener": self.darkener}}.get(name, {"model": self.model})
            if name == "extractor" and self.byol is not None:
                modules = {**modules, "byol": self.byol}
            self.players[name] = Player(name, modules, recipe.players[name], self.steps[name], step_fns[name])
        for player in self.players.values():
            for module in player.modules.values():
                module.requires_grad_(True)
        self._freeze_targets()
        for player in self.players.values():
            player.setup()

        amp = resolve_amp(recipe.amp, self.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
        self.global_step = 0
        self.consumed: dict[str, int] = {name: 0 for name in self.players}
        self.bad_steps = 0
        self.best: dict = {}
        self.history: list[dict] = []
        self._iters: dict[str, object] = {}
        self.logger: Optional[RunLogger] = None
        self._stop_requested = False
        # the generators' state right after building: fit() starts from it, whatever ran in between
        self._start_rng = get_rng_state()

    # ----------------------------------------------------------------------------------------------- setup
    @staticmethod
    def _pick_device(name: str) -> str:
        if name == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise SimmmError(f"device: recipe asks for {name!r} but CUDA is not available on this machine; "
                             "use device: auto or cpu")
        return name

    def _player_steps(self, cfg: PlayerConfig) -> int:
        if cfg.steps:
            return cfg.steps
        per_epoch = len(self.train_set) // (cfg.batch_size * dist.world_size())
        if cfg.epochs and per_epoch == 0:
            raise SimmmError(f"the training set has {len(self.train_set)} samples, fewer than one batch of "
                             f"{cfg.batch_size}; lower batch_size")
        return int(round(cfg.epochs * per_epoch))

    def _freeze_targets(self) -> None:
        if self.target is not None:
            self.target.requires_grad_(False)
        if self.byol is not None:
            self.byol.target_projectors.requires_grad_(False)

    def signature(self) -> dict:
        return self.adapter.signature()

    # ----------------------------------------------------------------------------------------------- data
    def _batches(self, player: str):
        """The player's batch stream, restarted exactly at its consumed position on resume."""
        if player not in self._iters:
            cfg = self.players[player].config
            sampler = ResumableBatchSampler(len(self.train_set), cfg.batch_size,
                                            seed=self.recipe.seed + 1000 * list(self.players).index(player),
                                            rank=dist.rank(), world_size=dist.world_size())
            sampler.load_state_dict({"consumed_batches": self.consumed[player]})
            loader = torch.utils.data.DataLoader(self.train_set, batch_sampler=sampler,
                                                 num_workers=self.recipe.num_workers,
                                                 pin_memory=self.device.type == "cuda",
                                                 persistent_workers=self.recipe.num_workers > 0,
                                                 # its own generator: making an iterator must not draw from
                                                 # the global RNG, or a resumed run would diverge
                                                 generator=torch.Generator().manual_seed(self.recipe.seed))
            self._iters[player] = iter(loader)
        batch = next_batch(self._iters[player], player)
        self.consumed[player] += 1
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ----------------------------------------------------------------------------------------------- steps
    def day_step(self, batch: dict):
        """Day-only training (the baseline): task loss on one augmented view."""
        view = self.adapter.views(batch, 1)[0]
        images = self.adapter.color_augment([view["image"]])[0]
        with self._autocast():
            loss = self.adapter.task_loss(self.adapter.forward(self.model, images).output, view)
        return loss, {"task": loss.detach()}

    def darkener_step(self, batch: dict):
        """D's step (DESIGN §4.2): make F's features of D(I) unlike those of I, under the regularisers R_D."""
        images = self.adapter.views(batch, 1)[0]["image"]
        if self.recipe.darkener.train_size:
            images = nn.functional.interpolate(images, size=tuple(self.recipe.darkener.train_size),
                                               mode="bilinear", align_corners=False, antialias=True)
        lo, hi = self.recipe.darkener.exposure_range
        exposure = sample_exposure(images.shape[0], lo, hi, device=images.device)
        with self._autocast():
            out = self.darkener(images, exposure)
            day = dark = None
            if self.darkening_loss.weights["sim"]:  # F's features only feed L_D^sim (no_dsim ablation: skip F)
                with torch.no_grad():
                    day = self.adapter.forward(self.model, images, output=False).features
                dark = self.adapter.forward(self.model, out.image, output=False).features
            loss, terms = self.darkening_loss(out, exposure, day, dark)
        return loss, terms

    def darken(self, images: torch.Tensor) -> torch.Tensor:
        """Darken a batch for the extractor phase with compound exposure E' (no gradient)."""
        c = self.recipe.darkener.compound
        exposure = compound_exposure(images.shape[0], images.shape[-2], images.shape[-1], base=c.base,
                                     pixel_std=c.pixel_std, patch_std=c.patch_std, patch_scale=c.patch_scale,
                                     device=images.device)
        kind = self.recipe.adapt.darkening
        with torch.no_grad():
            if kind == "learned":
                with self._autocast():
                    return self.darkener(images, exposure).image  # float32: the maps are (DarkeningNet)
            return fixed_darkening(images, exposure, kind)

    def extractor_step(self, batch: dict):
        """F's step (DESIGN §4.3): task loss on day and darkened views, plus symmetric BYOL between them."""
        a = self.recipe.adapt
        day, dark = self.adapter.views(batch, 2)
        dark = {**dark, "image": self.darken(dark["image"])}
        day_images, dark_images = self.adapter.color_augment([day["image"], dark["image"]])
        with self._autocast():
            fd = self.adapter.forward(self.model, day_images)
            fn = self.adapter.forward(self.model, dark_images)
            task_day = self.adapter.task_loss(fd.output, day)
            task_dark = self.adapter.task_loss(fn.output, dark)
            loss = a.day_task_weight * task_day + a.dark_task_weight * task_dark
            terms = {"task_day": task_day.detach(), "task_dark": task_dark.detach()}
            if self.byol is not None:
                with torch.no_grad():
                    td = self.adapter.forward(self.target, day_images, output=False).byol
                    tn = self.adapter.forward(self.target, dark_images, output=False).byol
                byol = self.byol.loss(fd.byol, fn.byol, td, tn)
                loss = loss + a.byol_weight * byol
                terms["byol"] = byol.detach()
        return loss, terms

    def _after_step(self, player: str) -> None:
        if player == "extractor" and self.byol is not None:
            update_momentum(self.model, self.target, self.recipe.adapt.momentum)
            self.byol.update_target(self.recipe.adapt.momentum)

    def _optimize(self, player: Player, loss: torch.Tensor) -> bool:
        """Backward, clip, step. Returns False (and leaves the weights alone) when loss or gradient is not finite.

        The gradients are released as soon as the step is taken: kept, they would sit through the next forward and
        add one copy of the trained weights to the peak memory."""
        try:
            if not torch.isfinite(loss.detach()).all():
                return False
            self.scaler.scale(loss).backward()
            if self.scaler.is_enabled():
                self.scaler.unscale_(player.optimizer)
            clip = player.config.clip_grad_norm
            norm = torch.nn.utils.clip_grad_norm_(player.params, clip if clip is not None else float("inf"))
            if not self.scaler.is_enabled() and not torch.isfinite(norm):
                return False
            self.scaler.step(player.optimizer)
            self.scaler.update()
            player.scheduler.step()
            return True
        finally:
            player.optimizer.zero_grad(set_to_none=True)

    def _release_finished_players(self, index: int) -> None:
        """Free what players with no steps left from plan segment ``index`` on still hold: their optimiser state
        (after the day phase, the day optimiser's copy of the model's size is dead weight) and their batch
        stream (with ``num_workers``, its worker processes)."""
        remaining = {segment.player for segment in self.plan[index:]}
        for name, player in self.players.items():
            if name not in remaining:
                player.optimizer.state.clear()
                self._iters.pop(name, None)

    def _activate(self, name: str) -> None:
        """Train the named player's modules; freeze everything else (DESIGN §3.1)."""
        frozen = [self.model] + ([self.darkener] if self.darkener is not None else [])
        frozen += [self.byol] if self.byol is not None else []
        for module in frozen:
            set_trainable(module, False)
        for module in self.players[name].modules.values():
            set_trainable(module, True)
        if self.target is not None:
            self.target.train(name == "extractor")
        self._freeze_targets()

    # ----------------------------------------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> dict:
        """Train by the plan; return the final evaluation metrics."""
        ckpt_dir = self.run_dir / "checkpoints"
        if resume:
            self.restore(ckpt_dir / "last.pt")
        elif (ckpt_dir / "last.pt").exists():
            raise SimmmError(f"{self.run_dir} already holds a run (checkpoints/last.pt); resume it with --resume, "
                             "or choose another output_dir / name")
        else:
            set_rng_state(self._start_rng)
        if dist.is_main():
            save_recipe(self.recipe, self.run_dir / "config.yaml")
        self.logger = RunLogger(self.run_dir, self.total_steps, self.recipe.log.tensorboard,
                                self.recipe.log.progress, start_step=self.global_step)
        # Ctrl-C / SIGTERM only *ask* to stop: the step in flight finishes, the state is saved at that step
        # boundary, then the run stops (a signal landing mid-step must not save half an optimiser update).
        # A second signal stops at once, keeping the last checkpoint on disk.
        previous = {}
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._request_stop)
        try:
            self._loop(ckpt_dir)
        except Interrupted:
            self.save(ckpt_dir / "last.pt")
            self.logger.message(f"[yellow]interrupted: saved step {self.global_step} to {ckpt_dir / 'last.pt'}; "
                                "continue with --resume")
            raise
        except KeyboardInterrupt:
            self.logger.message("[yellow]stopped at once; the last checkpoint on disk is "
                                f"{ckpt_dir / 'last.pt'}; continue with --resume")
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.logger.close()
        return self.history[-1]["metrics"] if self.history else {}

    def _loop(self, ckpt_dir: Path) -> None:
        r = self.recipe
        start = 0
        for index, segment in enumerate(self.plan):
            end = start + segment.steps
            if self.global_step >= end:
                start = end
                continue
            self._activate(segment.player)
            self._release_finished_players(index)
            if segment.player == "extractor" and self.target is not None and self.consumed["extractor"] == 0:
                # BYOL's target starts as a copy of the model as it enters adaptation (after any day phase)
                self.target.load_state_dict(self.model.state_dict())
            player = self.players[segment.player]
            while self.global_step < end:
                batch = self._batches(segment.player)
                loss, terms = player.step_fn(batch)
                ok = self._optimize(player, loss)
                self.global_step += 1
                if ok:
                    self.bad_steps = 0
                    self._after_step(segment.player)
                else:
                    self.bad_steps += 1
                    self.logger.message(f"[red]step {self.global_step} ({segment.player}): non-finite loss or "
                                        f"gradient, step skipped ({self.bad_steps} in a row)")
                    if self.bad_steps >= r.max_bad_steps:
                        self.save(ckpt_dir / "last.pt")
                        raise BadStepsError(
                            f"stopped at step {self.global_step}: {self.bad_steps} steps in a row of player "
                            f"'{segment.player}' had a non-finite loss or gradient (last terms: "
                            f"{_fmt(terms)}). Lower players.{segment.player}.lr, set a clip_grad_norm, or check "
                            "the data; the last good state is in checkpoints/last.pt")
                values = {"loss": float(loss.detach()), **{k: float(v) for k, v in terms.items()},
                          "lr": player.optimizer.param_groups[0]["lr"]}
                if self.global_step % r.log.every == 0 or self.global_step == end:
                    self.logger.log(self.global_step, segment.player, values)
                self.logger.advance(self.global_step, segment.player, values)
                last_of_phase = self.global_step == end and self._phase_ends(index)
                if (r.eval.every and self.global_step % r.eval.every == 0) or last_of_phase:
                    self._evaluate_and_keep_best(ckpt_dir, segment.player)
                if self.global_step % r.checkpoint.every == 0 or self.global_step == end:
                    self.save(ckpt_dir / "last.pt")
                for callback in self.callbacks:
                    callback(self, self.global_step)
                if self._stop_requested:
                    raise Interrupted()
            start = end

    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt()
        self._stop_requested = True

    def request_stop(self) -> None:
        """Stop at the end of the current step, saving the state first (what Ctrl-C and SIGTERM do)."""
        self._stop_requested = True

    def _phase_ends(self, index: int) -> bool:
        """Evaluate when a phase that changed the model ends (day; extractor in two-stage), and at the end."""
        player = self.plan[index].player
        if index == len(self.plan) - 1 or player == "day":
            return True
        return self.recipe.schedule == "two_stage" and player != "darkener"

    def _evaluate_and_keep_best(self, ckpt_dir: Path, phase: str) -> None:
        metrics = self.evaluate()
        self.history.append({"step": self.global_step, "phase": phase, "metrics": metrics})
        self.logger.log(self.global_step, "eval", metrics)
        self.logger.message(f"step {self.global_step} ({phase}) " + _fmt(metrics))
        if dist.is_main():
            write_json(self.history, self.run_dir / "eval.json")
        monitor = self.recipe.eval.monitor
        if monitor:
            if monitor not in metrics:
                raise SimmmError(f"eval.monitor: {monitor!r} is not a metric of this run; "
                                 f"available: {', '.join(metrics)}")
            value = metrics[monitor]
            better = (not self.best or (value > self.best["value"] if self.recipe.eval.mode == "max"
                                        else value < self.best["value"]))
            if better:
                self.best = {"metric": monitor, "value": value, "step": self.global_step}
                self.save(ckpt_dir / "best.pt")

    # ----------------------------------------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every evaluation set of the task, with the model in eval mode."""
        modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        metrics: dict[str, float] = {}
        try:
            for eval_set in self.eval_sets:
                loader = torch.utils.data.DataLoader(eval_set.dataset, batch_size=self.recipe.eval.batch_size,
                                                     shuffle=False, num_workers=self.recipe.num_workers)
                with self._autocast():
                    metrics.update(self.adapter.evaluate(self.model, loader, eval_set))
        finally:
            for module, mode in modes.items():
                module.training = mode
        return metrics

    # ----------------------------------------------------------------------------------------------- state
    def modules(self) -> dict[str, nn.Module]:
        out = {"model": self.model}
        if self.darkener is not None:
            out["darkener"] = self.darkener
        if self.byol is not None:
            out["byol"] = self.byol
            out["target"] = self.target
        return out

    def state_dict(self) -> dict:
        return {
            "signature": self.signature(),
            "recipe": recipe_to_dict(self.recipe),
            "global_step": self.global_step,
            "total_steps": self.total_steps,
            "consumed": dict(self.consumed),
            "bad_steps": self.bad_steps,
            "best": dict(self.best),
            "history": list(self.history),
            "modules": {name: m.state_dict() for name, m in self.modules().items()},
            "optimizers": {name: p.optimizer.state_dict() for name, p in self.players.items()},
            "schedulers": {name: p.scheduler.state_dict() for name, p in self.players.items()},
            "scaler": self.scaler.state_dict(),
            "rng": get_rng_state(),
        }

    def save(self, path: Path) -> None:
        if dist.is_main():
            save_checkpoint(self.state_dict(), path)
        dist.barrier()

    def restore(self, path: Path) -> None:
        """Continue exactly where ``path`` stopped: weights, optimisers, schedules, scaler, RNGs, data position."""
        state = load_checkpoint(path, signature=self.signature(), map_location=self.device)
        changed = _recipe_changes(state["recipe"], recipe_to_dict(self.recipe))
        if changed:
            raise CheckpointError(f"checkpoint {path} was written with another recipe; changed keys: "
                                  f"{', '.join(changed[:8])}. Resume with the recipe of that run "
                                  f"({self.run_dir / 'config.yaml'}) or start a new run")
        for name, module in self.modules().items():
            load_module_state(module, state["modules"][name], path, name)
        for name, player in self.players.items():
            player.optimizer.load_state_dict(state["optimizers"][name])
            player.scheduler.load_state_dict(state["schedulers"][name])
        self.scaler.load_state_dict(state["scaler"])
        self.global_step = state["global_step"]
        self.consumed = dict(state["consumed"])
        self.bad_steps = state["bad_steps"]
        self.best = dict(state["best"])
        self.history = list(state["history"])
        self._iters.clear()
        set_rng_state(state["rng"])

    def load_weights(self, path: str | Path, modules=("model",)) -> None:
        """Initialise modules (``model``, ``darkener``) from a simmm checkpoint of a compatible run."""
        needs_model = "model" in modules
        state = load_checkpoint(path, signature=self.signature() if needs_model else None, map_location="cpu")
        for name in modules:
            module = self.model if name == "model" else self.darkener
            if name not in state.get("modules", {}):
                raise CheckpointError(f"checkpoint {path} holds no '{name}' weights "
                                      f"(it has: {', '.join(state.get('modules', {}))})")
            if module is not None:
                load_module_state(module, state["modules"][name], path, name)


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


# keys that may differ between a run and its resumption without changing what it computes
_RESUME_FREE = ("log.", "eval.every", "eval.batch_size", "num_workers", "device", "checkpoint.every")


def _recipe_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _recipe_changes(a, b, path + ".")
        elif a != b and not any(path.startswith(free) for free in _RESUME_FREE):
            keys.append(path)
    return keys


def _fmt(values: dict) -> str:
    return " ".join(f"{k}={float(v):.4g}" for k, v in values.items())


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
