import math

import pytest
import torch

from simmm.darkening import Darken, DarkeningNet, DarkeningOutput, darken, exposure_response


def _maps(shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(shape, generator=g, dtype=dtype) * 0.8 + 0.1
    A = torch.rand(shape, generator=g, dtype=dtype) * 1.6 - 0.8
    B = torch.rand(shape, generator=g, dtype=dtype) * 0.05 + 0.95
    return image, A, B


def _reference(image, A, B, mapping, iterations=8):
    y = B * image if mapping == "code" else image / B
    for _ in range(iterations):
        y = y + A * (y ** 2 - y)
    y = y / B if mapping == "code" else y * B
    return y.clamp(0, 1)


def test_param_count_width_64():
    net = DarkeningNet()
    n = sum(p.numel() for p in net.parameters())
    # b0: (4*9+4)+(4*64+64); b1..b4: 4*((64*9+64)+(64*64+64)); b5,b6: 2*((128*9+128)+(128*64+64));
    # b7: (128*9+128)+(128*6+6)
    assert n == 360 + 4 * 4800 + 2 * 9536 + 2054 == 40686


def test_block_structure():
    net = DarkeningNet(width=8)
    assert len(net.blocks) == 8
    for blk in net.blocks:
        assert blk.depthwise.kernel_size == (3, 3) and blk.depthwise.groups == blk.depthwise.in_channels
        assert blk.depthwise.bias is not None and blk.pointwise.kernel_size == (1, 1)
    ins = [b.depthwise.in_channels for b in net.blocks]
    outs = [b.pointwise.out_channels for b in net.blocks]
    assert ins == [4, 8, 8, 8, 8, 16, 16, 16] and outs == [8, 8, 8, 8, 8, 8, 8, 6]


@pytest.mark.parametrize("mapping", ["code", "paper"])
def test_darken_matches_literal_formula(mapping):
    image, A, B = _maps((2, 3, 5, 4))
    out = darken(image, A, B, mapping=mapping)
    torch.testing.assert_close(out, _reference(image, A, B, mapping), rtol=1e-12, atol=1e-12)


def test_darken_hand_value():
    # one pixel, code form, 1 iteration: y=0.9*0.5=0.45; y += 0.5*(0.45^2-0.45) = 0.45-0.12375=0.32625; /0.9
    image, A, B = (torch.tensor([[[[v]]]], dtype=torch.float64) for v in (0.5, 0.5, 0.9))
    assert darken(image, A, B, iterations=1).item() == pytest.approx(0.32625 / 0.9)
    # paper form: x=0.5/0.9; x += 0.5*(x^2-x); *0.9
    x = 0.5 / 0.9
    assert darken(image, A, B, "paper", iterations=1).item() == pytest.approx((x + 0.5 * (x * x - x)) * 0.9)


# Hand-worked values of both mapping forms, 2 iterations. A = 1, 0, -1 per channel give closed forms:
#   A = 1:  h(x) = x^2,  twice -> x^4;    A = 0: h(x) = x;    A = -1: h(x) = 2x - x^2 = 1 - (1 - x)^2, twice
#   -> 1 - (1 - x)^4.  code: D = f(B I) / B;  paper: D = f(I / B) B;  then clamp to [0, 1].
# Four pixels (I, B): (0.5, 0.8), (0.8, 0.5), (0.2, 1.0), (1.0, 0.5).
_PIXELS_I = [0.5, 0.8, 0.2, 1.0]
_PIXELS_B = [0.8, 0.5, 1.0, 0.5]
_HAND = {
    # code, A = 1: 0.4^4/0.8 = 0.032, 0.4^4/0.5 = 0.0512, 0.2^4/1 = 0.0016, 0.5^4/0.5 = 0.125
    # code, A = -1: (1 - 0.6^4)/0.8 = 1.088 -> 1, 0.8704/0.5 -> 1, 1 - 0.8^4 = 0.5904, 0.9375/0.5 -> 1
    "code": [[0.032, 0.0512, 0.0016, 0.125], _PIXELS_I, [1.0, 1.0, 0.5904, 1.0]],
    # paper, A = 1: 0.625^4 * 0.8 = 0.1220703125, 1.6^4 * 0.5 = 3.2768 -> 1, 0.0016, 2^4 * 0.5 = 8 -> 1
    # paper, A = -1: (1 - 0.375^4) * 0.8 = 0.7841796875, (1 - 0.6^4) * 0.5 = 0.4352, 0.5904, (1 - 1^4) * 0.5 = 0
    "paper": [[0.1220703125, 1.0, 0.0016, 1.0], _PIXELS_I, [0.7841796875, 0.4352, 0.5904, 0.0]],
}


def _hand_inputs(shape):
    """Image, A and B of :data:`_HAND` laid out as ``(2, 3, *shape)`` (shape: 4 pixels)."""
    def per_pixel(values):
        return torch.tensor(values, dtype=torch.float64).view(1, 1, *shape).expand(2, 3, *shape).clone()

    image, B = per_pixel(_PIXELS_I), per_pixel(_PIXELS_B)
    A = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64).view(1, 3, 1, 1).expand(2, 3, *shape).clone()
    return image, A, B


