"""The main job: the whole suite end to end on a synthetic dataset, as a list of ``terralite`` commands.

Each :class:`Step` runs one or more ``terralite`` subcommands (through :func:`terralite.cli.main`, exactly as
a user would type them; each command is printed first) and names the artefacts it leaves. A step that
finished (marker ``OUT/.steps/<step>.done``, holding its duration) and whose artefacts exist is skipped, so
re-running the demo with the same output folder resumes where it stopped; an unfinished step's folders are
removed and it runs again — only folders the demo created (``OUT/.steps/created.json``): a folder it did not
create is refused, never removed. A failing step stops the demo with a message naming the step and the command.

The demo is the suite's top floor, above the CLI: it is a script of CLI commands, so it imports the CLI
(lazily), and nothing imports it — the ``terralite demo`` subcommand (:mod:`terralite.cli.demo`) only parses
its flags and calls :func:`run_demo` (or :func:`list_steps`).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from terralite.demo_large_raster import large_raster_artefacts, run_large_raster
from terralite.errors import TerraLiteError


@dataclass(frozen=True)
class DemoSizes:
    """How big each stage is. ``FULL`` fits ~15 minutes on a 2-core CPU; ``FAST`` takes seconds."""

    tiles: int
    tile_size: int
    crop: int
    search_epochs: int
    search_warmup: int
    search_batch: int
    train_epochs: int
    steps_per_epoch: int
    finetune_epochs: int
    bench_size: int
    bench_warmup: int
    bench_iters: int
    map_tile: int
    map_overlap: int
    calib_images: int


# Tune FULL here if `make demo` runs over 15 minutes on the target machine (the per-step durations are in
# OUT/.steps/*.done): the searches and the trainings scale with *_epochs x steps_per_epoch. bench_iters is the
# leaderboard's MIN_RANK_ITERS: fewer timed calls give no median to rank on (the board flags them).
FULL = DemoSizes(tiles=48, tile_size=256, crop=128, search_epochs=4, search_warmup=2, search_batch=4, train_epochs=20,
                 steps_per_epoch=10, finetune_epochs=5, bench_size=1024, bench_warmup=2, bench_iters=5,
                 map_tile=128, map_overlap=32, calib_images=8)
FAST = DemoSizes(tiles=6, tile_size=64, crop=64, search_epochs=1, search_warmup=1, search_batch=2, train_epochs=1,
                 steps_per_epoch=1, finetune_epochs=1, bench_size=64, bench_warmup=1, bench_iters=1,
                 map_tile=32, map_overlap=8, calib_images=1)

#: The baseline retrained beside the searched networks (small enough for a CPU demo).
BASELINE = "unet-mobilenetv2"


@dataclass
class DemoContext:
    out: Path
    sizes: DemoSizes
    device: str
    log: Callable[[str], None] = print
    threads: int | None = None  # CPU threads of torch (this process) and of ONNX Runtime (--threads of bench, predict)

    def threads_flags(self) -> list:
        return ["--threads", self.threads] if self.threads else []

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    @property
    def data(self) -> Path:
        return self.path("data")


@dataclass(frozen=True)
class Step:
    """One stage of the demo: ``run`` makes ``artefacts``; ``owns`` are its folders (relative to the output)."""

    name: str
    description: str
    artefacts: Callable[[DemoContext], list[Path]]
    run: Callable[[DemoContext], None]
    owns: list[str] = field(default_factory=list)


def terralite(ctx: DemoContext, *argv: str | Path) -> None:
    """Run one ``terralite`` command as a user would; a non-zero exit raises :class:`DemoStepFailed`."""
    from terralite.cli import SUBCOMMANDS, main

    args = [str(a) for a in argv]
    if args[0] not in SUBCOMMANDS:
        raise DemoStepFailed(f"this installation has no `terralite {args[0]}` command")
    ctx.log(f"$ terralite {shlex.join(args)}")
    try:
        status = main(args)
    except SystemExit as exc:  # argparse rejected the arguments
        status = exc.code if isinstance(exc.code, int) else 2
    if status:
        raise DemoStepFailed(f"`terralite {shlex.join(args)}` exited with status {status}")


class DemoStepFailed(TerraLiteError):
    """A demo step's command failed; the message names the command."""


