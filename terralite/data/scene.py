"""One image on one pixel grid, read window by window: a multi-band raster or Sentinel-2 band files.

A :class:`Scene` is what large-raster datasets and ``terralite predict`` read the model input from:

- one raster file (any band count; band names from :func:`terralite.data.bands.band_names`), or
- Sentinel-2 band files — a folder (names ending ``_B04.tif``, ``B8A.tif``, ...) or a list of such files —
  whose 20 m and 60 m bands are resampled bilinearly onto the grid of the finest band (10 m) as they are read
  (a rasterio ``WarpedVRT`` per coarser band, so a window never reads more than its own footprint).

What reaches the model is chosen by ``inputs`` (names: bands such as ``B12``/``B8``/``red``, the composites
``rgb``, ``atm``, ``fci``, ``swi`` and the indices ``ndvi``, ``ndwi_gao`` (= ``ndwi``), ``ndwi_mcfeeters``,
``rvi`` of :data:`terralite.data.bands.DERIVED`, replicated to 3 channels) or by ``bands`` (0-based indices or
names, raw bands only); without either every band is read.

**Nodata.** A pixel is invalid where any band it needs equals that file's nodata value or is not finite, or
lies outside the raster; invalid pixels read as 0 and are reported in the validity mask, so datasets ignore
their labels and statistics skip them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from rasterio.windows import Window

from terralite.data.raster import GDAL_BLOCK_CACHE_MB  # noqa: F401  (caps GDAL's block cache before any read)
from terralite.errors import TerraLiteError

#: Plain colour names of 3-band rasters and what they mean in Sentinel-2 terms (so ``rgb`` works on them).
_ALIASES = {"RED": "B04", "GREEN": "B03", "BLUE": "B02", "NIR": "B08"}
_S2_NAME = re.compile(r"^B0?(\d{1,2}|8A)$", re.IGNORECASE)


def canonical_band(name: str) -> str:
    """``B8``/``b08`` → ``B08``, ``b8a`` → ``B8A``, ``red`` → ``B04``; other names upper-cased."""
    text = str(name).strip().upper()
    text = _ALIASES.get(text, text)
    match = _S2_NAME.match(text)
    if match:
        number = match.group(1).upper()
        return "B8A" if number == "8A" else f"B{int(number):02d}"
    return text


def parse_inputs(value) -> list[str] | None:
    """``data.inputs`` as a list of names: ``"ndvi"``, ``"B12,B11,B8"`` or a list; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    names = [str(v).strip() for v in value if str(v).strip()]
    if not names:
        raise TerraLiteError("data.inputs is empty; name bands (B12, B11, B8), a composite (rgb, atm, fci, swi) or an "
                             "index (ndvi, ndwi_gao, ndwi_mcfeeters, rvi), or leave it unset for every band")
    return names


def input_channels(name: str) -> int:
    """Channels one input name gives: 3 for a composite or an index, 1 for a band."""
    from terralite.data.bands import DERIVED

    return 3 if name.lower() in DERIVED else 1


def input_needs(names: Sequence[str]) -> list[str]:
    """Canonical band names the inputs ``names`` read, in first-use order."""
    from terralite.data.bands import DERIVED

    needed: list[str] = []
    for name in names:
        bands = DERIVED[name.lower()][1] if name.lower() in DERIVED else (canonical_band(name),)
        needed += [b for b in bands if b not in needed]
    return needed


def is_band_files(image) -> bool:
    """Does ``image`` name Sentinel-2 band files (a folder, or a list of files) rather than one raster?"""
    return isinstance(image, (list, tuple)) or Path(image).is_dir()


def band_files(image) -> dict[str, Path]:
    """Canonical band name → file for a band-file scene (folder or list)."""
    from terralite.data.bands import find_band_files

    if not isinstance(image, (list, tuple)):
        return find_band_files(image)
    files: dict[str, Path] = {}
    for item in image:
        match = re.search(r"(?:^|[_-])(B(?:0?[1-9]|1[0-2]|8A))\.(?:tif|tiff|jp2)$", Path(item).name, re.IGNORECASE)
        if not match:
            raise TerraLiteError(f"cannot tell the Sentinel-2 band of {item}: band files must end _B02.tif, _B8A.tif, ...")
        files[canonical_band(match.group(1))] = Path(item)
    return files


