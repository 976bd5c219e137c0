"""Dataset statistics: per-band mean/std over valid pixels and pixel counts per class, one image at a time.

Valid pixels are those not labelled 0 (unknown/no-data) when a label exists, and not equal to the image's
nodata value in every band when the raster declares one. Means and variances are merged per image with
Chan's parallel formula (numerically stable, never the whole dataset in memory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from terralite.data.classes import LABEL_NAMES
from terralite.data.raster import open_raster, read_from, read_label
from terralite.errors import TerraLiteError


class StatsAccumulator:
    """Running per-band mean/variance and raw-label histogram over images added one at a time."""

    def __init__(self) -> None:
        self.num_images = 0
        self.count = 0
        self.mean: np.ndarray | None = None  # (C,) float64
        self.m2: np.ndarray | None = None  # (C,) sum of squared deviations
        self.label_counts = np.zeros(256, dtype=np.int64)

    def add(self, image: np.ndarray, label: np.ndarray | None = None, nodata: float | None = None,
            name: str = "image") -> None:
        """Add one image ``(C, H, W)`` and optionally its raw label ``(H, W)``."""
        channels = image.shape[0]
        if self.mean is not None and channels != self.mean.shape[0]:
            raise TerraLiteError(f"{name} has {channels} bands but earlier images have {self.mean.shape[0]}; "
                                 "all images of a dataset must have the same band count (run `terralite data check`)")
        valid = np.ones(image.shape[1:], dtype=bool)
        if label is not None:
            self.label_counts += np.bincount(label.ravel().astype(np.int64), minlength=256)[:256]
            valid &= label != 0
        if nodata is not None:
            valid &= ~np.all(image == nodata, axis=0)
        n = int(valid.sum())
        self.num_images += 1
        if self.mean is None:
            self.mean = np.zeros(channels)
            self.m2 = np.zeros(channels)
        if n == 0:
            return
        pixels = image[:, valid].astype(np.float64)  # (C, n)
        mean_b = pixels.mean(axis=1)
        m2_b = ((pixels - mean_b[:, None]) ** 2).sum(axis=1)
        total = self.count + n
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n / total)
        self.count = total

    def result(self) -> dict:
        """``{"num_images", "bands": {"mean", "std"}, "class_pixels": {name: count}}``."""
        mean = self.mean if self.mean is not None else np.zeros(0)
        std = np.sqrt(self.m2 / self.count) if self.count else np.zeros_like(mean)
        return {
            "num_images": self.num_images,
            "bands": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
            "class_pixels": {name: int(self.label_counts[value]) for value, name in enumerate(LABEL_NAMES)},
        }


def stats_of_samples(samples: Iterable[tuple[os.PathLike, os.PathLike | None]]) -> dict:
    """Statistics of ``(image_path, label_path_or_None)`` pairs (the JSON shape of :func:`compute_stats`)."""
    acc = StatsAccumulator()
    for image_path, label_path in samples:
        with open_raster(image_path) as src:
            image = read_from(src)
            nodata = src.nodata
        label = read_label(label_path) if label_path is not None else None
        if label is not None and label.shape != image.shape[1:]:
            raise TerraLiteError(f"label {label_path} is {label.shape[1]}x{label.shape[0]} px but image {image_path} "
                                 f"is {image.shape[2]}x{image.shape[1]} px")
        acc.add(image, label, nodata=nodata, name=str(image_path))
    return acc.result()


def compute_stats(root: str | os.PathLike, split: str | None = None, skip_missing: bool = False) -> dict:
    """Statistics of an OpenEarthMap-layout dataset (one split, or every listed image when ``split`` is None).

    Returns ``{"num_images": N, "bands": {"mean": [...], "std": [...]}, "class_pixels": {"unknown": n,
    "bareland": n, ...}}``; images without a label file contribute to the band statistics only. Listed
    images that do not exist raise a TerraLiteError naming them, or are left out with ``skip_missing``.
    """
    from terralite.data.openearthmap import list_samples

    samples, _ = list_samples(Path(root), split, skip_missing=skip_missing, require_labels=False)
    return stats_of_samples(samples)


def format_stats(stats: dict) -> str:
    """Human-readable table of a :func:`compute_stats` result."""
    bands = stats["bands"]
    lines = [f"images: {stats['num_images']}", ""]
    if "names" in bands:  # large rasters: the model's input channels by name, with their range
        lines.append(f"{'band':>6} {'name':>12} {'mean':>10} {'std':>10} {'min':>10} {'max':>10}")
        for i, row in enumerate(zip(bands["names"], bands["mean"], bands["std"], bands["min"], bands["max"])):
            lines.append(f"{i:>6} {row[0]:>12} {row[1]:>10.3f} {row[2]:>10.3f} {row[3]:>10.3f} {row[4]:>10.3f}")
    else:
        lines.append(f"{'band':>6} {'mean':>10} {'std':>10}")
        for i, (m, s) in enumerate(zip(bands["mean"], bands["std"])):
            lines.append(f"{i:>6} {m:>10.3f} {s:>10.3f}")
    total = sum(stats["class_pixels"].values())
    lines += ["", f"{'class':<18} {'pixels':>12} {'share':>7}"]
    for name, n in stats["class_pixels"].items():
        share = 100.0 * n / total if total else 0.0
        lines.append(f"{name:<18} {n:>12} {share:>6.2f}%")
    return "\n".join(lines)


def select_bands(values: Sequence[float], bands: Sequence[int] | None) -> list[float]:
    """Pick the entries of a per-band list for the selected 0-based band indices (None = all)."""
    return [float(v) for v in values] if bands is None else [float(values[b]) for b in bands]
