"""Datasets by kind: the one way a job (training, searches, evaluation, compression, benchmarks) gets its data.

A job names its data in a :class:`DataConfig` (YAML ``data:`` mapping, ``--set data.kind=large-raster``, or
just a dataset root). :data:`DATASETS` maps a kind to its implementation (see :mod:`terralite.data.kinds`):

- ``openearthmap``: the OpenEarthMap release layout under ``root`` (split lists ``<split>.txt``; any list name
  is a split, e.g. ``train_mini``).
- ``large-raster``: windows of one large ``image`` raster (or a folder/list of Sentinel-2 band files, resampled
  onto the finest band's grid) and its ``label`` raster (the BOLM setting). The spatial split comes from
  ``region_mask`` (nonzero = held out) or ``region_box`` (a rectangle in map coordinates): ``train`` =
  ``window`` px windows with ``overlap`` that touch neither the held-out region nor any evaluation window;
  ``val`` and ``test`` = the same non-overlapping windows whose centre is inside it. Without a region every
  split reads the whole raster, so scores are not held-out (:func:`describe_data` and a warning say so).
  ``inputs`` names the model input (bands, composites, indices; :mod:`terralite.data.scene`), ``class_merge``
  the label table (``bolm`` or a mapping).

Every dataset :func:`build_dataset` returns yields ``(image float32 (C, H, W), label int64 (H, W))`` and has
``num_bands``, ``bands``, ``mean``, ``std``, ``input_record()``, ``class_names``, ``num_classes``,
``ignore_index`` and ``palette``. Sides are padded to a multiple of 32 (padding ignored).

**Cache.** The two expensive per-split passes — the normalisation statistics (per band mean/std of the valid
pixels, exactly as :mod:`terralite.data.stats` computes them) and the sound check (:func:`check_data`) — run
once and are stored as small JSON files beside the data: ``<root>/.terralite-cache/<split>-stats-<key>.json``
and ``<split>-check-<key>.json`` for OpenEarthMap, ``<image folder>/.terralite-cache/<image stem>-<split>-
{stats,windows}-<key>.json`` and ``<image stem>-check-<key>.json`` for a large raster (whose window lists are
cached too). The key hashes the files read (relative path, size, mtime) and what else the value depends on:
the band selection (large rasters; OpenEarthMap entries hold every band and are selected on reading), the
windows, the class table. Any change to a file gives a new key, so an entry is never stale. Where the
data's folder is not writable the files go to ``$XDG_CACHE_HOME/terralite/data/`` (``~/.cache/terralite/data/``);
files are written atomically and a corrupt one is ignored and rewritten (:mod:`terralite.data.cache`). Only a
sound verdict is cached: a dataset with problems is checked again on every call. Under ``torchrun`` rank 0
calls :func:`prepare_data` before a barrier, so the other ranks only read the cache.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from terralite.errors import TerraLiteError
from terralite.registry import Registry

#: Dataset kinds by name; entries are :class:`terralite.data.kinds.DatasetKind` objects.
DATASETS = Registry("dataset kind")
#: Fields that hold paths; in a data YAML file, relative ones are relative to the file's folder.
PATH_FIELDS = ("root", "image", "label", "region_mask")  # ``image`` may also be a list of paths


@dataclass
class DataConfig:
    """Which dataset a job reads; chosen in the job's config under `data:` (YAML or --set data.kind=...)."""

    kind: str = "openearthmap"       # a DATASETS name: "openearthmap" | "large-raster"
    root: str = ""                   # openearthmap: dataset root folder (train.txt/val.txt/test.txt + <region>/images|labels)
    bands: list | None = None        # input band selection (0-based indices or names); None = all bands
    skip_missing: bool = False       # openearthmap: skip listed files that do not exist
    image: str | list | None = None  # large-raster: the image raster, or Sentinel-2 band files (a folder, or a list of *_B04.tif ...)
    label: str | None = None         # large-raster: the label raster (single band)
    window: int = 513                # large-raster: window side in px
    overlap: float = 0.75            # large-raster: overlap of training windows (evaluation windows never overlap)
    region_mask: str | None = None   # large-raster: raster whose nonzero area is the held-out (val/test) region; train = outside it
    region_box: list | None = None   # large-raster: instead of region_mask, [xmin, ymin, xmax, ymax] in the image's map coordinates held out (e.g. the city centre)
    class_merge: str | dict | None = "bolm"  # large-raster: "bolm" (BOLM 11 classes -> 5 scored + Unrecognized ignored, large_raster.BOLM_MERGE), a mapping raw value -> training id (null = ignored), or None (raw ids)
    class_names: list | None = None  # large-raster: names of the training ids of a class_merge mapping (default class_<i>)
    inputs: str | list | None = None  # large-raster: model input by name: bands [B12, B11, B8], composites rgb|atm|fci|swi, indices ndvi|ndwi_gao|ndwi_mcfeeters|rvi (ndwi = Gao); None = data.bands

    def __post_init__(self) -> None:
        if isinstance(self.bands, str):  # "red,green,blue" or "0,1,2" from a command line
            self.bands = [b.strip() for b in self.bands.split(",") if b.strip()]
        elif isinstance(self.bands, tuple):
            self.bands = list(self.bands)
        for name in PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
            elif isinstance(value, tuple):
                setattr(self, name, [os.fspath(v) for v in value])
        if isinstance(self.inputs, str) and "," in self.inputs:  # "B12,B11,B8" from a command line
            self.inputs = [v.strip() for v in self.inputs.split(",") if v.strip()]
        if self.kind not in DATASETS:
            DATASETS.get(self.kind)  # raises, listing the valid kinds

    @classmethod
    def from_value(cls, value) -> "DataConfig":
        """A DataConfig from a root folder, a ``.yaml``/``.yml`` file holding a DataConfig mapping, a dict of fields,
        or a DataConfig (returned as it is). Relative paths in a YAML file are relative to the file's folder."""
        from terralite.config import from_dict, load_yaml

        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return from_dict(cls, value, prefix="data.")
        if isinstance(value, (str, os.PathLike)):
            path = Path(value)
            if path.suffix.lower() not in (".yaml", ".yml"):
                return cls(root=os.fspath(value))
            if not path.is_file():
                raise TerraLiteError(f"data file {path} does not exist; pass a dataset folder or a YAML file of data "
                                     f"fields ({', '.join(f.name for f in dataclasses.fields(cls))})")
            mapping = load_yaml(path)

            def anchored(raw):
                if isinstance(raw, list):
                    return [anchored(item) for item in raw]
                if isinstance(raw, str) and raw and not os.path.isabs(os.path.expanduser(raw)):
                    return str(path.parent / raw)
                return raw

            for name in PATH_FIELDS:
                if name in mapping:
                    mapping[name] = anchored(mapping[name])
            try:
                return from_dict(cls, mapping, prefix="data.")
            except TerraLiteError as exc:
                raise TerraLiteError(f"data file {path}: {exc}") from None
        raise TerraLiteError(f"data must be a dataset folder, a data YAML file or a mapping of data fields, got {value!r}")


