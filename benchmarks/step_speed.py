"""What SMM's steps cost, per task, as ratios to baselines measured in the same run (issue 10 §2).

For each task and each darkener setting it times, with the engine's own step functions on one fixed batch:

* ``plain``: a supervised step of the day model (one view, forward + backward + optimiser step);
* ``darkener``: the darkening phase's step (D forward, frozen-F forwards on I and D(I), backward into D, Adam);
* ``darkener_floor``: the least a darkener step must do: the frozen F forward on I, and F forward and backward to
  its input on D(I) — taken as the input image itself, so no D at all;
* ``extractor``: the adaptation step (two views forward + backward, two EMA-target forwards, one darkening forward,
  BYOL heads, momentum update);
* ``extractor_floor``: two views forward + backward, two target forwards, one darkening forward, nothing else;

and the peak memory of each (float32 tensors counted on the CPU as ``seg_memory.py`` counts them: resident weights,
gradients, optimiser state and batch, plus the step's transient peak from the profiler's allocation records).

Targets: darkener ≤ 1.5 × plain, extractor ≤ 1.15 × its floor, darkener peak memory ≤ 2 × plain's.

Darkener settings: ``full`` (map_scale 1, the authors' module, which the paper recipes pin) and ``fast``
(``map_scale`` 0.25, simmm's default: A, B estimated at a quarter of the resolution, guided upsampling with the
image as guide); ``--map-scales`` changes the list.

Timings are medians of ``--steps`` repeats after ``--warmup`` calls, the step kinds taking turns (round robin) so
that a change of load on a shared machine falls on all alike; the plain step is re-timed with each darkener
setting and each setting's ratios use its own plain timing. Absolute seconds are noisy on a shared machine; the
ratios within one run much less. Each task is a small function returning an engine for a set of players (``TASKS``);
each step kind runs on the batches its player reads (place recognition: mined tuples for the plain and adaptation
steps, single images for D; action: clips). Place recognition's adaptation step — the tuple plus the darkened
query, no BYOL, no target — is its own floor.

    python benchmarks/step_speed.py                  # the four tasks (settings in TASKS)
    python benchmarks/step_speed.py --tasks classification --steps 7
    python benchmarks/step_speed.py --quick          # tiny sizes, a few seconds: checks that it runs

It prints a table and writes ``results/step_speed[_quick].json`` and ``.txt``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's simmm, not an installed one
from seg_memory import resident_bytes, transient_peak_bytes  # noqa: E402
from seg_speed import build as build_segmentation  # noqa: E402
from seg_speed import TensorItems  # noqa: E402
from seg_speed import floor_step as extractor_floor_step  # noqa: E402

from simmm.engine import Engine  # noqa: E402
from simmm.recipe import recipe_from_dict  # noqa: E402
from simmm.task import EvalSet  # noqa: E402
from simmm.tasks.classification import Classification  # noqa: E402

MIB = 2**20


class SyntheticClassification(Classification):
    """The classification task on random images of a fixed size (no dataset needed)."""

    size, classes_n, items = 112, 10, 16

    def _classes(self):
        return [f"c{i}" for i in range(self.classes_n)]

    def train_dataset(self):
        g = torch.Generator().manual_seed(0)
        images = torch.rand(self.items, 3, self.size, self.size, generator=g)
        labels = torch.randint(0, self.classes_n, (self.items,), generator=g)
        return TensorItems(images, labels)

    def eval_sets(self):
        return [EvalSet("none", self.train_dataset())]


def classification(setting, players, map_scale: float) -> Engine:
    """ResNet-18 (no pretrained weights), batch and size of ``setting``; the papers' optimisers."""
    s = setting.size
    raw = {
        "task": "classification", "name": "bench", "output_dir": "/tmp/simmm_bench", "device": "cpu", "amp": "off",
        "model": {"backbone": setting.backbone, "pretrained": ""},
        "data": {"kind": "folder", "root": "-", "image_size": s, "resize": s},
        "darkener": {"map_scale": map_scale},
        "players": {name: {"steps": 1, "batch_size": setting.batch} for name in players},
        "log": {"progress": False, "tensorboard": "off"},
    }
    recipe = recipe_from_dict(raw)
    SyntheticClassification.size, SyntheticClassification.items = s, setting.batch
    return Engine(recipe, adapter=SyntheticClassification(recipe))


def segmentation(setting, players, map_scale: float) -> Engine:
    """RefineNet on ResNet-18 (seg_speed.py's synthetic task), batch and size of ``setting``."""
    args = SimpleNamespace(size=setting.size, device="cpu", amp="off", channels_last=False, decoder="refinenet",
                           backbone=setting.backbone, features=setting.features, map_scale=map_scale,
                           batch=setting.batch)
    return build_segmentation(args, False, players)


