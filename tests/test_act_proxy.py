"""The action proxy's data: camera-motion labels are true (a bright dot moves the way the class says; a pan's time
reversal is the opposite pan), windows stay inside the frame, training and test clips come from disjoint time spans,
and the ARID-form tree holds what it says (night twins, the mixed stream's presets in turn, cached per seed)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import act_clips as A  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def dot_frames(n=A.FRAMES, h=120, w=160, at=(60, 80)):
    """``n`` identical frames, black with one bright 3x3 dot at ``at`` = (row, col)."""
    frames = torch.zeros(n, 3, h, w, dtype=torch.uint8)
    frames[:, :, at[0] - 1:at[0] + 2, at[1] - 1:at[1] + 2] = 255
    return frames


def centroid(frame):
    """(row, col) of a frame's brightness, in output pixels."""
    weight = frame.float().sum(0)
    rows, cols = torch.meshgrid(torch.arange(weight.shape[0]), torch.arange(weight.shape[1]), indexing="ij")
    total = weight.sum()
    return float((weight * rows).sum() / total), float((weight * cols).sum() / total)


def test_the_dot_moves_the_way_the_class_says():
    """A pan moves the window over a still scene, so the scene moves the other way in the clip; a zoom in magnifies
    (the dot leaves the centre), a zoom out the reverse; static keeps it still."""
    frames = dot_frames()
    out = 32
    # windows placed by hand so that the dot stays in view: side 60 px, 2.5 px per frame, 15 frames
    step = A.PAN_SPEED * 60
    windows = {"static": A.Window(50, 30, 60), "pan_left": A.Window(70, 30, 60, dx=-step),
               "pan_right": A.Window(30, 30, 60, dx=step), "pan_up": A.Window(50, 50, 60, dy=-step),
               "pan_down": A.Window(50, 10, 60, dy=step), "zoom_in": A.Window(40, 20, 60, scale=A.ZOOM),
               "zoom_out": A.Window(52, 32, 36, scale=1 / A.ZOOM)}
    moved = {}
    for name, window in windows.items():
        clip = A.cut(frames, window, out)
        (r0, c0), (r1, c1) = centroid(clip[0]), centroid(clip[-1])
        moved[name] = (r1 - r0, c1 - c0)
    px = step * (A.FRAMES - 1) * out / 60  # the window's travel in output pixels
    assert moved["static"] == pytest.approx((0.0, 0.0), abs=0.2)
    assert moved["pan_left"] == pytest.approx((0.0, px), abs=0.6)
    assert moved["pan_right"] == pytest.approx((0.0, -px), abs=0.6)
    assert moved["pan_up"] == pytest.approx((px, 0.0), abs=0.6)
    assert moved["pan_down"] == pytest.approx((-px, 0.0), abs=0.6)
    # the dot sits off the zoom's centre (row 50, col 70 of the source): it moves away when zooming in
    c = (out - 1) / 2
    d_in = [abs(x - c) for x in centroid(A.cut(frames, windows["zoom_in"], out)[-1])]
    d_in0 = [abs(x - c) for x in centroid(A.cut(frames, windows["zoom_in"], out)[0])]
    assert all(a > b + 1 for a, b in zip(d_in, d_in0))
    d_out = [abs(x - c) for x in centroid(A.cut(frames, windows["zoom_out"], out)[-1])]
    d_out0 = [abs(x - c) for x in centroid(A.cut(frames, windows["zoom_out"], out)[0])]
    assert all(a < b - 1 for a, b in zip(d_out, d_out0))


def test_a_pan_played_backwards_is_the_opposite_pan_and_a_zoom_in_the_zoom_out():
    """The classes need the frames' order: the reversed clip of a real (moving) scene through the reversed window
    equals the clip reversed, frame for frame, and the reversed window is the opposite class."""
    torch.manual_seed(0)
    n = A.FRAMES
    frames = (torch.rand(n, 3, 120, 160) * 255).to(torch.uint8)  # every frame different: a moving scene
    rng = np.random.default_rng(0)
    for name, opposite in (("pan_right", "pan_left"), ("pan_down", "pan_up"), ("zoom_in", "zoom_out")):
        w = A.sample_window(name, 120, 160, n, rng)
        x, y, side = w.box(n - 1, n)
        backwards = A.Window(x, y, side, -w.dx, -w.dy, 1 / w.scale)
        torch.testing.assert_close(A.cut(frames.flip(0), backwards, 24), A.cut(frames, w, 24).flip(0), atol=1,
                                   rtol=0)
        assert (np.sign(backwards.dx), np.sign(backwards.dy), backwards.scale < 1) == \
            {"pan_left": (-1, 0, False), "pan_up": (0, -1, False), "zoom_out": (0, 0, False)}[opposite]


