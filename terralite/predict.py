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
    spec_hash: str | None = None  # fingerprint of the model spec (terralite.models.spec_hash), recorded in the map
    tta: str = "none"  # the test-time augmentation inside ``forward``, recorded in the map

    def __post_init__(self) -> None:
        self.normalisation = check_normalisation(self.normalisation, self.in_channels, self.name)
        if not self.class_names:
            self.class_names = default_class_names(self.num_classes)
        if not 1 <= self.num_classes <= 255:
            raise TerraLiteError(f"model {self.name} has {self.num_classes} classes; a uint8 class map holds 1..255")
        if len(self.class_names) != self.num_classes:
            raise TerraLiteError(f"model {self.name}: {len(self.class_names)} class names for {self.num_classes} classes")


def default_class_names(num_classes: int, ckpt: dict | None = None) -> list[str]:
    """The class names a checkpoint stored (its training data's, e.g. the five merged BOLM classes), else the
    OpenEarthMap names for 8 classes, else ``class 1..K`` (checkpoints written before names were stored)."""
    from terralite.data.classes import CLASS_NAMES

    stored = list((ckpt or {}).get("class_names") or [])
    if len(stored) == num_classes:
        return [str(name) for name in stored]
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
                          device: str = "auto", tta: str = "none", spec_hash: str | None = None) -> Predictor:
    """A :class:`Predictor` running an ``nn.Module`` (any model honouring the logits contract) in PyTorch."""
    import torch

    from terralite.cpu_allocator import keep_freed_memory
    from terralite.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu":  # tile after tile, large maps reuse freed memory instead of new pages every call
        keep_freed_memory()
    module = module.to(dev).eval()
    call = _with_tta(module, tta)
    in_channels = len(normalisation["mean"]) if normalisation and normalisation.get("mean") is not None else 0
    check_normalisation(normalisation, in_channels, name)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return call(torch.from_numpy(batch).to(dev)).float().cpu().numpy()

    num_classes = _probe_num_classes(forward, in_channels)
    return Predictor(forward, in_channels, num_classes, normalisation, name, list(class_names or []), spec_hash=spec_hash, tta=tta)


def _probe_num_classes(forward: Callable, in_channels: int) -> int:
    """One tiny forward pass tells the number of output classes."""
    probe = np.zeros((1, in_channels, SIZE_MULTIPLE * 2, SIZE_MULTIPLE * 2), dtype=np.float32)
    return int(forward(probe).shape[1])


