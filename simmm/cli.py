"""The ``simmm`` command line: train, eval, darken, predict, recipes, data check, data stats.

User errors (a missing dataset folder, a bad recipe key, a checkpoint of another model, ...) end with one
paragraph naming the file or key and what was expected, and a non-zero exit code; ``--debug`` shows the
traceback as well.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from simmm.errors import SimmmError
from simmm.recipe import shipped_recipes_dir

RECIPES_DIR = shipped_recipes_dir()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except SimmmError as exc:
        if args.debug:
            raise
        lines = str(exc).splitlines() or [""]
        text = "\n".join(textwrap.fill(line, width=110, initial_indent="error: " if i == 0 else "       ",
                                        subsequent_indent="       ", break_long_words=False,
                                        break_on_hyphens=False) for i, line in enumerate(lines))
        print(text, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # a torchrun process leaves its process group cleanly
            from simmm import dist

            dist.destroy()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simmm", description="Day-to-night adaptation without night labels "
                                     "(similarity min-max, DANIA).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    sub = parser.add_subparsers(metavar="COMMAND")

    def recipe_args(p):
        p.add_argument("recipe", help="recipe YAML file (or the name of a recipe that ships, see `simmm recipes`)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override a recipe value, e.g. --set players.extractor.lr=1e-4 (repeatable)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser("train", help="train by a recipe", description="Train by a recipe. Outputs (resolved "
                       "recipe, metrics.csv, eval.json, checkpoints/{last,best}.pt, report) go to the recipe's "
                       "output_dir.")
    recipe_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run in output_dir exactly where it stopped")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on the recipe's evaluation sets")
    recipe_args(p)
    p.add_argument("--checkpoint", required=True, help="a simmm checkpoint (best.pt / last.pt) of this model")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("darken", help="darken images with a trained darkening module or the physical simulator")
    p.add_argument("images", nargs="+", help="image files (or RAW files with --physical --raw)")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="a simmm checkpoint holding a trained darkener")
    g.add_argument("--physical", action="store_true", help="use the physical low-light simulator (simmm.night)")
    p.add_argument("--exposure", default=[0.1], type=exposure_levels, help="comma-separated exposure levels "
                   "in [0, 1] for the darkener, the mean brightness asked of the output (default 0.1)")
    p.add_argument("--preset", default="street", help="night simulator preset: street, urban, dark, global_dim, "
                   "or mixed (a preset drawn per image from the seed); default street")
    p.add_argument("--seed", type=seed_value, default=0, help="simulator seed, an integer >= 0 (image i uses "
                   "seed + i)")
    p.add_argument("--raw", action="store_true", help="inputs are camera RAW/DNG files decoded with rawpy")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_darken)

    p = sub.add_parser("predict", help="segment, classify or place-match images with a trained model, write the "
                       "results",
                       description="Segmentation: writes <name>_trainIds.png (train ids) and <name>_color.png "
                       "(Cityscapes colours; --overlay blends them over the image). Classification: writes "
                       "predictions.csv. --darkzurich-test ROOT runs the Dark Zurich test night set and writes the "
                       "server's zip (labelTrainIds/, labelTrainIds_invalid/, confidence/). Place recognition: writes "
                       "matches.csv and <name>_matches.png, the --top-k --database images most like each query.")
    recipe_args(p)
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--checkpoint", required=True, help="a simmm checkpoint of this model")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overlay", action="store_true", help="segmentation: blend the colour map over the image")
    p.add_argument("--darkzurich-test", metavar="ROOT", help="segmentation: predict the Dark Zurich test set "
                   "under ROOT and export it for the benchmark server")
    p.add_argument("--database", metavar="DIR", help="place recognition: the folder of database images the "
                   "queries (the image files) are matched against")
    p.add_argument("--top-k", type=int, default=5, help="place recognition: matches per query (default 5)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("recipes", help="list the recipes that ship")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("data", help="data utilities")
    data_sub = p.add_subparsers(metavar="ACTION")
    c = data_sub.add_parser("check", help="say which files of the recipe's dataset are present, missing or "
                            "malformed, without training")
    recipe_args(c)
    c.set_defaults(func=cmd_data_check)
    st = data_sub.add_parser("stats", help="count the labelled pixels of each class in the recipe's training "
                             "labels and write the class statistics DANIA's re-weighting reads (dania.class_stats)")
    recipe_args(st)
    st.add_argument("--out", help="where to write the JSON (default: class_stats.json in the recipe's output_dir)")
    st.set_defaults(func=cmd_data_stats)
    return parser


# ------------------------------------------------------------------------------------------- option values


def exposure_levels(text: str) -> list[float]:
    """``--exposure``: comma-separated numbers in [0, 1]."""
    try:
        levels = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers in [0, 1], "
                                         "e.g. 0.05,0.2") from None
    bad = [x for x in levels if not 0.0 <= x <= 1.0]  # also catches nan
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r}: level {bad[0]:g} is outside [0, 1] (an exposure level is "
                                         "the mean brightness asked of the darkened image: 0 black, 1 white)")
    return levels


def seed_value(text: str) -> int:
    """``--seed``: an integer >= 0."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0")
    return seed


