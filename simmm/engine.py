"""The engine: one training loop for every method. It never names a network, a loss or a player.

A method (:mod:`simmm.method`; SMM in :mod:`simmm.methods.smm`) declares its players, data streams, plan of phases
and checkpointed modules; the task adapter (:mod:`simmm.task`) supplies model, data, loss and metrics. The engine
owns the rest: the loop over the phases, one resumable rank-sharded sampler per data stream, optimisers and LR
schedules from the recipe's ``players:`` section, backward with AMP, clipping and the NaN/Inf guard (one place:
:meth:`Engine._optimize`), evaluation (sharded across processes and reduced), best/last checkpoints, exact resume,
signals, logging, seeding, and DistributedDataParallel under torchrun (each player's modules wrapped while it trains).
"""
from __future__ import annotations

import math
import signal
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from simmm import dist
from simmm.checkpoint import load_checkpoint, load_module_state, load_modules, save_checkpoint
from simmm.data.loader import next_batch, worker_death_error, worker_died
from simmm.data.sampler import ResumableBatchSampler
from simmm.enhance import Enhancer, build_enhancer
from simmm.errors import CheckpointError, RecipeError, SimmmError
from simmm.logger import RunLogger, write_json
from simmm.method import Context, Method, Phase, Player, get_method, set_trainable
from simmm.recipe import PlayerConfig, Recipe, recipe_changes, recipe_to_dict, save_recipe
from simmm.seed import get_rng_state, seed_everything, set_rng_state
from simmm.task import TaskAdapter, get_task

__all__ = ["BadStepsError", "Engine", "Interrupted", "build_optimizer", "lr_lambda", "resolve_amp"]


def resolve_amp(amp: str, device: torch.device) -> str:
    """The autocast a recipe's ``amp`` means on ``device``: ``"bf16"``, ``"fp16"`` or ``"off"``. ``auto`` is bf16 on
    a GPU that has it; on CPU it is always off (AMP is a CUDA feature here; CPU runs stay float32 and bitwise
    repeatable)."""
    if device.type != "cuda":
        return "off"
    if amp == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "off"
    return amp



# ------------------------------------------------------------------------------------------------ optimisers


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
    """The player's optimiser over ``params`` (parameters, or ``(name, parameter)`` pairs). With
    ``cfg.lr_mult`` (name pattern → multiplier, fnmatch patterns over the pairs' names), the parameters a pattern
    matches form a group of their own at ``lr × multiplier`` (GeM's p at 10×); the rest stay the first group. With
    ``cfg.no_decay`` (name patterns) the parameters they match take no weight decay (GeM's p in cirtorch)."""
    params = [p for p in params if (p[1] if isinstance(p, tuple) else p).requires_grad]
    if cfg.lr_mult or cfg.no_decay:
        params = param_groups(params, cfg.lr, cfg.lr_mult, cfg.no_decay)
    else:
        params = [p[1] if isinstance(p, tuple) else p for p in params]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def param_groups(named: list, lr: float, lr_mult: dict[str, float], no_decay=()) -> list[dict]:
    """Optimiser groups: the parameters no pattern of ``lr_mult`` matches (first group, at ``lr``), then one group
    per pattern at ``lr × multiplier`` (a parameter joins the first pattern it matches). Parameters matching a
    pattern of ``no_decay`` leave their group for one of their own beside it, with ``weight_decay`` 0 (the others
    keep the optimiser's). A pattern of either that matches no parameter is an error naming it."""
    from fnmatch import fnmatchcase

    def refuse(key: str, pattern: str) -> None:
        names = ", ".join(name for name, _ in named[:6])
        raise SimmmError(f"{key}: pattern {pattern!r} matches no trainable parameter of the player "
                         f"(names look like: {names}, ...)")

    groups = {(pattern, decays): [] for pattern in (None, *lr_mult) for decays in (True, False)}
    for name, p in named:
        pattern = next((pat for pat in lr_mult if fnmatchcase(name, pat)), None)
        groups[pattern, not any(fnmatchcase(name, pat) for pat in no_decay)].append(p)
    for pattern in lr_mult:  # also a pattern whose parameters an earlier one took: its multiplier would never apply
        if not groups[pattern, True] and not groups[pattern, False]:
            refuse("lr_mult", pattern)
    for pattern in no_decay:
        if not any(fnmatchcase(name, pattern) for name, _ in named):
            refuse("no_decay", pattern)
    return [{"params": ps, "lr": lr * (lr_mult[pattern] if pattern is not None else 1.0),
             **({} if decays else {"weight_decay": 0.0})}
            for (pattern, decays), ps in groups.items()
            if ps or (pattern, decays) == (None, True)]  # the first group stays, empty or not (as before no_decay)


