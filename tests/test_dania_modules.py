"""DANIA's networks: the relighting net R (R(I) = I + r) and the output-space discriminator.

Parameter counts are written out layer by layer (weights + batch-norm affine + biases), not computed by the code.
"""

import pytest
import torch
import torch.nn.functional as F

from simmm.models import OutputDiscriminator, RelightNet, Relit
from simmm.models.relight import ResidualBlock


def _images(b=2, h=20, w=28, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------ R


def _relight_params(w, blocks=3):
    """By hand: conv weights k·k·in·out, BN 2·channels, only the last conv has a bias."""
    stem = 7 * 7 * 3 * w + 2 * w
    down = 3 * 3 * w * 2 * w + 2 * 2 * w + 3 * 3 * 2 * w * 4 * w + 2 * 4 * w
    block = 2 * (3 * 3 * 4 * w * 4 * w + 2 * 4 * w)
    up = 3 * 3 * 4 * w * 2 * w + 2 * 2 * w + 3 * 3 * 2 * w * w + 2 * w
    head = 7 * 7 * w * 3 + 3
    return stem + down + blocks * block + up + head


def test_relight_parameter_count():
    assert _relight_params(64) == 4_299_395  # the paper's R: 9,536 + 369,408 + 3 × 1,180,672 + 369,280 + 9,411
    assert _n_params(RelightNet()) == 4_299_395
    assert _n_params(RelightNet(width=4)) == _relight_params(4) == 18_155
    assert _n_params(RelightNet(width=4, blocks=1)) == _relight_params(4, blocks=1)


@pytest.mark.parametrize("hw", [(20, 28), (24, 24), (21, 33), (5, 5), (17, 6)])
def test_relight_output_has_the_input_size(hw):
    torch.manual_seed(0)
    net = RelightNet(width=4)
    x = _images(2, *hw)
    out = net(x)
    assert isinstance(out, Relit)
    assert out.image.shape == out.residual.shape == x.shape
    assert torch.equal(out.image, x + out.residual)
    assert out.residual.abs().max() < 1


def test_relight_crop_keeps_pixels_aligned():
    """R on a top-left sub-image equals R on the whole image there (eval mode, away from the cut borders)."""
    torch.manual_seed(0)
    net = RelightNet(width=4, blocks=0).eval()
    x = _images(1, 64, 64)
    whole = net.residual(x)
    for h, w in ((61, 61), (63, 62)):
        part = net.residual(x[..., :h, :w])
        assert torch.allclose(part[..., :24, :24], whole[..., :24, :24], atol=1e-5), (h, w)


def test_relight_zero_last_layer_is_the_identity():
    torch.manual_seed(0)
    net = RelightNet(width=4)
    last = net.head[-2]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = _images(2, 13, 19)
    out = net(x)
    assert torch.equal(out.residual, torch.zeros_like(x))
    assert torch.equal(out.image, x)


def test_residual_block_adds_its_input():
    """With the last batch norm's scale at zero the body outputs 0, so the block is the identity (the skip)."""
    torch.manual_seed(0)
    block = ResidualBlock(4)
    torch.nn.init.zeros_(block.body[-1].weight)
    x = torch.randn(2, 4, 6, 7)
    assert torch.equal(block(x), x)


def test_relight_gradients_reach_every_parameter_and_the_input():
    torch.manual_seed(0)
    net = RelightNet(width=4)
    x = _images(2, 15, 22).requires_grad_(True)
    out = net(x)
    (out.image.square().mean() + out.residual.mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert net(x).image.shape == x.shape


def test_relight_bad_inputs():
    net = RelightNet(width=2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(2, 1, 8, 8\)"):
        net(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="at least 5x5 pixels, got 4x9"):
        net(torch.rand(1, 3, 4, 9))
    with pytest.raises(ValueError, match="width >= 1"):
        RelightNet(width=0)


# ------------------------------------------------------------------------------------------------ D


def _disc_params(c, w):
    """By hand: five 4×4 convolutions with bias, channels c → w → 2w → 4w → 4w → 1."""
    chans = [c, w, 2 * w, 4 * w, 4 * w, 1]
    return sum(16 * a * b + b for a, b in zip(chans, chans[1:]))


def test_discriminator_parameter_count():
    assert _disc_params(19, 64) == 1_728_193  # 19,520 + 131,200 + 524,544 + 1,048,832 + 4,097
    assert _n_params(OutputDiscriminator(19)) == 1_728_193
    assert _n_params(OutputDiscriminator(5, width=3)) == _disc_params(5, 3)
    assert _disc_params(5, 3) == 16 * (15 + 18 + 72 + 144 + 12) + (3 + 6 + 12 + 12 + 1)


@pytest.mark.parametrize("hw,out", [((16, 16), (1, 1)), ((64, 96), (13, 21)), ((33, 50), (5, 9)),
                                    ((512, 512), (125, 125))])
def test_discriminator_output_shape(hw, out):
    d = OutputDiscriminator(5, width=2)
    logits = torch.randn(2, 5, *hw)
    assert d(F.softmax(logits, dim=1)).shape == (2, 1, *out)


def test_discriminator_layers_strides_and_activations():
    d = OutputDiscriminator(7, width=2)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert [c.out_channels for c in convs] == [2, 4, 8, 8, 1]
    assert all(c.kernel_size == (4, 4) and c.padding == (1, 1) for c in convs)
    acts = [m for m in d.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.2 for a in acts)
    # the score is not squashed: a large bias comes out as it is
    with torch.no_grad():
        convs[-1].bias.fill_(5.0)
        convs[-1].weight.zero_()
    assert torch.equal(d(torch.rand(1, 7, 16, 16)), torch.full((1, 1, 1, 1), 5.0))


def test_discriminator_gradients_reach_every_parameter_and_the_prediction():
    torch.manual_seed(0)
    d = OutputDiscriminator(4, width=2)
    logits = torch.randn(2, 4, 20, 24, requires_grad=True)
    d(F.softmax(logits, dim=1)).square().mean().backward()
    missing = [n for n, p in d.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert logits.grad.abs().sum() > 0


def test_discriminator_bad_inputs():
    d = OutputDiscriminator(19, width=2)
    with pytest.raises(ValueError, match=r"\(B, 19, H, W\), got \(1, 5, 32, 32\)"):
        d(torch.rand(1, 5, 32, 32))
    with pytest.raises(ValueError, match="at least 16x16 pixels, got 15x40"):
        d(torch.rand(1, 19, 15, 40))
    with pytest.raises(ValueError, match="num_classes >= 1"):
        OutputDiscriminator(0)
