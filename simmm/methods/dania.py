"""DANIA (Wu et al., TPAMI 2023): nighttime segmentation from labelled day data plus unlabelled, coarsely aligned
day–night pairs, as a method on the engine (METHOD.md §5).

Players, both stepped on every iteration (generator first):

* ``generator``: the relighting net R (:class:`simmm.models.RelightNet`, shared by the three domains) and the
  segmentation net G (the task's model). R works in G's normalised input space, R(x) = x + r(x). Its loss is
  0.01·L_light + 1·L_seg + 1·L_static + 0.01·L_adv: the light loss of each domain (source, day target, night target;
  E = the batch's night mean, style target = the batch's night image), the re-weighted cross-entropy on the labelled
  source, the static loss on the night view fed by the aligned day prediction (the cached day→night homography of the
  pair, conjugated by the pair's random scale/crop/flip, warps the *prediction*; holes are ignored), and the
  least-squares adversarial terms that push D_d(P_td) and D_n(P_tn) towards the source label;
* ``discriminators``: the output-space discriminators D_d, D_n, each trained on the generator's detached softmax of
  the source against the day (D_d) or night (D_n) target.

Streams: ``source`` (the task's labelled training set, augmented by the task's views) and ``pairs`` (the paired
day–night set of ``dania.pairs``, one random scale/crop/flip per pair). Recipe section: ``dania:``. Evaluation runs
R then G and re-weights the class probabilities with s = ``dania.test_s``; ``dania.eval_with_day`` adds the paper's
day–night evaluation of a night set (``<set>_with_day``: each night image's prediction fused with its aligned day
partner's, DANIA Eq. 11, then re-weighted). The class shares behind the re-weighting are Cityscapes' unless
``dania.class_stats`` names the file ``simmm data stats`` wrote for the recipe's source labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from simmm import dist
from simmm.alignment import AlignConfig, HomographyCache, align_pairs, warp_prediction
from simmm.class_stats import read_class_shares
from simmm.dania_losses import (CITYSCAPES_CLASS_SHARES, LightLoss, StaticLoss, WeightedCrossEntropy,
                                class_weights, discriminator_loss, fuse_probabilities, generator_adversarial_loss)
from simmm.data.pair_dataset import PairDataset, WithDayPartner
from simmm.data.pair_transform import PairTransform, conjugate_homography
from simmm.data.check import DataReport
from simmm.data.pairs import check_pairs, pair_dataset
from simmm.data.select import SelectKeys
from simmm.errors import RecipeError
from simmm.method import Method, Phase, Player, Stream, register_method
from simmm.models import OutputDiscriminator, RelightNet
from simmm.task import EvalSet

__all__ = ["DANIA", "DANIAConfig", "DaniaOptions", "RelitSegmenter"]


@dataclass
class PairSource:
    """Where day–night pairs come from: ``source`` darkzurich (GPS pairs of a ``split`` from
    ``corresp/<split>/night/`` or ``pairs_file``), acdc (``condition`` images of a ``split`` + their references) or
    csv (``pairs_file`` of ``night,day`` paths under ``root``); empty ``split``/``condition``: the source's default
    (train; night)."""

    source: Literal["darkzurich", "acdc", "csv"] = "darkzurich"
    root: str = ""
    pairs_file: str = ""
    condition: str = ""
    split: str = ""

    def check(self, path: str) -> None:
        if not self.root:
            raise RecipeError(f"{path}.root: empty; expected the folder of the paired day-night data")

    def _where(self) -> dict:
        return {"pairs_file": self.pairs_file or None, "condition": self.condition or None, "split": self.split or None}

    def dataset(self, size=None) -> PairDataset:
        return pair_dataset(self.source, self.root, size=size, **self._where())

    def check_files(self) -> DataReport:
        """``simmm data check`` of these pairs (:func:`simmm.data.pairs.check_pairs`)."""
        return check_pairs(self.source, self.root, **self._where())


@dataclass
class PairsConfig(PairSource):
    """The paired day–night training set (:class:`PairSource`); ``size``: load size [H, W] (empty: the night
    image's); then one random ``scale``, a ``crop`` and a ``resize`` per pair."""

    size: list[int] = field(default_factory=list)
    crop: list[int] = field(default_factory=lambda: [960, 960])
    scale: tuple[float, float] = (0.9, 1.1)
    resize: list[int] = field(default_factory=lambda: [512, 512])
    hflip: bool = True

    def check(self, path: str) -> None:
        super().check(path)
        for name in ("size", "crop", "resize"):
            value = getattr(self, name)
            if value and (len(value) != 2 or min(value) <= 0):
                raise RecipeError(f"{path}.{name}: got {value}; expected [height, width]")


@dataclass
class LightWeights:
    """The light loss's terms (paper weights α_tv, α_ssim, α_exp, α_style = 10, 1, 1, 10)."""

    tv: float = 10.0
    ssim: float = 1.0
    exposure: float = 1.0
    style: float = 10.0
    exposure_norm: Literal["l1", "l2"] = "l1"
    exposure_patch: int = 32
    style_features: Literal["image", "vgg"] = "image"


@dataclass
class StaticOptions:
    """The static loss: fusion h1 where the warped day probability exceeds u, else h2 (DANIA Eq. 11), focal γ."""

    h1: float = 0.8
    h2: float = 0.6
    u: float = 0.4
    gamma: float = 1.0
    fill_holes: bool = False


@dataclass
class LossWeights:
    """The generator's total: light·L_light + seg·L_seg + static·L_static + adv·L_adv."""

    light: float = 0.01
    seg: float = 1.0
    static: float = 1.0
    adv: float = 0.01


@dataclass
class AlignOptions:
    """Day–night alignment: ``enabled`` (off: the day prediction is used unwarped), the matcher, the cache folder."""

    enabled: bool = True
    matcher: Literal["sift", "loftr", "disk_lightglue"] = "sift"
    cache_dir: str = ".cache/simmm/align"


@dataclass
class DaniaOptions:
    pairs: PairsConfig = field(default_factory=PairsConfig)
    light: LightWeights = field(default_factory=LightWeights)
    static: StaticOptions = field(default_factory=StaticOptions)
    weights: LossWeights = field(default_factory=LossWeights)
    align: AlignOptions = field(default_factory=AlignOptions)
    eval_with_day: dict[str, PairSource] = field(default_factory=dict)
    train_s: float = 0.1
    test_s: float = 0.10
    class_stats: str = ""
    ce_normalize: Literal["paper", "torch"] = "paper"


@dataclass
class DANIAConfig:
    """DANIA's top-level recipe section, ``dania:``."""

    dania: DaniaOptions = field(default_factory=DaniaOptions)


# what a batch of the pairs stream holds: the images, their file-to-item coordinate matrices, the pair key
PAIR_KEYS = ("night", "day", "night_matrix", "day_matrix", "key")

PLAYERS = {
    "generator": {"optimizer": "sgd", "lr": 2.5e-4, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "poly",
                  "power": 0.9, "batch_size": 2},
    "discriminators": {"optimizer": "adam", "lr": 2.5e-4, "betas": [0.9, 0.99], "lr_schedule": "poly",
                       "power": 0.9, "batch_size": 2},
}


class RelitSegmenter(nn.Module):
    """R then G on images in [0, 1]: x = normalise(I), relit = x + r(x), logits = G(relit). Returns (logits, x, r):
    the light loss works on x and r, in G's normalised input space (METHOD.md §5)."""

    def __init__(self, relight: RelightNet, segmenter: nn.Module) -> None:
        super().__init__()
        self.relight = relight
        self.segmenter = segmenter

    def forward(self, images: torch.Tensor):
        x = self.segmenter.normalize(images)
        out = self.relight(x)
        return self.segmenter.forward_normalized(out.image), x, out.residual


class _RelitLogits(nn.Module):
    """R then G, the logits only."""

    def __init__(self, relit: RelitSegmenter) -> None:
        super().__init__()
        self.relit = relit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.relit(images)[0]


class _Evaluated(nn.Module):
    """What the engine evaluates and ``simmm predict`` runs: R then G, the class probabilities re-weighted by
    ``w_k`` (s = ``dania.test_s``); returns their log (an argmax, a softmax and a sliding window treat it as
    logits). ``logits``: the unweighted R-then-G logits (the day–night evaluation fuses those)."""

    def __init__(self, relit: RelitSegmenter, weights: torch.Tensor) -> None:
        super().__init__()
        self.logits = _RelitLogits(relit)
        self.register_buffer("w", weights, persistent=False)

    def reweighted(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.log((probs * self.w.view(1, -1, 1, 1)).clamp_min(1e-12))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.reweighted(torch.softmax(self.logits(images).float(), 1))


@register_method("dania")
class DANIA(Method):
    """DANIA's generator and discriminators (see the module docstring)."""

    config = DANIAConfig
    players_defaults = PLAYERS
    eval_modules = ("model", "relight")

    def __init__(self, recipe, task, context) -> None:
        if getattr(recipe.model, "ciconv", False):
            raise RecipeError("model.ciconv: true does not go with method: dania: its relighting net works on the "
                              "normalised RGB image that CIConv's one-channel invariant replaces; set "
                              "model.ciconv: false (or train the CIConv model with method: smm)")
        super().__init__(recipe, task, context)

    def player_streams(self) -> dict[str, tuple[str, ...]]:
        return {"generator": ("source", "pairs"), "discriminators": ()}

    def streams(self) -> dict[str, Stream]:
        p = self.options.dania.pairs
        self.pairs = p.dataset(size=tuple(p.size) or None)
        batch = self.recipe.players["generator"].batch_size
        return {"source": Stream(self.task.train_dataset(), batch), "pairs": Stream(SelectKeys(self.pairs, PAIR_KEYS), batch)}

    def eval_sets(self, task_sets: list[EvalSet]) -> list[EvalSet]:
        """The task's sets, then ``<name>_with_day`` for each set named in ``dania.eval_with_day``: its night images
        with their day partners, predicted by :meth:`predict_with_day`."""
        by_name = {e.name: e for e in task_sets}
        self.eval_pairs: dict[str, PairDataset] = {}  # recipe key -> the day partners
        extra = []
        for name, partners in self.options.dania.eval_with_day.items():
            key = f"dania.eval_with_day.{name}"
            if name not in by_name:
                raise RecipeError(f"{key}: no evaluation set {name!r} in data.eval (it has: "
                                  f"{', '.join(by_name) or 'none'}); name a night set to fuse with its day partners")
            night = by_name[name].dataset
            night = getattr(night, "dataset", night)  # the segmentation dataset behind the task's key selection
            pairs = partners.dataset(size=night.size)
            self.eval_pairs[key] = pairs
            options = dict(by_name[name].options)
            extra.append(EvalSet(f"{name}_with_day", WithDayPartner(night, pairs), options,
                                 predict=partial(self.predict_with_day, size=options.get("size"))))
        return [*task_sets, *extra]

    def setup(self, model: nn.Module, steps: dict[str, int]) -> None:
        o, device = self.options.dania, self.context.device
        if not (hasattr(model, "normalize") and hasattr(model, "forward_normalized")):
            raise RecipeError(f"method: dania needs a segmentation model with normalize/forward_normalized "
                              f"(task: segmentation); this task builds {type(model).__name__}")
        num_classes = self.recipe.model.num_classes
        self.model = model
        self.evaluated, built = self.inference_model(model)  # R, R then G, the test-time weights
        self.relight, self.relit, self.test_weights = built["relight"], self.evaluated.logits.relit, self.evaluated.w
        self.disc_day = OutputDiscriminator(num_classes).to(device)
        self.disc_night = OutputDiscriminator(num_classes).to(device)
        self.train_weights = class_weights(self.class_shares(), s=o.train_s).to(device)
        lw = o.light
        self.light = LightLoss(tv=lw.tv, ssim=lw.ssim, exposure=lw.exposure, style=lw.style,
                               exposure_norm=lw.exposure_norm, patch=lw.exposure_patch,
                               style_features=lw.style_features).to(device)
        self.seg_loss = WeightedCrossEntropy(self.train_weights, normalize=o.ce_normalize).to(device)
        s = o.static
        self.static_loss = StaticLoss(self.train_weights, h1=s.h1, h2=s.h2, u=s.u, gamma=s.gamma,
                                      fill_holes=s.fill_holes).to(device)
        p = o.pairs
        self.pair_transform = PairTransform(crop=tuple(p.crop), scale=p.scale, resize=tuple(p.resize) or None,
                                            hflip=p.hflip)
        self.homographies = {}
        if o.align.enabled:
            training = {"dania.pairs": self.pairs} if steps.get("generator", 0) > 0 else {}  # none to evaluate only
            for name, pairs in {**training, **self.eval_pairs}.items():
                self.homographies.update(self._align(pairs, name))
        self._players = {
            "generator": Player("generator", {"generator": self.relit}, self.generator_step, ("source", "pairs")),
            "discriminators": Player("discriminators", {"disc_day": self.disc_day, "disc_night": self.disc_night},
                                     self.discriminator_step),
        }
        self._detached = None

    def check_data(self) -> list[DataReport]:
        """The pair stream, and the day partners of ``dania.eval_with_day``: every missing partner, malformed pairs
        line and unreadable pair image, named."""
        o = self.options.dania
        return [p.check_files() for p in (o.pairs, *o.eval_with_day.values())]

    def class_shares(self) -> torch.Tensor:
        """The source class shares ``a_k``: from ``dania.class_stats`` (``simmm data stats``), else Cityscapes'."""
        path, n = self.options.dania.class_stats, self.recipe.model.num_classes
        if path:
            return read_class_shares(path, n)
        if n != len(CITYSCAPES_CLASS_SHARES):
            raise RecipeError(f"dania.class_stats: empty, so the shipped Cityscapes class shares would be used, but "
                              f"they have {len(CITYSCAPES_CLASS_SHARES)} classes and the model {n}; run `simmm data "
                              f"stats RECIPE` on the source labels and name its file here")
        return torch.tensor(CITYSCAPES_CLASS_SHARES, dtype=torch.float64)

    def inference_model(self, model: nn.Module) -> tuple[nn.Module, dict[str, nn.Module]]:
        """R then G with test-time re-weighting, built around ``model`` without data."""
        device = next(model.parameters()).device
        relight = RelightNet().to(device)
        weights = class_weights(self.class_shares(), s=self.options.dania.test_s).to(device)
        return _Evaluated(RelitSegmenter(relight, model), weights), {"model": model, "relight": relight}

    def _align(self, pairs: PairDataset, name: str) -> dict[str, torch.Tensor]:
        """The day→night homography of every pair (night pixels → day pixels, original files), computed once and
        cached; rank 0 fills the cache, the others read it."""
        a = self.options.dania.align
        cache = HomographyCache(Path(a.cache_dir))
        items = [(key, night, day) for key, (night, day) in zip(pairs.keys, pairs.pairs)]
        if dist.is_main():
            found, _ = align_pairs(items, cache, AlignConfig(matcher=a.matcher), log=lambda line: print(f"{name}: {line}"))
        dist.barrier()
        if not dist.is_main():  # the cache is full now: read it back
            found, _ = align_pairs(items, cache, AlignConfig(matcher=a.matcher))
        return {key: al.matrix() for key, al in found.items()}

    def players(self) -> list[Player]:
        return list(self._players.values())

    def plan(self, steps: dict[str, int]) -> list[Phase]:
        return [Phase(("generator", "discriminators"), steps.get("generator", 0))]

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "relight": self.relight, "disc_day": self.disc_day,
                "disc_night": self.disc_night}

    def eval_model(self) -> nn.Module:
        return self.evaluated

    # --- steps -------------------------------------------------------------------------------------------------
    def _warped_day(self, day_prob: torch.Tensor, keys, night_matrices, day_matrices) -> tuple[torch.Tensor, torch.Tensor]:
        """The day prediction in the night view, and where it is valid (warp holes are not). ``*_matrices``: each
        sample's file → tensor pixel coordinates, which carry the pair's cached file-to-file homography into the
        tensors' coordinates."""
        if not self.homographies:
            return day_prob, torch.ones(day_prob.shape[0], *day_prob.shape[-2:], dtype=torch.bool,
                                        device=day_prob.device)
        hs = [conjugate_homography(self.homographies[key].double(), m_night, m_day)
              for key, m_night, m_day in zip(keys, night_matrices, day_matrices)]
        warped, valid = warp_prediction(day_prob, torch.stack(hs).to(day_prob.device))
        return warped, valid

    @torch.no_grad()
    def predict_with_day(self, model: _Evaluated, batch: dict, size=None) -> torch.Tensor:
        """The day–night evaluation's prediction of a batch of night images (METHOD.md §5): R then G on the night
        image and on its day partner, the day probabilities warped into the night view, fused with the night
        probabilities as in training (DANIA Eq. 11; the night prediction alone in warp holes and on dynamic
        classes), then re-weighted with s = ``dania.test_s``. ``size``: the set's prediction size (the task's)."""
        device, st = self.context.device, self.options.dania.static
        night, day = batch["image"].to(device), batch["day"].to(device)
        p_n = torch.softmax(self.task.predict(model.logits, night, size).float(), 1)
        p_d = torch.softmax(self.task.predict(model.logits, day, size).float(), 1)
        warped, valid = self._warped_day(p_d, batch["key"], batch["night_matrix"].cpu().double(),
                                         batch["day_matrix"].cpu().double())
        return model.reweighted(fuse_probabilities(p_n, warped, valid, h1=st.h1, h2=st.h2, u=st.u))

    def generator_step(self, batches, nets):
        """0.01·L_light + L_seg + L_static + 0.01·L_adv (METHOD.md §5)."""
        o = self.options.dania
        src = self.task.views(batches["source"], 1)[0]
        pairs = batches["pairs"]
        night, day, params = self.pair_transform(pairs["night"], pairs["day"])
        gen = nets["generator"]
        with self.context.autocast():
            logits_s, x_s, r_s = gen(src["image"])
            logits_d, x_d, r_d = gen(day)
            logits_n, x_n, r_n = gen(night)
            seg = self.seg_loss(logits_s.float(), src["target"])
            light = sum(self.light(x, r, x_n)[0] for x, r in ((x_s, r_s), (x_d, r_d), (x_n, r_n)))
            p_s, p_d, p_n = (torch.softmax(t.float(), 1) for t in (logits_s, logits_d, logits_n))
            m_night = [m @ f.cpu().double() for m, f in zip(params.matrix, pairs["night_matrix"])]
            m_day = [m @ f.cpu().double() for m, f in zip(params.matrix, pairs["day_matrix"])]
            warped, valid = self._warped_day(p_d.detach(), pairs["key"], m_night, m_day)
            static = self.static_loss(logits_n.float(), warped, valid)
            adv = generator_adversarial_loss(self.disc_day(p_d), self.disc_night(p_n))
            w = o.weights
            loss = w.light * light + w.seg * seg + w.static * static + w.adv * adv
        self._detached = (p_s.detach(), p_d.detach(), p_n.detach())
        return loss, {"light": light.detach(), "seg": seg.detach(), "static": static.detach(), "adv": adv.detach()}

    def discriminator_step(self, batches, nets):
        """½(D(P_s) − 0)² + ½(D(P_t) − 1)² for D_d (day target) and D_n (night target), on detached softmaxes."""
        p_s, p_d, p_n = self._detached
        with self.context.autocast():
            d_day = discriminator_loss(nets["disc_day"](p_s), nets["disc_day"](p_d))
            d_night = discriminator_loss(nets["disc_night"](p_s), nets["disc_night"](p_n))
        return d_day + d_night, {"d_day": d_day.detach(), "d_night": d_night.detach()}