def load_predictor(model: str | Path, runtime: str = "auto", device: str = "auto", tta: str = "none",
                   normalisation: dict | None = None, threads: int | None = None) -> Predictor:
    """Load a checkpoint (runtime ``torch``) or an ONNX file (runtime ``onnxruntime``) for mapping.

    ``normalisation`` overrides the model's own ``input`` record (keys given replace those stored).
    ``threads`` caps ONNX Runtime's intra-op threads (PyTorch's are ``torch.set_num_threads``, process-wide).
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
        return _load_onnxruntime(path, device, tta, normalisation, threads)
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
    from terralite.models import describe, load_model, spec_hash

    module, spec, ckpt = load_model(str(path))
    norm = _merge_normalisation((ckpt or {}).get("input"), normalisation)
    name = describe(spec)
    norm = check_normalisation(norm, spec["in_channels"], f"{name} ({path})")
    return predictor_from_module(module, norm, name=name, class_names=default_class_names(spec["num_classes"], ckpt),
                                 device=device, tta=tta, spec_hash=spec_hash(spec))


def _onnx_dims(shape: list) -> tuple:
    """Static dims as ints, symbolic ones as None."""
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _exported_predictor(forward: Callable[[np.ndarray], np.ndarray], input_shape: Sequence, num_classes: int,
                            metadata: dict, path: Path, normalisation: dict | None = None, tta: str = "none") -> Predictor:
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
    from terralite.models import spec_hash

    return Predictor(forward, int(channels), int(num_classes), norm, name, list(metadata.get("class_names") or []),
                     fixed_size=fixed_size, fixed_batch=batch, spec_hash=spec_hash(spec) if spec else None, tta=tta)


def _load_onnxruntime(path: Path, device: str, tta: str, normalisation: dict | None, threads: int | None = None) -> Predictor:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device not in ("auto", "cpu"):
        if not device.startswith("cuda"):
            raise TerraLiteError(f"unknown device {device!r} for onnxruntime; use auto, cpu or cuda")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise TerraLiteError(f"device {device} asked for, but this onnxruntime has no CUDA provider; install onnxruntime-gpu or use --device cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    from terralite.tta import check_tta_shape
    from terralite.tta_graph import tta_session_bytes

    check_tta_shape(tta, 1, 1)  # an unknown mode fails before the file is read
    try:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # TTA inside the graph: flips, passes and merge run on ONNX Runtime's threads, as bench times them
        session = ort.InferenceSession(tta_session_bytes(path, tta), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for foreign/corrupt files
        raise TerraLiteError(f"{path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise TerraLiteError(f"{path}: expected one (B, C, H, W) input, got {[(i.name, i.shape) for i in inputs]}")
    input_name = inputs[0].name
    metadata = read_onnx_metadata(session.get_modelmeta().custom_metadata_map, path)

    def forward(batch: np.ndarray) -> np.ndarray:
        check_tta_shape(tta, *batch.shape[-2:])
        return session.run(None, {input_name: np.ascontiguousarray(batch)})[0]

    num_classes = outputs[0].shape[1]
    if not isinstance(num_classes, int):
        num_classes = (metadata.get("spec") or {}).get("num_classes")
    if not isinstance(num_classes, int):
        raise TerraLiteError(f"{path}: cannot tell the number of classes (dynamic output channels and no TerraLite metadata)")
    return _exported_predictor(forward, _onnx_dims(inputs[0].shape), num_classes, metadata, path, normalisation, tta)


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
                f"pass --bands with {predictor.in_channels} 0-based band indices (e.g. --bands "
                f"{','.join(str(i) for i in range(predictor.in_channels))})"
            )
        return None
    bad = [b for b in bands if not 0 <= b < src.count]
    if bad:
        raise TerraLiteError(
            f"{path} has {src.count} bands (0..{src.count - 1}) but model {predictor.name} reads bands {bands}; "
            "map a raster with those bands or pass --bands"
        )
    return bands


#: How many training standard deviations a scene's mean may lie from the training mean before it is refused.
MAX_SCENE_SHIFT_STD = 20.0


def check_scene_range(src, bands: list[int] | None, mean, std, path: Path, name: str) -> None:
    """Refuse a scene whose pixel values are far outside the model's training statistics (e.g. a 16-bit scene for a
    model trained on 8-bit tiles), measured on a small decimated read: such a map would be garbage, silently."""
    from terralite.data.raster import read_from

    side = 64
    sample = read_from(src, bands=bands, out_shape=(len(bands) if bands is not None else src.count,
                                                    min(side, src.height), min(side, src.width))).astype(np.float64)
    valid = np.isfinite(sample).all(axis=0)
    if src.nodata is not None and np.isfinite(src.nodata):
        valid &= ~(sample == src.nodata).all(axis=0)
    if not valid.any():
        return
    scene_mean = sample[:, valid].mean(axis=1)
    shift = np.abs(scene_mean - np.asarray(mean)) / np.asarray(std)
    if float(shift.max()) > MAX_SCENE_SHIFT_STD:
        raise TerraLiteError(
            f"{path} ({src.dtypes[0]}) has pixel means {[round(float(v), 1) for v in scene_mean]}, far outside the training "
            f"statistics of model {name} (mean {[round(float(v), 1) for v in mean]}, std {[round(float(v), 1) for v in std]}): "
            "is the scene of another bit depth or scaling than the training tiles? Rescale it to the training units, "
            "or pass --mean and --std for this scene")


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


def describe_map(dst, predictor: Predictor, tile: int, overlap: int) -> None:
    """Record what made the map in the GeoTIFF itself, where ``gdalinfo`` and GIS layer properties show it:
    dataset tags (model, spec hash, TTA, tiling, TerraLite version, class names), the band's description and
    one ``CLASS_<id>`` tag per class (the category names are also in the ``.aux.xml`` of
    :func:`write_category_table`)."""
    from terralite import __version__

    dst.update_tags(MODEL=predictor.name, SPEC_HASH=predictor.spec_hash or "unknown", TTA=predictor.tta,
                    TILE=str(tile), OVERLAP=str(overlap), TERRALITE_VERSION=__version__,
                    CLASSES=";".join(f"{i}={n}" for i, n in enumerate(["no data", *predictor.class_names])),
                    NODATA_CLASS="0")
    dst.set_band_description(1, f"land-cover class id (1..{predictor.num_classes}, 0 = no data)")
    dst.update_tags(1, CLASS_0="no data", **{f"CLASS_{i + 1}": n for i, n in enumerate(predictor.class_names)})


def category_table_xml(class_names: Sequence[str]) -> str:
    """GDAL PAM XML of band 1: category names (index = class id) and a raster attribute table (value, name,
    colour), the forms QGIS and ArcGIS show as the legend of a class raster."""
    from xml.sax.saxutils import escape

    names = ["no data", *class_names]
    colours = palette_colours(len(class_names))
    categories = "".join(f"      <Category>{escape(n)}</Category>\n" for n in names)
    rows = "".join(
        f'      <Row index="{i}"><F>{i}</F><F>{escape(n)}</F><F>{colours[i][0]}</F><F>{colours[i][1]}</F><F>{colours[i][2]}</F></Row>\n'
        for i, n in enumerate(names))
    return (
        "<PAMDataset>\n  <PAMRasterBand band=\"1\">\n    <CategoryNames>\n" + categories + "    </CategoryNames>\n"
        '    <GDALRasterAttributeTable tableType="thematic">\n'
        '      <FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>5</Usage></FieldDefn>\n'
        '      <FieldDefn index="1"><Name>Class</Name><Type>2</Type><Usage>2</Usage></FieldDefn>\n'
        '      <FieldDefn index="2"><Name>Red</Name><Type>0</Type><Usage>6</Usage></FieldDefn>\n'
        '      <FieldDefn index="3"><Name>Green</Name><Type>0</Type><Usage>7</Usage></FieldDefn>\n'
        '      <FieldDefn index="4"><Name>Blue</Name><Type>0</Type><Usage>8</Usage></FieldDefn>\n'
        + rows + "    </GDALRasterAttributeTable>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )


def write_category_table(map_path: str | Path, class_names: Sequence[str]) -> Path:
    """Write ``MAP.tif.aux.xml`` beside the map (atomically): GDAL reads it as the band's category names and
    attribute table. A GeoTIFF cannot hold category names itself; the ``CLASS_<id>`` tags are in the file."""
    from terralite.atomic import write_text_atomic

    aux = Path(f"{map_path}.aux.xml")
    write_text_atomic(aux, category_table_xml(class_names))
    return aux


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

    def __init__(self, dst, masked_src=None, nonfinite_bands: list[int] | None = None, masked: bool = True):
        # nonfinite_bands: for a float input, the bands whose NaN/Inf pixels also end as nodata (0)
        self.dst, self.masked_src, self.nonfinite_bands, self.masked = dst, masked_src, nonfinite_bands, masked
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
        if self.masked_src is not None and self.masked:
            block[self.masked_src.dataset_mask(window=window) == 0] = 0
        if self.masked_src is not None and self.nonfinite_bands is not None:
            from terralite.data.raster import read_from

            raw = read_from(self.masked_src, bands=self.nonfinite_bands, window=window)
            block[~np.isfinite(raw).all(axis=0)] = 0
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

    from terralite.output_guard import check_output_file, refuse_output_over_inputs

    input_path, out_path = Path(input_path), Path(out_path)
    check_output_file(out_path, "--out")
    if out_path.suffix.lower() not in (".tif", ".tiff"):
        raise TerraLiteError(f"--out {out_path} must name a GeoTIFF (.tif or .tiff): the map is written as one; "
                             "use --preview FILE.png for a picture")
    refuse_output_over_inputs(out_path, [input_path], "--out")
    if preview is not None:
        check_output_file(preview, "--preview")
        refuse_output_over_inputs(preview, [input_path, out_path], "--preview")
    if batch < 1:
        raise TerraLiteError(f"--batch-size must be at least 1, got {batch}")
    if overlap is None:
        overlap = tile // 8
    if predictor.fixed_batch is not None:
        batch = predictor.fixed_batch  # a static-batch export accepts no other
    mean, std = predictor.normalisation["mean"], predictor.normalisation["std"]
    num_classes = predictor.num_classes
    peak = _PeakRss()  # the peak while mapping, not that of whatever ran before in this process (e.g. the demo's training)
    start = time.perf_counter()

    # GDAL's block cache defaults to 5 % of RAM and would grow with the raster; a tile row of input blocks fits.
    # Named inputs (indices, composites) and Sentinel-2 band folders are read through a Scene on the finest grid.
    scene = _input_scene(predictor, input_path)
    with rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_CACHEMAX=GDAL_CACHE_MB), \
            open_raster(scene.reference if scene else input_path) as src:
        bands = _band_indexes(src, predictor, input_path) if scene is None else None
        if scene is None:
            check_scene_range(src, bands, mean, std, input_path, predictor.name)
        height, width = src.height, src.width
        layout = _layout(height, width, tile, overlap, predictor)
        weight = blend_ramp(layout.tile_h, overlap)[:, None] * blend_ramp(layout.tile_w, overlap)[None, :]
        blender = _Blender(num_classes, layout, height, width, weight)
        masked = _has_mask(src) if scene is None else scene.has_nodata()
        floating = scene is None and np.dtype(src.dtypes[0]).kind == "f"
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
                if raw.dtype.kind == "f":  # NaN/Inf pixels are nodata: the network sees the mean there, the map gets 0
                    raw = np.where(np.isfinite(raw), raw, np.asarray(mean, dtype=raw.dtype)[:, None, None])
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
                    (contextlib.nullcontext() if not (masked or floating) else _input_scene(predictor, input_path) if scene
                     else open_raster(input_path)) as mask_src:
                dst.write_colormap(1, {i: (*rgb, 255) for i, rgb in palette_colours(num_classes).items()})
                describe_map(dst, predictor, tile, overlap)
                writer = _BlockRowWriter(dst, mask_src, nonfinite_bands=(bands or list(range(src.count))) if floating else None,
                                         masked=masked)
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

        write_category_table(out_path, predictor.class_names)
        seconds = time.perf_counter() - start
        if scene is not None:
            scene.close()
        if preview is not None:
            render_preview(out_path, preview, predictor.class_names,
                           input_path=scene.reference if scene is not None else input_path, bands=bands)
    return {
        "output": str(out_path),
        "preview": str(preview) if preview is not None else None,
        "width": width,
        "height": height,
        "tiles": tiles_done,
        "seconds": round(seconds, 3),
        "mpx_per_s": round(width * height / 1e6 / max(seconds, 1e-9), 3),
        "peak_rss_mb": peak.mb(),
    }


class _PeakRss:
    """Peak resident memory (MB) of this process from now on: Linux's high-water mark ``VmHWM``, reset by
    writing 5 to ``/proc/self/clear_refs``; elsewhere the process's lifetime peak (``ru_maxrss``)."""

    def __init__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False

    def mb(self) -> float:
        if self.reset:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def render_preview(map_path: str | Path, png_path: str | Path, class_names: Sequence[str], max_side: int = 1024,
                   input_path: str | Path | None = None, bands: Sequence[int] | None = None) -> Path:
    """A downsampled colour PNG of a class map with a legend and a scale bar; with ``input_path``, the input
    (its first three model bands, contrast-stretched) beside it. Rasters are read decimated (overviews),
    never whole."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    with _open_decimated(map_path, max_side) as (src, shape):
        classes = src.read(1, out_shape=shape, resampling=_nearest())
        metres_per_px = _metres_per_pixel(src) * src.width / shape[1]
    colours = palette_colours(len(class_names))
    lut = np.zeros((256, 3), dtype=np.uint8)
    for value, rgb in colours.items():
        lut[value] = rgb
    present = set(np.unique(classes).tolist())
    handles = [Patch(facecolor=np.array(colours[i]) / 255, edgecolor="black", label=f"{i} {name}")
               for i, name in enumerate(class_names, start=1) if i in present]
    if 0 in present:
        handles.append(Patch(facecolor="black", edgecolor="black", label="0 no data"))
    panels = [("map", lut[classes])]
    if input_path is not None:
        panels.insert(0, ("input", _input_rgb(input_path, shape, bands)))
    aspect = shape[1] / shape[0]
    height = 6.0
    fig, axes = plt.subplots(1, len(panels), figsize=(height * aspect * len(panels) + 2.6, height + 0.6), dpi=100, squeeze=False)
    for ax, (title, image) in zip(axes[0], panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title}: {Path(input_path if title == 'input' else map_path).name}", fontsize=10)
        if metres_per_px:
            _scale_bar(ax, shape[1], metres_per_px)
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=9,
                       title="class", title_fontsize=9)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(png_path)


def _nearest():
    from rasterio.enums import Resampling

    return Resampling.nearest


@contextlib.contextmanager
def _open_decimated(path: str | Path, max_side: int):
    """An open raster and the ``(h, w)`` its longest side fits in ``max_side`` px at."""
    from terralite.data.raster import open_raster

    with open_raster(path) as src:
        scale = max(1.0, max(src.height, src.width) / max_side)
        yield src, (max(1, round(src.height / scale)), max(1, round(src.width / scale)))


def _input_rgb(path: str | Path, shape: tuple[int, int], bands: Sequence[int] | None) -> np.ndarray:
    """``(h, w, 3)`` uint8 of the input's first three (model) bands, each stretched between its 2nd and 98th
    percentile; a single band is shown grey."""
    from rasterio.enums import Resampling

    from terralite.data.raster import open_raster

    with open_raster(path) as src:
        chosen = list(bands) if bands is not None else list(range(src.count))
        indexes = [b + 1 for b in chosen[:3]]
        data = src.read(indexes, out_shape=(len(indexes), *shape), resampling=Resampling.bilinear).astype(np.float32)
        valid = src.dataset_mask(out_shape=shape) > 0
    if data.shape[0] < 3:
        data = np.repeat(data[:1], 3, axis=0)
    out = np.zeros((*shape, 3), dtype=np.uint8)
    for c in range(3):
        band = data[c]
        low, high = np.percentile(band[valid], (2, 98)) if valid.any() else (0.0, 1.0)
        out[..., c] = np.clip((band - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    out[~valid] = 0
    return out


def _metres_per_pixel(src) -> float | None:
    """Ground size of one pixel (x) in metres: from the geotransform, in degrees converted at the raster's
    centre latitude for a geographic CRS; None without a CRS."""
    if src.crs is None:
        return None
    size = abs(src.transform.a)
    if src.crs.is_geographic:
        lat = src.transform.f + src.transform.e * src.height / 2
        return size * 111_320 * np.cos(np.radians(lat))
    return size * (src.crs.linear_units_factor[1] if src.crs.linear_units_factor else 1.0)


def _scale_bar(ax, width_px: int, metres_per_px: float) -> None:
    """A bar of a round length (1, 2 or 5 x 10^k m) about a fifth of the image wide, at the lower left."""
    from matplotlib.patches import Rectangle

    target = width_px * metres_per_px / 5
    exponent = 10 ** np.floor(np.log10(target))
    length = max(m * exponent for m in (1, 2, 5) if m * exponent <= target)
    px = length / metres_per_px
    x0, y0 = width_px * 0.04, ax.get_ylim()[0] - width_px * 0.04  # image y grows downwards
    bar_h = max(width_px * 0.012, 1)
    ax.add_patch(Rectangle((x0, y0 - bar_h), px, bar_h, facecolor="white", edgecolor="black", linewidth=1))
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    ax.text(x0 + px / 2, y0 - bar_h * 1.8, label, ha="center", va="bottom", fontsize=9, color="black",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1.5})
