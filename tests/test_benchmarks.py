"""The benchmarks' measuring helpers count what they claim (the benchmarks themselves are run by hand)."""
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from seg_memory import resident_bytes, transient_peak_bytes  # noqa: E402

MIB = 2**20


def test_transient_peak_counts_a_temporary_and_a_kept_tensor():
    kept = []

    def step():
        a = torch.ones(4 * MIB // 4)  # 4 MiB, freed at the end of the step
        b = torch.ones(2 * MIB // 4)  # 2 MiB, kept
        kept.append(b)
        return float(a.sum())

    peak = transient_peak_bytes(step)
    assert 6 * MIB <= peak < 6.1 * MIB


def test_resident_bytes_counts_shared_storage_once():
    class Fake:
        optimizers = {}

        def __init__(self, modules):
            self._modules = modules

        def modules(self):
            return self._modules

    linear = torch.nn.Linear(256, 256)  # 65,792 float32 weights
    linear.weight.grad = torch.zeros_like(linear.weight)
    batch = torch.zeros(1024)
    engine = Fake({"model": linear, "alias": linear})
    assert resident_bytes(engine, [batch, batch[:10]]) == (2 * 256 * 256 + 256 + 1024) * 4


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
def test_rss_peak_growth_sees_a_large_temporary():
    from seg_memory import rss_peak_growth_bytes

    def step():
        return float(torch.ones(64 * MIB // 4).add_(1).sum())

    assert rss_peak_growth_bytes(step) >= 60 * MIB


def test_step_speed_floors_do_what_they_claim(monkeypatch):
    """The darkener floor never runs D and back-propagates to its input only; the quick settings build and every
    step kind runs on them."""
    from types import SimpleNamespace

    import step_speed

    setting = SimpleNamespace(**step_speed.TASKS["classification"][2])
    engine = step_speed.classification(setting, ("darkener", "extractor"), 1.0)
    batch, steps = step_speed.step_functions(engine, setting)
    assert set(steps) == {"darkener", "darkener_floor", "extractor", "extractor_floor"}
    darkener = engine.method.darkener
    monkeypatch.setattr(darkener, "forward", lambda *a, **k: pytest.fail("the darkener floor ran D"))
    seen = []
    real = engine.method.net.forward

    def spy(images, output=True):
        seen.append((images.requires_grad, torch.is_grad_enabled()))
        return real(images, output=output)

    monkeypatch.setattr(engine.method.net, "forward", spy)
    steps["darkener_floor"]()
    assert seen == [(False, False), (True, True)]  # F on I without grad, then F on an input that takes a gradient
    assert all(p.grad is None for p in engine.model.parameters())  # F is frozen in the darkener phase
    monkeypatch.undo()
    for name in ("darkener", "extractor", "extractor_floor"):
        steps[name]()
