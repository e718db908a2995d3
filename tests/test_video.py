"""Video files (PyAV), clip sampling, ARID-form list files and the clip datasets, on tiny videos written here."""
from pathlib import Path

import numpy as np
import pytest
import torch

from simmm.data.action import VideoClipDataset, check_video_list, read_video_list
from simmm.data.clips import center_start, check_length, clip_indices, clip_span, eval_starts, random_start
from simmm.data.video import fit_frames, probe_video, read_frames, write_video
from simmm.errors import DataError

GREY_STEP = 20  # frame t of a ramp video is the grey level 20 * t


def ramp_video(path, frames=12, size_hw=(16, 16)):
    """A video whose frame t is uniformly grey at level 20 * t: a decoded frame says which frame it is."""
    h, w = size_hw
    video = np.stack([np.full((h, w, 3), GREY_STEP * t, np.uint8) for t in range(frames)])
    return write_video(path, video)


def frame_numbers(frames: torch.Tensor) -> list:
    """Which ramp frame each decoded frame is (MPEG-4 is lossy: a few grey levels off)."""
    return [round(float(f.float().mean()) / GREY_STEP) for f in frames]


def test_written_video_probes_and_reads_back(tmp_path):
    path = ramp_video(tmp_path / "v.avi", frames=12, size_hw=(16, 24))
    info = probe_video(path)
    assert (info.frames, info.height, info.width) == (12, 16, 24)
    frames = read_frames(path, [3, 5, 7, 9])
    assert frames.shape == (4, 3, 16, 24) and frames.dtype == torch.uint8
    assert frame_numbers(frames) == [3, 5, 7, 9]
    assert frame_numbers(read_frames(path, [9, 0, 9])) == [9, 0, 9]  # any order, repeats


def test_unreadable_missing_and_short_videos_name_the_file(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(DataError, match=r"junk\.avi is unreadable"):
        probe_video(junk)
    with pytest.raises(DataError, match=r"absent\.avi does not exist"):
        read_frames(tmp_path / "absent.avi", [0])
    path = ramp_video(tmp_path / "short.avi", frames=6)
    with pytest.raises(DataError, match=r"short\.avi ended after 6 frame\(s\), but frame 8 was asked for"):
        read_frames(path, [0, 8])


def test_a_truncated_video_counts_the_frames_it_holds_not_those_its_header_promises(tmp_path):
    import av

    noise = np.random.default_rng(0).integers(0, 256, (40, 32, 48, 3), dtype=np.uint8)  # frames that stay big
    path = write_video(tmp_path / "cut.avi", noise)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the AVI header still says 40 frames
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 40
    info = probe_video(path)
    assert 0 < info.frames < 40
    assert probe_video(path, decode_all=True).frames == info.frames
    assert read_frames(path, [info.frames - 1]).shape == (1, 3, 32, 48)
    with pytest.raises(DataError, match=rf"cut\.avi ended after {info.frames} frame\(s\), but frame 39 was asked"):
        read_frames(path, [39])


def test_clip_indices_by_hand():
    assert clip_span(16, 2) == 31 and clip_span(4, 3) == 10 and clip_span(1, 5) == 1
    assert clip_indices(3, 4, 2) == [3, 5, 7, 9]
    assert clip_indices(0, 16, 2) == list(range(0, 31, 2))
    assert center_start(41, 16, 2) == 5  # (41 - 31) // 2
    with pytest.raises(DataError, match=r"video a/b\.avi has 30 frame\(s\); a clip of 16 frames at interval 2 "
                                        r"needs at least 31"):
        check_length(30, 16, 2, "a/b.avi")
    check_length(31, 16, 2, "a/b.avi")


def test_random_and_evaluation_starts_cover_exactly_the_valid_range():
    # a video of 33 frames has the starts 0, 1, 2 for a 16-frame clip at interval 2 (span 31)
    g = torch.Generator().manual_seed(0)
    seen = {random_start(33, 16, 2, generator=g) for _ in range(200)}
    assert seen == {0, 1, 2}
    assert {random_start(31, 16, 2, generator=g) for _ in range(20)} == {0}
    starts = eval_starts(33, 16, 2, count=20, seed=7)
    assert len(starts) == 20 and set(starts) <= {0, 1, 2} and len(set(starts)) > 1
    assert eval_starts(33, 16, 2, count=20, seed=7) == starts  # seeded: every run scores the same clips
    assert eval_starts(100, 16, 2, count=20, seed=8) != eval_starts(100, 16, 2, count=20, seed=7)


def test_fit_frames_covers_then_centre_crops():
    frames = torch.arange(2 * 3 * 24 * 32, dtype=torch.float32).view(2, 3, 24, 32)
    # 24x32 already covers 24x24: no resize, columns 4..27 kept
    assert torch.equal(fit_frames(frames, (24, 24)), frames[..., 4:28])
    # covering 12x12 halves the frames (12x16), then 2 columns are cut on each side
    out = fit_frames(torch.full((1, 3, 24, 32), 7, dtype=torch.uint8), (12, 12))
    assert out.shape == (1, 3, 12, 12) and out.dtype == torch.uint8 and bool((out == 7).all())


def write_list(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in rows))
    return path


