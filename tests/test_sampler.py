import itertools

import pytest
import torch

from simmm.data.sampler import ResumableBatchSampler, epoch_permutation
from simmm.errors import CheckpointError, DataError


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_epochs_are_seeded_permutations():
    s = ResumableBatchSampler(10, 3, seed=5)
    assert len(s) == 3  # drop_last: 3 full batches per epoch
    batches = take(s, 6)
    for e in range(2):
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(5 + e)).tolist()
        assert sum(batches[3 * e: 3 * e + 3], []) == perm[:9]
    assert all(len(b) == 3 for b in batches)
    assert torch.equal(epoch_permutation(4, 0, 0, shuffle=False), torch.arange(4))


def test_iteration_does_not_advance_without_consumption():
    s = ResumableBatchSampler(20, 4, seed=1)
    first = take(s, 5)
    assert take(s, 5) == first  # a fresh iterator restarts at the consumed position (0)
    s.advance(2)
    assert take(s, 3) == first[2:5]


@pytest.mark.parametrize("k", [0, 3, 5, 11])
def test_resume_equals_uninterrupted(k):
    uninterrupted = take(ResumableBatchSampler(23, 4, seed=7), 20)

    run = ResumableBatchSampler(23, 4, seed=7)
    it = iter(run)
    got = []
    for _ in range(k):  # the loop consumes k batches (the iterator may have prefetched more)
        got.append(next(it))
        run.advance()
    next(it), next(it)  # prefetched, never trained on
    state = run.state_dict()
    assert state["consumed_batches"] == k
    assert state["epoch"] == k // 5 and state["batch"] == k % 5 and state["position"] == (k % 5) * 4

    resumed = ResumableBatchSampler(23, 4, seed=7)
    resumed.load_state_dict(state)
    got += take(resumed, 20 - k)
    assert got == uninterrupted


def test_resume_from_epoch_and_batch_only():
    s = ResumableBatchSampler(30, 5, seed=0)
    s.load_state_dict({"epoch": 2, "batch": 1})
    assert s.consumed_batches == 13
    assert take(s, 1)[0] == take(ResumableBatchSampler(30, 5, seed=0), 14)[13]


def test_resume_with_dataloader():
    data = torch.arange(17)
    ds = torch.utils.data.TensorDataset(data)
    ref = [b[0].tolist() for b in itertools.islice(
        torch.utils.data.DataLoader(ds, batch_sampler=ResumableBatchSampler(17, 4, seed=3)), 9)]
    s = ResumableBatchSampler(17, 4, seed=3)
    it = iter(torch.utils.data.DataLoader(ds, batch_sampler=s))
    got = []
    for _ in range(4):
        got.append(next(it)[0].tolist())
        s.advance()
    s2 = ResumableBatchSampler(17, 4, seed=3)
    s2.load_state_dict(s.state_dict())
    got += [b[0].tolist() for b in itertools.islice(torch.utils.data.DataLoader(ds, batch_sampler=s2), 5)]
    assert got == ref


def test_rank_sharding_disjoint_and_covering():
    world = 3
    samplers = [ResumableBatchSampler(31, 2, seed=11, rank=r, world_size=world) for r in range(world)]
    per = samplers[0].batches_per_epoch
    assert per == (31 // 3) // 2
    for epoch in range(2):
        shards = [set(sum(take(s, per * (epoch + 1))[per * epoch:], [])) for s in samplers]
        for a, b in itertools.combinations(shards, 2):
            assert not a & b
        assert all(len(x) == per * 2 for x in shards)
    # the rank slices partition the epoch's permutation (cut to a multiple of world_size)
    parts = [set(s.rank_indices(0).tolist()) for s in samplers]
    perm = epoch_permutation(31, 11, 0)
    assert set().union(*parts) == set(perm[:30].tolist())


def test_drop_last_false_pads_and_keeps_tail():
    s = ResumableBatchSampler(10, 4, seed=0, drop_last=False)
    batches = take(s, 3)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(sum(batches, [])) == list(range(10))
    r0 = ResumableBatchSampler(5, 8, seed=0, drop_last=False, rank=0, world_size=2)
    r1 = ResumableBatchSampler(5, 8, seed=0, drop_last=False, rank=1, world_size=2)
    assert len(take(r0, 1)[0]) == len(take(r1, 1)[0]) == 3  # padded to equal length per rank


def test_total_batches_bound():
    s = ResumableBatchSampler(8, 2, seed=0, total_batches=6)
    assert len(list(iter(s))) == 6
    s.advance(4)
    assert len(list(iter(s))) == 2


def test_errors():
    with pytest.raises(DataError, match=r"empty dataset \(num_samples=0\)"):
        ResumableBatchSampler(0, 2)
    with pytest.raises(DataError, match="fewer than one batch"):
        ResumableBatchSampler(3, 4)
    s = ResumableBatchSampler(10, 2, seed=0)
    with pytest.raises(CheckpointError, match="batch_size"):
        s.load_state_dict(ResumableBatchSampler(10, 5, seed=0).state_dict())
    with pytest.raises(CheckpointError, match=r"sampler state \['foo'\] lacks 'consumed_batches'"):
        s.load_state_dict({"foo": 1})
