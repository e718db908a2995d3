"""DANIA's relighting net R: a ResNet-style generator whose output is a residual added to its input.

R(I) = I + r with r = tanh(net(I)) (METHOD.md §5). One R is shared by the three domains (labelled day source,
day target, night target) and runs at test time too, before the segmentation net. The layers (CycleGAN's
ResNet generator with three residual blocks, batch norm, as DANNet's ``LightNet``), for ``width`` w = 64::

    reflection pad 3, conv 7×7 3→w,            BN, ReLU      (B, w,  H,   W)
    conv 3×3 stride 2 w→2w,                    BN, ReLU      (B, 2w, H/2, W/2)
    conv 3×3 stride 2 2w→4w,                   BN, ReLU      (B, 4w, H/4, W/4)
    3 × residual block at 4w                                 (B, 4w, H/4, W/4)
    transposed conv 3×3 stride 2 4w→2w,        BN, ReLU      (B, 2w, H/2, W/2)
    transposed conv 3×3 stride 2 2w→w,         BN, ReLU      (B, w,  H,   W)
    reflection pad 3, conv 7×7 w→3 (bias), tanh              (B, 3,  H,   W)   = r

Convolutions followed by batch norm have no bias. Any ``H, W ≥ 5`` works: the strided convolutions round
up (``ceil(H/2)``), the transposed ones double, and the upsampled features are cropped to ``H × W`` from the
top-left corner before the last convolution, which keeps them aligned (output pixel ``2i`` of a stride-2
transposed convolution sits on input pixel ``2i`` of the matching stride-2 convolution).

R adds ``r`` to whatever tensor it is given. DANNet feeds it the backbone-normalised image (ImageNet mean and
std), so ``r`` is in normalised units and the segmentation net takes ``R(I)`` as it is; simmm's
:class:`~simmm.models.Segmenter` normalises its ``[0, 1]`` input itself, so a caller that normalises before R
runs the segmenter's encoder and decoder on ``R(I)`` directly (or undoes the normalisation first).

>>> relight = RelightNet()
>>> out = relight(images)          # images (B, 3, H, W) -> out.image, out.residual, both (B, 3, H, W)
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

__all__ = ["Relit", "RelightNet", "ResidualBlock", "MIN_SIZE"]

MIN_SIZE = 5
"""The smallest height and width R takes: the reflection padding of the residual blocks needs their
``ceil(ceil(H/2)/2)`` rows to be at least 2."""


class Relit(NamedTuple):
    """What :class:`RelightNet` returns.

    Attributes:
        image: ``R(I) = I + r``, ``(B, 3, H, W)``.
        residual: ``r``, ``(B, 3, H, W)``, each value in ``(-1, 1)`` (tanh).
    """

    image: Tensor
    residual: Tensor


class ResidualBlock(nn.Module):
    """``x + BN(conv3×3(pad(ReLU(BN(conv3×3(pad(x)))))))`` with reflection padding, no conv bias.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``, ``H, W ≥ 2``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _conv_bn_relu(conv: nn.Module, channels: int) -> list:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class RelightNet(nn.Module):
    """The relighting net R of DANIA: ``R(I) = I + r`` (module docstring: the layers).

    Args:
        width: base number of filters (64 in the paper; a few for tests). Channels run ``w, 2w, 4w``.
        blocks: residual blocks at ``4w`` (3 in the paper).

    Shapes: ``(B, 3, H, W) -> Relit(image (B, 3, H, W), residual (B, 3, H, W))``, any ``H, W ≥ 5``.

    With ``width=64`` it has 4,299,395 parameters. Weights start at PyTorch's default initialisation (as in
    DANNet); zeroing the last convolution (``self.head[-2]``, weight and bias) makes R the identity.
    """

    def __init__(self, width: int = 64, blocks: int = 3):
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"RelightNet needs width >= 1 and blocks >= 0, got width={width}, blocks={blocks}")
        w = int(width)
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), *_conv_bn_relu(nn.Conv2d(3, w, 7, bias=False), w))
        self.down = nn.Sequential(
            *_conv_bn_relu(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), 2 * w),
            *_conv_bn_relu(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, bias=False), 4 * w),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(blocks)])
        self.up = nn.Sequential(
            *_conv_bn_relu(nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1,
                                              bias=False), 2 * w),
            *_conv_bn_relu(nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1,
                                              bias=False), w),
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7), nn.Tanh())

    def residual(self, images: Tensor) -> Tensor:
        """``r`` for ``images`` ``(B, 3, H, W)``: ``(B, 3, H, W)`` in ``(-1, 1)``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"RelightNet expects images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h < MIN_SIZE or w < MIN_SIZE:
            raise ValueError(f"RelightNet needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {h}x{w}")
        x = self.up(self.blocks(self.down(self.stem(images))))
        return self.head(x[..., :h, :w])

    def forward(self, images: Tensor) -> Relit:
        r = self.residual(images)
        return Relit(images + r, r)
