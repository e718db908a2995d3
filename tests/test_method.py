"""Methods as plug-ins: the README's custom method runs through the engine exactly as printed."""
import csv
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from simmm.checkpoint import load_checkpoint
from simmm.engine import Engine
from simmm.errors import RecipeError
from simmm.method import METHODS
from simmm.recipe import recipe_from_dict

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_method_module() -> types.ModuleType:
    """The README's ```python block that registers ``gamma_aug``, executed as a module of its own."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if '@register_method("gamma_aug")' in b)
    module = types.ModuleType("readme_gamma_aug")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(code, str(README), "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def gamma_aug():
    return readme_method_module()


def recipe(tmp_path, **extra):
    import test_engine  # noqa: F401  (registers the tiny_test task)

    raw = {"task": "tiny_test", "method": "gamma_aug", "output_dir": str(tmp_path / "run"), "gamma": 2.5,
           "players": {"model": {"steps": 6, "batch_size": 4}}, "checkpoint": {"every": 2},
           "log": {"every": 1, "progress": False, "tensorboard": "off"}, **extra}
    return recipe_from_dict(raw)


def test_readme_method_trains_through_the_engine(gamma_aug, tmp_path):
    assert METHODS["gamma_aug"] is gamma_aug.GammaAugmentation
    engine = Engine(recipe(tmp_path))
    assert engine.recipe.options.gamma == 2.5
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    seen = []
    original = engine.method.step

    def spy(batches, nets):
        seen.append((sorted(batches), type(nets["model"]).__name__, batches["model"]["image"].shape[0]))
        return original(batches, nets)

    engine.players["model"].step = spy
    metrics = engine.fit()
    assert seen == [(["model"], "TaskNet", 4)] * 6
    assert "day_test/top1" in metrics
    assert any(not torch.equal(v, engine.model.state_dict()[k]) for k, v in before.items())
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert list(state["modules"]) == ["model"] and state["global_step"] == 6
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] == "model"]
    assert len(rows) == 6 and all(float(r["dark"]) > 0 and float(r["day"]) > 0 for r in rows)
    assert (tmp_path / "run" / "report.json").exists()


def test_readme_method_dark_loss_is_the_task_loss_on_the_gamma_image(gamma_aug, tmp_path):
    engine = Engine(recipe(tmp_path))
    torch.manual_seed(0)
    image = torch.rand(4, 3, 16, 16)
    batch = {"image": image, "target": torch.tensor([0, 1, 0, 1])}
    engine.players["model"].modules["model"].eval()  # BN with running stats: the loss is a plain function
    torch.manual_seed(1)  # the tiny task's flip: draws 0.76 >= 0.5, no flip
    loss, terms = engine.method.step({"model": batch}, engine.players["model"].modules)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(engine.model(image ** 2.5), batch["target"])
    assert float(terms["dark"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(loss.detach()) == pytest.approx(float(terms["day"] + terms["dark"]), rel=1e-6)


def test_method_sections_and_players_are_validated(gamma_aug, tmp_path):
    with pytest.raises(RecipeError, match=r"^gama: unknown key \(did you mean gamma\?\)"):
        recipe(tmp_path, gama=2.0)
    with pytest.raises(RecipeError, match=r"^players\.darkener: unknown player of method 'gamma_aug'; allowed: model"):
        recipe(tmp_path, players={"darkener": {"steps": 2}})
    with pytest.raises(RecipeError, match=r"^gamma: got 'x'; expected a number"):
        recipe(tmp_path, gamma="x")
    with pytest.raises(RecipeError, match=r"^method: got 'nope'; expected one of .*gamma_aug.*smm"):
        recipe(tmp_path, method="nope")
    # SMM's sections are not this method's
    with pytest.raises(RecipeError, match=r"^darkener: unknown key"):
        recipe(tmp_path, darkener={"width": 4})


def test_readme_method_resumes_bitwise(gamma_aug, tmp_path):
    from test_engine import assert_same_state, crash_and_resume

    reference, resumed = crash_and_resume(lambda folder: Engine(recipe(tmp_path / folder)), crash_at=3)
    assert_same_state(reference, resumed)
