r"""Inflating a 2D network into a 3D one (I3D, Carreira & Zisserman 2017): every ``k×k`` convolution becomes a
``t×k×k`` one whose ``t`` temporal slices are the 2D kernel divided by ``t``; batch norms and poolings gain a time
axis.

.. math::

    W^{3D}_{:, :, \tau, :, :} = \frac{1}{t} W^{2D} \quad (\tau = 0 .. t-1)

so that on a clip of identical frames ("a boring video") each inflated convolution computes what the 2D one
computes on the frame. Temporal padding repeats the edge frames (``temporal_padding="replicate"``, the default),
which keeps that identity exact at the clip's ends too: the inflated network's output on a static clip is the 2D
network's output on its frame. ``"zeros"`` pads with zeros, as most 3D networks do (the identity then holds away
from the ends only).

Functional forms :func:`inflate_conv`, :func:`inflate_batchnorm`, :func:`inflate_pool`; :func:`inflate_` converts a
whole module tree in place, with a temporal kernel and stride per layer name; :func:`i3d_temporal_kernels` gives
the I3D ResNet-50 choice of those for a timm ResNet.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TEMPORAL_PADDINGS", "I3D_R50_INFLATE", "InflatedConv3d", "inflate_conv", "inflate_batchnorm",
           "inflate_pool", "inflate_", "i3d_temporal_kernels"]

TEMPORAL_PADDINGS = ("replicate", "zeros")

I3D_R50_INFLATE: Tuple[Tuple[int, ...], ...] = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
"""Which residual blocks of a ResNet-50 get a temporal kernel of 3 in their first convolution (I3D ResNet-50 as in
the non-local-network and ARID code bases)."""


class InflatedConv3d(nn.Conv3d):
    """A :class:`torch.nn.Conv3d` whose temporal padding is done before the convolution, repeating the edge frames
    (``"replicate"``) or with zeros (``"zeros"``); the spatial padding stays the 2D layer's zeros.

    Shapes: ``(B, C, T, H, W)`` → ``(B, C', T', H', W')``.
    """

    def __init__(self, *args, temporal_padding: str = "replicate", time_pad: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if temporal_padding not in TEMPORAL_PADDINGS:
            raise ValueError(f"temporal_padding must be one of {TEMPORAL_PADDINGS}, got {temporal_padding!r}")
        self.temporal_padding, self.time_pad = temporal_padding, int(time_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            mode = "replicate" if self.temporal_padding == "replicate" else "constant"
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode=mode)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, time_pad={self.time_pad}, temporal_padding={self.temporal_padding!r}"


def inflate_conv(conv: nn.Conv2d, time_kernel: int = 1, time_stride: int = 1,
                 temporal_padding: str = "replicate") -> InflatedConv3d:
    """The 3D form of ``conv``: kernel ``(t, kh, kw)``, stride ``(time_stride, sh, sw)``, temporal padding
    ``t // 2`` (edge frames repeated or zeros); weights replicated over time and divided by ``t``, bias kept."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"inflate_conv expects an nn.Conv2d, got {type(conv).__name__}")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"inflate_conv: {conv} has padding {conv.padding!r} ({conv.padding_mode}); expected "
                         "numeric zero padding")
    t = int(time_kernel)
    out = InflatedConv3d(conv.in_channels, conv.out_channels, (t, *conv.kernel_size),
                         stride=(int(time_stride), *conv.stride), padding=(0, *conv.padding),
                         dilation=(1, *conv.dilation), groups=conv.groups, bias=conv.bias is not None,
                         temporal_padding=temporal_padding, time_pad=t // 2)
    with torch.no_grad():
        out.weight.copy_(conv.weight.unsqueeze(2).expand_as(out.weight) / t)
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out.to(conv.weight.device)


def inflate_batchnorm(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    """The :class:`torch.nn.BatchNorm3d` with ``bn``'s settings, weights and running statistics."""
    out = nn.BatchNorm3d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats)
    out.load_state_dict(bn.state_dict())
    first = next(iter(bn.state_dict().values()), None)
    return out if first is None else out.to(first.device)


def _pair(value) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def inflate_pool(pool: nn.Module, time_kernel: int = 1, time_stride: int = 1) -> nn.Module:
    """``MaxPool2d``/``AvgPool2d`` → the 3D pooling with kernel ``(t, kh, kw)``, stride ``(time_stride, sh, sw)``,
    temporal padding ``t // 2``, the other settings kept."""
    t, ts = int(time_kernel), int(time_stride)
    kernel, stride, padding = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding)
    if isinstance(pool, nn.MaxPool2d):
        return nn.MaxPool3d((t, *kernel), (ts, *stride), (t // 2, *padding), dilation=(1, *_pair(pool.dilation)),
                            ceil_mode=pool.ceil_mode)
    if isinstance(pool, nn.AvgPool2d):
        return nn.AvgPool3d((t, *kernel), (ts, *stride), (t // 2, *padding), ceil_mode=pool.ceil_mode,
                            count_include_pad=pool.count_include_pad, divisor_override=pool.divisor_override)
    raise TypeError(f"inflate_pool expects MaxPool2d or AvgPool2d, got {type(pool).__name__}")


_TWO_D = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d)
_UNSUPPORTED_2D = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout2d, nn.Upsample, nn.ConvTranspose2d,
                   nn.LPPool2d, nn.InstanceNorm2d)


