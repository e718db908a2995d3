"""Segmentation task: joint augmentation, one end-to-end SMM smoke run on fake Cityscapes/Dark Zurich trees."""
from pathlib import Path

import numpy as np
import pytest
import torch
from seg_fixtures import make_cityscapes_tree, make_darkzurich_tree

from simmm.engine import Engine
from simmm.recipe import load_recipe
from simmm.tasks.segmentation import Segmentation, joint_scale_crop_flip

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "seg_smoke.yaml"


def smoke_recipe(tmp_path, *extra):
    cs = make_cityscapes_tree(tmp_path / "cityscapes")
    dz = make_darkzurich_tree(tmp_path / "dark_zurich")
    return load_recipe(SMOKE, [f"data.train.root={cs}", f"data.eval.cs_val.root={cs}",
                               f"data.eval.dz_val.root={dz}", f"output_dir={tmp_path / 'run'}", *extra])


def test_joint_augmentation_keeps_image_and_label_aligned():
    torch.manual_seed(0)
    # label = column index // 4, image channel 0 = the same value / 255: any misalignment shows
    cols = torch.arange(32).div(4, rounding_mode="floor")
    target = cols.expand(2, 16, 32).clone()
    images = (target.float() / 255.0)[:, None].expand(2, 3, 16, 32).clone()
    for _ in range(5):
        out_images, out_targets = joint_scale_crop_flip(images, target, (12, 20), (0.7, 1.3), True)
        assert out_images.shape == (2, 3, 12, 20) and out_targets.shape == (2, 12, 20)
        valid = out_targets != 255
        # nearest label vs bilinear image: equal away from stripe boundaries, off by at most one on them
        approx = (out_images[:, 0] * 255).round().long()
        assert (approx[valid] - out_targets[valid]).abs().max() <= 1
        assert (approx[valid] == out_targets[valid]).float().mean() > 0.6
        assert (out_images[:, 0][~valid] == 0).all()  # padding: image 0, label ignore


def test_views_are_identical_and_jitter_shared(tmp_path):
    recipe = smoke_recipe(tmp_path)
    task = Segmentation(recipe)
    batch = {"image": torch.rand(2, 3, 16, 32), "target": torch.randint(0, 19, (2, 16, 32))}
    a, b = task.views(batch, 2)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    x, y = task.color_augment([a["image"], a["image"].clone()])
    assert torch.equal(x, y)


@pytest.mark.parametrize("inference", ["sliding", "whole"])
def test_predict_uses_the_recipe_windows(tmp_path, inference):
    """data.inference: sliding stitches data.window-sized windows every data.stride pixels; whole runs one
    window. Hand values of test_inference's position model (channel 0: column in the window, 1: row) on a
    5x7 image, windows 4x4 every 1x1 pixels: rows start at 0, 1 -> [0, 0.5, 1.5, 2.5, 3]; columns start at
    0, 1, 2, 3 -> [0, (1+0)/2, (2+1+0)/3, (3+2+1+0)/4, (3+2+1)/3, (3+2)/2, 3]."""
    from test_inference import ALONG_5_CROP_4_STRIDE_2, PositionModel

    task = Segmentation(smoke_recipe(tmp_path, f"data.inference={inference}", "data.window=[4, 4]",
                                     "data.stride=[1, 1]", "model.num_classes=2"))
    logits = task.predict(PositionModel(), torch.rand(1, 3, 5, 7))
    if inference == "sliding":
        cols, rows = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]), torch.tensor(ALONG_5_CROP_4_STRIDE_2)
    else:
        cols, rows = torch.arange(7.0), torch.arange(5.0)
    torch.testing.assert_close(logits[0, 0], cols.expand(5, 7), rtol=0, atol=1e-6)
    torch.testing.assert_close(logits[0, 1], rows[:, None].expand(5, 7), rtol=0, atol=1e-6)


def test_color_jitter_draws_like_one_plain_kornia_call(tmp_path):
    """The shared jitter consumes the random stream exactly as one ``ColorJitter`` call on the first view: same
    first view, bit for bit, and the same generator state afterwards (so later draws do not move)."""
    import kornia.augmentation as K

    task = Segmentation(smoke_recipe(tmp_path))
    j = task.recipe.data.color_jitter
    assert j > 0
    g = torch.Generator().manual_seed(3)
    views = [torch.rand(2, 3, 8, 12, generator=g) for _ in range(3)]
    torch.manual_seed(11)
    expected = K.ColorJitter(j, j, j, 0.0, p=1.0)(views[0])
    after = torch.get_rng_state()
    torch.manual_seed(11)
    out = task.color_augment(views)
    assert torch.equal(out[0], expected) and torch.equal(torch.get_rng_state(), after)
    assert not torch.equal(out[1], views[1]) and len(out) == 3