# --------------------------------------------------------------------------- steps
# Each step: the artefacts it leaves (checked after it ran), the folders it owns (removed before a re-run
# of an unfinished step, so a half-done run never confuses the command) and the commands that make them.


def _sizes_flags(ctx: DemoContext) -> list:
    """Training flags shared by every (re)training step: a short schedule on small crops, on the demo device."""
    s = ctx.sizes
    return ["--epochs", s.train_epochs, "--crop", s.crop, "--batch-size", 4, "--device", ctx.device,
            "--set", f"max_steps_per_epoch={s.steps_per_epoch}", "--set", "checkpoint_every=0"]


def _bench_flags(ctx: DemoContext, leaderboard: bool = False) -> list:
    """Latency rows of a compression command: at the benchmark size when they go into the leaderboard,
    else (before/after rows kept in the step's own folder) at the tile size, to save the demo's time."""
    size = ctx.sizes.bench_size if leaderboard else ctx.sizes.tile_size
    return ["--bench-size", size, "--bench-iters", ctx.sizes.bench_iters]


def _best(run: Path) -> Path:
    """The checkpoint a training run leaves: best.pt when it validated, else last.pt."""
    return run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"


#: Trained networks: demo name → run folder (relative to the output folder).
TRAINED = {"fasterseg": "train/fasterseg", "sparsemask": "train/sparsemask", "baseline": "train/baseline"}


def trained_checkpoints(ctx: DemoContext) -> dict[str, Path]:
    """Every checkpoint the demo benchmarks: the retrained searched networks, the baseline, pruned and distilled."""
    ckpts = {name: _best(ctx.path(run)) for name, run in TRAINED.items()}
    ckpts["pruned"] = ctx.path("compress", "pruned", "pruned.pt")
    ckpts["distilled"] = _best(ctx.path("compress", "distilled", "distilled"))
    return ckpts


def _data(ctx):
    s = ctx.sizes
    terralite(ctx, "data", "synth", ctx.data, "--tiles", s.tiles, "--size", s.tile_size, "--seed", 0)


def _search_fasterseg(ctx):
    s = ctx.sizes
    # the tiny space (6 layers, two widths); its latency table is measured for 64 px inputs on this CPU
    terralite(ctx, "search", "fasterseg", "--data", ctx.data, "--out", ctx.path("search", "fasterseg"), "--preset", "tiny",
              "--warmup-epochs", s.search_warmup, "--epochs", s.search_epochs, "--crop", s.crop,
              "--batch-size", s.search_batch, "--device", ctx.device,
              "--set", f"steps_per_epoch={s.steps_per_epoch}")


def _search_sparsemask(ctx):
    s = ctx.sizes
    terralite(ctx, "search", "sparsemask", "--data", ctx.data, "--out", ctx.path("search", "sparsemask"), "--preset", "tiny",
              "--epochs", s.search_epochs, "--crop", s.crop, "--batch-size", s.search_batch, "--device", ctx.device,
              "--set", f"max_steps_per_epoch={s.steps_per_epoch}")


#: Preset overrides for a schedule of minutes: the U-Net recipe's AdamW 1e-4 is tuned for 200 epochs of
#: OpenEarthMap and barely moves a network in a few hundred steps.
SHORT_SCHEDULE = {"unet": ["--set", "optim.lr=0.001"]}


def _train(model: Callable[[DemoContext], str | Path], run: str, preset: str):
    def step(ctx):
        terralite(ctx, "train", "--model", model(ctx), "--data", ctx.data, "--out", ctx.path(run), "--preset", preset,
                  *_sizes_flags(ctx), *SHORT_SCHEDULE.get(preset, []))
    return step


