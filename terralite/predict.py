"""Tiled, georeferenced land-cover mapping of rasters of any size, with bounded memory.

A :class:`Predictor` turns normalised tiles ``(B, C, h, w)`` into logits ``(B, K, h, w)``; it wraps a
TerraLite checkpoint (PyTorch), an ONNX file (ONNX Runtime) or any callable (e.g. a TensorRT engine
runner, :mod:`terralite.benchmark.tensorrt_predictor`). :func:`predict_raster` streams a raster through it:

- tiles of ``tile`` px overlap by at least ``overlap`` px, evenly spaced so that the first and the last
  are flush with the raster's edges (no tile reads outside the raster);
- the logits of overlapping tiles are blended with a weight that ramps up linearly over the overlap, so
  neighbouring tiles hand over smoothly instead of meeting at an edge (no seams);
- pixels are finalised as soon as no later tile covers them (argmax; class id = index + 1, 0 where the
  input is nodata): only the overlaps still open are kept, ``K x overlap x width`` for the rows below plus
  one tile, so memory does not grow with the raster's height and grows with its width only by that strip;
- class rows are written to a tiled, compressed GeoTIFF in windows of whole 256-row blocks, with internal
  overviews at the end; the next tiles are read (and decompressed) on a thread while the network runs;
- the output is written under a temporary name in the target folder and renamed at the end: an
  interrupted run leaves nothing under the final name.

ONNX files exported by ``terralite export`` carry the model spec, the input normalisation and the class
names in their ``metadata_props`` (see :mod:`terralite.onnx_metadata`), so an ONNX file alone is enough.
"""

from __future__ import annotations

import contextlib
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from terralite.atomic import atomic_path, ensure_parent
from terralite.data.normalize import normalize
from terralite.errors import TerraLiteError
from terralite.onnx_metadata import read_onnx_metadata

#: Block size (px) of the output GeoTIFF; writes are aligned to its rows.
OUTPUT_BLOCK = 256
#: Network input sides must be multiples of this (the deepest stride of every built network).
SIZE_MULTIPLE = 32
#: Runtime chosen by ``runtime="auto"`` from the model file's suffix.
_RUNTIME_BY_SUFFIX = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")


@dataclass
class Predictor:
    """A model ready to map tiles.

    ``forward`` maps a normalised float32 array ``(B, in_channels, h, w)`` to logits
    ``(B, num_classes, h, w)`` (TTA, if any, already inside). ``normalisation`` is the checkpoint's
    ``input`` record: ``{"bands": 0-based band indices or None (= all), "mean": [...], "std": [...]}`` in
    raw pixel units. ``fixed_size`` is ``(h, w)`` for models that accept only one tile size (static ONNX),
    ``fixed_batch`` the only batch size such a model accepts.
    """

    forward: Callable[[np.ndarray], np.ndarray]
    in_channels: int
    num_classes: int
    normalisation: dict
    name: str
    class_names: list[str] = field(default_factory=list)
    fixed_size: tuple[int, int] | None = None
    fixed_batch: int | None = None

    def __post_init__(self) -> None:
        self.normalisation = check_normalisation(self.normalisation, self.in_channels, self.name)
        if not self.class_names:
            self.class_names = default_class_names(self.num_classes)
        if not 1 <= self.num_classes <= 255:
            raise TerraLiteError(f"model {self.name} has {self.num_classes} classes; a uint8 class map holds 1..255")
        if len(self.class_names) != self.num_classes:
            raise TerraLiteError(f"model {self.name}: {len(self.class_names)} class names for {self.num_classes} classes")


def default_class_names(num_classes: int) -> list[str]:
    """The OpenEarthMap names for 8 classes, else ``class 1..K``."""
    from terralite.data.classes import CLASS_NAMES

    if num_classes == len(CLASS_NAMES):
        return list(CLASS_NAMES)
    return [f"class {i}" for i in range(1, num_classes + 1)]