def place_recognition(setting, players, map_scale: float) -> Engine:
    """GeM on ResNet-18 (no pretrained weights), tuples of a query, a positive and ``negatives`` mined negatives at
    ``size``² from the tiny retrieval-SfM-form tree; the paper's Adam; no BYOL (the paper's place recognition)."""
    train = {"root": "synthetic:retrieval_sfm", "image_size": setting.size, "queries": 2 * setting.batch,
             "pool_size": 12, "negatives": setting.negatives, "mine_batch": 8}
    raw = {
        "task": "place_recognition", "name": "bench", "output_dir": "/tmp/simmm_bench", "device": "cpu", "amp": "off",
        "model": {"backbone": setting.backbone, "pretrained": ""},
        "data": {"train": train, "eval": {"tokyo247": {"root": "synthetic:tokyo247", "image_size": setting.size}}},
        "darkener": {"map_scale": map_scale}, "adapt": {"byol_weight": 0},
        "players": {name: {"steps": 1, "batch_size": setting.batch, "optimizer": "adam", "lr": 1e-6}
                    for name in players},
        "log": {"progress": False, "tensorboard": "off"},
    }
    return Engine(recipe_from_dict(raw))


def action(setting, players, map_scale: float) -> Engine:
    """I3D (``backbone`` inflated, no pretrained weights), clips of ``frames`` frames at ``size``² from the tiny
    ARID-form tree; the paper's SGD."""
    videos = {"root": "synthetic:arid", "list": "list_cvt/ARID_split1_train.txt", "videos": "clips"}
    s = setting.size
    raw = {
        "task": "action", "name": "bench", "output_dir": "/tmp/simmm_bench", "device": "cpu", "amp": "off",
        "model": {"arch": "i3d", "backbone": setting.backbone, "pretrained": ""},
        "data": {"train": videos, "eval": {"arid": videos}, "clip_length": setting.frames, "interval": 1,
                 "load_size": [s, s], "scale": [s, s], "crop": s},
        "darkener": {"map_scale": map_scale},
        "players": {name: {"steps": 1, "batch_size": setting.batch, "optimizer": "sgd", "lr": 1e-3}
                    for name in players},
        "log": {"progress": False, "tensorboard": "off"},
    }
    return Engine(recipe_from_dict(raw))


# task -> (engine builder, default setting, quick setting). A new task adds one builder and its settings here.
TASKS = {
    "classification": (classification, dict(backbone="resnet18", batch=16, size=112),
                       dict(backbone="resnet10t", batch=2, size=32)),
    "segmentation": (segmentation, dict(backbone="resnet18", batch=2, size=[128, 256], features=64),
                     dict(backbone="resnet18", batch=2, size=[32, 64], features=16)),
    "place_recognition": (place_recognition, dict(backbone="resnet18", batch=2, size=224, negatives=3),
                          dict(backbone="resnet10t", batch=1, size=32, negatives=1)),
    "action": (action, dict(backbone="resnet18", batch=2, size=112, frames=8),
               dict(backbone="resnet10t", batch=2, size=32, frames=4)),
}


def darkener_floor_step(engine: Engine, batch: dict) -> None:
    """The frozen F forward on I, and F forward and backward to its input on an image standing for D(I)."""
    net, images = engine.method.net, batch["image"]
    with torch.no_grad():
        net(images, output=False)
    x = images.clone().requires_grad_(True)
    feats = net(x, output=False).features
    sum(f.float().mean() for f in feats).backward()


def step_functions(engine: Engine) -> tuple[dict, dict]:
    """The batch each step kind reads — its player's own streams' first batches (tuples mined as a run mines them,
    clips, images), fixed for all repeats — and a callable per step kind this engine has players for.
    ``extractor_floor`` only where the adaptation step has more than its floor to it (views, BYOL, targets): place
    recognition's step — the tuple plus the darkened query, no BYOL — is its own floor."""
    batches = {}
    for player in engine.players:
        engine._activate(next(p for p in engine.plan if player in p.players))
        batches[player] = {stream: engine._batch(stream) for stream in engine.players[player].streams}

    def run(player):
        def step():
            engine.run_step(player, batches[player])
        return step

    def in_phase(player, fn):
        def step():
            engine._activate(next(p for p in engine.plan if player in p.players))
            fn(engine, batches[player][player])
        return step

    steps = {"plain": run("day"), "darkener": run("darkener"),
             "darkener_floor": in_phase("darkener", darkener_floor_step),
             "extractor": run("extractor"), "extractor_floor": in_phase("extractor", extractor_floor_step)}
    needs = {"plain": "day", "darkener": "darkener", "darkener_floor": "darkener", "extractor": "extractor",
             "extractor_floor": "extractor"}
    if engine.recipe.task == "place_recognition":
        needs.pop("extractor_floor")
    kinds = [name for name in steps if name in needs and needs[name] in engine.players]
    return {name: batches[needs[name]][needs[name]] for name in kinds}, {name: steps[name] for name in kinds}


