"""The engine on a tiny custom task: schedules, freezing, exact resume, NaN guard, checkpoints."""
import os
import signal
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from simmm.byol import BYOLHeads
from simmm.checkpoint import load_checkpoint
from simmm.engine import BadStepsError, Engine, lr_lambda
from simmm.methods.smm import plan_schedule
from simmm.errors import CheckpointError, SimmmError
from simmm.recipe import PlayerConfig, recipe_from_dict
from simmm.task import EvalSet, Forward, TaskAdapter, register_task


@dataclass
class TinyModelConfig:
    width: int = 8


@dataclass
class TinyDataConfig:
    samples: int = 24
    size: int = 16


class TinyNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.fc = nn.Linear(width, 2)

    def forward(self, x):
        return self.fc(self.stem(x).mean((2, 3)))


class TinyDataset(torch.utils.data.Dataset):
    """Bright images are class 1, dim ones class 0."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.images = torch.rand(n, 3, size, size, generator=g) * 0.5 + 0.4 * self.labels.view(-1, 1, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.images[i], "target": self.labels[i]}


@register_task("tiny_test")
class TinyTask(TaskAdapter):
    model_config = TinyModelConfig
    data_config = TinyDataConfig
    poison_at = None  # make the loss NaN from this call on (NaN-guard test)
    signal_at = None  # (call number, signals): send these signals to ourselves inside that loss call
    calls = 0

    def build_model(self):
        return TinyNet(self.recipe.model.width)

    def signature(self):
        return {"task": self.name, "width": self.recipe.model.width}

    def forward(self, model, images, output=True):
        fmap = model.stem(images)
        pooled = fmap.mean((2, 3))
        return Forward([fmap], [pooled], model.fc(pooled) if output else None)

    def build_byol_heads(self, model):
        return BYOLHeads.for_vectors(self.recipe.model.width, proj_hidden=8, proj_out=8, pred_hidden=8)

    def train_dataset(self):
        return TinyDataset(self.recipe.data.samples, self.recipe.data.size, 0)

    def eval_sets(self):
        return [EvalSet("day_test", TinyDataset(8, self.recipe.data.size, 1))]

    def views(self, batch, n=2):
        return [{**batch, "image": torch.flip(batch["image"], dims=[-1]) if torch.rand(()) < 0.5 else batch["image"]}
                for _ in range(n)]

    def task_loss(self, output, batch):
        TinyTask.calls += 1
        if TinyTask.signal_at is not None and TinyTask.calls == TinyTask.signal_at[0]:
            for sig in TinyTask.signal_at[1]:
                os.kill(os.getpid(), sig)
        loss = nn.functional.cross_entropy(output, batch["target"])
        if TinyTask.poison_at is not None and TinyTask.calls >= TinyTask.poison_at:
            loss = loss * float("nan")
        return loss

    def evaluate(self, model, loader, eval_set):
        correct = total = 0
        for batch in loader:
            correct += int((model(batch["image"]).argmax(1) == batch["target"]).sum())
            total += len(batch["target"])
        return {f"{eval_set.name}/top1": 100.0 * correct / total}


def tiny_recipe(tmp_path, **extra):
    raw = {
        "task": "tiny_test", "name": "tiny", "output_dir": str(tmp_path / "run"),
        "players": {"day": {"steps": 4, "batch_size": 4}, "darkener": {"steps": 3, "batch_size": 4},
                    "extractor": {"steps": 5, "batch_size": 4}},
        "darkener": {"width": 4}, "log": {"every": 1, "progress": False, "tensorboard": "off"},
        "checkpoint": {"every": 2},
    }
    for key, value in extra.items():
        raw[key] = value
    return recipe_from_dict(raw)


def final_state(engine):
    return {f"{name}.{k}": v.clone() for name, m in engine.modules().items() for k, v in m.state_dict().items()}


def crash_and_resume(make_engine, crash_at: int):
    """``make_engine(folder)`` run to the end in folder ``a``; and in folder ``b`` crashed after step ``crash_at``,
    then resumed. Returns (uninterrupted, resumed) engines, both finished."""
    reference = make_engine("a")
    reference.fit()
    first = make_engine("b")

    def crash(eng, step):
        if step == crash_at:
            raise Crash()

    first.callbacks.append(crash)
    with pytest.raises(Crash):
        first.fit()
    resumed = make_engine("b")
    resumed.fit(resume=True)
    return reference, resumed


def assert_same_state(a, b):
    expected, got = final_state(a), final_state(b)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_plan_schedules():
    steps = {"day": 2, "darkener": 5, "extractor": 7}
    two = plan_schedule("two_stage", steps, {})
    assert [(s.players, s.steps, s.evaluate) for s in two] == [(("day",), 2, True), (("darkener",), 5, False),
                                                               (("extractor",), 7, True)]
    alt = plan_schedule("alternating", steps, {"darkener": 2, "extractor": 3})
    assert [(s.name, s.steps) for s in alt] == [("day", 2), ("darkener", 2), ("extractor", 3), ("darkener", 2),
                                               ("extractor", 3), ("darkener", 1), ("extractor", 1)]
    assert sum(s.steps for s in alt if s.name == "darkener") == 5


def test_lr_schedules():
    cfg = PlayerConfig(lr_schedule="multistep", milestones=[1 / 3, 2 / 3], gamma=0.1)
    f = lr_lambda(cfg, 90)
    assert [f(0), f(29), f(30), f(59), f(60), f(89)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    poly = lr_lambda(PlayerConfig(lr_schedule="poly", power=0.9), 100)
    assert poly(50) == pytest.approx(0.5 ** 0.9)


def test_two_stage_freezes_the_other_player(tmp_path):
    engine = Engine(tiny_recipe(tmp_path))
    darkener_before = {k: v.clone() for k, v in engine.method.darkener.state_dict().items()}
    model_seen = {}

    fired = []

    def spy(eng, step):
        fired.append(step)
        if step == 4:  # end of the day phase: remember the model
            model_seen.update({k: v.clone() for k, v in eng.model.state_dict().items()})
        if step == 7:  # end of the darkener phase: the model has not moved, D has
            assert all(torch.equal(v, eng.model.state_dict()[k]) for k, v in model_seen.items())
            assert not all(torch.equal(v, eng.method.darkener.state_dict()[k]) for k, v in darkener_before.items())
            assert not any(p.requires_grad for p in eng.model.parameters())
        if step == 8:  # extractor phase: D frozen in eval mode
            assert not eng.method.darkener.training and not any(p.requires_grad for p in eng.method.darkener.parameters())

    engine.callbacks.append(spy)
    metrics = engine.fit()
    assert fired == list(range(1, 13))  # the checks above ran (steps 4, 7 and 8 among them)
    assert "day_test/top1" in metrics
    phases = [h["phase"] for h in engine.history]
    assert phases == ["day", "extractor"]  # evaluated when the model changed phase
    assert (tmp_path / "run" / "config.yaml").exists() and (tmp_path / "run" / "metrics.csv").exists()


class Crash(Exception):
    pass


@pytest.mark.parametrize("kill_at, how", [(6, "crash"), (9, "stop"), (3, "sigterm_mid_step"), (5, "ctrl_c_twice")])
def test_resume_is_bitwise_exact(tmp_path, kill_at, how):
    reference = Engine(tiny_recipe(tmp_path / "a"))
    reference.fit()
    expected = final_state(reference)

    def killer(eng, step):
        if step == kill_at and how == "crash":
            raise Crash()
        if step == kill_at and how == "stop":
            eng.request_stop()

    first = Engine(tiny_recipe(tmp_path / "b"))
    first.callbacks.append(killer)
    if how in ("sigterm_mid_step", "ctrl_c_twice"):
        # the signals land inside a step (in its kill_at-th task-loss call), as real ones would
        signals = [signal.SIGTERM] if how == "sigterm_mid_step" else [signal.SIGINT, signal.SIGINT]
        TinyTask.calls, TinyTask.signal_at = 0, (kill_at, signals)
    try:
        with pytest.raises(Crash if how == "crash" else KeyboardInterrupt):
            first.fit()
    finally:
        TinyTask.signal_at = None
    saved = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")
    # a crash or a double Ctrl-C keeps the last periodic checkpoint; a stop request saves the step it ends
    assert saved["global_step"] == {"crash": 6, "stop": 9, "sigterm_mid_step": 3, "ctrl_c_twice": 7}[how]
    resumed = Engine(tiny_recipe(tmp_path / "b"))
    resumed.fit(resume=True)
    got = final_state(resumed)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert resumed.history[-1]["metrics"] == reference.history[-1]["metrics"]


def test_same_seed_is_bitwise_repeatable_and_seed_matters(tmp_path):
    a, b = Engine(tiny_recipe(tmp_path / "a")), Engine(tiny_recipe(tmp_path / "b"))
    a.fit(), b.fit()
    sa, sb = final_state(a), final_state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = Engine(tiny_recipe(tmp_path / "c", seed=1))
    c.fit()
    assert not all(torch.equal(sa[k], final_state(c)[k]) for k in sa)


def test_refuses_to_overwrite_and_to_resume_another_recipe(tmp_path):
    Engine(tiny_recipe(tmp_path)).fit()
    with pytest.raises(SimmmError, match="already holds a run"):
        Engine(tiny_recipe(tmp_path)).fit()
    changed = tiny_recipe(tmp_path, seed=5)
    with pytest.raises(CheckpointError, match="changed keys: seed"):
        Engine(changed).fit(resume=True)


def test_a_key_added_since_the_checkpoint_reads_as_its_default(tmp_path):
    """A checkpoint written before a recipe key existed (here: adapt.night, darkener.map_upsample dropped from the
    saved recipe) resumes; a real change next to it is still named."""
    from simmm.checkpoint import load_checkpoint, save_checkpoint

    Engine(tiny_recipe(tmp_path)).fit()
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["recipe"]["adapt"]["night"], state["recipe"]["darkener"]["map_upsample"]
    save_checkpoint(state, path)
    Engine(tiny_recipe(tmp_path)).fit(resume=True)
    with pytest.raises(CheckpointError, match=r"changed keys: seed\. Resume"):
        Engine(tiny_recipe(tmp_path, seed=5)).fit(resume=True)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    Engine(tiny_recipe(tmp_path / "a")).fit()
    other = tiny_recipe(tmp_path / "b", model={"width": 6})
    with pytest.raises(CheckpointError, match="from another model: width: checkpoint has 8, this recipe builds 6"):
        Engine(other).load_weights(tmp_path / "a" / "run" / "checkpoints" / "last.pt")


def test_nan_guard_skips_then_stops(tmp_path):
    TinyTask.calls, TinyTask.poison_at = 0, 3
    try:
        engine = Engine(tiny_recipe(tmp_path, max_bad_steps=2))
        before = {k: v.clone() for k, v in engine.model.state_dict().items()}
        with pytest.raises(BadStepsError, match="2 steps in a row of player 'day' had a non-finite loss"):
            engine.fit()
        # two good steps, then two skipped ones: the model is what it was after step 2
        assert engine.global_step == 4
        assert not all(torch.equal(v, engine.model.state_dict()[k]) for k, v in before.items())
        assert all(torch.isfinite(v).all() for v in engine.model.state_dict().values() if v.is_floating_point())
    finally:
        TinyTask.calls, TinyTask.poison_at = 0, None


def test_alternating_and_fixed_darkening(tmp_path):
    engine = Engine(tiny_recipe(tmp_path / "alt", schedule="alternating", cycle={"darkener": 1, "extractor": 2}))
    engine.fit()
    assert engine.global_step == 12
    fixed = Engine(tiny_recipe(tmp_path / "gamma", adapt={"darkening": "gamma"},
                               players={"day": {"steps": 2, "batch_size": 4}, "extractor": {"steps": 2,
                                                                                             "batch_size": 4}}))
    assert fixed.method.darkener is None
    fixed.fit()


def test_byol_target_starts_from_the_model_entering_adaptation(tmp_path):
    engine = Engine(tiny_recipe(tmp_path))
    seen = {}

    def spy(eng, step):
        if step == 7:  # last darkener step: the model is the trained day model
            seen["model"] = {k: v.clone() for k, v in eng.model.state_dict().items()}
        if step in (7, 8):
            byol = eng.method.byol
            seen[step] = ([p.clone() for p in byol.projectors.parameters()],
                          [p.clone() for p in byol.target_projectors.parameters()])
        if step == 8:  # first extractor step: target = 0.99 * day model + 0.01 * model after one step
            for k, v in eng.method.target.state_dict().items():
                if v.is_floating_point() and "running" not in k:
                    expected = 0.99 * seen["model"][k] + 0.01 * eng.model.state_dict()[k]
                    assert torch.allclose(v, expected, atol=1e-6), k

    engine.callbacks.append(spy)
    engine.fit()
    assert set(seen) == {"model", 7, 8}  # both checks ran
    # the target projectors follow the online ones: q' <- 0.99 q' + 0.01 q after the extractor step
    (_, target_before), (online_after, target_after) = seen[7], seen[8]
    assert len(target_after) == len(online_after) > 0
    for t0, q1, t1 in zip(target_before, online_after, target_after):
        assert torch.allclose(t1, 0.99 * t0 + 0.01 * q1, atol=1e-7)
    assert any(not torch.equal(t0, t1) for t0, t1 in zip(target_before, target_after))


def test_learned_darkening_needs_a_trained_or_loaded_darkener(tmp_path):
    from simmm.errors import RecipeError

    with pytest.raises(RecipeError, match="neither trained in this run .* nor loaded"):
        Engine(tiny_recipe(tmp_path, players={"extractor": {"steps": 2, "batch_size": 4}}))


@pytest.mark.parametrize("darkening", ["none", "brightness", "gamma", "night"])
def test_a_darkener_that_fixed_darkening_would_never_use_is_refused_before_training(tmp_path, darkening):
    from simmm.errors import RecipeError

    players = {"darkener": {"steps": 3, "batch_size": 4}, "extractor": {"steps": 2, "batch_size": 4}}
    with pytest.raises(RecipeError, match=rf"players.darkener trains D \(3 steps\), but adapt.darkening is "
                                          rf"'{darkening}': F's views never use D"):
        Engine(tiny_recipe(tmp_path, players=players, adapt={"darkening": darkening}))
    # D alone (no extractor phase) is a darkener-only run: allowed
    players["extractor"]["steps"] = 0
    Engine(tiny_recipe(tmp_path / "d_only", players=players, adapt={"darkening": darkening}))


def test_gradients_and_finished_optimisers_are_released(tmp_path):
    """No gradient outlives its step; a player's optimiser state is freed once it has no steps left."""
    engine = Engine(tiny_recipe(tmp_path, players={"day": {"steps": 4, "batch_size": 4, "optimizer": "adam"},
                                                   "darkener": {"steps": 3, "batch_size": 4},
                                                   "extractor": {"steps": 5, "batch_size": 4}}))
    seen = []

    def spy(eng, step):
        assert all(p.grad is None for m in eng.modules().values() for p in m.parameters()), step
        seen.append((step, len(eng.optimizers["day"].state), len(eng.optimizers["extractor"].state)))

    engine.callbacks.append(spy)
    engine.fit()
    n_model = len(list(engine.model.parameters()))
    assert seen[3] == (4, n_model, 0)  # day phase: Adam moments for every weight
    assert seen[4][1] == 0  # the darkener phase starts: the day optimiser is done, its state is gone
    assert set(engine._iters) == {"extractor"}  # and so are the batch streams of finished players
    assert seen[-1][1] == 0 and seen[-1][2] > 0


