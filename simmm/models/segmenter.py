"""Segmenter = input normalisation + encoder + decoder, and the builder :func:`create_segmenter`.

``Segmenter`` takes images in ``[0, 1]`` (``(B, 3, H, W)``), normalises them as the backbone's weights expect
(:class:`simmm.backbones.Normalize` from timm's ``pretrained_cfg``), runs the :class:`~.encoder.Encoder` (four
stage maps) and a decoder (logits at stride 4 or 8), and upsamples the logits bilinearly to ``(H, W)``.

For SMM (METHOD.md §4.4) the similarity and the per-stage BYOL heads use the four encoder maps:
:meth:`Segmenter.forward_features`, or :meth:`Segmenter.forward_with_features` for maps and logits from one
encoder pass.

Decoders (``create_segmenter(decoder=...)``; default output stride in brackets):
``"refinenet"`` (32; logits at stride 4), ``"deeplabv2"`` (8; ASPP on the last stage), ``"pspnet"``
(8; pyramid pooling on the last stage, optional auxiliary head with ``aux=True``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple, Union

from torch import Tensor, nn

from ..backbones import Normalize
from ..errors import SimmmError
from .ciconv import backbone_options, input_stage
from .deeplab import DeepLabV2
from .encoder import Encoder
from .layers import resize_to
from .pspnet import PSPNet
from .refinenet import RefineNet

__all__ = ["Segmenter", "create_segmenter", "DECODERS"]

DECODERS: Dict[str, type] = {
    "refinenet": RefineNet,
    "deeplabv2": DeepLabV2,
    "pspnet": PSPNet,
}
"""Decoder name → class. Each class takes ``(in_channels, num_classes, **kw)`` and has a
``default_output_stride``."""


class Segmenter(nn.Module):
    """``Normalize → Encoder → decoder → bilinear upsampling to the input size``.

    Args:
        encoder: the :class:`Encoder` (four stage maps).
        decoder: a module mapping the list of four maps to logits (at any stride).
        normalize: input normalisation; default: what the encoder's pretrained config expects.

    Attributes:
        encoder, decoder, normalize; ``num_classes``; ``encoder.channels`` / ``encoder.reductions``.
    """

    def __init__(self, encoder: Encoder, decoder: nn.Module, normalize: Optional[nn.Module] = None):
        super().__init__()
        self.normalize = normalize if normalize is not None else Normalize.for_model(encoder.body)
        self.encoder = encoder
        self.decoder = decoder
        self.num_classes = int(getattr(decoder, "num_classes", 0)) or None

    @property
    def feature_channels(self) -> List[int]:
        """Channels of the maps :meth:`forward_features` returns (``encoder.channels``)."""
        return list(self.encoder.channels)

    def forward_features(self, images: Tensor) -> List[Tensor]:
        """Images in ``[0, 1]`` → the four encoder stage maps."""
        return self.encoder(self.normalize(images))

    def forward_head(self, features: List[Tensor], size: Optional[Tuple[int, int]] = None) -> Tensor:
        """Stage maps → logits, upsampled to ``size`` (``(H, W)``) when given."""
        logits = self.decoder(features)
        return logits if size is None else resize_to(logits, size)

    def forward_with_features(self, images: Tensor, return_aux: bool = False):
        """One encoder pass → ``(features, logits)`` (logits at the input size); with ``return_aux``,
        ``(features, logits, aux_logits)`` where ``aux_logits`` is ``None`` for decoders without an auxiliary
        head."""
        features = self.forward_features(images)
        logits = self.forward_head(features, images.shape[-2:])
        if not return_aux:
            return features, logits
        return features, logits, self._aux(features, images.shape[-2:])

    def forward(self, images: Tensor, return_aux: bool = False):
        """Images ``(B, 3, H, W)`` in ``[0, 1]`` → logits ``(B, num_classes, H, W)``; with ``return_aux``,
        ``(logits, aux_logits or None)``."""
        out = self.forward_with_features(images, return_aux=return_aux)
        return out[1] if not return_aux else (out[1], out[2])

    def forward_normalized(self, x: Tensor) -> Tensor:
        """Logits for input that is already normalised (skips :attr:`normalize`), e.g. DANIA's relit
        ``R(I) = I + r``, which lives in the normalised space (METHOD.md §5)."""
        return self.forward_head(self.encoder(x), x.shape[-2:])

    def _aux(self, features: List[Tensor], size) -> Optional[Tensor]:
        fn = getattr(self.decoder, "forward_aux", None)
        aux = fn(features) if fn is not None else None
        return None if aux is None else resize_to(aux, size)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Per-stage gradient checkpointing of the encoder."""
        self.encoder.set_grad_checkpointing(enable)


def create_segmenter(
    decoder: str,
    backbone: str = "resnet101",
    num_classes: int = 19,
    pretrained: Union[str, bool, None, os.PathLike] = "",
    output_stride: Optional[int] = None,
    checkpointing: bool = False,
    features: Optional[int] = None,
    ciconv: bool = False,
    **decoder_kw: Any,
) -> Segmenter:
    """Build a :class:`Segmenter`.

    Args:
        decoder: ``"refinenet"``, ``"deeplabv2"`` or ``"pspnet"`` (:data:`DECODERS`).
        backbone: timm model name (``resnet101`` as in the papers; ``resnet18``, ``tf_efficientnet_lite0``,
            ...).
        num_classes: output classes (19 for Cityscapes).
        pretrained: backbone weights (:func:`simmm.backbones.create_backbone`'s forms); decoders are
            Kaiming-initialised.
        output_stride: 8, 16 or 32; ``None``: the decoder's default (32 for RefineNet, 8 for DeepLab-v2 and
            PSPNet).
        checkpointing: per-stage gradient checkpointing of the encoder.
        features: decoder width (RefineNet: path width, 256; PSPNet: bottleneck width, 512); DeepLab-v2 has no
            width (its ASPP maps straight to the classes) and rejects it.
        ciconv: CIConv's colour-invariant layer as the input stage instead of the normalisation, in front of a
            one-channel encoder (:mod:`simmm.models.ciconv`).
        **decoder_kw: further decoder options (RefineNet: ``crp_blocks``, ``output_rcus``, ``dropout``;
            DeepLab-v2: ``rates``; PSPNet: ``bins``, ``ppm_channels``, ``dropout``, ``aux``, ``norm_layer``).

    Raises:
        SimmmError: unknown decoder (listing the known ones), bad output stride, backbone or weights problems.
    """
    key = decoder.strip().lower() if isinstance(decoder, str) else decoder
    cls = DECODERS.get(key) if isinstance(key, str) else None
    if cls is None:
        raise SimmmError(f"unknown segmentation decoder {decoder!r}; choose one of: {', '.join(DECODERS)}")
    if num_classes is None or int(num_classes) <= 0:
        raise SimmmError(f"num_classes must be a positive integer, got {num_classes!r}")
    kw = dict(decoder_kw)
    if features is not None:
        if cls is DeepLabV2:
            raise SimmmError("the deeplabv2 decoder has no width option (features); leave it unset")
        kw["features"] = int(features)
    os_ = cls.default_output_stride if output_stride is None else output_stride
    encoder = Encoder(backbone, pretrained=pretrained, output_stride=os_, checkpointing=checkpointing,
                      **backbone_options(ciconv))
    try:
        head = cls(encoder.channels, int(num_classes), **kw)
    except TypeError as e:
        raise SimmmError(f"bad option for the {key} decoder: {e}") from e
    return Segmenter(encoder, head, input_stage(encoder.body, ciconv))
