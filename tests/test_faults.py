"""Faults: nothing is ever lost.

A training run killed at any moment (mid-step, mid-write of a checkpoint, between the temporary file and its
rename) or stopped by a full disk leaves only readable checkpoints, and ``--resume`` ends bitwise where an
uninterrupted run ends. Files that are not simmm checkpoints of this model (foreign, truncated, crafted to run
code) are refused with one clear line and nothing of them runs. A loss that turns NaN stops the run with the
last good state saved; a data-loader worker that dies ends in a clear error with the last checkpoint intact.

Run alone with ``python -m pytest -m faults``.
"""
import errno
import gc
import os
import pickle
import random
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import simmm.atomic
import simmm.checkpoint
from simmm.checkpoint import load_checkpoint, save_checkpoint
from simmm.cli import main
from simmm.data.loader import next_batch
from simmm.engine import Engine
from simmm.errors import CheckpointError, DataError, SimmmError
from simmm.logger import RunLogger
from simmm.recipe import recipe_from_dict
from simmm.task import EvalSet, Forward, TaskAdapter, register_task
from simmm.tasks.classification import top1

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "recipes" / "cls_smoke.yaml")
# cls_smoke made smaller still (a 0.3M-parameter timm test ResNet, one evaluation set) and longer (12 steps),
# with a checkpoint at every step so that every kill point has a checkpoint before it; on the CPU, where runs
# are bitwise repeatable (on a GPU, cuDNN may choose other kernels in another process)
FAST = ["device=cpu", "model.backbone=test_resnet", "data.adabn=false", "data.night_sim.presets=[]",
        "data.eval_splits={day_test: test_day}", "checkpoint.every=1", "players.day.steps=4",
        "players.darkener.steps=3", "players.extractor.steps=5"]
TOTAL_STEPS = 12


def smoke_args(root: Path, run: Path) -> list[str]:
    sets = FAST + [f"data.root={root}", f"output_dir={run}", f"data.cache_dir={root.parent / 'cache'}"]
    return [arg for item in sets for arg in ("--set", item)]


