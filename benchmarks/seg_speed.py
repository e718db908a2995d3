"""Speed and memory of SMM segmentation steps, as ratios to baselines measured in the same run.

For each setting (with and without gradient checkpointing) it times, with the engine's own step functions:

* ``plain``: a baseline training step (one view, forward + backward + optimiser step);
* ``darkener``: the darkening phase's step (D forward, two frozen-F forwards, backward into D);
* ``extractor``: the adaptation step (two views forward + backward, two EMA-target forwards, one darkening
  forward, BYOL heads, momentum update);
* ``floor``: the least work an adaptation step must do — two views forward + backward, two target forwards and
  one darkening forward, nothing else — so ``extractor / floor`` is the engine's overhead.

Targets (the segmentation issue): extractor ≤ 1.15 × floor; darkener ≤ 1.5 × plain. On a GPU it also reports the
peak memory of each step (``torch.cuda.max_memory_allocated`` and ``max_memory_reserved``, the weights and optimiser
state of every player included); ``seg_memory.py`` counts the same peak on a CPU. It prints a table and writes JSON
and PNG next to this file (``results/seg_speed_<device>_<backbone>_b<batch>_<H>x<W>_<amp>[_cl].json|png``). On CPU
it runs at a reduced size; on a GPU at 512x1024 by default.

    python benchmarks/seg_speed.py                       # CPU default: resnet18 RefineNet, batch 2, 128x256
    python benchmarks/seg_speed.py --device cuda --backbone resnet101 --batch 2              # 512x1024, bf16
    python benchmarks/seg_speed.py --device cuda --backbone resnet101 --batch 4 --size 384 768 --amp off
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from simmm.darkening import fold_clips, unfold_clips
from simmm.engine import Engine, resolve_amp
from simmm.recipe import recipe_from_dict
from simmm.task import EvalSet
from simmm.tasks.segmentation import Segmentation


class TensorItems(torch.utils.data.Dataset):
    """``{"image": images[i], "target": labels[i]}`` items over two tensors."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "target": self.labels[i]}


class SyntheticSegmentation(Segmentation):
    """The segmentation task on random images/labels of a fixed size (no dataset needed)."""

    size = (128, 256)

    def train_dataset(self):
        h, w = self.size
        g = torch.Generator().manual_seed(0)
        images = torch.rand(16, 3, h, w, generator=g)
        labels = torch.randint(0, 19, (16, h, w), generator=g)
        return TensorItems(images, labels)

    def eval_sets(self):
        return [EvalSet("none", self.train_dataset())]


