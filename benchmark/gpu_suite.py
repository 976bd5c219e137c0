"""The GPU suite: one command that measures the zoo and the committed searched networks on one GPU and writes the board.

``python -m terralite.benchmark.gpu_suite --out results/gpu`` (what ``bash results/gpu/run.sh`` runs), in at most
``--budget-s`` seconds (default 480: a step that would start after the budget is spent is skipped and listed):

1. paper protocol (METHODS §4): eager PyTorch fp32, batch 1, 1024 x 1024, 10 warm-up + 300 calls timed with
   CUDA events, TTA none and hflip;
2. deploy protocol: torch fp16 + torch.compile + CUDA graphs; ONNX Runtime with its CUDA provider (TTA inside
   the graph); TensorRT fp16 where ``tensorrt`` is importable (else a line says why it is missing); TTA none,
   hflip and hflip-batched;
3. AMP training throughput (images/s and the share of step time waiting for data) of two networks;
4. a few FasterSeg search iterations with the OEM preset: seconds per iteration, peak GPU memory and the GPU-hours
   the full OEM schedule would take at that rate.

Every step is a ``terralite`` command in its own process (what a user would type; a failing network cannot take
the others down), and the rows, the leaderboard, ``suite.json`` and a ``README.md`` naming the device go to
``--out``. ``--dry-run`` runs the same pipeline on the CPU at 64 px with one call per measurement and the tiny search
preset, to test the pipeline, not to measure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

OEM_TRAIN_TILES = 3000
"""OpenEarthMap's train list (METHODS §1): the search splits it in halves, weights and architecture."""
SEARCHED = ("results/fasterseg/search_oem-cpu_3fps/student.json", "results/fasterseg/search_oem-cpu_4.5fps/student.json",
            "results/sparsemask/reference_two_inputs_per_stage.json")
"""The committed searched networks the suite times beside the zoo."""


@dataclass
class Plan:
    """What the suite runs: full size on a GPU, or the dry run's tiny CPU version of every step."""

    device: str
    size: int
    models: list[str]
    paper: tuple[int, int]  # warm-up, timed calls
    deploy: tuple[int, int]
    deploy_torch_flags: list[str]
    throughput: dict
    search: dict
    budget_s: float

    @classmethod
    def for_run(cls, dry_run: bool, budget_s: float, models: list[str] | None) -> "Plan":
        if dry_run:
            # one small network, one call each: the pipeline's test, not a measurement (no time budget: a CPU is slow)
            return cls("cpu", 64, models or [SEARCHED[1]], (0, 1), (0, 1), [],
                       {"crop": 64, "batch": 2, "steps": 1, "warmup": 0, "amp": "none", "models": [SEARCHED[1]]},
                       {"preset": "tiny", "steps": 1, "crop": 64, "batch": 2}, math.inf)
        from terralite.benchmark.zoo import BASELINES

        return cls("cuda", 1024, models or [*BASELINES.names(), *SEARCHED], (10, 300), (10, 100),
                   ["--precision", "fp16", "--compile", "--cuda-graphs"],
                   {"crop": 512, "batch": 8, "steps": 30, "warmup": 5, "amp": "auto", "models": ["unet-resnet34", SEARCHED[1]]},
                   {"preset": "oem", "steps": 10, "crop": 512, "batch": 8}, budget_s)


@dataclass
class Suite:
    plan: Plan
    out: Path
    data: Path
    start: float = field(default_factory=time.monotonic)
    steps: list[dict] = field(default_factory=list)

    def left(self) -> float:
        return self.plan.budget_s - (time.monotonic() - self.start)

    def run(self, name: str, args: list, *, min_left_s: float = 20.0, watch_gpu: bool = False) -> dict:
        """Run ``terralite ARGS`` as step ``name`` unless the budget is spent; record its outcome."""
        step = {"step": name, "command": "terralite " + " ".join(map(str, args))}
        if self.left() < min_left_s:
            step.update(status="skipped", reason=f"time budget of {self.plan.budget_s:.0f} s spent")
        else:
            gpu = _GpuMemoryWatch() if watch_gpu else None
            t0 = time.monotonic()
            try:
                done = subprocess.run([sys.executable, "-m", "terralite", *map(str, args)], capture_output=True, text=True,
                                      timeout=None if math.isinf(self.left()) else max(self.left(), 1.0))
                status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            except subprocess.TimeoutExpired:
                status, tail = "stopped at the time budget", []
            step.update(status=status, wall_s=round(time.monotonic() - t0, 2))
            if gpu is not None:
                step["peak_gpu_mem_mb"] = gpu.stop()
            if status != "ok":
                step["reason"] = " / ".join(tail)[-400:]
        print(f"[gpu-suite] {name}: {step['status']}" + (f" ({step.get('wall_s')} s)" if "wall_s" in step else ""), file=sys.stderr)
        self.steps.append(step)
        return step


