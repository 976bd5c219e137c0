"""``terralite predict MODEL INPUT.tif --out MAP.tif``: map a raster of any size into a land-cover GeoTIFF."""

from __future__ import annotations

import argparse

from terralite.cli import TTA_HELP, TTA_MODE_NAMES

HELP = "map a GeoTIFF of any size into a land-cover class GeoTIFF (tiled, blended, georeferenced)"
DESCRIPTION = (
    "Map INPUT.tif with MODEL (a TerraLite checkpoint or an ONNX file from `terralite export`). Windows are "
    "read and written lazily, so memory is bounded by one tile plus the still-open overlap strip; overlapping "
    "tiles are blended (no seams). The "
    "output is a single-band uint8 GeoTIFF of class ids 1..K (0 = nodata) with the input's CRS, transform and "
    "size and the OpenEarthMap colour table, written atomically."
)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def add_arguments(parser) -> None:
    from terralite.cli.options import add_threads_option

    parser.add_argument("model", metavar="MODEL", help="TerraLite checkpoint (.pt) or ONNX file (.onnx)")
    parser.add_argument("input", metavar="FILE", help="input raster (GeoTIFF)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output class map (GeoTIFF, e.g. MAP.tif)")
    parser.add_argument("--tile", type=int, default=1024, metavar="PX", help="tile size in px, a multiple of 32 (default 1024)")
    parser.add_argument("--overlap", type=int, default=None, metavar="PX",
                        help="overlap of neighbouring tiles in px (default tile/8: 128 for 1024 tiles)")
    parser.add_argument("--tta", default="none", choices=TTA_MODE_NAMES, help=f"test-time augmentation: {TTA_HELP} (default none)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"],
                        help="auto (default): torch for checkpoints, onnxruntime for .onnx files; tensorrt builds an "
                             "engine from a checkpoint for --tile and --batch-size")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="tiles per forward pass (default 1)")
    parser.add_argument("--batch", dest="batch_size", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--preview", metavar="FILE", help="also write a downsampled colour preview PNG with a legend")
    parser.add_argument("--bands", type=_ints, metavar="I,J,K", help="override the model's band selection (0-based raster band indices)")
    parser.add_argument("--mean", type=_floats, metavar="M1,M2,...", help="override the input mean (raw pixel units, per model band)")
    parser.add_argument("--std", type=_floats, metavar="S1,S2,...", help="override the input std (raw pixel units, per model band)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_option(parser)


def run(args) -> int:
    from terralite.benchmark.mapping import map_raster
    from terralite.cli.options import set_threads

    set_threads(args.threads)
    summary = map_raster(args.model, args.input, args.out, runtime=args.runtime, device=args.device, tta=args.tta,
                         tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, preview=args.preview,
                         bands=args.bands, mean=args.mean, std=args.std, progress=not args.quiet,
                         threads=args.threads)
    print(
        f"wrote {summary['output']} ({summary['width']}x{summary['height']} px, {summary['tiles']} tiles, "
        f"{summary['seconds']:.1f} s, {summary['mpx_per_s']:.2f} Mpx/s, peak RSS {summary['peak_rss_mb']:.0f} MB)"
    )
    if summary["preview"]:
        print(f"wrote {summary['preview']}")
    return 0
