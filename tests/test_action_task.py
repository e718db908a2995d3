"""Action-recognition task: multi-clip scoring (hand values), clip-consistent views, SMM's per-clip darkening, data
checks, and the smoke recipe end to end with a bitwise resume, on a tiny ARID-format tree."""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from simmm.data.synthetic import ARID_LISTS, make_arid_tree, write_test_video
from simmm.engine import Engine
from simmm.errors import DataError
from simmm.recipe import load_recipe
from simmm.task import EvalSet
from simmm.tasks.action import ActionRecognition, clip_average, topk_hits
from test_engine import assert_same_state, crash_and_resume

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "act_smoke.yaml"


def tree_overrides(root):
    return [f"data.train.root={root}", f"data.eval.arid_test.root={root}"]


def smoke_recipe(tmp_path, *extra, root=None):
    root = root or make_arid_tree(tmp_path / "arid")
    return load_recipe(SMOKE, [*tree_overrides(root), f"output_dir={tmp_path / 'run'}", *extra])


def test_clip_average_is_the_mean_of_the_clips_softmax_by_hand():
    # clip 1: logits 0, 0, 0 -> 1/3 each; clip 2: logits 0, ln 2, 0 -> 1/4, 1/2, 1/4; mean: 7/24, 10/24, 7/24
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0]]])
    torch.testing.assert_close(clip_average(logits), torch.tensor([[7 / 24, 10 / 24, 7 / 24]]))
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.15, 0.05], [0.3, 0.1, 0.2, 0.25, 0.15]])
    assert topk_hits(scores, torch.tensor([1, 4]), 1) == 1
    assert topk_hits(scores, torch.tensor([2, 4]), 2) == 1  # row 0: top-2 = {1, 2}; row 1: {0, 3}
    assert topk_hits(scores, torch.tensor([4, 1]), 5) == 2