def scene_files(image) -> list[Path]:
    """Every file a scene reads (for cache keys and checks)."""
    return list(band_files(image).values()) if is_band_files(image) else [Path(image)]


class Scene:
    """An image (see the module docstring) open for windowed reads; use as a context manager or ``close()``.

    Attributes: ``height``, ``width``, ``crs``, ``transform`` (the common grid), ``reference`` (the file whose
    grid that is: the raster, or the finest band file), ``band_names`` (of the source
    bands), ``channel_names`` and ``num_channels`` (of what :meth:`read` returns), ``inputs`` (the input names,
    or None for raw bands), ``bands`` (0-based band indices when raw bands are selected, else None).
    """

    def __init__(self, image, inputs: Sequence[str] | str | None = None, bands: Sequence[int | str] | None = None):
        import rasterio

        from terralite.data.bands import band_names, resolve_bands

        self.inputs = parse_inputs(inputs)
        if self.inputs is not None and bands is not None:
            raise TerraLiteError("set either data.inputs (bands, composites, indices by name) or data.bands (a raw band "
                                 "selection), not both")
        self.name = str(image)
        self._handles: list = []
        if is_band_files(image):
            files = band_files(image)
            self._open_band_files(files)
        else:
            from terralite.data.raster import open_raster

            with open_raster(image):  # a missing or broken file raises naming it
                pass
            src = rasterio.open(image)
            self._handles.append(src)
            self.reference = Path(image)
            self.height, self.width, self.crs, self.transform = src.height, src.width, src.crs, src.transform
            self.band_names = band_names(src)
            # (handle, 0-based band index, nodata) per source band
            self._sources = [(src, i, src.nodata) for i in range(src.count)]
        lookup = {canonical_band(n): i for i, n in enumerate(self.band_names)}
        if self.inputs is not None:
            from terralite.data.bands import DERIVED

            for name in self.inputs:
                if name.lower() not in DERIVED and canonical_band(name) not in lookup:
                    raise TerraLiteError(f"unknown input {name!r} for {self.name}: not one of its bands "
                                         f"({', '.join(self.band_names)}) nor a composite/index ({', '.join(DERIVED)})")
            absent = [b for b in input_needs(self.inputs) if b not in lookup]
            if absent:
                raise TerraLiteError(f"inputs {', '.join(self.inputs)} need band(s) {', '.join(absent)}, which {self.name} "
                                     f"lacks (it has {', '.join(self.band_names)})")
            self._read_bands = [lookup[b] for b in input_needs(self.inputs)]
            self.bands = None
            self.channel_names = [f"{n.lower()}:{k}" if input_channels(n) == 3 else canonical_band(n)
                                  for n in self.inputs for k in range(input_channels(n))]
        else:
            self.bands = None if bands is None else resolve_bands(bands, self.band_names)
            self._read_bands = list(range(len(self.band_names))) if self.bands is None else list(self.bands)
            self.channel_names = [self.band_names[i] for i in self._read_bands]
        self.num_channels = len(self.channel_names)

    def _open_band_files(self, files: dict[str, Path]) -> None:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        from terralite.data.raster import open_raster

        headers = {}
        for band, path in files.items():
            with open_raster(path) as src:
                if src.count != 1:
                    raise TerraLiteError(f"Sentinel-2 band file {path} has {src.count} bands; each must hold one band")
                headers[band] = (abs(src.res[0]), src.crs, src.transform, src.height, src.width)
        reference = min(files, key=lambda b: headers[b][0])  # the finest band sets the grid
        self.reference = files[reference]
        _, self.crs, self.transform, self.height, self.width = headers[reference]
        self.band_names = tuple(files)
        self._sources = []
        for band, path in files.items():
            src = rasterio.open(path)
            self._handles.append(src)
            nodata = src.nodata
            if (src.height, src.width) != (self.height, self.width) or src.transform != self.transform:
                extra = {} if nodata is None else {"src_nodata": nodata, "nodata": nodata}
                vrt = WarpedVRT(src, crs=self.crs, transform=self.transform, width=self.width, height=self.height,
                                resampling=Resampling.bilinear, **extra)
                self._handles.append(vrt)
                src = vrt
            self._sources.append((src, 0, nodata))

    # -- reading
    def _read_band(self, index: int, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Band ``index`` as float32 ``(h, w)`` over ``window`` (may reach past the edges) and its validity."""
        from terralite.data.raster import read_from

        src, band, nodata = self._sources[index]
        h, w = int(window.height), int(window.width)
        out = np.zeros((h, w), dtype=np.float32)
        valid = np.zeros((h, w), dtype=bool)
        x0, y0 = max(0, int(window.col_off)), max(0, int(window.row_off))
        x1 = min(self.width, int(window.col_off) + w)
        y1 = min(self.height, int(window.row_off) + h)
        if x1 > x0 and y1 > y0:
            pixels = read_from(src, bands=[band], window=Window(x0, y0, x1 - x0, y1 - y0))[0].astype(np.float32)
            ok = np.isfinite(pixels)
            if nodata is not None and np.isfinite(nodata):
                ok &= pixels != np.float32(nodata)
            ys, xs = slice(y0 - int(window.row_off), y1 - int(window.row_off)), slice(x0 - int(window.col_off), x1 - int(window.col_off))
            out[ys, xs] = np.where(ok, pixels, 0)
            valid[ys, xs] = ok
        return out, valid

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 (num_channels, h, w), bool valid (h, w))`` of ``window`` (parts past the edges: 0, invalid)."""
        from terralite.data.bands import stack_inputs

        planes, valid = [], None
        for index in self._read_bands:
            plane, ok = self._read_band(index, window)
            planes.append(plane)
            valid = ok if valid is None else valid & ok
        if self.inputs is None:
            return np.stack(planes), valid
        named = {canonical_band(self.band_names[i]): p for i, p in zip(self._read_bands, planes)}
        stacked = stack_inputs(named, [n if n.lower() in _derived_names() else canonical_band(n) for n in self.inputs])
        stacked[:, ~valid] = 0
        return stacked, valid

    def has_nodata(self) -> bool:
        """Can any pixel be invalid (a nodata value or a mask is declared)? Float data may hold NaN: assume so."""
        from rasterio.enums import MaskFlags

        for src, band, nodata in self._sources:
            if nodata is not None or np.dtype(src.dtypes[band]).kind == "f":
                return True
            if MaskFlags.all_valid not in src.mask_flag_enums[band]:
                return True
        return False

    def dataset_mask(self, window: Window) -> np.ndarray:
        """uint8 ``(h, w)``: 255 where :meth:`read` gives valid pixels, 0 elsewhere (rasterio's convention)."""
        planes = [self._read_band(index, window)[1] for index in self._read_bands]
        return (np.logical_and.reduce(planes) * 255).astype(np.uint8)

    def record(self) -> dict:
        """What to store so that the same input is rebuilt elsewhere: ``{"bands", "inputs"}``."""
        return {"bands": self.bands, "inputs": None if self.inputs is None else list(self.inputs)}

    def close(self) -> None:
        for handle in reversed(self._handles):
            handle.close()
        self._handles = []

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _derived_names() -> set[str]:
    from terralite.data.bands import DERIVED

    return set(DERIVED)


def open_scene(image, inputs=None, bands=None) -> Scene:
    """A :class:`Scene` of ``image`` (a raster path, a band-file folder or a list of band files)."""
    if isinstance(image, (str, os.PathLike)) and not Path(image).exists():
        raise TerraLiteError(f"image {image} does not exist; give a raster file or a folder of Sentinel-2 band files")
    return Scene(image, inputs=inputs, bands=bands)
