"""``terralite data``: generate, check and summarise datasets in the OpenEarthMap layout."""

from __future__ import annotations

import argparse
import sys

HELP = "generate (synth), validate (check) and summarise (stats) OpenEarthMap-layout datasets"
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

    check = sub.add_parser("check", help="validate a dataset; exit 1 listing every problem with its file",
                           description="Check that every listed raster exists and reads to the end, labels are "
                                       "single-band, on their image's grid and in 0..8, and band counts agree.")
    check.add_argument("root", help="dataset root (holds train.txt/val.txt/test.txt)")
    check.add_argument("--split", default=None, help="check one split (default: every split list)")

    stats = sub.add_parser("stats", help="per-band mean/std and pixel counts per class",
                           description="Per-band mean/std over valid pixels and label pixel counts per class.")
    stats.add_argument("root", help="dataset root")
    stats.add_argument("--split", default=None, help="one split (default: every listed image)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--skip-missing", action="store_true", help="leave out listed images that do not exist")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "synth":
        from terralite.data.synthetic import generate_dataset

        root = generate_dataset(args.out, tiles=args.tiles, size=args.size, seed=args.seed)
        print(f"wrote {args.tiles} tiles of {args.size} px to {root}")
        return 0
    if args.data_command == "check":
        from terralite.data.check import check_dataset, count_images, format_problems

        problems = check_dataset(args.root, args.split)
        if problems:
            print(format_problems(problems))
            print(f"FAILED: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"OK: {count_images(args.root, args.split)} images")
        return 0
    from terralite.data.stats import compute_stats, format_stats

    stats = compute_stats(args.root, args.split, skip_missing=args.skip_missing)
    if args.json:
        import json

        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return 0
