"""The dataset kinds of :data:`terralite.data.registry.DATASETS`: OpenEarthMap folders and large rasters.

A kind turns a :class:`~terralite.data.registry.DataConfig` into datasets, checks and statistics, using the cache
of :mod:`terralite.data.cache` for the passes that read every pixel. Heavy modules (torch, rasterio) are
imported where they are used, so that importing the registry stays cheap.
"""

from __future__ import annotations

import abc

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terralite.data.cache import DataCache, file_state, fingerprint, relative
from terralite.errors import TerraLiteError

if TYPE_CHECKING:
    from terralite.data.check import Problem
    from terralite.data.registry import DataConfig

#: Bumped when what an entry holds changes, so that older entries are not read.
STATS_VERSION = 1
CHECK_VERSION = 1
WINDOWS_VERSION = 1


class DatasetKind(abc.ABC):
    """One kind of dataset (registered in :data:`~terralite.data.registry.DATASETS`)."""

    name = ""

    @abc.abstractmethod
    def build(self, data: DataConfig, split: str, *, transform, input_record, require_labels):
        """The dataset of ``split`` (see :func:`terralite.data.registry.build_dataset`)."""

    @abc.abstractmethod
    def check(self, data: DataConfig, split: str) -> None:
        """Raise one TerraLiteError listing every problem of ``split``; a sound verdict is cached."""

    @abc.abstractmethod
    def problems(self, data: DataConfig, split: str | None) -> list[Problem]:
        """Every problem of ``split`` (None: all splits), reading every file."""

    @abc.abstractmethod
    def summary(self, data: DataConfig, split: str | None) -> str:
        """A short count of what ``split`` holds, e.g. ``"24 images"``."""

    @abc.abstractmethod
    def stats(self, data: DataConfig, split: str | None) -> dict:
        """Per-band statistics and class pixel counts (the layout of :func:`terralite.data.stats.compute_stats`)."""

    @abc.abstractmethod
    def splits(self, data: DataConfig) -> list[str]:
        """The split names this dataset has."""

    @abc.abstractmethod
    def describe(self, data: DataConfig) -> str:
        """One line for logs."""


def _normalisation(data: DataConfig, input_record: dict | None) -> tuple[Any, Any, Any]:
    """``(bands, mean, std)`` to build with: the record's when given (mean/std None = from the cache)."""
    if input_record is None:
        return data.bands, None, None
    bands = input_record.get("bands", data.bands)
    mean, std = input_record.get("mean"), input_record.get("std")
    if mean is None or std is None:
        mean = std = None
    return bands, mean, std


def _inputs(data: DataConfig, input_record: dict | None) -> list[str] | None:
    """The named inputs to build with: the record's (a checkpoint's) when it has them, else ``data.inputs``.

    A ``data.inputs`` that differs from the record's is an error: the model was trained on other inputs.
    """
    from terralite.data.scene import parse_inputs

    wanted = parse_inputs(data.inputs)
    if wanted is not None and data.bands is not None:
        raise TerraLiteError("set either data.inputs (bands, composites, indices by name) or data.bands (a raw band "
                             "selection), not both")
    if input_record is None or "inputs" not in input_record and "bands" not in input_record:
        return wanted
    used = parse_inputs(input_record.get("inputs"))
    if wanted is not None and [w.lower() for w in wanted] != [u.lower() for u in used or []]:
        raise TerraLiteError(f"data.inputs {wanted} differ from the inputs the model was trained on ({used or 'raw bands'}); "
                             f"drop data.inputs or set it to {used}")
    return used


def _check_bands_agree(data: DataConfig, dataset, input_record: dict | None, where: str) -> None:
    """``data.bands`` must select what the input record (checkpoint, training set) selected."""
    if input_record is None or data.bands is None or "bands" not in input_record:
        return
    from terralite.data.bands import resolve_bands

    wanted = resolve_bands(data.bands, dataset.band_names)
    used = list(range(len(dataset.band_names))) if dataset.bands is None else list(dataset.bands)
    if wanted != used:
        raise TerraLiteError(f"data.bands {data.bands} select bands {wanted} of {where}, but the model's input record "
                             f"uses bands {used}; drop data.bands or set it to {used}")


def _stats_entry_ok(value: Any) -> bool:
    try:
        return (isinstance(value, dict) and len(value["bands"]["mean"]) == len(value["bands"]["std"])
                and all(isinstance(v, float) for v in value["bands"]["mean"] + value["bands"]["std"]))
    except (KeyError, TypeError):
        return False


# ---- OpenEarthMap ----------------------------------------------------------------------------------------------