@pytest.mark.parametrize("mapping", ["code", "paper"])
@pytest.mark.parametrize("shape", [(2, 2), (1, 4), (4, 1)], ids=["square", "wide", "tall"])
@pytest.mark.parametrize("path", ["no_grad", "grad_image", "grad_maps", "checkpoint"])
def test_darken_both_mappings_against_hand_values_on_every_path(mapping, shape, path):
    image, A, B = _hand_inputs(shape)
    want = torch.tensor(_HAND[mapping], dtype=torch.float64).view(1, 3, *shape).expand(2, 3, *shape)
    if path == "no_grad":
        with torch.no_grad():
            out = darken(image, A, B, mapping, iterations=2)
    else:
        if path == "grad_image":
            image.requires_grad_()
        else:
            A.requires_grad_()
            B.requires_grad_()
        with torch.enable_grad():
            out = darken(image, A, B, mapping, iterations=2, checkpoint=path == "checkpoint")
        assert out.requires_grad  # the autograd path really ran
        out.sum().backward()
    torch.testing.assert_close(out.detach(), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(Darken(mapping, iterations=2)(image.detach(), A.detach(), B.detach()), want,
                               rtol=0, atol=1e-12)


def _constant_map_net(mapping, map_scale, iterations=2):
    """A DarkeningNet whose network outputs constants: A = (0.5, -0.5, 0), B = 0.95 + 0.05 sigmoid(0, ln 3,
    -ln 3) = (0.975, 0.9875, 0.9625) per channel, everywhere (all weights 0, the last bias set)."""
    net = DarkeningNet(width=4, mapping=mapping, iterations=iterations, map_scale=map_scale)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        a = torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64)
        bias = torch.cat([torch.atanh(a), torch.tensor([0.0, math.log(3.0), -math.log(3.0)], dtype=torch.float64)])
        net.blocks[7].pointwise.bias.copy_(bias.float())
    return net


_NET_A, _NET_B = (0.5, -0.5, 0.0), (0.975, 0.9875, 0.9625)


def _hand_curve(i, a, b, mapping, iterations):
    """The paper's formula for one pixel, in plain Python: h(x, a) = x + a (x^2 - x), n times."""
    x = b * i if mapping == "code" else i / b
    for _ in range(iterations):
        x = x + a * (x * x - x)
    x = x / b if mapping == "code" else x * b
    return min(max(x, 0.0), 1.0)


def test_hand_curve_helper_worked_example():
    # code, A = 0.5, B = 0.975, I = 0.5, one iteration: y = 0.4875; y + 0.5 (y^2 - y) = 0.36257813; / 0.975
    assert _hand_curve(0.5, 0.5, 0.975, "code", 1) == pytest.approx(0.362578125 / 0.975, abs=1e-12)
    # paper, A = -0.5, B = 0.9875, I = 0.5, one iteration: x = 0.5063291; x - 0.5 (x^2 - x) = 0.6313892; * B
    x = 0.5 / 0.9875
    assert _hand_curve(0.5, -0.5, 0.9875, "paper", 1) == pytest.approx((1.5 * x - 0.5 * x * x) * 0.9875)