def test_darkener_step_skips_the_model_when_the_similarity_weight_is_zero(tmp_path):
    engine = Engine(tiny_recipe(tmp_path, darkener={"width": 4, "weights": {"sim": 0.0}},
                                players={"darkener": {"steps": 2, "batch_size": 4}}, adapt={"darkening": "none"}))
    calls = []
    original = engine.adapter.forward
    engine.adapter.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    engine._activate(engine.plan[0])
    loss, terms = engine.method.darkener_step({"darkener": engine._batch("darkener")},
                                              engine.players["darkener"].modules)
    assert calls == [] and float(terms["sim"]) == 0.0 and torch.isfinite(loss)


def test_resume_restores_the_lr_schedule(tmp_path):
    """Day player: lr 1e-3, ×0.1 from half its 4 steps on. A run stopped after step 2 resumes with the schedule at
    step 2: its next step runs at 1e-4 (a fresh schedule would run it at 1e-3)."""
    players = {"day": {"steps": 4, "batch_size": 4, "lr": 1e-3, "lr_schedule": "multistep", "milestones": [0.5]},
               "darkener": {"steps": 0}, "extractor": {"steps": 0}}
    first = Engine(tiny_recipe(tmp_path, players=players, adapt={"darkening": "none"}))

    def stop(eng, step):
        if step == 2:
            eng.request_stop()

    first.callbacks.append(stop)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = Engine(tiny_recipe(tmp_path, players=players, adapt={"darkening": "none"}))
    resumed.restore(tmp_path / "run" / "checkpoints" / "last.pt")
    assert resumed.schedulers["day"].last_epoch == 2
    assert resumed.optimizers["day"].param_groups[0]["lr"] == pytest.approx(1e-4)
    resumed.run_step("day")
    assert resumed.optimizers["day"].param_groups[0]["lr"] == pytest.approx(1e-4)  # step 3 of 4: still ×0.1
    assert resumed.schedulers["day"].last_epoch == 3


