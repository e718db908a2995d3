"""Action recognition in the dark (normal-light videos → ARID) as a simmm task.

Built only on simmm's public API.

* Data: ARID-form list files (``id<TAB>label<TAB>relative/path.avi``, 11 classes) of normal-light training videos
  and dark evaluation videos, decoded with PyAV (:mod:`simmm.data.action`). Every listed video is probed (present,
  decodable, long enough for one clip) before training; ``simmm data check`` lists every problem.
* Clips: 16 frames at interval 2 (METHOD.md §4.3). Training: one clip per visit at a random start, frames fitted to
  ``load_size``; the views then take a random short side in ``scale`` = [224, 288], a random 224 crop and a
  horizontal flip, the same for every frame of a clip and drawn per clip and per view (torchvision's v2
  transforms), on the batch's device. Batches are clips ``(B, 3, T, H, W)`` in [0, 1].
* Model (:func:`simmm.models.create_video_model`): I3D (an inflated ResNet-50), or torchvision's ``r3d_18`` /
  ``r2plus1d_18``. Similarity features and BYOL input (METHOD.md §4.4): the pooled clip vector; BYOL projector
  2048→64→64 and predictor 64→64→64 (§4.3). ``model.ciconv: true``: CIConv's colour-invariant layer on every
  frame instead of the normalisation (:mod:`simmm.models.ciconv`; the CIConv paper has no video experiment).
* SMM darkens a clip frame by frame with one exposure map per clip, shared by its frames (METHOD.md §4.1).
* Evaluation (METHOD.md §4.5): ``eval_clips`` = 20 clips per video at random starts seeded by the run's seed and
  the video's index, each resized to a short side of ``crop`` and centre-cropped; softmax averaged over the clips;
  ``<set>/top1`` and ``<set>/top5`` in percent. ``data.adabn: true`` adds ``<set>/top1_adabn`` and
  ``<set>/top5_adabn``: the same scoring after the batch-norm statistics are re-estimated on the set's own clips
  (:func:`simmm.adabn.adabn`, every evaluation clip of every video; the test-time baseline of every table).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import kornia.augmentation as K
import torch
from torch import nn
from torchvision.transforms import v2

from simmm.adabn import adabn
from simmm.byol import BYOLHeads
from simmm.data.action import ARID_CLASSES, VideoClipDataset, check_video_list
from simmm.data.synthetic import dataset_root
from simmm.dist import sum_over_ranks
from simmm.errors import RecipeError
from simmm.logger import track
from simmm.models import VIDEO_ARCHS, create_video_model
from simmm.task import DataReport, EvalSet, Forward, TaskAdapter, register_task


@dataclass
class VideoModelConfig:
    """``arch``: ``i3d`` (the 2D timm ResNet ``backbone`` inflated), ``r3d_18`` or ``r2plus1d_18`` (torchvision).
    ``pretrained``: i3d: the 2D network's weights (``timm``, ``torchvision:resnet50``, a file), inflated; r3d_18 /
    r2plus1d_18: ``torchvision`` (Kinetics-400) or a file. ``temporal_padding`` (i3d): ``replicate`` or ``zeros``.
    ``ciconv``: CIConv's colour-invariant layer on each frame as the input stage (a one-channel network)."""

    arch: Literal["i3d", "r3d_18", "r2plus1d_18"] = "i3d"
    backbone: str = "resnet50"
    pretrained: str = ""
    num_classes: int = 0
    drop_rate: float = 0.0
    temporal_padding: Literal["replicate", "zeros"] = "replicate"
    ciconv: bool = False

    def check(self, path: str) -> None:
        if not 0.0 <= self.drop_rate < 1.0:
            raise RecipeError(f"{path}.drop_rate: got {self.drop_rate}; expected a value in [0, 1)")


@dataclass
class VideoSetConfig:
    """One list of videos: ``root`` (a folder, or ``synthetic:arid``), ``list`` (the list file, relative to
    ``root`` unless absolute) and ``videos`` (the folder under ``root`` that the list's paths are relative to).
    ``dataset``: ``arid`` makes ``simmm data check`` say where ARID is downloaded when ``root`` is missing."""

    dataset: Literal["arid", "other"] = "other"
    root: str = ""
    list: str = ""
    videos: str = ""

    def check(self, path: str) -> None:
        if not self.root:
            raise RecipeError(f"{path}.root: empty; expected the folder of the videos and their list file")
        if not self.list:
            raise RecipeError(f"{path}.list: empty; expected a list file of lines id<TAB>label<TAB>path")