def test_smm_smoke_run_end_to_end(tmp_path):
    engine = Engine(smoke_recipe(tmp_path))
    metrics = engine.fit()
    for name in ("cs_val/mIoU", "dz_val/mIoU", "dz_val/IoU_road", "cs_val/pixel_acc"):
        assert name in metrics
    assert 0.0 <= metrics["cs_val/mIoU"] <= 100.0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert len(engine.method.byol) == 4  # one BYOL head per encoder stage
    assert (tmp_path / "run" / "report.json").exists() and (tmp_path / "run" / "darkening.png").exists()


def test_sliding_inference_option(tmp_path):
    engine = Engine(smoke_recipe(tmp_path, "data.inference=sliding", "data.window=[8, 16]", "data.stride=[4, 8]",
                                 "players.day.steps=0", "players.darkener.steps=0", "players.extractor.steps=0"))
    metrics = engine.evaluate()
    assert "dz_val/mIoU" in metrics


def test_data_check_reports_malformed_label(tmp_path, capsys):
    from simmm.cli import main

    recipe_args = []
    cs = make_cityscapes_tree(tmp_path / "cityscapes")
    dz = make_darkzurich_tree(tmp_path / "dark_zurich")
    label = next((cs / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    from PIL import Image

    Image.new("L", (7, 5), 7).save(label)  # wrong size
    for key, value in (("data.train.root", cs), ("data.eval.cs_val.root", cs), ("data.eval.dz_val.root", dz)):
        recipe_args += ["--set", f"{key}={value}"]
    assert main(["data", "check", str(SMOKE), *recipe_args]) == 1
    out = capsys.readouterr().out
    assert label.name in out
    assert main(["train", str(SMOKE), *recipe_args, "--set", f"output_dir={tmp_path / 'run'}"]) == 2
    assert label.name in capsys.readouterr().err


def test_predict_writes_maps_and_darkzurich_export(tmp_path, capsys):
    import zipfile

    from PIL import Image

    from simmm.cli import main

    cs = make_cityscapes_tree(tmp_path / "cityscapes")
    dz = make_darkzurich_tree(tmp_path / "dark_zurich")
    args = ["--set", f"data.train.root={cs}", "--set", f"data.eval.cs_val.root={cs}", "--set",
            f"data.eval.dz_val.root={dz}", "--set", f"output_dir={tmp_path / 'run'}"]
    assert main(["train", str(SMOKE), *args]) == 0
    assert "per-class IoU" in capsys.readouterr().out
    image = next((cs / "leftImg8bit" / "val").rglob("*.png"))
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.pt")
    assert main(["predict", str(SMOKE), str(image), *args, "--checkpoint", ckpt, "--out", str(tmp_path / "pred"),
                 "--overlay", "--darkzurich-test", str(dz)]) == 0
    ids = Image.open(tmp_path / "pred" / f"{image.stem}_trainIds.png")
    color = Image.open(tmp_path / "pred" / f"{image.stem}_color.png")
    assert ids.size == color.size == Image.open(image).size
    assert np.asarray(ids).max() < 19
    archive = next((tmp_path / "pred").glob("*.zip"))
    names = zipfile.ZipFile(archive).namelist()
    assert any(n.startswith("labelTrainIds/") for n in names)
    assert any(n.startswith("labelTrainIds_invalid/") for n in names)


def test_bf16_autocast_steps_give_float32_losses_close_to_float32(tmp_path):
    """The engine's AMP path, on CPU: every player's loss terms under bf16 autocast are float32 and within 2% of
    the float32 step's (similarities and BYOL cosines are taken in float32; only the networks run in bf16)."""
    engine = Engine(smoke_recipe(tmp_path))
    for phase in engine.plan:
        engine._activate(phase)
        player = engine.players[phase.name]
        batches = {stream: engine._batch(stream) for stream in player.streams}
        results = {}
        for dtype in (None, torch.bfloat16):
            engine.amp_dtype = dtype
            torch.manual_seed(1)  # the same exposures, augmentations and cutouts for both
            loss, terms = player.step(batches, player.modules)
            assert loss.dtype == torch.float32 and all(t.dtype == torch.float32 for t in terms.values()), player
            results[dtype] = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
        for name, value in results[None].items():
            assert results[torch.bfloat16][name] == pytest.approx(value, rel=0.02, abs=1e-6), (player, name)


@pytest.mark.parametrize("crash_at", [3, 5])  # in the darkener phase; in the adaptation phase
def test_interrupted_segmentation_run_resumes_bitwise(tmp_path, crash_at):
    from test_engine import assert_same_state, crash_and_resume

    reference, resumed = crash_and_resume(
        lambda folder: Engine(smoke_recipe(tmp_path / folder, "checkpoint.every=1")), crash_at)
    assert_same_state(reference, resumed)
    # exactly equal; NaN (a class absent from the tiny sets) equals NaN
    assert resumed.history[-1]["metrics"] == pytest.approx(reference.history[-1]["metrics"], rel=0, abs=0,
                                                           nan_ok=True)
