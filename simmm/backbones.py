"""Backbones: any timm model by name, with pretrained weights (:mod:`simmm.weights`), and its input
normalisation.

``pretrained`` takes the forms of :func:`simmm.weights.parse_pretrained`: none, timm's own weights,
torchvision's, a local file, or the offline EfficientNet-Lite0 package. ``features_only=True`` models are built
by timm from the validated full-model weights.

The model owns its input normalisation: prefix it with :class:`Normalize` built from
:func:`backbone_normalization`, so every caller (the darkening game included) feeds it correctly normalised
input.
"""

from __future__ import annotations

import difflib
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .errors import CheckpointError, SimmmError
from .weights import adapt_input_channels, load_backbone_weights, parse_pretrained, pretrained_state_dict

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "create_backbone",
    "classifier_backbone",
    "backbone_normalization",
    "feature_channels",
    "Normalize",
]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

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
        **kw: passed to ``timm.create_model`` (``num_classes``, ``drop_path_rate``, ``in_chans``, ...). With
            ``in_chans`` other than 3 the RGB weights' first convolution is adapted (timm's rule, for every form of
            ``pretrained``: for ``in_chans=1`` the sum over R, G and B).

    Returns:
        The model (train mode, as timm returns it).

    Raises:
        SimmmError: unknown model name (with close matches), options timm rejects, weights that cannot be
            fetched.
        CheckpointError: a weights file that is unreadable or does not fit the model.
    """
    _check_model_name(name)
    kind, arg = parse_pretrained(pretrained)
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
    full = _timm_create(name, pretrained=False, **kw)
    state, source = pretrained_state_dict(name, kind, arg, full)
    state = adapt_input_channels(state, full)

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
    log = logging.getLogger("timm")
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
