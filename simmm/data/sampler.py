"""A step-based, exactly resumable, rank-sharded batch sampler.

Contract (what the engine relies on)
------------------------------------
* The stream of batches is a pure function of ``(num_samples, batch_size, seed, shuffle, rank, world_size,
  drop_last)`` and a global batch counter. Epoch ``e`` uses the permutation
  ``torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed + e))`` (or ``arange`` without
  shuffling); the rank takes a disjoint strided slice of it; the slice is cut into batches.
* The sampler does **not** count what it yields: a ``DataLoader`` prefetches (``prefetch_factor`` ×
  workers), so yielded ≠ trained on. The training loop calls :meth:`ResumableBatchSampler.advance` once per
  batch it has actually *consumed* (taken one optimisation step on, or deliberately skipped).
  ``consumed_batches`` is that counter; the engine may also keep its own count and hand it over with
  ``load_state_dict({"consumed_batches": n})`` before it creates a ``DataLoader`` iterator.
* ``iter(sampler)`` starts at ``consumed_batches``, so a new ``DataLoader`` iterator (after a resume, or
  after the engine threw away a prefetching iterator) continues exactly where training left off; prefetched
  batches that were never consumed are produced again.
* :meth:`state_dict` → ``{"epoch", "batch", "position", "consumed_batches", ...}``: ``epoch`` and ``batch``
  locate the next batch to train on, ``position`` is the number of this rank's samples consumed in that
  epoch.
  :meth:`load_state_dict` restores ``consumed_batches`` (checking that the stream's parameters match).
  Save → new sampler → load → iterate gives the same batches as the uninterrupted run.
* Iteration is endless (epoch after epoch) unless ``total_batches`` bounds the global counter.
  ``len(sampler)`` is the number of batches per epoch (per rank), for converting epochs to steps.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional

import torch
from torch.utils.data import Sampler

from ..errors import CheckpointError, DataError

__all__ = ["epoch_permutation", "ResumableBatchSampler"]


def epoch_permutation(num_samples: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The order of all ``num_samples`` indices in ``epoch``: ``randperm`` seeded with ``seed + epoch``."""
    if not shuffle:
        return torch.arange(num_samples)
    g = torch.Generator()
    g.manual_seed(int(seed) + int(epoch))
    return torch.randperm(num_samples, generator=g)


