"""Recipe loading: base inheritance, --set overrides, and errors that name the key, the value and what is allowed."""
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simmm.errors import RecipeError
from simmm.recipe import apply_override, load_recipe, recipe_from_dict, recipe_to_dict


@dataclass
class M:
    width: int = 4
    name: str = "x"


@dataclass
class D:
    root: str = ""
    sizes: list[int] = field(default_factory=lambda: [1])


SCHEMAS = {"toy": (M, D)}


def write(path, text):
    path.write_text(text)
    return path


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "task: toy\nseed: 3\nmodel: {width: 8, name: a}\nplayers:\n  day: {steps: 5}\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\nname: child\nmodel: {width: 16}\n")
    r = load_recipe(child, ["players.day.lr=0.5", "data.sizes=[2, 3]"], schemas=SCHEMAS)
    assert r.name == "child" and r.seed == 3
    assert r.model.width == 16 and r.model.name == "a"  # mappings merge key by key
    assert r.players["day"].steps == 5 and r.players["day"].lr == 0.5
    assert r.data.sizes == [2, 3]
    # the paper's darkener optimiser defaults survive a partial players.darkener section
    assert r.players["darkener"].lr == 1e-4 and r.players["darkener"].clip_grad_norm == 0.1


def test_unknown_key_names_full_path_and_allowed(tmp_path):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"task": "toy", "darkener": {"weights": {"simm": 1.0}}}, schemas=SCHEMAS)
    msg = str(err.value)
    assert "darkener.weights.simm" in msg and "did you mean sim" in msg and "allowed keys" in msg


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("recipe,key,allowed", [
    ("cls_smoke.yaml", "model.xyz", "backbone, ciconv, drop_rate, num_classes"),
    ("cls_smoke.yaml", "data.xyz", "adabn, cache_dir, classes"),
    ("cls_smoke.yaml", "data.night_sim.xyz", "mixed, presets, seed, source"),
    ("cls_smoke.yaml", "data.photos.xyz", "per_class_test, per_class_train"),
    ("seg_smoke.yaml", "model.xyz", "backbone, checkpointing, ciconv, decoder"),
    ("seg_smoke.yaml", "data.xyz", "adabn, blur, color_jitter, crop, cutout"),
    ("seg_smoke.yaml", "data.train.xyz", "condition, dataset, root, size, split"),
    ("seg_smoke.yaml", "data.eval.cs_val.xyz", "condition, dataset, root, size, split"),
])
def test_unknown_key_in_task_sections_names_its_path(recipe, key, allowed):
    """The task-owned model: and data: sections (their schemas come from the task) reject unknown keys at any
    depth, naming the full key path and the keys allowed there."""
    with pytest.raises(RecipeError, match=rf"^{key.replace('.', r'[.]')}: unknown key; allowed keys here: {allowed}"):
        load_recipe(RECIPES / recipe, [f"{key}=1"])


def test_unknown_key_in_task_section_of_a_file_names_its_path(tmp_path):
    path = write(tmp_path / "r.yaml", "task: segmentation\ndata:\n  train: {root: x, size: [8, 8], colour: red}\n")
    with pytest.raises(RecipeError, match=r"data[.]train[.]colour: unknown key.*allowed keys here: condition"):
        load_recipe(path)


def test_wrong_type_and_range(tmp_path):
    with pytest.raises(RecipeError, match=r"players\.extractor\.lr: got 'fast'; expected a number"):
        recipe_from_dict({"task": "toy", "players": {"extractor": {"lr": "fast"}}}, schemas=SCHEMAS)
    with pytest.raises(RecipeError, match=r"model\.width: got 2\.5; expected an integer"):
        recipe_from_dict({"task": "toy", "model": {"width": 2.5}}, schemas=SCHEMAS)
    with pytest.raises(RecipeError, match=r"darkener\.map_scale: got 1\.5"):
        recipe_from_dict({"task": "toy", "darkener": {"map_scale": 1.5}}, schemas=SCHEMAS)
    with pytest.raises(RecipeError, match=r"schedule: got 'three_stage'; allowed values: two_stage, alternating"):
        recipe_from_dict({"task": "toy", "schedule": "three_stage"}, schemas=SCHEMAS)
    with pytest.raises(RecipeError, match=r"darkener\.exposure_range: got 3 values"):
        recipe_from_dict({"task": "toy", "darkener": {"exposure_range": [0, 0.1, 0.2]}}, schemas=SCHEMAS)
    with pytest.raises(RecipeError, match=r"players\.critic: unknown player"):
        recipe_from_dict({"task": "toy", "players": {"critic": {}}}, schemas=SCHEMAS)
    with pytest.raises(RecipeError, match=r"task: got 'nope'; expected one of toy"):
        recipe_from_dict({"task": "nope"}, schemas=SCHEMAS)
    with pytest.raises(RecipeError, match=r"players\.day: give either steps"):
        recipe_from_dict({"task": "toy", "players": {"day": {"steps": 3, "epochs": 1}}}, schemas=SCHEMAS)


def test_int_accepted_for_float_and_bool_rejected_for_int():
    r = recipe_from_dict({"task": "toy", "players": {"day": {"lr": 1}}}, schemas=SCHEMAS)
    assert isinstance(r.players["day"].lr, float)
    # YAML 1.1 reads `lr: 1e-3` as the string "1e-3": it is still the number
    r = recipe_from_dict({"task": "toy", "players": {"day": {"lr": "1e-3"}}}, schemas=SCHEMAS)
    assert r.players["day"].lr == 1e-3
    with pytest.raises(RecipeError, match=r"seed: got True; expected an integer"):
        recipe_from_dict({"task": "toy", "seed": True}, schemas=SCHEMAS)


def test_bad_files(tmp_path):
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "missing.yaml", schemas=SCHEMAS)
    bad = write(tmp_path / "bad.yaml", "task: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad, schemas=SCHEMAS)
    loop = write(tmp_path / "loop.yaml", "base: loop.yaml\n")
    with pytest.raises(RecipeError, match="loops back"):
        load_recipe(loop, schemas=SCHEMAS)


def test_override_syntax():
    raw = {"a": 1}
    with pytest.raises(RecipeError, match="expected key.path=value"):
        apply_override(raw, "novalue")
    with pytest.raises(RecipeError, match="a is a value, not a section"):
        apply_override(raw, "a.b=1")
    apply_override(raw, "x.y=off")
    assert raw["x"]["y"] is False  # YAML scalars


def test_round_trip_through_plain_dict():
    r = recipe_from_dict({"task": "toy", "darkener": {"exposure_range": [0.1, 0.3]}}, schemas=SCHEMAS)
    plain = recipe_to_dict(r)
    again = recipe_from_dict(plain, schemas=SCHEMAS)
    assert recipe_to_dict(again) == plain
    assert again.options.darkener.exposure_range == (0.1, 0.3)


def test_shipped_recipes_validate():
    recipes = sorted(RECIPES.glob("*.yaml"))
    assert recipes
    for path in recipes:
        load_recipe(path)  # every shipped recipe is valid against the real task schemas


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_loads(path):
    """Every recipe that ships validates (its task's and its method's sections), and round-trips."""
    from simmm.recipe import load_recipe

    recipe = load_recipe(path)
    if recipe.method == "smm":
        assert recipe.options.schedule in ("two_stage", "alternating")
        assert set(recipe.players) == {"day", "darkener", "extractor"}
    else:
        assert recipe.method == "dania" and set(recipe.players) == {"generator", "discriminators"}
    again = recipe_from_dict(recipe_to_dict(recipe))
    assert recipe_to_dict(again) == recipe_to_dict(recipe)