def check_normalisation(norm: dict | None, in_channels: int, name: str) -> dict:
    """Validate an ``input`` record (bands, mean, std) against the model's input channels."""
    if not norm or norm.get("mean") is None or norm.get("std") is None:
        raise TerraLiteError(
            f"model {name} has no input normalisation record (bands, mean, std); use a checkpoint written by "
            "terralite train, or pass --mean and --std (raw pixel units, one value per model input band)"
        )
    bands = norm.get("bands")
    mean = [float(v) for v in norm["mean"]]
    std = [float(v) for v in norm["std"]]
    if bands is not None:
        bands = [int(b) for b in bands]
        if len(bands) != in_channels:
            raise TerraLiteError(f"model {name} takes {in_channels} input bands but its band selection lists {len(bands)}: {bands}")
    if len(mean) != in_channels or len(std) != in_channels:
        raise TerraLiteError(f"model {name} takes {in_channels} input bands but its normalisation has {len(mean)} means and {len(std)} stds")
    if any(s <= 0 for s in std):
        raise TerraLiteError(f"model {name}: every std of the input normalisation must be > 0, got {std}")
    record = {"bands": bands, "mean": mean, "std": std}
    if norm.get("inputs") is not None:  # named inputs (Sentinel-2 bands, composites, indices): terralite.data.scene
        from terralite.data.scene import input_channels, parse_inputs

        inputs = parse_inputs(norm["inputs"])
        if sum(input_channels(n) for n in inputs) != in_channels:
            raise TerraLiteError(f"model {name} takes {in_channels} input bands but its inputs {inputs} give "
                                 f"{sum(input_channels(n) for n in inputs)}")
        record["inputs"] = inputs
    return record


def _with_tta(call: Callable, tta: str) -> Callable:
    """Wrap a torch-tensor callable with test-time augmentation (logits summed)."""
    from terralite.tta import check_tta_mode, tta_forward

    check_tta_mode(tta)
    if tta == "none":
        return call
    return lambda x: tta_forward(call, x, tta)


def predictor_from_module(module, normalisation: dict, name: str = "model", class_names: Sequence[str] | None = None,
                          device: str = "auto", tta: str = "none") -> Predictor:
    """A :class:`Predictor` running an ``nn.Module`` (any model honouring the logits contract) in PyTorch."""
    import torch

    from terralite.device import resolve_device

    dev = resolve_device(device)
    module = module.to(dev).eval()
    call = _with_tta(module, tta)
    in_channels = len(normalisation["mean"]) if normalisation and normalisation.get("mean") is not None else 0
    check_normalisation(normalisation, in_channels, name)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return call(torch.from_numpy(batch).to(dev)).float().cpu().numpy()

    num_classes = _probe_num_classes(forward, in_channels)
    return Predictor(forward, in_channels, num_classes, normalisation, name, list(class_names or []))


def _probe_num_classes(forward: Callable, in_channels: int) -> int:
    """One tiny forward pass tells the number of output classes."""
    probe = np.zeros((1, in_channels, SIZE_MULTIPLE * 2, SIZE_MULTIPLE * 2), dtype=np.float32)
    return int(forward(probe).shape[1])


def load_predictor(model: str | Path, runtime: str = "auto", device: str = "auto", tta: str = "none",
                   normalisation: dict | None = None) -> Predictor:
    """Load a checkpoint (runtime ``torch``) or an ONNX file (runtime ``onnxruntime``) for mapping.

    ``normalisation`` overrides the model's own ``input`` record (keys given replace those stored).
    TensorRT is a runtime of the ``benchmark`` package (a floor above this one):
    :func:`terralite.benchmark.mapping.load_any_predictor` (``terralite predict --runtime tensorrt``) wraps
    its runner in a :class:`Predictor`.
    """
    path = Path(model)
    if not path.is_file():
        raise TerraLiteError(f"model {path} does not exist; pass a TerraLite checkpoint (.pt) or an ONNX file from terralite export")
    runtime = resolve_runtime(path, runtime)
    if runtime == "torch":
        if path.suffix == ".onnx":
            raise TerraLiteError(f"{path} is an ONNX file: map it with --runtime onnxruntime (or tensorrt)")
        return _load_torch(path, device, tta, normalisation)
    if runtime == "onnxruntime":
        if path.suffix != ".onnx":
            raise TerraLiteError(
                f"runtime onnxruntime needs an ONNX file, got {path}; export one first: terralite export {path} --format onnx --out model.onnx"
            )
        return _load_onnxruntime(path, device, tta, normalisation)
    raise TerraLiteError("runtime tensorrt runs through the benchmark's TensorRT runner: use `terralite predict --runtime tensorrt` "
                         "(terralite.benchmark.mapping.load_any_predictor)")


