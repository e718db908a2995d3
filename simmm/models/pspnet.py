"""PSPNet decoder (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017).

On the last encoder stage (``C`` channels, a dilated ResNet at output stride 8 by default):

- pyramid pooling module: for each bin size in (1, 2, 3, 6): adaptive average pooling to ``bin×bin``,
  1×1 conv to ``C / 4`` channels (``ppm_channels``), BatchNorm, ReLU, bilinear upsampling back; concatenated
  with the input (``2C`` channels);
- 3×3 conv to ``features`` (512) channels, BatchNorm, ReLU, Dropout(0.1), 1×1 classifier.

Optional auxiliary head (``aux=True``, off by default) on the third stage, used only for the training loss
(weight 0.4 in the paper): 3×3 conv to ``features // 2`` (256), BatchNorm, ReLU, Dropout(0.1), 1×1 classifier;
:meth:`PSPNet.forward_aux` returns its logits (``None`` without the head).

Shapes: four maps → logits ``(B, num_classes, H/s_4, W/s_4)``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .layers import (
    NormLayer,
    check_features,
    check_in_channels,
    conv_norm_act,
    init_decoder_weights,
    resize_to,
)

__all__ = ["PyramidPoolingModule", "PSPNet"]


class PyramidPoolingModule(nn.Module):
    """``concat([x] + [upsample(ReLU(BN(Conv1×1(AdaptiveAvgPool(x, b))))) for b in bins])``."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), channels: Optional[int] = None,
                 norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        if not self.bins or any(b <= 0 for b in self.bins):
            raise ValueError(f"PSPNet bins must be positive integers, got {bins}")
        self.channels = int(channels) if channels else max(1, in_channels // len(self.bins))
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), *conv_norm_act(in_channels, self.channels, 1, norm_layer))
            for b in self.bins
        )
        self.out_channels = in_channels + len(self.bins) * self.channels

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        return torch.cat([x] + [resize_to(stage(x), size) for stage in self.stages], dim=1)


class PSPNet(nn.Module):
    """PSPNet head on the last encoder stage (optionally an auxiliary head on the third).

    Args:
        in_channels: channels of the four encoder maps (``Encoder.channels``).
        num_classes: output classes.
        features: width of the 3×3 bottleneck conv after the pyramid (512); the auxiliary head uses half.
        bins: pyramid bin sizes (1, 2, 3, 6).
        ppm_channels: width of each pyramid branch (default ``in_channels[-1] // len(bins)``: 512 for
            ResNet-101).
        dropout: dropout before the classifier(s) (0.1).
        aux: build the auxiliary head on stage 3.
        norm_layer: normalisation layer (BatchNorm2d; e.g. ``nn.SyncBatchNorm`` for multi-GPU runs).
    """

    default_output_stride = 8
    aux_weight = 0.4  # the paper's weight of the auxiliary loss

    def __init__(self, in_channels: Sequence[int], num_classes: int, features: int = 512,
                 bins: Sequence[int] = (1, 2, 3, 6), ppm_channels: Optional[int] = None, dropout: float = 0.1,
                 aux: bool = False, norm_layer: NormLayer = nn.BatchNorm2d):
        super().__init__()
        self.in_channels = check_in_channels("PSPNet", in_channels)
        self.num_classes = int(num_classes)
        self.features = int(features)
        if self.features <= 0:
            raise ValueError(f"PSPNet features must be positive, got {features}")
        c4 = self.in_channels[-1]
        self.ppm = PyramidPoolingModule(c4, bins, ppm_channels, norm_layer)
        self.bottleneck = conv_norm_act(self.ppm.out_channels, self.features, 3, norm_layer)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(self.features, self.num_classes, 1)
        classifiers = [self.classifier]
        self.aux_head: Optional[nn.Sequential] = None
        if aux:
            aux_features = max(1, self.features // 2)
            self.aux_head = nn.Sequential(
                conv_norm_act(self.in_channels[2], aux_features, 3, norm_layer),
                nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
                nn.Conv2d(aux_features, self.num_classes, 1),
            )
            classifiers.append(self.aux_head[-1])
        init_decoder_weights(self, classifiers=classifiers)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        check_features("PSPNet", features)
        return self.classifier(self.dropout(self.bottleneck(self.ppm(features[-1]))))

    def forward_aux(self, features: Sequence[Tensor]) -> Optional[Tensor]:
        """Auxiliary logits from stage 3 (stride of that stage), or ``None`` when built without ``aux``."""
        if self.aux_head is None:
            return None
        check_features("PSPNet", features)
        return self.aux_head(features[2])