def train(root: Path, run: Path, fault: str = "none", at: int = 0, resume: bool = False):
    """``simmm train`` of the fast smoke recipe in a fresh process, with ``fault`` at the ``at``-th save."""
    argv = [sys.executable, str(REPO / "tests" / "fault_driver.py"), fault, str(at), "train", SMOKE,
            *smoke_args(root, run), *(["--resume"] if resume else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def assert_same(a, b, where: str = "") -> None:
    """Bitwise equality of nested checkpoint contents (tensors compared with ``torch.equal``)."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def without_recipe(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "recipe"}  # the recipe names its own output_dir


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def readable_checkpoints(folder: Path) -> dict[str, dict]:
    """Every checkpoint in ``folder``, each loaded (an unreadable one fails the test)."""
    return {path.name: load_checkpoint(path) for path in sorted(folder.glob("*.pt"))}


# ----------------------------------------------------------------------------------- killed runs, full disk


def test_killed_anywhere_or_out_of_disk_then_resumed_is_bitwise_exact(tmp_codan, tmp_path):
    """Four faults at seeded random steps of one run, each followed by --resume: the end is bitwise the end of
    a run never interrupted (weights, optimisers, RNGs, metrics.csv, eval.json, report.json)."""
    rng = random.Random(2024)
    faults = rng.sample(["kill-step", "kill-write", "kill-rename", "disk-full"], 4)
    steps = sorted(rng.sample(range(2, TOTAL_STEPS + 1), 4))
    reference = tmp_path / "reference"
    clean = train(tmp_codan, reference)
    assert clean.returncode == 0, clean.stderr

    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    on_disk = 0  # the step saved in last.pt
    for fault, step in zip(faults, steps):
        out = train(tmp_codan, run, fault, at=step - on_disk, resume=on_disk > 0)
        where = f"{fault} at step {step}"
        if fault == "disk-full":
            assert out.returncode == 2, (where, out.stderr)
            message = " ".join(out.stderr[out.stderr.index("error: "):].split())
            assert message.startswith(f"error: checkpoint {checkpoints / 'last.pt'}: cannot be written: no "
                                      "space left on the device ("), (where, message)
            assert "MiB free in" in message and "continue with --resume" in message, message
        else:
            assert out.returncode == -signal.SIGKILL, (where, out.returncode, out.stderr[-2000:])
        saved = readable_checkpoints(checkpoints)
        assert list(saved) == ["last.pt"], where
        assert saved["last.pt"]["global_step"] == step - 1, where
        left = temp_files(checkpoints)
        # a killed write leaves its temporary file; nothing reads it, the next save removes it
        assert len(left) == (fault in ("kill-write", "kill-rename")), (where, left)
        if fault == "kill-write":
            with pytest.raises(CheckpointError, match="truncated or corrupt"):
                load_checkpoint(left[0])  # what the rename protects last.pt from
        on_disk = step - 1

    resumed = train(tmp_codan, run, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert temp_files(checkpoints) == []
    got, expected = readable_checkpoints(checkpoints), readable_checkpoints(reference / "checkpoints")
    assert got.keys() == expected.keys() == {"last.pt"}
    assert got["last.pt"]["global_step"] == TOTAL_STEPS
    assert_same(without_recipe(got["last.pt"]), without_recipe(expected["last.pt"]), "last.pt")
    for name in ("metrics.csv", "eval.json", "report.json"):
        assert (run / name).read_text() == (reference / name).read_text(), name


@pytest.fixture
def previous(tmp_path) -> Path:
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"step": 1, "weights": torch.arange(4.0)}, path)
    return path


def fill_disk_on_write(monkeypatch):
    """The checkpoint's temporary file is created, but its bytes go to /dev/full: ENOSPC as the kernel says
    it."""
    real = simmm.atomic.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(simmm.atomic.tempfile, "mkstemp", mkstemp)


def fill_disk_in_the_zip_writer(monkeypatch):
    """What torch.save itself raises when a write fails mid-file (seen writing to /dev/full): a RuntimeError
    of its zip writer, with the OSError only as its context. (In save_checkpoint, closing the file usually
    raises the OSError again; this is the case where closing succeeds.)"""
    def save(obj, handle):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(simmm.checkpoint.torch, "save", save)


def fill_disk_on_fsync(monkeypatch):
    """The bytes are accepted, the flush to disk fails (as on NFS or a quota)."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(simmm.checkpoint.os, "fsync", fsync)


@pytest.mark.parametrize("fill", [fill_disk_on_write, fill_disk_in_the_zip_writer, fill_disk_on_fsync])
def test_disk_full_keeps_the_previous_checkpoint(previous, monkeypatch, fill):
    if fill is fill_disk_on_write and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    before = previous.read_bytes()
    fill(monkeypatch)
    with pytest.raises(CheckpointError, match=rf"checkpoint {re.escape(str(previous))}: cannot be written: "
                       rf"no space left on the device \(\d+ MiB free in {re.escape(str(previous.parent))}\)"):
        save_checkpoint({"step": 2, "weights": torch.zeros(100_000)}, previous)
    monkeypatch.undo()
    assert previous.read_bytes() == before
    assert load_checkpoint(previous)["step"] == 1
    assert temp_files(previous.parent) == []


def test_other_write_errors_name_the_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "last.pt"

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(simmm.atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointError, match=rf"checkpoint {re.escape(str(target))}: cannot be written "
                       r"\(Permission denied\)"):
        save_checkpoint({"step": 1}, target)


def test_a_save_is_synced_renamed_then_its_folder_synced(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(simmm.checkpoint.os, "fsync", fsync)
    monkeypatch.setattr(simmm.checkpoint.os, "replace", replace)
    save_checkpoint({"step": 1}, tmp_path / "last.pt")
    assert events == ["fsync file", "rename", "fsync folder"]


def test_stale_temp_files_are_never_read_and_the_next_save_removes_them(previous):
    stale = previous.parent / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = previous.parent / ".best.pt.k1ll3d.tmp"  # another checkpoint's: not this save's business
    other.write_bytes(b"half another checkpoint")
    assert load_checkpoint(previous)["step"] == 1
    save_checkpoint({"step": 2}, previous)
    assert temp_files(previous.parent) == [other]
    assert load_checkpoint(previous)["step"] == 2


def test_resumed_log_drops_the_rows_to_be_redone_and_a_torn_last_line(tmp_path):
    # a run saved step 10, logged step 11, and was killed while appending step 12's row: only its "1" is there
    (tmp_path / "metrics.csv").write_text("step,kind,loss\n9,day,0.5\n10,day,0.4\n11,day,0.3\n1")
    logger = RunLogger(tmp_path, total_steps=20, tensorboard="off", progress=False, start_step=10)
    assert (tmp_path / "metrics.csv").read_text() == "step,kind,loss\n9,day,0.5\n10,day,0.4\n"
    logger.log(11, "day", {"loss": 0.25})
    assert (tmp_path / "metrics.csv").read_text() == "step,kind,loss\n9,day,0.5\n10,day,0.4\n11,day,0.25\n"
    logger.close()


def test_a_log_killed_while_rewritten_keeps_its_rows(tmp_path, monkeypatch):
    logger = RunLogger(tmp_path, total_steps=5, tensorboard="off", progress=False)
    logger.log(1, "day", {"loss": 0.5})
    before = (tmp_path / "metrics.csv").read_text()

    real_write_text = Path.write_text

    def killed(self, data, *args, **kwargs):  # the run stops halfway through rewriting it with a wider header
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        logger.log(1, "eval", {"day_test/top1": 50.0})
    assert (tmp_path / "metrics.csv").read_text() == before
    logger.close()


# ----------------------------------------------------------------------------------- files that are not ours


class RunsCode:
    """Unpickled, this would call os.system (touch a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


SIGNATURE = {"task": "classification", "backbone": "test_resnet", "num_classes": 10}


def write_bad(kind: str, folder: Path) -> tuple[Path, str]:
    """A file that must be refused, and (a regex of) what the refusal says after the file's name."""
    path = folder / f"{kind}.pt"
    if kind == "tensor":
        torch.save(torch.zeros(3), path)
        return path, "not a simmm checkpoint: it holds a Tensor"
    if kind == "foreign_state_dict":
        torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3), "fc.weight": torch.zeros(10, 2)}, path)
        return path, r"not a simmm checkpoint: it holds a dict without simmm's 'format' entry \(keys: conv1"
    if kind == "other_backbone":
        save_checkpoint({"signature": {**SIGNATURE, "backbone": "resnet10t"}, "modules": {}}, path)
        return path, "from another model: backbone: checkpoint has 'resnet10t', this recipe builds 'test_res"
    if kind == "other_classes":
        save_checkpoint({"signature": {**SIGNATURE, "num_classes": 3}, "modules": {}}, path)
        return path, "from another model: num_classes: checkpoint has 3, this recipe builds 10"
    if kind == "truncated":
        save_checkpoint({"signature": SIGNATURE, "modules": {"model": {"w": torch.zeros(1000)}}}, path)
        path.write_bytes(path.read_bytes()[:2000])
        return path, r"cannot be read: truncated or corrupt \(RuntimeError: .*\) \(2000 bytes\)"
    if kind == "empty":
        path.write_bytes(b"")
        return path, r"cannot be read: the file is empty \(0 bytes\)"
    if kind == "raw_pickle":  # pickle.dump of an object that runs code: not even torch's format
        path.write_bytes(pickle.dumps(RunsCode(folder / "marker"), protocol=4))
        return path, r"cannot be read: not a file written by torch.save \(\d+ bytes\)"
    if kind in ("runs_code", "runs_code_legacy"):
        torch.save({"format": 1, "signature": SIGNATURE, "payload": RunsCode(folder / "marker")}, path,
                   _use_new_zipfile_serialization=kind == "runs_code")
        return path, (r"refused: it holds Python objects, not only tensors and plain values \(GLOBAL "
                      r"\w+.system\), and loading those could run code; nothing of it was loaded")
    raise ValueError(kind)


