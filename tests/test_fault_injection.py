"""Fault injection (issue 14): every long job SIGKILLed at a random moment ends, after the command a user is told
to run next, exactly where an uninterrupted run ends — no temp file left, no log row twice.

For each job kind an uninterrupted reference runs once; then, for several seeds, the same command is started in
its own process and SIGKILLed at a moment drawn uniformly over most of the reference's working time (from its output
folder's first file to its end), so kills land anywhere: between checkpoints, inside an atomic write, before the
first checkpoint. The test then runs ``--resume`` (or, when the message says there is nothing to resume, the same
command again) — ``predict`` is simply run again — and compares:

- train, both searches, prune, distill: the final checkpoints' tensors bit for bit (these resume exactly on the
  CPU, one thread), one log row per epoch;
- predict: the map's pixels and georeferencing.

Each process runs on one thread (every run computes alike). Slow: about 5 minutes on a 2-core CPU.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from terralite.checkpoint import load_checkpoint

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "engine"))
sys.path.insert(0, str(HERE / "nas"))
sys.path.insert(0, str(HERE / "compress"))
sys.path.insert(0, str(HERE / "core"))
from tiny_model import NAME as TINY, TINY_CLI  # noqa: E402

from test_compress_commands import BENCH, _checkpoint  # noqa: E402
from test_output_guard import scene as random_scene  # noqa: E402
from test_search_resume import SEARCHES  # noqa: E402

SEEDS = (0, 1, 2)
#: Kills are drawn over this share of the reference's span (a repeated run is often faster than the first).
KILL_BEFORE = 0.8
TRAIN = ["--batch-size", "2", "--crop", "32", "--device", "cpu", "--seed", "3", "--set", "checkpoint_every=1"]
TRAIN_SET = ["--train-set", "batch_size=2", "--train-set", "crop=32", "--train-set", "checkpoint_every=1",
             "--device", "cpu", "--eval-split", "none", *BENCH]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TINY_KILL_AT": ""}


def _command(argv: list[str]) -> list[str]:
    return [sys.executable, str(TINY_CLI), *argv]  # `terralite` with the tiny baseline registered


def _begun(out: Path) -> bool:
    """The job has started writing: its output folder holds something (a run's config, a map's temporary file)."""
    return out.is_dir() and any(out.iterdir())


def _timed_run(argv: list[str], out: Path) -> float:
    """Run to the end; the seconds from its first write into ``out`` to the end (the span a kill is drawn from)."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a chatty job never blocks on a full pipe
        proc = subprocess.Popen(_command(argv), stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=_env())
        appeared = None
        while proc.poll() is None:
            if appeared is None and _begun(out):
                appeared = time.monotonic()
            time.sleep(0.02)
        stderr.seek(0)
        assert proc.returncode == 0, stderr.read()[-3000:]
    return time.monotonic() - (appeared or time.monotonic())


