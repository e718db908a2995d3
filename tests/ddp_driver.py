"""Started by torchrun in tests/test_distributed.py: train a recipe as `simmm train` does, optionally crash at a step
(on every rank, or on one), and save each rank's modules for the test to compare.

    torchrun --nproc_per_node 2 tests/ddp_driver.py RECIPE --out DIR [--set k=v ...] [--resume]
             [--crash-at N] [--crash-rank R]
"""
import argparse
import sys
from pathlib import Path

import torch

from simmm import dist
from simmm.engine import Engine
from simmm.recipe import load_recipe


class PlantedCrash(RuntimeError):
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--crash-rank", type=int, default=-1, help="-1: every rank")
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine = Engine(load_recipe(args.recipe, args.overrides))

    def crash(eng, step):
        if step == args.crash_at and args.crash_rank in (-1, dist.rank()):
            raise PlantedCrash(f"planted crash on rank {dist.rank()} at step {step}")

    engine.callbacks.append(crash)
    engine.fit(resume=args.resume)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({name: module.state_dict() for name, module in engine.modules().items()}, out / f"rank{dist.rank()}.pt")
    dist.destroy()


if __name__ == "__main__":
    sys.exit(main())
