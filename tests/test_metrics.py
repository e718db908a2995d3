"""Metrics: accuracy, confusion matrix / Cityscapes mIoU (hand-computed), distributed sum, IoU tables, mAP."""
from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction

import pytest
import torch
import torch.distributed as td
import torch.multiprocessing as mp

from simmm.metrics import (CITYSCAPES_CLASSES, Accuracy, ConfusionMatrix, average_precision, confusion_matrix,
                           format_iou_table, format_iou_text, iou_from_confusion, mean_average_precision,
                           top1_accuracy, topk_accuracy)

# --------------------------------------------------------------------------------------------------------------
# a hand-worked 3-class example with one ignored pixel
#
#   target  [[0, 0, 1],        pred  [[0, 1, 1],
#            [1, 2, 255]]             [2, 2, 0]]      (the 255 pixel is dropped, whatever is predicted there)
#
#   valid pixels (gt -> pred): 0->0, 0->1, 1->1, 1->2, 2->2
#   confusion (rows gt, cols pred):   [[1, 1, 0],
#                                      [0, 1, 1],
#                                      [0, 0, 1]]
#   class 0: TP 1, FP 0, FN 1 -> 1/2 ;  class 1: TP 1, FP 1, FN 1 -> 1/3 ;  class 2: TP 1, FP 1, FN 0 -> 1/2
#   mIoU = (1/2 + 1/3 + 1/2) / 3 = 4/9 ; pixel acc = 3/5 ; mean acc = (1/2 + 1/2 + 1/1) / 3 = 2/3
# --------------------------------------------------------------------------------------------------------------
TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [2, 2, 0]])
EXPECTED_MATRIX = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
EXPECTED_IOU = [Fraction(1, 2), Fraction(1, 3), Fraction(1, 2)]


def pct(f) -> float:
    return 100.0 * float(f)


def test_confusion_matrix_hand_example():
    m = confusion_matrix(PRED, TARGET, num_classes=3)
    assert m.dtype == torch.long and m.shape == (3, 3)
    assert torch.equal(m, EXPECTED_MATRIX)
    assert int(m.sum()) == 5  # the ignore pixel is not counted


def test_miou_hand_example():
    cm = ConfusionMatrix(3)
    cm.update(PRED[None], TARGET[None])
    r = cm.compute()
    assert r["per_class_iou"] == pytest.approx([pct(f) for f in EXPECTED_IOU])
    assert r["mIoU"] == pytest.approx(pct(Fraction(4, 9)))
    assert r["pixel_accuracy"] == pytest.approx(pct(Fraction(3, 5)))
    assert r["mean_accuracy"] == pytest.approx(pct(Fraction(2, 3)))


def test_logits_are_argmaxed():
    logits = torch.nn.functional.one_hot(PRED, 3).permute(2, 0, 1)[None].float() * 5.0
    cm = ConfusionMatrix(3)
    cm.update(logits, TARGET[None])
    assert torch.equal(cm.matrix, EXPECTED_MATRIX)


def test_absent_class_is_nan_and_excluded_predicted_only_class_counts_zero():
    # 5 classes: class 3 appears nowhere (NaN, excluded); class 4 is only predicted (IoU 0, included)
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 4, 1], [1, 2, 3]])  # the 3 sits on the ignored pixel: it does not count
    cm = ConfusionMatrix(5)
    cm.update(pred, target)
    r = cm.compute()
    iou = r["per_class_iou"]
    # class 0: TP 1, FN 1 -> 1/2; class 1: 2/2; class 2: 1/1; class 3: 0/0 -> NaN; class 4: TP 0, FP 1 -> 0
    assert iou[:3] == pytest.approx([50.0, 100.0, 100.0])
    assert math.isnan(iou[3])
    assert iou[4] == 0.0
    assert r["mIoU"] == pytest.approx((50 + 100 + 100 + 0) / 4)
    # mean accuracy: over classes present in ground truth only (0, 1, 2)
    assert r["mean_accuracy"] == pytest.approx((50 + 100 + 100) / 3)
    assert r["pixel_accuracy"] == pytest.approx(400 / 5)


