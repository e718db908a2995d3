r"""Which frames a clip takes: ``length`` frames, ``interval`` frames apart (SMM's action recognition: 16 frames at
interval 2, METHOD.md §4.3).

A clip starting at frame ``s`` takes the frames ``s, s + i, ..., s + (L - 1) i``; it spans
``(L - 1) i + 1`` frames, so a video of ``n`` frames has the starts ``0 .. n - span`` (a video shorter than the
span is an error: :func:`check_length`). Training draws one start per visit (:func:`random_start`); evaluation
takes ``K`` starts per video drawn from a generator seeded by the video's index (:func:`eval_starts`), so every
run, every batch size and every number of processes scores the same clips.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from ..errors import DataError

__all__ = ["clip_span", "clip_indices", "check_length", "random_start", "center_start", "eval_starts"]


def clip_span(length: int, interval: int) -> int:
    """Frames a clip covers from its first to its last frame: ``(length - 1) * interval + 1``."""
    if length < 1 or interval < 1:
        raise ValueError(f"clip length and interval must be >= 1, got {length} and {interval}")
    return (length - 1) * interval + 1


def clip_indices(start: int, length: int, interval: int) -> List[int]:
    """Frame indices of the clip starting at ``start``: ``[start, start + interval, ...]`` (``length`` of them)."""
    clip_span(length, interval)
    return [int(start) + k * int(interval) for k in range(int(length))]


def check_length(frames: int, length: int, interval: int, path) -> None:
    """Raise :class:`DataError` naming ``path`` when a video of ``frames`` frames is too short for one clip."""
    span = clip_span(length, interval)
    if frames < span:
        raise DataError(f"video {path} has {frames} frame(s); a clip of {length} frames at interval {interval} "
                        f"needs at least {span} — remove it from the list, or shorten the clips "
                        "(data.clip_length / data.interval)")


def random_start(frames: int, length: int, interval: int, generator: Optional[torch.Generator] = None) -> int:
    """A start drawn uniformly from ``0 .. frames - span`` (torch's global RNG unless ``generator``)."""
    last = frames - clip_span(length, interval)
    if last < 0:
        raise ValueError(f"a video of {frames} frames is too short for a clip spanning "
                         f"{clip_span(length, interval)}")
    return int(torch.randint(0, last + 1, (), generator=generator))


def center_start(frames: int, length: int, interval: int) -> int:
    """The start that puts the clip in the middle of the video: ``(frames - span) // 2``."""
    return max(0, (frames - clip_span(length, interval)) // 2)


def eval_starts(frames: int, length: int, interval: int, count: int, seed: int) -> List[int]:
    """``count`` starts drawn uniformly (with replacement) from ``0 .. frames - span`` by a generator seeded with
    ``seed``: the evaluation clips of one video (seed it with the run's seed and the video's index)."""
    g = torch.Generator().manual_seed(int(seed))
    last = frames - clip_span(length, interval)
    if last < 0:
        raise ValueError(f"a video of {frames} frames is too short for a clip spanning "
                         f"{clip_span(length, interval)}")
    return torch.randint(0, last + 1, (int(count),), generator=g).tolist()
