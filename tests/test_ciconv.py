"""CIConv's colour-invariant layer (simmm.models.ciconv) against hand-computed values."""
import math

import pytest
import torch

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
