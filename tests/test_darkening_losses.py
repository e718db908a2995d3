import math

import pytest
import torch

from simmm.darkening import DarkeningNet, DarkeningOutput
from simmm.darkening_losses import (
    ColorConstancyLoss,
    DarkeningLoss,
    ExposureLoss,
    FeatureSimilarity,
    FlexibilityLoss,
    TentTVLoss,
    color_constancy_loss,
    exposure_loss,
    feature_similarity,
    flexibility_loss,
    tent,
    tent_tv_loss,
)

D = torch.float64


def _image():
    # 1x3x2x2; channel means per pixel: 0.3, 0.3 / 0.4, 0.2; per-channel means R=0.45, G=B=0.225
    R = [[0.3, 0.6], [0.9, 0.0]]
    G = [[0.3, 0.0], [0.3, 0.3]]
    B = [[0.3, 0.3], [0.0, 0.3]]
    return torch.tensor([[R, G, B]], dtype=D)


def test_feature_similarity_hand_values():
    va, vb = torch.tensor([[3.0, 4.0]], dtype=D), torch.tensor([[4.0, 3.0]], dtype=D)
    assert feature_similarity([va], [vb]).item() == pytest.approx(0.96)  # (12 + 12) / 25
    # a (1, 2, 1, 2) map: positions (3,4)|(4,3) -> 0.96 and (1,0)|(0,2) -> 0; mean 0.48
    ma = torch.tensor([[[[3.0, 1.0]], [[4.0, 0.0]]]], dtype=D)
    mb = torch.tensor([[[[4.0, 0.0]], [[3.0, 2.0]]]], dtype=D)
    assert feature_similarity(ma, mb).item() == pytest.approx(0.48)
    assert FeatureSimilarity()([va, ma], [vb, mb]).item() == pytest.approx((0.96 + 0.48) / 2)
    assert feature_similarity(ma, ma).item() == pytest.approx(1.0)
    assert feature_similarity(ma, -ma).item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="feature_similarity: got 1 and 2 maps"):
        feature_similarity([va], [vb, vb])


def test_exposure_loss_hand_values():
    img = _image()
    # channel means 0.3, 0.3, 0.4, 0.2 vs E=0.25: diffs 0.05, 0.05, 0.15, -0.05
    e = torch.tensor([0.25], dtype=D)
    assert exposure_loss(img, e).item() == pytest.approx((3 * 0.0025 + 0.0225) / 4)
    assert ExposureLoss("l1")(img, torch.tensor([0.25], dtype=D)).item() == pytest.approx(0.3 / 4)
    # a map: E = the channel means except one pixel off by 0.1
    e = torch.tensor([[[[0.3, 0.3], [0.4, 0.3]]]], dtype=D)
    assert exposure_loss(img, e).item() == pytest.approx(0.01 / 4)
    assert exposure_loss(img, e, norm="l1").item() == pytest.approx(0.1 / 4)
    with pytest.raises(ValueError, match="norm must be 'l1' or 'l2', got 'l3'"):
        exposure_loss(img, 0.2, norm="l3")


def test_exposure_loss_patch_hand_values():
    img = _image()  # channel means 0.3, 0.3 / 0.4, 0.2: their 2x2 mean is 0.3
    assert exposure_loss(img, 0.25, patch=2).item() == pytest.approx(0.05**2)
    assert exposure_loss(img, 0.25, norm="l1", patch=2).item() == pytest.approx(0.05)
    # a patch larger than the image is clipped to it: the same whole-image mean
    assert ExposureLoss(patch=16)(img, torch.tensor([0.25], dtype=D)).item() == pytest.approx(0.05**2)
    # an E map is averaged over the same patch: (0.3+0.3+0.4+0.5)/4 = 0.375 vs 0.3
    e = torch.tensor([[[[0.3, 0.3], [0.4, 0.5]]]], dtype=D)
    assert exposure_loss(img, e, patch=2).item() == pytest.approx(0.075**2)
    # a 1x4 strip in 1x2 patches (the height clipped to 1): means 0.1 and 0.5 vs 0.2
    strip = torch.tensor([[0.0, 0.2, 0.4, 0.6]], dtype=D).expand(3, 1, 4)[None]
    assert exposure_loss(strip, 0.2, patch=2).item() == pytest.approx((0.01 + 0.09) / 2)
    loss = DarkeningLoss(sim=0, color=0, tv=0, flex=0, exposure=1, exposure_patch=2)
    assert loss(DarkeningOutput(img, img, img), 0.25)[0].item() == pytest.approx(0.05**2)
    with pytest.raises(ValueError, match="patch must be >= 1, got 0"):
        exposure_loss(img, 0.2, patch=0)


def test_color_constancy_hand_value_and_grey_gradient():
    # R=0.45, G=B=0.225: sqrt(0.225^4 + 0.225^4 + 0) = 0.225^2 * sqrt(2)
    assert color_constancy_loss(_image()).item() == pytest.approx(0.225 ** 2 * math.sqrt(2))
    grey = torch.full((2, 3, 4, 4), 0.3, dtype=D, requires_grad=True)
    loss = ColorConstancyLoss()(grey)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(grey.grad).all()
    # batch mean: the coloured image and a grey one -> half
    both = torch.cat([_image(), torch.full((1, 3, 2, 2), 0.5, dtype=D)])
    assert color_constancy_loss(both).item() == pytest.approx(0.225 ** 2 * math.sqrt(2) / 2)


