"""Whole-image and sliding-window segmentation inference, and flip test-time augmentation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from simmm.inference import (predict_sliding, predict_whole, sliding_window_starts, sliding_windows,
                             window_count_map)

C = 5


class ConstantModel(nn.Module):
    """Returns the same logit per class everywhere, whatever the input."""

    def __init__(self, values):
        super().__init__()
        self.register_buffer("values", torch.as_tensor(values, dtype=torch.float32))

    def forward(self, x):
        b, _, h, w = x.shape
        return self.values[None, :, None, None].expand(b, -1, h, w).clone()


class PixelModel(nn.Module):
    """A per-pixel function of the input (two channel mixes + a non-linearity): window position cannot matter.

    Written with einsum rather than 1x1 convs: oneDNN re-plans a conv for every new input shape, which is slow.
    """

    def __init__(self, classes=C):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(8, 3, generator=g))
        self.b = nn.Parameter(torch.randn(classes, 8, generator=g))
        self.bias = nn.Parameter(torch.randn(classes, generator=g))
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        hidden = torch.tanh(torch.einsum("ck,bkhw->bchw", self.a, x))
        return torch.einsum("ck,bkhw->bchw", self.b, hidden) + self.bias[:, None, None]


class SymmetricConv(nn.Module):
    """A 3x3 conv whose kernels are left-right symmetric: flip-equivariant (zero padding is symmetric too)."""

    def __init__(self, classes=C):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        w = torch.randn(classes, 3, 3, 3, generator=g)
        self.register_buffer("w", (w + w.flip(-1)) / 2)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.w, padding=1)


class HalfResModel(nn.Module):
    """Answers at half resolution (an output stride of 2)."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x[:, :1].repeat(1, C, 1, 1), 2)


class PositionModel(nn.Module):
    """Logits that depend only on where a pixel sits in the window it was given: channel 0 = its column, channel
    1 = its row (0-based, within the window). Stitched outputs are then hand-checkable means of offsets."""

    def forward(self, x):
        b, _, h, w = x.shape
        cols = torch.arange(w, dtype=torch.float32).expand(h, w)
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        return torch.stack([cols, rows]).expand(b, 2, h, w).clone()


class WindowMeanModel(nn.Module):
    """One logit per window: the mean of its channel 0 (padding included)."""

    def forward(self, x):
        return x[:, :1].mean((2, 3), keepdim=True).expand(-1, 1, *x.shape[-2:]).clone()


@pytest.fixture
def images():
    return torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))


def test_window_starts():
    assert sliding_window_starts(10, 4, 3) == [0, 3, 6]
    assert sliding_window_starts(11, 4, 3) == [0, 3, 6, 7]  # last window aligned to the border
    assert sliding_window_starts(8, 4, 4) == [0, 4]
    assert sliding_window_starts(3, 4, 2) == [0]  # smaller than the crop: one (padded) window
    assert sliding_window_starts(4, 4, 1) == [0]
    with pytest.raises(ValueError, match="stride 5 > crop 4 would leave pixels uncovered"):
        sliding_window_starts(10, 4, 5)  # stride > crop would leave gaps
    with pytest.raises(ValueError, match="crop and stride must be positive, got crop=4, stride=0"):
        sliding_window_starts(10, 4, 0)


CASES = [  # (crop, stride) on a 37 x 53 image
    ((16, 16), (8, 8)),
    ((20, 30), (7, 11)),     # non-divisible sizes and strides
    ((32, 32), (32, 32)),    # no overlap, last window shifted back
    ((64, 64), (32, 32)),    # image smaller than the crop in both dims (padded)
    ((40, 20), (13, 20)),    # smaller than the crop in height only
    ((37, 53), (5, 5)),      # crop == image
    ((9, 7), (4, 3)),        # small crop, many windows
]


@pytest.mark.parametrize("crop,stride", CASES)
def test_every_pixel_covered(crop, stride):
    count = window_count_map(37, 53, crop, stride)
    assert count.shape == (37, 53)
    assert float(count.min()) >= 1
    for y0, x0, y1, x1 in sliding_windows(37, 53, crop, stride):
        assert y1 - y0 == crop[0] and x1 - x0 == crop[1]
        assert y1 <= max(37, crop[0]) and x1 <= max(53, crop[1])
    ys = {w[2] for w in sliding_windows(37, 53, crop, stride)}
    xs = {w[3] for w in sliding_windows(37, 53, crop, stride)}
    assert max(ys) == max(37, crop[0]) and max(xs) == max(53, crop[1])


