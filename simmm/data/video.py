"""Reading and writing video files with PyAV (FFmpeg's decoders), and fitting frames to a size.

Every video simmm reads goes through :func:`probe_video` (how many frames, what size) and :func:`read_frames`
(the frames at given indices, decoded in order). Both raise :class:`~simmm.errors.DataError` naming the file for
a missing, unreadable or too-short video, so that the problem shows before training (``simmm data check``) or,
at the latest, names the file inside a data-loader worker.

Frames are ``uint8`` tensors ``(T, 3, H, W)`` (RGB); :func:`fit_frames` resizes them (bilinear, antialiased) to
cover a box and centre-crops them to it. :func:`write_video` writes frames as a video with the same library (the
synthetic test trees use it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError

__all__ = ["VIDEO_EXTENSIONS", "VideoInfo", "probe_video", "read_frames", "fit_frames", "write_video"]

PathLike = Union[str, "os.PathLike[str]"]

VIDEO_EXTENSIONS: Tuple[str, ...] = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".flv")
"""File extensions of videos (compared case-insensitively)."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds: the number of frames and their size."""

    frames: int
    height: int
    width: int


def _open(path: Path):
    import av

    if not path.is_file():
        raise DataError(f"video {path} does not exist" if not path.exists() else f"video {path} is not a file")
    try:
        container = av.open(str(path))
    except Exception as e:  # av.error.* (InvalidDataError, ...): the file is not a video FFmpeg can read
        raise DataError(f"video {path} is unreadable ({type(e).__name__}: {e}); expected a video file "
                        f"({', '.join(VIDEO_EXTENSIONS)}) that FFmpeg decodes") from e
    if not container.streams.video:
        container.close()
        raise DataError(f"video {path} holds no video stream; expected a video file")
    return container


def probe_video(path: PathLike, decode_all: bool = False) -> VideoInfo:
    """Number of frames and frame size of the video at ``path``.

    The frames are counted as the stream's packets (demuxed, not decoded: milliseconds), not taken from the
    container's header, which can promise more frames than the file holds (a truncated file; OpenCV's sample
    ``tree.avi`` says 444 and holds 68). The first frame is decoded. ``decode_all``: decode every frame and count
    those (what ``simmm data check`` does: a stream that fails to decode halfway is found there, not in training).
    Raises :class:`DataError` naming the file.
    """
    path = Path(path)
    container = _open(path)
    decoded = 0
    try:
        stream = container.streams.video[0]
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        container.seek(0)
        first = None
        for frame in container.decode(stream):
            first = first or frame
            decoded += 1
            if not decode_all:
                break
    except Exception as e:
        raise DataError(f"video {path}: decoding failed after {decoded} frame(s) ({type(e).__name__}: {e}); "
                        "expected a decodable video") from e
    finally:
        container.close()
    if first is None or frames <= 0:
        raise DataError(f"video {path} has no frames; expected a video with at least one decodable frame")
    return VideoInfo(frames=decoded if decode_all else frames, height=int(first.height), width=int(first.width))


def read_frames(path: PathLike, indices: Sequence[int]) -> torch.Tensor:
    """The frames of ``path`` at ``indices`` (0-based, any order, repeats allowed): ``uint8 (len, 3, H, W)``.

    Decodes from the start up to the largest index (the videos of action data sets are short; seeking to key
    frames would save little and is not exact in every container). Raises :class:`DataError` naming the file
    when it cannot be decoded or ends before the largest index.
    """
    path = Path(path)
    if not len(indices):
        raise ValueError("read_frames: no frame indices")
    if min(indices) < 0:
        raise ValueError(f"read_frames: negative frame index in {list(indices)}")
    wanted = set(int(i) for i in indices)
    last = max(wanted)
    found: dict[int, np.ndarray] = {}
    container = _open(path)
    decoded = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            decoded = i + 1
            if i in wanted:
                found[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    except Exception as e:
        raise DataError(f"video {path}: decoding failed after {decoded} frame(s) ({type(e).__name__}: {e}); "
                        "expected a decodable video (`simmm data check` lists such files)") from e
    finally:
        container.close()
    if last not in found:
        raise DataError(f"video {path} ended after {decoded} frame(s), but frame {last} was asked for; the file "
                        "is shorter than its header says (truncated?) — replace it or remove it from the list")
    return torch.from_numpy(np.stack([found[int(i)] for i in indices])).permute(0, 3, 1, 2).contiguous()


def fit_frames(frames: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Resize ``(T, 3, H, W)`` frames (bilinear, antialiased; keeping the aspect ratio) so that they cover
    ``size = (h, w)``, then centre-crop them to it. ``uint8`` in, ``uint8`` out (rounded); float stays float."""
    h, w = int(size[0]), int(size[1])
    H, W = frames.shape[-2:]
    scale = max(h / H, w / W)
    new = (max(h, round(H * scale)), max(w, round(W * scale)))
    out = frames
    if new != (H, W):
        x = frames.float()
        x = F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=new[0] < H)
        out = x.round().clamp(0, 255).to(frames.dtype) if not frames.is_floating_point() else x
    top, left = (new[0] - h) // 2, (new[1] - w) // 2
    return out[..., top:top + h, left:left + w]


def write_video(path: PathLike, frames, fps: int = 10, codec: str = "mpeg4") -> Path:
    """Write ``uint8`` RGB frames ``(T, H, W, 3)`` (numpy or tensor; H, W even for 4:2:0 codecs) as a video."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = frames.numpy() if torch.is_tensor(frames) else np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"write_video: expected uint8 frames (T, H, W, 3), got {arr.dtype} {arr.shape}")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = int(arr.shape[2]), int(arr.shape[1])
        stream.pix_fmt = "yuv420p"
        for image in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
