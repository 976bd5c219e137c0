"""The demo's large-raster step: the BOLM protocol on a small synthetic Sentinel-2 scene, as CLI commands.

It writes a scene with Sentinel-2-like band files (10/20/60 m) and an 11-class BOLM label, trains a small
network for a few steps on NDVI windows (the ``bolm`` preset with a small model and window; the held-out box is
the scene's centre), evaluates the held-out windows (IoU and F1 of the five merged classes) and maps the whole
scene from its band folder — the same NDVI derived from the bands by ``predict`` from the checkpoint's inputs.
"""

from __future__ import annotations

from pathlib import Path

#: Scene side (10 m px) and window of the full and the fast demo; the model is small enough for a CPU.
FULL_SCENE, FULL_WINDOW, FAST_SCENE, FAST_WINDOW = 512, 128, 256, 64
MODEL = "lraspp-mobilenetv3"


def large_raster_artefacts(ctx) -> list[Path]:
    return [ctx.path("large", "run", "last.pt"), ctx.path("large", "eval.json"), ctx.path("large", "map.tif")]


def run_large_raster(ctx) -> None:
    from terralite.demo import FAST, terralite

    fast = ctx.sizes == FAST
    size, window = (FAST_SCENE, FAST_WINDOW) if fast else (FULL_SCENE, FULL_WINDOW)
    scene = ctx.path("large", "scene")
    scene.parent.mkdir(parents=True, exist_ok=True)
    terralite(ctx, "data", "synth-scene", scene, "--size", size, "--sentinel2", "--window", window, "--inputs", "ndvi")
    terralite(ctx, "data", "stats", scene / "data.yaml", "--split", "train")
    terralite(ctx, "train", "--preset", "bolm", "--config", scene / "scene.yaml", "--model", MODEL,
              "--epochs", 1, "--set", f"steps_per_epoch={1 if fast else 6}", "--batch-size", 4,
              "--set", "val_split=null", "--device", ctx.device, "--out", ctx.path("large", "run"))
    terralite(ctx, "eval", ctx.path("large", "run", "last.pt"), "--data", scene / "data.yaml", "--split", "test",
              "--device", ctx.device, "--out", ctx.path("large", "eval.json"))
    terralite(ctx, "predict", ctx.path("large", "run", "last.pt"), scene / "bands", "--out", ctx.path("large", "map.tif"),
              "--tile", 256 if not fast else 128, "--device", ctx.device, "--preview", ctx.path("large", "map.png"),
              "--quiet")
