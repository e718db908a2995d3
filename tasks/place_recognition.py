"""Visual place recognition (retrieval-SfM-120k → Tokyo 24/7) as a simmm task.

Built only on simmm's public API.

* Model: :class:`simmm.models.retrieval_net.RetrievalNet` — any timm backbone (ResNet-101 by default), GeM pooling
  with a learnable exponent (initial 3; give it its own LR with ``players.<name>.lr_mult: {"*.pool.p": 10}``), L2
  normalisation; batch norm frozen in training. ``model.ciconv: true``: CIConv's colour-invariant layer as the input
  stage (:mod:`simmm.models.ciconv`; the CIConv paper's W-ResNet-101 GeM).
* Training data: retrieval-SfM-120k tuples (query, positive, ``negatives`` hard negatives). Each epoch draws
  ``queries`` random pairs and a random pool of ``pool_size`` images and mines the negatives with the current model
  (:mod:`simmm.mining`); the mined tuples are checkpointed, so a resumed run continues with them. Training images
  are resized to ``image_size``² (the tooling keeps the aspect at longer side 362; one size lets a batch of tuples
  run as one batch). Loss: contrastive, margin 0.85 (:mod:`simmm.contrastive`).
* SMM (METHOD.md §4.3): no BYOL; F's step adds the darkened query to each tuple as an extra positive
  (:meth:`PlaceRecognition.darkened_loss`); D trains on single training images (:meth:`image_dataset`).
* Similarity features (§4.4): the last backbone stage map.
* Evaluation: Tokyo 24/7 in the retrieval form; descriptors extracted once per set (multi-scale 1, 1/√2, 1/2,
  longer side ``image_size``), optionally whitened (learned from training pairs), searched by matrix product; mAP
  (trapezoid-rule AP, junk ignored) and Recall@1/5/10 in percent, ``<set>/mAP``, ``<set>/R@N``. Descriptors are
  cached per model weights under ``cache_dir``.
* ``data.adabn: true`` (AdaBN, :mod:`simmm.adabn`) adds ``<set>/mAP_adabn`` and ``<set>/R@N_adabn``: the queries are
  described by a copy of the model whose batch-norm statistics are re-estimated on the set's query images
  (batches of :data:`ADABN_BATCH`, each image resized to ``image_size``²), the database by the unchanged model. The
  queries are the shifted domain (night) and the database is the day reference, as in Tokyo 24/7; re-estimating
  on database and queries together would mix the two domains, and on the database alone would change nothing the
  night queries need. Adapted descriptors are cached under their own name and key (never mixed with plain ones).
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from simmm.adabn import adabn
from simmm.atomic import atomic_write
from simmm.backbones import create_backbone
from simmm.contrastive import contrastive_loss, tuple_labels
from simmm.data.retrieval_db import (ImageList, RetrievalTestSet, SfMDatabase, check_sfm, check_test_set,
                                     read_ground_truth, read_sfm)
from simmm.data.synthetic import dataset_root
from simmm.dist import gather_rows, rank, world_size
from simmm.errors import DataError, RecipeError
from simmm.logger import track
from simmm.mining import EpochTuples, mine_epoch
from simmm.models.ciconv import backbone_options, input_stage
from simmm.models.retrieval_net import RetrievalNet, multiscale_descriptor
from simmm.retrieval import mean_average_precision, rank_all, recall_at
from simmm.task import DataReport, EvalSet, Forward, TaskAdapter, register_task
from simmm.whitening import apply_whitening, learn_whitening

RECALLS = (1, 5, 10)
ADABN_BATCH = 16  # query images per batch while AdaBN re-estimates the statistics


@dataclass
class RetrievalModelConfig:
    backbone: str = "resnet101"
    pretrained: str = ""
    p: float = 3.0
    freeze_bn: bool = True
    ciconv: bool = False


@dataclass
class TupleSetConfig:
    """The training database (retrieval-SfM-120k form: ``ROOT/<dataset>.pkl`` and ``ROOT/ims/``) and the tuples
    drawn from it each epoch: ``queries`` pairs, hard negatives mined from a pool of ``pool_size`` images with
    the current model, ``mine_batch`` images per forward pass while mining."""

    dataset: str = "retrieval-SfM-120k"
    root: str = ""
    split: str = "train"
    image_size: int = 362
    queries: int = 2000
    pool_size: int = 20000
    negatives: int = 5
    mine_batch: int = 16

    def check(self, path: str) -> None:
        if not self.root:
            raise RecipeError(f"{path}.root: empty; expected the folder that holds {self.dataset}.pkl and ims/")
        for key in ("image_size", "queries", "pool_size", "mine_batch"):
            if getattr(self, key) <= 0:
                raise RecipeError(f"{path}.{key}: got {getattr(self, key)}; expected a value > 0")
        if self.negatives < 0:
            raise RecipeError(f"{path}.negatives: got {self.negatives}; expected a value >= 0")


@dataclass
class TestSetConfig:
    """A retrieval test set: ``ROOT/gnd_<dataset>.pkl`` and ``ROOT/jpg/``; images resized to longer side
    ``image_size`` (0: as they are)."""

    dataset: str = "247tokyo1k"
    root: str = ""
    image_size: int = 1024

    def check(self, path: str) -> None:
        if not self.root:
            raise RecipeError(f"{path}.root: empty; expected the folder that holds gnd_{self.dataset}.pkl and jpg/")


@dataclass
class PlaceRecognitionDataConfig:
    """``margin``: the contrastive loss's. ``scales``: multi-scale descriptors at evaluation. ``whitening``:
    whiten descriptors with a projection learned from ``whitening_pairs`` training pairs (0: all). ``adabn``: also
    score every set with the queries described under AdaBN (module docstring)."""

    train: TupleSetConfig = field(default_factory=TupleSetConfig)
    eval: dict[str, TestSetConfig] = field(default_factory=dict)
    margin: float = 0.85
    scales: list[float] = field(default_factory=lambda: [1.0, 0.7071067811865476, 0.5])
    whitening: bool = False
    whitening_pairs: int = 0
    cache_descriptors: bool = True
    cache_dir: str = ".cache/simmm"
    adabn: bool = False

    def check(self, path: str) -> None:
        if self.margin <= 0:
            raise RecipeError(f"{path}.margin: got {self.margin}; expected a value > 0")
        if not self.scales or min(self.scales) <= 0:
            raise RecipeError(f"{path}.scales: got {self.scales}; expected positive image scales, e.g. [1, 0.707, 0.5]")


class TupleDataset(torch.utils.data.Dataset):
    """The current epoch's tuples as ``{"image": (T, 3, S, S), "index"}`` items, T = 2 + negatives (query, positive,
    negatives); :attr:`tuples` is set by the task when an epoch starts."""

    def __init__(self, db: SfMDatabase, size: int, length: int) -> None:
        self.db = db
        self.images = ImageList(db.images, square=size)
        self.length = length
        self.tuples: Optional[EpochTuples] = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        t = self.tuples
        if t is None:
            raise RuntimeError("TupleDataset: no tuples yet; the task prepares them when an epoch starts")
        files = [int(t.queries[index]), int(t.positives[index]), *t.negatives[index].tolist()]
        return {"image": torch.stack([self.images.load(i) for i in files]), "index": torch.tensor(index)}


@register_task("place_recognition")
class PlaceRecognition(TaskAdapter):
    model_config = RetrievalModelConfig
    data_config = PlaceRecognitionDataConfig

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        self.cfg: PlaceRecognitionDataConfig = recipe.data
        self.model: Optional[RetrievalNet] = None
        self._db: Optional[SfMDatabase] = None
        self._tuples: Optional[TupleDataset] = None

    # --- model ---------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        m = self.recipe.model
        net = create_backbone(m.backbone, m.pretrained, num_classes=0, global_pool="", **backbone_options(m.ciconv))
        # mining describes images with it
        self.model = RetrievalNet(net, p=m.p, freeze_bn=m.freeze_bn, normalize=input_stage(net, m.ciconv))
        return self.model

    def signature(self) -> dict:
        m = self.recipe.model
        return {"task": self.name, "backbone": m.backbone, **({"ciconv": True} if m.ciconv else {})}

    def forward(self, model: nn.Module, images: torch.Tensor, output: bool = True) -> Forward:
        fmap, desc = model.forward_with_features(images)
        return Forward(features=[fmap], byol=[desc], output=desc)

    def build_byol_heads(self, model: nn.Module) -> nn.Module:
        raise RecipeError("adapt.byol_weight: place recognition trains without BYOL (METHOD.md §4.3: the darkened "
                          "query is an extra positive instead); set adapt.byol_weight: 0")

    # --- data ----------------------------------------------------------------------------------------------
    @property
    def db(self) -> SfMDatabase:
        if self._db is None:
            t = self.cfg.train
            self._db = read_sfm(dataset_root(t.root), t.dataset, t.split)
        return self._db

    def _check_images(self, files: list[Path], where: str) -> None:
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} image(s) of {where} do not exist, e.g. {missing[0]}; "
                            "`simmm data check` lists them all")

    def train_dataset(self) -> torch.utils.data.Dataset:
        t = self.cfg.train
        if self._tuples is None:
            self._check_images(self.db.images, f"{t.dataset} ({t.root})")
            self._tuples = TupleDataset(self.db, t.image_size, min(t.queries, len(self.db.qidxs)))
        return self._tuples

    def image_dataset(self) -> torch.utils.data.Dataset:
        return self.train_dataset().images

    def eval_sets(self) -> list[EvalSet]:
        sets = []
        for name, s in self.cfg.eval.items():
            gt = read_ground_truth(dataset_root(s.root), s.dataset)
            self._check_images(gt.database + gt.queries, f"{s.dataset} ({s.root})")
            sets.append(EvalSet(name, RetrievalTestSet(gt, s.image_size)))
        return sets

    def check_data(self) -> DataReport:
        t = self.cfg.train
        report = DataReport("place recognition: training tuples and retrieval test sets")
        report.add(check_sfm(dataset_root(t.root), t.dataset, t.split))
        for s in self.cfg.eval.values():
            report.add(check_test_set(dataset_root(s.root), s.dataset))
        return report

    # --- tuples, mined each epoch --------------------------------------------------------------------------------
    def epoch_hook(self, stream: str) -> Optional[Callable[[int], None]]:
        return lambda epoch: self.prepare_epoch(stream, epoch)

    def prepare_epoch(self, stream: str, epoch: int) -> None:
        """Mine the tuples of ``stream``'s epoch ``epoch`` with the current model (unless they are already the
        dataset's, as after a resume)."""
        dataset = self.train_dataset()
        key = f"{stream}:{epoch}"
        if dataset.tuples is not None and dataset.tuples.key == key:
            return
        t = self.cfg.train
        seed = self.recipe.seed * 1_000_003 + zlib.crc32(key.encode())
        dataset.tuples = mine_epoch(self._describer(dataset.images, t.mine_batch), self.db.clusters,
                                    self.db.qidxs, self.db.pidxs, len(dataset), t.pool_size, t.negatives, seed, key)

    def _describer(self, images: ImageList, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Descriptors of training images by index, ``batch`` at a time, each process describing its share."""
        model = self.model

        @torch.no_grad()
        def describe(indices: torch.Tensor) -> torch.Tensor:
            device = next(model.parameters()).device
            modes = {m: m.training for m in model.modules()}
            model.eval()
            try:
                mine = torch.arange(rank(), len(indices), world_size())
                rows = []
                for start in range(0, len(mine), batch):
                    chunk = mine[start:start + batch]
                    x = torch.stack([images.load(int(indices[i])) for i in chunk]).to(device)
                    rows.append(model(x).float().cpu())
                rows = torch.cat(rows) if rows else torch.empty(0, model.dim)
                return gather_rows(rows, mine, len(indices)).to(device)
            finally:
                for m, mode in modes.items():
                    m.training = mode

        return describe

    def state_dict(self) -> dict:
        tuples = self._tuples.tuples if self._tuples is not None else None
        return {"tuples": tuples.state_dict()} if tuples is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if "tuples" in state:
            self.train_dataset().tuples = EpochTuples.from_state(state["tuples"])

    # --- training ------------------------------------------------------------------------------------------
    def views(self, batch: dict, n: int = 2) -> list[dict]:
        """The tuples' images as one batch (B·T, 3, S, S) (no random augmentation, as in the retrieval recipe);
        single images (D's stream) as they are."""
        images = batch["image"]
        if images.dim() == 5:
            view = {**batch, "image": images.flatten(0, 1), "tuple_size": images.shape[1]}
        else:
            view = dict(batch)
        return [view for _ in range(n)]

    def task_loss(self, output: torch.Tensor, batch: dict) -> torch.Tensor:
        t = batch["tuple_size"]
        desc = output.float().view(-1, t, output.shape[-1])
        return contrastive_loss(desc, tuple_labels(1, t - 2, device=desc.device), self.cfg.margin)

    def darkened_loss(self, net: nn.Module, batch: dict, darken: Callable[[torch.Tensor], torch.Tensor]
                      ) -> tuple[torch.Tensor, dict]:
        """Each tuple (q, p, n1..) becomes (q, p, D(q), n1..): the darkened query is one more positive."""
        images = batch["image"]                                   # (B, T, 3, S, S)
        dark = darken(images[:, 0])
        tuples = torch.cat([images[:, :2], dark.unsqueeze(1).to(images.dtype), images[:, 2:]], dim=1)
        desc = net(tuples.flatten(0, 1)).output.float().view(tuples.shape[0], tuples.shape[1], -1)
        loss = contrastive_loss(desc, tuple_labels(2, images.shape[1] - 2, device=desc.device), self.cfg.margin)
        return loss, {"contrastive": loss.detach()}

    # --- evaluation ----------------------------------------------------------------------------------------
    def _power(self, model: RetrievalNet) -> float:
        """The multi-scale pooling power: GeM's learned p when several scales are averaged (the tooling's rule)."""
        return float(model.pool.p.detach()) if len(self.cfg.scales) > 1 else 1.0

    @torch.no_grad()
    def describe_images(self, model: RetrievalNet, images: ImageList, indices: list[int], what: str
                        ) -> torch.Tensor:
        """Multi-scale descriptors (len(indices), D) of ``images`` at ``indices``, one image per pass (sizes
        differ), on the CPU."""
        device = next(model.parameters()).device
        power = self._power(model)
        rows = [multiscale_descriptor(model, images.load(i)[None].to(device), self.cfg.scales, power).float().cpu()
                for i in track(indices, what, unit="images")]
        return torch.cat(rows) if rows else torch.empty(0, model.dim)

    def _cached(self, model: RetrievalNet, what: dict, compute: Callable[[], torch.Tensor], name: str
                ) -> torch.Tensor:
        """``compute()``, cached on disk per model weights and ``what`` (files, sizes, scales)."""
        if not self.cfg.cache_descriptors:
            return compute()
        h = hashlib.sha1()
        for key, value in model.state_dict().items():
            h.update(key.encode())
            h.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        h.update(json.dumps(what, sort_keys=True, default=str).encode())
        path = Path(self.cfg.cache_dir) / "descriptors" / f"{name}_{h.hexdigest()[:20]}.pt"
        if path.exists():
            return torch.load(path, weights_only=True)
        value = compute()
        if rank() == 0:
            atomic_write(path, lambda handle: torch.save(value, handle))
        return value

    def _whitening(self, model: RetrievalNet) -> tuple[torch.Tensor, torch.Tensor]:
        """Learned whitening from training pairs' descriptors (``whitening_pairs`` of them, seeded; 0: all)."""
        db, t = self.db, self.cfg.train
        pairs = torch.arange(len(db.qidxs))
        if self.cfg.whitening_pairs:
            g = torch.Generator().manual_seed(self.recipe.seed)
            pairs = torch.randperm(len(db.qidxs), generator=g)[:self.cfg.whitening_pairs].sort().values
        q = [db.qidxs[i] for i in pairs.tolist()]
        p = [db.pidxs[i] for i in pairs.tolist()]
        used = sorted(set(q) | set(p))
        where = {image: i for i, image in enumerate(used)}
        images = ImageList(db.images, max_size=t.image_size)

        def compute() -> torch.Tensor:
            mine = list(range(rank(), len(used), world_size()))
            rows = self.describe_images(model, images, [used[i] for i in mine], "whitening: training descriptors")
            return gather_rows(rows, torch.tensor(mine, dtype=torch.long), len(used))

        what = {"files": [str(db.images[i]) for i in used], "size": t.image_size, "scales": self.cfg.scales}
        desc = self._cached(model, what, compute, "whitening")
        return learn_whitening(desc, [where[i] for i in q], [where[i] for i in p])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader, eval_set: EvalSet) -> dict[str, float]:
        name, dataset = eval_set.name, eval_set.dataset
        shard = loader.dataset  # this process's share (a Subset in a distributed run)
        mine = list(shard.indices) if isinstance(shard, torch.utils.data.Subset) else list(range(len(dataset)))

        def compute() -> torch.Tensor:
            rows = self.describe_images(model, dataset, mine, f"eval {name}: descriptors")
            return gather_rows(rows, torch.tensor(mine, dtype=torch.long), len(dataset))

        what = {"files": [str(f) for f in dataset.files], "size": dataset.max_size, "scales": self.cfg.scales}
        desc = self._cached(model, what, compute, name)
        whiten = self._whitening(model) if self.cfg.whitening else None
        if whiten is not None:
            desc = apply_whitening(desc, *whiten)
        n_db = len(dataset.gt.database)
        metrics = self._scores(desc[n_db:], desc[:n_db], dataset.gt.gnd, name, "", model)
        if self.cfg.adabn:
            queries = [i for i in mine if i >= n_db]
            adapted = adabn(model, self._adabn_batches(dataset, queries))

            def compute_adapted() -> torch.Tensor:
                rows = self.describe_images(adapted, dataset, queries, f"eval {name}: AdaBN query descriptors")
                return gather_rows(rows, torch.tensor([i - n_db for i in queries], dtype=torch.long),
                                   len(dataset) - n_db)

            qdesc = self._cached(adapted, {**what, "adabn": "queries"}, compute_adapted, f"{name}_adabn")
            if whiten is not None:
                qdesc = apply_whitening(qdesc, *whiten)
            metrics.update(self._scores(qdesc, desc[:n_db], dataset.gt.gnd, name, "_adabn", model))
        return metrics

    @staticmethod
    def _adabn_batches(dataset: RetrievalTestSet, indices: list[int], batch: int = ADABN_BATCH):
        """AdaBN's batches: the images of ``indices``, ``batch`` at a time, each resized to ``max_size``² (the
        set's size; a batch needs one size, and batches of several images carry the variance between images, which
        batches of one image would leave out of the statistics)."""
        size = dataset.max_size
        for start in range(0, len(indices), batch):
            images = [dataset.load(i)[None] for i in indices[start:start + batch]]
            if size:
                images = [nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                          for x in images]
            yield torch.cat(images)

    @staticmethod
    def _scores(queries: torch.Tensor, database: torch.Tensor, gnd: list, name: str, suffix: str,
                model: nn.Module) -> dict[str, float]:
        """mAP and Recall@N (percent) of ``queries`` searched in ``database``, keys ``<name>/<metric><suffix>``."""
        device = next(model.parameters()).device
        ranks = rank_all(queries.to(device), database.to(device))
        m_ap, _ = mean_average_precision(ranks, gnd)
        recalls = recall_at(ranks, gnd, RECALLS)
        return {f"{name}/mAP{suffix}": 100.0 * m_ap, **{f"{name}/R@{n}{suffix}": 100.0 * r for n, r in recalls.items()}}