@pytest.mark.parametrize("crop,stride", CASES)
def test_constant_model_gives_constant_map(images, crop, stride):
    values = [0.5, -1.0, 2.0, 0.0, 3.25]
    out = predict_sliding(ConstantModel(values), images, C, crop=crop, stride=stride, batch_size=3)
    assert out.shape == (2, C, 37, 53) and out.dtype == torch.float32
    expected = torch.tensor(values)[None, :, None, None].expand_as(out)
    torch.testing.assert_close(out, expected)
    probs = predict_sliding(ConstantModel(values), images, C, crop=crop, stride=stride, softmax=True)
    torch.testing.assert_close(probs, torch.tensor(values).softmax(0)[None, :, None, None].expand_as(out))


@pytest.mark.parametrize("crop,stride", CASES)
@pytest.mark.parametrize("pad_mode", ["constant", "replicate"])
def test_pixel_model_sliding_equals_whole(images, crop, stride, pad_mode):
    model = PixelModel()
    whole = predict_whole(model, images)
    slid = predict_sliding(model, images, C, crop=crop, stride=stride, batch_size=4, pad_mode=pad_mode)
    torch.testing.assert_close(slid, whole, rtol=1e-6, atol=1e-6)


# Position model by hand. Along an axis, a pixel's value is the mean of its offsets in the windows covering it:
#   length 7, crop 4, stride 3: windows start at 0, 3      -> [0, 1, 2, (3+0)/2, 1, 2, 3]
#   length 5, crop 4, stride 2: windows start at 0, 1      -> [0, (1+0)/2, (2+1)/2, (3+2)/2, 3]
#   length 3, crop 4 (window larger than the image, padded) -> [0, 1, 2]; length 5, crop 6 -> [0, 1, 2, 3, 4]
ALONG_7_CROP_4_STRIDE_3 = [0.0, 1.0, 2.0, 1.5, 1.0, 2.0, 3.0]
ALONG_5_CROP_4_STRIDE_2 = [0.0, 0.5, 1.5, 2.5, 3.0]


