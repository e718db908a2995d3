"""DANIA losses (simmm.dania_losses): hand-computed values on tiny tensors, square and non-square, with and without
autograd, and float64 gradient checks."""
import math
import urllib.error

import pytest
import torch

from simmm import dania_losses as dl
from simmm.dania_losses import (
    CITYSCAPES_CLASS_SHARES,
    DiscriminatorLoss,
    GeneratorAdversarialLoss,
    LightLoss,
    PatchExposureLoss,
    SSIMLoss,
    StaticLoss,
    StyleLoss,
    TVLoss,
    WeightedCrossEntropy,
    class_pixel_counts,
    class_shares,
    class_weights,
    discriminator_loss,
    fuse_pseudo_label,
    generator_adversarial_loss,
    gram_matrix,
    patch_exposure_loss,
    ssim_loss,
    static_focal_loss,
    static_loss,
    style_loss,
    tv_loss,
    weighted_cross_entropy,
)

D = torch.float64
C1, C2 = 0.01 ** 2, 0.03 ** 2
LOG2 = math.log(2.0)


def t(x, dtype=D):
    return torch.tensor(x, dtype=dtype)


def both_modes(fn):
    """fn() with autograd and under no_grad: the same number."""
    a = fn()
    with torch.no_grad():
        b = fn()
    assert a.item() == pytest.approx(b.item(), rel=1e-12, abs=1e-15)
    return a.item()


# ------------------------------------------------------------------------------------------------------------ TV

def test_tv_hand_values_square_nonsquare_batch():
    # 2x3: vertical diffs 2, 1, -1 -> 6 / ((H-1)W = 3) = 2; horizontal 1, 2 | 0, 0 -> 5 / (H(W-1) = 4) = 1.25
    r = t([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])
    assert both_modes(lambda: tv_loss(r)) == pytest.approx(2 * (2 + 1.25))
    # 2x2: vertical 1, 2 -> 5/2; horizontal 1, 2 -> 5/2; TV = 2 * 5 = 10
    assert TVLoss()(t([[[[0.0, 1.0], [1.0, 3.0]]]])).item() == pytest.approx(10.0)
    # batch of r and 2r: the mean of 6.5 and 4 * 6.5
    assert tv_loss(torch.cat([r, 2 * r])).item() == pytest.approx((6.5 + 26.0) / 2)
    assert tv_loss(t([[[[1.0, 5.0]]]])).item() == pytest.approx(2 * 16 / 1)  # one row: horizontal only
    with pytest.raises(ValueError, match=r"tv_loss expects \(B, C, H, W\)"):
        tv_loss(t([1.0, 2.0]))


# ---------------------------------------------------------------------------------------------------------- SSIM

def _dssim_vs_black(k):
    # a pixel whose 3x3 window (reflect padded) holds k ones of an otherwise black image, against a black image:
    # mu = k/9, sigma^2 = k/9 - k^2/81, mu_y = sigma_y = sigma_xy = 0 -> SSIM = C1 C2 / ((mu^2 + C1)(sigma^2 + C2))
    mu, var = k / 9, k / 9 - k * k / 81
    return (1 - C1 * C2 / ((mu * mu + C1) * (var + C2))) / 2