def _prune(ctx):
    s = ctx.sizes
    terralite(ctx, "prune", _best(ctx.path(TRAINED["baseline"])), "--ratio", 0.5, "--round-to", 8,
              "--finetune-epochs", s.finetune_epochs, "--train-set", f"max_steps_per_epoch={s.steps_per_epoch}",
              "--train-set", f"crop={s.crop}", "--data", ctx.data, "--out", ctx.path("compress", "pruned"),
              "--device", ctx.device, *_bench_flags(ctx))


def _distill(ctx):
    s = ctx.sizes
    terralite(ctx, "distill", "--teacher", _best(ctx.path(TRAINED["baseline"])),
              "--student", ctx.path("compress", "pruned", "pruned.pt"), "--data", ctx.data,
              "--out", ctx.path("compress", "distilled"), "--epochs", s.train_epochs,
              "--train-set", f"max_steps_per_epoch={s.steps_per_epoch}", "--train-set", f"crop={s.crop}",
              "--device", ctx.device, "--compare-alone", *_bench_flags(ctx))  # the student alone, same budget


def _quantize(ctx):
    ctx.path("compress", "quantized").mkdir(parents=True, exist_ok=True)
    terralite(ctx, "quantize", _best(ctx.path(TRAINED["sparsemask"])), "--calib", ctx.data,
              "--out", ctx.path("compress", "quantized", "sparsemask.int8.onnx"),
              "--calib-images", ctx.sizes.calib_images, *_bench_flags(ctx, leaderboard=True))


def _onnx_path(ctx, name: str) -> Path:
    return ctx.path("onnx", f"{name}.onnx")


#: Networks the export step writes as ONNX files (the SparseMask one is exported by the quantize step).
EXPORTED = ("fasterseg", "distilled")


def _export(ctx):
    ctx.path("onnx").mkdir(parents=True, exist_ok=True)
    ckpts = trained_checkpoints(ctx)
    for name in EXPORTED:
        # dynamic height/width: the same file maps tiles of any size; verified at the demo's tile size
        terralite(ctx, "export", ckpts[name], "--format", "onnx", "--dynamic-size", "--size", ctx.sizes.tile_size,
                  "--out", _onnx_path(ctx, name))


def _bench(ctx):
    s = ctx.sizes
    ctx.path("bench").mkdir(parents=True, exist_ok=True)
    terralite(ctx, "bench", *trained_checkpoints(ctx).values(), "--size", s.bench_size, "--runtime", "torch",
              "--device", ctx.device, "--tta", "none,hflip", "--warmup", s.bench_warmup, "--iters", s.bench_iters,
              "--data", ctx.data, "--split", "test", "--out", ctx.path("bench", "rows.jsonl"), *ctx.threads_flags())


def _leaderboard(ctx):
    terralite(ctx, "leaderboard", ctx.path("bench", "rows.jsonl"),
              ctx.path("compress", "quantized", "compression_rows.jsonl"), "--out", ctx.path("leaderboard"))


def held_out_tile(ctx: DemoContext) -> Path:
    """The first tile of the test split (never trained on)."""
    from terralite.data.openearthmap import read_split_list, region_of

    name = read_split_list(ctx.data, "test")[0]
    return ctx.data / region_of(name) / "images" / name


def _map(ctx):
    s = ctx.sizes
    tile = held_out_tile(ctx)
    ctx.path("map").mkdir(parents=True, exist_ok=True)
    terralite(ctx, "predict", _onnx_path(ctx, "fasterseg"), tile, "--out", ctx.path("map", "fasterseg_map.tif"),
              "--tile", s.map_tile, "--overlap", s.map_overlap, "--runtime", "onnxruntime", "--tta", "hflip",
              "--preview", ctx.path("map", "fasterseg_map.png"), "--quiet", *ctx.threads_flags())


