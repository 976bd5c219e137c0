"""Mapping a raster with a model on any runtime (``terralite predict``).

The core (:mod:`terralite.predict`) maps with PyTorch checkpoints and ONNX files; TensorRT is a runtime
of this package, a floor above the core, so the choice of runtime — and with it the TensorRT predictor
(:mod:`terralite.benchmark.tensorrt_predictor`) — is made here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def load_any_predictor(model: str | Path, runtime: str = "auto", device: str = "auto", tta: str = "none",
                       normalisation: dict | None = None, tile: int = 1024, batch_size: int = 1, threads: int | None = None):
    """The :class:`~terralite.predict.Predictor` for ``model`` on ``runtime`` (``auto``: by the file's suffix).

    ``tile`` and ``batch_size`` matter only to TensorRT, whose engine is built for that one input shape.
    """
    from terralite.predict import load_predictor, resolve_runtime

    if resolve_runtime(Path(model), runtime) == "tensorrt":
        from terralite.benchmark.tensorrt_predictor import tensorrt_predictor

        return tensorrt_predictor(model, tile=tile, batch_size=batch_size, device=device, tta=tta, normalisation=normalisation)
    return load_predictor(model, runtime=runtime, device=device, tta=tta, normalisation=normalisation, threads=threads)


def map_raster(model: str | Path, input_path: str | Path, out: str | Path, *, runtime: str = "auto", device: str = "auto",
               tta: str = "none", tile: int = 1024, overlap: int | None = None, batch_size: int = 1,
               preview: str | Path | None = None, bands: Sequence[int] | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, progress: bool = True, threads: int | None = None) -> dict:
    """Map ``input_path`` with ``model`` into the class GeoTIFF ``out``; returns the summary of
    :func:`terralite.predict.predict_raster`.

    ``bands``, ``mean`` and ``std`` override the model's input record (None keeps the stored value). The
    cheap checks (output folders, a readable input raster) come first: a bad path does not wait for a model
    to load or an engine to build. ``threads`` sets torch's CPU threads and ONNX Runtime's intra-op threads.
    """
    from terralite.atomic import ensure_parent
    from terralite.data.raster import raster_info
    from terralite.output_guard import refuse_output_over_inputs
    from terralite.predict import predict_raster

    ensure_parent(out)
    refuse_output_over_inputs(out, [model, input_path], "--out")
    refuse_output_over_inputs(preview, [model, input_path, out], "--preview")
    if preview is not None:
        ensure_parent(preview)
    if Path(input_path).is_dir():  # Sentinel-2 band files
        from terralite.data.scene import band_files

        band_files(input_path)
    else:
        raster_info(input_path)
    if threads:
        import torch

        torch.set_num_threads(threads)
    override = {k: v for k, v in {"bands": bands, "mean": mean, "std": std}.items() if v is not None} or None
    predictor = load_any_predictor(model, runtime=runtime, device=device, tta=tta, normalisation=override, tile=tile,
                                   batch_size=batch_size, threads=threads)
    return predict_raster(predictor, input_path, out, tile=tile, overlap=overlap, batch=batch_size, preview=preview,
                          progress=progress)