def test_ssim_loss_hand_values_block_filter_reflect():
    # constant images 0.5 vs 0.3: sigma = 0 -> SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = torch.full((1, 3, 2, 3), 0.5, dtype=D), torch.full((1, 3, 2, 3), 0.3, dtype=D)
    expect = (1 - (0.3 + C1) / (0.34 + C1)) / 2
    assert both_modes(lambda: ssim_loss(a, b)) == pytest.approx(expect, rel=1e-12)
    assert ssim_loss(a, a).item() == pytest.approx(0.0, abs=1e-12)
    # square 2x2, a single one at (0, 0): reflect padding repeats it at padded rows/cols {0, 2}, so the 3x3 windows
    # hold 1, 2, 2, 4 ones
    x = torch.zeros(1, 1, 2, 2, dtype=D)
    x[0, 0, 0, 0] = 1
    black = torch.zeros_like(x)
    expect = sum(_dssim_vs_black(k) for k in (1, 2, 2, 4)) / 4
    assert SSIMLoss()(x, black).item() == pytest.approx(expect, rel=1e-12)
    # non-square 2x3: windows hold 1, 1, 0 / 2, 2, 0 ones
    x = torch.zeros(1, 1, 2, 3, dtype=D)
    x[0, 0, 0, 0] = 1
    expect = sum(_dssim_vs_black(k) for k in (1, 1, 0, 2, 2, 0)) / 6
    assert both_modes(lambda: ssim_loss(x, torch.zeros_like(x))) == pytest.approx(expect, rel=1e-12)
    with pytest.raises(ValueError, match="ssim_loss: shapes differ"):
        ssim_loss(x, black)


# ------------------------------------------------------------------------------------------------------ exposure

def test_patch_exposure_hand_values():
    # 1x3x2x4, patch 2: block means 0.3 (left) and 0.6 (right) whatever the channels; E = 0.4
    img = torch.zeros(1, 3, 2, 4, dtype=D)
    img[:, 0, :, :2], img[:, 1, :, :2] = 0.9, 0.0  # channel means 0.3 on the left
    img[:, :, :, 2:] = 0.6
    img[0, 0, 0, 2], img[0, 1, 0, 2] = 0.7, 0.5  # still 0.6 on average
    assert both_modes(lambda: patch_exposure_loss(img, 0.4, patch=2)) == pytest.approx((0.1 + 0.2) / 2)
    assert PatchExposureLoss(2, "l2")(img, t(0.4)).item() == pytest.approx((0.01 + 0.04) / 2)
    # 3x5 with patch 2: one row of 2 blocks; the last row and column are dropped (a 100 there changes nothing)
    img = torch.full((1, 1, 3, 5), 0.5, dtype=D)
    img[0, 0, 2, :] = 100.0
    img[0, 0, :, 4] = 100.0
    img[0, 0, 0, 0] = 0.9  # first block: (0.9 + 3 * 0.5) / 4 = 0.6
    assert patch_exposure_loss(img, 0.5, patch=2).item() == pytest.approx((0.1 + 0.0) / 2)
    # square 4x4 with the default norm and patch 2: 4 blocks at 0, 0, 0, 1 vs E = 0.25
    img = torch.zeros(1, 1, 4, 4, dtype=D)
    img[..., 2:, 2:] = 1.0
    assert patch_exposure_loss(img, 0.25, patch=2).item() == pytest.approx((3 * 0.25 + 0.75) / 4)
    with pytest.raises(ValueError, match=r"smaller than the 32x32 patch"):
        patch_exposure_loss(img, 0.25)
    with pytest.raises(ValueError, match="exposure norm must be 'l1' or 'l2', got 'l3'"):
        PatchExposureLoss(2, "l3")


# ------------------------------------------------------------------------------------------------------- style