class TableModel(nn.Module):
    """Logits looked up by a clip's first pixel: clip value v -> TABLE[v]."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, clips):
        return self.table[(clips[:, 0, 0, 0, 0] * 255).round().long()]


def test_evaluation_averages_the_softmax_of_20_clips(tmp_path):
    """Hand values, 7 classes, 20 clips per video (clip logits picked by a table):

    * video 0 (target 0): 1 clip (10, 0, ...), 19 clips (0, 1.2, 1.1, 0, ...). Softmax of the latter: class 0
      1/11.324 = 0.088, class 1 e^1.2/11.324 = 0.293, class 2 0.265. Average: class 1 0.279 > class 2 0.252 >
      class 0 (0.9997 + 19 * 0.088) / 20 = 0.134 > the rest 0.084: top-1 miss, top-5 hit.
    * video 1 (target 2): 2 clips (0, 0, 12, 0, ...), 18 clips (0, 3, 0, ...): class 1 18 * e^3/(e^3 + 6) / 20 =
      0.693 > class 2 (2 + 18 * 0.038) / 20 = 0.134: top-1 miss, top-5 hit.
    * video 2 (target 6): every clip (0, ..., 0, -1): class 6 last of 7: top-1 and top-5 miss.
    * video 3 (target 0): 19 clips (1, 0, ...), 1 clip (-40, 0, ...). Softmax average: class 0 19 * e/(e + 6) / 20
      = 0.296 > 0.117: a hit — where the mean of the logits, (19 - 40) / 20 < 0, would miss.

    top-1 = 1/4 = 25 %, top-5 = 3/4 = 75 %."""
    table = torch.zeros(7, 7)
    table[1, 0] = 10.0
    table[2, 1], table[2, 2] = 1.2, 1.1
    table[3, 2] = 12.0
    table[4, 1] = 3.0
    table[0, 6] = -1.0
    table[5, 0] = 1.0
    table[6, 0] = -40.0
    values = [[1] + [2] * 19, [3] * 2 + [4] * 18, [0] * 20, [5] * 19 + [6]]
    clips = torch.zeros(4, 20, 3, 2, 4, 4, dtype=torch.uint8)
    for v, row in enumerate(values):
        for k, value in enumerate(row):
            clips[v, k] = value
    batches = [{"clips": clips[:2], "target": torch.tensor([0, 2])},
               {"clips": clips[2:], "target": torch.tensor([6, 0])}]
    probs = clip_average(table[torch.tensor(values)])
    e10 = math.exp(10.0)
    assert probs[0, 0] == pytest.approx((e10 / (e10 + 6) + 19 / (math.exp(1.2) + math.exp(1.1) + 5)) / 20, rel=1e-5)
    e40 = math.exp(-40.0)
    assert probs[3, 0] == pytest.approx((19 * math.e / (math.e + 6) + e40 / (e40 + 6)) / 20, rel=1e-5)
    task = ActionRecognition(smoke_recipe(tmp_path, "model.num_classes=7"))
    metrics = task.evaluate(TableModel(table), batches, EvalSet("arid_test", None))
    assert metrics == {"arid_test/top1": pytest.approx(25.0), "arid_test/top5": pytest.approx(75.0)}


def test_views_share_one_transform_across_the_frames_of_a_clip(tmp_path):
    task = ActionRecognition(smoke_recipe(tmp_path, "data.scale=[32, 48]", "data.crop=32"))
    torch.manual_seed(0)
    frame = torch.rand(4, 3, 1, 36, 48)
    clips = frame.expand(4, 3, 4, 36, 48).clone()  # every frame of a clip the same picture
    views = task.views({"image": clips, "target": torch.zeros(4, dtype=torch.long)}, 2)
    assert len(views) == 2
    for view in views:
        image = view["image"]
        assert image.shape == (4, 3, 4, 32, 32)
        assert torch.equal(image, image[:, :, :1].expand_as(image))  # one transform for all frames
    # per clip and per view: the same picture in two clips, or in two views, is cut differently
    assert not torch.equal(views[0]["image"], views[1]["image"])
    same = frame[:1].expand(4, 3, 4, 36, 48).contiguous()
    cut = task.views({"image": same, "target": torch.zeros(4, dtype=torch.long)}, 1)[0]["image"]
    assert not all(torch.equal(cut[0], cut[i]) for i in range(1, 4))


def test_smm_darkens_a_clip_with_one_exposure_map_shared_by_its_frames(tmp_path, monkeypatch):
    engine = Engine(smoke_recipe(tmp_path))
    method = engine.method
    frame = torch.rand(2, 3, 1, 32, 32)
    clips = frame.expand(2, 3, 4, 32, 32).contiguous()
    dark = method.darken(clips)
    assert dark.shape == clips.shape
    assert torch.equal(dark, dark[:, :, :1].expand_as(dark))  # same map for every frame of a clip
    assert not torch.allclose(dark[0], dark[1])  # each clip its own map
    assert float(dark.mean()) < float(clips.mean())
    # the darkener's step: D sees the 8 frames, each clip's exposure scalar repeated over its 4 frames
    seen = {}
    darkener = engine.players["darkener"].modules["darkener"]
    original = darkener.forward

    def spy(images, exposure):
        seen["shape"], seen["exposure"] = tuple(images.shape), exposure.clone()
        return original(images, exposure)

    monkeypatch.setattr(darkener, "forward", spy)
    engine._activate(engine.plan[1])
    loss, terms = method.darkener_step({"darkener": {"image": clips, "target": torch.zeros(2, dtype=torch.long)}},
                                       engine.players["darkener"].modules)
    assert seen["shape"] == (8, 3, 32, 32) and torch.isfinite(loss)
    e = seen["exposure"]
    assert e.shape == (8,) and torch.equal(e[:4], e[:1].expand(4)) and torch.equal(e[4:], e[4:5].expand(4))
    assert e[0] != e[4]


def test_smoke_recipe_trains_end_to_end_and_resumes_bitwise(tmp_path):
    root = make_arid_tree(tmp_path / "arid")

    def make(folder):
        return Engine(load_recipe(SMOKE, [*tree_overrides(root), f"output_dir={tmp_path / folder}"]))

    reference, resumed = crash_and_resume(make, crash_at=3)
    assert_same_state(reference, resumed)
    metrics = reference.history[-1]["metrics"]
    assert set(metrics) == {"arid_test/top1", "arid_test/top5"}
    assert 0.0 <= metrics["arid_test/top1"] <= metrics["arid_test/top5"] <= 100.0
    assert resumed.history[-1]["metrics"] == metrics
    byol = reference.method.byol
    assert byol.projectors[0].in_dim == 512 and byol.projectors[0].out_dim == 64 and byol.predictors[0].hidden_dim == 64
    assert (tmp_path / "a" / "darkening.png").exists() and (tmp_path / "a" / "report.json").exists()


def test_a_too_short_video_stops_the_run_before_training_and_the_check_names_it(tmp_path, capsys):
    from simmm.cli import main

    root = make_arid_tree(tmp_path / "arid")
    write_test_video(root / "clips" / "Run" / "Run_1_1.avi", frames=5)  # a listed training video, now too short
    with pytest.raises(DataError, match=r"ARID_split1_train\.txt:\d+: video .*Run_1_1\.avi has 5 frame\(s\); a clip "
                                        r"of 4 frames at interval 2 needs at least 7"):
        Engine(smoke_recipe(tmp_path, root=root))
    listed = root / ARID_LISTS["test"]
    listed.write_text(listed.read_text() + "99\t11\tWave/Wave_9_9.avi\n")  # label outside the 11 classes
    args = [a for o in tree_overrides(root) for a in ("--set", o)]
    assert main(["data", "check", str(SMOKE), *args]) == 1
    out = capsys.readouterr().out
    assert "Run_1_1.avi has 5 frame(s)" in out and "21 of 22 videos readable" in out
    assert "ARID_split1_test.txt:12: label 11 is outside the class set" in out


def test_channels_last_is_refused_with_the_key_named(tmp_path):
    from simmm.errors import RecipeError

    with pytest.raises(RecipeError, match=r"channels_last: true is a memory format of 4D \(image\) tensors"):
        ActionRecognition(smoke_recipe(tmp_path, "channels_last=true"))


def test_smoke_recipe_checks_out_of_the_box_and_a_missing_arid_says_where_to_get_it(tmp_path, monkeypatch, capsys):
    from simmm.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["data", "check", "act_smoke"]) == 0
    assert (tmp_path / ".cache/simmm/synthetic/arid" / ARID_LISTS["train"]).is_file()
    capsys.readouterr()
    assert main(["data", "check", "act_arid", "--set", "data.eval.arid_test.root=nowhere/ARID"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "video list nowhere/ARID/list_cvt/ARID_split1_test.txt does not exist" in out
    assert "ARID is not at nowhere/ARID: download it from https://xuyu0010.github.io/arid.html" in out


class MeanSign(nn.Module):
    """Batch norm over the clip's channels, then the sign of channel 0's mean: logits (m, -m)."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm3d(3, affine=False)
        self.dummy = nn.Parameter(torch.zeros(()))  # where the model lives

    def forward(self, clips):
        m = self.norm(clips)[:, 0].mean(dim=(1, 2, 3))
        return torch.stack([m, -m], dim=1)


