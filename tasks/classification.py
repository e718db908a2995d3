"""Image classification (CODaN, any ImageFolder tree, Fashion-MNIST's idx files, the embedded photo demo) as a simmm
task.

Built only on simmm's public API: this file is also the worked example of a custom task.

* Model: any timm classifier; it normalises its own input with its pretrained mean/std, or, with
  ``model.ciconv: true``, turns it into CIConv's colour-invariant channel (:mod:`simmm.models.ciconv`).
* Similarity features (METHOD.md §4.4): the last backbone stage map. BYOL: the pooled vector (512-d for
  ResNet-18), projector 512→128→128 and predictor 128→128→128.
* Views: RandomResizedCrop (scale 0.5–1) and horizontal flip, on the batch's device; colour jitter 0.3 after
  darkening.
* Evaluation: top-1 (%) on each set, optionally also after AdaBN (batch-norm statistics re-estimated on the
  evaluation set itself, a test-time baseline).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import kornia.augmentation as K
import torch
from torch import nn

from simmm.atomic import atomic_write
from simmm.backbones import Normalize, backbone_normalization, create_backbone
from simmm.byol import BYOLHeads
from simmm.data.folder import CODAN_CLASSES, ImageFolderDataset, InMemoryImageDataset, scan_folder_dataset
from simmm.data.images import verify_images
from simmm.adabn import adabn
from simmm.dist import sum_over_ranks
from simmm.data.fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from simmm.data.fashion_mnist import DEBIAN_ROOT as FASHION_MNIST_ROOT
from simmm.data.fashion_mnist import FashionMNISTDataset, load_fashion_mnist
from simmm.data.photos import PHOTOS, photo_crops
from simmm.errors import DataError
from simmm.logger import track
from simmm.models.ciconv import backbone_options, input_stage
from simmm.night import PRESETS, NightParams, simulate_night
from simmm.task import DataReport, EvalSet, Forward, TaskAdapter, register_task


@dataclass
class ClassifierConfig:
    """``ciconv``: CIConv's colour-invariant layer as the input stage (a one-channel backbone)."""

    backbone: str = "resnet18"
    pretrained: str = ""
    num_classes: int = 0
    drop_rate: float = 0.0
    ciconv: bool = False


@dataclass
class NightSimConfig:
    """Simulated night evaluation sets made from a day evaluation set by :mod:`simmm.night`.

    For each preset a set ``night_<preset>`` is made (``night_mixed`` takes the presets in turn, image i from preset i mod their number); images are
    simulated once per seed and cached under ``cache_dir``.
    """

    source: str = ""
    presets: list[str] = field(default_factory=list)
    mixed: bool = False
    seed: int = 0


@dataclass
class PhotoDemoConfig:
    per_class_train: int = 64
    per_class_test: int = 32
    photos: list[str] = field(default_factory=lambda: list(PHOTOS))


@dataclass
class FashionMNISTConfig:
    """Class-balanced subsets of Fashion-MNIST (images per class, drawn by the recipe's seed; 0 = the whole split:
    6000 per class in train, 1000 in test)."""

    per_class_train: int = 0
    per_class_test: int = 0


