"""Does simulated night look like real night? simmm.night's evaluation presets vs real night photographs.

Each preset (street, urban, dark, global_dim, and the mixed stream) is applied, seeded, to real day photographs:
scikit-image's colour photos (the demo's, :data:`simmm.data.photos.PHOTOS`) and, where Debian's ``opencv-doc``
is installed, its photographs (never drawn shapes or renderings). Every simulated image is measured with
:func:`simmm.night_stats.night_stats`, the statistics of ``real_night_stats.json`` (9 real outdoor night
photographs; numbers only). Per preset and statistic the script prints the simulated mean ± std, the real
mean ± std and the z-score of the simulated mean against the real spread, and flags |z| > 2 (n = 9 real photos:
the JSON's caveat says to treat beyond about 2 as clearly off, and within 1 as no proof of realism). noise_mid
is printed, never flagged (the JSON: "unreliable ..., not for verdicts").

Day photos whose long side exceeds ``--max-side`` are first Lanczos-resized to it; the simulated image at that
size is the "stored" image (``block``, ``noise_dark_native``), and the statistics are taken as the JSON defines.
Seeds: image i of photo p, repeat r, uses the seed 10**9 + 1000 p + r, far from the demo's evaluation seeds
(``night_sim.seed * 1_000_003 + i``).

    python benchmarks/night_realism.py            # 22 photos x 2 seeds, <= 512 px: ~3 CPU-minutes
    python benchmarks/night_realism.py --quick    # 4 photos at 256 px, one seed: ~20 CPU-seconds

Writes ``results/night_realism.json``, ``.txt`` and ``.png`` (one panel per statistic: real photos vs simulated,
per preset).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from simmm.data.photos import PHOTOS, load_photo
from simmm.night import MIXED, PRESETS, simulate_night
from simmm.night_stats import (STATS, VERDICT_STATS, load_real_stats, night_stats, resize_long_side, summarize,
                               to_uint8, z_scores)

EVAL_PRESETS = ("street", "urban", "dark", "global_dim", MIXED)
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
#: opencv-doc's photographs of real scenes (its drawings, logos, charts, chessboards and renderings left out)
OPENCV_PHOTOS = ("aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg",
                 "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg", "orange.jpg",
                 "squirrel_cls.jpg")
SEED_BASE = 10**9
Z_FLAG = 2.0


def day_photos(max_side: int, names: Optional[Sequence[str]] = None, opencv: bool = True) -> dict:
    """name -> uint8 (H, W, 3) day photo, long side at most ``max_side`` (Lanczos)."""
    from PIL import Image

    out = {}
    for name in names or PHOTOS:
        out[name] = to_uint8(load_photo(name))
    if opencv and names is None and OPENCV_DATA.is_dir():
        for name in OPENCV_PHOTOS:
            if (OPENCV_DATA / name).is_file():
                out[f"opencv/{name}"] = np.asarray(Image.open(OPENCV_DATA / name).convert("RGB"))
    return {k: v if max(v.shape[:2]) <= max_side else resize_long_side(v, max_side) for k, v in out.items()}


def simulate_stats(photos: dict, preset: str, repeats: int) -> list:
    """night_stats of every photo x repeat under ``preset`` (one seed each)."""
    rows = []
    for p, (name, image) in enumerate(photos.items()):
        x = torch.from_numpy(np.ascontiguousarray(image).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
        for r in range(repeats):
            night = simulate_night(x, preset, seed=[SEED_BASE + 1000 * p + r])[0]
            rows.append({"photo": name, "repeat": r, **night_stats(night)})
    return rows


def compare(per_image: list, real: dict, stats: Sequence[str] = STATS) -> dict:
    """Summary of simulated rows, z-scores against the real summary and the flagged verdict statistics."""
    summary = summarize(per_image, stats)
    z = z_scores(summary, real, stats)
    return {"summary": summary, "z": z,
            "flagged": [k for k in stats if k in VERDICT_STATS and not abs(z[k]) <= Z_FLAG]}


def _ms(s: dict) -> str:
    m, sd = (s["circular_mean"], s["circular_std"]) if "circular_mean" in s else (s["mean"], s["std"])
    return f"{m:.3g} ± {sd:.2g}"


def table(results: dict, real: dict, title: str):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("statistic")
    t.add_column("real night", justify="right")
    for preset in results:
        t.add_column(f"{preset}: sim", justify="right")
        t.add_column("z", justify="right")
    for k in STATS:
        row = [k + (" (no verdict)" if k not in VERDICT_STATS else ""), _ms(real[k])]
        for res in results.values():
            z = res["z"][k]
            row += [_ms(res["summary"][k]), f"{z:+.1f}" + (" !" if k in res["flagged"] else "")]
        t.add_row(*row)
    return t


def plot(results: dict, per_image: dict, real: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cols = 5
    fig, axes = plt.subplots((len(STATS) + cols - 1) // cols, cols, figsize=(3.2 * cols, 2.6 * 4))
    names = ["real"] + list(results)
    rng = np.random.default_rng(0)
    for ax, k in zip(axes.ravel(), STATS):
        groups = [[d[k] for d in real["per_image"].values()]] + [[d[k] for d in per_image[p]] for p in results]
        for i, vals in enumerate(groups):
            v = np.array(vals, float)
            ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=6, alpha=0.6,
                       color="k" if i == 0 else f"C{i - 1}")
        s = real["summary"][k]
        m, sd = (s["circular_mean"], s["circular_std"]) if k == "hue_deg" else (s["mean"], s["std"])
        ax.axhspan(m - 2 * sd, m + 2 * sd, color="0.85", zorder=0)
        ax.axhline(m, color="0.5", lw=0.8, zorder=0)
        flags = "".join("!" if k in results[p]["flagged"] else "" for p in results)
        ax.set_title(k + (f"  ({len(flags)} off)" if flags else ""), fontsize=8)
        ax.set_xticks(range(len(names)), names, fontsize=6, rotation=30)
        ax.tick_params(axis="y", labelsize=6)
    for ax in axes.ravel()[len(STATS):]:
        ax.axis("off")
    fig.suptitle("simulated night (per preset) vs real night photos; grey band: real mean ± 2 std", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 scikit-image photos at 256 px, one repeat")
    parser.add_argument("--presets", nargs="+", default=list(EVAL_PRESETS))
    parser.add_argument("--photos", nargs="+", default=None, help="scikit-image photo names (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="seeds per photo (default 2; quick 1)")
    parser.add_argument("--max-side", type=int, default=None, help="long side cap (default 512; quick 256)")
    parser.add_argument("--real", default=None, help="real statistics JSON (default: the packaged copy)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    unknown = [p for p in args.presets if p not in (*PRESETS, MIXED)]
    if unknown:
        parser.error(f"--presets: unknown {unknown}; available: {', '.join((*PRESETS, MIXED))}")
    quick = args.quick
    repeats = args.repeats or (1 if quick else 2)
    max_side = args.max_side or (256 if quick else 512)
    names = args.photos or (list(PHOTOS[:4]) if quick else None)
    real = load_real_stats(args.real)["real_night"]

    start = time.time()
    photos = day_photos(max_side, names, opencv=not quick)
    per_image, results = {}, {}
    for preset in args.presets:
        per_image[preset] = simulate_stats(photos, preset, repeats)
        results[preset] = compare(per_image[preset], real["summary"])
    seconds = time.time() - start

    from rich.console import Console

    title = (f"simulated vs real night ({len(photos)} day photos x {repeats} seeds per preset, long side <= "
             f"{max_side}; real: {real['n']} night photos); z = (sim mean - real mean) / real std, ! = |z| > 2")
    console = Console(width=60 + 26 * len(results), record=True)
    console.print(table(results, real["summary"], title))
    for preset, res in results.items():
        console.print(f"{preset}: {len(res['flagged'])} of {len(VERDICT_STATS)} statistics outside |z| <= 2"
                      + (f": {', '.join(res['flagged'])}" if res["flagged"] else ""))
    console.print(f"{seconds:.0f} s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "night_realism.txt").write_text(console.export_text())
    report = {"command": "python benchmarks/night_realism.py" + (" --quick" if quick else ""),
              "date": time.strftime("%Y-%m-%d", time.gmtime()), "seconds": round(seconds, 1),
              "photos": list(photos), "repeats": repeats, "max_side": max_side, "z_flag": Z_FLAG,
              "presets": {p: {"params": "mixed" if p == MIXED else PRESETS[p].to_dict(), **results[p],
                              "per_image": per_image[p]} for p in results}}
    (out / "night_realism.json").write_text(json.dumps(report, indent=1))
    plot(results, per_image, real, out / "night_realism.png")
    return report


if __name__ == "__main__":
    main()
