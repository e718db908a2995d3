"""Semantic segmentation (Cityscapes → Nighttime Driving / Dark Zurich / ACDC) as a simmm task.

Built only on simmm's public API.

* Model: a :class:`simmm.models.Segmenter` (RefineNet, DeepLab-v2 or PSPNet decoder on a timm encoder); with
  ``model.ciconv: true`` its input stage is CIConv's colour-invariant layer (:mod:`simmm.models.ciconv`).
* Similarity features and BYOL inputs (METHOD.md §4.4, §4.3): all four encoder stages; one conv projector
  (C→64, BN, ReLU, pool, 64→128→128) and predictor per stage.
* Views: the pair's joint augmentation — random scale (±0.3), crop, flip, blur and cutout, and colour jitter — is
  drawn once and applied identically to both views, so the day view and the darkened view stay pixel-aligned with
  each other and with the label. It runs on the batch's device.
* Evaluation: confusion-matrix mIoU over the 19 Cityscapes classes at the label's native resolution, whole-image
  or sliding-window inference; metrics ``<set>/mIoU``, ``<set>/pixel_acc`` and ``<set>/IoU_<class>``;
  ``data.adabn: true`` adds ``<set>/mIoU_adabn`` and ``<set>/pixel_acc_adabn`` (statistics re-estimated per set).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import kornia.augmentation as K
import kornia.filters as KF
import torch
import torch.nn.functional as F
from torch import nn

from simmm.adabn import adabn
from simmm.byol import BYOLHeads
from simmm.data.labels import TRAIN_CLASSES
from simmm.data.segmentation import check_segmentation_tree, get_dataset_class
from simmm.data.select import SelectKeys
from simmm.dist import is_distributed, per_process
from simmm.errors import RecipeError
from simmm.inference import predict_sliding, predict_whole
from simmm.logger import track
from simmm.metrics import ConfusionMatrix
from simmm.models import create_segmenter
from simmm.task import DataReport, EvalSet, Forward, TaskAdapter, register_task

IGNORE = 255
DATASETS = ("cityscapes", "darkzurich", "nighttime_driving", "acdc")


@dataclass
class SegmenterConfig:
    decoder: Literal["refinenet", "deeplabv2", "pspnet"] = "refinenet"
    backbone: str = "resnet101"
    pretrained: str = ""
    num_classes: int = 19
    output_stride: int = 0
    features: int = 0
    checkpointing: bool = False
    ciconv: bool = False

    def check(self, path: str) -> None:
        if self.output_stride not in (0, 8, 16, 32):
            raise RecipeError(f"{path}.output_stride: got {self.output_stride}; expected 0 (the decoder's "
                              "default), 8, 16 or 32")


@dataclass
class SegmentationSetConfig:
    """One dataset split: ``dataset`` (cityscapes, darkzurich, nighttime_driving, acdc), its ``root``, ``split``
    and ``condition`` (Dark Zurich: day/night/twilight; ACDC: fog/night/rain/snow). ``size`` [H, W]: training
    images are loaded at this size; evaluation images are *predicted* at this size and scored at the label's
    native resolution. Empty: native."""

    dataset: Literal["cityscapes", "darkzurich", "nighttime_driving", "acdc"] = "cityscapes"
    root: str = ""
    split: str = "val"
    condition: str = ""
    size: list[int] = field(default_factory=list)

    def check(self, path: str) -> None:
        if not self.root:
            raise RecipeError(f"{path}.root: empty; expected the folder of the {self.dataset} dataset")
        if self.size and (len(self.size) != 2 or min(self.size) <= 0):
            raise RecipeError(f"{path}.size: got {self.size}; expected [height, width] or []")


@dataclass
class SegmentationDataConfig:
    """Training and evaluation sets, the training views' augmentation, whole-image or sliding-window inference.
    ``adabn``: also score every evaluation set with batch-norm statistics re-estimated on it (AdaBN; the images
    predicted as scored), ``<set>/mIoU_adabn``."""

    train: SegmentationSetConfig = field(default_factory=lambda: SegmentationSetConfig(split="train"))
    eval: dict[str, SegmentationSetConfig] = field(default_factory=dict)
    crop: tuple[int, int] = (384, 768)
    scale: tuple[float, float] = (0.7, 1.3)
    hflip: bool = True
    color_jitter: float = 0.3
    blur: float = 0.5
    cutout: float = 0.5
    inference: Literal["whole", "sliding"] = "whole"
    window: tuple[int, int] = (512, 1024)
    stride: tuple[int, int] = (341, 683)
    adabn: bool = False

    def check(self, path: str) -> None:
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise RecipeError(f"{path}.scale: got {list(self.scale)}; expected 0 < low <= high")
        for name in ("blur", "cutout"):
            if not 0 <= getattr(self, name) <= 1:
                raise RecipeError(f"{path}.{name}: got {getattr(self, name)}; expected a probability in [0, 1]")


def _dataset(cfg: SegmentationSetConfig, size):
    cls = get_dataset_class(cfg.dataset)
    kwargs = {"size": size}
    if cfg.dataset in ("cityscapes", "darkzurich", "acdc"):
        kwargs["split"] = cfg.split
    if cfg.dataset in ("darkzurich", "acdc"):
        kwargs["condition"] = cfg.condition or "night"
    if cfg.dataset != "darkzurich":
        kwargs["with_labels"] = True
    return cls(cfg.root, **kwargs)


@register_task("segmentation")
class Segmentation(TaskAdapter):
    model_config = SegmenterConfig
    data_config = SegmentationDataConfig

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        self.cfg: SegmentationDataConfig = recipe.data
        j = recipe.data.color_jitter
        self.jitter = K.ColorJitter(j, j, j, 0.0, p=1.0) if j > 0 else None
        self.erase = K.RandomErasing(p=self.cfg.cutout, scale=(0.02, 0.1), value=0.0)

    # --- model ---------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        m = self.recipe.model
        return create_segmenter(m.decoder, backbone=m.backbone, num_classes=m.num_classes, pretrained=m.pretrained,
                                output_stride=m.output_stride or None, checkpointing=m.checkpointing,
                                features=m.features or None, ciconv=m.ciconv)

    def signature(self) -> dict:
        m = self.recipe.model
        return {"task": self.name, "decoder": m.decoder, "backbone": m.backbone, "num_classes": m.num_classes,
                **({"ciconv": True} if m.ciconv else {})}

    def forward(self, model: nn.Module, images: torch.Tensor, output: bool = True) -> Forward:
        if output:
            feats, logits = model.forward_with_features(images)
        else:
            feats, logits = model.forward_features(images), None
        return Forward(features=list(feats), byol=list(feats), output=logits)

    def build_byol_heads(self, model: nn.Module) -> nn.Module:
        return BYOLHeads.for_stages(list(model.feature_channels))

    # --- data ----------------------------------------------------------------------------------------------
    def train_dataset(self) -> torch.utils.data.Dataset:
        t = self.cfg.train
        if not t.root:
            raise RecipeError("data.train.root: empty; expected the folder of the training set (e.g. Cityscapes)")
        if not t.size:
            raise RecipeError("data.train.size: empty; training images are batched, so give [height, width] "
                              "(e.g. [512, 1024] for Cityscapes)")
        dataset = _dataset(t, tuple(t.size))
        dataset.check(strict=True)  # every image and label read once, before any step
        return SelectKeys(dataset, ("image", "target"))  # batches hold tensors only

    def train_label_files(self) -> tuple[list[tuple[Path, str]], tuple[str, ...], str]:
        """``([(label file, kind), ...], class names, a description of the set)`` of the training set, for
        ``simmm data stats``."""
        t = self.cfg.train
        if not t.root:
            raise RecipeError("data.train.root: empty; expected the folder of the training set (e.g. Cityscapes)")
        dataset = _dataset(t, None)
        labels = [(s.label, s.label_kind or "labelIds") for s in dataset.samples if s.label is not None]
        if not labels:
            raise RecipeError(f"data.train: {dataset!r} has no label maps to count")
        return labels, TRAIN_CLASSES, f"{t.dataset} {t.split} at {t.root}"

    def eval_sets(self) -> list[EvalSet]:
        sets = []
        for name, cfg in self.cfg.eval.items():
            dataset = _dataset(cfg, None)
            dataset.check(strict=True)
            sets.append(EvalSet(name, SelectKeys(dataset, ("image", "target")), {"size": tuple(cfg.size) or None}))
        return sets

    def check_data(self) -> DataReport:
        report = DataReport("segmentation data")
        seen = set()
        for name, cfg in [("train", self.cfg.train), *self.cfg.eval.items()]:
            key = (cfg.dataset, cfg.root)
            if key in seen:
                continue
            seen.add(key)
            scan = check_segmentation_tree(cfg.dataset, cfg.root)
            report.add(scan)
        return report

    def views(self, batch: dict, n: int = 2) -> list[dict]:
        """One joint augmentation of image and label, shared by all ``n`` views (the pair stays aligned)."""
        images, targets = joint_scale_crop_flip(batch["image"], batch["target"], self.cfg.crop, self.cfg.scale,
                                                self.cfg.hflip)
        if self.cfg.blur > 0:
            blurred = KF.gaussian_blur2d(images, (5, 5), (1.0, 1.0))
            pick = (torch.rand(images.shape[0], device=images.device) < self.cfg.blur).view(-1, 1, 1, 1)
            images = torch.where(pick, blurred, images)
        if self.cfg.cutout > 0:
            images = self.erase(images)
        return [{"image": images, "target": targets} for _ in range(n)]

    def color_augment(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Colour jitter with the same random parameters for every view, drawn once as a plain call draws them."""
        if self.jitter is None:
            return views
        params = self.jitter.forward_parameters(views[0].shape)
        return [self.jitter(v, params=params) for v in views]

    # --- objective and metrics -----------------------------------------------------------------------------
    def task_loss(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        """Pixel cross-entropy, averaged over the labelled pixels of the whole batch. In a distributed run the
        batch is every process's share: each divides its sum by the mean labelled-pixel count of a process, so
        that the gradients DDP averages are those of one process holding the whole batch (a plain per-process
        mean would weigh a process's pixels by how many of its pixels are labelled)."""
        if not is_distributed():
            return F.cross_entropy(output.float(), batch["target"], ignore_index=IGNORE)
        total = F.cross_entropy(output.float(), batch["target"], ignore_index=IGNORE, reduction="sum")
        return total / per_process((batch["target"] != IGNORE).sum()).clamp_min(1.0).to(total.dtype)

    def predict(self, model: nn.Module, images: torch.Tensor, size=None) -> torch.Tensor:
        """Logits at the images' resolution (predicted at ``size`` when given), whole or sliding-window."""
        n = self.recipe.model.num_classes
        if self.cfg.inference == "sliding":
            x = images if size is None else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            logits = predict_sliding(model, x, n, crop=self.cfg.window, stride=self.cfg.stride)
            if size is not None:
                logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
            return logits
        return predict_whole(model, images, n, scale=size)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, eval_set: EvalSet) -> dict[str, float]:
        device = next(model.parameters()).device

        def predict(net: nn.Module, batch: dict) -> torch.Tensor:
            if eval_set.predict is not None:
                return eval_set.predict(net, batch)
            return self.predict(net, batch["image"].to(device), eval_set.options.get("size"))

        name = eval_set.name
        result = self._score(model, loader, predict)
        metrics = {f"{name}/mIoU": result["mIoU"], f"{name}/pixel_acc": result["pixel_accuracy"]}
        for cls, iou in zip(TRAIN_CLASSES, result["per_class_iou"]):
            metrics[f"{name}/IoU_{cls.replace(' ', '_')}"] = iou
        if self.cfg.adabn:
            # two more passes: re-estimate the statistics on the set's images as they are predicted, then score
            adapted = adabn(model, track(loader, f"eval {name}: AdaBN statistics"), forward=predict)
            result = self._score(adapted, track(loader, f"eval {name}: AdaBN"), predict)
            metrics.update({f"{name}/mIoU_adabn": result["mIoU"], f"{name}/pixel_acc_adabn": result["pixel_accuracy"]})
        return metrics

    def _score(self, model: nn.Module, loader, predict) -> dict:
        """The set's confusion-matrix scores (mIoU, pixel accuracy, per-class IoU), at the labels' resolution."""
        device = next(model.parameters()).device
        matrix = ConfusionMatrix(self.recipe.model.num_classes, ignore_index=IGNORE, device=device)
        for batch in loader:
            target = batch["target"].to(device)
            logits = predict(model, batch)
            if logits.shape[-2:] != target.shape[-2:]:  # score at the label's native resolution
                logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
            matrix.update(logits, target)
        return matrix.all_reduce().compute()  # each process scored its share of the set


def joint_scale_crop_flip(images: torch.Tensor, targets: torch.Tensor, crop, scale, hflip: bool):
    """Per sample: random scale (bilinear image, nearest label), random crop (padding: image 0, label ignore),
    random horizontal flip — the same transform for image and label. Returns (B,3,h,w), (B,h,w)."""
    ch, cw = crop
    out_images, out_targets = [], []
    for image, target in zip(images, targets):
        s = float(torch.empty(()).uniform_(*scale))
        h, w = image.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        target = F.interpolate(target[None, None].float(), size=size, mode="nearest")[0, 0].long()
        ph, pw = max(0, ch - size[0]), max(0, cw - size[1])
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            target = F.pad(target, (0, pw, 0, ph), value=IGNORE)
        y = int(torch.randint(0, image.shape[-2] - ch + 1, ()))
        x = int(torch.randint(0, image.shape[-1] - cw + 1, ()))
        image, target = image[:, y:y + ch, x:x + cw], target[y:y + ch, x:x + cw]
        if hflip and torch.rand(()) < 0.5:
            image, target = image.flip(-1), target.flip(-1)
        out_images.append(image)
        out_targets.append(target)
    return torch.stack(out_images), torch.stack(out_targets)