def _kill_at_random(argv: list[str], out: Path, span: float, seed: int) -> bool:
    """Start the command, SIGKILL it ``U(0, KILL_BEFORE) x span`` seconds after its first write into ``out``; False if it
    ended first."""
    delay = random.Random(seed).uniform(0.0, KILL_BEFORE) * span
    proc = subprocess.Popen(_command(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                            start_new_session=True)
    try:
        while proc.poll() is None and not _begun(out):
            time.sleep(0.005)
        deadline = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is not None:
            return False
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _continue(argv: list[str], resumable: bool) -> None:
    """What the user runs after the kill: ``--resume`` (the same command when there is nothing to resume yet)."""
    if resumable:
        done = subprocess.run(_command([*argv, "--resume"]), capture_output=True, text=True, env=_env(), timeout=600)
        if done.returncode == 0:
            return
        assert "nothing to resume" in done.stderr and "drop --resume" in done.stderr, done.stderr[-3000:]
    done = subprocess.run(_command(argv), capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _same_tensors(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert sa.keys() == sb.keys()
    differing = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differing, f"{len(differing)} of {len(sa)} tensors of {b} differ from {a}, e.g. {differing[:3]}"


def _epochs_once(log: Path, epochs: int) -> None:
    rows = list(csv.DictReader(log.open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1)), f"{log}: {[r['epoch'] for r in rows]}"


def _no_temp_files(folder: Path) -> None:
    left = [str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name]
    assert not left, f"temporary files left in {folder}: {left}"


def _roles(rows: Path) -> list[str]:
    import json

    return [json.loads(line)["role"] for line in rows.read_text().splitlines()]


def _same_map(a: Path, b: Path) -> None:
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.transform, x.crs, x.shape) == (y.transform, y.crs, y.shape)
        assert np.array_equal(x.read(), y.read())


@pytest.fixture(scope="module")
def jobs(synthetic_root, tmp_path_factory):
    """Per job kind: ``(argv without --out, output check(reference, run))``; predict's check is in the test."""
    from terralite.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("faults")
    parent = _checkpoint(root / "parent.pt", synthetic_root)
    data = str(synthetic_root)
    search_data = str(generate_dataset(root / "search-data", tiles=12, size=64, seed=0))  # two halves of a batch each
    scene = random_scene(root / "scene.tif", 1536)  # predict takes a few seconds on it: long enough to be killed mid-map

    def trained(name, epochs):  # name: the training run's subfolder ("" for the run folder itself)
        def check(ref, run):
            _same_tensors(ref / name / "last.pt", run / name / "last.pt")
            _epochs_once(run / name / "log.csv", epochs)
        return check

    def searched(ref, run):
        _same_tensors(ref / "last.pt", run / "last.pt")
        epochs = len(list(csv.DictReader((ref / "log.csv").open())))
        _epochs_once(run / "log.csv", epochs)

    return {
        "train": (["train", "--model", TINY, "--data", data, "--epochs", "3", *TRAIN], trained("", 3)),
        "search-fasterseg": (["search", "fasterseg", "--data", search_data, "--device", "cpu", *SEARCHES["fasterseg"],
                              "--lut", "{lut}"], searched),
        "search-sparsemask": (["search", "sparsemask", "--data", search_data, "--device", "cpu", *SEARCHES["sparsemask"]],
                              searched),
        "prune": (["prune", str(parent), "--ratio", "0.5", "--data", data, "--finetune-epochs", "2", *TRAIN_SET],
                  lambda ref, run: (_same_tensors(ref / "pruned.pt", run / "pruned.pt"),
                                    _epochs_once(run / "finetune1" / "log.csv", 2))),
        "distill": (["distill", "--teacher", str(parent), "--student", str(parent), "--data", data, "--epochs", "2",
                     *TRAIN_SET], trained("distilled", 2)),
        "predict": (["predict", str(parent), str(scene), "--tile", "256", "--quiet"], None),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["train", "search-fasterseg", "search-sparsemask", "prune", "distill", "predict"])
def test_job_killed_at_a_random_moment_ends_where_an_uninterrupted_run_ends(kind, jobs, tmp_path):
    argv, check = jobs[kind]
    ref = tmp_path / "reference"
    if kind == "predict":  # the map is written into a folder of its own
        ref.mkdir()
        span = _timed_run([*argv, "--out", str(ref / "map.tif")], ref)
    elif kind == "search-fasterseg":  # the reference measures its latency table; the killed runs read that one
        span = _timed_run([a for a in argv if a not in ("--lut", "{lut}")] + ["--out", str(ref)], ref)
        argv = [str(ref / "lut.json") if a == "{lut}" else a for a in argv]
    else:
        span = _timed_run([*argv, "--out", str(ref)], ref)
    killed_any = False
    for seed in SEEDS:
        run = tmp_path / f"seed{seed}"
        if kind == "predict":
            run.mkdir()
            scene = Path(argv[2])
            before = scene.read_bytes()
            command = [*argv, "--out", str(run / "map.tif")]
            killed_any |= _kill_at_random(command, run, span, seed)
            _continue(command, resumable=False)
            _same_map(ref / "map.tif", run / "map.tif")
            assert scene.read_bytes() == before  # the input scene is never touched
            assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in ref.iterdir())
        else:
            killed_any |= _kill_at_random([*argv, "--out", str(run)], run, span, seed)
            _continue([*argv, "--out", str(run)], resumable=True)
            check(ref, run)
            if (ref / "compression_rows.jsonl").is_file():  # benchmark rows: each model once, as in the reference
                assert _roles(run / "compression_rows.jsonl") == _roles(ref / "compression_rows.jsonl")
        _no_temp_files(run)
    assert killed_any, f"every {kind} run ended before its kill: the reference span ({span:.1f} s) is too short"
