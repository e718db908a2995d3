"""The command line: each command runs, and bad input ends in one clear paragraph with a non-zero exit code."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_folder_dataset

from simmm.cli import main

SMOKE = str(Path(__file__).resolve().parents[1] / "recipes" / "cls_smoke.yaml")


def args_for(root, tmp_path):
    return ["--set", f"data.root={root}", "--set", f"output_dir={tmp_path / 'run'}",
            "--set", f"data.cache_dir={tmp_path / 'cache'}"]


@pytest.fixture
def smoke_args(tmp_codan, tmp_path):
    return args_for(tmp_codan, tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke training run through the CLI, shared by the tests that only read its outputs."""
    tmp_path = tmp_path_factory.mktemp("trained")
    root = make_folder_dataset(tmp_path / "codan")
    args = args_for(root, tmp_path)
    assert main(["train", SMOKE, *args]) == 0
    return tmp_path, root, args


def test_help_of_every_command():
    for command in (["--help"], ["train", "--help"], ["eval", "--help"], ["darken", "--help"], ["recipes", "--help"],
                    ["data", "check", "--help"]):
        out = subprocess.run([sys.executable, "-m", "simmm", *command], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "usage: simmm" in out.stdout


def test_eval_needs_only_the_evaluation_data(trained, tmp_path, capsys):
    """``simmm eval`` reads the evaluation sets, not the training split (a checkpoint is often evaluated where only
    the test data are)."""
    run_root, codan, _ = trained
    test_only = tmp_path / "test_only"
    test_only.mkdir()
    for split in ("test_day", "test_night"):
        (test_only / split).symlink_to(codan / split)
    args = args_for(test_only, tmp_path)
    assert main(["eval", SMOKE, *args, "--checkpoint", str(run_root / "run" / "checkpoints" / "last.pt"),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert "night_street/top1" in (tmp_path / "m.json").read_text()
    # training it would need the split: named, before any step
    err = error_of(capsys, ["train", SMOKE, *args])
    assert "train" in err and str(test_only) in err


def test_recipes_lists_shipped(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "cls_codan" in out


def test_train_eval_darken_end_to_end(trained, capsys):
    tmp_path, tmp_codan, smoke_args = trained
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "eval.json", "report.json", "darkening.png",
                 "checkpoints/last.pt"):
        assert (run / name).exists(), name
    report = (run / "report.json").read_text()
    assert "night_street/top1" in report and "night_test/top1_adabn" in report
    exposure = json.loads((run / "darkener_exposure.json").read_text())  # does the trained D follow E?
    assert [r["exposure"] for r in exposure["levels"]] == [0.05, 0.1, 0.2, 0.35]
    assert exposure["max_abs_error"] == max(abs(r["mean"] - r["exposure"]) for r in exposure["levels"])
    assert main(["eval", SMOKE, *smoke_args, "--checkpoint", str(run / "checkpoints" / "last.pt"),
                 "--json", str(tmp_path / "m.json")]) == 0
    assert "day_test/top1" in (tmp_path / "m.json").read_text()
    image = next((tmp_codan / "test_day" / "Car").iterdir())
    assert main(["darken", str(image), "--out", str(tmp_path / "dark"), "--checkpoint",
                 str(run / "checkpoints" / "last.pt"), "--exposure", "0.05,0.3"]) == 0
    assert main(["darken", str(image), "--out", str(tmp_path / "night"), "--physical", "--preset", "urban"]) == 0
    assert len(list((tmp_path / "dark").glob("*.png"))) == 2 and len(list((tmp_path / "night").glob("*.png"))) == 1


def test_resume_flag_continues(trained):
    _, _, smoke_args = trained
    assert main(["train", SMOKE, *smoke_args]) == 2  # refuses to overwrite a run
    assert main(["train", SMOKE, *smoke_args, "--resume"]) == 0  # nothing left to do, but resumes cleanly


def error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_dataset_root(capsys, tmp_path):
    args = args_for(tmp_path / "nowhere", tmp_path)
    err = error_of(capsys, ["train", SMOKE, *args])
    assert str(tmp_path / "nowhere") in err
    assert main(["data", "check", SMOKE, *args]) == 1
    assert str(tmp_path / "nowhere") in capsys.readouterr().out


def test_unreadable_image_is_named(capsys, smoke_args, tmp_codan, truncated_jpeg):
    bad = tmp_codan / "train" / "Cat" / "broken.jpg"
    bad.write_bytes(truncated_jpeg.read_bytes())
    assert main(["data", "check", SMOKE, *smoke_args]) == 1
    out = capsys.readouterr().out
    assert "broken.jpg" in out
    err = error_of(capsys, ["train", SMOKE, *smoke_args])
    assert "broken.jpg" in err


def test_class_folder_not_in_recipe(capsys, smoke_args, tmp_codan):
    (tmp_codan / "train" / "Zebra").mkdir()
    err = error_of(capsys, ["train", SMOKE, *smoke_args])
    assert "Zebra" in err


def test_bad_recipe_key_and_type(capsys, smoke_args):
    err = error_of(capsys, ["train", SMOKE, *smoke_args, "--set", "players.day.btach_size=3"])
    assert "players.day.btach_size" in err and "batch_size" in err
    err = error_of(capsys, ["train", SMOKE, *smoke_args, "--set", "seed=abc"])
    assert "seed: got 'abc'; expected an integer" in err


def test_checkpoint_of_another_architecture(capsys, trained):
    tmp_path, _, smoke_args = trained
    err = error_of(capsys, ["eval", SMOKE, *smoke_args, "--set", "model.backbone=resnet18",
                            "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.pt")])
    assert "another model" in err and "resnet10t" in err and "resnet18" in err
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    err = error_of(capsys, ["eval", SMOKE, *smoke_args, "--checkpoint", str(foreign)])
    assert "not a simmm checkpoint" in err


def test_debug_shows_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "simmm", "--debug", "train", SMOKE, "--set",
                          f"data.root={tmp_path / 'nowhere'}"], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr


@pytest.mark.parametrize("option, value, expected", [
    ("--exposure", "2", r"--exposure: '2': level 2 is outside \[0, 1\]"),
    ("--exposure", "-1", r"--exposure: '-1': level -1 is outside \[0, 1\]"),
    ("--exposure", "0.1,nan", r"--exposure: '0.1,nan': level nan is outside \[0, 1\]"),
    ("--exposure", "0.1,dark", r"--exposure: '0.1,dark': expected comma-separated numbers in \[0, 1\]"),
    ("--seed", "-3", r"--seed: '-3': expected an integer >= 0"),
    ("--seed", "1.5", r"--seed: '1.5': expected an integer >= 0"),
])
def test_darken_rejects_out_of_range_numbers(tmp_path, capsys, option, value, expected):
    with pytest.raises(SystemExit) as exc:
        main(["darken", "x.png", "--out", str(tmp_path), "--checkpoint", "c.pt", option, value])
    assert exc.value.code == 2
    assert re.search(expected, capsys.readouterr().err)


def test_darken_accepts_the_ends_of_the_exposure_range():
    from simmm.cli import build_parser

    args = build_parser().parse_args(["darken", "x.png", "--out", "o", "--checkpoint", "c.pt", "--exposure", "0,1"])
    assert args.exposure == [0.0, 1.0]


def test_darken_physical_mixed_draws_a_preset_per_image_from_the_seed(tmp_path, capsys):
    from simmm.data.images import load_image_tensor, save_image
    from simmm.night import simulate_night

    images = []
    for i in range(2):
        path = tmp_path / f"im{i}.png"
        save_image(torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(i)), path)
        images.append(path)
    assert main(["darken", *map(str, images), "--out", str(tmp_path / "out"), "--physical", "--preset", "mixed",
                 "--seed", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    drawn = [line.rpartition(" (")[2].rstrip(")") for line in lines]
    assert drawn == ["street", "global_dim"]  # seeds 6 and 7 draw different presets
    for i, (path, line) in enumerate(zip(images, lines)):
        target = tmp_path / "out" / f"im{i}_night_mixed.png"
        assert line.startswith(str(target))
        # image i is the printed preset simulated with seed 6 + i
        expected = simulate_night(load_image_tensor(path).unsqueeze(0), drawn[i], seed=6 + i)[0]
        assert torch.equal(load_image_tensor(target), load_image_tensor(_saved(expected, tmp_path / "e.png")))


def _saved(image, path):
    from simmm.data.images import save_image

    save_image(image, path)
    return path


def test_darken_raw_rejects_mixed(tmp_path, capsys):
    assert main(["darken", "x.dng", "--out", str(tmp_path), "--physical", "--raw", "--preset", "mixed"]) == 2
    assert "--preset mixed is for sRGB images; with --raw give one of" in capsys.readouterr().err