def build(args, checkpointing: bool, players=("day", "darkener", "extractor")) -> Engine:
    h, w = args.size
    raw = {
        "task": "segmentation", "name": "bench", "output_dir": "/tmp/simmm_bench", "device": args.device,
        "amp": args.amp, "channels_last": args.channels_last,
        "model": {"decoder": args.decoder, "backbone": args.backbone, "checkpointing": checkpointing,
                  "features": args.features},
        "data": {"train": {"root": "-", "size": [h, w]}, "crop": [h, w], "blur": 0.0, "cutout": 0.0,
                 "scale": [1.0, 1.0]},
        "darkener": {"train_size": [h * 2 // 3, w * 2 // 3], "map_scale": args.map_scale},
        "players": {name: {"steps": 1, "batch_size": args.batch, "optimizer": "sgd", "lr": 1e-3}
                    for name in players},
        "log": {"progress": False, "tensorboard": "off"},
    }
    recipe = recipe_from_dict(raw)
    SyntheticSegmentation.size = (h, w)
    return Engine(recipe, adapter=SyntheticSegmentation(recipe))


def floor_step(engine: Engine, batch: dict) -> None:
    """Two views forward + backward, two target forwards, one darkening forward: nothing else."""
    model, adapter = engine.model, engine.adapter
    images = batch["image"]
    optimizer = engine.optimizers["extractor"]
    with engine._autocast():  # the same precision as the engine's steps
        with torch.no_grad():
            frames = fold_clips(images) if images.dim() == 5 else images  # clips: the darkener sees their frames
            dark = engine.method.darkener(frames, torch.full((frames.shape[0],), 0.1, device=images.device)).image
            dark = unfold_clips(dark, images.shape[2]) if images.dim() == 5 else dark
            target = engine.method.target
            adapter.forward(target, images, output=False), adapter.forward(target, dark, output=False)
        loss = adapter.task_loss(model(images), batch) + adapter.task_loss(model(dark), batch)
    engine.scaler.scale(loss).backward()
    engine.scaler.step(optimizer)
    engine.scaler.update()
    optimizer.zero_grad(set_to_none=True)


def timed(fn, args, sync) -> tuple[float, float, float]:
    """Median seconds per call after warm-up, and peak CUDA memory allocated / reserved by the caching allocator in
    GiB during the timed calls (NaN on CPU). The peaks include every player's weights and optimiser state."""
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        fn()
    sync()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    if not cuda:
        return statistics.median(times), float("nan"), float("nan")
    return (statistics.median(times), torch.cuda.max_memory_allocated() / 2**30,
            torch.cuda.max_memory_reserved() / 2**30)


def phase_steps(engine: Engine, args) -> tuple[dict, dict]:
    """One batch on the engine's device, and a callable per step kind (plain, darkener, extractor, floor) on it."""
    batch = next(iter(torch.utils.data.DataLoader(engine.adapter.train_dataset(), batch_size=args.batch)))
    batch = {k: v.to(engine.device) for k, v in batch.items()}

    def run(player):
        def step():
            engine.run_step(player, {stream: batch for stream in engine.players[player].streams})
        return step

    def floor():
        engine._activate(next(p for p in engine.plan if "extractor" in p.players))
        floor_step(engine, batch)

    steps = {"plain": run("day"), "darkener": run("darkener"), "extractor": run("extractor"), "floor": floor}
    needs = {"plain": "day", "darkener": "darkener", "extractor": "extractor", "floor": "extractor"}
    return batch, {name: fn for name, fn in steps.items() if needs[name] in engine.players}


def measure(args, checkpointing: bool) -> dict:
    engine = build(args, checkpointing)
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    out = {}
    _, steps = phase_steps(engine, args)
    for name, fn in steps.items():
        out[name], out[f"{name}_peak_gib"], out[f"{name}_reserved_gib"] = timed(fn, args, sync)
    out["darkener_vs_plain"] = out["darkener"] / out["plain"]
    out["extractor_vs_floor"] = out["extractor"] / out["floor"]
    out["extractor_vs_plain"] = out["extractor"] / out["plain"]
    return out


def add_model_args(parser: argparse.ArgumentParser, size, batch: int, backbone: str) -> None:
    """The setting measured: crop size, batch, encoder, decoder, decoder width, darkener map scale."""
    parser.add_argument("--size", type=int, nargs=2, default=size, metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--backbone", default=backbone)
    parser.add_argument("--decoder", default="refinenet")
    parser.add_argument("--features", type=int, default=0, help="decoder width (0: the decoder's default)")
    parser.add_argument("--map-scale", type=float, default=1.0, help="darkener map_scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_model_args(parser, size=None, batch=2, backbone="resnet18")
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"],
                        help="the recipe's amp (auto: bf16 on a GPU that has it, off on CPU)")
    parser.add_argument("--channels-last", action="store_true", help="the recipe's channels_last")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.size is None:
        args.size = [512, 1024] if args.device.startswith("cuda") else [128, 256]
    cuda = args.device.startswith("cuda")
    amp = resolve_amp(args.amp, torch.device(args.device))
    setting = (f"{'cuda' if cuda else 'cpu'}_{args.backbone}_b{args.batch}_{args.size[0]}x{args.size[1]}_{amp}"
               + ("_cl" if args.channels_last else ""))
    torch.manual_seed(0)
    rows = {}
    for checkpointing in (False, True):
        rows["checkpointing" if checkpointing else "plain_backward"] = measure(args, checkpointing)

    from rich.console import Console
    from rich.table import Table

    device_name = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    table = Table(title=f"SMM segmentation step, {args.backbone}+{args.decoder}, batch {args.batch} at "
                        f"{args.size[0]}x{args.size[1]}, amp {amp}{', channels_last' if args.channels_last else ''}"
                        f" on {device_name}")
    for col in ("setting", "plain s", "darkener s", "extractor s", "floor s", "D/plain (≤1.5)",
                "F/floor (≤1.15)", "F/plain", "peak GiB (any phase)", "reserved GiB"):
        table.add_column(col, justify="right")
    for name, r in rows.items():
        r["peak_gib"] = max(r[f"{n}_peak_gib"] for n in ("plain", "darkener", "extractor"))
        r["reserved_gib"] = max(r[f"{n}_reserved_gib"] for n in ("plain", "darkener", "extractor"))
        table.add_row(name, f"{r['plain']:.3f}", f"{r['darkener']:.3f}", f"{r['extractor']:.3f}",
                      f"{r['floor']:.3f}", f"{r['darkener_vs_plain']:.2f}", f"{r['extractor_vs_floor']:.2f}",
                      f"{r['extractor_vs_plain']:.2f}", f"{r['peak_gib']:.2f}", f"{r['reserved_gib']:.2f}")
    Console(width=160).print(table)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = setting
    result = {"args": vars(args), "amp": amp, "torch": torch.__version__, "device": device_name,
              "machine": platform.platform(), "threads": torch.get_num_threads(), "results": rows}
    (out / f"seg_speed_{tag}.json").write_text(json.dumps(result, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = ["plain", "darkener", "extractor", "floor"]
        for i, (setting, r) in enumerate(rows.items()):
            ax.bar([x + 0.4 * i for x in range(4)], [r[n] for n in names], width=0.4, label=setting)
        ax.set_xticks([x + 0.2 for x in range(4)], names)
        ax.set_ylabel("seconds per step")
        ax.set_title(table.title, fontsize=8)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"seg_speed_{tag}.png", dpi=120)
    except ImportError:
        print("matplotlib not installed: no PNG written (pip install matplotlib)")
    print(f"wrote {out / f'seg_speed_{tag}.json'}")


if __name__ == "__main__":
    main()
