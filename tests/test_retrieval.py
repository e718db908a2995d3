"""Place recognition's building blocks against hand-worked values: GeM, the contrastive loss, retrieval scores
(trapezoid-rule mAP with junk ignored, Recall@N), search, multi-scale descriptors, learned whitening, hard-negative
mining, and the LR-multiplier groups of the optimiser."""
import math

import pytest
import torch
from torch import nn

from simmm.contrastive import contrastive_loss, tuple_labels
from simmm.engine import build_optimizer, param_groups
from simmm.errors import DataError, SimmmError
from simmm.mining import hard_negatives
from simmm.models.gem import GeM, gem
from simmm.models.retrieval_net import RetrievalNet, multiscale_descriptor
from simmm.recipe import PlayerConfig
from simmm.retrieval import average_precision, mean_average_precision, recall_at, search
from simmm.whitening import apply_whitening, learn_whitening

# ranks: database indices per query, best first. Query 0: ok {1, 3}, junk {2}; query 1: ok {4}; query 2: no positive.
RANKS = torch.tensor([[2, 1, 0, 3, 4, 5], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
GND = [{"ok": [1, 3], "junk": [2]}, {"ok": [4], "junk": []}, {"ok": [], "junk": [0]}]


def test_map_ignores_junk_and_uses_the_trapezoid_rule():
    # query 0 without its junk: ranking 1, 0, 3, ... -> positives at 0 and 2:
    #   j=0, r=0: (1 + 1/1)/(2*2) = 0.5;  j=1, r=2: (1/2 + 2/3)/(2*2) = 0.291667  -> AP 0.791667
    # query 1: positive at 4: (0/4 + 1/5)/2 = 0.1; query 2 has no positive: left out of the mean
    m_ap, aps = mean_average_precision(RANKS, GND)
    assert aps[0] == pytest.approx(0.5 + (0.5 + 2 / 3) / 4)
    assert aps[1] == pytest.approx(0.1)
    assert math.isnan(aps[2])
    assert m_ap == pytest.approx((0.7916667 + 0.1) / 2, abs=1e-6)
    assert average_precision([0, 1], 2) == pytest.approx(1.0)


def test_recall_counts_the_first_non_junk_positive():
    # query 0: junk 2 first, then positive 1 -> a hit at 1 (it would be a miss if junk counted); query 1: at 5th
    r = recall_at(RANKS, GND, (1, 4, 5, 10))
    assert r == {1: 0.5, 4: 0.5, 5: 1.0, 10: 1.0}


def test_search_is_a_matrix_product_with_top_k():
    db = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    q = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    scores, idx = search(q, db, k=2, batch=1)
    assert idx.tolist() == [[2, 1], [0, 1]]
    assert scores.flatten().tolist() == pytest.approx([1.0, 0.8, 1.0, 0.6])
    assert search(q, db)[1].tolist() == [[2, 1, 0], [0, 1, 2]]


def test_gem_is_the_p_th_root_of_the_mean_power():
    x = torch.tensor([1.0, 2.0, -1.0, 0.0]).view(1, 1, 2, 2)  # negatives clamp to eps
    assert gem(x, 3.0).item() == pytest.approx((9 / 4) ** (1 / 3), rel=1e-5)
    pool = GeM(3.0)
    assert isinstance(pool.p, nn.Parameter) and pool.p.item() == 3.0
    pool(torch.rand(2, 4, 3, 3)).sum().backward()
    assert pool.p.grad is not None  # p learns


def test_contrastive_loss_by_hand():
    # tuple 1: q=(1,0), p=(.6,.8): 1/2 * 0.8 = 0.4; n=(0,1) beyond the margin: 0; n=(.8,.6): d=sqrt(.4),
    #          1/2 (0.85 - 0.632456)^2 = 0.0236626
    # tuple 2: q=p=(0,1): 0; n=(0,1): 1/2 * 0.85^2 = 0.36125; n=(1,0): 0        -> mean over tuples
    desc = torch.tensor([[[1, 0], [0.6, 0.8], [0, 1], [0.8, 0.6]], [[0, 1], [0, 1], [0, 1], [1, 0]]])
    labels = tuple_labels(1, 2)
    assert labels.tolist() == [-1, 1, 0, 0]
    expected = (0.4 + 0.5 * (0.85 - math.sqrt(0.4)) ** 2 + 0.36125) / 2
    assert contrastive_loss(desc, labels, 0.85, eps=0.0).item() == pytest.approx(expected, rel=1e-6)
    assert contrastive_loss(desc, labels, 0.85).item() == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="exactly one query"):
        contrastive_loss(desc, torch.tensor([1.0, 1, 0, 0]))


class SizeNet(nn.Module):
    """A stand-in net whose descriptor is (image width, 1)."""

    def forward(self, x):
        return torch.tensor([[float(x.shape[-1]), 1.0]])


def test_multiscale_descriptor_averages_powers():
    # widths 4 and 2 at scales 1 and 1/2, power 2: sqrt(((16, 1) + (4, 1)) / 2) = (sqrt 10, 1), normalised
    d = multiscale_descriptor(SizeNet(), torch.rand(1, 3, 4, 4), scales=(1.0, 0.5), power=2.0)
    assert d[0].tolist() == pytest.approx([math.sqrt(10) / math.sqrt(11), 1 / math.sqrt(11)], rel=1e-6)


def test_retrieval_net_keeps_batch_norm_frozen():
    import timm

    net = RetrievalNet(timm.create_model("resnet10t", num_classes=0, global_pool=""))
    bn = net.net.bn1
    before = bn.running_mean.clone()
    net.train()
    assert net.training and not bn.training
    out = net(torch.rand(2, 3, 64, 64))
    assert torch.equal(bn.running_mean, before)
    assert out.norm(dim=1).tolist() == pytest.approx([1.0, 1.0], rel=1e-5)


def test_learned_whitening_whitens_the_pair_differences():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5, 2.0], dtype=torch.float64)
    q, p = list(range(0, 40, 2)), list(range(1, 40, 2))
    mean, proj = learn_whitening(x, q, p)
    diff = x[q] - x[p]
    within = proj @ (diff.T @ diff / len(q)) @ proj.T
    assert torch.allclose(within, torch.eye(4, dtype=torch.float64), atol=1e-8)  # pair differences: identity
    assert torch.allclose(mean, x[q].mean(0))
    spread = ((x - mean) @ proj.T).pow(2).sum(0)
    assert torch.all(spread[:-1] >= spread[1:])  # principal axes, largest first
    white = apply_whitening(x, mean, proj, dims=2)
    assert white.shape == (40, 2) and white.norm(dim=1).tolist() == pytest.approx([1.0] * 40)