STEPS: list[Step] = [
    Step("data", "synthetic OpenEarthMap-layout dataset (train/val/test)",
         lambda c: [c.data / "train.txt", c.data / "val.txt", c.data / "test.txt"], _data, ["data"]),
    Step("search-fasterseg", "FasterSeg teacher-student co-search (small budget)",
         lambda c: [c.path("search", "fasterseg", "student.json")], _search_fasterseg, ["search/fasterseg"]),
    Step("search-sparsemask", "SparseMask dense-decoder connectivity search (small budget)",
         lambda c: [c.path("search", "sparsemask", "arch.json")], _search_sparsemask, ["search/sparsemask"]),
    Step("train-fasterseg", "retrain the derived FasterSeg student",
         lambda c: [c.path(TRAINED["fasterseg"], "last.pt")],
         _train(lambda c: c.path("search", "fasterseg", "student.json"), TRAINED["fasterseg"], "fasterseg"),
         [TRAINED["fasterseg"]]),
    Step("train-sparsemask", "retrain the derived SparseMask network",
         lambda c: [c.path(TRAINED["sparsemask"], "last.pt")],
         _train(lambda c: c.path("search", "sparsemask", "arch.json"), TRAINED["sparsemask"], "sparsemask"),
         [TRAINED["sparsemask"]]),
    Step("train-baseline", f"train the {BASELINE} baseline",
         lambda c: [c.path(TRAINED["baseline"], "last.pt")], _train(lambda c: BASELINE, TRAINED["baseline"], "unet"),
         [TRAINED["baseline"]]),
    Step("prune", "prune the baseline's channels by 50 % and fine-tune",
         lambda c: [c.path("compress", "pruned", "pruned.pt")], _prune, ["compress/pruned"]),
    Step("distill", "distil the pruned baseline from the full one (logits KL)",
         lambda c: [c.path("compress", "distilled", "distilled", "last.pt")], _distill, ["compress/distilled"]),
    Step("quantize", "int8 (QDQ, ONNX Runtime) quantisation of the SparseMask network",
         lambda c: [c.path("compress", "quantized", "sparsemask.int8.onnx"),
                    c.path("compress", "quantized", "compression_rows.jsonl")], _quantize, ["compress/quantized"]),
    Step("export", "verified, self-describing ONNX export of the FasterSeg and the distilled networks",
         lambda c: [_onnx_path(c, name) for name in EXPORTED],
         _export, ["onnx"]),
    Step("bench", "latency (and test mIoU) of every network at the benchmark size, with and without TTA",
         lambda c: [c.path("bench", "rows.jsonl")], _bench, ["bench"]),
    Step("leaderboard", "leaderboard (Markdown, HTML, CSV) and Pareto plot",
         lambda c: [c.path("leaderboard", n) for n in ("leaderboard.md", "leaderboard.html", "pareto.png")],
         _leaderboard, ["leaderboard"]),
    Step("map", "land-cover map of a held-out tile (GeoTIFF + preview)",
         lambda c: [c.path("map", "fasterseg_map.tif"), c.path("map", "fasterseg_map.png")], _map, ["map"]),
    Step("large-raster", "BOLM protocol on a synthetic Sentinel-2 scene: NDVI windows, IoU/F1, map of the scene",
         large_raster_artefacts, run_large_raster, ["large"]),
]


def list_steps() -> list[str]:
    """One line per step, in order: its name and what it does (``terralite demo --list``)."""
    return [f"{step.name:18s} {step.description}" for step in STEPS]


def _marker(ctx: DemoContext, step: Step) -> Path:
    return ctx.path(".steps", f"{step.name}.done")


def _check_sizes(ctx: DemoContext) -> None:
    """One output folder holds one demo size: resuming a --fast folder at full size would mix them."""
    import dataclasses
    import json

    from terralite.atomic import write_text_atomic

    record = ctx.path(".steps", "sizes.json")
    sizes = dataclasses.asdict(ctx.sizes)
    if record.is_file():
        if json.loads(record.read_text()) != sizes:
            raise TerraLiteError(f"{ctx.out} holds a demo run of other sizes (--fast or not); use another --out or delete it")
        return
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record, json.dumps(sizes, indent=1))


