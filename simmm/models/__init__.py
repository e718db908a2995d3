"""Segmentation models: :class:`Encoder` (timm ``features_only`` backbone, four stage maps), the decoders
:class:`RefineNet`, :class:`DeepLabV2` and :class:`PSPNet`, and :class:`Segmenter` / :func:`create_segmenter`;
DANIA's relighting net :class:`RelightNet` and output-space discriminator :class:`OutputDiscriminator`; video
networks for action recognition, :class:`VideoNet` / :func:`create_video_model` (torchvision's r3d_18 and
r2plus1d_18, I3D by inflating a 2D ResNet with :func:`inflate_`).

>>> model = create_segmenter("refinenet", backbone="resnet101", num_classes=19, pretrained="")
>>> logits = model(images)                      # images (B, 3, H, W) in [0, 1] -> (B, 19, H, W)
>>> feats, logits = model.forward_with_features(images)   # four stage maps + logits, one encoder pass
"""

from .deeplab import ASPPClassifier, DeepLabV2
from .discriminator import OutputDiscriminator
from .encoder import OUTPUT_STRIDES, Encoder
from .pspnet import PSPNet, PyramidPoolingModule
from .refinenet import (
    ChainedResidualPooling,
    MultiResolutionFusion,
    RefineNet,
    RefineNetBlock,
    ResidualConvUnit,
)
from .inflate import InflatedConv3d, i3d_temporal_kernels, inflate_, inflate_batchnorm, inflate_conv, inflate_pool
from .relight import RelightNet, Relit
from .segmenter import DECODERS, Segmenter, create_segmenter
from .video import VIDEO_ARCHS, VideoNet, create_video_model

__all__ = [
    "Encoder",
    "OUTPUT_STRIDES",
    "RefineNet",
    "RefineNetBlock",
    "ResidualConvUnit",
    "MultiResolutionFusion",
    "ChainedResidualPooling",
    "DeepLabV2",
    "ASPPClassifier",
    "PSPNet",
    "PyramidPoolingModule",
    "Segmenter",
    "create_segmenter",
    "DECODERS",
    "RelightNet",
    "Relit",
    "OutputDiscriminator",
    "InflatedConv3d",
    "inflate_conv",
    "inflate_batchnorm",
    "inflate_pool",
    "inflate_",
    "i3d_temporal_kernels",
    "VIDEO_ARCHS",
    "VideoNet",
    "create_video_model",
]