def test_gram_and_style_hand_values():
    # relit 1x2x1x2: c0 = (1, 2), c1 = (3, 0): G = [[5, 3], [3, 9]] / 2
    relit = t([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    assert torch.allclose(gram_matrix(relit), t([[[2.5, 1.5], [1.5, 4.5]]]))
    # night 1x2x2x1 (another size): c0 = (0, 2), c1 = (0, 0): G = [[2, 0], [0, 0]]
    night = t([[[[0.0], [2.0]], [[0.0], [0.0]]]])
    # difference [[0.5, 1.5], [1.5, 4.5]]: Frobenius sqrt(0.25 + 2.25 + 2.25 + 20.25) = 5
    assert both_modes(lambda: style_loss(relit, night)) == pytest.approx(5.0)
    # a batch of relit and 2*relit against one night image: G(2x) = [[10, 6], [6, 18]] -> sqrt(64+36+36+324)
    two = torch.cat([relit, 2 * relit])
    assert StyleLoss()(two, night).item() == pytest.approx((5.0 + math.sqrt(460.0)) / 2)
    # paired: each relit image against its own night image
    assert style_loss(two, torch.cat([night, night])).item() == pytest.approx((5.0 + math.sqrt(460.0)) / 2)
    # square 2x2 images: relit = night -> 0
    sq = t([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert style_loss(sq, sq.clone()).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"style_loss: night images .* \(batch must be equal or 1"):
        style_loss(two, torch.cat([night, night, night]))


def test_style_target_gets_no_gradient():
    relit = torch.rand(2, 3, 4, 5, dtype=D, requires_grad=True)
    night = torch.rand(2, 3, 6, 4, dtype=D, requires_grad=True)
    style_loss(relit, night).backward()
    assert relit.grad is not None and night.grad is None


def test_vgg_style_fails_clearly_offline(monkeypatch):
    import torchvision.models._api as api

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="could not load torchvision's VGG-16 ImageNet weights.*need internet once"):
        StyleLoss("vgg")
    with pytest.raises(RuntimeError, match="VGG-16"):
        LightLoss(style_features="vgg")
    with pytest.raises(ValueError, match="features must be 'image' or 'vgg', got 'resnet'"):
        StyleLoss("resnet")


# ------------------------------------------------------------------------------------------------- light total

def test_light_loss_hand_values_and_weights():
    # I = 0.5, r = 0.1 -> R(I) = 0.6 everywhere (1x1x2x2); night = 0.2 -> E = 0.2; patch 2
    image = torch.full((1, 1, 2, 2), 0.5, dtype=D)
    r = torch.full((1, 1, 2, 2), 0.1, dtype=D)
    night = torch.full((1, 1, 2, 2), 0.2, dtype=D)
    ssim = (1 - (0.6 + C1) / (0.61 + C1)) / 2  # constant images 0.5, 0.6
    exposure = 0.4                               # |0.6 - 0.2|
    style = 0.36 - 0.04                          # Gram 0.6^2 vs 0.2^2 (1x1)
    total, terms = LightLoss(patch=2)(image, r, night)
    assert terms["tv"].item() == pytest.approx(0.0)
    assert terms["ssim"].item() == pytest.approx(ssim, rel=1e-12)
    assert terms["exposure"].item() == pytest.approx(exposure)
    assert terms["style"].item() == pytest.approx(style)
    assert total.item() == pytest.approx(10 * 0 + 1 * ssim + 1 * exposure + 10 * style)  # paper weights
    # TV of a non-constant r (1x1x1x2: horizontal diff 0.2 -> 2 * 0.04 / 1), weights moved, l2 exposure
    r2 = t([[[[0.0, 0.2]]]])
    img2 = torch.zeros(1, 1, 1, 2, dtype=D)
    total, terms = LightLoss(tv=3.0, ssim=0.0, exposure=2.0, style=0.0, exposure_norm="l2", patch=1)(
        img2, r2, torch.full((1, 1, 1, 2), 0.3, dtype=D))
    # exposure l2, patch 1: (0 - 0.3)^2 and (0.2 - 0.3)^2 -> mean 0.05
    assert terms["tv"].item() == pytest.approx(0.08)
    assert terms["exposure"].item() == pytest.approx(0.05)
    assert terms["ssim"].item() == 0.0 and terms["style"].item() == 0.0
    assert total.item() == pytest.approx(3 * 0.08 + 2 * 0.05)
    with pytest.raises(ValueError, match="LightLoss: exposure norm must be 'l1' or 'l2'"):
        LightLoss(exposure_norm="l3")


def test_light_loss_gradients_reach_image_and_r_not_night():
    image = torch.rand(2, 3, 4, 6, dtype=D, requires_grad=True)
    r = (0.1 * torch.randn(2, 3, 4, 6, dtype=D)).requires_grad_()
    night = torch.rand(2, 3, 4, 6, dtype=D, requires_grad=True)
    total, _ = LightLoss(patch=2)(image, r, night)
    total.backward()
    assert image.grad.abs().sum() > 0 and r.grad.abs().sum() > 0 and night.grad is None


# ------------------------------------------------------------------------------------------------ re-weighting

def test_class_weights_hand_values():
    # a = (1/2, 1/4, 1/4): w' = log2 (1, 2, 2); mean 5/3 log2; deviations log2 (-2/3, 1/3, 1/3);
    # unbiased std log2 sqrt((4/9 + 1/9 + 1/9) / 2) = log2 / sqrt(3) -> z = (-2/sqrt3, 1/sqrt3, 1/sqrt3)
    w = class_weights([0.5, 0.25, 0.25], s=0.1)
    s3 = math.sqrt(3.0)
    assert w.tolist() == pytest.approx([1 - 0.2 / s3, 1 + 0.1 / s3, 1 + 0.1 / s3], rel=1e-12)
    # only ratios matter: pixel counts (2, 1, 1) give the same weights
    assert torch.allclose(class_weights(class_shares(torch.tensor([2, 1, 1]))), w)
    assert class_weights([0.5, 0.25, 0.25], s=0.2).tolist() == pytest.approx([1 - 0.4 / s3, 1 + 0.2 / s3,
                                                                             1 + 0.2 / s3])
    with pytest.raises(ValueError, match=r"classes \[1\] have share <= 0"):
        class_weights([0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match="class_shares: no labelled pixels"):
        class_shares(torch.zeros(3, dtype=torch.long))


def test_cityscapes_default_weights():
    a = torch.tensor(CITYSCAPES_CLASS_SHARES, dtype=D)
    assert a.numel() == 19 and a.sum().item() == pytest.approx(1.0, abs=1e-6)
    w = class_weights()
    assert w.mean().item() == pytest.approx(1.0) and w.std().item() == pytest.approx(0.1)
    assert w.argmin().item() == 0 and w.argmax().item() == 17  # road is the most common class, train the rarest
    assert WeightedCrossEntropy().weights.shape == (19,) and StaticLoss().weights.shape == (19,)


def test_class_pixel_counts():
    label = torch.tensor([[[0, 0, 1], [2, 255, 0]]])
    assert class_pixel_counts(label, num_classes=3).tolist() == [3, 1, 1]
    assert class_pixel_counts(label.to(torch.uint8), num_classes=4).tolist() == [3, 1, 1, 0]
    with pytest.raises(ValueError, match=r"ids outside \[0, 2\) that are not ignore_index=255: \[2\]"):
        class_pixel_counts(label, num_classes=2)
    with pytest.raises(ValueError, match="expects integer labels"):
        class_pixel_counts(label.float())


# ------------------------------------------------------------------------------------------------ source CE

def _ce_case(square):
    # pixel a: logits (0, 0), label 0 -> -log p = log 2; pixel b: logits (log 3, 0), label 1 -> log 4;
    # pixel c: ignored; square adds pixel d: logits (0, log 3), label 1 -> log(4/3)
    a, b, c, d = (0.0, 0.0), (math.log(3), 0.0), (5.0, -1.0), (0.0, math.log(3))
    if square:
        pix, lab, shape = [a, b, c, d], [0, 1, 255, 1], (2, 2)
    else:
        pix, lab, shape = [a, b, c], [0, 1, 255], (1, 3)
    logits = t(pix).T.reshape(1, 2, *shape)
    return logits, torch.tensor(lab).reshape(1, *shape)


def test_weighted_cross_entropy_hand_values():
    w = t([2.0, 1.0])
    logits, target = _ce_case(square=False)
    # paper: (2 log2 + 1 * 2 log2) / (N=2 * |C|=2) = log2; torch: (2 log2 + 2 log2) / (2 + 1)
    assert both_modes(lambda: weighted_cross_entropy(logits, target, w)) == pytest.approx(LOG2)
    assert both_modes(lambda: weighted_cross_entropy(logits, target, w, "torch")) == pytest.approx(4 * LOG2 / 3)
    logits, target = _ce_case(square=True)
    extra = math.log(4 / 3)
    assert WeightedCrossEntropy(w)(logits, target).item() == pytest.approx((4 * LOG2 + extra) / (3 * 2))
    assert WeightedCrossEntropy(w, "torch")(logits, target).item() == pytest.approx((4 * LOG2 + extra) / 4)
    # no weights: the paper form is the plain mean divided by |C|
    assert weighted_cross_entropy(logits, target).item() == pytest.approx((3 * LOG2 + extra) / (3 * 2))
    # nothing labelled: 0, with a graph
    logits = logits.clone().requires_grad_()
    empty = weighted_cross_entropy(logits, torch.full_like(target, 255), w)
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="normalize must be 'paper' or 'torch', got 'sum'"):
        weighted_cross_entropy(logits, target, w, "sum")
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\), got \(3,\)"):
        weighted_cross_entropy(logits, target, [1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------------ static loss

NC = 19


def _logits_for(classes, high=math.log(10.0), static=True):
    """(1, 19, H, W) logits: at each pixel the given class has `high`, the rest 0. Over the 11 static channels a
    static class then has P = 10 / 20 = 0.5 and every other static class 1 / 20 = 0.05."""
    classes = torch.as_tensor(classes)
    z = torch.zeros(1, NC, *classes.shape, dtype=D)
    z[0].scatter_(0, classes[None], high)
    return z


P_HI, P_LO = 0.5, 0.05


def test_union_right_neighbour_accepts_other_does_not():
    z = _logits_for([[2, 2, 2]])  # the night prediction says class 2 everywhere (P = 0.5)
    # pixel 0 (label 1): its right neighbour carries 2 -> p = 0.5; pixels 1, 2 carry 2 themselves
    label = torch.tensor([[[1, 2, 2]]])
    assert both_modes(lambda: static_focal_loss(z, label, gamma=0.0)) == pytest.approx(-math.log(P_HI))
    # pixel 0's only neighbour carries 1, not 2 -> p = P(1) = 0.05; pixel 1 is accepted through pixel 2
    label = torch.tensor([[[1, 1, 2]]])
    expect = (-math.log(P_LO) - 2 * math.log(P_HI)) / 3
    assert static_focal_loss(z, label, gamma=0.0).item() == pytest.approx(expect)
    # focal term, gamma = 1: -(1 - p) log p
    foc = lambda p: -(1 - p) * math.log(p)  # noqa: E731
    assert static_focal_loss(z, label).item() == pytest.approx((foc(P_LO) + 2 * foc(P_HI)) / 3)


def test_union_diagonal_and_far_pixels_square():
    # 3x3, prediction 2 everywhere; only the bottom-right corner carries 2: its 3x3 neighbourhood ((1,1), (1,2),
    # (2,1), (2,2)) is accepted, the other 5 pixels (label 1) are not
    z = _logits_for([[2] * 3] * 3)
    label = torch.tensor([[[1, 1, 1], [1, 1, 1], [1, 1, 2]]])
    expect = (4 * -math.log(P_HI) + 5 * -math.log(P_LO)) / 9
    assert both_modes(lambda: static_focal_loss(z, label, gamma=0.0)) == pytest.approx(expect)


def test_union_ignore_pixels_stay_ignored_and_never_count():
    z = _logits_for([[0, 0, 2]])  # prediction: class 0, 0, 2
    # the ignored pixel is not in the mean, and does not lend class 0 (what a one-hot of 255 -> 0 would) to
    # pixel 0 (label 1, own P(1) = 0.05); pixel 2 (label 2) is accepted (0.5)
    label = torch.tensor([[[1, 255, 2]]])
    expect = (-math.log(P_LO) - math.log(P_HI)) / 2
    assert static_focal_loss(z, label, gamma=0.0).item() == pytest.approx(expect)
    # all ignored: 0 with a graph
    zg = z.clone().requires_grad_()
    empty = static_focal_loss(zg, torch.full((1, 1, 3), 255))
    assert empty.item() == 0.0 and empty.requires_grad


def test_union_dynamic_labels_ignored_and_never_count():
    z = _logits_for([[0, 12, 2]])
    # a dynamic label (12) is neither in the mean nor a neighbour: pixel 0 (label 1) stays at P(1) = 1/20
    # (softmax over the 11 static channels only: the 12 at pixel 1 is not one of them)
    label = torch.tensor([[[1, 12, 2]]])
    expect = (-math.log(P_LO) - math.log(P_HI)) / 2
    assert static_focal_loss(z, label, gamma=0.0).item() == pytest.approx(expect)


def test_union_does_not_change_label_and_batch_sizes():
    z = _logits_for([[2, 2, 2, 2]])
    label = torch.tensor([[[1, 255, 2, 13]]])  # with an ignored and a dynamic pixel
    keep = label.clone()
    static_focal_loss(z, label)
    static_loss(z, torch.softmax(z, 1), None)
    assert torch.equal(label, keep)
    z = _logits_for([[2, 2, 2]])
    label = torch.tensor([[[1, 1, 2]]])
    # batch of 2: sample 0 [[1, 2, 2]] (all accepted), sample 1 [[1, 1, 2]]; no leak between samples
    zz = torch.cat([z, z])
    ll = torch.tensor([[[1, 2, 2]], [[1, 1, 2]]])
    expect = (5 * -math.log(P_HI) - math.log(P_LO)) / 6
    assert static_focal_loss(zz, ll, gamma=0.0).item() == pytest.approx(expect)
    with pytest.raises(ValueError, match="label .* does not match logits"):
        static_focal_loss(zz, label)


def test_static_weights_scale_and_saturate():
    z = _logits_for([[2, 2]])
    label = torch.tensor([[[2, 2]]])
    w = torch.ones(NC, dtype=D)
    w[2] = 1.5  # p = 0.75
    assert static_focal_loss(z, label, w, gamma=0.0).item() == pytest.approx(-math.log(0.75))
    w[2] = 3.0  # p = 1.5 -> clamped to 1 - 1e-7: about 0, no gradient
    zg = z.clone().requires_grad_()
    loss = static_focal_loss(zg, label, w[:11], gamma=0.0)
    loss.backward()
    assert loss.item() == pytest.approx(1e-7, rel=1e-3) and zg.grad.abs().max() == 0


def _fusion_case():
    """4 pixels (A, B, C, D); night P_tn = 0.8 on one class (logit log 72 over 19 channels), 1/90 elsewhere."""
    z = torch.zeros(1, NC, 4, dtype=D)
    day = torch.zeros(1, NC, 4, dtype=D)
    hi = math.log(72.0)
    z[0, 1, 0], day[0, 0, 0] = hi, 0.41   # A: day class 0 above u (h1)
    z[0, 1, 1], day[0, 0, 1] = hi, 0.40   # B: day class 0 exactly at u (h2: not > u)
    z[0, 12, 2] = hi                      # C: night says dynamic class 12
    z[0, 1, 3], day[0, 3, 3] = hi, 0.90   # D: day class 3 (a hole in one call)
    return z, day


@pytest.mark.parametrize("shape", [(1, 4), (2, 2)])
def test_fuse_pseudo_label_hand_values(shape):
    z, day = _fusion_case()
    z, day = z.reshape(1, NC, *shape), day.reshape(1, NC, *shape)
    lo = 1 / 90
    # A: F0 = 0.8*0.41 + 0.2/90 = 0.3302 > F1 = 0.6*0 + 0.4*0.8 = 0.32 -> 0   (with h2 for class 0: 0.2504 -> 1)
    # B: F0 = 0.6*0.40 + 0.4/90 = 0.2444 < 0.32 -> 1                         (with >= u: 0.3222 -> 0)
    # C: F12 = 0.8 (dynamic channel = night) -> dynamic -> 255
    # D: F3 = 0.8*0.9 + 0.2/90 = 0.7222 > 0.32 -> 3
    assert 0.8 * 0.41 + 0.2 * lo > 0.32 > 0.6 * 0.40 + 0.4 * lo
    label = fuse_pseudo_label(z, day)
    assert label.flatten().tolist() == [0, 1, 255, 3]
    assert label.shape == (1, *shape) and label.dtype == torch.long
    # D a warp hole: ignored by default; with fill_holes the night prediction fills it (F = P_tn -> 1)
    valid = torch.tensor([True, True, True, False]).reshape(1, *shape)
    assert fuse_pseudo_label(z, day, valid).flatten().tolist() == [0, 1, 255, 255]
    assert fuse_pseudo_label(z, day, valid[:, None], fill_holes=True).flatten().tolist() == [0, 1, 255, 1]
    # weights multiply the fused probabilities: w_1 = 1.1 -> F1 = 0.352 beats A's 0.3302, not D's 0.7222
    w = torch.ones(NC, dtype=D)
    w[1] = 1.1
    assert fuse_pseudo_label(z, day, weights=w).flatten().tolist() == [1, 1, 255, 3]
    # a hole where the night prediction is class 1 (0.5) ahead of dynamic class 12 (0.3): filled by P_tn -> 1
    # (zeros in the day channels instead would give F1 = 0.4 * 0.5 < F12 = 0.3 -> 255); the softmax over 19
    # channels: e^a / 85 = 0.5, e^b / 85 = 0.3, 17 others at 1/85
    z1 = torch.zeros(1, NC, 1, 2, dtype=D)
    z1[0, 1, 0, 0], z1[0, 12, 0, 0] = math.log(42.5), math.log(25.5)
    z1[0, 1, 0, 1] = math.log(72.0)
    hole = torch.tensor([[[False, True]]])
    assert fuse_pseudo_label(z1, torch.zeros_like(z1), hole, fill_holes=True).tolist() == [[[1, 1]]]
    assert fuse_pseudo_label(z1, torch.zeros_like(z1), hole).tolist() == [[[255, 1]]]
    with pytest.raises(ValueError, match=r"valid mask must be \(B, H, W\)"):
        fuse_pseudo_label(z, day, torch.ones(1, 3, 3, dtype=torch.bool))


def test_static_loss_end_to_end_and_detached():
    z, day = _fusion_case()
    z, day = z.reshape(1, NC, 1, 4).requires_grad_(), day.reshape(1, NC, 1, 4).requires_grad_()
    # labels [0, 1, 255, 3]; static softmax of the night logits: 72/(72+10) on class 1, 1/82 elsewhere (pixels
    # A, B, D); union over 1x3 neighbourhoods: A sees {0, 1}, B sees {0, 1} (C is ignored), D sees {3}
    p1, p0 = 72 / 82, 1 / 82
    foc = lambda p: -(1 - p) * math.log(p)  # noqa: E731
    expect = (foc(p1) + foc(p1) + foc(p0)) / 3
    loss = static_loss(z, day)
    assert loss.item() == pytest.approx(expect)
    loss.backward()
    assert z.grad.abs().sum() > 0 and day.grad is None  # the fusion passes no gradient
    assert StaticLoss(torch.ones(NC))(z.detach().float(), day.detach().float()).item() == pytest.approx(expect,
                                                                                                          rel=1e-5)
    with torch.no_grad():
        assert static_loss(z, day).item() == pytest.approx(expect)


# ------------------------------------------------------------------------------------------------- adversarial

@pytest.mark.parametrize("shape", [(1, 2), (2, 1), (1, 1)])
def test_adversarial_hand_values(shape):
    d1 = t([0.5, -1.0] if shape != (1, 1) else [0.5]).reshape(1, 1, *shape)
    m1 = 0.625 if shape != (1, 1) else 0.25  # mean of 0.25 and 1 (r = 0)
    assert both_modes(lambda: generator_adversarial_loss(d1)) == pytest.approx(m1)
    d2 = t([[[[1.0, 3.0], [1.0, 3.0]]]])  # square: mean of 1, 9, 1, 9 = 5
    assert GeneratorAdversarialLoss()(d1, d2).item() == pytest.approx(m1 + 5)
    # discriminator: 1/2 mean((D(P_s) - 0)^2) + 1/2 mean((D(P_t) - 1)^2); d2 - 1 = 0, 2 -> mean 2
    assert both_modes(lambda: discriminator_loss(d1, d2)) == pytest.approx(0.5 * m1 + 0.5 * 2)
    assert DiscriminatorLoss()(d2, d1).item() == pytest.approx(0.5 * 5 + 0.5 * ((0.25 + 4) / 2 if shape != (1, 1)
                                                                             else 0.25))
    with pytest.raises(ValueError, match="needs at least one discriminator output"):
        generator_adversarial_loss()


# ------------------------------------------------------------------------------------------------- gradcheck

def test_gradcheck_all_losses():
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.rand(*s, generator=g, dtype=D)  # noqa: E731
    gc = torch.autograd.gradcheck
    assert gc(tv_loss, (rnd(2, 3, 3, 4).requires_grad_(),))
    # SSIM: the clamp is inactive away from identical images
    assert gc(ssim_loss, (rnd(1, 2, 4, 3).requires_grad_(), rnd(1, 2, 4, 3).requires_grad_()))
    # exposure: |.| is smooth away from E (block means near 0.5 vs E = 0.05)
    assert gc(lambda x: patch_exposure_loss(x, 0.05, patch=2), (rnd(2, 3, 4, 6).requires_grad_(),))
    # style: the norm is smooth away from equal Grams
    target = rnd(2, 3, 5, 5)
    assert gc(lambda x: style_loss(x, target), (rnd(2, 3, 3, 4).requires_grad_(),))
    image, night = rnd(1, 3, 4, 4), rnd(1, 3, 4, 4)
    assert gc(lambda x, r: LightLoss(patch=2)(x, r, night)[0], (image.requires_grad_(),
                                                                (0.1 * rnd(1, 3, 4, 4)).requires_grad_()))
    logits, target = rnd(2, 4, 3, 2).requires_grad_(), torch.randint(0, 4, (2, 3, 2), generator=g)
    target[0, 0, 0] = 255
    w = t([1.2, 0.9, 1.0, 1.1])
    for norm in ("paper", "torch"):
        assert gc(lambda z: weighted_cross_entropy(z, target, w, norm), (logits,))
    # static focal: piecewise (max over classes, clamp); random logits have no ties and stay inside the clamp
    z = (3 * rnd(2, NC, 3, 4)).requires_grad_()
    label = torch.randint(0, 11, (2, 3, 4), generator=g)
    label[0, 1, 1], label[1, 2, 3] = 255, 14
    assert gc(lambda x: static_focal_loss(x, label, class_weights()[:11]), (z,))
    day = torch.softmax(rnd(2, NC, 3, 4), 1)
    assert gc(lambda x: static_loss(x, day), (z,))
    assert gc(lambda a, b: generator_adversarial_loss(a, b) + discriminator_loss(a, b),
              (rnd(2, 1, 3, 2).requires_grad_(), rnd(2, 1, 2, 2).requires_grad_()))


def test_module_reprs():
    assert "norm='l1'" in repr(PatchExposureLoss()) and "features='image'" in repr(StyleLoss())
    assert "style=10.0" in repr(LightLoss()) and "normalize='paper'" in repr(WeightedCrossEntropy())
    assert "h2=0.6" in repr(StaticLoss()) and dl.NUM_STATIC == 11