def test_hard_negatives_skip_the_query_cluster_and_repeat_clusters():
    clusters = [0, 0, 1, 1, 2, 2, 3]
    pool = [1, 2, 3, 4, 5, 6]
    query = torch.tensor([[1.0, 0.0]])
    # similarity to the query, in pool order: image 1 (own cluster) .99, 3 .9, 2 .8 (cluster 1 again), 5 .7, 4 .6,
    # 6 .5 -> negatives 3 (cluster 1), then 5 (cluster 2)
    sims = torch.tensor([0.99, 0.8, 0.9, 0.6, 0.7, 0.5])
    pool_desc = torch.stack([sims, (1 - sims ** 2).sqrt()], 1)
    assert hard_negatives(query, pool_desc, pool, clusters, [0], 2).tolist() == [[3, 5]]
    assert hard_negatives(query, pool_desc, pool, clusters, [0], 3).tolist() == [[3, 5, 6]]
    with pytest.raises(DataError, match="raise data.train.pool_size"):
        hard_negatives(query, pool_desc, pool, clusters, [0], 4)


def test_lr_mult_gives_matched_parameters_their_own_group():
    net = nn.ModuleDict({"body": nn.Linear(2, 2), "pool": GeM()})
    named = [(f"model.{n}", p) for n, p in net.named_parameters()]
    groups = param_groups(named, 1e-3, {"*.pool.p": 10})
    assert [len(g["params"]) for g in groups] == [2, 1]
    assert groups[1]["params"][0] is net["pool"].p and groups[1]["lr"] == pytest.approx(1e-2)
    opt = build_optimizer(PlayerConfig(lr=1e-3, lr_mult={"*.pool.p": 10}), named)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-2])
    assert len(build_optimizer(PlayerConfig(lr=1e-3), net.parameters()).param_groups) == 1
    with pytest.raises(SimmmError, match="'\\*.gem.p' matches no trainable parameter"):
        param_groups(named, 1e-3, {"*.gem.p": 10})
    with pytest.raises(SimmmError, match="'\\*.pool.p' matches no trainable parameter"):  # "*.p" took p first
        param_groups(named, 1e-3, {"*.p": 2, "*.pool.p": 10})


def test_no_decay_takes_matched_parameters_out_of_weight_decay():
    """cirtorch trains GeM's p at 10x LR and without weight decay: with a zero gradient, SGD's decay moves every
    other parameter by lr * wd * value and leaves p where it is."""
    net = nn.ModuleDict({"body": nn.Linear(2, 2), "pool": GeM()})
    named = [(f"model.{n}", p) for n, p in net.named_parameters()]
    groups = param_groups(named, 1e-3, {"*.pool.p": 10}, ["*.pool.p"])
    assert [len(g["params"]) for g in groups] == [2, 1]
    assert "weight_decay" not in groups[0] and groups[1]["weight_decay"] == 0.0
    assert groups[1]["params"][0] is net["pool"].p and groups[1]["lr"] == pytest.approx(1e-2)
    alone = param_groups(named, 1e-3, {}, ["*.bias"])  # without lr_mult: one decayed group and one without decay
    assert [len(g["params"]) for g in alone] == [2, 1] and alone[1]["params"][0] is net["body"].bias
    assert [g["lr"] for g in alone] == [1e-3, 1e-3]
    opt = build_optimizer(PlayerConfig(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.1,
                                       lr_mult={"*.pool.p": 10}, no_decay=["*.pool.p"]), named)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    before = {n: p.detach().clone() for n, p in named}
    for _, p in named:
        p.grad = torch.zeros_like(p)
    opt.step()
    weight = dict(named)["model.body.weight"]
    assert torch.allclose(weight, before["model.body.weight"] * (1 - 0.5 * 0.1))  # decayed: w - lr * wd * w
    assert torch.equal(net["pool"].p, before["model.pool.p"])  # not decayed
    with pytest.raises(SimmmError, match="no_decay: pattern '\\*.gem.p' matches no trainable parameter"):
        param_groups(named, 1e-3, {}, ["*.gem.p"])