class ResumableBatchSampler(Sampler[List[int]]):
    """Yields lists of dataset indices for step-based training; resumable at any batch; sharded by rank.

    Args:
        num_samples: dataset length.
        batch_size: samples per batch (per rank).
        seed: base seed; epoch ``e`` is shuffled with ``seed + e``.
        shuffle: shuffle each epoch (``False``: ``0..N-1`` every epoch).
        rank, world_size: this process's slice: rank ``r`` takes positions ``r, r+W, r+2W, ...`` of the
            epoch's permutation, so ranks never share an index within an epoch (with ``drop_last=True``).
        drop_last: ``True``: the permutation is cut to a multiple of ``world_size`` and each rank's slice to
            a multiple of ``batch_size`` (every batch full). ``False``: the permutation is padded with its own
            first indices to a multiple of ``world_size`` (as ``DistributedSampler`` does; only for
            ``world_size > 1``) and the last batch of an epoch may be smaller.
        total_batches: stop once the global counter reaches this (``None``: endless).

    See the module docstring for the resume contract; use as ``DataLoader(ds, batch_sampler=sampler)``.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        total_batches: Optional[int] = None,
    ):
        if int(num_samples) <= 0:
            raise DataError(f"cannot sample batches from an empty dataset (num_samples={num_samples})")
        if int(batch_size) <= 0:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = bool(drop_last)
        self.total_batches = None if total_batches is None else int(total_batches)

        if self.drop_last:
            self.samples_per_rank = self.num_samples // self.world_size
            self.batches_per_epoch = self.samples_per_rank // self.batch_size
        else:
            self.samples_per_rank = -(-self.num_samples // self.world_size)
            self.batches_per_epoch = -(-self.samples_per_rank // self.batch_size)
        if self.batches_per_epoch == 0:
            raise DataError(
                f"the dataset has {self.num_samples} samples: fewer than one batch of {self.batch_size} "
                f"per rank for {self.world_size} rank(s) with drop_last=True; lower the batch size or add "
                f"data"
            )
        self.consumed_batches = 0
        self._cache_epoch: Optional[int] = None
        self._cache_indices: Optional[torch.Tensor] = None

    # -- the stream --------------------------------------------------------------------------------------
    def rank_indices(self, epoch: int) -> torch.Tensor:
        """This rank's indices for ``epoch``, in order (length ``samples_per_rank``)."""
        if self._cache_epoch == epoch and self._cache_indices is not None:
            return self._cache_indices
        perm = epoch_permutation(self.num_samples, self.seed, epoch, self.shuffle)
        total = self.samples_per_rank * self.world_size
        if total <= self.num_samples:
            perm = perm[:total]
        else:  # pad with the permutation's own head (drop_last=False, world_size > 1)
            reps = -(-total // self.num_samples)
            perm = perm.repeat(reps)[:total]
        idx = perm[self.rank: total: self.world_size]
        self._cache_epoch, self._cache_indices = epoch, idx
        return idx

    def batch_at(self, global_batch: int) -> List[int]:
        """The batch with global number ``global_batch`` (0 = first batch of epoch 0)."""
        epoch, b = divmod(int(global_batch), self.batches_per_epoch)
        idx = self.rank_indices(epoch)
        return idx[b * self.batch_size: (b + 1) * self.batch_size].tolist()

    def __iter__(self) -> Iterator[List[int]]:
        n = self.consumed_batches
        while self.total_batches is None or n < self.total_batches:
            yield self.batch_at(n)
            n += 1

    def __len__(self) -> int:
        """Batches per epoch on this rank (iteration itself runs on across epochs)."""
        return self.batches_per_epoch

    # -- progress ----------------------------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        """Record that the training loop consumed ``n`` more batches."""
        if n < 0:
            raise ValueError("advance() takes a non-negative count")
        self.consumed_batches += int(n)

    @property
    def epoch(self) -> int:
        """The epoch of the next batch to be consumed."""
        return self.consumed_batches // self.batches_per_epoch

    @property
    def batch_in_epoch(self) -> int:
        """Index within its epoch of the next batch to be consumed."""
        return self.consumed_batches % self.batches_per_epoch

    def _position(self) -> int:
        return min(self.batch_in_epoch * self.batch_size, self.samples_per_rank)

    def state_dict(self) -> Dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch": self.batch_in_epoch,
            "position": self._position(),
            "consumed_batches": self.consumed_batches,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Resume at the saved position. The stream parameters must match the saved ones."""
        for key in ("num_samples", "batch_size", "seed", "shuffle", "world_size", "drop_last"):
            if key in state and state[key] != getattr(self, key):
                raise CheckpointError(
                    f"sampler state was saved with {key}={state[key]!r} but this run has {key}="
                    f"{getattr(self, key)!r}; an exact resume needs the same dataset, batch size, seed and "
                    f"number of processes"
                )
        if "consumed_batches" in state:
            consumed = int(state["consumed_batches"])
        elif "epoch" in state and ("batch" in state or "position" in state):
            b = int(state["batch"]) if "batch" in state else int(state["position"]) // self.batch_size
            consumed = int(state["epoch"]) * self.batches_per_epoch + b
        else:
            raise CheckpointError(
                f"sampler state {sorted(state)} lacks 'consumed_batches' (or 'epoch' and 'batch')"
            )
        if consumed < 0:
            raise CheckpointError(f"sampler state has a negative position ({consumed})")
        self.consumed_batches = consumed

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"seed={self.seed}, rank={self.rank}/{self.world_size}, "
                f"consumed_batches={self.consumed_batches})")