class BadStepsError(SimmmError):
    pass


class Interrupted(KeyboardInterrupt):
    """A stop asked for by SIGINT/SIGTERM, raised at the next step boundary after the state was saved."""


# ------------------------------------------------------------------------------------------------ engine


class Engine:
    """Runs a recipe: builds the task's model and data and the method's players, and trains them by the plan.

    >>> engine = Engine(recipe)          # or Engine(recipe, adapter=MyTask(recipe))
    >>> engine.fit()                     # resume=True continues run_dir/checkpoints/last.pt exactly
    >>> engine.evaluate()                # {'day_test/top1': ..., 'night_test/top1': ...}
    >>> Engine(recipe, train=False)      # evaluation only: no training data read, no player trains
    """

    def __init__(self, recipe: Recipe, adapter: Optional[TaskAdapter] = None, device: Optional[str] = None,
                 run_dir: Optional[str | Path] = None, train: bool = True) -> None:
        self.recipe = recipe
        dist.init_from_env(device or recipe.device)
        self.adapter = adapter if adapter is not None else get_task(recipe.task)(recipe)
        self.device = torch.device(device or self._pick_device(recipe.device))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # training crops have one size: let cuDNN time its kernels once
        self.run_dir = Path(run_dir) if run_dir is not None else recipe.run_dir
        self.callbacks: list[Callable[["Engine", int], None]] = []
        seed_everything(recipe.seed)
        amp = resolve_amp(recipe.amp, self.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.method: Method = get_method(recipe.method)(recipe, self.adapter, Context(self.device, self._autocast))

        # data first: every bad input fails here, before any model is built or step is taken
        streams = self.method.streams() if train else {}
        self.eval_sets = self.method.eval_sets(self.adapter.eval_sets())
        self.enhancer = enhancer_for(recipe, self.eval_sets)  # test-time enhancement: its weights read now
        reads = self.method.player_streams()
        self.steps = {name: self._player_steps(name, cfg, [streams[s] for s in reads.get(name, ())]) if train else 0
                      for name, cfg in recipe.players.items()}

        self.model = self.adapter.build_model().to(self.device)
        if recipe.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if recipe.init:
            load_modules(recipe.init, {"model": self.model}, signature=self.signature())
        self.method.setup(self.model, self.steps)
        if recipe.sync_bn and dist.is_distributed():
            for module in self.method.modules().values():
                dist.convert_sync_batchnorm(module, self.device)
        self.plan: list[Phase] = self.method.plan(self.steps)
        self.total_steps = sum(p.steps for p in self.plan)
        active = {name for phase in self.plan for name in phase.players}
        self.players: dict[str, Player] = {p.name: p for p in self.method.players() if p.name in active}
        # each stream read by a player of this run gets its own sampler, seeded by its place in this list
        self.streams = {name: stream for name, stream in streams.items()
                        if any(name in p.streams for p in self.players.values())}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        for name, player in self.players.items():
            cfg = recipe.players[name]
            self.optimizers[name] = build_optimizer(cfg, player.named_parameters() if cfg.lr_mult
                                                    else player.parameters())
            total = sum(phase.steps for phase in self.plan if name in phase.players)  # the player's steps
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(self.optimizers[name], lr_lambda(cfg, total))
        self._nets: dict[int, nn.Module] = {}  # id(module) -> its DistributedDataParallel wrapper
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
        self.global_step = 0
        self.consumed: dict[str, int] = {name: 0 for name in self.streams}
        self.bad_steps = 0
        self.best: dict = {}
        self.history: list[dict] = []
        self._iters: dict[str, object] = {}
        self._epochs: dict[str, int] = {}  # the epoch each stream with Stream.on_epoch was prepared for
        self.logger: Optional[RunLogger] = None
        self._stop_requested = False
        self.artifacts: list[Path] = []  # what the method drew of the finished run (write_report)
        # the generators' state right after building: fit() starts from it, whatever ran in between. Each process
        # draws its own augmentation: ranks > 0 start from their own seed (rank 0's stream is the 1-process one)
        if dist.rank() > 0:
            seed_everything(recipe.seed + 1_000_003 * dist.rank())
        self._start_rng = get_rng_state()

    # ----------------------------------------------------------------------------------------------- setup
    @staticmethod
    def _pick_device(name: str) -> str:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise SimmmError(f"device: recipe asks for {name!r} but CUDA is not available on this machine; "
                             "use device: auto or cpu")
        if name == "cuda" and dist.is_distributed():
            return f"cuda:{dist.local_rank()}"
        return name

    def _player_steps(self, name: str, cfg: PlayerConfig, streams: list) -> int:
        if cfg.steps or not cfg.epochs:
            return cfg.steps
        if not streams:
            raise SimmmError(f"players.{name}.epochs: this player reads no data stream of its own; give steps")
        dataset, batch = streams[0].dataset, streams[0].batch_size
        per_epoch = len(dataset) // (batch * dist.world_size())
        if per_epoch == 0:
            raise SimmmError(f"players.{name}: the training set has {len(dataset)} samples, fewer than one batch "
                             f"of {batch} on each of {dist.world_size()} process(es); lower batch_size")
        return int(round(cfg.epochs * per_epoch))

    def signature(self) -> dict:
        return self.adapter.signature()

    # ----------------------------------------------------------------------------------------------- data
    def _sampler(self, stream: str) -> ResumableBatchSampler:
        s = self.streams[stream]
        return ResumableBatchSampler(len(s.dataset), s.batch_size,
                                     seed=self.recipe.seed + 1000 * list(self.streams).index(stream),
                                     rank=dist.rank(), world_size=dist.world_size())

    def _batch(self, stream: str) -> dict:
        """The next batch of a stream, restarted exactly at its consumed position on resume."""
        s = self.streams[stream]
        if s.on_epoch is not None:  # the stream's items depend on its epoch: prepare it, then load it afresh
            epoch = self.consumed[stream] // self._sampler(stream).batches_per_epoch
            if self._epochs.get(stream) != epoch:
                self._iters.pop(stream, None)
                s.on_epoch(epoch)
                self._epochs[stream] = epoch
        if stream not in self._iters:
            sampler = self._sampler(stream)
            sampler.load_state_dict({"consumed_batches": self.consumed[stream]})
            if s.on_epoch is not None:  # no prefetching into the next epoch, whose items are not prepared yet
                sampler.total_batches = (self._epochs[stream] + 1) * sampler.batches_per_epoch
            loader = torch.utils.data.DataLoader(s.dataset, batch_sampler=sampler,
                                                 num_workers=self.recipe.num_workers,
                                                 pin_memory=self.device.type == "cuda",
                                                 persistent_workers=self.recipe.num_workers > 0,
                                                 # its own generator: making an iterator must not draw from
                                                 # the global RNG, or a resumed run would diverge
                                                 generator=torch.Generator().manual_seed(self.recipe.seed))
            self._iters[stream] = iter(loader)
        batch = next_batch(self._iters[stream], stream)
        self.consumed[stream] += 1
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ----------------------------------------------------------------------------------------------- steps
    def _nets_of(self, player: Player) -> dict[str, nn.Module]:
        """The player's modules as they train: in a distributed run, each wrapped in DistributedDataParallel the
        first time a player trains it (its parameters then require gradients). A module trained by several players
        (SMM's model: day, then extractor) has one wrapper: two would both hook its gradients and reduce them twice."""
        if not dist.is_distributed():
            return player.modules
        ids = [self.device.index] if self.device.type == "cuda" else None
        nets = {}
        for name, module in player.modules.items():
            if id(module) not in self._nets and any(p.requires_grad for p in module.parameters()):
                self._nets[id(module)] = nn.parallel.DistributedDataParallel(module, device_ids=ids)
            nets[name] = self._nets.get(id(module), module)
        return nets

    def _step(self, player: Player, batches: Optional[dict] = None, others: tuple = ()) -> tuple[bool, torch.Tensor,
                                                                                                  dict]:
        """One step of one player: its batches, its loss, the update. Returns (updated?, loss, terms). ``others``:
        the players stepping on the same iteration; their weights take no gradient from this step (Lightning's
        ``toggle_optimizer``: a generator's loss passes through the discriminators without training them)."""
        if batches is None:
            batches = {stream: self._batch(stream) for stream in player.streams}
        for other in others:
            for module in other.modules.values():
                module.requires_grad_(False)
        # a skipped step must leave no trace: its forward passes already moved the batch-norm statistics (to NaN,
        # when the forward itself went non-finite)
        buffers = list({id(b): b for m in self.method.modules().values() for b in m.buffers()}.values())
        saved = [b.clone() for b in buffers]
        loss, terms = player.step(batches, self._nets_of(player))
        player.steps_done += 1
        ok = self._optimize(player, loss)
        if ok and player.after_step is not None:
            player.after_step()
        if not ok:
            with torch.no_grad():
                for b, copy in zip(buffers, saved):
                    b.copy_(copy)
        for other in others:
            for module in other.modules.values():
                module.requires_grad_(True)
        return ok, loss, terms

    def run_step(self, name: str, batches: Optional[dict] = None) -> tuple[bool, torch.Tensor, dict]:
        """One step of player ``name`` outside the loop (benchmarks, tests): its phase activated, on ``batches`` (by
        stream name) or on the next batches of its streams, the update taken and its after-step hook run. Returns
        (updated?, loss, terms)."""
        phase = next(p for p in self.plan if name in p.players)
        self._activate(phase)
        others = tuple(self.players[n] for n in phase.players if n != name)
        return self._step(self.players[name], batches, others)

    def _optimize(self, player: Player, loss: torch.Tensor) -> bool:
        """Backward, clip, step. Returns False (and leaves the weights alone) when loss or gradient is not finite
        (on any process: all take the same branch).

        The gradients are released as soon as the step is taken: kept, they would sit through the next forward and
        add one copy of the trained weights to the peak memory."""
        optimizer = self.optimizers[player.name]
        try:
            if not dist.all_true(bool(torch.isfinite(loss.detach()).all()), self.device):
                return False
            self.scaler.scale(loss).backward()
            if self.scaler.is_enabled():
                self.scaler.unscale_(optimizer)
            clip = self.recipe.players[player.name].clip_grad_norm
            params = [p for group in optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf"))
            if not self.scaler.is_enabled() and not torch.isfinite(norm):
                return False
            self.scaler.step(optimizer)
            self.scaler.update()
            self.schedulers[player.name].step()
            return True
        finally:
            optimizer.zero_grad(set_to_none=True)

    def _release_finished_players(self, index: int) -> None:
        """Free what players with no steps left from plan phase ``index`` on still hold: their optimiser state
        (after the day phase, the day optimiser's copy of the model's size is dead weight) and the batch streams
        only they read (with ``num_workers``, their worker processes)."""
        remaining = {name for phase in self.plan[index:] for name in phase.players}
        live = {s for name in remaining for s in self.players[name].streams}
        for name, player in self.players.items():
            if name not in remaining:
                self.optimizers[name].state.clear()
        for stream in list(self._iters):
            if stream not in live:
                self._iters.pop(stream)

    def _activate(self, phase: Phase) -> None:
        """Train the phase's players' modules; freeze every other module of the method (METHOD.md §3.1)."""
        for module in self.method.modules().values():
            set_trainable(module, False)
        for name in phase.players:
            for module in self.players[name].modules.values():
                set_trainable(module, True)
        self.method.activate(phase, self.players)

    # ----------------------------------------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> dict:
        """Train by the plan; write ``report.json`` and the method's pictures; return the final evaluation metrics."""
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
                                self.recipe.log.progress, start_step=self.global_step, every=self.recipe.log.every)
        if resume:
            self.logger.resuming(self.global_step, self.total_steps)
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
        except RuntimeError as exc:
            if worker_died(exc):  # a worker that died while the main process was busy elsewhere than next()
                raise worker_death_error(exc) from exc
            if dist.is_distributed() and _is_peer_failure(exc):
                raise SimmmError(f"process {dist.rank()}: another process of this run stopped ({exc}); "
                                 f"the last checkpoint is {ckpt_dir / 'last.pt'}; continue with --resume") from None
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.logger.close()
        self.write_report()
        return self.history[-1]["metrics"] if self.history else {}

    def _loop(self, ckpt_dir: Path) -> None:
        r = self.recipe
        start = 0
        for index, phase in enumerate(self.plan):
            end = start + phase.steps
            if self.global_step >= end:
                start = end
                continue
            self._activate(phase)
            self._release_finished_players(index)
            players = [self.players[name] for name in phase.players]
            while self.global_step < end:
                results = [(p, *self._step(p, others=tuple(q for q in players if q is not p))) for p in players]
                self.global_step += 1
                if all(ok for _, ok, _, _ in results):
                    self.bad_steps = 0
                else:
                    self.bad_steps += 1
                    bad = [p.name for p, ok, _, _ in results if not ok]
                    self.logger.message(f"[red]step {self.global_step} ({', '.join(bad)}): non-finite loss or "
                                        f"gradient, step skipped ({self.bad_steps} in a row)")
                    if self.bad_steps >= r.max_bad_steps:
                        self.save(ckpt_dir / "last.pt")
                        terms = {k: v for p, ok, _, t in results if not ok for k, v in t.items()}
                        raise BadStepsError(
                            f"stopped at step {self.global_step}: {self.bad_steps} steps in a row of player "
                            f"'{bad[0]}' had a non-finite loss or gradient (last terms: {_fmt(terms)}). Lower "
                            f"players.{bad[0]}.lr, set a clip_grad_norm, or check the data; the last good state "
                            "is in checkpoints/last.pt")
                logged = self.global_step % r.log.every == 0 or self.global_step == end
                for player, _, loss, terms in results:
                    values = {"loss": float(loss.detach()), **{k: float(v) for k, v in terms.items()},
                              "lr": self.optimizers[player.name].param_groups[0]["lr"]}
                    if logged:
                        self.logger.log(self.global_step, player.name, dist.mean_over_ranks(values, self.device))
                    self.logger.advance(self.global_step, phase.name, values)
                last_of_phase = self.global_step == end and (phase.evaluate or index == len(self.plan) - 1)
                if (r.eval.every and self.global_step % r.eval.every == 0) or last_of_phase:
                    self._evaluate_and_keep_best(ckpt_dir, phase.name)
                if self.global_step % r.checkpoint.every == 0 or self.global_step == end:
                    self.save(ckpt_dir / "last.pt")
                for callback in self.callbacks:
                    callback(self, self.global_step)
                if dist.any_true(self._stop_requested, self.device):  # every process stops at the same step
                    self._stop_requested = True
                    raise Interrupted()
            start = end

    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt()
        self._stop_requested = True

    def request_stop(self) -> None:
        """Stop at the end of the current step, saving the state first (what Ctrl-C and SIGTERM do)."""
        self._stop_requested = True

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

    def write_report(self) -> None:
        """``report.json`` (evaluation history and best) and the method's pictures (SMM: ``darkening.png``), whose
        paths are kept in :attr:`artifacts`."""
        if dist.is_main() and self.history:
            write_json({"history": self.history, "best": self.best}, self.run_dir / "report.json")
            self.artifacts = self.method.write_artifacts(self.run_dir, self.eval_sets)
        dist.barrier()

    # ----------------------------------------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every evaluation set of the task, with the model in eval mode (behind the recipe's ``eval.enhance``
        enhancer, when it names one: every set's images are enhanced, and AdaBN re-estimates its statistics on the
        enhanced images). In a distributed run each process evaluates its own share of every set (each sample once)
        and the task reduces its counts."""
        model = self.method.eval_model() or self.model
        if self.enhancer is not None:  # the recipe's test-time enhancer in front (eval.enhance)
            model = Enhancer(model, self.enhancer.to(self.device))
        modes = {m: m.training for m in model.modules()}
        model.eval()
        metrics: dict[str, float] = {}
        try:
            for eval_set in self.eval_sets:
                dataset = eval_set.dataset
                if dist.is_distributed():
                    dataset = torch.utils.data.Subset(dataset, range(dist.rank(), len(dataset), dist.world_size()))
                loader = torch.utils.data.DataLoader(dataset, batch_size=self.recipe.eval.batch_size,
                                                     shuffle=False, num_workers=self.recipe.num_workers)
                with self._autocast():
                    metrics.update(self.adapter.evaluate(model, loader, eval_set))
        finally:
            for module, mode in modes.items():
                module.training = mode
        return metrics

    # ----------------------------------------------------------------------------------------------- state
    def modules(self) -> dict[str, nn.Module]:
        """Every module of the run by name (the method's list: what checkpoints hold)."""
        return self.method.modules()

    def state_dict(self) -> dict:
        return {
            "signature": self.signature(),
            "recipe": recipe_to_dict(self.recipe),
            "global_step": self.global_step,
            "total_steps": self.total_steps,
            "consumed": dict(self.consumed),
            "player_steps": {name: p.steps_done for name, p in self.players.items()},
            "bad_steps": self.bad_steps,
            "best": dict(self.best),
            "history": list(self.history),
            "modules": {name: m.state_dict() for name, m in self.modules().items()},
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "rng": get_rng_state(),
            "world_size": dist.world_size(),
            "task": self.adapter.state_dict(),
        }

    def save(self, path: Path) -> None:
        """Write the whole state to ``path`` (rank 0; every process's generators are gathered into it)."""
        state = self.state_dict()
        if dist.is_distributed():
            state["rng_per_rank"] = dist.all_gather_objects(state["rng"])
        if dist.is_main():
            save_checkpoint(state, path)
        dist.barrier()

    def restore(self, path: Path) -> None:
        """Continue exactly where ``path`` stopped: weights, optimisers, schedules, scaler, RNGs, data position."""
        state = load_checkpoint(path, signature=self.signature(), map_location=self.device)
        changed = recipe_changes(state["recipe"], recipe_to_dict(self.recipe), ignore=RESUME_FREE)
        if changed:
            raise CheckpointError(f"checkpoint {path} was written with another recipe; changed keys: "
                                  f"{', '.join(changed[:8])}. Resume with the recipe of that run "
                                  f"({self.run_dir / 'config.yaml'}) or start a new run")
        saved_world = state.get("world_size", 1)
        if saved_world != dist.world_size():
            raise CheckpointError(f"checkpoint {path} was written by a run of {saved_world} process(es), this one "
                                  f"has {dist.world_size()}; an exact resume needs the same number (or start a new "
                                  "run from its weights with init:)")
        for name, module in self.modules().items():
            load_module_state(module, state["modules"][name], path, name)
        for name in self.players:
            self.optimizers[name].load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
            self.players[name].steps_done = state["player_steps"][name]
        self.scaler.load_state_dict(state["scaler"])
        self.global_step = state["global_step"]
        self.consumed = dict(state["consumed"])
        self.bad_steps = state["bad_steps"]
        self.best = dict(state["best"])
        self.history = list(state["history"])
        self.adapter.load_state_dict(state.get("task", {}))
        self._iters.clear()
        self._epochs.clear()
        set_rng_state(state["rng_per_rank"][dist.rank()] if "rng_per_rank" in state else state["rng"])

    def load_weights(self, path: str | Path, modules=("model",)) -> None:
        """Initialise modules (``model``, or any module of the method by name) from a simmm checkpoint of a
        compatible run."""
        own = self.modules()
        load_modules(path, {name: own.get(name) for name in modules},
                     signature=self.signature() if "model" in modules else None)


# keys that may differ between a run and its resumption without changing what it computes
RESUME_FREE = ("log.", "eval.every", "eval.batch_size", "eval.enhance", "num_workers", "device", "checkpoint.every")


def enhancer_for(recipe: Recipe, eval_sets: list) -> Optional[nn.Module]:
    """The test-time enhancer of ``eval.enhance`` (None: none). An evaluation set predicted by its method's own
    prediction (:attr:`simmm.task.EvalSet.predict`: DANIA's day–night fusion) reaches into the model past its forward
    pass, where no enhancer can stand in front: refused, naming the set."""
    enhancer = build_enhancer(recipe.eval)
    if enhancer is not None:
        own = [s.name for s in eval_sets if s.predict is not None]
        if own:
            raise RecipeError(f"eval.enhance: {recipe.eval.enhance} cannot stand in front of the evaluation set "
                              f"{own[0]!r}, which method {recipe.method!r} predicts its own way (day–night fusion); "
                              "use eval.enhance: none with this method")
    return enhancer


def _fmt(values: dict) -> str:
    return " ".join(f"{k}={float(v):.4g}" for k, v in values.items())


def _is_peer_failure(exc: RuntimeError) -> bool:
    """A collective that failed because another process went away (gloo: connection closed/reset; NCCL: abort)."""
    text = str(exc).lower()
    return any(k in text for k in ("connection closed", "connection reset", "broken pipe", "nccl", "gloo",
                                    "timed out", "peer"))


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