def test_empty_matrix_gives_nan():
    r = ConfusionMatrix(3).compute()
    assert math.isnan(r["mIoU"]) and math.isnan(r["pixel_accuracy"]) and math.isnan(r["mean_accuracy"])
    assert all(math.isnan(v) for v in r["per_class_iou"])
    # only ignore pixels: still empty
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    assert int(cm.matrix.sum()) == 0 and math.isnan(cm.compute()["mIoU"])


def test_iou_from_confusion_nan():
    iou = iou_from_confusion(torch.tensor([[2, 0], [0, 0]]))
    assert iou[0] == 1.0 and torch.isnan(iou[1])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_confusion_matrix_dtypes(dtype):
    m = confusion_matrix(PRED.clamp(max=2).to(dtype), TARGET.to(torch.uint8), 3)
    assert torch.equal(m, EXPECTED_MATRIX)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_confusion_matrix_device_agnostic(device):
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (2, 17, 23), generator=g)
    target[target == 3] = 255
    pred = torch.randint(0, 3, (2, 17, 23), generator=g)
    ref = count_matrix(pred, target, 3)
    m = confusion_matrix(pred.to(device), target.to(device), 3)
    assert m.device.type == device
    assert torch.equal(m.cpu(), ref)
    cm = ConfusionMatrix(3)
    cm.update(PRED[None].to(device), TARGET[None].to(device))  # the hand example, on the device
    assert cm.matrix.device.type == device
    assert cm.compute()["mIoU"] == pytest.approx(pct(Fraction(4, 9)))


def count_matrix(pred, target, num_classes):
    """The confusion matrix counted pixel by pixel in plain Python (rows ground truth, 255 ignored)."""
    ref = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        if t != 255:
            ref[t, p] += 1
    return ref


def test_accumulator_equals_one_shot():
    g = torch.Generator().manual_seed(1)
    c = 6
    batches = []
    for _ in range(5):
        t = torch.randint(0, c, (3, 9, 11), generator=g)
        t[torch.rand(t.shape, generator=g) < 0.1] = 255
        batches.append((torch.randn(3, c, 9, 11, generator=g), t))
    cm = ConfusionMatrix(c)
    for logits, t in batches:
        cm.update(logits, t)
    all_logits = torch.cat([b[0] for b in batches])
    all_t = torch.cat([b[1] for b in batches])
    assert torch.equal(cm.matrix, count_matrix(all_logits.argmax(1), all_t, c))
    cm2 = ConfusionMatrix(c)
    cm2.update(all_logits, all_t)
    assert cm.compute() == cm2.compute()
    cm.reset()
    assert int(cm.matrix.sum()) == 0


def test_out_of_range_ids_raise():
    with pytest.raises(ValueError, match="train ids"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), 3)  # an unmapped label id
    with pytest.raises(ValueError, match="prediction"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    # an out-of-range prediction on an ignored pixel is fine
    assert int(confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 255]), 3).sum()) == 1
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="channels"):
        ConfusionMatrix(3).update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


