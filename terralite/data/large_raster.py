"""Windows over one large image raster (and its label raster), read lazily — the BOLM setting.

A grid of ``window`` x ``window`` windows with a given ``stride`` covers the raster (the last row/column is
flush with the edge, so nothing is left out; a raster smaller than a window gives one padded window).
An optional region mask (a raster on the image's extent, or a boolean array, nonzero = inside) keeps the
windows whose centre — or majority of pixels — is inside (or outside, for the complementary split), which
gives spatial train/test splits. Labels pass through a class-merge table (raw value → training id; values
not in the table are ignored). Only the requested window is ever read from disk.

:func:`spatial_split_windows` gives the windows of the BOLM protocol's spatial split (overlapping training
windows that touch neither the held-out region nor any evaluation window; non-overlapping evaluation windows
whose centre is inside it); the dataset registry (:mod:`terralite.data.registry`) builds splits with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window

from terralite.data.classes import IGNORE_INDEX
from terralite.data.normalize import normalize, per_band, safe_std
from terralite.data.raster import open_raster, read_from
from terralite.errors import TerraLiteError

#: The 11 BOLM label classes, in raw label order (raw value = index + 1; 0 = no data).
BOLM_CLASSES = ("Farmland", "Water", "Forest", "Urban Structure", "Rural Built-up", "Urban Built-up",
                "Brick Factory", "Road", "Marshland", "Meadow", "Unrecognized")
#: The 5 scored classes after merging (the 6th, Unrecognized, is ignored).
BOLM_MERGED_CLASSES = ("farmland", "water", "forest", "built-up", "meadow")
#: Default 11 → 6 merge: raw BOLM value → training id. Road is not named in the published merge; it goes to
#: built-up here (an impervious built surface) — pass another table to change that. Unrecognized (11) and
#: values not in the table become the ignore index.
BOLM_MERGE: dict[int, int] = {
    1: 0,                          # Farmland
    2: 1,                          # Water
    3: 2,                          # Forest
    4: 3, 5: 3, 6: 3, 7: 3, 8: 3,  # Urban Structure, Rural/Urban Built-up, Brick Factory, Road → built-up
    9: 4, 10: 4,                   # Marshland, Meadow → meadow
}
#: RGB colour per merged training id (farmland, water, forest, built-up, meadow).
BOLM_MERGED_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0xF5, 0xDE, 0x64), (0x00, 0x45, 0xFF), (0x22, 0x61, 0x26), (0xDE, 0x1F, 0x07), (0x4B, 0xB5, 0x49))
#: Names of the raw BOLM label values 0..11 (raw ids, no merge; 0 = no data).
BOLM_RAW_CLASSES = ("no data", *BOLM_CLASSES)
#: The longest side a region mask is read at to decide which windows it covers.
MASK_OVERVIEW = 2048
SIZE_POLICIES = ("pad", "none")
#: With ``size_policy="pad"`` window sides are padded to a multiple of this (the networks' output stride).
SIZE_MULTIPLE = 32


def window_offsets(length: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride`` px, plus a last window flush with the end."""
    if length <= window:
        return [0]
    offsets = list(range(0, length - window + 1, stride))
    if offsets[-1] != length - window:
        offsets.append(length - window)
    return offsets


def tile_offsets(length: int, window: int) -> list[int]:
    """Start offsets of non-overlapping windows along one axis; the last one may reach past the end (padded)."""
    return list(range(0, max(int(length), 1), int(window)))


def stride_of(window: int, overlap: float) -> int:
    """Stride of windows of side ``window`` overlapping by the fraction ``overlap`` (0 <= overlap < 1)."""
    if not 0 <= overlap < 1:
        raise TerraLiteError(f"window overlap must be in [0, 1), got {overlap}")
    return max(1, round(window * (1 - overlap)))


