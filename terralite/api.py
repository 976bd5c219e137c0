"""The Python API: the few calls people reach for, as thin wrappers over the library.

``import terralite`` exposes these names lazily (see ``terralite/__init__.py``): importing the package loads
no torch, reads no file and selects no device; the first use of a name imports what it needs.

Every function here is one library call (the CLI subcommands make the same calls), so what works on the
command line works from Python with the same settings and the same errors
(:class:`terralite.errors.TerraLiteError`, one line naming the file or value and the fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

#: search method → module with ``resolve_search_config`` and ``search`` (the methods of ``terralite search``)
SEARCH_METHODS = {
    "fasterseg": "terralite.nas.fasterseg.search",
    "sparsemask": "terralite.nas.sparsemask.search",
}


def build_model(spec_or_name: str | dict | Path, *, in_channels: int | None = None, num_classes: int | None = None,
                pretrained: str | Path | None = None):
    """A freshly initialised ``nn.Module`` (eval mode) from a baseline name, a spec/architecture JSON or a spec dict.

    ``pretrained`` initialises the encoder from a weights file you provide (see
    :func:`terralite.models.build_model`); nothing is downloaded. Every network returns logits
    ``(B, num_classes, H, W)`` at the input size.

    >>> import terralite, torch
    >>> net = terralite.build_model("unet-resnet18", num_classes=8)
    >>> tuple(net(torch.zeros(1, 3, 64, 64)).shape)
    (1, 8, 64, 64)
    """
    from terralite.models import build_model as build_spec
    from terralite.models import resolve_model_reference, validate_spec, with_io

    if isinstance(spec_or_name, dict):
        spec = with_io(validate_spec(spec_or_name), in_channels, num_classes)
    else:
        spec, _ = resolve_model_reference(str(spec_or_name), in_channels, num_classes)
    return build_spec(spec, pretrained=pretrained).eval()


def load_model(ckpt: str | Path, *, device: str = "cpu"):
    """The trained network of a TerraLite checkpoint (``best.pt``, ``pruned.pt``, ...), in eval mode on ``device``.

    The checkpoint's spec, metrics and config stay available through :func:`terralite.checkpoint.load_checkpoint`.

    >>> import terralite
    >>> net = terralite.load_model("runs/sm/best.pt")  # doctest: +SKIP
    """
    from terralite.errors import TerraLiteError
    from terralite.models import load_model as load_reference

    path = Path(ckpt)
    if not path.is_file():  # else a missing file would be taken for a baseline name
        raise TerraLiteError(f"checkpoint {path} does not exist; pass a .pt file written by terralite train, prune or distill")
    model, _, checkpoint = load_reference(str(path))  # a file that is not a TerraLite checkpoint fails with its own message
    if checkpoint is None:
        raise TerraLiteError(f"{path} is a model spec, not a checkpoint: it holds no weights; use terralite.build_model({str(path)!r})")
    return model.to(device)


def list_models() -> list[str]:
    """The names of the baseline zoo (``unet-resnet34``, ``segformer-mitb0``, ...), sorted.

    Searched networks are architecture JSONs (``RUN/student.json``, ``RUN/arch.json``); ``terralite models``
    also lists the search spaces and model kinds.

    >>> import terralite
    >>> "unet-resnet34" in terralite.list_models()
    True
    """
    from terralite.benchmark.zoo import BASELINES

    return BASELINES.names()


def model_catalogue(size: int | None = None, in_channels: int = 3, num_classes: int = 8,
                    names: Sequence[str] | None = None) -> dict:
    """Every registry entry: the baseline zoo, the search spaces and the model kinds (``terralite models``).

    ``names`` keeps only those baselines and search spaces (the model kinds are always all listed).

    With ``size``, baselines get ``params_m``/``gmacs`` at ``1 x in_channels x size x size`` (fvcore, built
    and traced one by one: large networks take a while at 1024 px on a CPU) and search spaces the analytic
    cost of their lightest and heaviest architectures.
    """
    from terralite.benchmark.profiler import profile_model
    from terralite.benchmark.zoo import BASELINES
    from terralite.errors import TerraLiteError
    from terralite.models import MODEL_KINDS, build_model as build_spec
    from terralite.search_spaces.base import SEARCH_SPACES

    if size is not None and (size < 32 or size % 32):
        raise TerraLiteError(f"--size {size} must be a positive multiple of 32 (every network downsamples by 32)")
    known = BASELINES.names() + SEARCH_SPACES.names()
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise TerraLiteError(f"unknown baseline or search space {', '.join(unknown)}; valid names: {', '.join(known)}")
    wanted = set(names or known)
    baselines = []
    for name in (n for n in BASELINES.names() if n in wanted):
        builder = BASELINES.get(name)
        entry = {"name": name, "description": _first_line(builder.__doc__) or f"built by {builder.__module__}.{builder.__qualname__}"}
        if size is not None:
            spec = {"kind": "baseline", "name": name, "in_channels": in_channels, "num_classes": num_classes}
            counted = profile_model(build_spec(spec).eval(), size, in_channels)
            entry.update(params_m=counted["params_m"], gmacs=counted["gmacs"])
        baselines.append(entry)
    spaces = []
    for name in (n for n in SEARCH_SPACES.names() if n in wanted):
        space = SEARCH_SPACES.get(name)(in_channels=in_channels, num_classes=num_classes)
        entry = {"name": name, "description": _first_line(type(space).__doc__)}
        if size is not None:
            for bound, arch in (("lightest", space.min_arch()), ("heaviest", space.max_arch())):
                cost = space.cost(arch, size)
                entry[bound] = {"params_m": round(cost["params"] / 1e6, 3), "gmacs": round(cost["macs"] / 1e9, 3)}
        spaces.append(entry)
    kinds = []
    for name in MODEL_KINDS.names():
        builder = MODEL_KINDS.get(name)
        kinds.append({"name": name, "builder": f"{builder.__module__}:{builder.__qualname__}",
                      "pretrained": getattr(builder, "pretrained_weights", None)})
    return {"size": size, "in_channels": in_channels, "num_classes": num_classes,
            "baselines": baselines, "search_spaces": spaces, "model_kinds": kinds}


def _first_line(doc: str | None) -> str:
    """The first paragraph of a docstring as plain text (reST roles and literals unwrapped)."""
    import re

    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def load_predictor(model: str | Path, *, runtime: str = "auto", device: str = "auto", tta: str = "none",
                   tile: int = 1024, batch_size: int = 1, **normalisation: Any):
    """A model ready to map rasters: a checkpoint (PyTorch), an ONNX file (ONNX Runtime) or TensorRT.

    ``runtime="auto"`` picks by the file's suffix. ``bands``/``mean``/``std`` keywords override the stored
    input record; ``tile`` and ``batch_size`` matter only to TensorRT (its engine is built for one shape).
    Pass the result to :func:`predict_raster`.

    >>> import terralite
    >>> predictor = terralite.load_predictor("runs/sm/best.pt", tta="hflip")  # doctest: +SKIP
    """
    from terralite.benchmark.mapping import load_any_predictor

    return load_any_predictor(model, runtime=runtime, device=device, tta=tta, tile=tile, batch_size=batch_size,
                              normalisation=normalisation or None)


def predict_raster(predictor, input_path: str | Path, out_path: str | Path, *, tile: int = 1024,
                   overlap: int | None = None, batch_size: int = 1, preview: str | Path | None = None,
                   progress: bool = False) -> dict:
    """Map a GeoTIFF of any size into a georeferenced uint8 class GeoTIFF (tiled, blended, streamed).

    ``predictor`` comes from :func:`load_predictor`. Returns a summary (``output``, ``width``, ``height``,
    ``tiles``, ``seconds``, ...). See :func:`terralite.predict.predict_raster`.

    >>> import terralite
    >>> predictor = terralite.load_predictor("runs/sm/best.pt")  # doctest: +SKIP
    >>> terralite.predict_raster(predictor, "scene.tif", "scene_map.tif", preview="scene_map.png")  # doctest: +SKIP
    """
    from terralite.predict import predict_raster as predict

    return predict(predictor, input_path, out_path, tile=tile, overlap=overlap, batch=batch_size, preview=preview,
                   progress=progress)


def profile(model: Any, *, size: int = 1024, in_channels: int | None = None) -> dict:
    """Parameters (M) and GMACs at ``1 x C x size x size`` (fvcore, cross-checked with torch's flop counter).

    ``model`` is a baseline name, a spec/architecture JSON, a checkpoint or an ``nn.Module``. Keys:
    ``params_m`` (the deployed network), ``params_total_m``, ``gmacs``, ``flop_counter_gmacs``,
    ``disagreement_pct``, ``flagged``, ...

    >>> import terralite
    >>> round(terralite.profile("unet-resnet18", size=64)["params_m"], 2)
    14.33
    """
    from terralite.benchmark.profiler import profile_model, profile_reference

    if isinstance(model, (str, Path)):
        return profile_reference(str(model), size, in_channels)
    return profile_model(model, size, in_channels or 3)


def bench(models: str | Sequence[str], out: str | Path, *, size: int = 1024, runtime: str = "torch", device: str = "cpu",
          tta: Sequence[str] = ("none",), warmup: int = 10, iters: int = 300, **options: Any) -> list[dict]:
    """Time models under stated conditions; appends the benchmark rows to the JSONL file ``out`` and returns them.

    ``models`` are baseline names, spec JSONs, checkpoints or ONNX files; ``options`` are those of
    :func:`terralite.benchmark.bench_run.bench_models` (``batch_size``, ``threads``, ``data``, ``precision``, ...).
    Each row holds params, GMACs, latency mean/median/p90 (ms), FPS, peak memory and the conditions.

    >>> import terralite
    >>> rows = terralite.bench("unet-resnet18", "rows.jsonl", size=64, warmup=1, iters=2)  # doctest: +SKIP
    """
    from terralite.benchmark.bench_run import bench_models

    refs = [models] if isinstance(models, (str, Path)) else list(models)
    rows: list[dict] = []
    bench_models([str(r) for r in refs], out, size=size, runtime=runtime, device=device, tta=tta, warmup=warmup,
                 iters=iters, on_rows=lambda ref, got, target: rows.extend(got), **options)
    return rows


def search(method: str, *, data: str | Path, out: str | Path, preset: str | None = None,
           pretrained: str | Path | None = None, **settings: Any) -> Path:
    """Run an architecture search (``fasterseg`` or ``sparsemask``); returns the run folder.

    ``settings`` are config fields as ``--set`` takes them (``epochs=``, ``budget_gmacs=``, ...). The run
    folder holds the derived architecture: ``student.json`` (FasterSeg) or ``arch.json`` (SparseMask).
    ``pretrained`` (SparseMask only) is a torchvision ``mobilenet_v2`` ImageNet weights file for the encoder.

    >>> import terralite
    >>> run = terralite.search("sparsemask", data="data/OpenEarthMap", out="runs/sm-search")  # doctest: +SKIP
    """
    import importlib

    from terralite.errors import TerraLiteError

    if method not in SEARCH_METHODS:
        raise TerraLiteError(f"unknown search method {method!r}; valid methods: {', '.join(SEARCH_METHODS)}")
    if pretrained is not None:
        if method != "sparsemask":
            raise TerraLiteError(f"pretrained weights initialise the SparseMask encoder; the {method} search takes none")
        settings["encoder_weights"] = str(pretrained)
    module = importlib.import_module(SEARCH_METHODS[method])
    cfg = module.resolve_search_config(preset, None, None, data=str(data), out=str(out), **settings)
    return Path(module.search(cfg))


def train(model: str | Path, *, data: str | Path, out: str | Path, preset: str | None = None, **settings: Any) -> Path:
    """Train a network (baseline name, architecture JSON or checkpoint) on a dataset; returns the run folder.

    ``settings`` are config fields (``epochs=``, ``crop=``, ``batch_size=``, ``pretrained=``, ...); the run
    folder holds ``best.pt``, ``last.pt``, ``log.csv`` and ``config.yaml``.

    >>> import terralite
    >>> run = terralite.train("unet-mobilenetv2", data="data/OpenEarthMap", out="runs/unet")  # doctest: +SKIP
    """
    from terralite.engine.presets import resolve_train_config
    from terralite.engine.train import train as run_training

    cfg = resolve_train_config(preset, None, None, model=str(model), data=str(data), out=str(out), **settings)
    return Path(run_training(cfg))
