"""Both searches, SIGKILLed mid-run and resumed through the shared run loop, end where an uninterrupted run ends.

Each search runs as a `terralite` process (one thread, CPU, same seed); the interrupted one is killed with SIGKILL
as soon as its first epoch is logged and checkpointed — inside a later epoch — then resumed with ``--resume``. The final
``last.pt`` of both runs must hold the same architecture parameters and weights, bit for bit, and the resumed
log must have one row per epoch.
"""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from terralite.checkpoint import load_checkpoint

SEARCHES = {
    "fasterseg": ["--preset", "tiny", "--epochs", "2", "--warmup-epochs", "1", "--set", "target.runtime=torch",
                  "--set", "steps_per_epoch=3", "--set", "val_images=1"],
    "sparsemask": ["--preset", "tiny", "--epochs", "4", "--set", "profile_size=64", "--set", "steps_per_epoch=3",
                   "--set", "val_every=2"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from terralite.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("resume") / "data", tiles=12, size=64, seed=0)


def _command(method, data, out, *extra):
    return [sys.executable, "-m", "terralite", "search", method, "--data", str(data), "--out", str(out), "--device", "cpu",
            *SEARCHES[method], *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _run(command):
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _kill_after_first_row(command, log):
    """Start ``command``; SIGKILL it once ``log`` has its first row and the epoch's checkpoint is written;
    returns how many rows the log had then."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) >= 2 and (log.parent / "last.pt").is_file():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return len(log.read_text().splitlines()) - 1


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(SEARCHES))
def test_killed_search_resumes_to_the_uninterrupted_result(method, data, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _run(_command(method, data, whole))
    # the FasterSeg run measured its latency table; the other run reads that one (timings differ run to run)
    same_table = ["--lut", str(whole / "lut.json")] if method == "fasterseg" else []
    rows_at_kill = _kill_after_first_row(_command(method, data, killed, *same_table), killed / "log.csv")
    epochs = len(list(csv.DictReader((whole / "log.csv").open())))
    assert 1 <= rows_at_kill < epochs
    _run(_command(method, data, killed, *same_table, "--resume"))

    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["epoch"] == b["epoch"] == epochs
    assert a["state_dict"].keys() == b["state_dict"].keys()
    differing = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:5]}"
    rows = list(csv.DictReader((killed / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))  # no duplicate, no missing row
    assert not [p.name for p in killed.iterdir() if ".tmp" in p.name]  # no half-written file left
    arch = "student.json" if method == "fasterseg" else "arch.json"
    assert (whole / arch).read_text() == (killed / arch).read_text().replace("killed", "whole")
