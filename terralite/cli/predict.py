"""``terralite predict MODEL INPUT.tif --out MAP.tif``: map a raster of any size into a land-cover GeoTIFF."""

from __future__ import annotations

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
    parser.add_argument("model", metavar="MODEL", help="TerraLite checkpoint (.pt) or ONNX file (.onnx)")
    parser.add_argument("input", metavar="INPUT", help="input raster (GeoTIFF)")
    parser.add_argument("--out", required=True, metavar="MAP.tif", help="output class map (GeoTIFF)")
    parser.add_argument("--tile", type=int, default=1024, help="tile size in px, a multiple of 32 (default 1024)")
    parser.add_argument("--overlap", type=int, default=None, help="overlap of neighbouring tiles in px (default tile/8: 128 for 1024 tiles)")
    parser.add_argument("--tta", default="none", choices=["none", "hflip", "flips", "d4"],
                        help="test-time augmentation (hflip = identity + horizontal flip, logits summed)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"],
                        help="auto: torch for checkpoints, onnxruntime for .onnx files")
    parser.add_argument("--batch", type=int, default=1, help="tiles per forward pass (default 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--preview", metavar="PNG", help="also write a downsampled colour preview with a legend")
    parser.add_argument("--bands", type=_ints, metavar="I,J,K", help="override the model's band selection (0-based raster band indices)")
    parser.add_argument("--mean", type=_floats, metavar="M1,M2,...", help="override the input mean (raw pixel units, per model band)")
    parser.add_argument("--std", type=_floats, metavar="S1,S2,...", help="override the input std (raw pixel units, per model band)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _tensorrt_predictor(args, normalisation):
    """A checkpoint run as a TensorRT engine built for ``--tile`` x ``--tile`` tiles by the benchmark's runner."""
    from pathlib import Path

    import torch

    from terralite.benchmark.runners import build_runner
    from terralite.benchmark.tensorrt_engine import require_tensorrt
    from terralite.errors import TerraLiteError
    from terralite.models import describe, load_model
    from terralite.predict import Predictor, check_normalisation

    require_tensorrt()
    if Path(args.model).suffix in (".onnx", ".engine", ".plan"):
        raise TerraLiteError(f"--runtime tensorrt builds its engine from a checkpoint for the tile size; pass the .pt file instead of {args.model}")
    if args.tta not in ("none", "hflip"):
        raise TerraLiteError(f"--runtime tensorrt supports --tta none or hflip, not {args.tta}")
    device = "cuda" if args.device == "auto" else args.device
    model, spec, ckpt = load_model(args.model)
    norm = check_normalisation(dict((ckpt or {}).get("input") or {}, **(normalisation or {})), spec["in_channels"], describe(spec))
    runner = build_runner("tensorrt", model, size=args.tile, in_channels=spec["in_channels"], batch=args.batch,
                          device=device, precision="fp32", tta=args.tta)

    def forward(batch):
        with torch.no_grad():
            return runner(torch.from_numpy(batch).to(runner.device)).float().cpu().numpy()

    return Predictor(forward, spec["in_channels"], spec["num_classes"], norm, describe(spec),
                     fixed_size=(args.tile, args.tile), fixed_batch=args.batch)


def run(args) -> int:
    from pathlib import Path

    from terralite.atomic import ensure_parent
    from terralite.data.raster import raster_info
    from terralite.predict import load_predictor, predict_raster, resolve_runtime

    # Cheap checks first: a bad path should not wait for a model to load.
    ensure_parent(args.out)
    if args.preview:
        ensure_parent(args.preview)
    raster_info(args.input)
    override = {"bands": args.bands, "mean": args.mean, "std": args.std}
    override = {k: v for k, v in override.items() if v is not None} or None
    if resolve_runtime(Path(args.model), args.runtime) == "tensorrt":
        predictor = _tensorrt_predictor(args, override)
    else:
        predictor = load_predictor(args.model, runtime=args.runtime, device=args.device, tta=args.tta, normalisation=override)
    summary = predict_raster(predictor, args.input, args.out, tile=args.tile, overlap=args.overlap, batch=args.batch,
                             preview=args.preview, progress=not args.quiet)
    print(
        f"wrote {summary['output']} ({summary['width']}x{summary['height']} px, {summary['tiles']} tiles, "
        f"{summary['seconds']:.1f} s, {summary['mpx_per_s']:.2f} Mpx/s, peak RSS {summary['peak_rss_mb']:.0f} MB)"
    )
    if summary["preview"]:
        print(f"wrote {summary['preview']}")
    return 0
