"""DANIA beyond training: the day–night evaluation (the day partner fused at test time), `simmm predict` with a
DANIA checkpoint, `simmm data stats` and the class statistics the re-weighting reads, `simmm data check` of the
pair streams."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simmm.class_stats import read_class_shares
from simmm.cli import main
from simmm.dania_losses import CITYSCAPES_CLASS_SHARES, class_weights
from simmm.data.synthetic import SEG_H, SEG_W, make_cityscapes_tree, make_darkzurich_tree, write_label, write_rgb
from simmm.engine import Engine
from simmm.errors import DataError, RecipeError
from simmm.recipe import load_recipe

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "dania_smoke.yaml"


def dania_recipe(tmp_path, *extra):
    return load_recipe(SMOKE, [f"output_dir={tmp_path / 'run'}", f"dania.align.cache_dir={tmp_path / 'align'}",
                               *extra])


# ------------------------------------------------------------------------------------ day-night evaluation


class OneClassPerImage(torch.nn.Module):
    """Logits 30 for one class everywhere: class ``day`` for bright images (mean > 0.5), ``night`` otherwise."""

    def __init__(self, day: int, night: int, classes: int = 19):
        super().__init__()
        self.day, self.night, self.classes = day, night, classes
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, images):
        b, _, h, w = images.shape
        logits = torch.zeros(b, self.classes, h, w)
        for i, image in enumerate(images):
            logits[i, self.day if image.mean() > 0.5 else self.night] = 30.0
        return logits


class Evaluated(torch.nn.Module):
    """A stand-in for DANIA's evaluated model: unweighted ``logits``, ``reweighted`` = log(w · p)."""

    def __init__(self, logits, w):
        super().__init__()
        self.logits, self.w = logits, w

    def reweighted(self, probs):
        return torch.log((probs * self.w.view(1, -1, 1, 1)).clamp_min(1e-12))


def test_day_night_evaluation_fuses_the_aligned_day_prediction_by_hand(tmp_path):
    engine = Engine(dania_recipe(tmp_path, "dania.static.h1=0.8", "dania.static.h2=0.6", "dania.static.u=0.4"))
    method = engine.method
    assert [e.name for e in engine.eval_sets] == ["dz_val", "dz_val_with_day"]
    # the day image says building (2) everywhere, the night image road (0)
    w = torch.linspace(0.5, 1.5, 19, dtype=torch.float64)
    model = Evaluated(OneClassPerImage(day=2, night=0), w)
    method.homographies = {"k": torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)}  # x -> x+1
    batch = {"image": torch.full((1, 3, 3, 5), 0.1), "day": torch.full((1, 3, 3, 5), 0.9), "key": ["k"],
             "night_matrix": torch.eye(3, dtype=torch.float64)[None], "day_matrix": torch.eye(3, dtype=torch.float64)[None]}
    out = method.predict_with_day(model, batch).float()
    assert out.shape == (1, 19, 3, 5)
    # where the day prediction lands (x < 4): road: P'_td = 0 <= u -> h2: 0.4 * 1 = 0.4; building: P'_td = 1 > u -> h1:
    # 0.8 * 1 = 0.8; every other class ~0. In the hole (x = 4, its day pixel x = 5 is outside): the night alone.
    inside, hole = out[0, :, :, :4], out[0, :, :, 4]
    torch.testing.assert_close(inside[0], torch.full((3, 4), math.log(0.4 * 0.5)), atol=1e-6, rtol=0)
    torch.testing.assert_close(inside[2], torch.full((3, 4), math.log(0.8 * float(w[2]))), atol=1e-6, rtol=0)
    torch.testing.assert_close(hole[0], torch.full((3,), math.log(0.5)), atol=1e-6, rtol=0)
    assert (hole[2] < -20).all() and (out[0, 3:].exp() < 1e-9).all()
    # a day prediction below u (a dynamic class in the day: car) leaves the static fusion at h2 and the night wins
    model = Evaluated(OneClassPerImage(day=13, night=0), w)
    out = method.predict_with_day(model, batch).float()
    torch.testing.assert_close(out[0, 0, :, :4], torch.full((3, 4), math.log(0.4 * 0.5)), atol=1e-6, rtol=0)
    assert (out[0, 13].exp() < 1e-9).all()  # dynamic classes: the night prediction only


def test_day_night_evaluation_through_the_engine_and_its_errors(tmp_path):
    # with each night image paired with itself and no alignment, fusing changes nothing: same metrics
    root = make_darkzurich_tree(tmp_path / "dz")
    night = sorted((root / "rgb_anon/val/night").rglob("*.png"))
    (root / "self.csv").write_text("".join(f"{p},{p}\n" for p in night))
    recipe = dania_recipe(tmp_path, f"data.eval.dz_val.root={root}", "dania.align.enabled=false",
                          f"dania.eval_with_day.dz_val.root={root}", f"dania.eval_with_day.dz_val.pairs_file={root}/self.csv",
                          "dania.eval_with_day.dz_val.split=val")
    metrics = Engine(recipe).evaluate()
    assert metrics["dz_val_with_day/mIoU"] == metrics["dz_val/mIoU"]
    assert metrics["dz_val_with_day/pixel_acc"] == metrics["dz_val/pixel_acc"]
    with pytest.raises(RecipeError, match=r"dania.eval_with_day.nd_test: no evaluation set 'nd_test' in data.eval "
                                          r"\(it has: dz_val\)"):
        Engine(dania_recipe(tmp_path, "dania.eval_with_day.nd_test.root=synthetic:darkzurich"))
    (root / "self.csv").write_text(f"{night[0]},{night[0]}\n")
    with pytest.raises(DataError, match=r"2 of 3 night images have no day partner.*\n.*frame_000324"):
        Engine(recipe)