@pytest.mark.parametrize("mapping", ["code", "paper"])
@pytest.mark.parametrize("map_scale", [1.0, 0.5])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("size", [(4, 4), (4, 6)], ids=["square", "non_square"])
def test_net_applies_the_mapping_at_every_map_scale(mapping, map_scale, grad, size):
    """DarkeningNet with known constant maps: D(I) is the hand formula per pixel, with and without autograd,
    at full and reduced map resolution (where A, B are estimated small and upsampled), square and not."""
    net = _constant_map_net(mapping, map_scale)
    h, w = size
    values = [0.0, 0.25, 0.5, 0.75, 1.0, 1.3]  # 1.3: clamped to 1 before the mapping
    image = torch.tensor([values[(r * w + c) % 6] for r in range(h) for c in range(w)]).view(1, 1, h, w)
    image = image.expand(2, 3, h, w).contiguous()
    if grad:
        with torch.enable_grad():
            out = net(image, 0.2)
        assert out.image.requires_grad
        out.image.sum().backward()
    else:
        with torch.no_grad():
            out = net(image, 0.2)
    assert out.A.shape[-2:] == (round(h * map_scale), round(w * map_scale))
    want = torch.tensor([[[_hand_curve(min(float(v), 1.0), _NET_A[c], _NET_B[c], mapping, 2)
                           for v in row] for row in image[0, 0]] for c in range(3)])
    torch.testing.assert_close(out.image.detach(), want.expand(2, 3, h, w), rtol=0, atol=2e-6)


@pytest.mark.parametrize("mapping", ["code", "paper"])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_darken_gradcheck(mapping, checkpoint):
    image, A, B = _maps((1, 3, 2, 2), seed=1)
    # A > 0 darkens, so the output stays well inside (0, 1): clamp inactive
    A = A.abs() * 0.3 + 0.05
    args = tuple(t.clone().requires_grad_() for t in (image, A, B))
    out = darken(*args, mapping=mapping)
    assert (out > 1e-3).all() and (out < 0.99).all()
    assert torch.autograd.gradcheck(lambda i, a, b: darken(i, a, b, mapping, 8, checkpoint), args)


def test_darken_nograd_path_is_bitwise_equal():
    image, A, B = _maps((2, 3, 8, 8), dtype=torch.float32)
    A.requires_grad_()
    with_grad = darken(image, A, B)
    with torch.no_grad():
        without = darken(image, A, B)
    assert torch.equal(with_grad.detach(), without)
    assert image.min() >= 0.1  # input untouched by the in-place path


def test_darken_clamps_and_module_form():
    image = torch.ones(1, 3, 2, 2)
    A = -torch.ones(1, 3, 2, 2) * 0.9
    B = torch.full((1, 3, 2, 2), 0.95)
    out = Darken()(image, A, B)  # y/B = 1/0.95 > 1 before clamping
    assert out.max() == 1.0
    with pytest.raises(ValueError, match=r"mapping must be one of \('code', 'paper'\), got 'nope'"):
        darken(image, A, B, mapping="nope")


def test_net_shapes_ranges_and_exposure_forms():
    torch.manual_seed(0)
    net = DarkeningNet(width=8)
    image = torch.rand(2, 3, 12, 10) * 1.4 - 0.2  # out of range: clamped
    out = net(image, torch.tensor([0.1, 0.4]))
    assert isinstance(out, DarkeningOutput)
    assert out.image.shape == (2, 3, 12, 10) and out.A.shape == out.B.shape == (2, 3, 12, 10)
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert out.A.abs().max() < 1 and out.B.min() >= 0.95 and out.B.max() <= 1
    e = torch.tensor([0.1, 0.4])
    as_map = net(image, e.view(2, 1, 1, 1).expand(2, 1, 12, 10).contiguous())
    torch.testing.assert_close(as_map.image, out.image)
    torch.testing.assert_close(net(image.clamp(0, 1), e).image, out.image)


def test_net_channels_last_matches_nchw():
    torch.manual_seed(0)
    net = DarkeningNet(width=8, channels_last=True)
    image, e = torch.rand(2, 3, 9, 7), torch.rand(2)
    a = net(image, e)
    net.channels_last = False
    torch.testing.assert_close(net(image, e).image, a.image, rtol=1e-5, atol=1e-6)


