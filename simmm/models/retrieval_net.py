"""The place-recognition network: a timm backbone's last stage map, GeM pooling and L2 normalisation.

>>> net = RetrievalNet(create_backbone("resnet101", pretrained, num_classes=0, global_pool=""))
>>> net(images).shape                           # images (B, 3, H, W) in [0, 1] -> (B, C) unit vectors
>>> fmap, desc = net.forward_with_features(images)

Batch norm stays frozen in training (the image-retrieval recipe: its statistics are those of the pretrained
backbone, its affine weights still train): :meth:`train` keeps every batch-norm layer in eval mode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simmm.backbones import Normalize, backbone_normalization
from simmm.models.gem import GeM

__all__ = ["RetrievalNet", "multiscale_descriptor"]


class RetrievalNet(nn.Module):
    """Backbone (a timm model built without head and pooling) → GeM → L2 normalisation.

    ``net.forward_features(images)`` must give the last stage map (B, C, h, w). ``freeze_bn``: keep batch norm in
    eval mode whatever ``train()`` asks. ``normalize``: the input stage (default: the mean/std ``net``'s weights
    expect; :class:`simmm.models.ciconv.CIConv` for a CIConv model).
    """

    def __init__(self, net: nn.Module, p: float = 3.0, freeze_bn: bool = True,
                 normalize: nn.Module | None = None) -> None:
        super().__init__()
        mean, std = backbone_normalization(net)
        self.normalize = normalize if normalize is not None else Normalize(mean, std)
        self.net = net
        self.pool = GeM(p)
        self.freeze_bn = freeze_bn

    @property
    def dim(self) -> int:
        return int(self.net.num_features)

    def train(self, mode: bool = True) -> "RetrievalNet":
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last stage map and the descriptor (B, C), unit length."""
        fmap = self.net.forward_features(self.normalize(images))
        return fmap, F.normalize(self.pool(fmap.float()), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(images)[1]


def multiscale_descriptor(net: RetrievalNet, images: torch.Tensor, scales=(1.0,), power: float = 1.0
                          ) -> torch.Tensor:
    """Descriptors of ``images`` (B, 3, H, W) averaged over ``scales`` (the image resized bilinearly by each):
    ``v = (mean_s d_s^power)^(1/power)``, L2-normalised. With GeM the image-retrieval tooling takes ``power`` = the
    learned p (``scales`` 1, 1/√2, 1/2 in the SMM paper's evaluation)."""
    total = None
    for s in scales:
        x = images if s == 1 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
        d = net(x).float().pow(power)
        total = d if total is None else total + d
    return F.normalize((total / len(scales)).pow(1.0 / power), dim=1)
