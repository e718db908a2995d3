"""SMM's ``adapt.darkening: night``: the physical night simulator as a training augmentation (issue 10 §1).

The switch darkens F's second view with :mod:`simmm.night` and the training distribution (``adapt.night`` over
:data:`simmm.night.TRAINING`, a parameter set distinct from every evaluation preset), with per-image seeds drawn from
the global torch RNG (checkpointed: resuming is bitwise exact), one night per clip.
"""
import dataclasses

import pytest
import torch
from test_engine import assert_same_state, crash_and_resume, tiny_recipe

from simmm.engine import Engine
from simmm.errors import RecipeError
from simmm.night import PRESETS, TRAINING, NightParams, simulate_night

ONLY_F = {"day": {"steps": 0}, "darkener": {"steps": 0}, "extractor": {"steps": 3, "batch_size": 4}}
CHANGED = {"exposure": [0.01, 0.02], "jpeg_prob": 0.0}


def night_engine(tmp_path, night=None, players=ONLY_F, **extra):
    adapt = {"darkening": "night", "byol_weight": 0.0, **({"night": night} if night is not None else {})}
    return Engine(tiny_recipe(tmp_path, players=players, adapt=adapt, **extra))


def test_the_switch_darkens_with_the_simulator_and_the_training_params(tmp_path, monkeypatch):
    import simmm.night as night

    engine = night_engine(tmp_path, night=CHANGED)
    expected = TRAINING.replace(exposure=(0.01, 0.02), jpeg_prob=0.0)
    assert engine.method.darkener is None and engine.method.night.params == expected
    assert expected != TRAINING and expected.n_lights == TRAINING.n_lights == (0, 5)  # the rest stays TRAINING's
    # hand check: the darkened view is simulate_night with those params under seeds drawn from the global RNG
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.4
    torch.manual_seed(11)
    got = engine.method.darken(x)
    torch.manual_seed(11)
    assert torch.equal(got, simulate_night(x, expected))
    torch.manual_seed(11)
    assert not torch.equal(got, simulate_night(x, TRAINING))  # the recipe's change is used
    assert got.device == x.device and got.dtype == torch.float32
    assert float(got.mean()) < 0.5 * float(x.mean())  # exposure 1-2 % of day: clearly darker
    # in training: every extractor step runs the simulator once, and F's second view is its output
    runs, seen = [], []
    original_run, original_forward = night._run, engine.adapter.forward

    def spy_run(images, params, *args, **kwargs):
        out = original_run(images, params, *args, **kwargs)
        runs.append((params, out))
        return out

    def spy_forward(model, images, output=True):
        seen.append(images.clone())
        return original_forward(model, images, output)

    monkeypatch.setattr(night, "_run", spy_run)
    engine.adapter.forward = spy_forward
    engine.fit()
    assert len(runs) == 3 and all(params == expected for params, _ in runs)
    train_forwards = seen[:6]  # 3 steps x (day view, night view); evaluation follows
    for step, (_, out) in enumerate(runs):
        assert torch.equal(train_forwards[2 * step + 1], out)
        assert not torch.equal(train_forwards[2 * step], out)


@pytest.mark.parametrize("night, darkening, message", [
    ({"exposur": [0.01, 0.02]}, "night", r"adapt\.night\.exposur: unknown key \(did you mean exposure\?\)"),
    ({"exposure": [0.2, 0.1]}, "night", r"adapt\.night\.exposure: .*range \(lo, hi\) with lo <= hi"),
    ({"lights": "yes"}, "night", r"adapt\.night\.lights: got 'yes'; expected true or false"),
    ({"full_well": "big"}, "night", r"adapt\.night\.full_well: got 'big'; expected a number"),
    ({"light_kinds": ["neon"]}, "night", r"adapt\.night\.light_kinds: .*unknown kind\(s\) \['neon'\]"),
    ({"exposure": [0.01, 0.02]}, "learned", r"adapt\.night: given, but adapt\.darkening is 'learned'"),
])
def test_bad_night_settings_are_named_with_their_key_path(tmp_path, night, darkening, message):
    with pytest.raises(RecipeError, match=message):
        tiny_recipe(tmp_path, adapt={"darkening": darkening, "night": night})