# ------------------------------------------------------------------------------------------------ commands


def _load(args):
    from simmm.recipe import load_recipe

    return load_recipe(args.recipe, args.overrides)


def cmd_train(args) -> int:
    from simmm.engine import Engine
    from simmm.report import print_report

    recipe = _load(args)
    engine = Engine(recipe)
    engine.fit(resume=args.resume)
    print_report(engine.history, recipe.name)
    for path in engine.artifacts:
        print(f"wrote {path}")
    return 0


def cmd_eval(args) -> int:
    from simmm.engine import Engine
    from simmm.logger import print_metrics_table, write_json

    recipe = _load(args)
    engine = Engine(recipe, train=False)  # the evaluation sets only: the training data need not be there
    engine.load_weights(args.checkpoint, modules=engine.method.eval_modules)
    metrics = engine.evaluate()
    print_metrics_table(metrics, title=f"{recipe.name}: {args.checkpoint}")
    if args.json:
        write_json(metrics, args.json)
    return 0


def cmd_darken(args) -> int:
    import torch

    from simmm.data.images import load_image_tensor, save_image

    out = Path(args.out)
    if args.physical:
        from simmm.night import MIXED, PRESETS, mixed_presets, simulate_night, simulate_night_raw

        if args.preset not in (*PRESETS, MIXED):
            raise SimmmError(f"--preset {args.preset}: unknown; available: {', '.join(PRESETS)}, {MIXED}")
        if args.raw and args.preset == MIXED:
            raise SimmmError(f"--preset {MIXED} is for sRGB images; with --raw give one of {', '.join(PRESETS)}")
        for i, name in enumerate(args.images):
            drawn = ""
            if args.raw:
                image = simulate_night_raw(name, PRESETS[args.preset], seed=args.seed + i)
            elif args.preset == MIXED:
                images, chosen = mixed_presets(load_image_tensor(name).unsqueeze(0), seed=args.seed + i)
                image, drawn = images[0], f" ({chosen[0]})"
            else:
                image = simulate_night(load_image_tensor(name).unsqueeze(0), PRESETS[args.preset],
                                       seed=args.seed + i)[0]
            target = out / f"{Path(name).stem}_night_{args.preset}.png"
            save_image(image, target)
            print(f"{target}{drawn}")
        return 0
    from simmm.checkpoint import load_checkpoint
    from simmm.darkening import DarkeningNet
    from simmm.methods.smm import DarkenerConfig
    from simmm.recipe import build

    state = load_checkpoint(args.checkpoint)
    if "darkener" not in state.get("modules", {}):
        raise SimmmError(f"checkpoint {args.checkpoint} holds no darkener (it has: "
                         f"{', '.join(state.get('modules', {}))}); use a checkpoint of a run with a darkener phase")
    cfg = build(DarkenerConfig, state["recipe"]["darkener"], "darkener")
    net = DarkeningNet(width=cfg.width, mapping=cfg.mapping, iterations=cfg.iterations, map_scale=cfg.map_scale)
    from simmm.checkpoint import load_module_state

    load_module_state(net, state["modules"]["darkener"], args.checkpoint, "darkener")
    net.eval()
    for name in args.images:
        image = load_image_tensor(name).unsqueeze(0)
        for level in args.exposure:
            with torch.no_grad():
                dark = net(image, torch.full((1,), level)).image[0]
            target = out / f"{Path(name).stem}_dark_{level:g}.png"
            save_image(dark, target)
            print(target)
    return 0


