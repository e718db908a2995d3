"""RefineNet decoder (Lin, Milan, Shen, Reid: "RefineNet: Multi-Path Refinement Networks for High-Resolution
Semantic Segmentation", CVPR 2017): the original 4-cascade structure, not the light-weight "RefineNet-LW".

Each encoder stage is first adapted by a 3×3 convolution to the path width (``2·features`` for the stride-32
path, ``features`` for the others: 512 and 256 in the paper). Then the cascade, from the coarsest path up::

    RefineNet-4(path4)             -> r4       (single input: no fusion)
    RefineNet-3(r4, path3)         -> r3
    RefineNet-2(r3, path2)         -> r2
    RefineNet-1(r2, path1)         -> r1       (stride 4)
    logits = Conv1×1(RCU(RCU(r1)))              (two extra RCUs before the classifier, as in the paper)

and every RefineNet block is

- **adaptive convolutions**: two residual conv units (RCU: ``ReLU → Conv3×3 → ReLU → Conv3×3`` + input, no
  BatchNorm) per input path;
- **multi-resolution fusion**: one 3×3 conv per path to the block's width (the smallest input width), bilinear
  upsampling to the largest resolution, sum;
- **chained residual pooling**: ``ReLU``, then a chain of ``MaxPool5×5 (stride 1) → Conv3×3`` blocks, each
  block's output added to the running sum (``crp_blocks=2`` as in the paper's figure; later versions used 4);
- **output convolutions**: one RCU (``output_rcus``).

Shapes: four maps ``(B, C_i, H/s_i, W/s_i)`` → logits ``(B, num_classes, H/s_1, W/s_1)``
(stride 4 for ResNets).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .layers import check_features, check_in_channels, init_decoder_weights, resize_to

__all__ = [
    "ResidualConvUnit", "MultiResolutionFusion", "ChainedResidualPooling", "RefineNetBlock", "RefineNet",
]


def _conv3x3(in_ch: int, out_ch: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    """RCU: ``x + Conv3×3(ReLU(Conv3×3(ReLU(x))))`` (channels preserved; the input is not modified in
    place)."""

    def __init__(self, channels: int):
        super().__init__()
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = _conv3x3(channels, channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu2(self.conv1(self.relu1(x))))


class MultiResolutionFusion(nn.Module):
    """One 3×3 conv per input (to ``out_channels``), bilinear upsampling to the largest input, sum."""

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.convs = nn.ModuleList(_conv3x3(c, out_channels) for c in in_channels)

    def forward(self, xs: Sequence[Tensor]) -> Tensor:
        size = max((tuple(x.shape[-2:]) for x in xs), key=lambda s: s[0] * s[1])
        out = None
        for conv, x in zip(self.convs, xs):
            y = resize_to(conv(x), size)
            out = y if out is None else out + y
        return out


class ChainedResidualPooling(nn.Module):
    """``x = ReLU(x); out = x; for each block: x = Conv3×3(MaxPool5×5(x)); out = out + x``."""

    def __init__(self, channels: int, blocks: int = 2):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pools = nn.ModuleList(nn.MaxPool2d(5, stride=1, padding=2) for _ in range(blocks))
        self.convs = nn.ModuleList(_conv3x3(channels, channels, bias=False) for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        out = x
        for pool, conv in zip(self.pools, self.convs):
            x = conv(pool(x))
            out = out + x
        return out


class RefineNetBlock(nn.Module):
    """A RefineNet block over one or more input paths (coarsest first); output width ``out_channels``
    (the paper: the smallest input width) at the largest input resolution."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, crp_blocks: int = 2,
                 rcu_blocks: int = 2, output_rcus: int = 1):
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        self.adapt = nn.ModuleList(
            nn.Sequential(*[ResidualConvUnit(c) for _ in range(rcu_blocks)]) for c in in_channels
        )
        if len(in_channels) == 1 and in_channels[0] == out_channels:
            self.fusion = None  # a single path of the right width goes through unchanged (the paper)
        else:
            self.fusion = MultiResolutionFusion(in_channels, out_channels)
        self.crp = ChainedResidualPooling(out_channels, crp_blocks)
        self.output_conv = nn.Sequential(*[ResidualConvUnit(out_channels) for _ in range(output_rcus)])

    def forward(self, *xs: Tensor) -> Tensor:
        ys = [adapt(x) for adapt, x in zip(self.adapt, xs)]
        y = ys[0] if self.fusion is None else self.fusion(ys)
        return self.output_conv(self.crp(y))


class RefineNet(nn.Module):
    """4-cascade RefineNet decoder on four encoder stages (strides 4, 8, 16, 32 in, logits at stride 4 out).

    Args:
        in_channels: channels of the four encoder maps (``Encoder.channels``).
        num_classes: output classes.
        features: path width (256 in the paper); the stride-32 path uses ``2 * features`` (512).
        crp_blocks: pooling blocks per chained residual pooling (2, the paper's figure).
        output_rcus: RCUs at the end of each RefineNet block (1, the paper).
        dropout: dropout before the classifier (0: none).
    """

    default_output_stride = 32

    def __init__(self, in_channels: Sequence[int], num_classes: int, features: int = 256, crp_blocks: int = 2,
                 output_rcus: int = 1, dropout: float = 0.0):
        super().__init__()
        c1, c2, c3, c4 = check_in_channels("RefineNet", in_channels)
        f = int(features)
        if f <= 0:
            raise ValueError(f"RefineNet features must be positive, got {features}")
        self.in_channels = [c1, c2, c3, c4]
        self.num_classes = int(num_classes)
        self.features = f
        self.layer1_rn = _conv3x3(c1, f, bias=False)
        self.layer2_rn = _conv3x3(c2, f, bias=False)
        self.layer3_rn = _conv3x3(c3, f, bias=False)
        self.layer4_rn = _conv3x3(c4, 2 * f, bias=False)
        self.refinenet4 = RefineNetBlock([2 * f], 2 * f, crp_blocks, output_rcus=output_rcus)
        self.refinenet3 = RefineNetBlock([2 * f, f], f, crp_blocks, output_rcus=output_rcus)
        self.refinenet2 = RefineNetBlock([f, f], f, crp_blocks, output_rcus=output_rcus)
        self.refinenet1 = RefineNetBlock([f, f], f, crp_blocks, output_rcus=output_rcus)
        self.head = nn.Sequential(ResidualConvUnit(f), ResidualConvUnit(f))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(f, self.num_classes, 1)
        init_decoder_weights(self, classifiers=[self.classifier])
        # residual branches start at zero ("zero-init last", as timm's ResNets): RCUs start as the identity
        # and chained residual pooling as ReLU; otherwise ~14 cascaded RCUs and 4 CRPs without normalisation
        # blow the activations up by orders of magnitude at initialisation (logits std ~100 on ResNet-50)
        for m in self.modules():
            if isinstance(m, ResidualConvUnit):
                nn.init.zeros_(m.conv2.weight)
            elif isinstance(m, ChainedResidualPooling):
                for conv in m.convs:
                    nn.init.zeros_(conv.weight)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        check_features("RefineNet", features)
        l1, l2, l3, l4 = features
        r4 = self.refinenet4(self.layer4_rn(l4))
        r3 = self.refinenet3(r4, self.layer3_rn(l3))
        r2 = self.refinenet2(r3, self.layer2_rn(l2))
        r1 = self.refinenet1(r2, self.layer1_rn(l1))
        return self.classifier(self.dropout(self.head(r1)))

