"""Video classification networks for action recognition: torchvision's ``r3d_18`` and ``r2plus1d_18``, and an I3D
ResNet made by inflating a 2D timm ResNet (ResNet-50 by default; its ImageNet weights inflated when given).

All come as a :class:`VideoNet`: it normalises its own input (clips ``(B, 3, T, H, W)`` in ``[0, 1]``), runs a
stem and four stages, and returns (timm's forms) ``forward_features(x)`` → the four stage maps ``(B, C_i, T_i,
H_i, W_i)``, ``forward_head(f, pre_logits=True)`` → the pooled clip vector ``(B, num_features)``, ``forward(x)``
→ logits, or the stage maps when built ``features_only``.

>>> net = create_video_model("i3d", num_classes=11, backbone="resnet50", pretrained="")
>>> logits = net(clips)                                  # (B, 3, 16, 224, 224) -> (B, 11)
>>> pooled = net.forward_head(net.forward_features(clips)[-1], pre_logits=True)   # (B, 2048)

``pretrained``: for ``r3d_18``/``r2plus1d_18`` ``"torchvision"`` (Kinetics-400 weights, downloaded on the user's
machine) or a local state-dict file of the torchvision model; for ``i3d`` every form of
:func:`simmm.backbones.create_backbone` for the 2D network (``"timm"``, ``"torchvision:resnet50"``, a file), whose
weights are then inflated. The classifier is always new (``num_classes`` outputs).

``ciconv=True``: CIConv's colour-invariant layer replaces the normalisation, applied to each frame (the frames
folded into the batch, :func:`per_frame`), in front of a network whose first convolution takes its one channel
(RGB weights summed over R, G, B).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Sequence, Tuple

import torch
from torch import nn

from ..backbones import Normalize, backbone_normalization, create_backbone
from ..darkening import fold_clips, unfold_clips
from ..errors import SimmmError
from ..weights import load_backbone_weights, load_state_dict_file, parse_pretrained, torchvision_state_dict
from .ciconv import CHANNELS, CIConv, backbone_options
from .inflate import i3d_temporal_kernels, inflate_

__all__ = ["VIDEO_ARCHS", "KINETICS_MEAN", "KINETICS_STD", "VideoNet", "create_video_model", "per_frame"]

VIDEO_ARCHS = ("i3d", "r3d_18", "r2plus1d_18")
KINETICS_MEAN: Tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: Tuple[float, float, float] = (0.22803, 0.22145, 0.216989)


class VideoNet(nn.Module):
    """stem → four stages → global average pool (time and space) → dropout → linear classifier.

    Args:
        stem, stages: the network's 3D modules (``stages``: four of them).
        channels: output channels of each stage (``feature_channels``); the last is ``num_features``.
        num_classes: classifier outputs (unused with ``features_only``).
        mean, std: the input normalisation its weights expect.
        drop_rate: dropout before the classifier.
        features_only: ``forward`` returns the stage maps (no classifier is built).
        normalize: another input stage than ``Normalize(mean, std)``, an image layer applied to each frame
            (:class:`~simmm.models.ciconv.CIConv`).
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], channels: Sequence[int], num_classes: int,
                 mean: Sequence[float], std: Sequence[float], drop_rate: float = 0.0,
                 features_only: bool = False, normalize: nn.Module | None = None) -> None:
        super().__init__()
        self.normalize = normalize if normalize is not None else Normalize(mean, std)
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.feature_channels = [int(c) for c in channels]
        self.num_features = self.feature_channels[-1]
        self.features_only = bool(features_only)
        self.drop = nn.Dropout(drop_rate)
        self.fc = None if features_only else nn.Linear(self.num_features, num_classes)

    def forward_features(self, clips: torch.Tensor) -> List[torch.Tensor]:
        """Clips ``(B, 3, T, H, W)`` in ``[0, 1]`` → the four stage maps."""
        if clips.dim() != 5 or clips.shape[1] != 3:
            raise ValueError(f"VideoNet expects clips (B, 3, T, H, W), got shape {tuple(clips.shape)}")
        if isinstance(self.normalize, Normalize):  # per channel, broadcast over time
            mean, std = (t.to(clips.dtype).unsqueeze(1) for t in (self.normalize.mean, self.normalize.std))  # (3,1,1,1)
            x = (clips - mean) / std
        else:
            x = per_frame(self.normalize, clips)
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Last stage map → pooled clip vector (``pre_logits``) or logits."""
        pooled = fmap.mean(dim=(2, 3, 4))
        return pooled if pre_logits else self.fc(self.drop(pooled))

    def forward(self, clips: torch.Tensor):
        feats = self.forward_features(clips)
        return feats if self.features_only else self.forward_head(feats[-1])


def per_frame(layer: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """An image layer applied to every frame: ``(B, C, T, H, W)`` → the frames as a batch ``(B·T, C, H, W)`` →
    ``layer`` → ``(B, C', T, H', W')``."""
    return unfold_clips(layer(fold_clips(clips)), clips.shape[2])


def _one_channel_stem(conv: nn.Conv3d) -> nn.Conv3d:
    """``conv`` taking one input channel, its RGB kernels summed (the CIConv authors' rule)."""
    one = nn.Conv3d(CHANNELS, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, bias=conv.bias is not None)
    with torch.no_grad():
        one.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            one.bias.copy_(conv.bias)
    return one


def _torchvision_video(arch: str, pretrained) -> nn.Module:
    import torchvision.models.video as tvv

    net = getattr(tvv, arch)()  # Kinetics-400 head: the weights' own shape
    kind, arg = parse_pretrained(pretrained)
    if kind == "none":
        return net
    if kind == "torchvision":
        source = f"torchvision:{arg or arch}"
        state = torchvision_state_dict(arg or arch)
    elif kind == "file":
        source, state = arg, load_state_dict_file(arg)
    else:
        raise SimmmError(f"model.pretrained: {pretrained!r} does not fit {arch}; expected '' (random), "
                         f"'torchvision' (its Kinetics-400 weights) or a state-dict file of torchvision's {arch}")
    load_backbone_weights(net, state, source=source)
    return net


def create_video_model(arch: str, num_classes: int, pretrained="", backbone: str = "resnet50",
                       drop_rate: float = 0.0, features_only: bool = False,
                       temporal_padding: str = "replicate", ciconv: bool = False) -> VideoNet:
    """Build a :class:`VideoNet` (module docstring).

    Args:
        arch: ``"i3d"`` (inflated timm ResNet ``backbone``), ``"r3d_18"`` or ``"r2plus1d_18"`` (torchvision).
        num_classes: classifier outputs.
        pretrained: see the module docstring.
        backbone: ``i3d``: the 2D timm ResNet to inflate (``resnet50``; any timm ResNet, e.g. ``resnet10t``).
        drop_rate: dropout before the classifier.
        features_only: return the stage maps from ``forward``.
        temporal_padding: ``i3d``: ``"replicate"`` or ``"zeros"`` (:mod:`simmm.models.inflate`).
        ciconv: CIConv's colour-invariant layer on each frame instead of the normalisation (module docstring).
    """
    if arch in ("r3d_18", "r2plus1d_18"):
        net = _torchvision_video(arch, pretrained)
        if ciconv:
            net.stem[0] = _one_channel_stem(net.stem[0])
        stages = [net.layer1, net.layer2, net.layer3, net.layer4]
        return VideoNet(net.stem, stages, [64, 128, 256, 512], num_classes, KINETICS_MEAN, KINETICS_STD, drop_rate,
                        features_only, CIConv() if ciconv else None)
    if arch != "i3d":
        raise SimmmError(f"model.arch: got {arch!r}; expected one of {', '.join(VIDEO_ARCHS)}")
    net2d = create_backbone(backbone, pretrained, **backbone_options(ciconv))
    depths = [len(getattr(net2d, f"layer{i}", ())) for i in range(1, 5)]
    if not all(depths) or not all(hasattr(net2d, a) for a in ("conv1", "bn1", "act1", "maxpool")):
        raise SimmmError(f"model.backbone: {backbone!r} is not a timm ResNet (conv1, bn1, act1, maxpool, "
                         "layer1..layer4); i3d inflates a ResNet, e.g. resnet50 or resnet10t")
    mean, std = backbone_normalization(net2d)
    kernels = i3d_temporal_kernels(net2d, depths)
    stem = nn.Sequential(OrderedDict(conv1=net2d.conv1, bn1=net2d.bn1, act1=net2d.act1, maxpool=net2d.maxpool))
    body = nn.ModuleDict({"stem": stem, **{f"layer{i}": getattr(net2d, f"layer{i}") for i in range(1, 5)}})
    # the kernel names are net2d's; in `body` the stem layers sit under "stem."
    renamed = {(f"stem.{k}" if not k.startswith("layer") else k): v for k, v in kernels.items()}
    inflate_(body, renamed, temporal_padding=temporal_padding)
    channels = [int(info["num_chs"]) for info in net2d.feature_info[-4:]]
    return VideoNet(body["stem"], [body[f"layer{i}"] for i in range(1, 5)], channels, num_classes, mean, std,
                    drop_rate, features_only, CIConv() if ciconv else None)
