"""CUDA paths: AMP (bf16, fp16 with GradScaler), channels_last, resume on a GPU. Skipped where there is no GPU.

The darkener under bf16 autocast is checked on CPU and GPU in ``test_darkening.py``.

On a GPU machine: ``python -m pytest tests/test_cuda.py``.
"""
import pytest
import torch
from test_engine import Crash, final_state, tiny_recipe
from test_segmentation_task import smoke_recipe

from simmm.checkpoint import load_checkpoint
from simmm.engine import Engine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("amp, channels_last", [("bf16", True), ("bf16", False), ("fp16", True), ("off", False)])
def test_seg_smoke_trains_on_cuda(tmp_path, amp, channels_last):
    recipe = smoke_recipe(tmp_path, "device=cuda", f"amp={amp}", f"channels_last={str(channels_last).lower()}")
    engine = Engine(recipe)
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    assert engine.amp_dtype == expected and engine.scaler.is_enabled() == (amp == "fp16")
    metrics = engine.fit()
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values() if isinstance(v, float))
    assert 0.0 <= metrics["dz_val/mIoU"] <= 100.0
    # autocast keeps the master weights in float32, on the GPU
    for module in engine.modules().values():
        for p in module.parameters():
            assert p.is_cuda and p.dtype == torch.float32
    if channels_last:
        conv = next(m for m in engine.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_stop_and_resume_on_cuda(tmp_path):
    """Checkpoints hold the CUDA RNG state and load back onto the GPU; a resumed run ends where an uninterrupted
    one does (to float tolerance: GPU kernels need not be bitwise repeatable)."""
    reference = Engine(tiny_recipe(tmp_path / "a", device="cuda", amp="off"))
    reference.fit()
    expected = final_state(reference)

    def crash(eng, step):
        if step == 6:
            raise Crash()

    first = Engine(tiny_recipe(tmp_path / "b", device="cuda", amp="off"))
    first.callbacks.append(crash)
    with pytest.raises(Crash):
        first.fit()
    assert "cuda" in load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["rng"]
    resumed = Engine(tiny_recipe(tmp_path / "b", device="cuda", amp="off"))
    resumed.fit(resume=True)
    got = final_state(resumed)
    for key, value in expected.items():
        assert got[key].is_cuda
        if value.is_floating_point():
            assert torch.allclose(got[key], value, atol=1e-4, rtol=1e-3), key
        else:
            assert torch.equal(got[key], value), key


def test_night_augmentation_runs_on_the_batch_device(tmp_path):
    """``adapt.darkening: night`` simulates on the GPU the batch is on (CUDA per-image generators); a clip is one
    night there too (noise off: identical frames stay identical); a short run trains under bf16 autocast."""
    from simmm.night import TRAINING, simulate_night

    frame = torch.rand(3, 16, 16, device="cuda") * 0.6 + 0.3
    clips = frame[None, :, None].expand(2, 3, 3, 16, 16).contiguous()
    out = simulate_night(clips, TRAINING.replace(noise=False), seed=0)
    assert out.is_cuda and out.shape == clips.shape and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert all(torch.equal(out[b, :, t], out[b, :, 0]) for b in range(2) for t in range(3))
    assert simulate_night(clips[:, :, 0], TRAINING, seed=0).is_cuda  # images too, noise and JPEG included
    players = {"day": {"steps": 0}, "darkener": {"steps": 0}, "extractor": {"steps": 2, "batch_size": 4}}
    engine = Engine(tiny_recipe(tmp_path, device="cuda", amp="bf16", players=players,
                                adapt={"darkening": "night", "byol_weight": 0.0}))
    engine.fit()
    assert engine.global_step == 2
