"""Action-recognition video lists (ARID and normal-light data) and their clip datasets (METHOD.md §6).

A list file has one video per line, ``id<TAB>label<TAB>relative/path.avi`` (ARID's ``list_cvt/*.txt`` form): the
label is the class index (ARID's 11 classes, :data:`ARID_CLASSES`, in that order), the path is relative to the
video folder. :func:`read_video_list` parses a list and refuses what does not fit, naming ``file:line``;
:func:`scan_videos` probes every listed video (present, decodable, long enough for one clip); both feed the
datasets and ``simmm data check`` (:func:`check_video_list`).

:class:`VideoClipDataset` decodes clips (:mod:`simmm.data.clips`, :mod:`simmm.data.video`):

* training (``clips=0``): one clip per visit, its start drawn from torch's RNG (or the middle of the video with
  ``random_start=False``); frames fitted to ``size`` (resized to cover it, centre-cropped) → ``{"image": float
  (3, T, h, w) in [0, 1], "target"}``;
* evaluation (``clips=K``): ``K`` clips per video at starts seeded by ``(seed, index)`` → ``{"clips": uint8
  (K, 3, T, h, w), "target"}`` (``uint8`` keeps K clips of a video small in the loader; the task converts them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch

from ..errors import DataError
from .check import DataReport, capped
from .clips import center_start, check_length, clip_indices, eval_starts, random_start
from .video import VideoInfo, fit_frames, probe_video, read_frames

__all__ = ["ARID_CLASSES", "VideoEntry", "read_video_list", "scan_videos", "check_video_list", "VideoClipDataset"]

PathLike = Union[str, "os.PathLike[str]"]

ARID_CLASSES: Tuple[str, ...] = ("Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk",
                                 "Wave")
"""ARID's 11 action classes, in the order of its labels 0..10."""

LIST_FORM = "id<TAB>label<TAB>relative/path.avi"
_MAX_LISTED = 5


@dataclass(frozen=True)
class VideoEntry:
    """One line of a list file: the video's ``id``, class ``label``, absolute ``path`` and where it was listed."""

    id: str
    label: int
    path: Path
    where: str


def read_video_list(list_file: PathLike, video_dir: PathLike, num_classes: int) -> List[VideoEntry]:
    """Parse a list file; each path is taken relative to ``video_dir``. Blank lines are skipped.

    Raises :class:`DataError` for a missing list, a line that is not ``id<TAB>label<TAB>path``, or a label that
    is not an integer in ``0 .. num_classes - 1``, naming ``file:line``.
    """
    list_file, video_dir = Path(list_file), Path(video_dir)
    if not list_file.is_file():
        raise DataError(f"video list {list_file} does not exist; expected a text file of lines {LIST_FORM}")
    entries: List[VideoEntry] = []
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{list_file}:{n}"
        fields = line.strip().split("\t")
        if len(fields) != 3:
            raise DataError(f"{where}: {line.strip()!r} has {len(fields)} tab-separated field(s); expected "
                            f"{LIST_FORM}")
        vid, label, rel = (f.strip() for f in fields)
        try:
            value = int(label)
        except ValueError:
            raise DataError(f"{where}: label {label!r} is not an integer; expected a class index "
                            f"0..{num_classes - 1}") from None
        if not 0 <= value < num_classes:
            raise DataError(f"{where}: label {value} is outside the class set; expected 0..{num_classes - 1} "
                            f"({num_classes} classes)")
        entries.append(VideoEntry(vid, value, video_dir / rel, where))
    if not entries:
        raise DataError(f"video list {list_file} lists no videos; expected lines {LIST_FORM}")
    return entries


def scan_videos(entries: Sequence[VideoEntry], length: int, interval: int, decode_all: bool = False
                ) -> Tuple[List[Optional[VideoInfo]], List[str]]:
    """Probe every listed video (:func:`~simmm.data.video.probe_video`; ``decode_all``: decode every frame):
    ``(infos, problems)``, ``infos[i]`` None where entry ``i`` is missing, unreadable or shorter than one clip
    (each such video named in ``problems``)."""
    infos: List[Optional[VideoInfo]] = []
    problems: List[str] = []
    for entry in entries:
        try:
            info = probe_video(entry.path, decode_all=decode_all)
            check_length(info.frames, length, interval, entry.path)
        except DataError as e:
            infos.append(None)
            problems.append(f"{entry.where}: {e}")
            continue
        infos.append(info)
    return infos, problems