def test_all_reduce_without_distributed_is_identity():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    assert torch.equal(cm.all_reduce().matrix, EXPECTED_MATRIX)
    acc = Accuracy()
    acc.update(torch.tensor([[2.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    assert acc.all_reduce().compute() == 50.0


def _dist_worker(rank: int, world: int, init_file: str, queue) -> None:
    td.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                          timeout=timedelta(seconds=60))
    try:
        cm = ConfusionMatrix(3)
        # rank 0 sees the first row of the hand example, rank 1 the second
        cm.update(PRED[rank:rank + 1], TARGET[rank:rank + 1])
        local = cm.matrix.clone()
        cm.all_reduce()
        cm.all_reduce()  # twice: must not double-count
        acc = Accuracy()
        acc.update(torch.tensor([[1.0, 0.0]] * (rank + 1)), torch.zeros(rank + 1, dtype=torch.long))  # all right
        acc.update(torch.tensor([[1.0, 0.0]]), torch.ones(1, dtype=torch.long))  # one wrong per rank
        acc.all_reduce()
        queue.put((rank, local.tolist(), cm.matrix.tolist(), cm.compute()["mIoU"], acc.counts))
    finally:
        td.destroy_process_group()


def test_all_reduce_sums_over_two_processes(tmp_path):
    # rank 1 runs in a spawned process, rank 0 in this one (one torch import fewer than two children)
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    init_file = str(tmp_path / "store")
    child = ctx.Process(target=_dist_worker, args=(1, 2, init_file, queue), daemon=True)
    child.start()
    try:
        _dist_worker(0, 2, init_file, queue)
    finally:
        child.join(timeout=60)
    assert child.exitcode == 0
    assert not td.is_initialized()
    results = sorted(queue.get() for _ in range(2))
    assert results[0][1] != results[1][1]  # the ranks saw different pixels
    for _, _, reduced, miou, counts in results:
        assert reduced == EXPECTED_MATRIX.tolist()
        assert miou == pytest.approx(pct(Fraction(4, 9)))
        assert counts == (3, 5)  # correct (1 + 2), total (2 + 3)


def test_format_iou_table_and_text():
    from rich.console import Console

    per_class = [50.0, float("nan"), 25.0]
    names = ["road", "wall", "sky"]
    table = format_iou_table(per_class, names)
    assert table.row_count == 3
    console = Console(record=True, width=80)
    console.print(table)
    text = console.export_text()
    for s in ("road", "wall", "sky", "n/a", "50.00", "25.00", "37.50", "mean"):
        assert s in text
    plain = format_iou_text(per_class, names)
    lines = plain.splitlines()
    assert lines[0].split() == ["class", "IoU"]
    assert lines[2].split() == ["road", "50.00"] and lines[3].split() == ["wall", "n/a"]
    assert lines[-1].split() == ["mean", "37.50"]
    with pytest.raises(ValueError, match="2 IoU values but 1 class names"):
        format_iou_text([1.0, 2.0], ["one"])
    r = ConfusionMatrix(19).compute()
    assert format_iou_table(r["per_class_iou"], CITYSCAPES_CLASSES).row_count == 19


# --------------------------------------------------------------------------------------------------------------
# classification accuracy
# --------------------------------------------------------------------------------------------------------------
def test_top1_and_topk():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    targets = torch.tensor([1, 0, 1, 1])
    assert top1_accuracy(logits, targets) == 50.0
    assert topk_accuracy(logits, targets, 2) == 100.0
    assert top1_accuracy(logits.argmax(1), targets) == 50.0  # predicted ids are accepted
    assert math.isnan(top1_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))


def test_accuracy_accumulator_hand_values():
    # batch 1: argmax 0, 1, 2 vs targets 0, 2, 1 -> 1 right; top-2 sets {0,1}, {1,2}, {2,0} -> 2 right
    # batch 2: argmax 2, 0 vs targets 2, 1 -> 1 right; top-2 sets {2,1}, {0,2} -> 1 right
    batches = [(torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0]]), torch.tensor([0, 2, 1])),
               (torch.tensor([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]), torch.tensor([2, 1]))]
    acc, acc2 = Accuracy(), Accuracy(topk=2)
    assert math.isnan(acc.compute())
    for logits, targets in batches:
        acc.update(logits, targets)
        acc2.update(logits, targets)
    assert acc.counts == (2, 5) and acc.compute() == pytest.approx(40.0)
    assert acc2.counts == (3, 5) and acc2.compute() == pytest.approx(60.0)


