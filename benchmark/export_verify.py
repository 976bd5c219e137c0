"""``terralite export``: a deployable, verified, self-describing model file from a checkpoint.

:func:`export_model` exports the network a checkpoint (spec JSON or baseline name) describes to a single
ONNX file (static or dynamic height/width) or a TensorRT engine, and verifies it against PyTorch before
it is left under its name: on a seeded random input and on a real tile (the checkpoint's training data, or
``verify_data``), normalised as in training. The largest absolute logit difference must stay within the
tolerance, else the export fails and nothing is written. The ONNX file carries the model spec, the input
normalisation and the class names (:mod:`terralite.onnx_metadata`), so ``terralite predict`` runs from it
alone. The plain export and the numerical check are :mod:`terralite.benchmark.export`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from terralite.atomic import atomic_path, ensure_parent
from terralite.benchmark.export import DEFAULT_OPSET, export_onnx, verify_onnx
from terralite.errors import TerraLiteError

#: Default tolerance on the max abs logit difference (fp32; fp16 engines are held to a looser one).
TOLERANCE_FP32 = 1e-3
TOLERANCE_FP16 = 5e-2
EXPORT_FORMATS = ("onnx", "tensorrt")


def default_tolerance(fp16: bool = False) -> float:
    return TOLERANCE_FP16 if fp16 else TOLERANCE_FP32


def verification_tile(source, normalisation: dict | None, in_channels: int, size: int, name: str):
    """A real tile ``(1, C, size, size)`` normalised as in training, or None when ``source`` is None.

    ``source`` is a GeoTIFF (its centre window) or a dataset root (the first image of its val, test or
    train list, with the checkpoint's normalisation; the split's own statistics when the checkpoint has none).
    """
    from terralite.predict import pad_to

    if source is None:
        return None
    source = Path(source)
    if source.is_dir():
        from terralite.data.openearthmap import OpenEarthMapDataset, split_list_path

        split = next((s for s in ("val", "test", "train") if split_list_path(source, s).is_file()), None)
        if split is None:
            raise TerraLiteError(f"verification data {source} has no val.txt, test.txt or train.txt; pass a dataset root or a GeoTIFF")
        norm = normalisation or {}
        dataset = OpenEarthMapDataset(source, split, bands=norm.get("bands"), mean=norm.get("mean"), std=norm.get("std"),
                                      size_policy="none", require_labels=False)
        image = dataset[0][0].numpy()
    else:
        from rasterio.windows import Window

        from terralite.data.raster import open_raster, read_from
        from terralite.predict import check_normalisation

        norm = check_normalisation(normalisation, in_channels, name) if normalisation else None
        with open_raster(source) as src:  # only the centre window: the file may be a large scene
            h, w = min(size, src.height), min(size, src.width)
            window = Window((src.width - w) // 2, (src.height - h) // 2, w, h)
            raw = read_from(src, bands=norm["bands"] if norm else None, window=window).astype(np.float32)
        if norm:
            mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
        else:  # no training statistics: standardise the tile by its own
            mean, std = raw.mean(axis=(1, 2)), np.maximum(raw.std(axis=(1, 2)), 1e-6)
        image = (raw - mean[:, None, None]) / std[:, None, None]
    if image.shape[0] != in_channels:
        raise TerraLiteError(f"verification tile from {source} has {image.shape[0]} bands but model {name} takes {in_channels}")
    # Centre crop to the export size; mirror-pad tiles smaller than it.
    _, h, w = image.shape
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    image = pad_to(image[:, top:top + size, left:left + size], size, size)
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]


def training_data(ckpt: dict | None) -> Path | None:
    """The dataset root a checkpoint was trained on, when it is still there."""
    root = ((ckpt or {}).get("config") or {}).get("data")
    if isinstance(root, dict):  # a data config mapping rather than a bare root
        root = root.get("root")
    return Path(root) if isinstance(root, (str, Path)) and root and Path(root).is_dir() else None


#: The lowest opset an export may ask for: the torch.export-based exporter writes opset 18 or newer (asked for
#: an older one it kept 18 without saying so).
MIN_OPSET = 18


def check_opset(opset: int | None) -> None:
    """Refuse an opset the exporter cannot write (below :data:`MIN_OPSET` or above what this onnx knows)."""
    import onnx.defs

    highest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= highest:
        raise TerraLiteError(f"--opset {opset} cannot be written: choose {MIN_OPSET}..{highest} (default {DEFAULT_OPSET})")


def _file_opset(path) -> int | None:
    """The default-domain opset the ONNX file at ``path`` was written with (what the exporter really did)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def export_model(ref: str, out, fmt: str = "onnx", size: int = 1024, dynamic: bool = False, opset: int | None = None,
                 fp16: bool = False, tolerance: float | None = None, verify_data=None) -> dict:
    """Export the model ``ref`` names to ``out`` and verify it; returns ``{"path", "max_abs_diff", "lines"}``.

    ``max_abs_diff`` maps each verification input (``random``, ``real``) to the largest absolute logit
    difference from PyTorch; above ``tolerance`` (default :func:`default_tolerance`) the export fails and
    nothing is left at ``out``. ``lines`` are the human-readable report, one line each.
    """
    from terralite.models import describe, load_model
    from terralite.onnx_metadata import onnx_metadata, write_onnx_metadata
    from terralite.predict import SIZE_MULTIPLE, default_class_names

    from terralite.output_guard import check_output_file, refuse_output_over_inputs

    out = ensure_parent(check_output_file(out, "--out"))
    refuse_output_over_inputs(out, [ref, verify_data], "--out")
    if size <= 0 or size % SIZE_MULTIPLE:
        raise TerraLiteError(f"--size must be a positive multiple of {SIZE_MULTIPLE}, got {size}")
    if fmt not in EXPORT_FORMATS:
        raise TerraLiteError(f"unknown export format {fmt!r}; use {' or '.join(EXPORT_FORMATS)}")
    if fmt == "onnx" and fp16:
        raise TerraLiteError("--fp16 applies to TensorRT engines; ONNX files are exported in float32")
    if fmt == "onnx" and out.suffix.lower() != ".onnx":
        raise TerraLiteError(f"--out must name an .onnx file for --format onnx, got {out}")
    check_opset(opset)
    tolerance = tolerance if tolerance is not None else default_tolerance(fp16)
    model, spec, ckpt = load_model(ref)
    name = describe(spec)
    normalisation = (ckpt or {}).get("input")
    data = verify_data if verify_data is not None else (training_data(ckpt) if normalisation else None)
    real = verification_tile(data, normalisation, spec["in_channels"], size, name)
    inputs = {"random": torch.randn(1, spec["in_channels"], size, size, generator=torch.Generator().manual_seed(0))}
    if real is not None:
        inputs["real"] = real
    if fmt == "tensorrt":
        return _export_tensorrt(model, spec, out, size, dynamic, opset, fp16, tolerance, inputs)

    lines = []
    metadata = onnx_metadata(spec, normalisation, default_class_names(spec["num_classes"], ckpt))
    with atomic_path(out) as tmp:
        export_onnx(model, tmp, size=size, in_channels=spec["in_channels"], dynamic=dynamic,
                    opset=opset or DEFAULT_OPSET)
        written = _file_opset(tmp)
        if opset is not None and written != opset:
            raise TerraLiteError(f"the exporter wrote opset {written}, not the --opset {opset} asked for; nothing written to {out}")
        write_onnx_metadata(tmp, metadata)
        diffs = {}
        for kind, x in inputs.items():
            diffs[kind] = verify_onnx(model, tmp, x)
            lines.append(f"verify {kind} input {tuple(x.shape)}: max abs logit difference {diffs[kind]:.3g} (tolerance {tolerance:g})")
        if real is None:
            lines.append("no real verification tile: the checkpoint names no training data found here; pass --verify-data ROOT|TIF")
        bad = {k: v for k, v in diffs.items() if not v <= tolerance}
        if bad:
            raise TerraLiteError(
                f"ONNX export of {name} disagrees with PyTorch: max abs difference "
                + ", ".join(f"{v:.3g} ({k} input)" for k, v in bad.items())
                + f" > tolerance {tolerance:g}; nothing written to {out}"
            )
    shape = "dynamic batch/height/width" if dynamic else f"static 1x{spec['in_channels']}x{size}x{size}"
    lines.append(f"wrote {out} ({name}, {shape}, opset {written}, {out.stat().st_size / 1e6:.1f} MB)")
    return {"path": str(out), "max_abs_diff": diffs, "lines": lines}