def check_video_list(name: str, list_file: PathLike, video_dir: PathLike, classes: Sequence[str], length: int,
                     interval: int) -> DataReport:
    """The data check of one list: the list file, then every video it names, each decoded frame by frame
    (``simmm data check``)."""
    report = DataReport(f"{name}: list {list_file} (lines {LIST_FORM}), videos under {video_dir}")
    try:
        entries = read_video_list(list_file, video_dir, len(classes))
    except DataError as e:
        report.entry("MISSING" if not Path(list_file).is_file() else "ERROR", str(e))
        return report
    infos, problems = scan_videos(entries, length, interval, decode_all=True)
    counts = [0] * len(classes)
    for entry, info in zip(entries, infos):
        if info is not None:
            counts[entry.label] += 1
    good = sum(counts)
    report.entry("OK" if not problems else "ERROR", f"{good} of {len(entries)} videos readable with a clip of "
                 f"{length} frames at interval {interval}", summary=True)
    for problem in problems:
        report.problems.append(problem)
    report.lines.extend(f"ERROR    {p}" for p in capped(problems, _MAX_LISTED, "unreadable or too short videos"))
    report.lines.append("per class: " + ", ".join(f"{c} {k}" for c, k in zip(classes, counts)))
    empty = [c for c, k in zip(classes, counts) if k == 0]
    if empty:
        report.entry("WARN", f"no readable video of class(es) {', '.join(empty)}")
    return report


class VideoClipDataset(torch.utils.data.Dataset):
    """Clips of listed videos (module docstring). Build with :meth:`from_list`, which probes every video first.

    Args:
        entries: the list's videos.
        frames: each video's frame count.
        length, interval: clip length and frame interval (SMM: 16, 2).
        size: ``(h, w)`` the frames are fitted to.
        clips: 0 for training (one random clip per visit), else the number of evaluation clips per video.
        seed: evaluation: the clip starts of video ``i`` are drawn from a generator seeded ``seed * 1000003 + i``.
        random_start: training: draw the start (``False``: the middle of the video).
    """

    def __init__(self, entries: Sequence[VideoEntry], frames: Sequence[int], length: int, interval: int,
                 size: Tuple[int, int], clips: int = 0, seed: int = 0, random_start: bool = True) -> None:
        self.entries, self.frames = list(entries), [int(n) for n in frames]
        self.length, self.interval, self.size = int(length), int(interval), (int(size[0]), int(size[1]))
        self.clips, self.seed, self.random_start = int(clips), int(seed), bool(random_start)

    @classmethod
    def from_list(cls, list_file: PathLike, video_dir: PathLike, num_classes: int, length: int, interval: int,
                  size: Tuple[int, int], **kwargs) -> "VideoClipDataset":
        """Read the list and probe every video; a missing, unreadable or too-short video raises
        :class:`DataError` naming it (all of them: ``simmm data check``) before any clip is decoded."""
        entries = read_video_list(list_file, video_dir, num_classes)
        infos, problems = scan_videos(entries, length, interval)
        if problems:
            listed = "; ".join(problems[:_MAX_LISTED])
            raise DataError(f"{len(problems)} of the {len(entries)} videos of {list_file} cannot be used: {listed}"
                            f"{' ...' if len(problems) > _MAX_LISTED else ''} (`simmm data check` lists all)")
        return cls(entries, [info.frames for info in infos], length, interval, size, **kwargs)

    def __len__(self) -> int:
        return len(self.entries)

    def _clip(self, entry: VideoEntry, start: int) -> torch.Tensor:
        """uint8 ``(3, T, h, w)``."""
        frames = read_frames(entry.path, clip_indices(start, self.length, self.interval))
        return fit_frames(frames, self.size).transpose(0, 1)

    def __getitem__(self, index: int) -> dict:
        entry, n = self.entries[index], self.frames[index]
        target = torch.tensor(entry.label)
        if self.clips:
            starts = eval_starts(n, self.length, self.interval, self.clips, self.seed * 1_000_003 + index)
            # decode once up to the last clip's end, then cut the clips out
            indices = [i for s in starts for i in clip_indices(s, self.length, self.interval)]
            frames = fit_frames(read_frames(entry.path, indices), self.size)
            clips = frames.reshape(self.clips, self.length, *frames.shape[1:]).transpose(1, 2)
            return {"clips": clips.contiguous(), "target": target}
        start = (random_start(n, self.length, self.interval) if self.random_start
                 else center_start(n, self.length, self.interval))
        return {"image": self._clip(entry, start).float().div_(255.0), "target": target}
