"""Windows over one large image raster (and its label raster), read lazily — the BOLM setting.

A grid of ``window`` x ``window`` windows with a given ``stride`` covers the raster (the last row/column is
flush with the edge, so nothing is left out; a raster smaller than a window gives one padded window).
An optional region mask (a raster on the image's extent, or a boolean array, nonzero = inside) keeps the
windows whose centre — or majority of pixels — is inside (or outside, for the complementary split), which
gives spatial train/test splits. Labels pass through a class-merge table (raw value → training id; values
not in the table are ignored). Only the requested window is ever read from disk.
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
#: The longest side a region mask is read at to decide which windows it covers.
MASK_OVERVIEW = 2048


def window_offsets(length: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride`` px, plus a last window flush with the end."""
    if length <= window:
        return [0]
    offsets = list(range(0, length - window + 1, stride))
    if offsets[-1] != length - window:
        offsets.append(length - window)
    return offsets


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

    ``stride`` defaults to a quarter window (75 % overlap, the BOLM training protocol); use
    ``stride=window`` for non-overlapping test windows. ``region_mask`` is a raster path or a 2-D array
    covering the image's extent (resampled to it); ``keep="inside"``/``"outside"`` and ``mask_rule="centre"``/
    ``"majority"`` decide which windows stay. ``class_merge`` maps raw label values to training ids
    (default :data:`BOLM_MERGE`; None keeps raw values). ``mean``/``std`` are per band in raw units; when
    None they are computed from up to ``stats_windows`` evenly spread windows. Without ``label_path``
    labels are all ignore (inference).
    """

    def __init__(self, image_path: str | os.PathLike, label_path: str | os.PathLike | None = None,
                 window: int = 513, stride: int | None = None,
                 region_mask: str | os.PathLike | np.ndarray | None = None, keep: str = "inside",
                 mask_rule: str = "centre", class_merge: Mapping[int, int | None] | None = BOLM_MERGE,
                 bands: Sequence[int | str] | None = None, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None,
                 transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                 stats_windows: int = 64):
        from terralite.data.bands import band_names, resolve_bands

        if window <= 0:
            raise TerraLiteError(f"window must be positive, got {window}")
        stride = max(1, window // 4) if stride is None else int(stride)
        if stride <= 0:
            raise TerraLiteError(f"stride must be positive, got {stride}")
        if keep not in ("inside", "outside"):
            raise TerraLiteError(f"keep must be 'inside' or 'outside', got {keep!r}")
        if mask_rule not in ("centre", "majority"):
            raise TerraLiteError(f"mask_rule must be 'centre' or 'majority', got {mask_rule!r}")
        self.image_path = Path(image_path)
        self.label_path = None if label_path is None else Path(label_path)
        self.window, self.stride, self.transform = int(window), stride, transform
        with open_raster(self.image_path) as src:
            self.height, self.width = src.height, src.width
            self.band_names = band_names(src)
            grid = (src.crs, src.transform)
        if self.label_path is not None:
            with open_raster(self.label_path) as src:
                if src.count != 1:
                    raise TerraLiteError(f"label raster {self.label_path} has {src.count} bands; it must be single-band")
                if (src.height, src.width) != (self.height, self.width):
                    raise TerraLiteError(f"label raster {self.label_path} is {src.width}x{src.height} px but image "
                                         f"{self.image_path} is {self.width}x{self.height} px")
                if (src.crs, src.transform) != grid:
                    raise TerraLiteError(f"label raster {self.label_path} is not on the grid of image {self.image_path}")
        self.bands = None if bands is None else resolve_bands(bands, self.band_names)
        self.num_bands = len(self.band_names) if self.bands is None else len(self.bands)
        self._lut = merge_lut(class_merge)

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
            mean, std = self._window_stats(stats_windows)
        self.mean = per_band(mean, self.num_bands, "mean")
        self.std = safe_std(per_band(std, self.num_bands, "std"))

    def _inside(self, region_mask, windows: list[Window], rule: str) -> np.ndarray:
        """Per window: is its centre (or majority) inside the mask? The mask is judged on a small overview."""
        scale = min(1.0, MASK_OVERVIEW / max(self.height, self.width))
        shape = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
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
        sy, sx = shape[0] / self.height, shape[1] / self.width
        flags = []
        for w in windows:
            h = min(w.height, self.height - w.row_off)
            wd = min(w.width, self.width - w.col_off)
            if rule == "centre":
                cy = min(shape[0] - 1, int((w.row_off + h / 2) * sy))
                cx = min(shape[1] - 1, int((w.col_off + wd / 2) * sx))
                flags.append(bool(overview[cy, cx]))
            else:
                y0, x0 = int(w.row_off * sy), int(w.col_off * sx)
                y1, x1 = max(y0 + 1, int(np.ceil((w.row_off + h) * sy))), max(x0 + 1, int(np.ceil((w.col_off + wd) * sx)))
                flags.append(bool(overview[y0:y1, x0:x1].mean() > 0.5))
        return np.array(flags, dtype=bool)

    def _window_stats(self, count: int) -> tuple[list[float], list[float]]:
        from terralite.data.stats import StatsAccumulator

        acc = StatsAccumulator()
        picks = np.unique(np.linspace(0, len(self.windows) - 1, min(count, len(self.windows))).round().astype(int))
        with open_raster(self.image_path) as src:
            nodata = src.nodata
            for i in picks:
                w = self.windows[i]  # clipped to the raster: padding must not count
                inner = Window(w.col_off, w.row_off, min(w.width, self.width - w.col_off),
                               min(w.height, self.height - w.row_off))
                acc.add(read_from(src, bands=self.bands, window=inner), nodata=nodata, name=str(self.image_path))
        result = acc.result()["bands"]
        return result["mean"], result["std"]

    def _sources(self):
        """Raster handles opened once per process (DataLoader workers each open their own)."""
        import rasterio

        if self._handles is None or self._handles[0] != os.getpid():
            image = rasterio.open(self.image_path)
            label = rasterio.open(self.label_path) if self.label_path is not None else None
            self._handles = (os.getpid(), image, label)
        return self._handles[1], self._handles[2]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = None  # open file handles do not travel to worker processes
        return state

    def __len__(self) -> int:
        return len(self.windows)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw pixels ``(C, window, window)`` and raw label ``(window, window)`` (None without a label raster)."""
        image_src, label_src = self._sources()
        win = self.windows[index]
        image = read_from(image_src, bands=self.bands, window=win, boundless=True, fill_value=0)
        label = None
        if label_src is not None:
            # outside the raster: a value that no merge table maps, i.e. ignored
            label = read_from(label_src, window=win, boundless=True, fill_value=0)[0]
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw, label = self.read(index)
        image = torch.from_numpy(normalize(raw, self.mean, self.std))
        if label is None:
            target = np.full(raw.shape[1:], IGNORE_INDEX, dtype=np.int64)
        elif self._lut is None:
            target = label.astype(np.int64)
        else:
            values = label.astype(np.int64)
            inside = (values >= 0) & (values < self._lut.size)
            target = np.where(inside, self._lut[np.where(inside, values, 0)], IGNORE_INDEX)
        target_t = torch.from_numpy(target)
        if self.transform is not None:
            image, target_t = self.transform(image, target_t)
        return image, target_t