class _GpuMemoryWatch:
    """Largest ``memory.used`` nvidia-smi reports while a step runs (MB), polled every 0.2 s; None without it."""

    def __init__(self):
        self.peak, self._stop = None, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True) if shutil.which("nvidia-smi") else None
        if self._thread:
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            try:
                used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=5).stdout.split()
                self.peak = max([self.peak or 0.0, *map(float, used)])
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        return self.peak


def run_suite(out: str | Path, *, dry_run: bool = False, data: str | None = None, budget_s: float = 480.0,
              models: list[str] | None = None) -> dict:
    """Run every step of the suite into ``out``; returns the summary also written as ``out/suite.json``."""
    from terralite.atomic import write_text_atomic
    from terralite.errors import TerraLiteError

    plan = Plan.for_run(dry_run, budget_s, models)
    out = Path(out)
    if not dry_run:
        import torch

        if not torch.cuda.is_available():
            raise TerraLiteError("the GPU suite needs a CUDA GPU; on a machine without one run it with --dry-run (CPU, tiny sizes)")
    (out / "rows").mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(exist_ok=True)
    if data is None:
        from terralite.data.synthetic import generate_dataset

        # throughput and search read real GeoTIFF tiles of the OEM layout; without --data, synthetic ones
        data = generate_dataset(out / "work" / "synthetic", tiles=8 if dry_run else 32, size=plan.size if dry_run else 1024, seed=0)
    suite = Suite(plan, out, Path(data))
    size = ["--size", plan.size, "--device", plan.device]
    bench = ["bench", *plan.models, *size]
    suite.run("paper protocol: torch eager fp32", [*bench, "--runtime", "torch", "--precision", "fp32", "--tta", "none,hflip",
              "--warmup", plan.paper[0], "--iters", plan.paper[1], "--out", out / "rows/"])
    deploy = ["--tta", "none,hflip,hflip-batched", "--warmup", plan.deploy[0], "--iters", plan.deploy[1], "--out", out / "rows/"]
    suite.run("deploy: torch " + (" ".join(plan.deploy_torch_flags) or "fp32"), [*bench, "--runtime", "torch", *plan.deploy_torch_flags, *deploy])
    suite.run("deploy: onnxruntime", [*bench, "--runtime", "onnxruntime", *deploy])
    if importlib.util.find_spec("tensorrt") is None:
        suite.steps.append({"step": "deploy: tensorrt fp16", "status": "skipped",
                            "reason": "the tensorrt package is not importable here (pip install 'terralite[tensorrt]' on the GPU machine)"})
    elif plan.device == "cuda":
        suite.run("deploy: tensorrt fp16", [*bench, "--runtime", "tensorrt", "--precision", "fp16", *deploy])
    t = plan.throughput
    for model in t["models"]:
        name = Path(model).stem if model.endswith(".json") else model
        suite.run(f"training throughput: {name}", ["throughput", "--model", model, "--data", suite.data, "--crop", t["crop"],
                  "--batch-size", t["batch"], "--steps", t["steps"], "--warmup", t["warmup"], "--device", plan.device, "--amp", t["amp"],
                  "--out", out / f"throughput_{name.replace('.', '_')}.json"])
    _search_step(suite)
    rows = sorted((out / "rows").glob("*.jsonl"))
    if rows:
        suite.run("leaderboard", ["leaderboard", *rows, "--out", out], min_left_s=-math.inf)  # the board, whatever ran
    summary = {"device": _device_label(plan.device), "dry_run": dry_run, "plan": {"size": plan.size, "models": plan.models,
               "paper": plan.paper, "deploy": plan.deploy, "budget_s": plan.budget_s},
               "wall_s": round(time.monotonic() - suite.start, 1), "steps": suite.steps,
               "throughput": {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("throughput_*.json"))}}
    write_text_atomic(out / "suite.json", json.dumps(summary, indent=2, default=str) + "\n")
    write_text_atomic(out / "README.md", render_readme(summary))
    if dry_run:
        shutil.rmtree(out / "work", ignore_errors=True)
    return summary