class OpenEarthMapKind(DatasetKind):
    """The OpenEarthMap release layout under ``data.root``."""

    name = "openearthmap"

    @staticmethod
    def _root(data: DataConfig) -> Path:
        if not data.root:
            raise TerraLiteError("data.root is not set: give the OpenEarthMap dataset folder (it holds train.txt, val.txt, "
                                 "test.txt and <region>/images|labels), e.g. --data PATH or --set data.root=PATH")
        return Path(data.root)

    # -- statistics
    @staticmethod
    def sample_stats(root: Path, split: str | None, samples: list) -> dict:
        """:func:`~terralite.data.stats.stats_of_samples` of ``samples``, cached under ``root``.

        The entry holds every band (selection happens afterwards, as the dataset does), so it is keyed by the
        samples alone: their relative paths, sizes and modification times.
        """
        from terralite.data import stats as stats_module

        entries = [[relative(image, root), file_state(image), None if label is None else relative(label, root),
                    file_state(label)] for image, label in samples]
        key = fingerprint({"what": "oem-stats", "version": STATS_VERSION, "samples": entries})
        cache, name = DataCache(root), f"{split or 'all'}-stats"
        value = cache.load(name, key)
        if _stats_entry_ok(value):
            return value
        value = stats_module.stats_of_samples(samples)
        cache.store(name, key, value)
        return value

    def build(self, data, split, *, transform=None, input_record=None, require_labels=None):
        from terralite.data.openearthmap import OpenEarthMapDataset

        root = self._root(data)
        if data.inputs is not None:
            raise TerraLiteError(f"data.inputs {data.inputs} is for large-raster datasets (Sentinel-2 bands, composites, "
                                 "indices); an OpenEarthMap dataset selects bands with data.bands")
        bands, mean, std = _normalisation(data, input_record)
        dataset = OpenEarthMapDataset(root, split, transform=transform, skip_missing=data.skip_missing, bands=bands,
                                      mean=mean, std=std, require_labels=require_labels,
                                      stats_fn=lambda samples: self.sample_stats(root, split, samples))
        _check_bands_agree(data, dataset, input_record, f"{root}")
        return dataset

    # -- soundness
    @staticmethod
    def _check_key(root: Path, split: str) -> str:
        from terralite.data.openearthmap import list_names, sample_paths

        entries = []
        for name in list_names(root, split):
            image, label = sample_paths(root, name)
            entries.append([name, file_state(image), file_state(label)])
        return fingerprint({"what": "oem-check", "version": CHECK_VERSION, "split": split, "entries": entries})

    @staticmethod
    def _raise(root: Path, split: str, problems: list, skip_missing: bool) -> None:
        from terralite.data.check import problems_error

        hint = f"Fix or remove these files (see `terralite data check {root}`)"
        if not skip_missing and all(p.missing for p in problems):
            hint += ", or skip missing files with data.skip_missing (--skip-missing)"
        raise problems_error(f"split {split!r} of dataset {root}", problems, hint)

    def _record_sound(self, root: Path, split: str, missing: list[str]) -> None:
        try:
            key = self._check_key(root, split)
        except TerraLiteError:
            return
        DataCache(root).store(f"{split}-check", key, {"missing": missing})

    def check(self, data, split):
        from terralite.data.check import Problem, check_dataset

        root = self._root(data)
        try:
            key = self._check_key(root, split)
        except TerraLiteError:  # no such folder or split list: let the full check word it
            key = None
        cache = DataCache(root)
        verdict = cache.load(f"{split}-check", key) if key else None
        if not (isinstance(verdict, dict) and isinstance(verdict.get("missing"), list)):
            problems = check_dataset(root, split)
            others = [p for p in problems if not p.missing]
            if others:
                self._raise(root, split, others if data.skip_missing else problems, data.skip_missing)
            verdict = {"missing": [relative(p.path, root) for p in problems]}  # relative: the folder may move
            if key:
                cache.store(f"{split}-check", key, verdict)
        if verdict["missing"] and not data.skip_missing:
            problems = [Problem(root / p, f"listed in {split}.txt but missing", missing=True) for p in verdict["missing"]]
            self._raise(root, split, problems, False)

    def problems(self, data, split):
        from terralite.data.check import _splits_to_check, check_dataset

        root = self._root(data)
        problems = check_dataset(root, split)
        if not [p for p in problems if not p.missing]:
            missing = [p for p in problems if p.missing]
            for name in _splits_to_check(root, split) if root.is_dir() else []:
                self._record_sound(root, name, [relative(p.path, root) for p in missing
                                                if p.message == f"listed in {name}.txt but missing"])
        return problems

    def summary(self, data, split):
        from terralite.data.check import count_images

        return f"{count_images(self._root(data), split)} images"

    def stats(self, data, split):
        from terralite.data.openearthmap import list_samples

        root = self._root(data)
        samples, _ = list_samples(root, split, skip_missing=data.skip_missing, require_labels=False)
        return self.sample_stats(root, split, samples)

    def splits(self, data):
        from terralite.data.check import _splits_to_check

        return _splits_to_check(self._root(data), None)

    def describe(self, data):
        text = f"openearthmap {data.root or '(data.root not set)'}"
        if data.bands is not None:
            text += f", bands {list(data.bands)}"
        if data.skip_missing:
            text += ", skipping missing files"
        return text