def inflate_(module: nn.Module, temporal: Dict[str, Tuple[int, int]] = None,
             temporal_padding: str = "replicate") -> nn.Module:
    """Inflate every ``Conv2d``, ``BatchNorm2d``, ``MaxPool2d`` and ``AvgPool2d`` inside ``module``, in place.

    Args:
        module: a 2D network (its forward must work unchanged on 5D tensors once its layers are 3D: plain chains
            and residual blocks do).
        temporal: layer name (dotted, as in ``named_modules``) → ``(time kernel, time stride)`` of a convolution or
            pooling; every other layer gets ``(1, 1)``. A name that matches no layer raises ``KeyError``.
        temporal_padding: ``"replicate"`` (default) or ``"zeros"``, see the module docstring.

    Returns:
        ``module`` (a bare ``Conv2d`` etc. cannot be changed in place: the new layer is returned).
    """
    temporal = dict(temporal or {})
    names = dict(module.named_modules())
    unknown = [name for name in temporal if name not in names]
    if unknown:
        raise KeyError(f"inflate_: no layer named {unknown[0]!r}; layers: {', '.join(n for n in names if n)[:300]}")

    def convert(name: str, layer: nn.Module) -> nn.Module:
        t, ts = temporal.get(name, (1, 1))
        if isinstance(layer, nn.Conv2d):
            return inflate_conv(layer, t, ts, temporal_padding)
        if isinstance(layer, nn.BatchNorm2d):
            return inflate_batchnorm(layer)
        return inflate_pool(layer, t, ts)

    if isinstance(module, _TWO_D):
        return convert("", module)
    for name, parent in list(module.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, _TWO_D):
                setattr(parent, child_name, convert(full, child))
            elif isinstance(child, _UNSUPPORTED_2D):
                raise TypeError(f"inflate_: layer {full} ({type(child).__name__}) has no inflated form here")
    return module


def i3d_temporal_kernels(net: nn.Module, depths: Sequence[int], stem: Tuple[int, int] = (5, 2),
                         pool_stride: int = 2, pattern: Sequence[Sequence[int]] = I3D_R50_INFLATE
                         ) -> Dict[str, Tuple[int, int]]:
    """The I3D choice of temporal kernels for a timm ResNet: the stem's first convolution ``stem`` = (kernel,
    stride) = (5, 2); the stem's max-pool stride ``pool_stride`` in time; kernel 3 in the first convolution of the
    residual blocks that ``pattern`` marks (:data:`I3D_R50_INFLATE` for depths 3, 4, 6, 3; every block for other
    depths). Temporal stride 1 everywhere else: 16 frames reach the last stage as 4."""
    names = dict(net.named_modules())
    first = "conv1" if isinstance(names.get("conv1"), nn.Conv2d) else "conv1.0"
    kernels = {first: tuple(stem)}
    if isinstance(names.get("maxpool"), nn.MaxPool2d):
        kernels["maxpool"] = (1, int(pool_stride))
    use = pattern if [len(p) for p in pattern] == list(depths) else [(1,) * d for d in depths]
    for stage, flags in enumerate(use, start=1):
        for block, flag in enumerate(flags):
            if flag:
                kernels[f"layer{stage}.{block}.conv1"] = (3, 1)
    return kernels
