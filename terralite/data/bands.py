"""Multi-band input: band names and selection, spectral indices, BOLM composites, Sentinel-2 band stacks.

Band selection accepts 0-based indices or names. A raster's band names are its band descriptions when
every band has one; otherwise ``red, green, blue`` for 3 bands, the EuroSAT/Sentinel-2 L1C order
(:data:`SENTINEL2_L1C_BANDS`) for 13 bands, and ``band1..bandN`` for any other count.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from terralite.errors import TerraLiteError

RGB_BANDS = ("red", "green", "blue")
#: Band order of 13-band Sentinel-2 L1C stacks such as EuroSAT_MS.
SENTINEL2_L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")


def default_band_names(count: int) -> tuple[str, ...]:
    """Names given to the bands of a raster without band descriptions."""
    if count == 3:
        return RGB_BANDS
    if count == len(SENTINEL2_L1C_BANDS):
        return SENTINEL2_L1C_BANDS
    return tuple(f"band{i}" for i in range(1, count + 1))


def band_names(src) -> tuple[str, ...]:
    """Band names of an open rasterio dataset (its descriptions, or :func:`default_band_names`)."""
    descriptions = tuple(src.descriptions)
    if descriptions and all(descriptions):
        return descriptions
    return default_band_names(src.count)


def resolve_bands(selection: Sequence[int | str], names: Sequence[str]) -> list[int]:
    """Turn a selection of 0-based indices and/or names (case-insensitive) into 0-based indices."""
    lookup = {name.lower(): i for i, name in enumerate(names)}
    indices = []
    for item in selection:
        if isinstance(item, str) and item.strip().lstrip("-").isdigit():
            item = int(item)
        if isinstance(item, str):
            if item.lower() not in lookup:
                raise TerraLiteError(f"unknown band {item!r}; bands are {', '.join(names)} (or 0-based indices)")
            indices.append(lookup[item.lower()])
        else:
            index = int(item)
            if not 0 <= index < len(names):
                raise TerraLiteError(f"band index {index} out of range: the input has {len(names)} bands (0..{len(names) - 1})")
            indices.append(index)
    if not indices:
        raise TerraLiteError("band selection is empty; name at least one band or leave it unset for all bands")
    return indices


# ---- Sentinel-2 bands stored as separate files -------------------------------------------------------------

#: Native ground sampling distance (m) of each Sentinel-2 band.
SENTINEL2_RESOLUTION = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
                        "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}
_BAND_FILE = re.compile(r"(?:^|[_-])(B(?:0[1-9]|1[0-2]|8A))\.(?:tif|tiff|jp2)$", re.IGNORECASE)


def find_band_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Sentinel-2 band files in ``folder`` (names ending ``_B04.tif``, ``B8A.tif``, ...) keyed by band name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TerraLiteError(f"Sentinel-2 band folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _BAND_FILE.search(path.name)
        if match:
            found[match.group(1).upper()] = path
    if not found:
        raise TerraLiteError(f"no Sentinel-2 band files (*_B02.tif, *_B8A.tif, ...) in {folder}")
    return found


def read_band_stack(files: Mapping[str, str | os.PathLike] | str | os.PathLike,
                    bands: Sequence[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read bands stored as separate files and resample them bilinearly onto the finest band's grid.

    ``files`` maps band names to paths, or is a folder searched with :func:`find_band_files`. Returns
    ``({band: float32 (H, W)}, grid)`` where ``grid`` has ``crs``, ``transform``, ``height``, ``width`` of the
    common grid (10 m when a 10 m band is present). Nodata pixels are 0 in the output.
    """
    from rasterio.warp import Resampling, reproject

    from terralite.data.raster import open_raster, read_from

    files = find_band_files(files) if isinstance(files, (str, os.PathLike)) else {k.upper(): Path(v) for k, v in files.items()}
    wanted = [b.upper() for b in bands] if bands is not None else list(files)
    absent = [b for b in wanted if b not in files]
    if absent:
        raise TerraLiteError(f"Sentinel-2 band(s) {', '.join(absent)} not found; available: {', '.join(files)}")
    headers = {}
    for band in wanted:
        with open_raster(files[band]) as src:
            headers[band] = (src.res[0], src.crs, src.transform, src.height, src.width)
    reference = min(wanted, key=lambda b: headers[b][0])  # finest pixel
    _, crs, transform, height, width = headers[reference]
    out: dict[str, np.ndarray] = {}
    for band in wanted:
        with open_raster(files[band]) as src:
            data = read_from(src)[0].astype(np.float32)
            if (src.height, src.width) == (height, width) and src.transform == transform:
                out[band] = data
                continue
            target = np.zeros((height, width), dtype=np.float32)
            reproject(data, target, src_transform=src.transform, src_crs=src.crs, src_nodata=src.nodata,
                      dst_transform=transform, dst_crs=crs, dst_nodata=0, resampling=Resampling.bilinear)
            out[band] = target
    return out, {"crs": crs, "transform": transform, "height": height, "width": width}