def timed(fns: dict, steps: int, warmup: int) -> dict:
    """Median seconds per call of each function after warm-up. The functions take turns (round robin), so a change
    of the machine's load during the run falls on all of them alike and their ratios stay fair."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_bytes(engine: Engine, batch: dict, fn) -> int:
    """Resident tensors (weights, gradients, optimiser state, batch) + the step's transient peak."""
    fn()  # the optimiser's state exists from the first step on
    tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
    return resident_bytes(engine, tensors) + transient_peak_bytes(fn)


def measure_task(task: str, args) -> dict:
    """All step kinds of one task: plain once (a day-only run), the others per darkener map_scale (an SMM run)."""
    builder, default, quick = TASKS[task]
    setting = SimpleNamespace(**(quick if args.quick else default))
    out = {"setting": {k: v for k, v in vars(setting).items()}, "plain": {}, "darkener_settings": {}}
    torch.manual_seed(0)
    plain_engine = builder(setting, ("day",), 1.0)
    plain_batches, plain_steps = step_functions(plain_engine)
    plain_step = plain_steps["plain"]
    for scale in args.map_scales:
        torch.manual_seed(0)
        engine = builder(setting, ("darkener", "extractor"), scale)
        batches, steps = step_functions(engine)
        names = [n for n in ("darkener", "darkener_floor", "extractor", "extractor_floor") if n in steps]
        seconds = timed({"plain": plain_step, **{name: steps[name] for name in names}}, args.steps, args.warmup)
        row = {name: {"seconds": seconds[name], "peak_mib": peak_bytes(engine, batches[name], steps[name]) / MIB}
               for name in names}
        if not out["plain"]:
            out["plain"] = {"seconds": seconds["plain"],
                            "peak_mib": peak_bytes(plain_engine, plain_batches["plain"], plain_step) / MIB}
        row["plain_seconds"] = seconds["plain"]  # this setting's own plain timing (the ratios use it)
        plain = {"seconds": seconds["plain"], "peak_mib": out["plain"]["peak_mib"]}
        floor = row.get("extractor_floor", row["extractor"])  # no floor of its own: the step is its floor
        row["ratios"] = {
            "darkener_vs_plain": row["darkener"]["seconds"] / plain["seconds"],
            "darkener_vs_floor": row["darkener"]["seconds"] / row["darkener_floor"]["seconds"],
            "extractor_vs_floor": row["extractor"]["seconds"] / floor["seconds"],
            "extractor_vs_plain": row["extractor"]["seconds"] / plain["seconds"],
            "darkener_memory_vs_plain": row["darkener"]["peak_mib"] / plain["peak_mib"],
            "extractor_memory_vs_plain": row["extractor"]["peak_mib"] / plain["peak_mib"],
        }
        out["darkener_settings"][f"map_scale={scale:g}"] = row
        del engine, steps
    return out


TARGETS = {"darkener_vs_plain": 1.5, "extractor_vs_floor": 1.15, "darkener_memory_vs_plain": 2.0}


def render(results: dict, title: str) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ("task", "darkener", "plain s", "D s", "D floor s", "F s", "F floor s", "D/plain (≤1.5)",
            "F/floor (≤1.15)", "F/plain", "plain MiB", "D MiB", "D mem/plain (≤2)", "F MiB")
    for col in cols:
        table.add_column(col, justify="right")
    for task, r in results.items():
        p = r["plain"]
        for name, row in r["darkener_settings"].items():
            q = row["ratios"]
            table.add_row(task, name, f"{row['plain_seconds']:.3f}", f"{row['darkener']['seconds']:.3f}",
                          f"{row['darkener_floor']['seconds']:.3f}", f"{row['extractor']['seconds']:.3f}",
                          f"{row['extractor_floor']['seconds']:.3f}" if "extractor_floor" in row else "— (= F)",
                          f"{q['darkener_vs_plain']:.2f}",
                          f"{q['extractor_vs_floor']:.2f}", f"{q['extractor_vs_plain']:.2f}", f"{p['peak_mib']:.0f}",
                          f"{row['darkener']['peak_mib']:.0f}", f"{q['darkener_memory_vs_plain']:.2f}",
                          f"{row['extractor']['peak_mib']:.0f}")
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--map-scales", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--steps", type=int, default=5, help="timed repeats per step kind (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny settings, 1 warm-up and 3 repeats: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = min(args.steps, 3), min(args.warmup, 1)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {task: measure_task(task, args) for task in args.tasks}
    title = (f"SMM step cost on CPU ({torch.get_num_threads()} threads), medians of {args.steps}; "
             f"peak memory float32 counted by the profiler; {started}")
    text = render(results, title)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "step_speed_quick" if args.quick else "step_speed"
    command = "python benchmarks/step_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command.strip(), "date": started, "torch": torch.__version__,
              "machine": platform.platform(), "threads": torch.get_num_threads(), "targets": TARGETS,
              "args": vars(args), "results": results}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (out / f"{stem}.txt").write_text(f"$ {command.strip()}\n{text}")
    print(f"wrote {out / (stem + '.json')} and .txt")
    return result


if __name__ == "__main__":
    main()
