"""Distributed helpers: thin wrappers over ``torch.distributed`` that also work in a single process."""
from __future__ import annotations

import torch.distributed as td


def is_distributed() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that logs and saves (rank 0)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        td.barrier()
