"""Validation of an OpenEarthMap-layout dataset before anything trains on it.

Every problem is collected (not only the first) with the file it concerns: listed files that are missing,
rasters that cannot be opened or read to the end (corrupt, truncated), labels that are not single-band,
differ from their image in size or georeferencing, or hold values outside 0..8, and images whose band
count differs from the rest. Rasters are read one at a time.

These functions always read the files. Jobs go through :func:`terralite.data.registry.check_data`, which
caches a sound verdict (see :mod:`terralite.data.cache`); :func:`require_sound_dataset` of one split does too.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from terralite.data.classes import NUM_CLASSES
from terralite.data.openearthmap import SPLITS, labels_required, list_names, list_samples
from terralite.data.raster import open_raster, read_from
from terralite.errors import TerraLiteError

# Pixel-size/origin differences below this fraction of a pixel are rounding, not a misregistration.
_GEO_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file."""

    path: Path
    message: str
    #: True for a listed file that does not exist (allowed with ``skip_missing``).
    missing: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _splits_to_check(root: Path, split: str | None) -> list[str]:
    if split is not None:
        return [split]
    present = sorted(p.stem for p in root.glob("*.txt"))
    # official splits first, then any others (e.g. train_mini)
    return [s for s in SPLITS if s in present] + [s for s in present if s not in SPLITS]


def _read_header_and_pixels(path: Path, problems: list[Problem]):
    """(src metadata, pixels) of a raster, or None after recording why it cannot be read."""
    try:
        with open_raster(path) as src:
            meta = {"count": src.count, "crs": src.crs, "transform": src.transform, "shape": (src.height, src.width)}
            return meta, read_from(src)
    except TerraLiteError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _pixel_problems(path: Path, pixels: np.ndarray) -> list[Problem]:
    """Image pixels a network cannot learn from: NaN/Inf values, a dtype that is not a number."""
    if pixels.dtype.kind not in "uif":
        return [Problem(path, f"pixels of type {pixels.dtype} are not numbers a network can read; convert the image to an "
                              "integer or float type")]
    if pixels.dtype.kind == "f":
        return _nonfinite_problems(path, int(pixels.size - np.count_nonzero(np.isfinite(pixels))))
    return []


def _nonfinite_problems(path: Path, count: int) -> list[Problem]:
    if not count:
        return []
    return [Problem(path, f"{count} pixel value(s) are NaN or infinite (training would learn NaN weights); set them "
                          "to the raster's nodata value or fix the image")]


def _same_georeferencing(a: dict, b: dict) -> str | None:
    """Why two rasters are not on the same grid, or None."""
    if (a["crs"] is None) != (b["crs"] is None) or (a["crs"] is not None and a["crs"] != b["crs"]):
        return f"CRS {b['crs']} differs from the image's {a['crs']}"
    ta, tb = a["transform"], b["transform"]
    pixel = max(abs(ta.a), abs(ta.e), 1e-300)
    if any(abs(x - y) > _GEO_TOLERANCE * pixel for x, y in zip(ta[:6], tb[:6])):
        return f"geotransform {tuple(tb[:6])} differs from the image's {tuple(ta[:6])}"
    return None


