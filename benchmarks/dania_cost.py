"""The cost of a DANIA training iteration against a plain segmentation step: time on this machine, and peak memory
at the paper's setting counted on the CPU as ``seg_memory.py`` counts it — will DANIA train on one 16 GB GPU?

A DANIA iteration is the engine's two steps on one iteration (``Engine.run_step``, as ``seg_speed.py`` times them):

* ``generator``: the relighting net R and the segmentation net G on the three domains (labelled source, day and
  night target), the light, source, static and adversarial losses, the warp of the day prediction, backward and the
  SGD update of R and G;
* ``discriminators``: D_d and D_n on the generator's detached softmaxes, backward and their Adam update.

The ``plain`` step is ``seg_speed.py``'s baseline step (one view of the same batch size and crop, forward + backward +
SGD update of G), on its ready-cropped random batch.

1. **Time** (``--time-*``): median seconds of each step after warm-up, on this machine (default ResNet-18 RefineNet,
   batch 2, 128x256 crops: the source and both pair images at the crop size, no random scale), and the ratio
   DANIA iteration / plain step. Three domains pass through G, so about 3 is the least a DANIA iteration can cost.
2. **Memory** (``--backbone`` and the size flags; default the paper's setting, METHOD.md §5): batch 2, the source
   cropped to 512x512 at scale 0.5-1.0 from 1024x2048 Cityscapes images, each Dark Zurich pair (1080x1920) cropped
   to 960x960 at scale 0.9-1.1 and resized to 512x512 (DANNet's code); ResNet-101 with each decoder (RefineNet,
   PSPNet, DeepLab-v2), with and without gradient checkpointing. For each: the resident bytes (every module's
   weights, buffers and gradients, both players' optimiser state, the batches, and the previous iteration's
   detached softmaxes the discriminators read) and the transient peak from the profiler's allocation records
   (``seg_memory.count_step``), for the DANIA iteration and for the plain step of the same model at the same crop
   and batch. ``resident + transient`` is what ``torch.cuda.max_memory_allocated`` would report in float32 on a GPU,
   less cuDNN's workspaces, the CUDA context and the allocator's rounding (see ``seg_memory.py``).

The data are the real loaders on tiny generated Cityscapes and Dark Zurich trees (``simmm.data.synthetic``) in a
temporary folder, loaded at the sizes above. ``--mem-cap-gib`` caps this process's address space above what it
holds at the start, so a setting that needs more than the machine has fails its allocation (reported as
``> cap``) instead of swapping or taking the machine down.

    python benchmarks/dania_cost.py                       # both parts, the paper's setting (ResNet-101 takes a while)
    python benchmarks/dania_cost.py --decoders refinenet --checkpointing off --skip-time
    python benchmarks/dania_cost.py --mem-cap-gib 18      # refuse to allocate beyond 18 GiB above the start

It prints two tables and writes ``results/dania_cost_cpu_<backbone>_b<batch>.json`` and a ``.txt`` copy of the
tables.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

import torch
from rich.console import Console
from seg_memory import count_step, init_optimizer_state
from seg_speed import build, phase_steps, timed

from simmm.data.synthetic import make_cityscapes_tree, make_darkzurich_tree
from simmm.engine import Engine
from simmm.recipe import recipe_from_dict

DECODERS = ("refinenet", "pspnet", "deeplabv2")


def dania_engine(args, trees: Path, sizes: dict, backbone: str, decoder: str, checkpointing: bool) -> Engine:
    """A DANIA engine on the generated trees: the method's own players (SGD for R and G, Adam for D_d and D_n),
    the source loaded at ``sizes["source"]`` and cropped to ``sizes["crop"]``, the pairs loaded at
    ``sizes["pair"]``, cropped to ``sizes["pair_crop"]`` and resized to ``sizes["resize"]``."""
    cs, dz = str(trees / "cityscapes"), str(trees / "dark_zurich")
    raw = {
        "task": "segmentation", "method": "dania", "name": "dania_cost", "output_dir": str(trees / "run"),
        "device": "cpu", "amp": "off",
        "model": {"decoder": decoder, "backbone": backbone, "pretrained": "", "checkpointing": checkpointing},
        "data": {"train": {"dataset": "cityscapes", "root": cs, "split": "train", "size": sizes["source"]},
                 "eval": {"dz_val": {"dataset": "darkzurich", "root": dz, "split": "val", "condition": "night"}},
                 "crop": sizes["crop"], "scale": sizes["scale"], "blur": 0.0, "cutout": 0.0},
        "dania": {"pairs": {"source": "darkzurich", "root": dz, "size": sizes["pair"], "crop": sizes["pair_crop"],
                            "scale": sizes["pair_scale"], "resize": sizes["resize"]},
                  "align": {"cache_dir": str(trees / "align")}},
        "players": {"generator": {"steps": 1, "batch_size": args.batch},
                    "discriminators": {"batch_size": args.batch}},
        "log": {"progress": False, "tensorboard": "off"},
    }
    return Engine(recipe_from_dict(raw))


def dania_iteration(engine: Engine, args) -> tuple[dict, dict]:
    """The first batch of each stream, and callables for the ``generator`` step, the ``discriminators`` step and the
    whole ``iteration`` (both, in the engine's order) on it."""
    batches = {name: next(iter(torch.utils.data.DataLoader(s.dataset, batch_size=args.batch)))
               for name, s in engine.streams.items()}

    def run(player):
        return lambda: engine.run_step(player, {s: batches[s] for s in engine.players[player].streams})

    gen, disc = run("generator"), run("discriminators")

    def iteration():
        gen()
        disc()

    return batches, {"generator": gen, "discriminators": disc, "iteration": iteration}


def held_tensors(engine: Engine, batches: dict) -> list:
    """What a DANIA iteration starts with besides modules and optimisers: the batches, and the previous iteration's
    detached softmaxes that the method keeps for its discriminators' step (freed only when the generator step
    replaces them, after its peak): stand-ins of their shapes, (B, classes) at the source crop and, for day and
    night, at the pair size — the first counted iteration has no previous one."""
    tensors = [v for batch in batches.values() for v in batch.values() if torch.is_tensor(v)]
    b, c = batches["source"]["image"].shape[0], engine.recipe.model.num_classes
    crop, pair = engine.recipe.data.crop, engine.method.pair_transform.out_hw
    return tensors + [torch.empty(b, c, *crop), torch.empty(b, c, *pair), torch.empty(b, c, *pair)]


def plain_args(args, size, backbone: str, decoder: str) -> Namespace:
    """``seg_speed.build``'s arguments for the plain step of this model at ``size``."""
    return Namespace(**{**vars(args), "size": list(size), "backbone": backbone, "decoder": decoder,
                        "features": 0, "map_scale": 1.0, "device": "cpu", "amp": "off", "channels_last": False})


def measure_time(args, trees: Path) -> dict:
    """Median seconds of the plain step, the DANIA iteration and each of its two steps, called in turn in every
    repeat (a machine shared with other work slows them alike), and the median over repeats of the ratio
    iteration / plain."""
    size = args.time_size
    sizes = {"source": size, "crop": size, "scale": [1.0, 1.0], "pair": size, "pair_crop": size,
             "pair_scale": [1.0, 1.0], "resize": size}
    pa = plain_args(args, size, args.time_backbone, args.time_decoder)
    _, plain = phase_steps(build(pa, False, ("day",)), pa)
    engine = dania_engine(args, trees, sizes, args.time_backbone, args.time_decoder, False)
    _, steps = dania_iteration(engine, args)
    fns = {"plain": plain["plain"], **steps}
    once = Namespace(device="cpu", warmup=0, steps=1)
    for _ in range(args.warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(args.steps):
        for name, fn in fns.items():
            times[name].append(timed(fn, once, lambda: None)[0])
    out = {name: statistics.median(t) for name, t in times.items()}
    out["iteration_vs_plain"] = statistics.median(i / p for i, p in zip(times["iteration"], times["plain"]))
    out["repeats"] = times
    return out


def guarded(fn) -> dict:
    """``fn()``, or the allocation failure it met under ``--mem-cap-gib``."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 (an engine that fails to build wraps the allocator's error)
        if "can't allocate memory" not in str(exc) and not isinstance(exc, MemoryError):
            raise
        return {"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"}
    finally:
        gc.collect()


def measure_memory(args, trees: Path, decoder: str, checkpointing: bool) -> dict:
    sizes = {"source": args.source_size, "crop": args.crop, "scale": args.scale, "pair": args.pair_size,
             "pair_crop": args.pair_crop, "pair_scale": args.pair_scale, "resize": args.resize}

    def plain():
        pa = plain_args(args, args.crop, args.backbone, decoder)
        engine = build(pa, checkpointing, ("day",))
        batch, steps = phase_steps(engine, pa)
        return count_step(engine, steps["plain"], batch.values(), warmup=lambda: init_optimizer_state(engine))

    def dania(a=args):
        engine = dania_engine(a, trees, sizes, args.backbone, decoder, checkpointing)
        batches, steps = dania_iteration(engine, a)
        return count_step(engine, steps["iteration"], held_tensors(engine, batches),
                          warmup=lambda: init_optimizer_state(engine))

    out = {"plain": guarded(plain), "dania": guarded(dania)}
    if "error" in out["dania"] and args.batch > 1 and args.estimate:
        # over the cap: count batch 1 and scale what grows with the batch (the activations); the weights'
        # gradients, counted batch times, make the estimate a little high
        try:
            one = guarded(lambda: dania(Namespace(**{**vars(args), "batch": 1})))
        except ValueError as exc:  # PSPNet's pooled 1x1 batch norm cannot train on one image
            one = {"error": f"ValueError: {exc}"}
        out["dania"]["batch1"] = one
        if "error" not in one:
            out["dania"]["estimate_gib"] = one["resident_gib"] + args.batch * one["transient_gib"]
    peak = out["dania"].get("peak_gib", out["dania"].get("estimate_gib"))
    if "error" not in out["plain"] and peak is not None:
        out["dania_vs_plain"] = peak / out["plain"]["peak_gib"]
    return out


def cap_address_space(gib: float) -> None:
    """Let this process allocate at most ``gib`` GiB beyond the address space it holds now."""
    with open("/proc/self/status") as f:
        now = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = now + int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def tables(args, result: dict):
    from rich.table import Table

    out = []
    t = result.get("time")
    if t:
        table = Table(title=f"DANIA iteration vs plain segmentation step, {args.time_backbone}+{args.time_decoder}, "
                            f"batch {args.batch} at {args.time_size[0]}x{args.time_size[1]}, float32 on "
                            f"{result['cpu']} ({result['threads']} threads), median of {args.steps}")
        for col in ("plain s", "generator s", "discriminators s", "DANIA iteration s", "iteration / plain"):
            table.add_column(col, justify="right")
        table.add_row(f"{t['plain']:.3f}", f"{t['generator']:.3f}", f"{t['discriminators']:.3f}",
                      f"{t['iteration']:.3f}", f"{t['iteration_vs_plain']:.2f}")
        out.append(table)
    m = result.get("memory")
    if m:
        table = Table(title=f"Peak training memory (float32, counted on CPU by the profiler), {args.backbone}, batch "
                            f"{args.batch}: source crop {args.crop[0]}x{args.crop[1]} (scale {args.scale[0]:g}-"
                            f"{args.scale[1]:g} of {args.source_size[0]}x{args.source_size[1]}), pairs "
                            f"{args.pair_size[0]}x{args.pair_size[1]} cropped {args.pair_crop[0]}x{args.pair_crop[1]}"
                            f" resized {args.resize[0]}x{args.resize[1]}; budget {args.budget_gib:g} GiB")
        for col in ("decoder", "setting", "step", "resident GiB", "transient GiB", "peak GiB", "fits",
                    "DANIA / plain"):
            table.add_column(col, justify="right")
        for decoder, settings in m.items():
            for setting, rows in settings.items():
                for step in ("plain", "dania"):
                    r = rows[step]
                    ratio = f"{rows['dania_vs_plain']:.2f}" if step == "dania" and "dania_vs_plain" in rows else ""
                    if "error" in r:
                        est = r.get("estimate_gib")
                        peak = f"> {args.mem_cap_gib:g}" + (f" (≈ {est:.2f} from batch 1)" if est else "")
                        fits = "NO" if est is None or est > args.budget_gib else "≈ yes"
                        table.add_row(decoder, setting, step, "", "", peak, fits, ratio)
                        continue
                    table.add_row(decoder, setting, step, f"{r['resident_gib']:.2f}", f"{r['transient_gib']:.2f}",
                                  f"{r['peak_gib']:.2f}", "yes" if r["peak_gib"] <= args.budget_gib else "NO", ratio)
        out.append(table)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--skip-time", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--time-size", type=int, nargs=2, default=[128, 256], metavar=("H", "W"))
    parser.add_argument("--time-backbone", default="resnet18")
    parser.add_argument("--time-decoder", default="refinenet")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backbone", default="resnet101", help="the memory part's encoder")
    parser.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=DECODERS)
    parser.add_argument("--checkpointing", choices=["both", "off", "on"], default="both")
    parser.add_argument("--source-size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--crop", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--scale", type=float, nargs=2, default=[0.5, 1.0], metavar=("LO", "HI"))
    parser.add_argument("--pair-size", type=int, nargs=2, default=[1080, 1920], metavar=("H", "W"))
    parser.add_argument("--pair-crop", type=int, nargs=2, default=[960, 960], metavar=("H", "W"))
    parser.add_argument("--pair-scale", type=float, nargs=2, default=[0.9, 1.1], metavar=("LO", "HI"))
    parser.add_argument("--resize", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--budget-gib", type=float, default=16.0, help="the GPU memory the setting must fit")
    parser.add_argument("--mem-cap-gib", type=float, default=0.0,
                        help="cap this process's allocations at this many GiB above its start (0: no cap)")
    parser.add_argument("--no-estimate", dest="estimate", action="store_false",
                        help="no batch-1 estimate for a setting over --mem-cap-gib")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.mem_cap_gib:
        cap_address_space(args.mem_cap_gib)
    torch.manual_seed(0)
    result = {"args": vars(args), "torch": torch.__version__, "machine": platform.platform(),
              "cpu": platform.processor() or "cpu", "threads": torch.get_num_threads()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"dania_cost_cpu_{args.backbone}_b{args.batch}.json"
    console = Console(width=160, record=True)

    def write() -> None:  # after each measurement: a long run that stops keeps what it measured
        path.write_text(json.dumps(result, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        trees = Path(tmp)
        make_cityscapes_tree(trees / "cityscapes")
        make_darkzurich_tree(trees / "dark_zurich")
        if not args.skip_memory:
            result["memory"] = {}
            settings = {"both": (True, False), "off": (False,), "on": (True,)}[args.checkpointing]
            for c in settings:  # the settings most likely to fit first
                for d in args.decoders:
                    row = measure_memory(args, trees, d, c)
                    result["memory"].setdefault(d, {})["checkpointing" if c else "plain_backward"] = row
                    write()
                    print(f"{d}, checkpointing {c}: {row}", flush=True)
        if not args.skip_time:
            result["time"] = measure_time(args, trees)
    write()
    for table in tables(args, result):
        console.print(table)
    path.with_suffix(".txt").write_text(console.export_text())
    print(f"wrote {path} and {path.with_suffix('.txt').name}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
