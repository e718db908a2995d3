"""A dataset view that keeps some keys of each item (training batches hold tensors the engine moves to the device)."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["SelectKeys"]


class SelectKeys(torch.utils.data.Dataset):
    """Items of ``dataset`` (dicts) with only ``keys``, in that order."""

    def __init__(self, dataset, keys: Sequence[str]) -> None:
        self.dataset = dataset
        self.keys = tuple(keys)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return {k: item[k] for k in self.keys}
