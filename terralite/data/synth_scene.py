"""A deterministic, georeferenced large scene with a BOLM 11-class label: the BOLM protocol with no download.

:func:`write_scene` writes, into a new folder,

- ``label.tif``: uint8 raw BOLM values 1..11 (:data:`terralite.data.large_raster.BOLM_CLASSES`; 0 = no data,
  unused) — smooth class regions (argmax of bilinearly upsampled random fields, built-up favoured towards the
  centre like a city, farmland and meadow around it), a grid of straight roads, a little "Unrecognized";
- the image: ``image.tif`` (3-band uint8 RGB at 2.22 m, BOLM's Bing mosaic) or, with ``sentinel2=True``,
  Sentinel-2-like band files ``bands/SCENE_B01.tif`` … ``SCENE_B12.tif``, ``SCENE_B8A.tif`` (uint16 reflectance
  x 10000, per-class spectral signatures plus noise) at their native 10/20/60 m, the label on the 10 m grid;
- ``data.yaml``: the data config (``kind: large-raster``, 513 px windows, 75 % training overlap, the BOLM
  class merge and a held-out box over the centre third of the scene in map coordinates — the paper's
  "city centre = test"; with ``sentinel2``, ``inputs: rgb``), for ``terralite data check|stats`` and ``--data``;
- ``scene.yaml``: training settings (``preset: bolm``, ``data: data.yaml``) for ``terralite train --config``.

Everything is computed and written in strips of :data:`BLOCK` rows, so memory is a few strips whatever the
size. The same arguments give identical files. The folder is built under a temporary name and renamed at the end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from terralite.errors import TerraLiteError

#: Rows computed and written at a time (also the GeoTIFF block side).
BLOCK = 256
#: Side (px of the finest grid) of the random fields' cells: the size of the class regions.
CELL = 96
#: Lattice (finest px) on which the class regions are decided.
STEP = 4
#: Distance (finest px) between the roads of the road grid, and their width.
ROAD_SPACING, ROAD_WIDTH = 750, 5
#: Map origin (upper-left corner) in EPSG:32646 (UTM 46N, Dhaka).
CRS, ORIGIN = "EPSG:32646", (230000.0, 2650000.0)
RGB_PIXEL, S2_PIXEL = 2.22, 10.0
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_PIXELS = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
             "B09": 60, "B11": 20, "B12": 20}
CLASS_SETS = ("bolm",)

# Per raw class 1..11: relative frequency and RGB colour.
_PRIOR = np.array([1.2, 0.5, 0.8, 0.35, 0.45, 0.4, 0.15, 0.0, 0.35, 0.6, 0.15])
_RGB = np.array([[196, 180, 100], [40, 70, 140], [34, 97, 38], [150, 150, 150], [170, 120, 90], [200, 60, 50],
                 [140, 60, 40], [230, 230, 230], [90, 130, 110], [120, 190, 80], [80, 80, 80]], dtype=np.float32)
# Per raw class 1..11, reflectance x 10000 of S2_BANDS (vegetation: red edge and NIR high; water: all low, green >
# NIR; built-up: SWIR high).
_S2 = np.array([
    [1200, 1000, 1100, 1300, 1600, 2200, 2600, 2800, 2900, 900, 2600, 1800],   # Farmland
    [1100, 900, 800, 500, 400, 300, 250, 200, 180, 100, 100, 80],             # Water
    [900, 500, 700, 400, 1100, 2800, 3500, 3900, 4000, 1100, 1800, 900],      # Forest
    [1600, 1500, 1600, 1700, 1800, 1900, 2000, 2100, 2100, 700, 2900, 2600],  # Urban Structure
    [1400, 1200, 1300, 1400, 1700, 2100, 2300, 2400, 2400, 800, 2700, 2200],  # Rural Built-up
    [1700, 1600, 1700, 1800, 1900, 2000, 2100, 2200, 2200, 700, 3100, 2900],  # Urban Built-up
    [1500, 1300, 1200, 1500, 1700, 1800, 1900, 2000, 2000, 700, 3300, 3100],  # Brick Factory
    [1800, 1700, 1800, 1900, 2000, 2000, 2100, 2100, 2100, 700, 2800, 2700],  # Road
    [1000, 700, 900, 600, 1000, 1900, 2300, 2500, 2500, 800, 1500, 800],      # Marshland
    [1100, 800, 1000, 800, 1300, 2400, 2900, 3100, 3200, 1000, 2300, 1300],   # Meadow
    [1300, 1200, 1200, 1200, 1300, 1400, 1500, 1500, 1500, 600, 1900, 1700],  # Unrecognized
], dtype=np.float32)


class _LabelField:
    """Raw BOLM class at any position of the finest grid (rows/cols in finest px, fractional allowed)."""

    def __init__(self, size: int, seed: int):
        rng = np.random.default_rng([seed, 11])
        self.size = size
        cells = size // CELL + 3
        self.fields = rng.normal(size=(len(_PRIOR), cells, cells)).astype(np.float32)
        # a city: built-up classes (4, 5, 6, 7) favoured towards the centre, farmland and meadow away from it
        centre = (np.arange(cells, dtype=np.float32) * CELL - size / 2) / max(size / 2, 1)
        radius = np.sqrt(centre[:, None] ** 2 + centre[None, :] ** 2)
        urban = np.clip(1.0 - radius, 0, 1) * 2.5
        for raw in (4, 5, 6, 7):
            self.fields[raw - 1] += urban * (1.0 if raw != 7 else 0.3)
        for raw in (1, 10):
            self.fields[raw - 1] += np.clip(radius - 0.5, 0, 1) * 1.5
        self.fields += np.log(np.maximum(_PRIOR, 1e-3))[:, None, None]

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """uint8 ``(len(rows), len(cols))`` raw classes 1..11 at pixel centres ``rows`` x ``cols``.

        The regions are decided on a lattice of :data:`STEP` px (16x fewer field evaluations; region boundaries
        are then steps of 4 px, far below the regions' size); roads are drawn at full resolution.
        """
        row_q, row_back = np.unique(np.floor(rows / STEP) * STEP + STEP / 2, return_inverse=True)
        col_q, col_back = np.unique(np.floor(cols / STEP) * STEP + STEP / 2, return_inverse=True)
        label = self._regions(row_q, col_q)[row_back][:, col_back]
        road = ((rows % ROAD_SPACING) < ROAD_WIDTH)[:, None] | ((cols % ROAD_SPACING) < ROAD_WIDTH)[None, :]
        label[road & (label != 2)] = 8  # roads, but not across water
        return label

    def _regions(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        fy, fx = rows / CELL, cols / CELL
        i0, j0 = np.floor(fy).astype(np.int64), np.floor(fx).astype(np.int64)
        wy, wx = (fy - i0)[:, None], (fx - j0)[None, :]
        best = np.full((len(rows), len(cols)), -np.inf, dtype=np.float32)
        label = np.zeros((len(rows), len(cols)), dtype=np.uint8)
        for k, field in enumerate(self.fields):  # one class at a time: memory stays one strip
            along = field[i0] * (1 - wy) + field[i0 + 1] * wy  # (rows, cells): bilinear, rows first
            value = along[:, j0] * (1 - wx) + along[:, j0 + 1] * wx
            better = value > best
            best[better] = value[better]
            label[better] = k + 1
        return label


def _profile(width: int, height: int, count: int, dtype: str, pixel: float) -> dict:
    from rasterio.transform import from_origin

    return dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=CRS,
                transform=from_origin(ORIGIN[0], ORIGIN[1], pixel, pixel), tiled=True, blockxsize=BLOCK,
                blockysize=BLOCK, compress="deflate", BIGTIFF="IF_SAFER")


def _strips(height: int):
    for y0 in range(0, height, BLOCK):
        yield y0, min(height, y0 + BLOCK)


def write_scene(out: str | os.PathLike, size: int = 6000, classes: str = "bolm", sentinel2: bool = False,
                seed: int = 0, window: int = 513, inputs: str | None = None) -> Path:
    """Write the scene described in the module docstring into the new folder ``out``; returns its path.

    ``size`` is the side in px of the finest grid (10 m with ``sentinel2``, else 2.22 m). ``window`` and
    ``inputs`` (default ``rgb`` for Sentinel-2 bands, all bands of the RGB image otherwise) go into
    ``data.yaml``. An existing non-empty ``out`` is refused (nothing is overwritten).
    """
    import rasterio
    from rasterio.windows import Window

    out = Path(out)
    if classes not in CLASS_SETS:
        raise TerraLiteError(f"unknown class set {classes!r}; valid: {', '.join(CLASS_SETS)}")
    if size < 64:
        raise TerraLiteError(f"scene size must be at least 64 px, got {size}")
    if window <= 0:
        raise TerraLiteError(f"window must be positive, got {window}")
    if inputs is None and sentinel2:
        inputs = "rgb"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TerraLiteError(f"{out} already exists and is not an empty folder; choose a new output folder "
                             "(nothing was written)")
    if not out.parent.is_dir():
        raise TerraLiteError(f"parent folder {out.parent} of {out} does not exist")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        field = _LabelField(size, seed)
        pixel = S2_PIXEL if sentinel2 else RGB_PIXEL
        cols = np.arange(size, dtype=np.float64) + 0.5
        # GDAL would keep written blocks in its cache (5 % of RAM by default) until the file closes: 64 MB suffice
        with rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_CACHEMAX=64):
            with rasterio.open(tmp / "label.tif", "w", **_profile(size, size, 1, "uint8", pixel), nodata=0) as dst:
                for y0, y1 in _strips(size):
                    dst.write(field(np.arange(y0, y1) + 0.5, cols), 1, window=Window(0, y0, size, y1 - y0))
            if sentinel2:
                (tmp / "bands").mkdir()
                for b, band in enumerate(S2_BANDS):
                    factor = S2_PIXELS[band] // 10
                    side = -(-size // factor)
                    band_cols = (np.arange(side) + 0.5) * factor
                    path = tmp / "bands" / f"SCENE_{band}.tif"
                    with rasterio.open(path, "w", **_profile(side, side, 1, "uint16", pixel * factor)) as dst:
                        for k, (y0, y1) in enumerate(_strips(side)):
                            label = field((np.arange(y0, y1) + 0.5) * factor, band_cols)
                            rng = np.random.default_rng([seed, b, k])
                            value = _S2[label - 1, b] + rng.normal(0, 120, label.shape).astype(np.float32)
                            dst.write(np.clip(value, 1, 10000).astype(np.uint16), 1, window=Window(0, y0, side, y1 - y0))
                image_entry = "bands"
            else:
                with rasterio.open(tmp / "image.tif", "w", **_profile(size, size, 3, "uint8", pixel)) as dst:
                    for k, (y0, y1) in enumerate(_strips(size)):
                        label = field(np.arange(y0, y1) + 0.5, cols)
                        rng = np.random.default_rng([seed, 99, k])
                        strip = np.empty((3, *label.shape), dtype=np.uint8)  # all bands of a strip in one write:
                        for c in range(3):  # a pixel-interleaved block written band by band is compressed 3 times
                            value = _RGB[label - 1, c] + rng.normal(0, 14, label.shape).astype(np.float32)
                            strip[c] = np.clip(value, 0, 255)
                        dst.write(strip, window=Window(0, y0, size, y1 - y0))
                image_entry = "image.tif"
        extent = size * pixel
        x0, y_top = ORIGIN
        box = [x0 + extent / 3, y_top - 2 * extent / 3, x0 + 2 * extent / 3, y_top - extent / 3]
        inputs_line = ("# inputs: [B12, B11, B8]   # or rgb | atm | fci | swi | ndvi | ndwi_gao | ndwi_mcfeeters | rvi\n"
                       f"inputs: {inputs}\n" if inputs else "")
        command = (f"terralite data synth-scene --size {size} --classes {classes}"
                   f"{' --sentinel2' if sentinel2 else ''} --seed {seed}")
        (tmp / "scene.yaml").write_text(
            f"# training settings for the synthetic BOLM-like scene ({command}):\n"
            "#   terralite train --preset bolm --config scene.yaml --out RUN\n"
            "preset: bolm\n"
            "data: data.yaml\n")
        (tmp / "data.yaml").write_text(
            f"# the synthetic BOLM-like scene ({command}); paths are relative to this file\n"
            "kind: large-raster\n"
            f"image: {image_entry}\n"
            "label: label.tif\n"
            f"{inputs_line}"
            f"window: {window}\n"
            "overlap: 0.75\n"
            "class_merge: bolm\n"
            "# held out (val/test): the centre third of the scene, [xmin, ymin, xmax, ymax] in EPSG:32646\n"
            f"region_box: [{box[0]:.2f}, {box[1]:.2f}, {box[2]:.2f}, {box[3]:.2f}]\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