def cmd_predict(args) -> int:
    import csv

    import torch

    from simmm.checkpoint import load_modules
    from simmm.enhance import build_enhancer
    from simmm.data.images import load_image_tensor, save_image
    from simmm.task import get_task

    recipe = _load(args)
    if recipe.task == "place_recognition":
        return predict_places(args, recipe)
    # argument errors first, before the model is built and the checkpoint read
    if not args.images and not args.darkzurich_test:
        raise SimmmError("predict: give image files, or --darkzurich-test ROOT")
    if recipe.task not in ("classification", "segmentation"):
        raise SimmmError(f"predict: task {recipe.task!r} has no prediction writer")
    if args.darkzurich_test and recipe.task != "segmentation":
        raise SimmmError("--darkzurich-test is for segmentation recipes")
    adapter = get_task(recipe.task)(recipe)
    enhancer = build_enhancer(recipe.eval)  # the recipe's test-time enhancer (eval.enhance), read before the model
    model, modules = _method(recipe, adapter).inference_model(adapter.build_model())
    load_modules(args.checkpoint, modules, signature=adapter.signature())
    model = _enhanced(model, enhancer).eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if recipe.task == "classification":
        with (out / "predictions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "class", "probability"])
            for name in args.images:
                image = load_image_tensor(name, size=recipe.data.image_size).unsqueeze(0)
                with torch.no_grad():
                    probs = model(image).softmax(1)[0]
                k = int(probs.argmax())
                writer.writerow([name, adapter.classes[k], f"{float(probs[k]):.4f}"])
                print(f"{name}: {adapter.classes[k]} ({float(probs[k]):.3f})")
        return 0
    from simmm.data.labels import colorize

    def segment(image):
        with torch.no_grad():
            return adapter.predict(model, image[None])[0]

    for name in args.images:
        image = load_image_tensor(name)
        ids = segment(image).argmax(0).to(torch.uint8)
        stem = Path(name).stem
        save_image(ids, out / f"{stem}_trainIds.png")
        color = colorize(ids).permute(2, 0, 1)
        if args.overlay:
            color = (0.5 * color.float() / 255 + 0.5 * image).clamp(0, 1)
        save_image(color, out / f"{stem}_color.png")
        print(out / f"{stem}_color.png")
    if args.darkzurich_test:
        from simmm.data.darkzurich import DarkZurichDataset, export_server_predictions

        test = DarkZurichDataset(args.darkzurich_test, split="test", condition="night", with_labels=False)
        predictions, confidence = {}, {}
        for i in range(len(test)):
            item = test[i]
            probs = segment(item["image"]).softmax(0)
            conf, ids = probs.max(0)
            predictions[item["name"]] = ids.to(torch.uint8).numpy()
            confidence[item["name"]] = conf.numpy()
        archive = export_server_predictions(predictions, out, confidence=confidence)
        print(f"Dark Zurich test export: {archive} ({len(predictions)} images)")
    return 0


def predict_places(args, recipe) -> int:
    """``simmm predict`` for place recognition: the ``--top-k`` database images (``--database``) most like each
    query image, as ``matches.csv`` (query, rank, match, score) and one PNG strip per query (query, then its
    matches with their scores)."""
    import csv

    from simmm.checkpoint import load_modules
    from simmm.data.images import is_image_file, save_grid
    from simmm.enhance import build_enhancer
    from simmm.data.retrieval_db import ImageList
    from simmm.retrieval import search
    from simmm.task import get_task

    if not args.images:
        raise SimmmError("predict: give query image files")
    if not args.database or not Path(args.database).is_dir():
        raise SimmmError(f"predict: --database {args.database}: expected a folder of database images")
    if args.top_k < 1:
        raise SimmmError(f"predict: --top-k {args.top_k}: expected an integer >= 1")
    database = sorted(p for p in Path(args.database).rglob("*") if p.is_file() and is_image_file(p))
    if not database:
        raise SimmmError(f"predict: --database {args.database} holds no image files (.jpg, .png, ...)")
    missing = [name for name in args.images if not Path(name).is_file()]
    if missing:
        raise SimmmError(f"predict: query image {missing[0]} does not exist")
    adapter = get_task(recipe.task)(recipe)
    enhancer = build_enhancer(recipe.eval)
    model = adapter.build_model()
    load_modules(args.checkpoint, {"model": model}, signature=adapter.signature())
    model = _enhanced(model, enhancer).eval()
    size = next(iter(recipe.data.eval.values())).image_size if recipe.data.eval else 1024
    db_images, q_images = ImageList(database, max_size=size), ImageList([Path(n) for n in args.images], max_size=size)
    db = adapter.describe_images(model, db_images, list(range(len(database))), "database descriptors")
    queries = adapter.describe_images(model, q_images, list(range(len(args.images))), "query descriptors")
    scores, indices = search(queries, db, k=args.top_k)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    thumbs = ImageList(database, max_size=256)
    with (out / "matches.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "rank", "match", "score"])
        for q, name in enumerate(args.images):
            row = [ImageList([Path(name)], max_size=256).load(0)]
            labels = ["query"]
            for r, (i, s) in enumerate(zip(indices[q].tolist(), scores[q].tolist()), 1):
                writer.writerow([name, r, database[i], f"{s:.4f}"])
                row.append(thumbs.load(i))
                labels.append(f"{r}: {s:.3f}")
            strip = save_grid([row], out / f"{Path(name).stem}_matches.png", labels=labels)
            print(f"{name}: {database[indices[q, 0]]} ({float(scores[q, 0]):.3f}); {strip}")
    return 0


def cmd_recipes(args) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"recipes ({RECIPES_DIR})")
    table.add_column("name")
    table.add_column("what it runs")
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")),
                     "")
        table.add_row(path.stem, first)
    Console().print(table)
    return 0


