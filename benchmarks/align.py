"""How well the coarse alignment (simmm.alignment, METHOD.md §5.1) recovers known homographies between a simulated
night photo and its day partner.

Two sets of real photographs, each pair with a ground-truth homography (night pixel → day pixel):

* ``opencv``: the real image pair with a ground-truth homography that Debian's ``opencv-doc`` ships
  (``graf1.png``/``graf3.png`` with ``H1to3p.xml``, a 640×800 wall painting seen from two viewpoints), used in both
  directions;
* ``skimage``: photos bundled with scikit-image (``skimage.data``), each warped by random homographies (the night
  frame's four corners moved by up to 12 % of its size, in random directions).

The night side of every pair is darkened by one of ``simmm.night.PRESETS`` (``day``: not darkened), with several
seeds. Per set and preset it reports the mean and median corner error (the night image's four corner pixels mapped
by the estimate and by the truth, distance in day pixels; a fallback counts with the identity's error), the share
of pairs within 5 px, the fallback count, the error of doing nothing (identity) and the time per pair. It prints a
table and writes ``results/align_<matcher>[_quick].json`` and a PNG of example pairs (night | day with the true
outline of the night frame in green and the estimated one in red).

    python benchmarks/align.py            # full run: opencv pair ×2 directions ×5 seeds, 6 photos ×5 homographies
    python benchmarks/align.py --quick    # under a minute
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from simmm.alignment import AlignConfig, corner_error, estimate_homography
from simmm.night import PRESETS, simulate_night

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
INSTALL = "sudo apt-get update && sudo apt-get install -y opencv-doc"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "camera")


def read_opencv_homography(path: Path) -> np.ndarray:
    """The 3×3 matrix of an OpenCV FileStorage XML file (``<data>`` holds nine numbers)."""
    m = re.search(r"<data>(.*?)</data>", path.read_text(), re.S)
    if m is None:
        raise SystemExit(f"{path}: no <data> element with a 3x3 matrix")
    return np.array([float(v) for v in m.group(1).split()]).reshape(3, 3)


def opencv_pairs(quick: bool):
    """[(name, night image, day image, H night→day)] from opencv-doc, or [] with a message when it is missing."""
    h_file = OPENCV_DATA / "H1to3p.xml"
    if not h_file.exists():
        print(f"opencv-doc not found ({h_file} is missing): the real graf pair is skipped. Install it with:\n"
              f"    {INSTALL}")
        return []
    g1 = np.asarray(Image.open(OPENCV_DATA / "graf1.png").convert("RGB")) / 255.0
    g3 = np.asarray(Image.open(OPENCV_DATA / "graf3.png").convert("RGB")) / 255.0
    h13 = read_opencv_homography(h_file)  # maps graf1 pixels to graf3 pixels
    pairs = [("graf1->graf3", g1, g3, h13)]
    if not quick:
        pairs.append(("graf3->graf1", g3, g1, np.linalg.inv(h13) / np.linalg.inv(h13)[2, 2]))
    return pairs


def random_homography(rng: np.random.Generator, size, spread: float = 0.12) -> np.ndarray:
    """A homography night → day that moves the night frame's corners by up to ``spread`` of its size."""
    from skimage.transform import ProjectiveTransform

    h, w = size
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    dst = src + rng.uniform(-spread, spread, (4, 2)) * [w, h]
    return ProjectiveTransform.from_estimate(src, dst).params


def skimage_pairs(quick: bool, per_photo: int):
    """[(name, night image, day image, H night→day)]: each photo warped by random homographies."""
    from skimage import color, data, transform

    rng = np.random.default_rng(0)
    out = []
    for name in PHOTOS[:1] if quick else PHOTOS:
        img = getattr(data, name)()
        img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
        img = color.gray2rgb(img) if img.ndim == 2 else img[..., :3]
        img = img / 255.0
        for k in range(per_photo):
            hom = random_homography(rng, img.shape[:2])
            night = transform.warp(img, transform.ProjectiveTransform(hom), output_shape=img.shape[:2])
            out.append((f"{name}#{k}", night, img, hom))
    return out


def darken(image: np.ndarray, preset: str, seed: int) -> np.ndarray:
    if preset == "day":
        return image
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    return simulate_night(x, preset, seed=seed).permute(1, 2, 0).numpy()