@pytest.mark.parametrize("size,crop,stride,cols,rows", [
    ((5, 7), (4, 4), (2, 3), ALONG_7_CROP_4_STRIDE_3, ALONG_5_CROP_4_STRIDE_2),  # wide, overlapping both ways
    ((7, 5), (4, 4), (3, 2), ALONG_5_CROP_4_STRIDE_2, ALONG_7_CROP_4_STRIDE_3),  # tall
    ((3, 7), (4, 4), (2, 3), ALONG_7_CROP_4_STRIDE_3, [0.0, 1.0, 2.0]),         # shorter than the crop
    ((3, 5), (4, 6), (2, 3), [0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0]),      # window larger than the image
])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_sliding_position_model_hand_values(size, crop, stride, cols, rows, batch_size):
    h, w = size
    images = torch.rand(2, 3, h, w)
    out = predict_sliding(PositionModel(), images, 2, crop=crop, stride=stride, batch_size=batch_size)
    want = torch.stack([torch.tensor(cols).expand(h, w), torch.tensor(rows)[:, None].expand(h, w)])
    torch.testing.assert_close(out, want.expand(2, 2, h, w), rtol=0, atol=1e-6)
    # flip TTA per window: column offsets c and (crop_w - 1 - c) average to (crop_w - 1) / 2; rows unchanged
    flipped = predict_sliding(PositionModel(), images, 2, crop=crop, stride=stride, flip=True)
    torch.testing.assert_close(flipped[:, 0], torch.full((2, h, w), (crop[1] - 1) / 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(flipped[:, 1], want[1].expand(2, h, w), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size,crop,stride", [((5, 7), (4, 4), (2, 3)), ((3, 5), (4, 6), (2, 3)),
                                              ((6, 6), (6, 6), (3, 3))])
def test_sliding_identity_model_returns_the_image(size, crop, stride):
    """logits = the input: whatever the windows, their mean at each pixel is the pixel (padding cropped away)."""
    images = torch.rand(2, 3, *size)
    out = predict_sliding(lambda x: x.clone(), images, 3, crop=crop, stride=stride, batch_size=2)
    torch.testing.assert_close(out, images, rtol=0, atol=1e-6)


def test_sliding_window_larger_than_the_image_pads_with_zeros():
    # a 2x3 image of ones in one 4x4 window: 6 ones and 10 zeros of padding -> mean 0.375 everywhere
    out = predict_sliding(WindowMeanModel(), torch.ones(1, 3, 2, 3), 1, crop=(4, 4), stride=(2, 2))
    torch.testing.assert_close(out, torch.full((1, 1, 2, 3), 0.375))
    # replicate padding repeats the border: all ones
    out = predict_sliding(WindowMeanModel(), torch.ones(1, 3, 2, 3), 1, crop=(4, 4), stride=(2, 2),
                          pad_mode="replicate")
    torch.testing.assert_close(out, torch.ones(1, 1, 2, 3))
    # a 1x5 row [0, 1, 2, 3, 4] (channel 0), crop 1x3 stride 1x2: windows [0:3] mean 1, [2:5] mean 3;
    # the middle pixel is covered by both -> 2
    row = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = predict_sliding(WindowMeanModel(), row, 1, crop=(1, 3), stride=(1, 2))
    torch.testing.assert_close(out, torch.tensor([[[[1.0, 1.0, 2.0, 3.0, 3.0]]]]))


def test_batching(images):
    model = PixelModel()
    crop, stride = (16, 16), (8, 8)
    n_windows = len(sliding_windows(37, 53, crop, stride))
    ref = predict_sliding(model, images, C, crop=crop, stride=stride, batch_size=1)
    assert len(model.calls) == 2 * n_windows
    model.calls.clear()
    out = predict_sliding(model, images, C, crop=crop, stride=stride, batch_size=7)
    assert len(model.calls) == -(-2 * n_windows // 7)  # windows of both images share forward passes
    assert all(s[0] <= 7 and s[-2:] == crop for s in model.calls)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("sliding", [False, True])
def test_flip_tta_on_flip_equivariant_model(images, sliding):
    model = SymmetricConv()
    if sliding:
        kw = dict(num_classes=C, crop=(20, 24), stride=(10, 13))
        plain, tta = (predict_sliding(model, images, flip=f, **kw) for f in (False, True))
    else:
        plain, tta = (predict_whole(model, images, flip=f) for f in (False, True))
    torch.testing.assert_close(tta, plain, rtol=1e-5, atol=1e-5)
    # for a model that is not equivariant, flip TTA is the mean of the two predictions
    asym = PixelModel()
    ramp = torch.linspace(0, 1, images.shape[-1])

    def biased(x):
        return asym(x) + ramp[: x.shape[-1]]

    expected = (asym(images) + ramp + (asym(images.flip(-1)) + ramp).flip(-1)) / 2
    torch.testing.assert_close(predict_whole(biased, images, flip=True), expected)


def test_predict_whole_scale_and_output_stride(images):
    model = PixelModel()
    torch.testing.assert_close(predict_whole(model, images, scale=1.0), predict_whole(model, images))
    out = predict_whole(model, images, num_classes=C, scale=0.5)
    assert out.shape == (2, C, 37, 53)
    assert model.calls[-1][-2:] == (18, 26)  # the forward ran at the rescaled size
    out = predict_whole(model, images, scale=(20, 30))
    assert out.shape == (2, C, 37, 53) and model.calls[-1][-2:] == (20, 30)
    const = predict_whole(ConstantModel([1.0] * C), images, scale=0.3)
    torch.testing.assert_close(const, torch.ones(2, C, 37, 53))
    # a model at half resolution is resized back to the input size (whole and per window)
    assert predict_whole(HalfResModel(), images).shape == (2, C, 37, 53)
    assert predict_sliding(HalfResModel(), images, C, crop=(16, 16), stride=(8, 8)).shape == (2, C, 37, 53)


def test_model_output_containers_and_checks(images):
    model = PixelModel()
    ref = predict_whole(model, images)
    torch.testing.assert_close(predict_whole(lambda x: {"out": model(x)}, images), ref)
    torch.testing.assert_close(predict_whole(lambda x: (model(x), None), images), ref)
    with pytest.raises(ValueError, match="num_classes"):
        predict_sliding(model, images, C + 1, crop=16, stride=8)
    with pytest.raises(ValueError, match=r"images must be a \(B, 3, H, W\) tensor, got \(3, 37, 53\)"):
        predict_whole(model, images[0])  # not batched
    with pytest.raises(ValueError, match="reflect"):
        predict_sliding(model, images, C, crop=(80, 80), stride=(40, 40), pad_mode="reflect")
    # reflect works while the padding is smaller than the image
    torch.testing.assert_close(
        predict_sliding(model, images, C, crop=(40, 60), stride=(20, 30), pad_mode="reflect"), ref,
        rtol=1e-6, atol=1e-6)


def test_no_grad_and_train_mode_untouched(images):
    model = PixelModel().train()
    out = predict_sliding(model, images, C, crop=16, stride=8)
    assert not out.requires_grad and model.training