def test_list_file_errors_name_file_and_line(tmp_path):
    lst = tmp_path / "list.txt"
    with pytest.raises(DataError, match=r"video list .*list\.txt does not exist"):
        read_video_list(lst, tmp_path, 11)
    write_list(lst, ["0\t0\tDrink/a.avi", "1 1 Jump/b.avi"])
    with pytest.raises(DataError, match=r"list\.txt:2: '1 1 Jump/b\.avi' has 1 tab-separated field\(s\); expected "
                                        r"id<TAB>label<TAB>relative/path\.avi"):
        read_video_list(lst, tmp_path, 11)
    write_list(lst, ["0\t0\tDrink/a.avi", "", "1\tjump\tJump/b.avi"])
    with pytest.raises(DataError, match=r"list\.txt:3: label 'jump' is not an integer"):
        read_video_list(lst, tmp_path, 11)
    write_list(lst, ["0\t11\tWave/a.avi"])
    with pytest.raises(DataError, match=r"list\.txt:1: label 11 is outside the class set; expected 0\.\.10"):
        read_video_list(lst, tmp_path, 11)
    write_list(lst, ["0\t10\tWave/a.avi", "", "7\t3\tPour/b c.avi"])
    entries = read_video_list(lst, tmp_path / "videos", 11)
    assert [(e.id, e.label, e.path) for e in entries] == [("0", 10, tmp_path / "videos" / "Wave/a.avi"),
                                                         ("7", 3, tmp_path / "videos" / "Pour/b c.avi")]


def test_too_short_video_is_refused_before_training_and_listed_by_the_check(tmp_path):
    ramp_video(tmp_path / "v" / "Drink" / "ok.avi", frames=12)
    ramp_video(tmp_path / "v" / "Jump" / "short.avi", frames=5)
    lst = write_list(tmp_path / "list.txt", ["0\t0\tDrink/ok.avi", "1\t1\tJump/short.avi", "2\t2\tPick/gone.avi"])
    with pytest.raises(DataError, match=r"2 of the 3 videos of .*list\.txt cannot be used: .*list\.txt:2: video "
                                        r".*short\.avi has 5 frame\(s\); a clip of 4 frames at interval 2 needs at "
                                        r"least 7 .*; .*list\.txt:3: video .*gone\.avi does not exist"):
        VideoClipDataset.from_list(lst, tmp_path / "v", 11, 4, 2, (16, 16))
    report = check_video_list("train", lst, tmp_path / "v", [f"c{i}" for i in range(11)], 4, 2)
    assert not report.ok and len(report.problems) == 2
    text = report.format()
    assert "1 of 3 videos readable" in text and "short.avi" in text and "gone.avi" in text
    assert "per class: c0 1, c1 0" in text


def test_training_clips_and_seeded_evaluation_clips(tmp_path):
    ramp_video(tmp_path / "v" / "a.avi", frames=12)
    ramp_video(tmp_path / "v" / "b.avi", frames=10)
    lst = write_list(tmp_path / "list.txt", ["0\t4\ta.avi", "1\t2\tb.avi"])
    train = VideoClipDataset.from_list(lst, tmp_path / "v", 11, 4, 2, (8, 8))
    assert train.frames == [12, 10]
    torch.manual_seed(0)
    item = train[0]
    assert item["image"].shape == (3, 4, 8, 8) and item["image"].dtype == torch.float32 and int(item["target"]) == 4
    first = frame_numbers((item["image"] * 255).transpose(0, 1))
    assert first == list(range(first[0], first[0] + 8, 2)) and 0 <= first[0] <= 5  # 12 - 7
    middle = VideoClipDataset.from_list(lst, tmp_path / "v", 11, 4, 2, (8, 8), random_start=False)
    assert frame_numbers((middle[1]["image"] * 255).transpose(0, 1)) == [1, 3, 5, 7]  # (10 - 7) // 2 = 1
    test = VideoClipDataset.from_list(lst, tmp_path / "v", 11, 4, 2, (8, 8), clips=5, seed=3)
    item = test[1]
    assert item["clips"].shape == (5, 3, 4, 8, 8) and item["clips"].dtype == torch.uint8
    starts = eval_starts(10, 4, 2, 5, 3 * 1_000_003 + 1)  # seeded by the run's seed and the video's index
    for clip, start in zip(item["clips"], starts):
        assert frame_numbers(clip.transpose(0, 1)) == clip_indices(start, 4, 2)
    assert torch.equal(test[1]["clips"], item["clips"])


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian's opencv-doc: a real street video


@pytest.mark.skipif(not VTEST.is_file(), reason="needs Debian's opencv-doc (vtest.avi)")
def test_a_real_street_video_decodes_into_a_clip():
    info = probe_video(VTEST)
    assert (info.frames, info.height, info.width) == (795, 576, 768)
    frames = read_frames(VTEST, clip_indices(100, 16, 2))
    clip = fit_frames(frames, (224, 224))
    assert clip.shape == (16, 3, 224, 224) and clip.dtype == torch.uint8
    assert 60 < float(clip.float().mean()) < 200 and float(clip.float().std()) > 20  # a real picture, not blank
