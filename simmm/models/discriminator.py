"""The output-space discriminator of DANIA (D_d and D_n, METHOD.md §5; AdaptSegNet's ``FCDiscriminator``).

Five 4×4 convolutions with padding 1 and bias, LeakyReLU 0.2 after the first four, for ``width`` w = 64::

    conv stride 2  C→w      (B, w,  ⌊H/2⌋,     ⌊W/2⌋)
    conv stride 2  w→2w     (B, 2w, ⌊H/4⌋,     ⌊W/4⌋)       with h = ⌊⌊H/2⌋/2⌋ (and w likewise):
    conv stride 1  2w→4w    (B, 4w, h − 1,     ...)
    conv stride 1  4w→4w    (B, 4w, h − 2,     ...)
    conv stride 1  4w→1     (B, 1,  h − 3,     ...)         one score per patch, no activation

The input is the softmax of the segmentation net's class prediction, ``(B, C, H, W)`` with ``C`` the number of
classes: ``D(F.softmax(logits, dim=1))``. Inputs need ``H, W ≥ 16`` (the last map has at least one cell).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["OutputDiscriminator", "MIN_INPUT"]

MIN_INPUT = 16
"""The smallest height and width the discriminator takes (``⌊⌊16/2⌋/2⌋ − 3 = 1``)."""


class OutputDiscriminator(nn.Module):
    """Patch discriminator on class-probability maps.

    Args:
        num_classes: channels of the input (the segmentation classes, 19 for Cityscapes).
        width: channels of the first convolution (64 in the paper); the others are ``2w, 4w, 4w, 1``.

    Shapes: ``(B, num_classes, H, W) -> (B, 1, ⌊⌊H/2⌋/2⌋ − 3, ⌊⌊W/2⌋/2⌋ − 3)``, ``H, W ≥ 16``.

    With ``num_classes=19, width=64`` it has 1,728,193 parameters. PyTorch's default initialisation (as in
    DANNet).
    """

    def __init__(self, num_classes: int, width: int = 64):
        super().__init__()
        if num_classes < 1 or width < 1:
            raise ValueError(f"OutputDiscriminator needs num_classes >= 1 and width >= 1, got "
                             f"num_classes={num_classes}, width={width}")
        self.num_classes = int(num_classes)
        w = int(width)
        chans = [self.num_classes, w, 2 * w, 4 * w, 4 * w, 1]
        strides = [2, 2, 1, 1, 1]
        layers = []
        for i, stride in enumerate(strides):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], 4, stride=stride, padding=1))
            if i < len(strides) - 1:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, probs: Tensor) -> Tensor:
        if probs.dim() != 4 or probs.shape[1] != self.num_classes:
            raise ValueError(f"OutputDiscriminator expects class probabilities of shape (B, {self.num_classes}, "
                             f"H, W), got {tuple(probs.shape)}")
        h, w = probs.shape[-2:]
        if h < MIN_INPUT or w < MIN_INPUT:
            raise ValueError(f"OutputDiscriminator needs inputs of at least {MIN_INPUT}x{MIN_INPUT} pixels, got "
                             f"{h}x{w}")
        return self.body(probs)