def check_dataset(root: str | os.PathLike, split: str | None = None) -> list[Problem]:
    """All problems of one split (or of every split list at the root when ``split`` is None); [] when sound."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(root, "dataset folder does not exist")]
    splits = _splits_to_check(root, split)
    if not splits:
        return [Problem(root, "no split lists (train.txt, val.txt, test.txt) found")]
    problems: list[Problem] = []
    samples: dict[Path, Path | None] = {}
    for name in splits:
        try:
            found, missing = list_samples(root, name, skip_missing=True, require_labels=labels_required(name))
        except TerraLiteError as exc:
            problems.append(Problem(root / f"{name}.txt", str(exc)))
            continue
        problems += [Problem(path, f"listed in {name}.txt but missing", missing=True) for path in missing]
        for image_path, label_path in found:
            samples.setdefault(image_path, label_path)

    band_counts: dict[Path, int] = {}
    dtypes: dict[Path, str] = {}
    for image_path, label_path in samples.items():
        image = _read_header_and_pixels(image_path, problems)
        if image is None:
            continue
        image_meta, image_pixels = image
        band_counts[image_path] = image_meta["count"]
        dtypes[image_path] = image_pixels.dtype.name
        problems += _pixel_problems(image_path, image_pixels)
        if label_path is None:
            continue
        label = _read_header_and_pixels(label_path, problems)
        if label is None:
            continue
        label_meta, pixels = label
        _check_label_grid(label_path, label_meta, image_path, image_meta, problems)
        bad = np.unique(pixels[(pixels < 0) | (pixels > NUM_CLASSES)])
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:10].tolist())
            problems.append(Problem(label_path, f"label values outside 0..{NUM_CLASSES}: {shown}"))

    if band_counts:
        usual, _ = Counter(band_counts.values()).most_common(1)[0]
        problems += [Problem(path, f"image has {count} bands but the other images have {usual}")
                     for path, count in band_counts.items() if count != usual]
    if dtypes:
        usual_type, _ = Counter(dtypes.values()).most_common(1)[0]
        problems += [Problem(path, f"image pixels are {dtype} but the other images are {usual_type}: one normalisation "
                                   "cannot fit both value ranges; convert the images to one type")
                     for path, dtype in dtypes.items() if dtype != usual_type]
    return problems


def count_images(root: str | os.PathLike, split: str | None = None) -> int:
    """Number of distinct images listed in one split (or all split lists)."""
    return len(dict.fromkeys(list_names(root, split)))


def format_problems(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


def problems_error(what: str, problems: list[Problem], hint: str) -> TerraLiteError:
    """One TerraLiteError listing (up to 20 of) ``problems`` of ``what``, ending with ``hint``."""
    listed = "; ".join(str(p) for p in problems[:20])
    more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
    return TerraLiteError(f"{what} has {len(problems)} problem(s): {listed}{more}. {hint}")


def require_sound_dataset(root: str | os.PathLike, split: str | None) -> None:
    """Raise a TerraLiteError listing every problem (with its file) unless the dataset is sound.

    One split is checked through :func:`terralite.data.registry.check_data` (a sound verdict is cached);
    ``split=None`` checks every split list, uncached.
    """
    if split is not None:
        from terralite.data.registry import DataConfig, check_data

        check_data(DataConfig(root=str(root)), split)
        return
    problems = check_dataset(root, split)
    if problems:
        raise problems_error(f"dataset {root}", problems, f"Fix or remove these files (see `terralite data check {root}`)")


# ---- large rasters -------------------------------------------------------------------------------------------

#: Pixels read at once when a large raster is checked (per strip, all bands).
_STRIP_PIXELS = 1 << 24
#: Pixels counted at once when a label's values are collected (their int64 copy: 16 MB).
_BINCOUNT_PIXELS = 1 << 21


def _strips(src):
    """Row windows covering ``src`` whose pixels (all bands) stay under ``_STRIP_PIXELS``."""
    from rasterio.windows import Window

    block = max(1, src.block_shapes[0][0]) if src.block_shapes else 1
    rows = max(1, _STRIP_PIXELS // max(1, src.width * src.count))
    rows = max(block, rows // block * block)
    for row in range(0, src.height, rows):
        yield Window(0, row, src.width, min(rows, src.height - row))


def _read_all(path: Path, problems: list[Problem], values: set | None = None) -> dict | None:
    """Header of a raster after reading it to the end in strips (``values`` collects its distinct values)."""
    try:
        with open_raster(path) as src:
            meta = {"count": src.count, "crs": src.crs, "transform": src.transform, "shape": (src.height, src.width),
                    "nodata": src.nodata, "bounds": tuple(src.bounds)}
            nonfinite = 0
            for window in _strips(src):
                pixels = read_from(src, window=window)
                if pixels.dtype.kind == "f":
                    nonfinite += int(pixels.size - np.count_nonzero(np.isfinite(pixels)))
                if values is not None and len(values) <= 1024:
                    if pixels.dtype.kind == "u" and pixels.dtype.itemsize <= 2:  # much faster than sorting
                        # bincount casts to int64 (8 bytes a pixel): count in slices so the cast stays small
                        flat = pixels.ravel()
                        for start in range(0, flat.size, _BINCOUNT_PIXELS):
                            values.update(np.flatnonzero(np.bincount(flat[start:start + _BINCOUNT_PIXELS])).tolist())
                    else:
                        values.update(np.unique(pixels).tolist())
            problems += _nonfinite_problems(path, nonfinite)
            return meta
    except TerraLiteError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _check_label_grid(label: Path, label_meta: dict, image: Path, image_meta: dict, problems: list[Problem]) -> None:
    """A label raster must be single-band and on its image's grid (size, then CRS and geotransform)."""
    if label_meta["count"] != 1:
        problems.append(Problem(label, f"label has {label_meta['count']} bands; it must be single-band"))
    if label_meta["shape"] != image_meta["shape"]:
        (lh, lw), (ih, iw) = label_meta["shape"], image_meta["shape"]
        problems.append(Problem(label, f"label is {lw}x{lh} px but its image {image.name} is {iw}x{ih} px"))
    else:
        why = _same_georeferencing(image_meta, label_meta)
        if why:
            problems.append(Problem(label, f"georeferencing differs from its image: {why}"))