def test_tent_function():
    d = torch.tensor([0.0, 0.01, 0.02, 0.03, 0.04, 0.05, -0.01, -0.03, 1.0], dtype=D)
    want = torch.tensor([0.0, 0.01, 0.02, 0.01, 0.0, 0.0, 0.01, 0.01, 0.0], dtype=D)
    torch.testing.assert_close(tent(d, 0.02), want)


def test_tent_tv_hand_values():
    # 1x1x1x4, horizontal diffs 0.01, 0.03, 0.05 -> phi 0.01, 0.01, 0 -> 2 * 2e-4 / (1 * 3)
    A = torch.tensor([[[[0.0, 0.01, 0.04, 0.09]]]], dtype=D)
    assert tent_tv_loss(A).item() == pytest.approx(2 * 2e-4 / 3)
    # 1x1x2x2: vertical diffs 0.02, 0.04 -> phi 0.02, 0 -> 4e-4 / 2; horizontal 0.01, 0.03 -> 2e-4 / 2
    A2 = torch.tensor([[[[0.0, 0.01], [0.02, 0.05]]]], dtype=D)
    assert tent_tv_loss(A2).item() == pytest.approx(2 * (2e-4 + 1e-4))
    # a batch of two copies: sums double, divided by batch 2 -> same value
    assert TentTVLoss()(torch.cat([A2, A2])).item() == pytest.approx(2 * (2e-4 + 1e-4))
    # alpha matters: with alpha=0.05 the 0.04 diff costs 0.05 - 0.01 = 0.04
    want = 2 * ((0.02 ** 2 + 0.04 ** 2) / 2 + (0.01 ** 2 + 0.03 ** 2) / 2)
    assert tent_tv_loss(A2, alpha=0.05).item() == pytest.approx(want)


# A non-square 1x1x2x3 map for the normalisers. Convention (METHOD.md §4.2, Zero-DCE's TV): ∇x is the
# difference along H (rows), whose (H-1)W values are averaged; ∇y along W, H(W-1) values:
#     A = [[0.00, 0.01, 0.05],
#          [0.03, 0.04, 0.04]]
#   along H: 0.03, 0.03, -0.01        -> phi 0.01, 0.01, 0.01   -> 3e-4 / ((2-1)*3) = 1e-4
#   along W: 0.01, 0.04 | 0.01, 0.00  -> phi 0.01, 0, 0.01, 0   -> 2e-4 / (2*(3-1)) = 0.5e-4
#   L = 2 * (1e-4 + 0.5e-4) / 1 = 3e-4      (swapped normalisers would give 2 * (3e-4/4 + 2e-4/3) = 2.83e-4)
# with alpha = 0.05: phi along H 0.03, 0.03, 0.01 -> 19e-4 / 3; along W 0.01, 0.04, 0.01, 0 -> 18e-4 / 4
#   L = 2 * (19e-4 / 3 + 4.5e-4) = (65 / 3) e-4
NON_SQUARE_A = [[0.0, 0.01, 0.05], [0.03, 0.04, 0.04]]


def test_tent_tv_non_square_hand_values():
    A = torch.tensor([[NON_SQUARE_A]], dtype=D)
    assert tent_tv_loss(A).item() == pytest.approx(3e-4, rel=1e-9)
    # the transpose swaps the two directions and their counts: same value
    assert tent_tv_loss(A.transpose(-1, -2)).item() == pytest.approx(3e-4, rel=1e-9)
    # channels are summed, the batch is averaged: 3 channels, 2 images -> 3 * 3e-4
    assert tent_tv_loss(A.expand(2, 3, 2, 3)).item() == pytest.approx(9e-4, rel=1e-9)
    assert tent_tv_loss(A, alpha=0.05).item() == pytest.approx(65 / 3 * 1e-4, rel=1e-9)
    assert TentTVLoss(alpha=0.05)(A.transpose(-1, -2)).item() == pytest.approx(65 / 3 * 1e-4, rel=1e-9)


def test_darkening_loss_passes_tv_alpha_to_the_tent():
    A = torch.tensor([[NON_SQUARE_A]], dtype=D).expand(1, 3, 2, 3)
    out = DarkeningOutput(torch.full((1, 3, 2, 3), 0.5, dtype=D), A, torch.ones(1, 3, 2, 3, dtype=D))
    only_tv = dict(sim=0.0, exposure=0.0, color=0.0, flex=0.0)
    total, terms = DarkeningLoss(tv=2.0, tv_alpha=0.05, **only_tv)(out, 0.5)
    assert terms["tv"].item() == pytest.approx(3 * 65 / 3 * 1e-4, rel=1e-9)
    assert total.item() == pytest.approx(2.0 * 65e-4, rel=1e-9)
    _, terms = DarkeningLoss(**only_tv)(out, 0.5)  # default alpha 0.02
    assert terms["tv"].item() == pytest.approx(3 * 3e-4, rel=1e-9)