def _search_step(suite: Suite) -> None:
    """A few iterations of the FasterSeg search (one warm-up epoch and one search epoch of ``steps`` steps each):
    seconds per iteration (wall time of the run over its iterations: an upper bound, start-up and the latency
    table included), peak GPU memory, and the full OEM schedule's GPU-hours at that rate."""
    s, plan = suite.plan.search, suite.plan
    run = suite.out / "work" / "search"
    step = suite.run(f"search: fasterseg --preset {s['preset']}", [
        "search", "fasterseg", "--preset", s["preset"], "--data", suite.data, "--out", run, "--warmup-epochs", 1, "--epochs", 1,
        "--crop", s["crop"], "--batch-size", s["batch"], "--device", plan.device, "--set", f"steps_per_epoch={s['steps']}",
    ], min_left_s=60.0, watch_gpu=plan.device == "cuda")
    if step["status"] == "ok":
        iterations = 2 * s["steps"]
        per_iteration = step["wall_s"] / iterations
        full = (20 + 30) * math.ceil(OEM_TRAIN_TILES / 2 / 8)  # the oem preset: 20 warm-up + 30 search epochs, batch 8
        step.update(iterations=iterations, s_per_iteration=round(per_iteration, 3), full_schedule_iterations=full,
                    projected_gpu_hours=round(per_iteration * full / 3600, 2))


def _device_label(device: str) -> str:
    from terralite.device import device_name, resolve_device

    return device_name(resolve_device(device))


def render_readme(summary: dict) -> str:
    """The suite's README: device, what ran (commands), what was skipped and why, the search projection."""
    lines = [f"# GPU suite — {summary['device']}", "",
             ("**Dry run** (CPU, tiny sizes, one call per measurement): a test of the pipeline, not a measurement." if summary["dry_run"]
              else "Measured in one run on this device; absolute FPS compare only with rows from the same machine (METHODS §4)."),
             "", f"Input {summary['plan']['size']}x{summary['plan']['size']}, batch 1; paper protocol {summary['plan']['paper'][0]} warm-up + "
             f"{summary['plan']['paper'][1]} calls, deploy protocol {summary['plan']['deploy'][0]} + {summary['plan']['deploy'][1]}; "
             f"{summary['wall_s']} s in all (budget {summary['plan']['budget_s']:.0f} s). The board: `leaderboard.md` (`pareto.png`).", "",
             "| step | status | wall s | note |", "|---|---|---|---|"]
    for step in summary["steps"]:
        note = step.get("reason", "")
        if "s_per_iteration" in step:
            note = (f"{step['s_per_iteration']} s/iteration (upper bound: start-up and latency table included), peak GPU memory "
                    f"{step.get('peak_gpu_mem_mb') or '—'} MB; the full OEM schedule ({step['full_schedule_iterations']} iterations) "
                    f"≈ {step['projected_gpu_hours']} GPU-hours")
        lines.append(f"| {step['step']} | {step['status']} | {step.get('wall_s', '—')} | {note} |")
    for name, result in summary["throughput"].items():
        lines.append("")
        lines.append(f"Training throughput {name}: {result['images_per_s']:.2f} images/s, {100 * result['data_wait_share']:.1f} % of step time "
                     f"waiting for data (batch {result['batch']}, crop {result['crop']}, amp {result['amp']}, {result['workers']} workers).")
    lines += ["", "Commands:", "", *[f"    {step['command']}" for step in summary["steps"] if "command" in step], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from terralite.errors import TerraLiteError

    parser = argparse.ArgumentParser(prog="python -m terralite.benchmark.gpu_suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gpu", help="folder for rows, board, suite.json and README.md (default results/gpu)")
    parser.add_argument("--dry-run", action="store_true", help="the whole pipeline on the CPU at 64 px, one call per measurement")
    parser.add_argument("--data", default=None, help="dataset root for throughput and search (default: synthetic tiles)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="seconds for the whole suite (default 480)")
    parser.add_argument("--models", default=None, help="comma-separated models instead of the zoo and the searched networks")
    args = parser.parse_args(argv)
    try:
        summary = run_suite(args.out, dry_run=args.dry_run, data=args.data, budget_s=args.budget_s,
                            models=[m for m in args.models.split(",") if m] if args.models else None)
    except TerraLiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [s["step"] for s in summary["steps"] if s["status"].startswith("failed")]
    print(f"{Path(args.out) / 'README.md'}: {len(summary['steps'])} steps, {len(failed)} failed ({', '.join(failed) or 'none'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