def resolve_runtime(path: Path, runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise TerraLiteError(f"unknown runtime {runtime!r}; valid runtimes: {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return _RUNTIME_BY_SUFFIX.get(Path(path).suffix.lower(), "torch")
    return runtime


def _merge_normalisation(stored: dict | None, override: dict | None) -> dict | None:
    if not override:
        return stored
    merged = dict(stored or {})
    merged.update({k: v for k, v in override.items() if v is not None})
    return merged


def _load_torch(path: Path, device: str, tta: str, normalisation: dict | None) -> Predictor:
    from terralite.models import describe, load_model

    module, spec, ckpt = load_model(str(path))
    norm = _merge_normalisation((ckpt or {}).get("input"), normalisation)
    name = describe(spec)
    norm = check_normalisation(norm, spec["in_channels"], f"{name} ({path})")
    return predictor_from_module(module, norm, name=name, device=device, tta=tta)


def _onnx_dims(shape: list) -> tuple:
    """Static dims as ints, symbolic ones as None."""
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _exported_predictor(forward: Callable[[np.ndarray], np.ndarray], input_shape: Sequence, num_classes: int,
                            metadata: dict, path: Path, normalisation: dict | None = None) -> Predictor:
    """A :class:`Predictor` for an exported graph: ``input_shape`` is ``(B, C, H, W)`` with None for dynamic dims."""
    batch, channels, height, width = input_shape
    if channels is None:
        raise TerraLiteError(f"{path}: the model input has no fixed band count")
    norm = _merge_normalisation(metadata.get("input"), normalisation)
    spec = metadata.get("spec") or {}
    name = spec.get("label") or spec.get("name") or path.stem
    fixed_size = (height, width) if height is not None and width is not None else None
    if (height is None) != (width is None):
        raise TerraLiteError(f"{path}: the model input fixes only one of height and width; export it with both static or both dynamic")
    return Predictor(forward, int(channels), int(num_classes), norm, name, list(metadata.get("class_names") or []),
                     fixed_size=fixed_size, fixed_batch=batch)


def _load_onnxruntime(path: Path, device: str, tta: str, normalisation: dict | None) -> Predictor:
    import onnxruntime as ort
    import torch

    providers = ["CPUExecutionProvider"]
    if device not in ("auto", "cpu"):
        if not device.startswith("cuda"):
            raise TerraLiteError(f"unknown device {device!r} for onnxruntime; use auto, cpu or cuda")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise TerraLiteError(f"device {device} asked for, but this onnxruntime has no CUDA provider; install onnxruntime-gpu or use --device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for foreign/corrupt files
        raise TerraLiteError(f"{path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise TerraLiteError(f"{path}: expected one (B, C, H, W) input, got {[(i.name, i.shape) for i in inputs]}")
    input_name = inputs[0].name
    metadata = read_onnx_metadata(session.get_modelmeta().custom_metadata_map, path)

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {input_name: np.ascontiguousarray(x.numpy())})[0])

    call = _with_tta(run, tta)

    def forward(batch: np.ndarray) -> np.ndarray:
        return call(torch.from_numpy(batch)).numpy()

    num_classes = outputs[0].shape[1]
    if not isinstance(num_classes, int):
        num_classes = (metadata.get("spec") or {}).get("num_classes")
    if not isinstance(num_classes, int):
        raise TerraLiteError(f"{path}: cannot tell the number of classes (dynamic output channels and no TerraLite metadata)")
    return _exported_predictor(forward, _onnx_dims(inputs[0].shape), num_classes, metadata, path, normalisation)


# --------------------------------------------------------------------------- tiling


def tile_offsets(length: int, tile: int, max_stride: int) -> list[int]:
    """Evenly spaced start offsets of tiles covering ``length`` px, steps at most ``max_stride``.

    The first tile starts at 0 and the last ends at ``length``; spacing them evenly (rather than a fixed
    stride with the last tile pushed back to the edge) keeps every overlap close to ``tile - max_stride``,
    so the rows a tile row carries to the next stay few (see :class:`_Blender`).
    """
    if length <= tile:
        return [0]
    gaps = -(-(length - tile) // max_stride)  # number of steps, each <= max_stride
    return [round(k * (length - tile) / gaps) for k in range(gaps + 1)]


def blend_ramp(size: int, overlap: int) -> np.ndarray:
    """1-D blending weight: rises linearly over ``overlap`` px at each end, 1 in the middle, always > 0."""
    t = np.arange(size, dtype=np.float32)
    if overlap <= 0:
        return np.ones(size, dtype=np.float32)
    ramp = np.minimum((t + 1) / (overlap + 1), (size - t) / (overlap + 1))
    return np.minimum(ramp, 1.0).astype(np.float32)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad ``(C, h, w)`` at the bottom/right to ``(C, height, width)`` by mirroring (edge copy when too small)."""
    ph, pw = height - array.shape[1], width - array.shape[2]
    if ph == 0 and pw == 0:
        return array
    mode = "reflect" if ph < array.shape[1] and pw < array.shape[2] else "edge"
    return np.pad(array, ((0, 0), (0, ph), (0, pw)), mode=mode)


@dataclass
class _TileLayout:
    tile_h: int
    tile_w: int
    rows: list[int]
    cols: list[int]


def _layout(height: int, width: int, tile: int, overlap: int, predictor: Predictor) -> _TileLayout:
    if tile % SIZE_MULTIPLE or tile <= 0:
        raise TerraLiteError(f"--tile must be a positive multiple of {SIZE_MULTIPLE}, got {tile}")
    if predictor.fixed_size is not None:
        tile_h, tile_w = predictor.fixed_size
        if (tile, tile) != (tile_h, tile_w):
            raise TerraLiteError(f"model {predictor.name} accepts only {tile_h}x{tile_w} tiles (static ONNX export); "
                                 f"pass --tile {tile_h}, or export it with --dynamic-size")
    else:
        # A raster smaller than a tile is mapped in one (padded) tile of the next multiple of 32.
        tile_h, tile_w = min(tile, _round_up(height, SIZE_MULTIPLE)), min(tile, _round_up(width, SIZE_MULTIPLE))
    if not 0 <= overlap < tile:
        raise TerraLiteError(f"--overlap must be in 0..{tile - 1} (less than the {tile} px tile), got {overlap}")
    stride = tile - overlap
    return _TileLayout(tile_h, tile_w, tile_offsets(height, tile_h, stride), tile_offsets(width, tile_w, stride))


# --------------------------------------------------------------------------- mapping


def _band_indexes(src, predictor: Predictor, path: Path) -> list[int] | None:
    bands = predictor.normalisation["bands"]
    if bands is None:
        if src.count != predictor.in_channels:
            raise TerraLiteError(
                f"{path} has {src.count} bands but model {predictor.name} takes {predictor.in_channels}; "
                f"pass --bands with {predictor.in_channels} 0-based band indices (e.g. --bands 0,1,2)"
            )
        return None
    bad = [b for b in bands if not 0 <= b < src.count]
    if bad:
        raise TerraLiteError(
            f"{path} has {src.count} bands (0..{src.count - 1}) but model {predictor.name} reads bands {bands}; "
            "map a raster with those bands or pass --bands"
        )
    return bands


def _input_scene(predictor: Predictor, path: Path):
    """A :class:`~terralite.data.scene.Scene` for models with named inputs or a band-file folder; else None."""
    from terralite.data.scene import is_band_files, open_scene

    inputs = predictor.normalisation.get("inputs")
    if inputs is None and not is_band_files(path):
        return None
    scene = open_scene(path, inputs=inputs, bands=predictor.normalisation["bands"])
    if scene.num_channels != predictor.in_channels:
        scene.close()
        raise TerraLiteError(f"{path} gives {scene.num_channels} input bands but model {predictor.name} takes "
                             f"{predictor.in_channels}; map a scene with the model's bands")
    return scene


def _has_mask(src) -> bool:
    from rasterio.enums import MaskFlags

    return any(MaskFlags.all_valid not in flags for flags in src.mask_flag_enums)


def _output_profile(src, block: int) -> dict:
    return dict(
        driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8", crs=src.crs,
        transform=src.transform, nodata=0, tiled=True, blockxsize=block, blockysize=block,
        compress="deflate", BIGTIFF="IF_SAFER",
    )


def _class_ids(planes: np.ndarray) -> np.ndarray:
    """Class ids ``argmax + 1`` (uint8) of blended logits ``(K, h, w)``, one pass per class.

    Same result as ``np.argmax(planes, axis=0) + 1`` (ties go to the lower class), without the contiguous
    copy of a strided ``planes`` view and the int64 output that ``np.argmax`` makes.
    """
    best = planes[0].copy()
    ids = np.ones(best.shape, dtype=np.uint8)
    for k in range(1, planes.shape[0]):
        np.copyto(ids, np.uint8(k + 1), where=planes[k] > best)
        np.maximum(best, planes[k], out=best)
    return ids


def palette_colours(num_classes: int) -> dict[int, tuple[int, int, int]]:
    """Class id → RGB: the OpenEarthMap palette for up to 8 classes, matplotlib's tab20 beyond; 0 black."""
    from terralite.data.classes import PALETTE

    if num_classes <= len(PALETTE) - 1:
        return {i: PALETTE[i] for i in range(num_classes + 1)}
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    colours = {0: (0, 0, 0)}
    for i in range(1, num_classes + 1):
        colours[i] = tuple(int(round(255 * c)) for c in cmap((i - 1) % 20)[:3])
    return colours


def overview_factors(height: int, width: int, smallest: int = 256) -> list[int]:
    """Overview decimation factors 2, 4, 8, ... until the coarsest level fits in ``smallest`` px."""
    factors, f = [], 2
    while max(height, width) / (f // 2) > smallest:
        factors.append(f)
        f *= 2
    return factors


#: GDAL block cache (MB) while mapping.
GDAL_CACHE_MB = 128


class _Blender:
    """Blends the weighted logits of overlapping tiles, tile by tile, keeping only what is still open.

    Tile (i, j) covers rows ``rows[i] + [0, tile_h)`` and columns ``cols[j] + [0, tile_w)``. Once it is
    added, its columns up to the next tile's start are final within this tile row, and of those its rows up
    to the next tile row's start are final: their class ids go to the row's output. What is still open is
    carried: the overlap to the right (``(K, tile_h, overlap)``, in ``region``) and the rows below
    (``(K, overlap, width)``, in ``below``), so memory is ``K x overlap x width`` plus one tile, whatever
    the raster's height, instead of a whole ``K x tile x width`` row band.
    """

    def __init__(self, num_classes: int, layout: _TileLayout, height: int, width: int, weight: np.ndarray):
        self.layout, self.height, self.width, self.weight = layout, height, width, weight
        rows = layout.rows
        max_keep = max([layout.tile_h - (b - a) for a, b in zip(rows, rows[1:])], default=0)
        self.below = np.zeros((num_classes, max_keep, max(width, layout.tile_w)), dtype=np.float32)
        self.region = np.zeros((num_classes, layout.tile_h, layout.tile_w), dtype=np.float32)
        self.keep_prev = 0  # rows of ``below`` that the previous tile row left

    def start_row(self, i: int) -> None:
        rows = self.layout.rows
        self.y = rows[i]
        self.done = (rows[i + 1] if i + 1 < len(rows) else self.height) - self.y  # rows final after this row
        self.keep = self.layout.tile_h - self.done if i + 1 < len(rows) else 0  # rows carried below
        self.out = np.zeros((self.done, self.width), dtype=np.uint8)
        self.carried = 0  # columns at the left of ``region`` carried from the previous tile

    def add(self, j: int, logits: np.ndarray | None) -> int:
        """Add tile ``j`` of the current row (``None``: skipped, all nodata); returns the pixels finalised."""
        cols, tile_w = self.layout.cols, self.layout.tile_w
        x = cols[j]
        end = cols[j + 1] if j + 1 < len(cols) else self.width
        region, c, weight = self.region, self.carried, self.weight
        # Columns this tile opens are overwritten (no zeroing pass), the carried ones accumulate.
        if logits is None:
            region[:, :, c:] = 0
        else:
            np.multiply(logits[:, :, c:], weight[:, c:], out=region[:, :, c:])
            if c:
                region[:, :, :c] += logits[:, :, :c] * weight[:, :c]
        if self.keep_prev:  # what the tile row above left in the columns this tile opens
            region[:, :self.keep_prev, c:] += self.below[:, :self.keep_prev, x + c:x + tile_w]
        n = end - x
        self.out[:, x:end] = _class_ids(region[:, :self.done, :n])
        if self.keep:
            self.below[:, :self.keep, x:end] = region[:, self.done:self.done + self.keep, :n]
        self.carried = tile_w - n if j + 1 < len(cols) else 0
        if self.carried:
            region[:, :, :self.carried] = region[:, :, n:n + self.carried]
        return n * self.done

    def finished_rows(self) -> np.ndarray:
        """Class ids ``(done, width)`` of the rows the current tile row finalised."""
        self.keep_prev = self.keep
        return self.out


class _BlockRowWriter:
    """Writes class rows to the output in windows of whole block rows (a partly written compressed block
    would be decompressed, patched and appended again); zeroes pixels the input masks as nodata."""

    def __init__(self, dst, masked_src=None):
        self.dst, self.masked_src = dst, masked_src
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.written = 0

    def add(self, rows: np.ndarray, final: bool) -> None:
        from rasterio.windows import Window

        self.pending.append(rows)
        self.pending_rows += rows.shape[0]
        n = self.pending_rows if final else self.pending_rows // OUTPUT_BLOCK * OUTPUT_BLOCK
        if n == 0:
            return
        data = np.concatenate(self.pending, axis=0) if len(self.pending) > 1 else self.pending[0]
        block, rest = data[:n], data[n:]
        window = Window(0, self.written, self.dst.width, n)
        if self.masked_src is not None:
            block[self.masked_src.dataset_mask(window=window) == 0] = 0
        self.dst.write(block, 1, window=window)
        self.pending = [rest] if rest.shape[0] else []
        self.pending_rows -= n
        self.written += n


def predict_raster(predictor: Predictor, input_path: str | Path, out_path: str | Path, tile: int = 1024,
                   overlap: int | None = None, batch: int = 1, preview: str | Path | None = None,
                   progress: bool = True) -> dict:
    """Map ``input_path`` into a single-band uint8 GeoTIFF of class ids at ``out_path``.

    ``overlap`` defaults to ``tile // 8`` (128 px for 1024 px tiles). Class id = argmax + 1 (1..K), 0 where the input is nodata/masked. The output has the input's CRS,
    transform and size, the palette as colour table, and is written atomically. Returns a summary:
    ``{"output", "preview", "width", "height", "tiles", "seconds", "mpx_per_s", "peak_rss_mb"}``.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window
    from tqdm import tqdm

    from terralite.data.raster import open_raster, read_from

    input_path, out_path = Path(input_path), Path(out_path)
    ensure_parent(out_path)
    if preview is not None:
        ensure_parent(preview)
    if batch < 1:
        raise TerraLiteError(f"--batch-size must be at least 1, got {batch}")
    if overlap is None:
        overlap = tile // 8
    if predictor.fixed_batch is not None:
        batch = predictor.fixed_batch  # a static-batch export accepts no other
    mean, std = predictor.normalisation["mean"], predictor.normalisation["std"]
    num_classes = predictor.num_classes
    start = time.perf_counter()

    # GDAL's block cache defaults to 5 % of RAM and would grow with the raster; a tile row of input blocks fits.
    # Named inputs (indices, composites) and Sentinel-2 band folders are read through a Scene on the finest grid.
    scene = _input_scene(predictor, input_path)
    with rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_CACHEMAX=GDAL_CACHE_MB), \
            open_raster(scene.reference if scene else input_path) as src:
        bands = _band_indexes(src, predictor, input_path) if scene is None else None
        height, width = src.height, src.width
        layout = _layout(height, width, tile, overlap, predictor)
        weight = blend_ramp(layout.tile_h, overlap)[:, None] * blend_ramp(layout.tile_w, overlap)[None, :]
        blender = _Blender(num_classes, layout, height, width, weight)
        masked = _has_mask(src) if scene is None else scene.has_nodata()
        tiles_done = 0
        bar = tqdm(total=height * width, unit="px", unit_scale=True, desc=f"mapping {input_path.name}",
                   disable=not progress, leave=False)

        def read_batch(i: int, cols: list[int]) -> tuple[np.ndarray | None, list[int]]:
            """Normalised tiles ``(b, C, tile_h, tile_w)`` of row ``i``, columns ``cols``; all-nodata tiles left out."""
            y = layout.rows[i]
            tiles, kept = [], []
            for j in cols:
                x = layout.cols[j]
                window = Window(x, y, min(layout.tile_w, width - x), min(layout.tile_h, height - y))
                if scene is not None:
                    raw, valid = scene.read(window)
                    if masked and not valid.any():
                        continue
                elif masked and not src.dataset_mask(window=window).any():
                    continue  # all nodata: its pixels end as 0 whatever the model says
                else:
                    raw = read_from(src, bands=bands, window=window)
                tiles.append(pad_to(normalize(raw, mean, std), layout.tile_h, layout.tile_w))
                kept.append(j)
            if not tiles:
                return None, kept
            stack = np.stack(tiles)
            if len(tiles) < batch and predictor.fixed_batch is not None:
                stack = np.concatenate([stack, np.zeros((batch - len(tiles), *stack.shape[1:]), np.float32)])
            return stack, kept

        n_cols = len(layout.cols)
        batches = [(i, list(range(b0, min(b0 + batch, n_cols)))) for i in range(len(layout.rows)) for b0 in range(0, n_cols, batch)]
        with atomic_path(out_path) as tmp, ThreadPoolExecutor(max_workers=1) as reader:
            # The writer reads nodata masks through its own handle: GDAL handles are not shared across threads.
            with rasterio.open(tmp, "w", **_output_profile(src, OUTPUT_BLOCK)) as dst, \
                    (contextlib.nullcontext() if not masked else _input_scene(predictor, input_path) if scene
                     else open_raster(input_path)) as mask_src:
                dst.write_colormap(1, {i: (*rgb, 255) for i, rgb in palette_colours(num_classes).items()})
                dst.update_tags(1, **{f"CLASS_{i + 1}": n for i, n in enumerate(predictor.class_names)})
                dst.update_tags(MODEL=predictor.name, TILE=str(tile), OVERLAP=str(overlap))
                writer = _BlockRowWriter(dst, mask_src)
                # Reading (and decompressing) the next batch overlaps with the network on this one.
                upcoming = reader.submit(read_batch, *batches[0])
                for k, (i, cols) in enumerate(batches):
                    stack, kept = upcoming.result()
                    if k + 1 < len(batches):
                        upcoming = reader.submit(read_batch, *batches[k + 1])
                    if cols[0] == 0:
                        blender.start_row(i)
                    logits = predictor.forward(stack) if stack is not None else None
                    for j in cols:
                        bar.update(blender.add(j, logits[kept.index(j)] if j in kept else None))
                    tiles_done += len(cols)
                    if cols[-1] == n_cols - 1:
                        writer.add(blender.finished_rows(), final=i == len(layout.rows) - 1)
                bar.close()
                factors = overview_factors(height, width)
                if factors:  # internal overviews (mode of classes): GIS viewers and the preview read those
                    dst.build_overviews(factors, Resampling.mode)

        seconds = time.perf_counter() - start
        if scene is not None:
            scene.close()
        if preview is not None:
            render_preview(out_path, preview, predictor.class_names)
    return {
        "output": str(out_path),
        "preview": str(preview) if preview is not None else None,
        "width": width,
        "height": height,
        "tiles": tiles_done,
        "seconds": round(seconds, 3),
        "mpx_per_s": round(width * height / 1e6 / max(seconds, 1e-9), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def render_preview(map_path: str | Path, png_path: str | Path, class_names: Sequence[str], max_side: int = 1024) -> Path:
    """A downsampled colour PNG of a class map with a legend (only the first ``max_side`` px are read per side)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch
    from rasterio.enums import Resampling

    from terralite.data.raster import open_raster

    with open_raster(map_path) as src:
        scale = max(src.height, src.width) / max_side
        shape = (max(1, round(src.height / max(scale, 1))), max(1, round(src.width / max(scale, 1))))
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)  # decimated: never the full raster
    colours = palette_colours(len(class_names))
    lut = np.zeros((256, 3), dtype=np.uint8)
    for value, rgb in colours.items():
        lut[value] = rgb
    present = set(np.unique(classes).tolist())
    handles = [Patch(facecolor=np.array(colours[i]) / 255, edgecolor="black", label=f"{i} {name}")
               for i, name in enumerate(class_names, start=1) if i in present]
    if 0 in present:
        handles.append(Patch(facecolor="black", edgecolor="black", label="0 no data"))
    fig, ax = plt.subplots(figsize=(8 * shape[1] / max(shape) + 3, 8 * shape[0] / max(shape) + 0.5), dpi=100)
    ax.imshow(lut[classes], interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(Path(map_path).name)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(png_path)
