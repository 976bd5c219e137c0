"""The OpenEarthMap release layout and its PyTorch dataset.

Layout: ``<root>/<region>/images/<region>_<n>.tif`` and ``<root>/<region>/labels/<region>_<n>.tif``, with
split lists ``<root>/{train,val,test}.txt`` holding bare file names, one per line (the last line may lack
a newline). Labels are required for every split except ``test`` (whose labels the public release lacks):
a test image without a label yields an all-ignore label.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from terralite.data.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES, TRAIN_PALETTE, label_to_train_id
from terralite.data.normalize import normalize, per_band, safe_std
from terralite.data.raster import open_raster, read_from, read_label
from terralite.data.transforms import pad_to_multiple, resize_to_multiple
from terralite.errors import TerraLiteError

SPLITS = ("train", "val", "test")
SIZE_POLICIES = ("pad", "resize", "none")
#: Sides of every sample are made divisible by this (the networks' output stride).
SIZE_MULTIPLE = 32

Sample = tuple[Path, "Path | None"]


def region_of(name: str) -> str:
    """Region of a tile name: ``"aachen_12.tif"`` → ``"aachen"`` (region names may contain underscores)."""
    stem = Path(name).stem
    region, sep, index = stem.rpartition("_")
    if not sep or not region:
        raise TerraLiteError(f"tile name {name!r} does not look like <region>_<n>.tif")
    return region


def split_list_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}.txt"


def read_split_list(root: str | os.PathLike, split: str) -> list[str]:
    """File names listed in ``<root>/<split>.txt`` (blank lines ignored; ``.tif`` added when absent)."""
    root = Path(root)
    if not root.is_dir():
        raise TerraLiteError(f"dataset folder {root} does not exist")
    path = split_list_path(root, split)
    if not path.is_file():
        found = sorted(p.stem for p in root.glob("*.txt"))
        hint = f"split lists found: {', '.join(found)}" if found else "no split lists (*.txt) found there"
        raise TerraLiteError(f"split list {path} does not exist ({hint})")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise TerraLiteError(f"split list {path} is not UTF-8 text; it must list one image file name per line") from None
    names: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if name:
            name = name if name.lower().endswith((".tif", ".tiff")) else f"{name}.tif"
            if name in first_line:  # a repeated tile would be trained on (and counted) twice
                raise TerraLiteError(f"split list {path} lists {name} twice (lines {first_line[name]} and {number}); "
                                     "remove the repeat")
            first_line[name] = number
            names.append(name)
    return names


def list_names(root: str | os.PathLike, split: str | None = None) -> list[str]:
    """Names of one split, or (``split=None``) of every split list at the root, without repeats.

    Without any split list, every ``<region>/images/*.tif`` is listed.
    """
    root = Path(root)
    if split is not None:
        return read_split_list(root, split)
    if not root.is_dir():
        raise TerraLiteError(f"dataset folder {root} does not exist")
    lists = sorted(root.glob("*.txt"))
    if not lists:
        return sorted(p.name for p in root.glob("*/images/*.tif"))
    names: dict[str, None] = {}
    for path in lists:
        names.update(dict.fromkeys(read_split_list(root, path.stem)))
    return list(names)


def sample_paths(root: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """(image path, label path) of a tile name in the release layout."""
    region = region_of(name)
    return Path(root) / region / "images" / name, Path(root) / region / "labels" / name


def labels_required(split: str | None) -> bool:
    """Labels are required except for the test split, whose labels the public release does not include."""
    return split != "test"


def list_samples(root: str | os.PathLike, split: str | None, skip_missing: bool = False,
                 require_labels: bool | None = None) -> tuple[list[Sample], list[Path]]:
    """Resolve a split into ``(samples, missing)``.

    ``samples`` are ``(image_path, label_path or None)``; ``missing`` the listed files that do not exist.
    Missing files raise a TerraLiteError naming them unless ``skip_missing`` is true. ``require_labels``
    defaults to :func:`labels_required`; when false, a missing label gives ``label_path=None``.
    """
    root = Path(root)
    if require_labels is None:
        require_labels = labels_required(split)
    samples: list[Sample] = []
    missing: list[Path] = []
    for name in list_names(root, split):
        image_path, label_path = sample_paths(root, name)
        absent = [p for p in (image_path, label_path) if not p.is_file() and (p is image_path or require_labels)]
        if absent:
            missing.extend(absent)
            continue
        samples.append((image_path, label_path if label_path.is_file() else None))
    if missing and not skip_missing:
        where = split_list_path(root, split) if split else root
        shown = ", ".join(str(p) for p in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise TerraLiteError(
            f"{len(missing)} file(s) listed in {where} are missing: {shown}. Add them (xBD-derived OpenEarthMap "
            "regions must be compiled by the user) or skip them with skip_missing=True (--skip-missing)")
    return samples, missing


class OpenEarthMapDataset(torch.utils.data.Dataset):
    """Tiles of one split as ``(image float32 (C, H, W) normalised, label int64 (H, W))``.

    Labels 1..8 become 0..7 and 0 (unknown) becomes :data:`~terralite.data.classes.IGNORE_INDEX`.
    ``bands`` selects input bands (0-based indices or names, see :mod:`terralite.data.bands`); ``mean``/``std``
    are per selected band in raw pixel units (a scalar applies to every band); when either is None both are
    computed from this split's valid pixels. ``transform`` is a pair transform applied after normalisation;
    then ``size_policy`` makes both sides multiples of 32: ``"pad"`` (bottom/right; padded labels are
    ignored), ``"resize"`` (image bilinear, label nearest) or ``"none"``. Listed files that do not exist raise
    a TerraLiteError naming them, or with ``skip_missing=True`` are skipped, listed in ``.missing`` and
    reported with a warning. ``require_labels`` defaults to true except for the ``test`` split (see
    :func:`labels_required`); an image without a label gets an all-ignore label. ``stats_fn(samples)`` computes
    the statistics when ``mean``/``std`` are not given (default :func:`~terralite.data.stats.stats_of_samples`;
    the dataset registry passes a cached one).

    Classes are attributes (``class_names``, ``num_classes``, ``ignore_index``, ``palette``: RGB per training id).

    Validation and test sets must be normalised like the training set: pass it ``bands``/``mean``/``std``
    from the training set's :meth:`input_record` (or the checkpoint's ``input`` entry).
    """

    class_names: tuple[str, ...] = CLASS_NAMES
    num_classes: int = NUM_CLASSES
    ignore_index: int = IGNORE_INDEX
    palette: tuple[tuple[int, int, int], ...] = TRAIN_PALETTE

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                 skip_missing: bool = False, size_policy: str = "pad", bands: Sequence[int | str] | None = None,
                 mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                 require_labels: bool | None = None, stats_fn: Callable[[list[Sample]], dict] | None = None):
        from terralite.data.bands import band_names, resolve_bands

        if size_policy not in SIZE_POLICIES:
            raise TerraLiteError(f"size_policy must be one of {', '.join(SIZE_POLICIES)}, got {size_policy!r}")
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.size_policy = size_policy
        self.samples, self.missing = list_samples(self.root, split, skip_missing, require_labels)
        if self.missing:
            warnings.warn(f"skipped {len(self.missing)} missing file(s) of {split_list_path(self.root, split)}: "
                          + ", ".join(str(p) for p in self.missing[:10]), stacklevel=2)
        if not self.samples:
            raise TerraLiteError(f"split {split!r} of {self.root} has no images to read")
        with open_raster(self.samples[0][0]) as src:
            self.band_names = band_names(src)
        self.bands: list[int] | None = None if bands is None else resolve_bands(bands, self.band_names)
        self.num_bands = len(self.band_names) if self.bands is None else len(self.bands)
        if mean is None or std is None:
            from terralite.data import stats as stats_module

            stats = (stats_fn or stats_module.stats_of_samples)(self.samples)
            select_bands = stats_module.select_bands
            mean = select_bands(stats["bands"]["mean"], self.bands)
            std = select_bands(stats["bands"]["std"], self.bands)
        self.mean = per_band(mean, self.num_bands, "mean")
        self.std = safe_std(per_band(std, self.num_bands, "std"))  # a constant band stays centred, unscaled

    @property
    def names(self) -> list[str]:
        return [image.name for image, _ in self.samples]

    def input_record(self) -> dict:
        """The normalisation and band selection for the checkpoint's ``input`` entry."""
        return {"bands": self.bands, "mean": self.mean, "std": self.std}

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw pixels ``(C, H, W)`` of the selected bands and raw label ``(H, W)`` (0 when there is none)."""
        image_path, label_path = self.samples[index]
        with open_raster(image_path) as src:
            if src.count != len(self.band_names):
                raise TerraLiteError(f"image {image_path} has {src.count} bands but {self.samples[0][0]} has "
                                     f"{len(self.band_names)}; all images must have the same band count")
            image = read_from(src, bands=self.bands)
        if label_path is None:
            label = np.zeros(image.shape[1:], dtype=np.uint8)
        else:
            label = read_label(label_path)
            if label.shape != image.shape[1:]:
                raise TerraLiteError(f"label {label_path} is {label.shape[1]}x{label.shape[0]} px but its image "
                                     f"is {image.shape[2]}x{image.shape[1]} px")
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw, label = self.read(index)
        image_t = torch.from_numpy(normalize(raw, self.mean, self.std))
        label_t = torch.from_numpy(label_to_train_id(label))
        if self.transform is not None:
            image_t, label_t = self.transform(image_t, label_t)
        if self.size_policy == "pad":
            image_t, label_t = pad_to_multiple(image_t, label_t, SIZE_MULTIPLE)
        elif self.size_policy == "resize":
            image_t, label_t = resize_to_multiple(image_t, label_t, SIZE_MULTIPLE)
        return image_t, label_t