def test_map_scale_low_res_maps_and_backward():
    torch.manual_seed(0)
    net = DarkeningNet(width=8, map_scale=0.25)
    image = torch.rand(2, 3, 32, 24)
    out = net(image, torch.rand(2))
    assert out.image.shape == (2, 3, 32, 24)
    assert out.A.shape == out.B.shape == (2, 3, 8, 6)
    (out.image.mean() + out.A.mean() + out.B.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    with pytest.raises(ValueError, match=r"map_scale must be in \(0, 1\], got 0.0"):
        DarkeningNet(map_scale=0.0)


def test_checkpoint_curve_same_gradients():
    torch.manual_seed(0)
    a = DarkeningNet(width=8)
    b = DarkeningNet(width=8, checkpoint_curve=True)
    b.load_state_dict(a.state_dict())
    image, e = torch.rand(2, 3, 8, 8), torch.rand(2)
    for net in (a, b):
        net(image, e).image.square().sum().backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"expects an RGB batch \(B, 3, H, W\), got shape \(1, 1, 4, 4\)"):
        DarkeningNet(width=4)(torch.rand(1, 1, 4, 4), 0.2)


def test_trained_darkener_follows_exposure_and_stays_in_range():
    """After a few steps of the darkening game, D(I, E) is in [0, 1] and a larger E gives a brighter image."""
    from simmm.darkening_losses import DarkeningLoss
    from simmm.exposure import sample_exposure

    torch.manual_seed(0)
    net = DarkeningNet(width=8)
    frozen = torch.nn.Conv2d(3, 8, 3, padding=1).requires_grad_(False)  # a stand-in day model F
    loss_fn = DarkeningLoss()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    images = torch.rand(8, 3, 16, 16) * 0.6 + 0.3
    for _ in range(60):
        e = sample_exposure(8, 0.0, 0.5)
        out = net(images, e)
        loss, _ = loss_fn(out, e, [frozen(images)], [frozen(out.image)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        means = [net(images, torch.full((8,), level)).image for level in (0.05, 0.2, 0.4)]
    for out in means:
        assert out.min() >= 0.0 and out.max() <= 1.0
    brightness = [float(m.mean()) for m in means]
    assert brightness[0] < brightness[1] < brightness[2]
    assert abs(brightness[0] - 0.05) < abs(brightness[2] - 0.05)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_bf16_autocast_keeps_maps_and_output_in_float32(device):
    """Under autocast the convolutions run in bf16 but A, B and the curve stay float32: in bf16, B's range
    [0.95, 1] holds ~25 values and the curve raises it to the 8th power (the output was off by ~0.03)."""
    torch.manual_seed(0)
    net = DarkeningNet(width=8).to(device)
    images = torch.rand(2, 3, 64, 64, device=device)
    exposure = torch.full((2,), 0.1, device=device)
    reference = net(images, exposure)
    with torch.autocast(device, dtype=torch.bfloat16):
        mixed = net(images, exposure)
    assert mixed.image.dtype == mixed.A.dtype == mixed.B.dtype == torch.float32
    assert (mixed.B - reference.B).abs().max() < 1e-4
    assert (mixed.image - reference.image).abs().max() < 0.01


class _Fixed(torch.nn.Module):
    """A stand-in darkener: ``scale * image + follow * E`` (one parameter, so it has a device)."""

    def __init__(self, scale: float, follow: float) -> None:
        super().__init__()
        self.scale, self.follow = torch.nn.Parameter(torch.tensor(scale)), follow

    def forward(self, image, exposure):
        assert not self.training  # exposure_response evaluates in eval mode
        return DarkeningOutput(image * self.scale + self.follow * exposure.view(-1, 1, 1, 1), None, None)


def test_exposure_response_hand_values():
    images = torch.stack([torch.full((3, 4, 4), 0.2), torch.full((3, 4, 4), 0.6)])  # brightness 0.2 and 0.6
    # follows E exactly: 0 * image + E
    rows = exposure_response(_Fixed(0.0, 1.0), images, levels=(0.05, 0.35), batch_size=1)
    assert [r["exposure"] for r in rows] == [0.05, 0.35]
    assert [r["mean"] for r in rows] == pytest.approx([0.05, 0.35])
    assert [r["error"] for r in rows] == pytest.approx([0.0, 0.0], abs=1e-7)
    assert rows[0]["image_std"] == pytest.approx(0.0, abs=1e-7)
    # ignores E: half the image, means 0.1 and 0.3 -> 0.2 at every level; std of (0.1, 0.3) = 0.1414
    net = _Fixed(0.5, 0.0).train()
    rows = exposure_response(net, images, levels=(0.05, 0.1, 0.2, 0.35))
    assert [r["mean"] for r in rows] == pytest.approx([0.2] * 4)
    assert [r["error"] for r in rows] == pytest.approx([0.15, 0.1, 0.0, -0.15], abs=1e-7)
    assert rows[0]["image_std"] == pytest.approx(2**0.5 / 10)
    assert net.training  # the mode is restored
    with pytest.raises(ValueError, match=r"non-empty \(N, 3, H, W\) batch"):
        exposure_response(net, torch.zeros(0, 3, 4, 4))



def test_exposure_response_takes_images_of_different_sizes():
    """A list of images of different sizes goes through D one by one; the brightness is averaged per image (not per
    pixel): images 2x2 at 0.2 and 4x6 at 0.6, halved -> 0.1 and 0.3 -> 0.2."""
    images = [torch.full((3, 2, 2), 0.2), torch.full((3, 4, 6), 0.6)]
    rows = exposure_response(_Fixed(0.5, 0.0), images, levels=(0.1,))
    assert rows[0]["mean"] == pytest.approx(0.2) and rows[0]["image_std"] == pytest.approx(2**0.5 / 10)
    same = exposure_response(_Fixed(0.5, 0.0), [torch.full((3, 2, 2), 0.2), torch.full((3, 2, 2), 0.6)], levels=(0.1,))
    assert same[0]["mean"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="non-empty list of"):
        exposure_response(_Fixed(0.5, 0.0), [torch.zeros(1, 3, 2, 2)])


def test_guided_map_upsampling_keeps_constants_and_follows_the_image_edges():
    """map_upsample="guided": a constant map stays that constant (the guided filter's a = 0, b = mean); a map that is
    the image's own luma at 1/4 resolution comes back closer to the full-resolution luma than bilinearly, on a
    non-square image whose edge falls between map pixels; gradients reach the maps."""
    from kornia.color import rgb_to_grayscale

    image = torch.zeros(1, 3, 24, 40)
    image[..., 18:] = 0.8                                     # a vertical edge at column 18 (not on the 4-px grid)
    image[:, 0] *= 0.5
    net = DarkeningNet(width=4, map_scale=0.25, map_upsample="guided")
    const = torch.full((1, 6, 6, 10), 0.3)
    assert torch.allclose(net.upsample_maps(const, image), torch.full((1, 6, 24, 40), 0.3), atol=1e-5)
    luma = rgb_to_grayscale(image)
    low = torch.nn.functional.interpolate(luma, size=(6, 10), mode="area").requires_grad_()
    guided = net.upsample_maps(low, image)
    bilinear = DarkeningNet(width=4, map_scale=0.25).upsample_maps(low, image)
    assert (guided - luma).abs().mean() < 0.1 * (bilinear - luma).abs().mean()   # 0.0018 vs 0.034 measured
    guided.sum().backward()
    assert low.grad is not None and low.grad.abs().sum() > 0
    out = net(image, 0.1)
    assert out.image.shape == image.shape and out.A.shape == (1, 3, 6, 10)
    with pytest.raises(ValueError, match="map_upsample must be one of bilinear, guided"):
        DarkeningNet(map_upsample="bicubic")


def test_guided_map_upsampling_runs_in_float32_under_autocast():
    """Under bf16 autocast (the engine's AMP path on CPU) the guided upsampling gives the float32 result: its window
    variances are differences of means of squares, which bf16 turns into noise (seen: a darkener loss 16% off)."""
    torch.manual_seed(0)
    image = torch.rand(2, 3, 20, 28) * 0.2 + 0.4
    maps = torch.rand(2, 6, 5, 7)
    net = DarkeningNet(width=4, map_scale=0.25, map_upsample="guided")
    reference = net.upsample_maps(maps, image)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = net.upsample_maps(maps, image)
    assert amp.dtype == torch.float32 and torch.allclose(amp, reference, atol=1e-6)
