"""Mapping throughput (Mpx/s) and peak memory of ``terralite predict`` on a large synthetic raster.

    python -m terralite.benchmark.mapping_throughput MODEL [--size 20000] [--tile 1024] [--overlap 128] \
        [--batch-size 1] [--runtime onnxruntime] [--raster /tmp/terralite_mosaic_20000.tif] [--out results/mapping]

1. Writes (once; reused when present) a ``size`` x ``size`` px RGB GeoTIFF window by window: 1024 px blocks
   of synthetic scenes (``terralite.data.synthetic.generate_scene``, a handful of distinct scenes cycled),
   so the generator itself never holds more than one block.
2. Runs ``terralite predict MODEL RASTER`` in a separate process (so the peak resident memory measured is
   the mapping's alone) and reads its summary line.
3. Writes ``throughput.json`` and appends to ``throughput.md`` in ``--out``, with the conditions (CPU,
   threads, runtime, model, tile, overlap, raster size, library versions).

Target of issue 8: >= 4 Mpx/s on a 2-core CPU with onnxruntime and a small searched network (1024 tiles,
128 px overlap), peak memory under 2 GB for 20000 x 20000 px, not growing with the raster's size (compare
``--size 8000`` and ``--size 20000``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 1024
SCENES = 6


def write_mosaic(path: Path, size: int, seed: int = 0) -> None:
    """A ``size`` x ``size`` RGB GeoTIFF (EPSG:3857, 0.5 m pixels) written block by block, atomically."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from terralite.atomic import atomic_path
    from terralite.data.synthetic import generate_scene

    scenes = [generate_scene(BLOCK, np.random.default_rng([seed, i]))[0] for i in range(SCENES)]
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:3857",
                   transform=from_origin(1_000_000.0, 6_000_000.0, 0.5, 0.5), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for i, top in enumerate(range(0, size, BLOCK)):
            for j, left in enumerate(range(0, size, BLOCK)):
                h, w = min(BLOCK, size - top), min(BLOCK, size - left)
                # rotate/flip the cycled scenes so that neighbouring blocks differ
                scene = np.rot90(scenes[(i * 7 + j) % SCENES], k=(i + j) % 4, axes=(1, 2))
                dst.write(np.ascontiguousarray(scene[:, :h, :w]), window=Window(left, top, w, h))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", metavar="MODEL", help="checkpoint or ONNX file (a small searched network, e.g. demo_out/onnx/fasterseg.onnx)")
    parser.add_argument("--size", type=int, default=20000, metavar="PX", help="raster side in px (default 20000)")
    parser.add_argument("--tile", type=int, default=1024, metavar="PX", help="tile size in px (default 1024)")
    parser.add_argument("--overlap", type=int, default=128, metavar="PX", help="overlap of neighbouring tiles in px (default 128)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="tiles per forward pass (default 1)")
    parser.add_argument("--batch", dest="batch_size", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    parser.add_argument("--runtime", default="onnxruntime", help="runtime of terralite predict (default onnxruntime)")
    parser.add_argument("--raster", default=None, metavar="FILE", help="where the synthetic raster is (re)used (default: /tmp)")
    parser.add_argument("--out", default="results/mapping", metavar="DIR", help="folder for throughput.json/.md (default results/mapping)")
    args = parser.parse_args()

    raster = Path(args.raster or f"/tmp/terralite_mosaic_{args.size}.tif")
    if not raster.is_file():
        t0 = time.perf_counter()
        print(f"writing {raster} ({args.size}x{args.size} px) ...", flush=True)
        write_mosaic(raster, args.size)
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    out_map = raster.with_name(raster.stem + "_map.tif")
    cmd = [sys.executable, "-m", "terralite", "predict", args.model, str(raster), "--out", str(out_map),
           "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch-size", str(args.batch_size),
           "--runtime", args.runtime, "--device", "cpu"]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stderr[-2000:])
    if proc.returncode:
        print(proc.stdout)
        return proc.returncode
    line = proc.stdout.strip().splitlines()[0]
    print(line)
    found = re.search(r"([\d.]+) s, ([\d.]+) Mpx/s, peak RSS (\d+) MB", line)
    child_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    from terralite.device import cpu_name
    from terralite.versions import library_versions

    record = {
        "model": args.model, "runtime": args.runtime, "raster_px": [args.size, args.size], "tile": args.tile,
        "overlap": args.overlap, "batch": args.batch_size, "mapping_seconds": float(found.group(1)),
        "mpx_per_s": float(found.group(2)), "peak_rss_mb": round(child_rss_mb, 1),
        "process_wall_seconds": round(wall, 1), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": library_versions(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from terralite.atomic import write_text_atomic

    write_text_atomic(out / "throughput.json", json.dumps(record, indent=1) + "\n")
    md = out / "throughput.md"
    header = ("| date | model | runtime | raster | tile/overlap | batch | Mpx/s | peak RSS MB | CPU |\n"
              "|---|---|---|---|---|---|---|---|---|\n")
    row = (f"| {record['date']} | {Path(args.model).name} | {args.runtime} | {args.size}x{args.size} | "
           f"{args.tile}/{args.overlap} | {args.batch_size} | {record['mpx_per_s']:.2f} | {record['peak_rss_mb']:.0f} | "
           f"{record['cpu']} ({record['cpu_count']} cores) |\n")
    write_text_atomic(md, (md.read_text() if md.is_file() else "# Mapping throughput (terralite predict)\n\n" + header) + row)
    print(f"wrote {out / 'throughput.json'} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