@dataclass
class ClassificationDataConfig:
    """Where the images are and how they are prepared.

    ``kind``: ``codan`` (ROOT/{train,test_day,test_night}/<Class>/, the ten CODaN classes in the paper's
    order), ``folder`` (any ImageFolder tree; classes sorted, or as listed), ``photos`` (the embedded demo),
    ``fashion_mnist`` (the release's idx files in ``root``, default Debian's folder; grey repeated over three channels;
    evaluation set ``day_test`` from its test split; ``classes`` may rename the ten classes).
    ``eval_splits`` maps an evaluation set name (``day_test``) to a split folder (``test_day``). ``color_jitter``:
    brightness, contrast and saturation jitter of training views (after darkening, in SMM), drawn per view.
    """

    kind: Literal["codan", "folder", "photos", "fashion_mnist"] = "folder"
    root: str = ""
    train_split: str = "train"
    eval_splits: dict[str, str] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    image_size: int = 224
    resize: int = 256
    eval_resize: int = 0
    crop_scale: tuple[float, float] = (0.5, 1.0)
    hflip: bool = True
    color_jitter: float = 0.3
    adabn: bool = False
    night_sim: NightSimConfig = field(default_factory=NightSimConfig)
    photos: PhotoDemoConfig = field(default_factory=PhotoDemoConfig)
    fashion_mnist: FashionMNISTConfig = field(default_factory=FashionMNISTConfig)
    cache_dir: str = ".cache/simmm"

    def check(self, path: str) -> None:
        from simmm.errors import RecipeError

        if self.kind == "fashion_mnist" and self.classes and len(self.classes) != len(FASHION_MNIST_CLASSES):
            raise RecipeError(f"{path}.classes: {len(self.classes)} names for Fashion-MNIST's "
                              f"{len(FASHION_MNIST_CLASSES)} classes; give ten names in label order or none")
        fm = self.fashion_mnist
        if fm.per_class_train < 0 or fm.per_class_test < 0:
            raise RecipeError(f"{path}.fashion_mnist: per_class_train/per_class_test must be >= 0 (0 = all), got "
                              f"{fm.per_class_train}/{fm.per_class_test}")
        if self.kind not in ("photos", "fashion_mnist") and not self.root:
            raise RecipeError(f"{path}.root: empty; a '{self.kind}' dataset needs the folder that holds "
                              f"{self.train_split}/<Class>/*.jpg")
        unknown = [p for p in self.night_sim.presets if p not in PRESETS]
        if unknown:
            raise RecipeError(f"{path}.night_sim.presets: unknown preset {unknown[0]!r}; "
                              f"available: {', '.join(PRESETS)}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise RecipeError(f"{path}.crop_scale: got {list(self.crop_scale)}; expected 0 < low <= high <= 1")


class Classifier(nn.Module):
    """A timm classifier that owns its input normalisation (inputs are images in [0, 1]). ``normalize``: the input
    stage (default: the mean/std ``net``'s weights expect; :class:`simmm.models.ciconv.CIConv` for a CIConv model)."""

    def __init__(self, net: nn.Module, normalize: nn.Module | None = None) -> None:
        super().__init__()
        mean, std = backbone_normalization(net)
        self.normalize = normalize if normalize is not None else Normalize(mean, std)
        self.net = net

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(self.normalize(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images))


class _AsDict(torch.utils.data.Dataset):
    """(image, label) items → ``{"image", "target"}`` batches."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        image, label = self.dataset[index]
        return {"image": image, "target": torch.as_tensor(label)}


@register_task("classification")
class Classification(TaskAdapter):
    model_config = ClassifierConfig
    data_config = ClassificationDataConfig

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        self.cfg: ClassificationDataConfig = recipe.data
        self.classes = self._classes()
        d = self.cfg
        self.geometric = K.AugmentationSequential(
            K.RandomResizedCrop((d.image_size, d.image_size), scale=d.crop_scale),
            K.RandomHorizontalFlip(p=0.5 if d.hflip else 0.0),
        )
        j = recipe.data.color_jitter
        self.jitter = K.ColorJitter(j, j, j, 0.0, p=1.0) if j > 0 else None

    def _classes(self) -> list[str]:
        d = self.cfg
        if d.kind == "photos":
            return list(d.photos.photos)
        if d.classes:
            return list(d.classes)
        if d.kind == "fashion_mnist":
            return list(FASHION_MNIST_CLASSES)
        if d.kind == "codan":
            return list(CODAN_CLASSES)
        split = Path(d.root) / d.train_split
        if not split.is_dir():
            raise DataError(f"dataset split {split} does not exist; expected {d.root}/{d.train_split}/<Class>/*.jpg")
        return sorted(p.name for p in split.iterdir() if p.is_dir())

    # --- model ---------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.recipe.model.num_classes or len(self.classes)

    def build_model(self) -> nn.Module:
        m = self.recipe.model
        net = create_backbone(m.backbone, m.pretrained, num_classes=self.num_classes, drop_rate=m.drop_rate,
                              **backbone_options(m.ciconv))
        return Classifier(net, input_stage(net, m.ciconv))

    def signature(self) -> dict:
        m = self.recipe.model
        return {"task": self.name, "backbone": m.backbone, "num_classes": self.num_classes,
                **({"ciconv": True} if m.ciconv else {})}

    def forward(self, model: nn.Module, images: torch.Tensor, output: bool = True) -> Forward:
        fmap = model.forward_features(images)
        pooled = model.net.forward_head(fmap, pre_logits=True)
        logits = model.net.get_classifier()(pooled) if output else None
        return Forward(features=[fmap], byol=[pooled], output=logits)

    def build_byol_heads(self, model: nn.Module) -> nn.Module:
        return BYOLHeads.for_vectors(model.net.num_features)

    # --- data ----------------------------------------------------------------------------------------------
    def _folder(self, split: str, train: bool) -> torch.utils.data.Dataset:
        d = self.cfg
        size = d.resize if train else d.image_size
        resize = d.resize if train else (d.eval_resize or None)
        dataset = ImageFolderDataset(d.root, split, classes=self.classes, size=size, resize=resize)
        bad = verify_images([path for path, _ in dataset.samples], cache_dir=d.cache_dir)
        if bad:
            listed = "; ".join(f"{path}: {reason}" for path, reason in bad[:5])
            raise DataError(f"{len(bad)} unreadable image(s) in {d.root}/{split} ({listed}"
                            f"{' ...' if len(bad) > 5 else ''}); expected readable RGB image files — "
                            "replace or remove them (`simmm data check` lists all)")
        return dataset

    def train_dataset(self) -> torch.utils.data.Dataset:
        d = self.cfg
        if d.kind == "photos":
            images, labels = photo_crops(d.photos.photos, "train", d.photos.per_class_train, d.resize,
                                         seed=self.recipe.seed)
            return _AsDict(InMemoryImageDataset(images, labels))
        if d.kind == "fashion_mnist":
            return _AsDict(self._fashion_mnist("train", d.fashion_mnist.per_class_train, d.resize))
        return _AsDict(self._folder(d.train_split, train=True))

    def _fashion_mnist(self, split: str, per_class: int, size: int) -> FashionMNISTDataset:
        images, labels = load_fashion_mnist(self.cfg.root or FASHION_MNIST_ROOT, split, per_class,
                                            seed=self.recipe.seed)
        return FashionMNISTDataset(images, labels, size)

    def eval_sets(self) -> list[EvalSet]:
        d = self.cfg
        sets: dict[str, torch.utils.data.Dataset] = {}
        if d.kind == "photos":
            images, labels = photo_crops(d.photos.photos, "test", d.photos.per_class_test, d.image_size,
                                         seed=self.recipe.seed)
            sets["day_test"] = InMemoryImageDataset(images, labels)
        if d.kind == "fashion_mnist":
            sets["day_test"] = self._fashion_mnist("test", d.fashion_mnist.per_class_test, d.image_size)
        for name, split in d.eval_splits.items():
            sets[name] = self._folder(split, train=False)
        ns = d.night_sim
        if ns.presets or ns.mixed:
            source = ns.source or next(iter(sets), "")
            if source not in sets:
                raise DataError(f"data.night_sim.source: {source!r} is not an evaluation set of this recipe; "
                                f"available: {', '.join(sets) or '(none)'}")
            names = list(ns.presets) + (["mixed"] if ns.mixed else [])
            for preset in names:
                sets[f"night_{preset}"] = self._simulated(sets[source], preset, source)
        return [EvalSet(name, _AsDict(ds), {"adabn": d.adabn}) for name, ds in sets.items()]

    def _simulated(self, source: torch.utils.data.Dataset, preset: str, source_name: str):
        """The simulated-night twin of an evaluation set, cached on disk (simulation is seeded)."""
        ns = self.cfg.night_sim
        items = [source[i] for i in range(len(source))]  # decode each image once
        images = torch.stack([image for image, _ in items])
        labels = torch.tensor([int(label) for _, label in items])
        presets = list(PRESETS) if preset == "mixed" else [preset]
        key = hashlib.sha1(json.dumps({
            "presets": {p: PRESETS[p].to_dict() for p in presets}, "seed": ns.seed,
            "images": hashlib.sha1(images.numpy().tobytes()).hexdigest()}, sort_keys=True,
            default=str).encode()).hexdigest()[:16]
        cache = Path(self.cfg.cache_dir) / "night" / f"{source_name}_{preset}_{key}.pt"
        if cache.exists():
            night = torch.load(cache, weights_only=True)
        else:
            night = torch.empty_like(images)
            for i in track(range(len(images)), f"simulating night_{preset}", unit="images"):
                params: NightParams = PRESETS[presets[i % len(presets)]]
                night[i] = simulate_night(images[i:i + 1], params, seed=ns.seed * 1_000_003 + i)[0]
            atomic_write(cache, lambda handle: torch.save(night, handle))
        return InMemoryImageDataset(night, labels)

    def check_data(self) -> DataReport:
        d = self.cfg
        if d.kind == "photos":
            report = DataReport("embedded photo demo (scikit-image photographs)")
            report.lines.append(f"{len(self.classes)} classes: {', '.join(self.classes)}")
            return report
        if d.kind == "fashion_mnist":
            root = d.root or FASHION_MNIST_ROOT
            report = DataReport(f"Fashion-MNIST at {root}")
            fm = d.fashion_mnist
            for split, per_class in (("train", fm.per_class_train), ("test", fm.per_class_test)):
                try:
                    images, _ = load_fashion_mnist(root, split, per_class, seed=self.recipe.seed)
                except DataError as e:
                    report.lines.append(f"MISSING  {split}: {e}")
                    report.problems.append(str(e))
                    continue
                report.lines.append(f"OK       {split}: {len(images)} images of {tuple(images.shape[1:])} px"
                                    f"{f' ({per_class} per class)' if per_class else ''}")
            report.lines.append(f"{len(self.classes)} classes: {', '.join(self.classes)}")
            return report
        splits = [d.train_split, *d.eval_splits.values()]
        scan = scan_folder_dataset(d.root, splits, classes=self.classes)
        report = DataReport(f"{d.kind} dataset at {d.root}")
        report.add(scan)
        return report

    def views(self, batch: dict, n: int = 2) -> list[dict]:
        return [{**batch, "image": self.geometric(batch["image"])} for _ in range(n)]

    def color_augment(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Colour jitter, drawn independently for each view."""
        return [self.jitter(v) for v in views] if self.jitter is not None else views

    # --- objective and metrics -----------------------------------------------------------------------------
    def task_loss(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        return nn.functional.cross_entropy(output.float(), batch["target"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, eval_set: EvalSet) -> dict[str, float]:
        name = eval_set.name
        metrics = {f"{name}/top1": top1(model, track(loader, f"eval {name}"))}
        if eval_set.options.get("adabn"):
            # AdaBN is two more passes over the set: re-estimate the statistics, then score with them
            adapted = adabn(model, track(loader, f"eval {name}: AdaBN statistics"))
            metrics[f"{name}/top1_adabn"] = top1(adapted, track(loader, f"eval {name}: AdaBN top-1"))
        return metrics


@torch.no_grad()
def top1(model: nn.Module, loader) -> float:
    """Top-1 accuracy in percent."""
    device = next(model.parameters()).device
    correct = total = 0
    for batch in loader:
        logits = model(batch["image"].to(device))
        correct += int((logits.argmax(1).cpu() == batch["target"]).sum())
        total += len(batch["target"])
    counts = sum_over_ranks(torch.tensor([correct, total], dtype=torch.float64, device=device))
    return 100.0 * float(counts[0]) / max(float(counts[1]), 1.0)  # each process counted its share of the set