def test_sampled_windows_stay_inside_the_frame_and_are_their_class():
    rng = np.random.default_rng(1)
    for h, w in ((192, 256), (192, 452), (192, 256)):
        for name in A.CLASSES:
            for _ in range(50):
                win = A.sample_window(name, h, w, A.FRAMES, rng)
                for t in range(A.FRAMES):
                    x, y, side = win.box(t, A.FRAMES)
                    assert -0.5 <= x and -0.5 <= y and x + side <= w + 0.5 and y + side <= h + 0.5
                first, last = win.box(0, A.FRAMES), win.box(A.FRAMES - 1, A.FRAMES)
                dx, dy, grow = last[0] - first[0] + (last[2] - first[2]) / 2, last[1] - first[1] + (
                    last[2] - first[2]) / 2, last[2] / first[2]
                expected = {"static": (0, 0, 1), "pan_left": (-1, 0, 1), "pan_right": (1, 0, 1),
                            "pan_up": (0, -1, 1), "pan_down": (0, 1, 1), "zoom_in": (0, 0, A.ZOOM),
                            "zoom_out": (0, 0, 1 / A.ZOOM)}[name]
                assert (np.sign(round(dx, 6)), np.sign(round(dy, 6))) == expected[:2]
                assert grow == pytest.approx(expected[2])


def test_training_and_test_clips_come_from_disjoint_time_spans():
    lengths, sizes = {"a": 795, "b": 68, "c": 250}, {"a": (192, 256), "b": (192, 256), "c": (192, 452)}
    train = A.plan_clips(lengths, sizes, "train", 5, seed=3)
    test = A.plan_clips(lengths, sizes, "test", 5, seed=3)
    assert len(train) == len(test) == 3 * len(A.CLASSES) * 5
    for video, n in lengths.items():
        cut_at = int(A.TRAIN_FRACTION * n)
        train_frames = {f for s in train if s.video == video for f in range(s.start, s.start + A.FRAMES)}
        test_frames = {f for s in test if s.video == video for f in range(s.start, s.start + A.FRAMES)}
        assert max(train_frames) < cut_at <= min(test_frames) and max(test_frames) < n
    assert sorted({s.label for s in train}) == list(range(len(A.CLASSES)))


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    """Two real-format source videos (60 frames, 48x64, a moving pattern) and a tree of 1 clip per class and video."""
    from simmm.data.video import write_video

    base = tmp_path_factory.mktemp("act")
    rng = np.random.default_rng(0)
    sources = {}
    for name in ("one", "two"):
        scene = rng.integers(0, 256, (48, 128, 3)).astype(np.uint8)
        frames = np.stack([scene[:, t:t + 64] for t in range(60)])
        sources[name] = write_video(base / f"{name}.avi", frames, codec="ffv1")
    config = A.TreeConfig(train_per_class=1, test_per_class=1, size=16, presets=("street",), mixed=True)
    root = A.build_tree(base / "cache", 5, config, sources, log=lambda _: None)
    return root, sources, config, base


def test_the_tree_is_arid_form_with_night_twins_and_is_built_once(tiny_tree):
    from simmm.data.action import read_video_list
    from simmm.data.video import probe_video

    root, sources, config, base = tiny_tree
    names = ("train", "day_test", "night_street", "night_mixed")
    lists = {n: read_video_list(root / A.LISTS / f"{n}.txt", root / A.VIDEOS, len(A.CLASSES)) for n in names}
    assert len(lists["train"]) == len(lists["day_test"]) == 2 * len(A.CLASSES)
    labels = [e.label for e in lists["day_test"]]
    assert all([e.label for e in lists[n]] == labels for n in names[2:])  # night twins keep their labels
    info = probe_video(lists["night_mixed"][0].path)
    assert (info.frames, info.height, info.width) == (A.FRAMES, 16, 16)
    assert not (root.parent / (root.name + ".tmp")).exists()
    stamp = (root / "done.json").stat().st_mtime_ns
    assert A.build_tree(base / "cache", 5, config, sources) == root and (root / "done.json").stat().st_mtime_ns == stamp
    assert A.tree_key(config, 6, sources) != A.tree_key(config, 5, sources)


def test_night_clips_one_night_per_clip_and_the_mixed_stream_takes_the_presets_in_turn():
    from simmm.night import PRESETS, simulate_night

    torch.manual_seed(0)
    clips = [(torch.rand(4, 3, 16, 16) * 255).to(torch.uint8) for _ in range(5)]
    mixed = A.night_clips(clips, "mixed", seed=2)
    names = list(PRESETS)
    for i, clip in enumerate(clips):
        x = clip.permute(1, 0, 2, 3)[None].float() / 255
        alone = simulate_night(x, names[i % len(names)], seed=[2 * 1_000_003 + i])
        torch.testing.assert_close(mixed[i], (alone[0].permute(1, 0, 2, 3) * 255).round().to(torch.uint8))
    assert not torch.equal(A.night_clips(clips, "street", seed=2)[0], A.night_clips(clips, "street", seed=3)[0])


def test_the_proxy_recipe_never_flips_and_names_the_clip_classes():
    from simmm.recipe import load_recipe

    recipe = load_recipe(ROOT / "benchmarks" / "act_proxy.yaml", [f"data.train.root={ROOT}"] + [
        f"data.eval.{s}.root={ROOT}" for s in ("day_test", "night_street", "night_urban", "night_dark", "night_mixed")])
    assert recipe.data.hflip is False  # a flip turns a pan left into a pan right
    assert tuple(recipe.data.classes) == A.CLASSES and recipe.data.adabn is True
