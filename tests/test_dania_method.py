"""DANIA as a method on the engine: the smoke recipe end to end, exact resume, the toggled discriminators and the
evaluated model (R then G, re-weighted)."""
from pathlib import Path

import torch

from simmm.checkpoint import load_checkpoint
from simmm.engine import Engine
from simmm.recipe import load_recipe

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "dania_smoke.yaml"


def dania_recipe(tmp_path, *extra):
    return load_recipe(SMOKE, [f"output_dir={tmp_path / 'run'}", f"dania.align.cache_dir={tmp_path / 'align'}",
                               *extra])


def state(engine):
    return {f"{n}.{k}": v.clone() for n, m in engine.modules().items() for k, v in m.state_dict().items()}


def test_dania_smoke_trains_both_players(tmp_path):
    engine = Engine(dania_recipe(tmp_path))
    assert [p.players for p in engine.plan] == [("generator", "discriminators")]
    assert set(engine.streams) == {"source", "pairs"}
    before = state(engine)
    metrics = engine.fit()
    assert "dz_val/mIoU" in metrics
    after = state(engine)
    for prefix in ("model.", "relight.", "disc_day.", "disc_night."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert set(saved["modules"]) == {"model", "relight", "disc_day", "disc_night"}
    # poly decay over the generator's 3 steps, for both players: lr 2.5e-4 * (1 - t/3)^0.9, 0 after the last
    assert engine.optimizers["discriminators"].param_groups[0]["lr"] == 0.0
    assert saved["player_steps"] == {"generator": 3, "discriminators": 3}


def test_generator_step_leaves_the_discriminators_untouched(tmp_path):
    engine = Engine(dania_recipe(tmp_path))
    ok, loss, terms = engine.run_step("generator")
    assert ok and set(terms) == {"light", "seg", "static", "adv"} and float(terms["adv"]) > 0
    for disc in (engine.method.disc_day, engine.method.disc_night):
        assert all(p.grad is None for p in disc.parameters())  # the adversarial term trained only the generator
        assert all(p.requires_grad for p in disc.parameters())  # and the discriminators train on their own step
    d_before = {k: v.clone() for k, v in engine.method.disc_day.state_dict().items()}
    ok, _, terms = engine.run_step("discriminators")
    assert ok and set(terms) == {"d_day", "d_night"}
    assert any(not torch.equal(v, engine.method.disc_day.state_dict()[k]) for k, v in d_before.items())


def test_evaluated_model_is_relighting_then_segmentation_reweighted(tmp_path):
    engine = Engine(dania_recipe(tmp_path, "dania.test_s=0.2"))
    m = engine.method
    model = m.eval_model().eval()
    images = torch.rand(1, 3, 16, 32)
    with torch.no_grad():
        x = m.model.normalize(images)
        logits = m.model.forward_normalized(x + m.relight(x).residual)
        w = m.test_weights
        expected = torch.log((torch.softmax(logits, 1) * w.view(1, -1, 1, 1)).clamp_min(1e-12))
        torch.testing.assert_close(model(images), expected)
    from simmm.dania_losses import CITYSCAPES_CLASS_SHARES, class_weights

    torch.testing.assert_close(w, class_weights(CITYSCAPES_CLASS_SHARES, s=0.2).to(w))


def test_dania_resumes_bitwise_and_runs_without_alignment(tmp_path):
    from test_engine import assert_same_state, crash_and_resume

    reference, resumed = crash_and_resume(
        lambda folder: Engine(dania_recipe(tmp_path / folder, "checkpoint.every=1")), crash_at=2)
    assert_same_state(reference, resumed)
    off = Engine(dania_recipe(tmp_path / "c", "dania.align.enabled=false"))
    assert off.method.homographies == {}
    off.fit()


def test_cli_eval_of_a_dania_checkpoint_loads_the_relighting_net(tmp_path, capsys):
    from simmm.cli import main

    args = ["--set", f"output_dir={tmp_path / 'run'}", "--set", f"dania.align.cache_dir={tmp_path / 'align'}"]
    assert main(["train", str(SMOKE), *args]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    assert main(["eval", str(SMOKE), *args, "--set", f"output_dir={tmp_path / 'eval'}", "--checkpoint", str(ckpt),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert "dz_val/mIoU" in (tmp_path / "m.json").read_text()
    # what `simmm eval` loads: the segmenter and the relighting net it runs first
    engine = Engine(dania_recipe(tmp_path / "x"))
    assert engine.method.eval_modules == ("model", "relight")
    # evaluation only (what `simmm eval` builds): the training pairs are neither read nor aligned
    only = Engine(dania_recipe(tmp_path / "y", f"dania.pairs.root={tmp_path / 'absent'}"), train=False)
    assert only.total_steps == 0 and not only.streams and set(only.steps.values()) == {0}
    only.load_weights(ckpt, modules=only.method.eval_modules)
    assert "dz_val/mIoU" in only.evaluate()
    engine.load_weights(ckpt, modules=engine.method.eval_modules)
    saved = load_checkpoint(ckpt)["modules"]["relight"]
    assert all(torch.equal(v, saved[k]) for k, v in engine.method.relight.state_dict().items())
