"""Reading and writing GeoTIFFs with rasterio, with errors that name the file.

Reads never assume a layout: rasterio returns ``(bands, H, W)`` for pixel- and band-interleaved files
alike. Every GDAL failure (missing, not a raster, corrupt, truncated) becomes a
:class:`~terralite.errors.TerraLiteError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from terralite.atomic import atomic_path
from terralite.errors import TerraLiteError

#: GDAL's block cache in MB. GDAL's own default is 5 % of physical RAM (1.2 GB on a 24 GiB machine), and a sweep
#: over a large raster (``data check``, statistics, prediction) fills all of it with blocks that are never read
#: again: the peak RSS of a 20000 px scene's training went 1.7 GB with the default. The cap is set before the first
#: read, when this module is imported (every module that reads rasters imports it); a user's own GDAL_CACHEMAX
#: is kept.
GDAL_BLOCK_CACHE_MB = 128
os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_BLOCK_CACHE_MB))

# Creation options that make GeoTIFF bytes a function of the pixels and metadata only (no timestamps,
# no software tag that changes with versions is written by GDAL's GTiff driver by default).
DETERMINISTIC_GTIFF = {"driver": "GTiff", "compress": "deflate", "tiled": False}


@dataclass(frozen=True)
class RasterInfo:
    """What a raster's header says (no pixels read)."""

    path: Path
    count: int
    height: int
    width: int
    dtypes: tuple[str, ...]
    crs: object  # rasterio CRS or None
    transform: object  # affine.Affine
    nodata: float | None
    descriptions: tuple[str | None, ...]
    interleave: str | None


@contextlib.contextmanager
def open_raster(path: str | os.PathLike) -> Iterator[rasterio.io.DatasetReader]:
    """Open ``path`` for reading; missing, non-raster or corrupt files raise TerraLiteError naming it."""
    path = Path(path)
    if not path.exists():
        raise TerraLiteError(f"raster {path} does not exist")
    if path.is_dir():
        raise TerraLiteError(f"raster {path} is a folder, expected a GeoTIFF file")
    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        raise TerraLiteError(f"cannot open raster {path}: {_short(exc)} (is it a valid GeoTIFF?)") from exc
    if path.suffix.lower() in (".tif", ".tiff") and src.driver != "GTiff":
        # GDAL opens a PNG or JPEG renamed .tif without complaint (no georeferencing, other pixel types)
        driver = src.driver
        src.close()
        raise TerraLiteError(f"{path} is not a GeoTIFF: it is a {driver} file with a .tif name; convert it "
                             "(e.g. gdal_translate -of GTiff) or give it its own extension")
    try:
        yield src
    finally:
        src.close()


def raster_info(path: str | os.PathLike) -> RasterInfo:
    """Header of the raster at ``path``."""
    with open_raster(path) as src:
        interleave = src.interleaving.name.lower() if src.interleaving is not None else None
        return RasterInfo(
            path=Path(path),
            count=src.count,
            height=src.height,
            width=src.width,
            dtypes=tuple(src.dtypes),
            crs=src.crs,
            transform=src.transform,
            nodata=src.nodata,
            descriptions=tuple(src.descriptions),
            interleave=interleave,
        )


def read_from(src: rasterio.io.DatasetReader, bands: Sequence[int] | None = None, window: Window | None = None,
              **kwargs) -> np.ndarray:
    """Read ``(C, H, W)`` from an open raster; ``bands`` are 0-based indices (None = all).

    Corrupt or truncated data raises TerraLiteError naming the file. Extra keyword arguments go to
    ``src.read`` (e.g. ``out_shape``, ``resampling``, ``boundless``).
    """
    indexes = list(range(1, src.count + 1)) if bands is None else [int(b) + 1 for b in bands]
    bad = [i - 1 for i in indexes if not 1 <= i <= src.count]
    if bad:
        raise TerraLiteError(f"raster {src.name} has {src.count} bands (0..{src.count - 1}); cannot read band(s) {bad}")
    try:
        return src.read(indexes, window=window, **kwargs)
    except RasterioError as exc:
        raise TerraLiteError(f"cannot read pixels of raster {src.name}: {_short(exc)} (file corrupt or truncated?)") from exc


def read_raster(path: str | os.PathLike, bands: Sequence[int] | None = None, window: Window | None = None) -> np.ndarray:
    """Read the raster at ``path`` as ``(C, H, W)`` in its own dtype, whatever its interleave."""
    with open_raster(path) as src:
        return read_from(src, bands=bands, window=window)


def read_label(path: str | os.PathLike, window: Window | None = None) -> np.ndarray:
    """Read a single-band label raster as ``(H, W)``; more than one band is an error naming the file."""
    with open_raster(path) as src:
        if src.count != 1:
            raise TerraLiteError(f"label raster {path} has {src.count} bands; a label must be single-band")
        return read_from(src, window=window)[0]


def write_geotiff(path: str | os.PathLike, array: np.ndarray, crs=None, transform=None, nodata=None,
                  interleave: str = "pixel", descriptions: Sequence[str] | None = None) -> Path:
    """Write ``array`` ((H, W) or (C, H, W)) as a GeoTIFF atomically; same inputs give identical bytes."""
    array = np.asarray(array)
    if array.dtype == bool:  # GDAL has no boolean type
        array = array.astype(np.uint8)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise TerraLiteError(f"cannot write {path}: expected an (H, W) or (C, H, W) array, got shape {array.shape}")
    count, height, width = array.shape
    profile = dict(DETERMINISTIC_GTIFF, height=height, width=width, count=count, dtype=array.dtype.name,
                   crs=crs, transform=transform, nodata=nodata, interleave=interleave)
    if transform is None:
        profile.pop("transform")
    with atomic_path(path) as tmp:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"):  # no .aux.xml sidecars
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(array)
                if descriptions is not None:
                    for i, name in enumerate(descriptions, start=1):
                        dst.set_band_description(i, name)
    return Path(path)


def _short(exc: BaseException) -> str:
    """First line of a GDAL error; rasterio's "see previous exception" wrappers are replaced by their cause."""
    while "previous exception" in str(exc) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