BAD_FILES = ["tensor", "foreign_state_dict", "other_backbone", "other_classes", "truncated", "empty",
             "raw_pickle", "runs_code", "runs_code_legacy"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_checkpoints_are_refused_naming_the_file(tmp_path, kind):
    path, says = write_bad(kind, tmp_path)
    with pytest.raises(CheckpointError, match=rf"^checkpoint {re.escape(str(path))}(:| is) {says}") as caught:
        load_checkpoint(path, signature=SIGNATURE)
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)
    assert not (tmp_path / "marker").exists()


def message_of(path: Path) -> str:
    try:
        load_checkpoint(path, signature=SIGNATURE)
    except CheckpointError as exc:
        return str(exc)
    raise AssertionError(f"{path} was accepted")


def test_cli_eval_refuses_bad_checkpoints_in_one_line(tmp_codan, tmp_path, capsys):
    args = smoke_args(tmp_codan, tmp_path / "run")
    for kind in BAD_FILES:
        path, _ = write_bad(kind, tmp_path)
        assert main(["eval", SMOKE, *args, "--checkpoint", str(path)]) == 2, kind
        err = capsys.readouterr().err
        assert " ".join(err.split()) == f"error: {message_of(path)}", kind
    assert not (tmp_path / "marker").exists()
    # and in a fresh process, where nothing of the test suite is imported and nothing filters warnings
    path, _ = write_bad("raw_pickle", tmp_path)
    out = subprocess.run([sys.executable, "-m", "simmm", "eval", SMOKE, *args, "--checkpoint", str(path)],
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2
    assert " ".join(out.stderr.split()) == f"error: {message_of(path)}"
    assert not (tmp_path / "marker").exists()


# ----------------------------------------------------------------------------------- NaN, dead data workers


@dataclass
class FaultModelConfig:
    width: int = 4


@dataclass
class FaultDataConfig:
    samples: int = 16


class Blobs(torch.utils.data.Dataset):
    """Bright images are class 1, dim ones class 0. ``mortal``: a worker process dies at its
    ``$SIMMM_FAULTS_DIE_AT_LOAD``-th sample (after a pause, so that the main process is waiting for it)."""

    def __init__(self, n: int, seed: int, mortal: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.images = torch.rand(n, 3, 8, 8, generator=g) * 0.5 + 0.4 * self.labels.view(-1, 1, 1, 1)
        self.mortal, self.loads = mortal, 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.loads += 1
        if self.mortal and torch.utils.data.get_worker_info() is not None \
                and str(self.loads) == os.environ.get("SIMMM_FAULTS_DIE_AT_LOAD"):
            time.sleep(1.0)
            os._exit(3)
        return {"image": self.images[i], "target": self.labels[i]}


@register_task("faults_tiny")
class FaultTask(TaskAdapter):
    """A day-only task small enough to train in milliseconds. ``poison = (where, n)``: from the n-th step on,
    the ``loss`` is NaN, or only its ``gradient``, or the ``forward`` pass is (its input images are NaN)."""

    model_config = FaultModelConfig
    data_config = FaultDataConfig
    poison = None
    calls = 0

    def build_model(self):
        w = self.recipe.model.width
        return nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, 2))

    def signature(self):
        return {"task": self.name, "width": self.recipe.model.width}

    def forward(self, model, images, output=True):
        features = model[:5](images)
        return Forward([features], [features], model[5](features) if output else None)

    def train_dataset(self):
        return Blobs(self.recipe.data.samples, 0, mortal=True)

    def eval_sets(self):
        return [EvalSet("day_test", Blobs(8, 1))]

    @staticmethod
    def poisoned(where: str) -> bool:
        poison = FaultTask.poison
        return poison is not None and poison[0] == where and FaultTask.calls >= poison[1]

    def views(self, batch, n=2):
        FaultTask.calls += 1  # once per step
        scale = float("nan") if self.poisoned("forward") else 1.0
        return [{**batch, "image": batch["image"] * scale} for _ in range(n)]

    def task_loss(self, output, batch):
        loss = nn.functional.cross_entropy(output, batch["target"])
        if self.poisoned("gradient"):
            output.register_hook(lambda grad: grad * float("nan"))
        return loss * float("nan") if self.poisoned("loss") else loss

    def evaluate(self, model, loader, eval_set):
        return {f"{eval_set.name}/top1": top1(model, loader)}