def test_adabn_rescores_each_set_with_statistics_of_its_own_clips(tmp_path):
    """Channel 0 of class-0 videos is 0.8 + 0.1, of class-1 videos 0.8 - 0.1 (in [0, 1]). The day statistics (mean 0,
    variance 1) put every video on the positive side: class 0 everywhere, top-1 50 %. AdaBN re-estimates the mean on
    the set's clips (0.8): the classes fall on their own sides, top-1 100 %; the model itself is left as it was."""
    values = torch.tensor([0.9, 0.7, 0.9, 0.7]) * 255
    clips = values.view(4, 1, 1, 1, 1, 1).expand(4, 2, 3, 2, 4, 4).round().to(torch.uint8).clone()
    batches = [{"clips": clips[:2], "target": torch.tensor([0, 1])},
               {"clips": clips[2:], "target": torch.tensor([0, 1])}]
    model = MeanSign().eval()
    task = ActionRecognition(smoke_recipe(tmp_path, "model.num_classes=2"))
    assert task.cfg.adabn is False  # off by default
    metrics = task.evaluate(model, batches, EvalSet("night", None, {"adabn": True}))
    assert metrics["night/top1"] == pytest.approx(50.0) and metrics["night/top1_adabn"] == pytest.approx(100.0)
    assert metrics["night/top5_adabn"] == pytest.approx(100.0)
    assert float(model.norm.running_mean[0]) == 0.0  # scored a copy
    assert "night/top1_adabn" not in task.evaluate(model, batches, EvalSet("night", None))
    task = ActionRecognition(smoke_recipe(tmp_path, "data.adabn=true"))
    assert all(s.options == {"adabn": True} for s in task.eval_sets())