def _enhanced(model, enhancer):
    """``model`` behind the recipe's test-time enhancer (``eval.enhance``), or alone."""
    from simmm.enhance import Enhancer

    return model if enhancer is None else Enhancer(model, enhancer)


def _method(recipe, adapter):
    """The recipe's method on the CPU, for what needs no training run (``inference_model``, ``check_data``)."""
    from contextlib import nullcontext

    import torch

    from simmm.method import Context, get_method

    return get_method(recipe.method)(recipe, adapter, Context(torch.device("cpu"), nullcontext))


def cmd_data_check(args) -> int:
    from simmm.task import get_task

    recipe = _load(args)
    adapter = get_task(recipe.task)(recipe)
    report = adapter.check_data()
    for extra in _method(recipe, adapter).check_data():
        report.add(extra)
    print(report.format())
    if not report.ok:
        from simmm.data.sources import missing_sources

        for line in missing_sources(recipe.data):
            print(textwrap.fill(line, width=110, subsequent_indent="  ", break_long_words=False,
                                break_on_hyphens=False))
    return 0 if report.ok else 1


def cmd_data_stats(args) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from simmm.class_stats import count_class_pixels, write_class_stats
    from simmm.dania_losses import class_weights
    from simmm.task import get_task

    recipe = _load(args)
    adapter = get_task(recipe.task)(recipe)
    if not hasattr(adapter, "train_label_files"):
        raise SimmmError(f"data stats: task {recipe.task!r} has no label maps to count (segmentation has)")
    labels, classes, source = adapter.train_label_files()
    with Progress(transient=True) as progress:
        bar = progress.add_task("counting labelled pixels", total=len(labels))
        counts = count_class_pixels(labels, len(classes), progress=lambda n: progress.update(bar, completed=n))
    if counts.sum() == 0:
        raise SimmmError(f"data stats: the {len(labels)} label maps of {source} hold no labelled pixel")
    out = Path(args.out) if args.out else recipe.run_dir / "class_stats.json"
    stats = write_class_stats(out, counts, classes, len(labels), source)
    dania = getattr(recipe.options, "dania", None)
    spreads = {"train": dania.train_s, "test": dania.test_s} if dania is not None else {"s=0.1": 0.1}
    present = [k for k, n in enumerate(stats["pixels"]) if n > 0]
    weights = {name: dict(zip(present, class_weights([stats["shares"][k] for k in present], s=s).tolist()))
               for name, s in spreads.items()}
    table = Table(title=f"class statistics of {source} ({len(labels)} label maps)")
    for column in ("class", "pixels", "share a_k", *(f"w_k ({name}, s={s:g})" for name, s in spreads.items())):
        table.add_column(column, justify="left" if column == "class" else "right")
    for k, name in enumerate(classes):
        table.add_row(name, f"{stats['pixels'][k]:,}", f"{stats['shares'][k]:.5f}",
                      *(f"{w[k]:.4f}" if k in w else "-" for w in weights.values()))
    Console().print(table)
    print(f"wrote {out}")
    if len(present) < len(classes):
        print(f"warning: {len(classes) - len(present)} classes have no labelled pixel; DANIA's re-weighting "
              f"(-log a_k) needs every class, so this file cannot serve as dania.class_stats")
    else:
        print(f"use it with: --set dania.class_stats={out}  (or `class_stats: {out}` under dania: in the recipe)")
    return 0