def check_large_raster(image: str | os.PathLike, label: str | os.PathLike | None = None,
                       region_mask: str | os.PathLike | None = None, label_values: range | None = None) -> list[Problem]:
    """All problems of one large image raster, its label raster and its region mask; [] when sound.

    Each raster must open and read to the end (read in strips, never whole). The label must be single-band, on
    the image's grid (size, CRS, geotransform) and hold only ``label_values`` (or its nodata value). The region
    mask must be single-band, cover the image's extent (when both are georeferenced) and have a nonzero pixel.
    """
    problems: list[Problem] = []
    image = Path(image)
    image_meta = _read_all(image, problems)
    if label is not None:
        label = Path(label)
        values: set = set()
        meta = _read_all(label, problems, values)
        if meta is not None:
            if image_meta is not None:
                _check_label_grid(label, meta, image, image_meta, problems)
            elif meta["count"] != 1:
                problems.append(Problem(label, f"label has {meta['count']} bands; it must be single-band"))
            if label_values is not None:
                bad = sorted(v for v in values if v not in label_values and v != meta["nodata"])
                if bad:
                    shown = ", ".join(str(v) for v in bad[:10])
                    problems.append(Problem(label, f"label values outside {label_values.start}..{label_values.stop - 1}: "
                                                   f"{shown} (set data.class_merge to the table these values belong to)"))
    if region_mask is not None:
        region_mask = Path(region_mask)
        values = set()
        meta = _read_all(region_mask, problems, values)
        if meta is not None:
            if meta["count"] != 1:
                problems.append(Problem(region_mask, f"region mask has {meta['count']} bands; it must be single-band"))
            elif not any(v != 0 for v in values):
                problems.append(Problem(region_mask, "region mask has no nonzero pixel: nothing would be held out"))
            if image_meta is not None and meta["crs"] is not None and image_meta["crs"] is not None:
                pixel = max(abs(meta["transform"].a), abs(meta["transform"].e))
                if meta["crs"] != image_meta["crs"]:
                    problems.append(Problem(region_mask, f"CRS {meta['crs']} differs from the image's {image_meta['crs']}"))
                elif any(abs(a - b) > pixel for a, b in zip(meta["bounds"], image_meta["bounds"])):
                    problems.append(Problem(region_mask, f"bounds {meta['bounds']} do not cover the image's extent "
                                                         f"{image_meta['bounds']}"))
    return problems
