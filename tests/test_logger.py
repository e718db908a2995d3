"""The run logger off a terminal: plain progress lines (step, phase, losses, rate, ETA) and the resume line."""
import pytest

from simmm import logger as logger_module
from simmm.logger import RunLogger, _duration


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(logger_module.time, "perf_counter", fake)
    return fake


def _run(logger, clock, steps, seconds_per_step=1.0, phase="day"):
    for step in steps:
        clock.now += seconds_per_step
        logger.advance(step, phase, {"loss": 0.5, "ce": 0.25})


def test_plain_lines_every_n_steps_and_at_the_end(tmp_path, capsys, clock):
    logger = RunLogger(tmp_path, total_steps=25, tensorboard="off", every=10)
    _run(logger, clock, range(1, 26))  # one step a second
    logger.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "step 10/25 day loss=0.5 ce=0.25 | 1.00 steps/s, eta 15s",
        "step 20/25 day loss=0.5 ce=0.25 | 1.00 steps/s, eta 5s",
        "step 25/25 day loss=0.5 ce=0.25 | 1.00 steps/s, eta 0s",
    ]


def test_rate_counts_from_the_resumed_step(tmp_path, capsys, clock):
    logger = RunLogger(tmp_path, total_steps=1000, tensorboard="off", every=4, start_step=100)
    logger.resuming(100, 1000)
    _run(logger, clock, range(101, 105), seconds_per_step=0.5, phase="extractor")  # 2 steps/s
    logger.close()
    lines = capsys.readouterr().err.splitlines()
    # 896 steps left at 2 steps/s: 448 s
    assert lines == ["resuming from step 100 of 1000",
                     "step 104/1000 extractor loss=0.5 ce=0.25 | 2.00 steps/s, eta 7m28s"]


def test_no_plain_lines_when_progress_is_off(tmp_path, capsys, clock):
    logger = RunLogger(tmp_path, total_steps=10, tensorboard="off", progress=False, every=1)
    _run(logger, clock, range(1, 11))
    logger.close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (4.6, "5s"), (65, "1m05s"), (3725, "1h02m05s")])
def test_duration(seconds, text):
    assert _duration(seconds) == text


def test_track_off_a_terminal_prints_a_line_every_period_and_when_done(capsys, clock):
    def batches():
        for i in range(5):
            clock.now += 20.0  # each batch takes 20 s
            yield i

    assert list(logger_module.track(batches(), "eval night", total=5, every_s=30.0)) == [0, 1, 2, 3, 4]
    # lines when 30 s have passed since the last one: after batch 2 (40 s) and batch 4 (80 s); then the summary
    assert capsys.readouterr().err.splitlines() == ["eval night: 2/5 batches, 40s", "eval night: 4/5 batches, 1m20s",
                                                     "eval night: 5 batches in 100.0s"]


def test_track_off_a_terminal_says_nothing_of_a_quick_pass(capsys, clock):
    def batches():
        for i in range(3):
            clock.now += 1.6  # 4.8 s in all, under 30 s / 6
            yield i

    assert list(logger_module.track(batches(), "eval day", every_s=30.0)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_track_names_its_unit(capsys, clock):
    def images():
        clock.now += 6.0
        yield "image"

    assert list(logger_module.track(images(), "simulating night_dark", every_s=30.0, unit="images")) == ["image"]
    assert capsys.readouterr().err == "simulating night_dark: 1 images in 6.0s\n"


def test_track_on_a_terminal_draws_a_transient_bar(monkeypatch, capsys):
    from rich.console import Console

    monkeypatch.setattr(logger_module, "console", Console(stderr=True, force_terminal=True, width=60))
    assert list(logger_module.track([1, 2, 3], "eval day")) == [1, 2, 3]
    err = capsys.readouterr().err
    assert "eval day" in err and "batches" not in err  # the bar, not the plain summary line