def _spans(offsets: Sequence[int], window: int, length: int) -> np.ndarray:
    """(N, 2) pixel ranges [start, end) of windows along one axis, clipped to the raster."""
    starts = np.asarray(offsets, dtype=np.int64)
    return np.stack([starts, np.minimum(starts + window, length)], axis=1)


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) bool: does range a[i] intersect range b[j]? Ranges are (start, end)."""
    return (a[:, None, 0] < b[None, :, 1]) & (b[None, :, 0] < a[:, None, 1])


def _mask_cells(region_mask, cell_limit: int = MASK_OVERVIEW) -> tuple[np.ndarray, int, tuple[int, int]]:
    """``(any, cell, (mh, mw))``: per cell of ``cell`` x ``cell`` mask pixels, is any pixel nonzero?

    The mask is read at full resolution in strips of whole cells (about 16 M pixels each, never the whole
    mask), so a single nonzero pixel is never missed, whatever the mask's size.
    """
    if isinstance(region_mask, np.ndarray):
        if region_mask.ndim != 2:
            raise TerraLiteError(f"region mask must be a 2-D array, got shape {region_mask.shape}")
        return region_mask != 0, 1, region_mask.shape
    with open_raster(region_mask) as src:
        if src.count != 1:
            raise TerraLiteError(f"region mask {region_mask} has {src.count} bands; it must be single-band")
        mh, mw = src.height, src.width
        cell = max(1, -(-max(mh, mw) // cell_limit))
        rows, cols = -(-mh // cell), -(-mw // cell)
        grid = np.zeros((rows, cols), dtype=bool)
        step = max(1, (1 << 24) // max(1, mw * cell))  # cell rows per read: about 16 M pixels at a time
        for first in range(0, rows, step):
            y0, y1 = first * cell, min(mh, (first + step) * cell)
            strip = read_from(src, window=Window(0, y0, mw, y1 - y0))[0] != 0  # (y1 - y0, mw)
            n = -(-(y1 - y0) // cell)
            padded = np.zeros((n * cell, cols * cell), dtype=bool)
            padded[:y1 - y0, :mw] = strip
            # rows of each cell first (contiguous), then its columns
            grid[first:first + n] = padded.reshape(n, cell, cols * cell).any(axis=1).reshape(n, cols, cell).any(axis=2)
    return grid, cell, (mh, mw)


def _touching(region_mask, height: int, width: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(len(ys), len(xs)) bool: does the window with pixel ranges ys[i] x xs[j] touch a nonzero mask pixel?

    Conservative: a window is mapped onto the mask's pixels (the mask covers the image's extent, at any
    resolution) rounding outwards, then onto whole cells, so "not touching" is exact.
    """
    grid, cell, (mh, mw) = _mask_cells(region_mask)

    def cells(spans: np.ndarray, length: int, mask_length: int, count: int) -> np.ndarray:
        lo = np.floor(spans[:, 0] * mask_length / length).astype(np.int64)
        hi = np.ceil(spans[:, 1] * mask_length / length).astype(np.int64)
        lo, hi = np.clip(lo, 0, mask_length - 1), np.clip(np.maximum(hi, lo + 1), 1, mask_length)
        index = np.arange(count)
        return (index[None, :] >= (lo // cell)[:, None]) & (index[None, :] <= ((hi - 1) // cell)[:, None])

    # counts of touched nonzero cells as float64 products (BLAS; exact far beyond any count reached here)
    cy = cells(ys, height, mh, grid.shape[0]).astype(np.float64)  # (Y, cells_y)
    cx = cells(xs, width, mw, grid.shape[1]).astype(np.float64)  # (X, cells_x)
    return (cy @ grid.astype(np.float64) @ cx.T) > 0


def box_to_pixels(box: Sequence[float], transform, height: int, width: int) -> tuple[int, int, int, int]:
    """``(row0, col0, row1, col1)``: the pixels whose centre lies in the map-coordinate box ``[xmin, ymin, xmax, ymax]``.

    ``transform`` is the raster's affine geotransform; the result is clipped to the raster and may be empty.
    """
    if len(box) != 4:
        raise TerraLiteError(f"region box must be [xmin, ymin, xmax, ymax] in map coordinates, got {list(box)}")
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    if not (xmin < xmax and ymin < ymax):
        raise TerraLiteError(f"region box [{xmin}, {ymin}, {xmax}, {ymax}] is empty: it needs xmin < xmax and ymin < ymax")
    inverse = ~transform
    corners = [inverse * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]  # (col, row) floats
    cols, rows = [c for c, _ in corners], [r for _, r in corners]
    # pixel i (centre i + 0.5) is inside [lo, hi] when ceil(lo - 0.5) <= i <= floor(hi - 0.5)
    r0, r1 = int(np.ceil(min(rows) - 0.5)), int(np.floor(max(rows) - 0.5)) + 1
    c0, c1 = int(np.ceil(min(cols) - 0.5)), int(np.floor(max(cols) - 0.5)) + 1
    return max(0, r0), max(0, c0), min(height, max(0, r1)), min(width, max(0, c1))


def _box_centre_inside(box: tuple[int, int, int, int], windows: list[Window], height: int, width: int) -> np.ndarray:
    r0, c0, r1, c1 = box
    flags = []
    for w in windows:
        cy = w.row_off + min(w.height, height - w.row_off) / 2
        cx = w.col_off + min(w.width, width - w.col_off) / 2
        flags.append(r0 <= cy < r1 and c0 <= cx < c1)
    return np.array(flags, dtype=bool)


def spatial_split_windows(image, window: int, overlap: float,
                          region_mask: str | os.PathLike | np.ndarray | None, held_out: bool,
                          region_box: tuple[int, int, int, int] | None = None) -> list[Window]:
    """Windows of one side of a spatial split of ``image`` (a raster path, a band-file folder or list).

    ``held_out=True`` (validation/test): non-overlapping windows (the last row/column padded past the edge)
    whose centre is inside the held-out region: the nonzero pixels of ``region_mask``, or the pixel rectangle
    ``region_box`` ``(row0, col0, row1, col1)`` (see :func:`box_to_pixels`). ``held_out=False`` (training):
    windows with the given ``overlap`` that touch no held-out pixel and no held-out window, so that no training
    pixel is ever evaluated. Without a region both sides cover the whole raster (no held-out region).
    """
    from terralite.data.scene import open_scene

    with open_scene(image) as scene:
        height, width = scene.height, scene.width
    if region_mask is not None and region_box is not None:
        raise TerraLiteError("give the held-out region either as a region mask or as a box, not both")
    window = int(window)
    if window <= 0:
        raise TerraLiteError(f"window must be positive, got {window}")
    eval_x, eval_y = tile_offsets(width, window), tile_offsets(height, window)
    eval_windows = [Window(x, y, window, window) for y in eval_y for x in eval_x]
    if region_mask is not None or region_box is not None:
        inside = (_inside_mask(region_mask, eval_windows, height, width, "centre") if region_box is None
                  else _box_centre_inside(region_box, eval_windows, height, width))
        eval_windows = [w for w, flag in zip(eval_windows, inside) if flag]
        if held_out and not eval_windows:
            what = (f"the region box (pixel rows/cols {list(region_box)})" if region_box is not None else
                    f"the region mask {region_mask if not isinstance(region_mask, np.ndarray) else '(array)'}")
            raise TerraLiteError(f"no {window} px window of {image} has its centre inside {what}; "
                                 "check that the region lies on the image and is larger than about one window")
    if held_out:
        return eval_windows
    stride = stride_of(window, overlap)
    train_x, train_y = window_offsets(width, window, stride), window_offsets(height, window, stride)
    if region_mask is None and region_box is None:
        return [Window(x, y, window, window) for y in train_y for x in train_x]
    xs, ys = _spans(train_x, window, width), _spans(train_y, window, height)
    if region_box is not None:
        r0, c0, r1, c1 = region_box
        blocked = _overlaps(ys, np.array([[r0, r1]]))[:, :1] & _overlaps(xs, np.array([[c0, c1]]))[:, 0][None, :]
    else:
        blocked = _touching(region_mask, height, width, xs, ys)
    if eval_windows:
        chosen = np.zeros((len(eval_y), len(eval_x)), dtype=np.float64)  # held-out windows on their grid
        col = {x: i for i, x in enumerate(eval_x)}
        row = {y: i for i, y in enumerate(eval_y)}
        for w in eval_windows:
            chosen[row[w.row_off], col[w.col_off]] = 1
        oy = _overlaps(ys, _spans(eval_y, window, height)).astype(np.float64)
        ox = _overlaps(xs, _spans(eval_x, window, width)).astype(np.float64)
        blocked |= (oy @ chosen @ ox.T) > 0
    windows = [Window(x, y, window, window) for i, y in enumerate(train_y) for j, x in enumerate(train_x)
               if not blocked[i, j]]
    if not windows:
        raise TerraLiteError(f"every training window of {image} touches the held-out region; "
                             "the region must leave room outside it for training")
    return windows


def _inside_mask(region_mask, windows: list[Window], height: int, width: int, rule: str) -> np.ndarray:
    """Per window: is its centre (or majority) inside the mask? The mask is judged on a small overview."""
    scale = min(1.0, MASK_OVERVIEW / max(height, width))
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    if isinstance(region_mask, np.ndarray):
        if region_mask.ndim != 2:
            raise TerraLiteError(f"region mask must be a 2-D array, got shape {region_mask.shape}")
        rows = (np.arange(shape[0]) * region_mask.shape[0] // shape[0])
        cols = (np.arange(shape[1]) * region_mask.shape[1] // shape[1])
        overview = region_mask[rows][:, cols] != 0
    else:
        with open_raster(region_mask) as src:
            if src.count != 1:
                raise TerraLiteError(f"region mask {region_mask} has {src.count} bands; it must be single-band")
            overview = read_from(src, out_shape=(1, *shape), resampling=Resampling.nearest)[0] != 0
    sy, sx = shape[0] / height, shape[1] / width
    flags = []
    for w in windows:
        h = min(w.height, height - w.row_off)
        wd = min(w.width, width - w.col_off)
        if rule == "centre":
            cy = min(shape[0] - 1, int((w.row_off + h / 2) * sy))
            cx = min(shape[1] - 1, int((w.col_off + wd / 2) * sx))
            flags.append(bool(overview[cy, cx]))
        else:
            y0, x0 = int(w.row_off * sy), int(w.col_off * sx)
            y1, x1 = max(y0 + 1, int(np.ceil((w.row_off + h) * sy))), max(x0 + 1, int(np.ceil((w.col_off + wd) * sx)))
            flags.append(bool(overview[y0:y1, x0:x1].mean() > 0.5))
    return np.array(flags, dtype=bool)


def merge_lut(class_merge: Mapping[int, int | None] | None) -> np.ndarray | None:
    """Lookup table raw label → training id (65536 entries, unlisted → ignore); None for no merging."""
    if class_merge is None:
        return None
    lut = np.full(65536, IGNORE_INDEX, dtype=np.int64)
    for raw, target in class_merge.items():
        if not 0 <= int(raw) < 65536:
            raise TerraLiteError(f"class-merge key {raw} is not a valid label value (0..65535)")
        lut[int(raw)] = IGNORE_INDEX if target is None else int(target)
    return lut


class LargeRasterDataset(torch.utils.data.Dataset):
    """``(image float32 (C, window, window), label int64 (window, window))`` windows of one large raster.

    ``image_path`` is a raster, or Sentinel-2 band files (a folder or a list) read on the finest band's grid;
    ``inputs`` names what the model sees (bands, composites, indices: :mod:`terralite.data.scene`) instead of
    a raw ``bands`` selection. Pixels that are nodata in the image (or the label raster) are ignored.

    ``stride`` defaults to a quarter window (75 % overlap, the BOLM training protocol); use
    ``stride=window`` for non-overlapping test windows. ``region_mask`` is a raster path or a 2-D array
    covering the image's extent (resampled to it); ``keep="inside"``/``"outside"`` and ``mask_rule="centre"``/
    ``"majority"`` decide which windows stay. ``windows`` (rasterio Windows of side ``window``) replaces that
    grid and mask selection, e.g. with :func:`spatial_split_windows`. ``class_merge`` maps raw label values to
    training ids (default :data:`BOLM_MERGE`; None keeps raw values). Pixels outside the raster (windows past
    its edge) are always ignored. ``mean``/``std`` are per band in raw units; when None they are computed from
    up to ``stats_windows`` evenly spread windows (by ``stats_fn(dataset)`` when given, e.g. a cached version
    of :meth:`window_stats`). Without ``label_path`` labels are all ignore (inference). ``size_policy="pad"``
    pads both sides to a multiple of 32 after ``transform`` (padding ignored); ``"none"`` leaves them.

    Classes are attributes: ``class_names``, ``num_classes``, ``ignore_index``, ``palette`` (RGB per training
    id); they follow ``class_merge`` (the 5 merged BOLM classes, the 12 raw BOLM values, or ``class_<i>`` for
    another table) unless ``class_names``/``palette`` are given.
    """

    def __init__(self, image_path: str | os.PathLike, label_path: str | os.PathLike | None = None,
                 window: int = 513, stride: int | None = None,
                 region_mask: str | os.PathLike | np.ndarray | None = None, keep: str = "inside",
                 mask_rule: str = "centre", class_merge: Mapping[int, int | None] | None = BOLM_MERGE,
                 bands: Sequence[int | str] | None = None, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None,
                 transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                 stats_windows: int = 64, windows: Sequence[Window] | None = None, size_policy: str = "none",
                 stats_fn: Callable[["LargeRasterDataset"], tuple[list[float], list[float]]] | None = None,
                 inputs: Sequence[str] | str | None = None,
                 class_names: Sequence[str] | None = None, palette: Sequence[tuple[int, int, int]] | None = None):
        from terralite.data.classes import default_palette
        from terralite.data.scene import open_scene, scene_files

        if window <= 0:
            raise TerraLiteError(f"window must be positive, got {window}")
        stride = max(1, window // 4) if stride is None else int(stride)
        if stride <= 0:
            raise TerraLiteError(f"stride must be positive, got {stride}")
        if keep not in ("inside", "outside"):
            raise TerraLiteError(f"keep must be 'inside' or 'outside', got {keep!r}")
        if mask_rule not in ("centre", "majority"):
            raise TerraLiteError(f"mask_rule must be 'centre' or 'majority', got {mask_rule!r}")
        if size_policy not in SIZE_POLICIES:
            raise TerraLiteError(f"size_policy must be one of {', '.join(SIZE_POLICIES)}, got {size_policy!r}")
        self.image = list(map(str, image_path)) if isinstance(image_path, (list, tuple)) else image_path
        # a name for messages and window names: the raster, or the folder of the band files
        self.image_path = scene_files(self.image)[0].parent if isinstance(self.image, list) else Path(image_path)
        self.label_path = None if label_path is None else Path(label_path)
        self.window, self.stride, self.transform, self.size_policy = int(window), stride, transform, size_policy
        self.stats_windows = int(stats_windows)
        with open_scene(self.image, inputs=inputs, bands=bands) as scene:
            self.height, self.width = scene.height, scene.width
            self.band_names = scene.band_names
            self.bands, self.inputs = scene.bands, scene.inputs
            self.num_bands = scene.num_channels
            grid = (scene.crs, scene.transform)
        self.crs, self.geotransform = grid
        self.label_nodata = None
        if self.label_path is not None:
            with open_raster(self.label_path) as src:
                self.label_nodata = src.nodata
                if src.count != 1:
                    raise TerraLiteError(f"label raster {self.label_path} has {src.count} bands; it must be single-band")
                if (src.height, src.width) != (self.height, self.width):
                    raise TerraLiteError(f"label raster {self.label_path} is {src.width}x{src.height} px but image "
                                         f"{self.image_path} is {self.width}x{self.height} px")
                if (src.crs, src.transform) != grid:
                    raise TerraLiteError(f"label raster {self.label_path} is not on the grid of image {self.image_path}")
        self._lut = merge_lut(class_merge)
        self.ignore_index = IGNORE_INDEX
        if class_names is None:
            class_names = _class_names_of(class_merge)
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.palette: tuple[tuple[int, int, int], ...] = tuple(
            tuple(c) for c in (palette if palette is not None else
                               BOLM_MERGED_PALETTE if self.class_names == BOLM_MERGED_CLASSES else
                               default_palette(self.num_classes)))

        if windows is not None:
            windows = [Window(int(w.col_off), int(w.row_off), self.window, self.window) for w in windows]
            region_mask = None
        else:
            windows = [Window(x, y, self.window, self.window)
                       for y in window_offsets(self.height, self.window, self.stride)
                       for x in window_offsets(self.width, self.window, self.stride)]
        if region_mask is not None:
            inside = self._inside(region_mask, windows, mask_rule)
            windows = [w for w, flag in zip(windows, inside) if flag == (keep == "inside")]
        if not windows:
            raise TerraLiteError(f"no windows of {self.image_path} are {keep} the region mask")
        self.windows: list[Window] = windows
        self._handles: tuple[int, object, object] | None = None

        if mean is None or std is None:
            mean, std = stats_fn(self) if stats_fn is not None else self.window_stats()
        self.mean = per_band(mean, self.num_bands, "mean")
        self.std = safe_std(per_band(std, self.num_bands, "std"))

    def _inside(self, region_mask, windows: list[Window], rule: str) -> np.ndarray:
        return _inside_mask(region_mask, windows, self.height, self.width, rule)

    @property
    def names(self) -> list[str]:
        """One name per window: ``<image stem>_r<row offset>_c<column offset>``."""
        stem = self.image_path.stem
        return [f"{stem}_r{w.row_off}_c{w.col_off}" for w in self.windows]

    def input_record(self) -> dict:
        """The normalisation and band selection for the checkpoint's ``input`` entry."""
        record = {"bands": self.bands, "mean": self.mean, "std": self.std}
        if self.inputs is not None:
            record["inputs"] = list(self.inputs)
        return record

    def stats_picks(self) -> np.ndarray:
        """Indices of the (up to ``stats_windows``) evenly spread windows the statistics are computed from."""
        count = self.stats_windows
        return np.unique(np.linspace(0, len(self.windows) - 1, min(count, len(self.windows))).round().astype(int))

    def window_stats(self) -> tuple[list[float], list[float]]:
        """Per selected band mean and std (raw units) of the valid pixels of the :meth:`stats_picks` windows."""
        from terralite.data.stats import StatsAccumulator

        from terralite.data.scene import open_scene

        acc = StatsAccumulator()
        with open_scene(self.image, inputs=self.inputs, bands=self.bands) as scene:
            for i in self.stats_picks():
                w = self.windows[i]  # clipped to the raster: padding must not count
                inner = Window(w.col_off, w.row_off, min(w.width, self.width - w.col_off),
                               min(w.height, self.height - w.row_off))
                pixels, valid = scene.read(inner)
                acc.add(pixels[:, valid][:, None, :], name=str(self.image_path))  # (C, 1, valid pixels)
        result = acc.result()["bands"]
        return result["mean"], result["std"]

    def _sources(self):
        """Raster handles opened once per process (DataLoader workers each open their own)."""
        import rasterio

        from terralite.data.scene import open_scene

        if self._handles is None or self._handles[0] != os.getpid():
            image = open_scene(self.image, inputs=self.inputs, bands=self.bands)
            label = rasterio.open(self.label_path) if self.label_path is not None else None
            self._handles = (os.getpid(), image, label)
        return self._handles[1], self._handles[2]

    def close(self) -> None:
        """Close the open raster handles (they reopen on the next read)."""
        if self._handles is not None:
            self._handles[1].close()
            if self._handles[2] is not None:
                self._handles[2].close()
            self._handles = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = None  # open file handles do not travel to worker processes
        return state

    def __len__(self) -> int:
        return len(self.windows)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Input pixels float32 ``(C, window, window)`` (raw units, or the derived inputs), raw label
        ``(window, window)`` (None without a label raster) and the image's validity ``(window, window)``."""
        scene, label_src = self._sources()
        win = self.windows[index]
        image, valid = scene.read(win)
        label = None
        if label_src is not None:
            # outside the raster: a value that no merge table maps, i.e. ignored
            label = read_from(label_src, window=win, boundless=True, fill_value=0)[0]
        return image, label, valid

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw, label, valid = self.read(index)
        pixels = normalize(raw, self.mean, self.std)
        pixels[:, ~valid] = 0  # nodata reads as the mean
        image = torch.from_numpy(pixels)
        if label is None:
            target = np.full(raw.shape[1:], IGNORE_INDEX, dtype=np.int64)
        elif self._lut is None:
            target = label.astype(np.int64)
        else:
            values = label.astype(np.int64)
            inside = (values >= 0) & (values < self._lut.size)
            target = np.where(inside, self._lut[np.where(inside, values, 0)], IGNORE_INDEX)
        if label is not None and self.label_nodata is not None:
            target[label == self.label_nodata] = IGNORE_INDEX
        target[~valid] = IGNORE_INDEX  # no image data: nothing to learn or score
        win = self.windows[index]
        target[max(0, self.height - win.row_off):, :] = IGNORE_INDEX  # past the raster's edge: padding
        target[:, max(0, self.width - win.col_off):] = IGNORE_INDEX
        target_t = torch.from_numpy(target)
        if self.transform is not None:
            image, target_t = self.transform(image, target_t)
        if self.size_policy == "pad":
            from terralite.data.transforms import pad_to_multiple

            image, target_t = pad_to_multiple(image, target_t, SIZE_MULTIPLE)
        return image, target_t


def _class_names_of(class_merge: Mapping[int, int | None] | None) -> tuple[str, ...]:
    """Class names that go with a merge table: BOLM's merged or raw names, else ``class_<i>``."""
    if class_merge is None:
        return BOLM_RAW_CLASSES
    if dict(class_merge) == BOLM_MERGE:
        return BOLM_MERGED_CLASSES
    ids = [int(v) for v in class_merge.values() if v is not None]
    return tuple(f"class_{i}" for i in range(max(ids) + 1 if ids else 0))

