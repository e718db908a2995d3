"""AdaBN (simmm.adabn): the re-estimated statistics by hand, the task's own forward, and segmentation's option."""
from pathlib import Path

import pytest
import torch
from torch import nn

from simmm.adabn import adabn


def batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, 4, 5, generator=g) * 2 + 1, torch.randn(3, 3, 4, 5, generator=g) - 4]


def test_statistics_are_the_average_of_the_sets_batch_statistics():
    """running mean = mean over batches of each batch's channel mean; running var = mean of each batch's unbiased
    channel variance (momentum None: a cumulative average, every batch weighted alike)."""
    model = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False), nn.BatchNorm2d(3)).eval()
    nn.init.eye_(model[0].weight.view(3, 3))
    model[1].running_mean.fill_(3.0)  # source statistics from a long training: none of it may remain
    model[1].num_batches_tracked.fill_(1000)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = adabn(model, batches())
    means = [b.mean((0, 2, 3)) for b in batches()]
    variances = [b.transpose(0, 1).reshape(3, -1).var(1, unbiased=True) for b in batches()]
    bn = adapted[1]
    torch.testing.assert_close(bn.running_mean, (means[0] + means[1]) / 2)
    torch.testing.assert_close(bn.running_var, (variances[0] + variances[1]) / 2)
    assert not adapted.training
    for k, v in model.state_dict().items():  # the model itself is left alone
        assert torch.equal(v, before[k])


def test_dict_batches_and_the_tasks_forward():
    """Dict batches feed their "image"; ``forward`` decides what the model sees (here: images doubled)."""
    model = nn.BatchNorm2d(3).eval()
    plain = adabn(model, [{"image": b} for b in batches()])
    doubled = adabn(model, batches(), forward=lambda net, b: net(2 * b))
    torch.testing.assert_close(doubled.running_mean, 2 * plain.running_mean)
    torch.testing.assert_close(doubled.running_var, 4 * plain.running_var)


def test_segmentation_scores_with_statistics_of_each_set(tmp_path):
    """``data.adabn: true``: ``<set>/mIoU_adabn`` is the score of the model adapted on that set's images, predicted
    as the set is scored — reproduced here by hand with the task's own predict."""
    from test_segmentation_task import smoke_recipe

    from simmm.engine import Engine

    engine = Engine(smoke_recipe(tmp_path, "data.adabn=true", "players.day.steps=0", "players.darkener.steps=0",
                                 "players.extractor.steps=0"))
    metrics = engine.evaluate()
    assert {"cs_val/mIoU_adabn", "dz_val/mIoU_adabn", "dz_val/pixel_acc_adabn"} <= set(metrics)
    task = engine.adapter
    for eval_set in engine.eval_sets:
        if eval_set.name != "dz_val":
            continue
        loader = torch.utils.data.DataLoader(eval_set.dataset, batch_size=1)
        size = eval_set.options.get("size")
        by_hand = adabn(engine.model.eval(), loader, forward=lambda net, b: task.predict(net, b["image"], size))
        plain = task._score(engine.model.eval(), loader, lambda net, b: task.predict(net, b["image"], size))
        adapted = task._score(by_hand, loader, lambda net, b: task.predict(net, b["image"], size))
        assert metrics["dz_val/mIoU_adabn"] == pytest.approx(adapted["mIoU"])
        assert metrics["dz_val/mIoU"] == pytest.approx(plain["mIoU"])


def test_a_layer_with_one_value_per_channel_keeps_its_statistics():
    """A batch of one through a global pool: the BN behind it has no batch statistics (PSPNet's 1×1 bin at
    evaluation batch size 1) and keeps the source's; the spatial BN in front is re-estimated."""
    model = nn.Sequential(nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(3)).eval()
    model[2].running_mean.fill_(0.5)
    model[2].running_var.fill_(2.0)
    adapted = adabn(model, [b[:1] for b in batches()])
    torch.testing.assert_close(adapted[2].running_mean, torch.full((3,), 0.5))
    torch.testing.assert_close(adapted[2].running_var, torch.full((3,), 2.0))
    means = [b[:1].mean((0, 2, 3)) for b in batches()]
    torch.testing.assert_close(adapted[0].running_mean, (means[0] + means[1]) / 2)
    assert all(not m.training for m in adapted.modules()) and not model[0]._forward_pre_hooks