def _created_record(ctx: DemoContext) -> Path:
    return ctx.path(".steps", "created.json")


def _created_folders(ctx: DemoContext) -> list[str]:
    """The step folders this demo output created (only those may ever be removed)."""
    import json

    record = _created_record(ctx)
    try:
        return list(json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return []


def _clear_owned_folders(ctx: DemoContext, step: Step) -> None:
    """Remove the leftovers of an unfinished run of ``step``, but only folders the demo created itself (recorded
    in ``OUT/.steps/created.json`` before the step first ran). A folder the demo did not create — with ``--out .``,
    e.g. the user's own ``data/`` — is refused when it holds anything, and never removed."""
    import json
    import shutil

    from terralite.atomic import write_text_atomic

    created = _created_folders(ctx)
    for folder in step.owns:
        path = ctx.path(folder)
        if folder in created:
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise TerraLiteError(f"demo output {path} already exists and was not created by this demo (it may hold your data); "
                                 f"the '{step.name}' step would replace it: choose another (new or empty) --out")
        else:
            created.append(folder)
            write_text_atomic(_created_record(ctx), json.dumps(created, indent=1))
        path.parent.mkdir(parents=True, exist_ok=True)


def run_demo(out: str | Path = "demo_out", fast: bool = False, device: str = "cpu", only: list[str] | None = None,
             log: Callable[[str], None] = print, threads: int | None = None) -> dict[str, list[Path]]:
    """Run (or resume) the demo into ``out``; returns step name → artefacts. Prints where each artefact is.

    A step is skipped when it finished before (its marker in ``out/.steps``) and its artefacts exist;
    ``only`` re-runs the named steps whatever their state (their inputs must exist). ``threads`` caps the
    CPU threads of every step (torch in this process, ONNX Runtime through the commands' ``--threads``).
    """
    from terralite.atomic import write_text_atomic

    names = [step.name for step in STEPS]
    unknown = [n for n in only or [] if n not in names]
    if unknown:
        raise TerraLiteError(f"unknown demo step(s) {', '.join(unknown)}; steps: {', '.join(names)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TerraLiteError(f"demo output {out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(out=out, sizes=FAST if fast else FULL, device=device, log=log, threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    _check_sizes(ctx)
    start = time.perf_counter()
    produced: dict[str, list[Path]] = {}
    for index, step in enumerate(STEPS, start=1):
        if only is not None and step.name not in only:
            continue
        header = f"[{index}/{len(STEPS)}] {step.name}: {step.description}"
        marker = _marker(ctx, step)
        if only is None and marker.is_file() and all(p.exists() for p in step.artefacts(ctx)):
            log(f"{header} (done before, skipped)")
            produced[step.name] = step.artefacts(ctx)
            continue
        log(header)
        marker.unlink(missing_ok=True)
        _clear_owned_folders(ctx, step)
        t0 = time.perf_counter()
        try:
            step.run(ctx)
        except TerraLiteError as exc:
            raise TerraLiteError(f"demo step '{step.name}' failed: {exc}; fix it and re-run "
                                 f"`terralite demo --out {out}` to resume from this step") from exc
        missing = [str(p) for p in step.artefacts(ctx) if not p.exists()]
        if missing:
            raise TerraLiteError(f"demo step '{step.name}' finished but left no {', '.join(missing)}")
        seconds = time.perf_counter() - t0
        write_text_atomic(marker, f"{seconds:.1f} s\n")
        log(f"    {step.name} took {seconds:.1f} s")
        produced[step.name] = step.artefacts(ctx)
    log(f"demo finished in {time.perf_counter() - start:.0f} s; artefacts:")
    for name, artefacts in produced.items():
        for path in artefacts:
            log(f"  {name:18s} {path}")
    return produced
