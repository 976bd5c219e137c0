"""``terralite data``: generate, check and summarise datasets (an OpenEarthMap root, or any kind through a data YAML)."""

from __future__ import annotations

import argparse
import sys

HELP = "generate (synth), validate (check) and summarise (stats) datasets"
DESCRIPTION = HELP + "."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="write a synthetic dataset (8 OEM classes, georeferenced GeoTIFFs)",
                           description="Write procedural land-cover tiles in the OpenEarthMap release layout, "
                                       "with train/val/test split lists. The same seed gives identical files.")
    synth.add_argument("out", help="output folder (created; its parent must exist)")
    synth.add_argument("--tiles", type=int, default=24, help="number of tiles (default 24)")
    synth.add_argument("--size", type=int, default=256, help="tile side in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    scene = sub.add_parser("synth-scene", help="write a large synthetic scene with a BOLM 11-class label (and "
                                               "Sentinel-2-like band files)",
                           description="Write a deterministic georeferenced scene for the BOLM protocol: label.tif "
                                       "(raw BOLM classes 1..11), image.tif (RGB) or, with --sentinel2, band files at "
                                       "10/20/60 m, data.yaml (a large-raster data config whose held-out box is "
                                       "the centre of the scene) and scene.yaml (training settings: preset bolm). Written in strips; refuses an existing non-empty OUT.")
    scene.add_argument("out", help="output folder (new or empty; its parent must exist)")
    scene.add_argument("--size", type=int, default=6000, help="side in px of the finest grid (default 6000)")
    scene.add_argument("--classes", default="bolm", choices=["bolm"], help="label classes: bolm (the 11 BOLM classes)")
    scene.add_argument("--sentinel2", action="store_true",
                       help="write Sentinel-2-like band files (B01..B12, B8A at 10/20/60 m) instead of an RGB image")
    scene.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    scene.add_argument("--window", type=int, default=513, help="window side written into data.yaml (default 513)")
    scene.add_argument("--inputs", default=None, help="data.inputs written into data.yaml, e.g. ndvi or B12,B11,B8 "
                                                      "(default: rgb with --sentinel2, else every band)")

    check = sub.add_parser("check", help="validate a dataset; exit 1 listing every problem with its file",
                           description="Check that every listed raster exists and reads to the end, labels are "
                                       "single-band, on their image's grid and in 0..8, and band counts agree. "
                                       "A sound result is recorded in the data cache, so jobs need not check again.")
    check.add_argument("root", help="dataset root (holds train.txt/val.txt/test.txt), or a data YAML file "
                                    "(DataConfig fields, e.g. kind: large-raster, image, label, region_mask)")
    check.add_argument("--split", default=None, help="check one split (default: every split list)")

    stats = sub.add_parser("stats", help="per-band mean/std and pixel counts per class",
                           description="Per-band mean/std over valid pixels and label pixel counts per class.")
    stats.add_argument("root", help="dataset root, or a data YAML file (DataConfig fields)")
    stats.add_argument("--split", default=None, help="one split (default: every listed image)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--skip-missing", action="store_true", help="leave out listed images that do not exist")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        from terralite.data.synthetic import generate_dataset

        root = generate_dataset(args.out, tiles=args.tiles, size=args.size, seed=args.seed)
        print(f"wrote {args.tiles} tiles of {args.size} px to {root}")
        return 0
    if args.data_command == "synth-scene":
        from terralite.data.synth_scene import write_scene

        out = write_scene(args.out, size=args.size, classes=args.classes, sentinel2=args.sentinel2, seed=args.seed,
                          window=args.window, inputs=args.inputs)
        print(f"wrote a {args.size} px scene to {out} (data config {out / 'data.yaml'}, training settings {out / 'scene.yaml'})")
        return 0
    import dataclasses

    from terralite.data.registry import DataConfig, dataset_problems, dataset_stats, dataset_summary

    data = DataConfig.from_value(args.root)
    if args.data_command == "check":
        from terralite.data.check import format_problems

        problems = dataset_problems(data, args.split)
        if problems:
            print(format_problems(problems))
            print(f"FAILED: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"OK: {dataset_summary(data, args.split)}")
        return 0
    from terralite.data.stats import format_stats

    if args.skip_missing:
        data = dataclasses.replace(data, skip_missing=True)
    stats = dataset_stats(data, args.split)
    if args.json:
        import json

        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return 0