def test_tent_tv_flat_and_strong_edges_cost_nothing():
    flat = torch.full((2, 3, 5, 6), 0.3, dtype=D)
    assert tent_tv_loss(flat).item() == 0.0
    step = torch.zeros(2, 3, 6, 6, dtype=D)
    step[..., 3:] = 0.5  # one strong vertical edge, |d| = 0.5 >= 2 alpha
    step[..., 3:, :] -= 0.2  # and a strong horizontal one
    assert tent_tv_loss(step).item() == 0.0
    ripple = flat + 0.02 * torch.rand_like(flat)
    assert tent_tv_loss(ripple).item() > 0


def test_flexibility_loss_hand_value():
    B = torch.tensor([[[[0.95, 1.0], [0.97, 0.98]]]], dtype=D)
    assert flexibility_loss(B).item() == pytest.approx(0.025)
    assert FlexibilityLoss()(torch.ones(2, 3, 2, 2)).item() == 0.0


def test_gradchecks():
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(2, 3, 3, 3, generator=g, dtype=D) * 0.8 + 0.1).requires_grad_()
    e = torch.rand(2, 1, 3, 3, generator=g, dtype=D)
    assert torch.autograd.gradcheck(lambda x: exposure_loss(x, e), (img,))
    assert torch.autograd.gradcheck(lambda x: exposure_loss(x, e + 0.5, "l1"), (img,))
    assert torch.autograd.gradcheck(color_constancy_loss, (img,))
    fa = torch.randn(2, 4, 3, 3, generator=g, dtype=D)
    fb = torch.randn(2, 4, 3, 3, generator=g, dtype=D, requires_grad=True)
    vb = torch.randn(2, 5, generator=g, dtype=D, requires_grad=True)
    va = torch.randn(2, 5, generator=g, dtype=D)
    assert torch.autograd.gradcheck(lambda m, v: feature_similarity([fa, va], [m, v]), (fb, vb))
    # tent TV away from the kinks at |d| in {0, alpha, 2 alpha}: diffs 0.007 / 0.013 / 0.027 / 0.033
    A = torch.tensor([[[[0.0, 0.007, 0.034], [0.013, 0.046, 0.079]]]], dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(tent_tv_loss, (A,))
    B = (0.95 + 0.05 * torch.rand(1, 3, 2, 2, generator=g, dtype=D)).requires_grad_()
    assert torch.autograd.gradcheck(flexibility_loss, (B,))


def _output():
    img = _image()
    A = torch.tensor([[[[0.0, 0.01], [0.02, 0.05]]]], dtype=D).expand(1, 3, 2, 2)
    B = torch.tensor([[[[0.95, 1.0], [0.97, 0.98]]]], dtype=D).expand(1, 3, 2, 2)
    return DarkeningOutput(img, A, B)


def test_darkening_loss_weighted_sum():
    out = _output()
    e = torch.tensor([0.25], dtype=D)
    fa, fb = [torch.tensor([[3.0, 4.0]], dtype=D)], [torch.tensor([[4.0, 3.0]], dtype=D)]
    total, terms = DarkeningLoss()(out, e, fa, fb)
    # tv: the 1x1x2x2 map of test_tent_tv_hand_values repeated over 3 channels (summed) -> 3 * 6e-4
    want = {"sim": 0.96, "exposure": 0.0075, "color": 0.225 ** 2 * math.sqrt(2), "tv": 3 * 6e-4,
            "flex": 0.025}
    for k, v in want.items():
        assert terms[k].item() == pytest.approx(v), k
    expected = 0.1 * 0.96 + 10 * 0.0075 + 25 * want["color"] + 1600 * 3 * 6e-4 + 5 * 0.025
    assert total.item() == pytest.approx(expected)
    # custom weights, l1 exposure, sim off without features
    total2, terms2 = DarkeningLoss(sim=0.0, exposure=1, color=0, tv=0, flex=1, exposure_norm="l1")(out, e)
    assert terms2["sim"].item() == 0.0 and terms2["color"].item() == 0.0
    assert total2.item() == pytest.approx(0.075 + 0.025)
    with pytest.raises(ValueError, match="feats_day and feats_dark are needed when the sim weight is > 0"):
        DarkeningLoss()(out, e)


def test_darkening_loss_trains_the_net():
    torch.manual_seed(0)
    net = DarkeningNet(width=4, map_scale=0.5)
    img = torch.rand(2, 3, 8, 8)
    out = net(img, torch.tensor([0.1, 0.3]))
    feats = [torch.randn(2, 4, 2, 2)]
    dark = [f + out.image.mean() for f in feats]
    total, terms = DarkeningLoss()(out, torch.tensor([0.1, 0.3]), feats, dark)
    total.backward()
    assert set(terms) == {"sim", "exposure", "color", "tv", "flex"}
    assert all(not t.requires_grad for t in terms.values())
    assert all(p.grad is not None for p in net.parameters())