def outline(draw: ImageDraw.ImageDraw, hom, size, offset, scale, colour):
    h, w = size
    c = np.c_[[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.ones(4)] @ np.asarray(hom).T
    pts = [(offset + x / z * scale, y / z * scale) for x, y, z in c]
    draw.line(pts + pts[:1], fill=colour, width=2)


def example_tile(night, day, truth, estimate, height: int = 160) -> Image.Image:
    """night | day, with the night frame's true (green) and estimated (red) outline drawn on the day image."""
    s_n, s_d = height / night.shape[0], height / day.shape[0]
    n = Image.fromarray((night * 255).clip(0, 255).astype(np.uint8)).resize((round(night.shape[1] * s_n), height))
    d = Image.fromarray((day * 255).clip(0, 255).astype(np.uint8)).resize((round(day.shape[1] * s_d), height))
    tile = Image.new("RGB", (n.width + d.width + 4, height), "white")
    tile.paste(n, (0, 0))
    tile.paste(d, (n.width + 4, 0))
    draw = ImageDraw.Draw(tile)
    outline(draw, truth, night.shape[:2], n.width + 4, s_d, (0, 220, 0))
    outline(draw, estimate, night.shape[:2], n.width + 4, s_d, (255, 0, 0))
    return tile


def print_table(rows, title: str) -> str:
    """Print the rows as a table; returns its text."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("set", "preset", "pairs", "mean err px", "median err px", "≤5 px", "fallbacks", "identity err px",
                "s/pair"):
        table.add_column(col, justify="left" if col in ("set", "preset") else "right")
    for r in rows:
        table.add_row(r["set"], r["preset"], str(r["pairs"]), f"{r['mean_corner_error_px']:.2f}",
                      f"{r['median_corner_error_px']:.2f}", f"{r['within_5px']:.0%}", str(r["fallbacks"]),
                      f"{r['identity_error_px']:.1f}", f"{r['seconds_per_pair']:.2f}")
    console = Console(width=140, record=True)
    console.print(table)
    return console.export_text()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one photo, few seeds, three presets (< 1 min)")
    parser.add_argument("--matcher", default="sift", help="sift (default), disk_lightglue or loftr")
    parser.add_argument("--max-side", type=int, default=AlignConfig.max_side)
    parser.add_argument("--seeds", type=int, default=None, help="night draws per pair (default 5, quick 1)")
    parser.add_argument("--per-photo", type=int, default=None, help="random homographies per photo (default 5)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 5)
    per_photo = args.per_photo or (2 if args.quick else 5)
    presets = ["day", "street", "dark"] if args.quick else ["day", *PRESETS]
    config = AlignConfig(matcher=args.matcher, max_side=args.max_side)
    sets = {"opencv": opencv_pairs(args.quick), "skimage": skimage_pairs(args.quick, per_photo)}

    rows, examples = [], []
    start = time.perf_counter()
    for set_name, pairs in sets.items():
        for preset in presets:
            errors, identity, seconds, fallbacks = [], [], [], 0
            for i, (name, night, day, truth) in enumerate(pairs):
                for seed in range(1 if preset == "day" else seeds):
                    dark = darken(night, preset, seed=1000 * i + seed)
                    a = estimate_homography(dark, day, config)
                    errors.append(corner_error(a.homography, truth, night.shape[:2]))
                    identity.append(corner_error(np.eye(3), truth, night.shape[:2]))
                    seconds.append(a.seconds)
                    fallbacks += int(not a.ok)
                    if i == 0 and seed == 0:
                        examples.append((f"{set_name} {preset}", example_tile(dark, day, truth, a.homography)))
            if not errors:
                continue
            rows.append({"set": set_name, "preset": preset, "pairs": len(errors),
                         "mean_corner_error_px": statistics.fmean(errors),
                         "median_corner_error_px": statistics.median(errors),
                         "within_5px": sum(e <= 5 for e in errors) / len(errors), "fallbacks": fallbacks,
                         "identity_error_px": statistics.fmean(identity),
                         "seconds_per_pair": statistics.fmean(seconds)})
            r = rows[-1]
            print(f"  {set_name:8s} {preset:10s} {r['pairs']:3d} pairs  mean {r['mean_corner_error_px']:7.2f} px  "
                  f"within 5 px {r['within_5px']:.0%}  fallbacks {fallbacks}  {r['seconds_per_pair']:.2f} s/pair",
                  flush=True)
    total = time.perf_counter() - start

    title = (f"coarse alignment ({args.matcher}, max side {args.max_side}) on darkened real photos; "
             f"{torch.get_num_threads()} threads, {total:.0f} s in all")
    text = print_table(rows, title)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"align_{args.matcher}" + ("_quick" if args.quick else "")
    result = {"args": vars(args), "config": config.to_dict(), "seeds": seeds, "per_photo": per_photo,
              "opencv_data": str(OPENCV_DATA) if sets["opencv"] else None, "photos": list(PHOTOS),
              "torch": torch.__version__, "machine": platform.platform(), "threads": torch.get_num_threads(),
              "seconds_total": total, "results": rows}
    (out / f"{tag}.json").write_text(json.dumps(result, indent=2))
    (out / f"{tag}.txt").write_text(text)
    width = max(t.width for _, t in examples)
    sheet = Image.new("RGB", (width + 130, 164 * len(examples)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, tile) in enumerate(examples):
        draw.text((4, 164 * k + 70), label, fill="black")
        sheet.paste(tile, (130, 164 * k))
    sheet.save(out / f"{tag}.png")
    print(f"wrote {out / f'{tag}.json'}, .txt and .png")


if __name__ == "__main__":
    main()
