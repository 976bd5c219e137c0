"""Per-band input normalisation in raw pixel units (the ``input`` record every checkpoint carries)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from terralite.errors import TerraLiteError


def per_band(value: Sequence[float] | float, count: int, what: str = "value") -> list[float]:
    """One float per band: a scalar is repeated, a sequence must have ``count`` entries."""
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if values.size == 1:
        values = np.repeat(values, count)
    if values.shape != (count,):
        raise TerraLiteError(f"{what} has {values.size} values but the input has {count} band(s)")
    return [float(v) for v in values]


def safe_std(std: Sequence[float]) -> list[float]:
    """Replace non-positive deviations (constant bands) by 1 so that normalising never divides by zero."""
    return [float(s) if s > 0 else 1.0 for s in std]


def normalize(raw: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(raw - mean) / std`` per band for a ``(C, H, W)`` array, as float32."""
    mean_a = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_a = np.asarray(std, dtype=np.float32)[:, None, None]
    return (raw.astype(np.float32) - mean_a) / std_a


def require_finite_normalisation(record: dict, where: str) -> None:
    """Refuse statistics that are NaN or infinite (images with NaN/Inf pixels): training on them learns NaN weights."""
    values = [*record.get("mean", []), *record.get("std", [])]
    if not all(np.isfinite(values)):
        raise TerraLiteError(f"the pixel statistics of {where} are not finite (mean {record.get('mean')}, std {record.get('std')}): "
                             "its images hold NaN or infinite pixels; find them with `terralite data check` and set them to "
                             "the rasters' nodata value")