# ------------------------------------------------------------------------------------------------ predict


def test_cli_predict_with_a_dania_checkpoint_runs_relighting_then_segmentation(tmp_path, capsys):
    args = ["--set", f"output_dir={tmp_path / 'run'}", "--set", f"dania.align.cache_dir={tmp_path / 'align'}"]
    assert main(["train", str(SMOKE), *args]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    image = write_rgb(tmp_path / "street.png", seed=3)
    dz = make_darkzurich_tree(tmp_path / "dz")
    assert main(["predict", str(SMOKE), str(image), *args, "--checkpoint", str(ckpt), "--out", str(tmp_path / "p"),
                 "--darkzurich-test", str(dz)]) == 0
    engine = Engine(dania_recipe(tmp_path / "x"))
    engine.load_weights(ckpt, modules=engine.method.eval_modules)
    model = engine.method.eval_model().eval()
    pixels = torch.from_numpy(np.array(Image.open(image).convert("RGB"))).permute(2, 0, 1).float()[None] / 255
    with torch.no_grad():
        expected = engine.adapter.predict(model, pixels)[0].argmax(0)
        plain = engine.adapter.predict(engine.model.eval(), pixels)[0].argmax(0)
    written = torch.from_numpy(np.array(Image.open(tmp_path / "p" / "street_trainIds.png"))).long()
    assert torch.equal(written, expected)
    assert not torch.equal(expected, plain)  # R and the re-weighting change the prediction: they were run
    assert "Dark Zurich test export" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ class statistics


def test_data_stats_counts_the_source_labels_by_hand(tmp_path, capsys):
    root = make_cityscapes_tree(tmp_path / "cs")
    labels = sorted((root / "gtFine/train").rglob("*_gtFine_labelIds.png"))
    a = np.full((SEG_H, SEG_W), 7, np.uint8)  # road (labelId 7 -> train id 0)
    a[:4, :] = 8  # sidewalk (train id 1): 4 rows
    a[4, :2] = 0  # unlabeled -> ignore: 2 pixels
    write_label(labels[0], a)
    write_label(labels[1], np.full((SEG_H, SEG_W), 26, np.uint8))  # car (train id 13)
    write_label(labels[2], np.full((SEG_H, SEG_W), 23, np.uint8))  # sky (train id 10)
    out = tmp_path / "stats.json"
    assert main(["data", "stats", str(SMOKE), "--set", f"data.train.root={root}", "--out", str(out)]) == 0
    stats = json.loads(out.read_text())
    n = SEG_H * SEG_W
    expected = [0] * 19
    expected[0], expected[1], expected[13], expected[10] = n - 4 * SEG_W - 2, 4 * SEG_W, n, n
    assert stats["pixels"] == expected and stats["images"] == 3
    assert stats["shares"][13] == pytest.approx(n / (3 * n - 2))
    printed = capsys.readouterr().out
    assert "15 classes have no labelled pixel" in printed and "car" in printed


def test_class_stats_feed_the_reweighting_and_bad_files_are_named(tmp_path):
    shares = [float(k + 1) for k in range(19)]
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"format": "simmm-class-stats/1", "shares": shares}))
    engine = Engine(dania_recipe(tmp_path, f"dania.class_stats={good}", "dania.train_s=0.1", "dania.test_s=0.3"))
    torch.testing.assert_close(engine.method.train_weights, class_weights(shares, s=0.1))
    torch.testing.assert_close(engine.method.test_weights, class_weights(shares, s=0.3))
    default = Engine(dania_recipe(tmp_path / "d"))
    torch.testing.assert_close(default.method.train_weights, class_weights(CITYSCAPES_CLASS_SHARES, s=0.1))
    cases = {
        "absent.json": (None, r"absent.json does not exist; expected the JSON that `simmm data stats RECIPE` writes"),
        "notjson.json": ("{", r"cannot read .*notjson.json as JSON"),
        "other.json": (json.dumps({"shares": shares}), r"other.json is not a class statistics file"),
        "short.json": (json.dumps({"format": "simmm-class-stats/1", "shares": shares[:5]}),
                       r"short.json has shares of 5 classes; the model has 19"),
        "empty.json": (json.dumps({"format": "simmm-class-stats/1", "shares": [0.0] + shares[1:],
                                   "classes": ["road"] + ["x"] * 18}), r"classes \['road'\] have no labelled pixels"),
    }
    for name, (text, message) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(RecipeError, match="dania.class_stats: .*" + message):
            read_class_shares(tmp_path / name, 19)
    with pytest.raises(RecipeError, match=r"dania.class_stats: empty, .* they have 19 classes and the model 7"):
        Engine(dania_recipe(tmp_path / "e", "model.num_classes=7"))


# ------------------------------------------------------------------------------------------------ data check


def test_data_check_names_a_missing_day_partner_of_both_pair_streams(tmp_path, capsys):
    root = make_darkzurich_tree(tmp_path / "dz")
    sets = ["--set", f"dania.pairs.root={root}", "--set", f"dania.eval_with_day.dz_val.root={root}"]
    assert main(["data", "check", str(SMOKE), *sets]) == 0
    capsys.readouterr()
    (root / "rgb_anon/val/day/GOPR0355/GOPR0355_frame_000415_rgb_anon.png").unlink()
    (root / "rgb_anon/train/day/GOPR0345/GOPR0345_frame_000077_rgb_anon.png").write_bytes(b"not a png")
    assert main(["data", "check", str(SMOKE), *sets]) == 1
    out = capsys.readouterr().out
    assert "GOPR0355_frame_000415" in out and "corresp/val/night/GOPR0356.csv" in out
    assert "GOPR0345_frame_000077_rgb_anon.png" in out