def _export_tensorrt(model, spec, out, size, dynamic, opset, fp16, tolerance, inputs) -> dict:
    """A TensorRT engine for ``size`` x ``size`` tiles, built from a verified static ONNX export."""
    from terralite.benchmark.tensorrt_engine import build_engine, require_tensorrt

    require_tensorrt()  # the clear message before any work
    if dynamic:
        raise TerraLiteError("TensorRT engines are built for one input shape; drop --dynamic-size and pass --size")
    lines, diffs = [], {}
    with tempfile.TemporaryDirectory(prefix="terralite-export-") as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", size=size, in_channels=spec["in_channels"],
                                opset=opset or DEFAULT_OPSET)
        for kind, x in inputs.items():
            diffs[kind] = diff = verify_onnx(model, onnx_path, x)
            lines.append(f"verify ONNX graph, {kind} input: max abs logit difference {diff:.3g}")
            if not diff <= tolerance:
                raise TerraLiteError(f"the ONNX graph behind the engine disagrees with PyTorch (max abs difference {diff:.3g}); nothing written to {out}")
        build_engine(onnx_path, out, precision="fp16" if fp16 else "fp32")
    lines.append(f"wrote {out} (TensorRT {'fp16' if fp16 else 'fp32'} engine, 1x{spec['in_channels']}x{size}x{size}; "
                 f"engines run only on this GPU model and TensorRT version)")
    return {"path": str(out), "max_abs_diff": diffs, "lines": lines}
