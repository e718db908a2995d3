"""Small pieces shared by the segmentation decoders: weight initialisation, conv-BN-ReLU, resizing."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["init_decoder_weights", "conv_norm_act", "resize_to", "check_in_channels", "check_features"]

NormLayer = Callable[[int], nn.Module]


def init_decoder_weights(module: nn.Module, classifiers: Iterable[nn.Module] = (),
                         classifier_std: float = 0.01) -> None:
    """Kaiming-normal (fan-in, ReLU gain) for every conv/linear weight of ``module``, zero biases, norm layers
    at weight 1 / bias 0; the logit layers in ``classifiers`` get ``N(0, classifier_std)`` instead (the
    initialisation of DeepLab-v2's ASPP classifier and of PSPNet's; a Kaiming-initialised logit layer starts
    with very large logits)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    for c in classifiers:
        nn.init.normal_(c.weight, 0.0, classifier_std)
        if c.bias is not None:
            nn.init.zeros_(c.bias)


def conv_norm_act(in_ch: int, out_ch: int, kernel_size: int = 3,
                  norm_layer: Optional[NormLayer] = nn.BatchNorm2d, dilation: int = 1) -> nn.Sequential:
    """``Conv(k×k, no bias when normalised) → norm → ReLU`` with 'same' padding."""
    pad = dilation * (kernel_size - 1) // 2
    layers = [nn.Conv2d(in_ch, out_ch, kernel_size, padding=pad, dilation=dilation, bias=norm_layer is None)]
    if norm_layer is not None:
        layers.append(norm_layer(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size=(H, W)`` (``align_corners=False``); a no-op at that
    size."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def check_in_channels(name: str, in_channels: Sequence[int], n: int = 4) -> list:
    chans = [int(c) for c in in_channels]
    if len(chans) != n or any(c <= 0 for c in chans):
        raise ValueError(f"{name} needs the channels of {n} encoder stages, got {list(in_channels)}")
    return chans


def check_features(name: str, features: Sequence[Tensor], n: int = 4) -> None:
    if len(features) != n:
        raise ValueError(f"{name} expects {n} encoder stage maps, got {len(features)}")