def tiny_recipe(run: Path, day_steps: int, **extra):
    return recipe_from_dict({
        "task": "faults_tiny", "name": "faults", "output_dir": str(run), "device": "cpu",
        "players": {"day": {"steps": day_steps, "batch_size": 4, "lr_schedule": "constant"},
                    "darkener": {"steps": 0}, "extractor": {"steps": 0}},
        "log": {"every": 1, "progress": False, "tensorboard": "off"}, "checkpoint": {"every": 1}, **extra})


GOOD, BAD_STEPS = 3, 2  # good steps, then bad ones in a row until the guard stops the run (max_bad_steps)


def stopped_by_nan(tmp_path, capsys, where: str) -> tuple[dict, dict]:
    """Run until the NaN guard stops it; return its last.pt and that of a run of the good steps only."""
    FaultTask.calls, FaultTask.poison = 0, (where, GOOD + 1)
    try:
        with pytest.raises(SimmmError, match=rf"stopped at step {GOOD + BAD_STEPS}: {BAD_STEPS} steps in a "
                           "row of player 'day' had a non-finite loss or gradient .* the last good state is "
                           "in checkpoints/last.pt"):
            # no periodic checkpoint: what is on disk is what the guard saved
            Engine(tiny_recipe(tmp_path / "run", day_steps=8, max_bad_steps=BAD_STEPS,
                               checkpoint={"every": 100})).fit()
    finally:
        FaultTask.calls, FaultTask.poison = 0, None
    said = " ".join(capsys.readouterr().err.split())
    for k in range(1, BAD_STEPS + 1):
        assert f"step {GOOD + k} (day): non-finite loss or gradient, step skipped ({k} in a row)" in said
    Engine(tiny_recipe(tmp_path / "good", day_steps=GOOD)).fit()
    return tuple(load_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in ("run", "good"))


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nan_stops_after_max_bad_steps_with_the_last_good_weights_saved(tmp_path, capsys, where):
    saved, expected = stopped_by_nan(tmp_path, capsys, where)
    weights = [name for name, _ in FaultTask(tiny_recipe(tmp_path, 1)).build_model().named_parameters()]
    assert_same({k: saved["modules"]["model"][k] for k in weights},
                {k: expected["modules"]["model"][k] for k in weights}, "weights")
    assert_same(saved["optimizers"], expected["optimizers"], "optimizers")