SWITCHES_AND_CONSTANTS = {"inverse_tone", "lights", "lamps_visible", "noise", "black_level", "white_balance",
                          "auto_gain", "max_gain", "tone_curve", "jpeg_scale"}


def test_training_params_are_a_distribution_of_their_own():
    """No evaluation preset is the training distribution, nor coincides with it in any sampled range or probability:
    only the pipeline's switches and fixed constants may be shared. It has a light kind and a full well no preset
    has, and it is not the simulator's defaults either."""
    fields = [f.name for f in dataclasses.fields(NightParams)]
    for name, preset in {**PRESETS, "defaults": NightParams()}.items():
        assert TRAINING != preset, name
        same = {k for k in fields if getattr(TRAINING, k) == getattr(preset, k)}
        assert same <= SWITCHES_AND_CONSTANTS, (name, sorted(same - SWITCHES_AND_CONSTANTS))
    assert "halogen" not in {k for p in PRESETS.values() for k in p.light_kinds} and "halogen" in TRAINING.light_kinds
    assert TRAINING.full_well not in {p.full_well for p in PRESETS.values()}


def test_training_seeds_are_disjoint_from_the_evaluation_seeds():
    """Training draws d from the RNG and seeds image i with entropy [d, 7]; evaluation seeds image i of a set with
    [s, i] (s = night_sim.seed * 1 000 003 + i for one image at a time: [s, 0]). Even with s = d they differ."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    params = TRAINING.replace(jpeg_prob=0.0)
    torch.manual_seed(3)
    drawn = int(torch.randint(0, 2 ** 62, (1,)))
    torch.manual_seed(3)
    training = simulate_night(x, params)
    assert not torch.equal(training, simulate_night(x, params, seed=drawn))
    assert not torch.equal(training, simulate_night(x, params, seed=[drawn]))  # the benchmark's form


def test_the_night_view_is_simulated_in_float32_under_autocast(tmp_path):
    """Place recognition darkens its queries inside the autocast region: the simulator's convolutions (demosaicing,
    blur) must not run in bfloat16 there."""
    engine = night_engine(tmp_path, night={"jpeg_prob": 0.0})
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.4
    torch.manual_seed(2)
    plain = engine.method.darken(x)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(engine.method.darken(x), plain)


def test_resumed_run_with_night_augmentation_is_bitwise_exact(tmp_path):
    players = {"day": {"steps": 2, "batch_size": 4}, "darkener": {"steps": 0},
               "extractor": {"steps": 6, "batch_size": 4}}
    reference, resumed = crash_and_resume(lambda folder: night_engine(tmp_path / folder, players=players),
                                          crash_at=5)
    assert reference.method.night is not None
    assert_same_state(reference, resumed)


def test_a_clip_is_one_night_with_noise_per_frame(tmp_path):
    """Clips (B, 3, T, H, W): frames of a clip share the drawn parameters (noise off: identical frames stay
    identical), clips draw their own, each frame has its own sensor noise; SMM draws one seed per clip."""
    frame = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.3
    clips = frame[None, :, None].expand(2, 3, 4, 16, 16).contiguous()  # 2 clips, 4 identical frames each
    quiet = TRAINING.replace(noise=False, jpeg_prob=0.0)
    out = simulate_night(clips, quiet, seed=0)
    assert out.shape == clips.shape
    for b in range(2):
        for t in range(1, 4):
            assert torch.equal(out[b, :, t], out[b, :, 0])
    assert not torch.equal(out[0], out[1])
    noisy = simulate_night(clips, TRAINING.replace(jpeg_prob=0.0), seed=0)
    assert not torch.equal(noisy[0, :, 0], noisy[0, :, 1])
    # through SMM: clips darkened with one seed per clip from the global RNG, parameters shared by the frames
    engine = night_engine(tmp_path, night={"noise": False, "jpeg_prob": 0.0})
    torch.manual_seed(5)
    got = engine.method.darken(clips)
    after = torch.rand(())
    torch.manual_seed(5)
    assert torch.equal(got, simulate_night(clips, quiet))
    torch.manual_seed(5)
    torch.randint(0, 2 ** 62, (2,))  # one draw per clip, not per frame
    assert torch.equal(torch.rand(()), after)
    assert all(torch.equal(got[b, :, t], got[b, :, 0]) for b in range(2) for t in range(4))