# --------------------------------------------------------------------------------------------------------------
# retrieval: AP, mAP, Recall@K
# --------------------------------------------------------------------------------------------------------------
def test_average_precision_hand_examples():
    # ranking [ok, bad, ok]: precision 1/1 at the first positive, 2/3 at the second
    assert average_precision([7, 3, 5], ok=[7, 5]) == pytest.approx(float((Fraction(1) + Fraction(2, 3)) / 2))
    # a junk item in front is removed before counting: same AP
    assert average_precision([9, 7, 3, 5], ok=[7, 5], junk=[9]) == pytest.approx(5 / 6)
    # junk between: [ok, junk, bad, ok] -> [ok, bad, ok]
    assert average_precision([7, 9, 3, 5], ok=[7, 5], junk=[9]) == pytest.approx(5 / 6)
    # perfect ranking
    assert average_precision([1, 2, 0], ok=[1, 2]) == 1.0
    # [bad, ok, bad, bad, ok]: (1/2 + 2/5) / 2
    assert average_precision([0, 1, 2, 3, 4], ok=[1, 4]) == pytest.approx((1 / 2 + 2 / 5) / 2)
    # a positive never retrieved (truncated ranking) contributes 0: (1/1) / 2
    assert average_precision([7, 3], ok=[7, 5]) == pytest.approx(0.5)
    # no positives: undefined
    assert math.isnan(average_precision([1, 2], ok=[]))
    # trapezoid (revisitop compute_ap): ((1 + 1)/2 + (1/2 + 2/3)/2) / 2
    assert average_precision([7, 3, 5], ok=[7, 5], trapezoid=True) == pytest.approx((1 + (1 / 2 + 2 / 3) / 2) / 2)


def test_mean_average_precision_and_recall_at_k():
    ranks = torch.tensor([
        [0, 1, 2, 3, 4],   # q0: ok {0, 2}   -> AP (1 + 2/3)/2 = 5/6, first hit at rank 1
        [3, 4, 1, 0, 2],   # q1: ok {1}, junk {3} -> [4, 1, 0, 2]: AP 1/2, first hit at rank 2
        [4, 3, 2, 1, 0],   # q2: ok {0}      -> AP 1/5, first hit at rank 5
        [0, 1, 2, 3, 4],   # q3: no positives -> excluded
    ])
    gnd = [{"ok": [0, 2]}, {"ok": [1], "junk": [3]}, [0], {"ok": [], "junk": [1]}]
    r = mean_average_precision(ranks, gnd, ks=(1, 2, 5))
    assert r["num_queries"] == 3
    assert r["mAP"] == pytest.approx(100 * (5 / 6 + 1 / 2 + 1 / 5) / 3)
    assert r["recall@1"] == pytest.approx(100 / 3)
    assert r["recall@2"] == pytest.approx(200 / 3)
    assert r["recall@5"] == pytest.approx(100.0)
    assert math.isnan(r["per_query_ap"][3])
    assert r["per_query_ap"][0] == pytest.approx(100 * 5 / 6)


def test_mean_average_precision_from_scores():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.8]])  # q1 has a tie: database order breaks it
    gnd = [{"ok": [2]}, {"ok": [1]}]
    r = mean_average_precision(scores=scores, gnd=gnd, ks=(1, 2, 3))
    # q0 ranking [0, 2, 1] -> AP 1/2 ; q1 ranking [2, 0, 1] -> AP 1/3
    assert r["mAP"] == pytest.approx(100 * (1 / 2 + 1 / 3) / 2)
    assert (r["recall@1"], r["recall@2"], r["recall@3"]) == pytest.approx((0.0, 50.0, 100.0))
    # ranks as ragged lists give the same
    assert mean_average_precision([[0, 2, 1], [2, 0, 1]], gnd, ks=(1, 2, 3)) == r
    with pytest.raises(ValueError, match="give exactly one of ranks= or scores="):
        mean_average_precision(gnd=gnd)
    with pytest.raises(ValueError, match="1 rankings but 2 ground-truth entries"):
        mean_average_precision([[0, 1]], gnd)