@pytest.mark.parametrize("where", ["loss", "forward"])
def test_skipped_steps_leave_the_batch_norm_statistics_alone(tmp_path, capsys, where):
    saved, expected = stopped_by_nan(tmp_path, capsys, where)
    assert all(torch.isfinite(v).all() for v in saved["modules"]["model"].values() if v.is_floating_point())
    assert_same(saved["modules"], expected["modules"], "modules")


def test_next_batch_names_the_stream_when_a_worker_dies(monkeypatch):
    monkeypatch.setenv("SIMMM_FAULTS_DIE_AT_LOAD", "5")
    loader = torch.utils.data.DataLoader(Blobs(16, 0, mortal=True), batch_size=4, num_workers=1)
    batches = iter(loader)
    assert next_batch(batches, "day")["image"].shape == (4, 3, 8, 8)
    with pytest.raises(DataError, match=r"^data stream 'extractor': a data-loader worker process died "
                       r"\(DataLoader worker \(pid\(s\) \d+\) exited unexpectedly\)\. The last checkpoint "
                       ".* is intact: continue with `simmm train RECIPE --resume`"):
        next_batch(batches, "extractor")
    # an iterator with a dead worker keeps its pid registered with torch's SIGCHLD handler, which would raise
    # in whatever runs next in this process: drop it
    del batches, loader
    gc.collect()


def test_next_batch_leaves_other_errors_alone():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise RuntimeError("DataLoader workers are fine; this is a bug in the dataset")

    with pytest.raises(RuntimeError, match="^DataLoader workers are fine"):
        next_batch(iter(torch.utils.data.DataLoader(Broken(), batch_size=2)), "day")
    with pytest.raises(StopIteration):
        next_batch(iter([]), "day")


def test_dead_data_worker_stops_the_run_clearly_and_resume_ends_exactly(tmp_path, monkeypatch):
    Engine(tiny_recipe(tmp_path / "reference", day_steps=6)).fit()
    monkeypatch.setenv("SIMMM_FAULTS_DIE_AT_LOAD", "9")  # the first sample of the third batch
    engine = Engine(tiny_recipe(tmp_path / "run", day_steps=6, num_workers=1))
    with pytest.raises(DataError, match=r"data stream 'day': a data-loader worker process died .* last "
                       r"checkpoint .* is intact: continue with `simmm train RECIPE --resume`") as caught:
        engine.fit()
    del engine, caught  # (see test_next_batch_names_the_stream_when_a_worker_dies)
    gc.collect()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 2
    monkeypatch.delenv("SIMMM_FAULTS_DIE_AT_LOAD")
    Engine(tiny_recipe(tmp_path / "run", day_steps=6)).fit(resume=True)  # num_workers may change on resume
    got, expected = (load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")
                     for name in ("run", "reference"))
    assert_same(without_recipe(got), without_recipe(expected), "last.pt")