# ---- indices and composites ----------------------------------------------------------------------------------

#: Added to denominators so that 0/0 (nodata, water in the dark) gives 0 rather than NaN or inf.
EPS = 1e-6


def normalized_difference(a: np.ndarray, b: np.ndarray, eps: float = EPS) -> np.ndarray:
    """(a - b) / (a + b), in [-1, 1] for non-negative inputs; 0 where both are 0."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return (a - b) / (a + b + eps)


def ndvi(b8: np.ndarray, b4: np.ndarray) -> np.ndarray:
    """Normalised difference vegetation index (B8 - B4) / (B8 + B4)."""
    return normalized_difference(b8, b4)


def ndwi_gao(b8: np.ndarray, b11: np.ndarray) -> np.ndarray:
    """Gao's NDWI (vegetation water content, the BOLM paper's sense): (B8 - B11) / (B8 + B11)."""
    return normalized_difference(b8, b11)


def ndwi_mcfeeters(b3: np.ndarray, b8: np.ndarray) -> np.ndarray:
    """McFeeters' NDWI (open water): (B3 - B8) / (B3 + B8)."""
    return normalized_difference(b3, b8)


def rvi(b8: np.ndarray, b4: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Ratio vegetation index B8 / B4 (0 where B4 and B8 are 0; large but finite where only B4 is 0)."""
    return np.asarray(b8, dtype=np.float32) / (np.asarray(b4, dtype=np.float32) + eps)


#: Derived inputs: name → (function or None for a plain composite, Sentinel-2 bands it uses).
DERIVED: dict[str, tuple] = {
    "rgb": (None, ("B04", "B03", "B02")),
    "atm": (None, ("B12", "B11", "B08")),
    "fci": (None, ("B08", "B04", "B03")),
    "swi": (None, ("B12", "B08", "B04")),
    "ndvi": (ndvi, ("B08", "B04")),
    "ndwi": (ndwi_gao, ("B08", "B11")),
    "ndwi_gao": (ndwi_gao, ("B08", "B11")),
    "ndwi_mcfeeters": (ndwi_mcfeeters, ("B03", "B08")),
    "rvi": (rvi, ("B08", "B04")),
}


def derive(bands: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """A BOLM input ``(3, H, W)`` float32: a composite of three bands, or an index replicated to 3 channels."""
    key = name.lower()
    if key not in DERIVED:
        raise TerraLiteError(f"unknown derived input {name!r}; choose from {', '.join(DERIVED)}")
    func, needed = DERIVED[key]
    upper = {k.upper(): v for k, v in bands.items()}
    absent = [b for b in needed if b not in upper]
    if absent:
        raise TerraLiteError(f"{name} needs Sentinel-2 band(s) {', '.join(absent)}; have {', '.join(upper) or 'none'}")
    if func is None:
        return np.stack([np.asarray(upper[b], dtype=np.float32) for b in needed])
    index = func(*(upper[b] for b in needed))
    return np.repeat(index[None], 3, axis=0)


def stack_inputs(bands: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Concatenate derived inputs and/or raw bands (by name) into one ``(C, H, W)`` float32 array."""
    upper = {k.upper(): v for k, v in bands.items()}
    parts = []
    for name in names:
        if name.lower() in DERIVED:
            parts.append(derive(upper, name))
        elif name.upper() in upper:
            parts.append(np.asarray(upper[name.upper()], dtype=np.float32)[None])
        else:
            raise TerraLiteError(f"unknown input {name!r}: not a band ({', '.join(upper)}) nor a derived input "
                                 f"({', '.join(DERIVED)})")
    return np.concatenate(parts)