# ---- large rasters ---------------------------------------------------------------------------------------------

def class_merge_table(name: str | dict | None):
    """The raw value → training id table a ``data.class_merge`` name (or mapping) stands for; None keeps raw ids.

    A mapping (YAML ``{1: 0, 2: 1, 11: null}``) maps raw label values to training ids 0..K-1; ``null`` and values
    not listed are ignored.
    """
    from terralite.data.large_raster import BOLM_MERGE

    tables = {"bolm": BOLM_MERGE}
    if name is None:
        return None
    if isinstance(name, dict):
        table = {}
        for raw, target in name.items():
            try:
                table[int(raw)] = None if target is None else int(target)
            except (TypeError, ValueError):
                raise TerraLiteError(f"data.class_merge entry {raw!r}: {target!r} must map an integer label value to an "
                                     "integer training id or null (ignored)") from None
        ids = sorted({t for t in table.values() if t is not None})
        if not ids or ids != list(range(len(ids))):
            raise TerraLiteError(f"data.class_merge must map label values onto training ids 0..K-1 with none skipped; "
                                 f"got ids {ids}")
        return table
    if name not in tables:
        raise TerraLiteError(f"unknown data.class_merge {name!r}; valid: {', '.join(tables)} or null (raw label ids)")
    return tables[name]


LARGE_RASTER_SPLITS = ("train", "val", "test")