@dataclass
class ActionDataConfig:
    """Videos and clips. ``classes``: the class names, in label order (ARID's 11). ``clip_length``/``interval``:
    frames per clip and their spacing. ``load_size`` [h, w]: decoded training frames are fitted to it (resized to
    cover, centre-cropped). ``scale``: range of the random short side of a training view, then a random ``crop``
    square and a flip (``hflip``). ``random_start``: training clips start at a random frame (false: mid-video).
    ``color_jitter``: brightness/contrast/saturation jitter of the training views after darkening, the same for
    all frames of a clip (0: none; the paper names none for this task). ``eval_clips``: clips per evaluation
    video. ``adabn``: also score every evaluation set with batch-norm statistics re-estimated on its clips."""

    train: VideoSetConfig = field(default_factory=VideoSetConfig)
    eval: dict[str, VideoSetConfig] = field(default_factory=dict)
    classes: list[str] = field(default_factory=lambda: list(ARID_CLASSES))
    clip_length: int = 16
    interval: int = 2
    load_size: tuple[int, int] = (288, 384)
    scale: tuple[int, int] = (224, 288)
    crop: int = 224
    hflip: bool = True
    random_start: bool = True
    color_jitter: float = 0.0
    eval_clips: int = 20
    adabn: bool = False

    def check(self, path: str) -> None:
        for name in ("clip_length", "interval", "crop", "eval_clips"):
            if getattr(self, name) < 1:
                raise RecipeError(f"{path}.{name}: got {getattr(self, name)}; expected a positive integer")
        lo, hi = self.scale
        if not self.crop <= lo <= hi:
            raise RecipeError(f"{path}.scale: got {list(self.scale)}; expected crop ({self.crop}) <= low <= high")
        if min(self.load_size) < 1:
            raise RecipeError(f"{path}.load_size: got {list(self.load_size)}; expected [height, width] > 0")
        if len(self.classes) < 2:
            raise RecipeError(f"{path}.classes: got {self.classes}; expected at least two class names")


def clip_average(logits: torch.Tensor) -> torch.Tensor:
    """Per video, the softmax of each clip's logits averaged over its clips: ``(B, K, C)`` → ``(B, C)``."""
    return logits.float().softmax(dim=-1).mean(dim=1)


