"""A checkpoint mapped through a TensorRT engine: the benchmark's TensorRT runner wrapped as a core
:class:`terralite.predict.Predictor` (``terralite predict --runtime tensorrt``).

The engine is built from the checkpoint for one input shape, ``batch_size x C x tile x tile`` (TensorRT
plans kernels and memory for that shape), so the predictor reports that tile size and batch as fixed; TTA
views are torch ops around the engine call, as in the latency runs.
"""

from __future__ import annotations

from pathlib import Path

from terralite.errors import TerraLiteError

#: Files a TensorRT predictor cannot start from: it builds its engine from a checkpoint for the tile size.
_EXPORTED_SUFFIXES = (".onnx", ".engine", ".plan")


def tensorrt_predictor(model: str | Path, tile: int = 1024, batch_size: int = 1, device: str = "auto", tta: str = "none",
                       normalisation: dict | None = None):
    """A :class:`~terralite.predict.Predictor` running checkpoint ``model`` as a TensorRT fp32 engine.

    ``normalisation`` overrides the checkpoint's ``input`` record (keys given replace those stored);
    ``device`` ``auto`` means ``cuda``.
    """
    import torch

    from terralite.benchmark.runners import build_runner
    from terralite.benchmark.tensorrt_engine import require_tensorrt
    from terralite.models import describe, load_model
    from terralite.predict import Predictor, check_normalisation
    from terralite.tta import check_tta_mode

    require_tensorrt()
    if Path(model).suffix.lower() in _EXPORTED_SUFFIXES:
        raise TerraLiteError(f"--runtime tensorrt builds its engine from a checkpoint for the tile size; pass the .pt file instead of {model}")
    check_tta_mode(tta)
    if batch_size < 1:
        raise TerraLiteError(f"--batch-size must be at least 1, got {batch_size}")
    device = "cuda" if device == "auto" else device
    module, spec, ckpt = load_model(str(model))
    given = {k: v for k, v in (normalisation or {}).items() if v is not None}
    norm = check_normalisation(dict((ckpt or {}).get("input") or {}, **given), spec["in_channels"], describe(spec))
    runner = build_runner("tensorrt", module, size=tile, in_channels=spec["in_channels"], batch=batch_size,
                          device=device, precision="fp32", tta=tta)

    def forward(batch):
        with torch.no_grad():
            return runner(torch.from_numpy(batch).to(runner.device)).float().cpu().numpy()

    return Predictor(forward, spec["in_channels"], spec["num_classes"], norm, describe(spec),
                     fixed_size=(tile, tile), fixed_batch=batch_size)
