"""DeepLab-v2 decoder (Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous
Convolution, and Fully Connected CRFs", TPAMI 2017): the ResNet-101 "ASPP-L" classifier.

Four parallel 3×3 convolutions from the last encoder stage straight to the class logits, with dilation rates
6, 12, 18, 24, summed. The paper uses it on a dilated ResNet at output stride 8
(``create_segmenter``'s default for ``deeplabv2``), so the logits come at stride 8 and are upsampled
bilinearly to the input. No CRF.

Shapes: four maps (only the last is used) → logits ``(B, num_classes, H/s_4, W/s_4)``.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .layers import check_features, check_in_channels, init_decoder_weights

__all__ = ["ASPPClassifier", "DeepLabV2"]


class ASPPClassifier(nn.Module):
    """``sum_r Conv3×3(dilation=r, padding=r)(x)`` over ``rates``, each conv ``in_channels → num_classes``."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        if not self.rates or any(r <= 0 for r in self.rates):
            raise ValueError(f"ASPP rates must be positive integers, got {rates}")
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in self.rates
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out


class DeepLabV2(nn.Module):
    """DeepLab-v2 ASPP classifier on the last encoder stage.

    Args:
        in_channels: channels of the four encoder maps (``Encoder.channels``); only the last is used.
        num_classes: output classes.
        rates: ASPP dilation rates (6, 12, 18, 24).
    """

    default_output_stride = 8

    def __init__(self, in_channels: Sequence[int], num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        self.in_channels = check_in_channels("DeepLabV2", in_channels)
        self.num_classes = int(num_classes)
        self.aspp = ASPPClassifier(self.in_channels[-1], self.num_classes, rates)
        # DeepLab-v2 initialises the ASPP classifier with N(0, 0.01)
        init_decoder_weights(self, classifiers=list(self.aspp.convs))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        check_features("DeepLabV2", features)
        return self.aspp(features[-1])