def topk_hits(scores: torch.Tensor, target: torch.Tensor, k: int) -> int:
    """How many rows of ``scores (B, C)`` have ``target`` among their ``k`` highest scores."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return int((top == target.view(-1, 1)).any(dim=1).sum())


@register_task("action")
class ActionRecognition(TaskAdapter):
    model_config = VideoModelConfig
    data_config = ActionDataConfig

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        if recipe.channels_last:
            raise RecipeError("channels_last: true is a memory format of 4D (image) tensors; the video models of "
                              "task: action hold 5D weights and clips — set channels_last: false")
        self.cfg: ActionDataConfig = recipe.data
        d = self.cfg
        self.geometry = v2.Compose([v2.RandomShortestSize(list(range(d.scale[0], d.scale[1] + 1)), antialias=True),
                                    v2.RandomCrop(d.crop), v2.RandomHorizontalFlip(p=0.5 if d.hflip else 0.0)])
        j = d.color_jitter
        self.jitter = K.ColorJitter(j, j, j, 0.0, p=1.0) if j > 0 else None

    # --- model ---------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.recipe.model.num_classes or len(self.cfg.classes)

    def build_model(self) -> nn.Module:
        m = self.recipe.model
        if m.arch not in VIDEO_ARCHS:
            raise RecipeError(f"model.arch: got {m.arch!r}; expected one of {', '.join(VIDEO_ARCHS)}")
        return create_video_model(m.arch, self.num_classes, pretrained=m.pretrained, backbone=m.backbone,
                                  drop_rate=m.drop_rate, temporal_padding=m.temporal_padding, ciconv=m.ciconv)

    def signature(self) -> dict:
        m = self.recipe.model
        return {"task": self.name, "arch": m.arch, "backbone": m.backbone if m.arch == "i3d" else "",
                "num_classes": self.num_classes, **({"ciconv": True} if m.ciconv else {})}

    def forward(self, model: nn.Module, images: torch.Tensor, output: bool = True) -> Forward:
        pooled = model.forward_head(model.forward_features(images)[-1], pre_logits=True)
        logits = model.fc(model.drop(pooled)) if output else None
        return Forward(features=[pooled], byol=[pooled], output=logits)

    def build_byol_heads(self, model: nn.Module) -> nn.Module:
        return BYOLHeads.for_vectors(model.num_features, proj_hidden=64, proj_out=64, pred_hidden=64)

    # --- data ----------------------------------------------------------------------------------------------
    def _paths(self, s) -> tuple[Path, Path]:
        """(list file, video folder) of a set."""
        root = dataset_root(s.root)
        listed = Path(s.list).expanduser()
        return (listed if listed.is_absolute() else root / listed), root / s.videos

    def _dataset(self, s, size, **kwargs) -> VideoClipDataset:
        d = self.cfg
        listed, videos = self._paths(s)
        return VideoClipDataset.from_list(listed, videos, len(d.classes), d.clip_length, d.interval, size, **kwargs)

    def train_dataset(self) -> torch.utils.data.Dataset:
        d = self.cfg
        if not d.train.root or not d.train.list:
            raise RecipeError("data.train: give root and list (the training videos' list file)")
        return self._dataset(d.train, tuple(d.load_size), random_start=d.random_start)

    def eval_sets(self) -> list[EvalSet]:
        d = self.cfg
        return [EvalSet(name, self._dataset(s, (d.crop, d.crop), clips=d.eval_clips, seed=self.recipe.seed),
                        {"adabn": d.adabn}) for name, s in d.eval.items()]

    def check_data(self) -> DataReport:
        d = self.cfg
        report = DataReport(f"action recognition data ({len(d.classes)} classes, clips of {d.clip_length} frames at "
                            f"interval {d.interval})")
        for name, s in [("train", d.train), *d.eval.items()]:
            listed, videos = self._paths(s)
            report.add(check_video_list(name, listed, videos, d.classes, d.clip_length, d.interval))
        return report

    def still(self, item: dict) -> torch.Tensor:
        """The middle frame of an evaluation item's first clip."""
        clip = item["clips"][0]
        return clip[:, clip.shape[1] // 2].float() / 255.0

    def views(self, batch: dict, n: int = 2) -> list[dict]:
        """``n`` views: per clip a random short side, crop and flip, the same for all its frames."""
        clips = batch["image"]
        return [{**batch, "image": torch.stack([self.geometry(c.transpose(0, 1)).transpose(0, 1) for c in clips])}
                for _ in range(n)]

    def color_augment(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Colour jitter drawn per view and clip, the same for all frames of a clip."""
        if self.jitter is None:
            return views
        out = []
        for v in views:
            params = self.jitter.forward_parameters(v[:, :, 0].shape)
            out.append(torch.stack([self.jitter(v[:, :, t], params=params) for t in range(v.shape[2])], dim=2))
        return out

    # --- objective and metrics -----------------------------------------------------------------------------
    def task_loss(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        return nn.functional.cross_entropy(output.float(), batch["target"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, eval_set: EvalSet) -> dict[str, float]:
        name = eval_set.name
        metrics = _scores(model, track(loader, f"eval {name}"), name)
        if eval_set.options.get("adabn"):
            # AdaBN is two more passes over the set: re-estimate the statistics on its clips, then score with them
            adapted = adabn(model, _clip_batches(track(loader, f"eval {name}: AdaBN statistics")))
            metrics.update(_scores(adapted, track(loader, f"eval {name}: AdaBN scores"), name, "_adabn"))
        return metrics


def _clip_batches(loader):
    """An evaluation loader's batches as the model's input: every clip of every video, ``(B·K, 3, T, H, W)`` in
    [0, 1]."""
    for batch in loader:
        yield batch["clips"].flatten(0, 1).float().div_(255.0)


@torch.no_grad()
def _scores(model: nn.Module, loader, name: str, suffix: str = "") -> dict[str, float]:
    """``<name>/top1<suffix>`` and ``top5``: per video the clips' softmax averaged, in percent of the videos."""
    device = next(model.parameters()).device
    hits = torch.zeros(3, dtype=torch.float64, device=device)  # top-1, top-5, videos
    for batch in loader:
        clips = batch["clips"].to(device)
        b, k = clips.shape[:2]
        logits = model(clips.flatten(0, 1).float().div_(255.0))
        scores = clip_average(logits.view(b, k, -1))
        target = batch["target"].to(device)
        hits += torch.tensor([topk_hits(scores, target, 1), topk_hits(scores, target, 5), b],
                             dtype=torch.float64, device=device)
    hits = sum_over_ranks(hits)  # each process scored its share of the videos
    total = max(float(hits[2]), 1.0)
    return {f"{name}/top1{suffix}": 100.0 * float(hits[0]) / total,
            f"{name}/top5{suffix}": 100.0 * float(hits[1]) / total}