class LargeRasterKind(DatasetKind):
    """Windows of one large raster (``data.image``, ``data.label``), split in space by ``data.region_mask`` or
    ``data.region_box``."""

    name = "large-raster"

    @staticmethod
    def _image(data: DataConfig):
        """``data.image``: a raster path, a band-file folder (Paths) or a list of band files (list of str)."""
        if not data.image:
            raise TerraLiteError("data.image is not set: a large-raster dataset needs the image raster or a folder of "
                                 "Sentinel-2 band files (--set data.image=PATH; data.label and data.region_mask or "
                                 "data.region_box name the label and held-out area)")
        if isinstance(data.image, list):
            return [str(p) for p in data.image]
        image = Path(data.image)
        if not image.exists():
            raise TerraLiteError(f"raster {image} does not exist (data.image)")
        return image

    @staticmethod
    def _home(image) -> Path:
        """The folder the cache and relative names hang from: the raster's folder, or the band files' folder."""
        from terralite.data.scene import scene_files

        files = scene_files(image)
        return files[0].parent if isinstance(image, list) or Path(image).is_dir() else Path(image).parent

    @staticmethod
    def _stem(image) -> str:
        from terralite.data.scene import is_band_files, scene_files

        return scene_files(image)[0].parent.name if is_band_files(image) else Path(image).stem

    def _files_key(self, image) -> list:
        from terralite.data.scene import scene_files

        home = self._home(image)
        return [[relative(f, home), file_state(f)] for f in scene_files(image)]

    def _region_box(self, data: DataConfig, image):
        """``data.region_box`` as pixel rows/cols ``(row0, col0, row1, col1)`` of the image's grid, or None."""
        if data.region_box is None:
            return None
        if data.region_mask is not None:
            raise TerraLiteError("set either data.region_mask or data.region_box (the held-out area), not both")
        from terralite.data.large_raster import box_to_pixels
        from terralite.data.scene import open_scene

        with open_scene(image) as scene:
            box = box_to_pixels(data.region_box, scene.transform, scene.height, scene.width)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise TerraLiteError(f"data.region_box {list(data.region_box)} does not overlap image {image} "
                                 "(give [xmin, ymin, xmax, ymax] in the image's CRS)")
        return box

    @staticmethod
    def _split(split: str) -> bool:
        """Is ``split`` held out (val/test)? Unknown splits raise."""
        if split not in LARGE_RASTER_SPLITS:
            raise TerraLiteError(f"a large-raster dataset has the splits {', '.join(LARGE_RASTER_SPLITS)}; got {split!r}")
        return split != "train"

    def _cache(self, image) -> DataCache:
        return DataCache(self._home(image))

    def _windows(self, data: DataConfig, split: str) -> list:
        """The split's windows (:func:`~terralite.data.large_raster.spatial_split_windows`), cached."""
        from rasterio.windows import Window

        from terralite.data.large_raster import spatial_split_windows, stride_of

        image = self._image(data)
        held_out = self._split(split)
        if data.window <= 0:
            raise TerraLiteError(f"data.window must be positive, got {data.window}")
        stride_of(data.window, data.overlap)  # validates the overlap
        home = self._home(image)
        mask = None if data.region_mask is None else Path(data.region_mask)
        box = self._region_box(data, image)
        key = fingerprint({"what": "windows", "version": WINDOWS_VERSION, "image": self._files_key(image),
                           "mask": None if mask is None else [relative(mask, home), file_state(mask)],
                           "box": None if box is None else list(box),
                           "window": data.window, "overlap": None if held_out else data.overlap, "held_out": held_out})
        cache, name = self._cache(image), f"{self._stem(image)}-{split}-windows"
        value = cache.load(name, key)
        if not (isinstance(value, list) and value and all(isinstance(v, list) and len(v) == 2 for v in value)):
            windows = spatial_split_windows(image, data.window, data.overlap, mask, held_out, region_box=box)
            value = [[int(w.col_off), int(w.row_off)] for w in windows]
            cache.store(name, key, value)
        return [Window(col, row, data.window, data.window) for col, row in value]

    def _stats_fn(self, image, split: str):
        def stats(dataset) -> tuple[list[float], list[float]]:
            picks = [[int(dataset.windows[i].col_off), int(dataset.windows[i].row_off)] for i in dataset.stats_picks()]
            key = fingerprint({"what": "raster-stats", "version": STATS_VERSION, "image": self._files_key(image),
                               "bands": dataset.bands, "inputs": dataset.inputs, "window": dataset.window, "picks": picks})
            cache, name = self._cache(image), f"{self._stem(image)}-{split}-stats"
            value = cache.load(name, key)
            if _stats_entry_ok(value):
                return value["bands"]["mean"], value["bands"]["std"]
            mean, std = dataset.window_stats()
            cache.store(name, key, {"num_windows": len(picks), "bands": {"mean": mean, "std": std}})
            return mean, std

        return stats

    def build(self, data, split, *, transform=None, input_record=None, require_labels=None):
        from terralite.data.large_raster import LargeRasterDataset, stride_of
        from terralite.data.openearthmap import labels_required

        image = self._image(data)
        self._split(split)
        if require_labels is None:
            require_labels = labels_required(split)
        if require_labels and not data.label:
            raise TerraLiteError(f"data.label is not set: the {split} split of large raster {image} needs its label raster "
                                 "(--set data.label=PATH)")
        if data.region_mask is None and data.region_box is None:
            warnings.warn(f"large raster {image} has no data.region_mask nor data.region_box: the {split} split reads the "
                          "whole raster, so train, val and test overlap (no held-out region)", stacklevel=3)
        windows = self._windows(data, split)
        bands, mean, std = _normalisation(data, input_record)
        inputs = _inputs(data, input_record)
        if inputs is not None:
            bands = None  # named inputs replace a raw band selection
        dataset = LargeRasterDataset(image, data.label or None, window=data.window,
                                     stride=data.window if self._split(split) else stride_of(data.window, data.overlap),
                                     class_merge=class_merge_table(data.class_merge), bands=bands, mean=mean, std=std,
                                     transform=transform, windows=windows, size_policy="pad", inputs=inputs,
                                     class_names=data.class_names, stats_fn=self._stats_fn(image, split))
        _check_bands_agree(data, dataset, input_record, str(image))
        return dataset

    # -- soundness
    @staticmethod
    def _label_values(data: DataConfig) -> range:
        from terralite.data.large_raster import BOLM_CLASSES

        table = class_merge_table(data.class_merge)  # validates the name or mapping
        if isinstance(data.class_merge, dict):
            return range(0, max(table) + 1)
        return range(0, len(BOLM_CLASSES) + 1)  # raw BOLM values: 0 = no data, 1..11 = classes

    def _check_key(self, data: DataConfig) -> str:
        image = self._image(data)
        home = self._home(image)
        files = {name: None if getattr(data, name) is None else
                 [relative(getattr(data, name), home), file_state(getattr(data, name))]
                 for name in ("label", "region_mask")}
        files["image"] = self._files_key(image)
        return fingerprint({"what": "raster-check", "version": CHECK_VERSION, "files": files,
                            "class_merge": data.class_merge})

    def problems(self, data, split):
        from terralite.data.check import Problem, check_large_raster

        if split is not None:
            self._split(split)
        from terralite.data.scene import is_band_files, open_scene, scene_files

        image = self._image(data)
        reference = image
        problems = []
        if is_band_files(image):  # the label is checked against the finest band (the common grid)
            files = scene_files(image)
            try:
                with open_scene(image) as scene:
                    reference = scene.reference
            except TerraLiteError as exc:
                return [Problem(Path(files[0]).parent, str(exc))]
            for other in files:
                if other != reference:
                    problems += check_large_raster(other)
        problems += check_large_raster(reference, data.label or None, data.region_mask or None, self._label_values(data))
        if not problems:
            self._cache(image).store(f"{self._stem(image)}-check", self._check_key(data), {"missing": []})
        return problems

    def check(self, data, split):
        from terralite.data.check import problems_error

        self._split(split)
        image = self._image(data)
        if self._cache(image).load(f"{self._stem(image)}-check", self._check_key(data)) is not None:
            return
        problems = self.problems(data, split)
        if problems:
            raise problems_error(f"large raster {image}", problems,
                                 "Fix these files (see `terralite data check DATA.yaml`)")

    def summary(self, data, split):
        splits = [split] if split is not None else ["train", "val"]
        counts = [f"{len(self._windows(data, s))} {s if s == 'train' or split else 'val/test'} windows" for s in splits]
        return f"1 image, {data.window} px windows: " + ", ".join(counts)

    def stats(self, data, split):
        """Band statistics (cached) and class pixel counts of the windows the statistics are sampled from."""
        import numpy as np

        dataset = self.build(data, split or "test", require_labels=False)
        counts = np.zeros(dataset.num_classes + 1, dtype=np.int64)  # last entry: ignored pixels
        low = np.full(dataset.num_bands, np.inf)
        high = np.full(dataset.num_bands, -np.inf)
        for i in dataset.stats_picks():
            _, label = dataset[int(i)]
            raw, _, valid = dataset.read(int(i))  # model inputs before normalisation (indices in their own range)
            if valid.any():
                low = np.minimum(low, raw[:, valid].min(axis=1))
                high = np.maximum(high, raw[:, valid].max(axis=1))
            w = dataset.windows[int(i)]  # only the part inside the raster (not the padding)
            rows, cols = min(dataset.window, dataset.height - w.row_off), min(dataset.window, dataset.width - w.col_off)
            values = label.numpy()[:rows, :cols].ravel()  # not the padding to a multiple of 32 either
            ignored = (values < 0) | (values >= dataset.num_classes)
            counts[-1] += int(ignored.sum())
            counts[:-1] += np.bincount(values[~ignored], minlength=dataset.num_classes)[:dataset.num_classes]
        dataset.close()
        names = [*dataset.class_names, "ignored"]
        from terralite.data.scene import open_scene

        with open_scene(dataset.image, inputs=dataset.inputs, bands=dataset.bands) as scene:
            channels = list(scene.channel_names)
        return {"num_images": len(dataset), "windows_sampled": len(dataset.stats_picks()),
                "inputs": dataset.inputs,
                "bands": {"mean": list(dataset.mean), "std": list(dataset.std), "names": channels,
                          "min": [float(v) for v in low], "max": [float(v) for v in high]},
                "class_pixels": {name: int(n) for name, n in zip(names, counts)}}

    def splits(self, data):
        return list(LARGE_RASTER_SPLITS)

    def describe(self, data):
        merge = "custom table" if isinstance(data.class_merge, dict) else data.class_merge or "raw ids"
        text = (f"large-raster {data.image or '(data.image not set)'}, labels {data.label or 'none'}, "
                f"{data.window} px windows, training overlap {data.overlap:g}, classes {merge}")
        if data.bands is not None:
            text += f", bands {list(data.bands)}"
        if data.inputs is not None:
            text += f", inputs {data.inputs}"
        if data.region_box is not None:
            text += (f", held-out box {list(data.region_box)} in map coordinates (val/test: non-overlapping windows "
                     "centred inside it; train: windows clear of it)")
        elif data.region_mask:
            text += (f", held-out region {data.region_mask} (val/test: non-overlapping windows centred inside it; "
                     "train: windows clear of it)")
        else:
            text += ", no region_mask: train, val and test all read the whole raster (no held-out region)"
        return text