@pytest.mark.parametrize("kind", ["brightness", "gamma"])
def test_fixed_darkening_runs_in_the_extractor_step(tmp_path, monkeypatch, kind):
    import simmm.methods.smm as smm

    calls = []
    original = smm.fixed_darkening

    def spy(images, exposure, how):
        out = original(images, exposure, how)
        calls.append((how, float(exposure.flatten(1).mean(1).clamp(0.01, 0.99).mean()), float(out.mean())))
        return out

    monkeypatch.setattr(smm, "fixed_darkening", spy)
    players = {"day": {"steps": 0}, "darkener": {"steps": 0}, "extractor": {"steps": 3, "batch_size": 4}}
    engine = Engine(tiny_recipe(tmp_path, players=players, adapt={"darkening": kind}))
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    assert engine.method.darkener is None
    engine.fit()
    assert [c[0] for c in calls] == [kind] * 3
    assert all(dark < 0.45 for _, _, dark in calls)  # the tiny images average about 0.45-0.65: darker after
    assert any(not torch.equal(v, engine.model.state_dict()[k]) for k, v in before.items())


def test_fixed_darkening_hand_values():
    from simmm.methods.smm import fixed_darkening

    images = torch.full((1, 3, 2, 3), 0.5)
    exposure = torch.full((1, 1, 2, 3), 0.1)
    assert torch.allclose(fixed_darkening(images, exposure, "brightness"), torch.full_like(images, 0.1))
    # gamma = log 0.1 / log 0.5 = 3.3219: 0.5 ** 3.3219 = 0.1
    assert torch.allclose(fixed_darkening(images, exposure, "gamma"), torch.full_like(images, 0.1), atol=1e-6)
    ramp = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    # mean 0.5, target 0.25: brightness scales by 0.5
    out = fixed_darkening(ramp, torch.full((1, 1, 2, 2), 0.25), "brightness")
    assert torch.allclose(out[0, 0].flatten(), torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert torch.equal(fixed_darkening(ramp, torch.full((1, 1, 2, 2), 0.25), "none"), ramp)
