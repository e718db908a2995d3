"""Peak training memory of the SMM segmentation steps, counted on the CPU: will a setting fit a GPU?

For each step kind (``plain`` baseline step, ``darkener`` phase step, ``extractor`` adaptation step), with and
without gradient checkpointing, it counts the tensor memory one training step needs at its peak:

* **resident**: every tensor alive when the step starts — the weights and buffers of every module (model, EMA
  target, BYOL heads, darkener), any gradients still held (the engine frees them after each step), the
  optimisers' state, the batch;
* **transient peak**: the most memory the step allocates on top of that at any moment — activations saved for
  backward, gradients, recomputation under checkpointing — from the PyTorch profiler's allocation records
  (``profile_memory=True``), accumulated in time order at the granularity of single operators.

``resident + transient peak`` is what ``torch.cuda.max_memory_allocated`` reports for the same step in float32
on a GPU, less what only a GPU adds: cuDNN's workspaces (typically tens to a few hundred MiB), the CUDA context
(about 0.5 GiB, outside PyTorch's count) and the caching allocator's rounding. bf16 autocast stores most
activations in half the bytes, so the float32 figure is the conservative one. ``seg_speed.py --device cuda``
measures the real peak where a GPU is available.

    python benchmarks/seg_memory.py        # the paper's setting: ResNet-101 RefineNet, batch 4, 384x768 crops
    python benchmarks/seg_memory.py --size 512 1024 --batch 2 --budget-gib 24
    python benchmarks/seg_memory.py --method rss   # cross-check: growth of the process's peak resident memory

It prints a table and writes ``results/seg_memory_cpu_<backbone>_b<batch>_<H>x<W>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from seg_speed import add_model_args, build, phase_steps
from torch.profiler import ProfilerActivity, profile

GIB = 2**30


def resident_bytes(engine, batch_tensors=()) -> int:
    """Bytes of the distinct storages behind every module's weights, buffers and gradients, every optimiser's
    state and the given batch tensors (a storage shared by several tensors counts once)."""
    tensors = list(batch_tensors)
    for module in engine.modules().values():
        for p in module.parameters():
            tensors.append(p)
            if p.grad is not None:
                tensors.append(p.grad)
        tensors.extend(module.buffers())
    for optimizer in engine.optimizers.values():
        for state in optimizer.state.values():
            tensors.extend(v for v in state.values() if torch.is_tensor(v))
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
    return sum(storages.values())


def transient_peak_bytes(fn) -> int:
    """The highest net allocation above the starting point while ``fn()`` runs, from the profiler's records."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def rss_peak_growth_bytes(fn) -> int:
    """The process's peak resident memory while ``fn()`` runs, above its resident memory at the start (Linux:
    ``/proc/self/status``, peak reset through ``/proc/self/clear_refs``). Meaningful only when the C allocator
    hands freed blocks back at once (``MALLOC_MMAP_THRESHOLD_`` set; :func:`main` sees to it)."""

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current VmRSS
    start = status("VmRSS:")
    fn()
    return status("VmHWM:") - start


def init_optimizer_state(engine) -> None:
    """Every optimiser's state as a first step leaves it (momentum buffers, Adam's moments), without running one: a
    zero gradient for each parameter, one optimiser step, the gradients dropped."""
    for optimizer in engine.optimizers.values():
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def count_step(engine, step, held=(), method: str = "profiler", warmup=None) -> dict:
    """Resident, transient peak and their sum (GiB) of ``step()``, after a warm-up that brings the engine to its
    steady state (the optimisers' state exists from the first step on): ``warmup()``, by default one call of
    ``step`` (:func:`init_optimizer_state` costs no step). ``held``: the tensors besides the engine's modules and
    optimisers that are alive when the step starts (the batch), or a function that returns them after the warm-up.
    ``method``: how the transient peak is counted, ``profiler`` or ``rss``."""
    (warmup or step)()
    start = time.perf_counter()
    resident = resident_bytes(engine, held() if callable(held) else held)
    transient = (rss_peak_growth_bytes if method == "rss" else transient_peak_bytes)(step)
    return {"resident_gib": resident / GIB, "transient_gib": transient / GIB,
            "peak_gib": (resident + transient) / GIB, "seconds": time.perf_counter() - start}


def measure(args, checkpointing: bool) -> dict:
    """Two runs as a user would start them: the day-only baseline (``plain`` steps: the model and its optimiser),
    and SMM from a day model (``darkener`` then ``extractor`` steps: model, EMA target, BYOL heads, darkener)."""
    out = {}
    for players in (("day",), ("darkener", "extractor")):
        engine = build(args, checkpointing, players)
        batch, steps = phase_steps(engine, args)
        for name in ("plain", "darkener", "extractor"):
            if name not in steps:
                continue
            player = "day" if name == "plain" else name
            engine._release_finished_players(next(i for i, s in enumerate(engine.plan) if player in s.players))
            out[name] = count_step(engine, steps[name], batch.values(), args.method)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, size=[384, 768], batch=4, backbone="resnet101")
    parser.add_argument("--budget-gib", type=float, default=16.0, help="the GPU memory the setting must fit")
    parser.add_argument("--method", choices=["profiler", "rss"], default="profiler",
                        help="how the transient peak is counted: the profiler's allocation records, or (Linux, a "
                             "cross-check) the growth of the process's peak resident memory")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.method == "rss" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc keeps freed blocks below a moving threshold, which hides the next step's growth: fix it, restart
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    args.device, args.amp, args.channels_last = "cpu", "off", False
    torch.manual_seed(0)
    rows = {("checkpointing" if c else "plain_backward"): measure(args, c) for c in (False, True)}

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Peak training memory (float32, counted on CPU by {args.method}), "
                        f"{args.backbone}+{args.decoder}, "
                        f"batch {args.batch} at {args.size[0]}x{args.size[1]}; budget {args.budget_gib:g} GiB")
    for col in ("setting", "step", "resident GiB", "transient GiB", "peak GiB", "fits"):
        table.add_column(col, justify="right")
    for setting, phases in rows.items():
        for step, r in phases.items():
            table.add_row(setting, step, f"{r['resident_gib']:.2f}", f"{r['transient_gib']:.2f}",
                          f"{r['peak_gib']:.2f}", "yes" if r["peak_gib"] <= args.budget_gib else "NO")
    Console(width=140).print(table)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"seg_memory_cpu_{args.backbone}_b{args.batch}_{args.size[0]}x{args.size[1]}"
                  + ("_rss" if args.method == "rss" else "") + ".json")
    result = {"args": vars(args), "torch": torch.__version__, "machine": platform.platform(), "results": rows,
              "fits": all(r["peak_gib"] <= args.budget_gib for phases in rows.values() for r in phases.values())}
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
