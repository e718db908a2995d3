"""Recipes: YAML files validated into typed dataclasses before any work starts.

A recipe is one YAML file per run. It may name a ``base:`` recipe (a path relative to itself) whose keys it
overrides, recursively for mappings. Command-line ``--set a.b=c`` overrides are applied last; their values are
parsed as YAML scalars (``--set players.extractor.lr=1e-4``). The merged mapping is then checked against the
dataclasses below: an unknown key, a wrong type or a value out of range raises :class:`RecipeError` naming the
key's full dotted path, what was given and what is allowed.

The ``model:`` and ``data:`` sections belong to the task: their dataclasses come from the task adapter
(``TaskAdapter.model_config`` / ``data_config``), looked up by the recipe's ``task:`` name.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import yaml

from simmm.errors import RecipeError, SimmmError

# --------------------------------------------------------------------------------------------------- schema


@dataclass
class PlayerConfig:
    """One player: its phase length, batch size, optimiser and learning-rate schedule.

    ``steps`` or ``epochs`` (epochs are converted with the training-set size and ``batch_size``).
    LR ``milestones`` are fractions of the player's total steps (the paper's "×0.1 at 1/3 and 2/3").
    ``lr_mult``: parameter-name pattern → LR multiplier (fnmatch over ``<module>.<parameter>`` names, e.g.
    ``"*.pool.p": 10`` for GeM's exponent); the matched parameters get an optimiser group of their own.
    ``no_decay``: parameter-name patterns (fnmatch, as ``lr_mult``'s) whose parameters take no weight decay (cirtorch
    gives GeM's exponent none: ``["*.pool.p"]``).
    """

    steps: int = 0
    epochs: float = 0.0
    batch_size: int = 16
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: Optional[float] = None
    lr_schedule: Literal["constant", "multistep", "poly", "cosine"] = "multistep"
    milestones: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])
    gamma: float = 0.1
    power: float = 0.9
    lr_mult: dict[str, float] = field(default_factory=dict)
    no_decay: list[str] = field(default_factory=list)

    def check(self, path: str) -> None:
        positive(self.batch_size, f"{path}.batch_size")
        for pattern, mult in self.lr_mult.items():
            positive(mult, f"{path}.lr_mult.{pattern}")
        non_negative(self.steps, f"{path}.steps")
        non_negative(self.epochs, f"{path}.epochs")
        if self.steps and self.epochs:
            raise RecipeError(f"{path}: give either steps ({self.steps}) or epochs ({self.epochs}), not both")
        positive(self.lr, f"{path}.lr")
        non_negative(self.weight_decay, f"{path}.weight_decay")
        if self.clip_grad_norm is not None:
            positive(self.clip_grad_norm, f"{path}.clip_grad_norm")
        for i, m in enumerate(self.milestones):
            if not 0.0 < m < 1.0:
                raise RecipeError(f"{path}.milestones[{i}]: got {m}; expected a fraction of the phase in (0, 1)")


@dataclass
class EvalConfig:
    """Evaluation: how often, which metric picks the best checkpoint, the batch size, and an optional test-time
    low-light enhancer in front of the evaluated model (:mod:`simmm.enhance`; the same for every evaluation set, day
    and night alike: a deployed system does not know which is which). ``enhance_weights``: a local Zero-DCE weights
    file (default: the installed ``neuro-low-light`` package's); ``enhance_scale``: Zero-DCE's estimation
    downscaling (1: full resolution); ``enhance_clip_limit``/``enhance_grid``: CLAHE's; ``enhance_gamma`` (0: per
    image, the mean brought to ``enhance_target``)."""

    every: int = 0
    monitor: str = ""
    mode: Literal["max", "min"] = "max"
    batch_size: int = 64
    enhance: Literal["none", "zero_dce", "clahe", "gamma"] = "none"
    enhance_weights: str = ""
    enhance_scale: float = 1.0
    enhance_clip_limit: float = 2.0
    enhance_grid: int = 8
    enhance_gamma: float = 0.0
    enhance_target: float = 0.5

    def check(self, path: str) -> None:
        if self.enhance_scale < 1:
            raise RecipeError(f"{path}.enhance_scale: got {self.enhance_scale}; expected a downscaling factor >= 1")
        positive(self.enhance_clip_limit, f"{path}.enhance_clip_limit")
        positive(self.enhance_grid, f"{path}.enhance_grid")
        non_negative(self.enhance_gamma, f"{path}.enhance_gamma")
        if not 0 < self.enhance_target < 1:
            raise RecipeError(f"{path}.enhance_target: got {self.enhance_target}; expected a mean in (0, 1)")


@dataclass
class LogConfig:
    every: int = 10
    tensorboard: Literal["auto", "on", "off"] = "auto"
    progress: bool = True


@dataclass
class CheckpointConfig:
    every: int = 500


@dataclass
class Recipe:
    """A whole run. ``model`` and ``data`` are the task adapter's own dataclasses; ``options`` is the method's (its
    fields are top-level sections of the YAML file: SMM's ``darkener:``, ``adapt:``, ``schedule:``, ``cycle:``)."""

    name: str = "run"
    task: str = "classification"
    method: str = "smm"
    seed: int = 0
    output_dir: str = "runs/{name}"
    device: str = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool = False
    sync_bn: bool = False
    num_workers: int = 0
    init: str = ""
    model: Any = None
    data: Any = None
    options: Any = None
    players: dict[str, PlayerConfig] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    max_bad_steps: int = 10

    def check(self, path: str = "") -> None:
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise RecipeError(f"device: got {self.device!r}; expected auto, cpu, cuda or cuda:N")
        non_negative(self.num_workers, "num_workers")
        positive(self.max_bad_steps, "max_bad_steps")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir.format(name=self.name))


# --------------------------------------------------------------------------------------------------- loading


def shipped_recipes_dir() -> Path:
    """The recipes that ship: ``recipes/`` of a source checkout, or the installed ``simmm.recipes`` data."""
    checkout = Path(__file__).resolve().parents[1] / "recipes"
    if checkout.is_dir():
        return checkout
    from importlib.resources import files

    return Path(str(files("simmm.recipes")))


def resolve_recipe_path(name: str | Path) -> Path:
    """``name`` if it is a file, else the shipped recipe of that name (``cls_smoke`` or ``cls_smoke.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_recipes_dir()
    for candidate in (shipped / str(name), shipped / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise RecipeError(f"recipe {name}: no such file; give a YAML path or one of: "
                      f"{', '.join(p.stem for p in sorted(shipped.glob('*.yaml')))}")


def load_recipe(path: str | Path, overrides: list[str] = (), schemas: Optional[dict] = None) -> Recipe:
    """Read a recipe file (following ``base:``) or a shipped recipe by name (``"cls_smoke"``), apply ``--set``
    overrides and validate it.

    ``schemas`` maps a task name to ``(model_config_class, data_config_class)``; by default the registered
    task adapters supply it (importing :mod:`simmm.tasks`).
    """
    path = resolve_recipe_path(path)
    raw = read_recipe_dict(path)
    for item in overrides:
        apply_override(raw, item)
    return recipe_from_dict(raw, schemas=schemas, source=str(path))


def read_recipe_dict(path: str | Path, _seen: tuple = ()) -> dict:
    """The merged mapping of a recipe file and its ``base:`` chain (no validation)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path}: no such file; expected a YAML recipe (see `simmm recipes`)")
    if path.resolve() in _seen:
        raise RecipeError(f"recipe {path}: `base:` chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(f"recipe {path}: `base` must be a path to another recipe, got {base!r}")
    parent = read_recipe_dict(path.parent / base, _seen + (path.resolve(),))
    return merge(parent, data)


def merge(base: dict, override: dict) -> dict:
    """Recursive merge of two recipe mappings; the override wins, mappings merge key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``key.path=value`` override in place; the value is parsed as YAML."""
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected key.path=value")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError(f"--set {item!r}: empty key in {key!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"--set {item!r}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def recipe_from_dict(raw: dict, schemas: Optional[dict] = None, source: str = "recipe",
                     methods: Optional[dict] = None) -> Recipe:
    """Validate a merged recipe mapping into a :class:`Recipe`.

    The task (``task:``) owns the ``model:`` and ``data:`` sections; the method (``method:``, default ``smm``) owns
    the top-level sections named by the fields of its ``config`` dataclass, and the player names of ``players:``
    (its defaults are merged under the recipe's). ``schemas``: task name -> (model config, data config);
    ``methods``: method name -> method class; both default to what is registered.
    """
    raw = dict(raw)
    raw.pop("base", None)
    if schemas is None:
        from simmm.task import task_schemas

        schemas = task_schemas()
    if methods is None:
        from simmm.method import method_schemas

        methods = method_schemas()
    task = raw.get("task", Recipe.task)
    if task not in schemas:
        raise RecipeError(f"task: got {task!r}; expected one of {', '.join(sorted(schemas)) or '(none registered)'}")
    method = raw.get("method", Recipe.method)
    if method not in methods:
        raise RecipeError(f"method: got {method!r}; expected one of {', '.join(sorted(methods)) or '(none)'}")
    method_cls = methods[method]
    option_names = [f.name for f in dataclasses.fields(method_cls.config)]
    top = [f.name for f in dataclasses.fields(Recipe) if f.name != "options"] + option_names
    for key in raw:
        if key not in top:
            raise RecipeError(f"{key}: unknown key{_did_you_mean(str(key), top)}; allowed keys here: "
                              f"{', '.join(sorted(top))}")
    players_raw = raw.pop("players", {}) or {}
    if not isinstance(players_raw, dict):
        raise RecipeError(f"players: expected a mapping of player name to settings, got {players_raw!r}")
    allowed = method_cls.players_defaults
    for name in players_raw:
        if name not in allowed:
            raise RecipeError(f"players.{name}: unknown player of method {method!r}; "
                              f"allowed: {', '.join(allowed)}")
    players = merge(allowed, players_raw)
    options_raw = {key: raw.pop(key) for key in option_names if key in raw}
    model_raw, data_raw = raw.pop("model", {}) or {}, raw.pop("data", {}) or {}
    recipe = build(Recipe, {**raw, "players": players}, "")
    recipe.model = build(schemas[task][0], model_raw, "model")
    recipe.data = build(schemas[task][1], data_raw, "data")
    recipe.options = build(method_cls.config, options_raw, "")
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict:
    """Plain mapping of a recipe (what ``config.yaml`` of a run holds); the method's sections are top-level keys,
    as in the YAML file."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    out = {}
    for f in dataclasses.fields(recipe):
        if f.name == "options":
            out.update(plain(recipe.options) if recipe.options is not None else {})
        else:
            out[f.name] = plain(getattr(recipe, f.name))
    return out


def recipe_changes(saved: dict, current: dict, ignore: Sequence[str] = ()) -> list[str]:
    """Dotted keys in which a saved recipe mapping (a checkpoint's, a run's ``config.yaml``) differs from
    ``current`` (:func:`recipe_to_dict`), leaving out keys that start with any of ``ignore``. The saved mapping is
    validated again first, so that a key added to simmm since it was written reads as its default, not as a change
    (one that no longer validates is compared as it was saved)."""
    try:
        saved = recipe_to_dict(recipe_from_dict(saved))
    except SimmmError:
        pass

    def walk(old: dict, new: dict, prefix: str) -> list[str]:
        keys = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}{key}"
            a, b = old.get(key), new.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                keys += walk(a, b, path + ".")
            elif a != b and not any(path.startswith(free) for free in ignore):
                keys.append(path)
        return keys

    return walk(saved, current, "")


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))


# --------------------------------------------------------------------------------------------------- checking


def build(cls, raw: Any, path: str):
    """Build dataclass ``cls`` from a mapping, checking every key and type (recursively)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path or 'recipe'}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise RecipeError(f"{full}: unknown key{_did_you_mean(str(key), names)}; allowed keys here: "
                              f"{', '.join(sorted(names))}")
        kwargs[key] = convert(value, hints[key], full)
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check(path)
    return obj


def convert(value: Any, tp: Any, path: str):
    """Check ``value`` against type annotation ``tp``; return it converted (ints to floats, lists to tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, path)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(f"{path}: got {value!r}; expected {_describe(tp)}")
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{path}: got {value!r}; allowed values: {', '.join(map(str, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{path}: got {value!r}; expected {_describe(tp)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise RecipeError(f"{path}: got {len(value)} values {list(value)}; expected {len(args)}")
            return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: got {value!r}; expected a mapping")
        key_tp, val_tp = args if args else (Any, Any)
        return {convert(k, key_tp, path): convert(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as a string; take it as the number it plainly is
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{path}: got {value!r}; expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{path}: got {value!r}; expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{path}: got {value!r}; expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{path}: got {value!r}; expected a string")
        return value
    raise TypeError(f"recipe schema: unsupported annotation {tp!r} at {path}")


def _did_you_mean(key: str, names) -> str:
    close = difflib.get_close_matches(key, sorted(names), n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def positive(value, path: str) -> None:
    """Fail unless ``value`` > 0, naming the recipe key ``path``."""
    if value <= 0:
        raise RecipeError(f"{path}: got {value}; expected a value > 0")


def non_negative(value, path: str) -> None:
    """Fail unless ``value`` >= 0, naming the recipe key ``path``."""
    if value < 0:
        raise RecipeError(f"{path}: got {value}; expected a value >= 0")