def _kind(data: DataConfig):
    return DATASETS.get(data.kind)


def build_dataset(data: DataConfig, split: str, *, transform=None, input_record: dict | None = None,
                  require_labels: bool | None = None):
    """The ``split`` of ``data`` as a torch Dataset of ``(image float32 (C, H, W), label int64 (H, W))``.

    ``transform`` is a pair transform applied after normalisation. ``input_record`` (``{"bands", "mean",
    "std"}`` of a training set or a checkpoint's ``input`` entry) gives the normalisation; without it this
    split's own statistics are used (from the cache). ``require_labels`` defaults to true except for ``test``.
    """
    data = DataConfig.from_value(data)
    return _kind(data).build(data, split, transform=transform, input_record=input_record,
                             require_labels=require_labels)


def check_data(data: DataConfig, split: str) -> None:
    """Raise one TerraLiteError listing every problem of ``split`` unless it is sound; a sound verdict is cached.

    With ``skip_missing`` listed files that do not exist are allowed (they are skipped), other problems are not.
    """
    data = DataConfig.from_value(data)
    _kind(data).check(data, split)


def prepare_data(data: DataConfig, splits) -> None:
    """Check ``splits`` and compute their statistics into the cache (rank 0 calls this before a barrier)."""
    data = DataConfig.from_value(data)
    if isinstance(splits, str):
        splits = [splits]
    for split in dict.fromkeys(s for s in splits if s):
        check_data(data, split)
        build_dataset(data, split)  # computes and caches the split's statistics (and window list)


def describe_data(data: DataConfig) -> str:
    """One line for logs: kind, files and the choices that matter."""
    data = DataConfig.from_value(data)
    return _kind(data).describe(data)


# ---- for the `terralite data` commands -------------------------------------------------------------------------

def dataset_problems(data: DataConfig, split: str | None = None) -> list:
    """Every problem (:class:`terralite.data.check.Problem`) of one split, or of all (``None``); always reads the
    files. A sound result is recorded in the cache, as :func:`check_data` would."""
    data = DataConfig.from_value(data)
    return _kind(data).problems(data, split)


def dataset_summary(data: DataConfig, split: str | None = None) -> str:
    """What a split (or the whole dataset) holds, e.g. ``"24 images"``."""
    data = DataConfig.from_value(data)
    return _kind(data).summary(data, split)


def dataset_stats(data: DataConfig, split: str | None = None) -> dict:
    """Statistics in the shape of :func:`terralite.data.stats.compute_stats` (band statistics from the cache)."""
    data = DataConfig.from_value(data)
    return _kind(data).stats(data, split)


def list_kinds() -> list[str]:
    return DATASETS.names()


def _register() -> None:
    from terralite.data.kinds import LargeRasterKind, OpenEarthMapKind

    DATASETS.register("openearthmap", OpenEarthMapKind())
    DATASETS.register("large-raster", LargeRasterKind())


_register()


def splits_of(data: DataConfig) -> Iterable[str]:
    """The splits ``data`` offers (the split lists of an OpenEarthMap root; train/val/test of a large raster)."""
    data = DataConfig.from_value(data)
    return _kind(data).splits(data)
