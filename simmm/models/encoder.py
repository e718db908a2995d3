"""Segmentation encoder: a timm ``features_only`` backbone returning four stage maps.

For ResNets (timm ``out_indices=(1, 2, 3, 4)``) the maps have strides 4, 8, 16, 32 and 256/512/1024/2048
channels (ResNet-50/101; 64/128/256/512 for ResNet-18/34). ``output_stride=16`` or ``8`` asks timm for a
dilated network (the last one or two stages keep their resolution and dilate their convolutions), so the
strides become 4, 8, 16, 16 or 4, 8, 8, 8; :attr:`Encoder.reductions` always reports the real ones.

Gradient checkpointing (``checkpointing=True``) re-runs each stage in the backward pass instead of keeping
its activations (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant). The encoder splits the timm
feature extractor into one segment per returned map itself (the stem goes with the first stage), which
covers timm's generic ``FeatureListNet`` (ResNets, RegNets, ConvNeXts, ...) and its EfficientNet/MobileNetV3
feature classes. While a segment is recomputed its BatchNorm layers do not update their running statistics a
second time, so outputs, gradients *and* BN buffers are the same with checkpointing on and off. Other feature
classes fall back on timm's own ``set_grad_checkpointing`` (which lacks that guard), or raise if they have
none.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..backbones import create_backbone, feature_channels
from ..errors import SimmmError

__all__ = ["Encoder", "OUTPUT_STRIDES"]

OUTPUT_STRIDES = (8, 16, 32)


class _FrozenBNStats:
    """Context manager: while active, the BatchNorm layers of ``module`` (in training mode) do not move their
    running statistics (momentum 0) and their ``num_batches_tracked`` is restored on exit.

    Used as the *recompute* context of checkpointed segments, so the second forward pass of a stage does not
    count the batch twice. Only ``momentum`` and the (never autograd-saved) counter are touched; the running
    mean/var are updated in place with factor 0, i.e. left bit-identical.
    """

    def __init__(self, module):
        self.module = module
        self._saved: List[Tuple[nn.Module, Any, Optional[Tensor]]] = []

    def __enter__(self):
        self._saved = []
        for m in self.module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
                nbt = m.num_batches_tracked
                self._saved.append((m, m.momentum, None if nbt is None else nbt.clone()))
                m.momentum = 0.0
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for m, momentum, nbt in self._saved:
                m.momentum = momentum
                if nbt is not None:
                    m.num_batches_tracked.copy_(nbt)
        self._saved = []
        return False


class _Segment:
    """A run of ``body``'s submodules applied in sequence, held by name and looked up at each call. A plain object,
    not an ``nn.Module``: the modules stay owned (and named) by timm's feature extractor, and a module swapped in
    the tree later (``SyncBatchNorm`` conversion) is the one that runs; ``copy.deepcopy`` of the encoder keeps
    ``body`` consistent."""

    def __init__(self, body: nn.Module, names: Sequence[str]):
        self.body = body
        self.names = list(names)

    def __call__(self, x: Tensor) -> Tensor:
        for name in self.names:
            x = self.body.get_submodule(name)(x)
        return x

    def modules(self):
        for name in self.names:
            yield from self.body.get_submodule(name).modules()


def _split_into_segments(body: nn.Module) -> Optional[List[List[str]]]:
    """One list of module names per returned feature map (stem included in the first), in order; ``None`` when
    ``body`` is not one of the timm feature classes whose structure we know."""
    from timm.models import EfficientNetFeatures, FeatureDictNet, MobileNetV3Features

    steps: List[str] = []
    emits: List[bool] = []
    if isinstance(body, FeatureDictNet):
        fmt = str(getattr(body, "output_fmt", "NCHW"))
        if "NCHW" not in fmt or getattr(body, "concat", False):
            return None
        for name, _ in body.items():
            steps.append(name)
            emits.append(name in body.return_layers)
    elif (
        isinstance(body, (EfficientNetFeatures, MobileNetV3Features))
        and isinstance(getattr(body, "blocks", None), nn.Sequential) and hasattr(body, "conv_stem")
        and getattr(body, "feature_hooks", 1) is None
    ):  # stem children, then `blocks`, all in order; a map after the stem (stage 0) or after block i (stage i+1)
        names = [n for n, _ in body.named_children()]
        if names[-1] != "blocks" or not set(names[:-1]) <= {"conv_stem", "bn1", "act1"}:
            return None
        out_idx = {int(info["stage"]) for info in body.feature_info.get_dicts()}
        for n in names[:-1]:
            steps.append(n)
            emits.append(False)
        if emits:
            emits[-1] = 0 in out_idx
        for i, _ in enumerate(body.blocks):
            steps.append(f"blocks.{i}")
            emits.append(i + 1 in out_idx)
    else:
        return None
    segments: List[List[str]] = []
    current: List[str] = []
    for module, emit in zip(steps, emits):
        current.append(module)
        if emit:
            segments.append(current)
            current = []
    return segments or None


def _last_four_levels(name: str) -> Tuple[int, ...]:
    """Indices of the last four feature levels of timm model ``name`` (built on the meta device: no memory, no
    weights); ``(1, 2, 3, 4)`` when the model cannot be probed (timm then reports the real problem)."""
    import timm

    try:
        with torch.device("meta"):
            n = len(timm.create_model(name, pretrained=False, features_only=True).feature_info)
    except Exception:
        return (1, 2, 3, 4)
    if n < 4:
        raise SimmmError(f"backbone {name!r} has only {n} feature levels; a segmentation encoder needs four")
    return tuple(range(n - 4, n))


class Encoder(nn.Module):
    """A timm ``features_only`` backbone: ``forward(x) -> [stage maps]`` (normalised images in, four maps
    out).

    Args:
        name: timm model name (``resnet101``, ``resnet50``, ``resnet18``, ``tf_efficientnet_lite0``, ...).
        pretrained: weights for the backbone, any form :func:`simmm.backbones.create_backbone` takes:
            ``""`` (random), ``"timm"``, ``"torchvision[:arch]"``, a local file, ``"offline"``.
        output_stride: 32 (plain), 16 or 8 (timm's dilated last stages).
        checkpointing: gradient checkpointing per stage (see the module docstring).
        out_indices: timm feature indices; default: the model's last four feature levels, i.e.
            ``(1, 2, 3, 4)`` (strides 4..32) for ResNets and EfficientNets (index 0 is their stride-2 stem),
            ``(0, 1, 2, 3)`` for four-level models such as ConvNeXt.
        **timm_kw: passed to ``timm.create_model`` (``drop_path_rate``, ...).

    Attributes:
        channels: channels of each returned map (e.g. ``[256, 512, 1024, 2048]`` for ResNet-101).
        reductions: stride of each map w.r.t. the input (e.g. ``[4, 8, 8, 8]`` at ``output_stride=8``).
        body: the timm feature extractor (parameter names are ``body.<timm name>``).
    """

    def __init__(
        self,
        name: str = "resnet101",
        pretrained: Union[str, bool, None, os.PathLike] = "",
        output_stride: int = 32,
        checkpointing: bool = False,
        out_indices: Optional[Sequence[int]] = None,
        **timm_kw: Any,
    ):
        super().__init__()
        output_stride = int(output_stride)
        if output_stride not in OUTPUT_STRIDES:
            raise SimmmError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        kw = dict(timm_kw)
        if output_stride != 32:
            kw["output_stride"] = output_stride
        self.name = name
        self.output_stride = output_stride
        if out_indices is None:
            out_indices = _last_four_levels(name)
        self.out_indices = tuple(int(i) for i in out_indices)
        self.body = create_backbone(name, pretrained, features_only=True, out_indices=self.out_indices, **kw)
        self.channels: List[int] = [int(c) for c in feature_channels(self.body)]
        self.reductions: List[int] = [int(r) for r in self.body.feature_info.reduction()]
        segments = _split_into_segments(self.body)
        if segments is not None and len(segments) != len(self.channels):  # pragma: no cover - defensive
            segments = None
        self._segments = None if segments is None else [_Segment(self.body, s) for s in segments]
        self.checkpointing = False
        self.set_grad_checkpointing(checkpointing)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Turn per-stage gradient checkpointing on or off."""
        enable = bool(enable)
        if self._segments is None:
            if not hasattr(self.body, "set_grad_checkpointing"):
                if enable:
                    raise SimmmError(
                        f"gradient checkpointing is not supported for the backbone {self.name!r} "
                        f"({type(self.body).__name__}); set checkpointing: false"
                    )
                self.checkpointing = False
                return
            self.body.set_grad_checkpointing(enable)
        self.checkpointing = enable

    def forward(self, x: Tensor) -> List[Tensor]:
        if self._segments is None:
            out = self.body(x)
            return list(out.values()) if isinstance(out, dict) else list(out)
        use_ckpt = self.checkpointing and torch.is_grad_enabled()
        feats: List[Tensor] = []
        for seg in self._segments:
            if use_ckpt:
                x = checkpoint(
                    seg, x, use_reentrant=False,
                    context_fn=lambda seg=seg: (contextlib.nullcontext(), _FrozenBNStats(seg)),
                )
            else:
                x = seg(x)
            feats.append(x)
        return feats

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, output_stride={self.output_stride}, channels={self.channels}, "
                f"reductions={self.reductions}, checkpointing={self.checkpointing}")
