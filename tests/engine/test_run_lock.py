"""One run folder, one writer (issue 14, item 3): a second process on a locked run folder is refused with one
line naming the folder and the holder's PID; the lock of a SIGKILLed process never blocks the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pathlib import Path

import pytest

from terralite.cli import main
from terralite.errors import TerraLiteError
from terralite.run_folder import LOCK_FILE, RunFolder, RunLock

HOLD = ("import sys, time\n"
        "from terralite.run_folder import RunLock\n"
        "RunLock(sys.argv[1]); print('locked', flush=True); time.sleep(120)\n")


@pytest.fixture
def holder():
    """``holder(folder)``: a separate process holding the folder's lock; SIGKILLed at the end."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "locked"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_second_writer_is_refused_naming_folder_and_pid(tmp_path, holder):
    proc = holder(tmp_path / "run")
    with pytest.raises(TerraLiteError, match=rf"run folder .*run is being written by another terralite process \(PID {proc.pid}\)"):
        RunFolder(tmp_path / "run", tensorboard=False)


def test_train_on_a_locked_folder_exits_with_one_line(tmp_path, holder, synthetic_root, tiny_model_name, capsys):
    run = tmp_path / "run"
    proc = holder(run)
    status = main(["train", "--model", tiny_model_name, "--data", str(synthetic_root), "--out", str(run), "--epochs", "1",
                   "--batch-size", "2", "--crop", "32", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0
    assert f"PID {proc.pid}" in err[-1] and str(run) in err[-1]
    assert not (run / "last.pt").exists() and not (run / "log.csv").exists()


def test_lock_of_a_killed_process_is_not_stale(tmp_path, holder):
    proc = holder(tmp_path / "run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / LOCK_FILE).is_file()  # the file stays, the lock went with the process
    lock = RunLock(tmp_path / "run")
    assert (tmp_path / "run" / LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()


def test_lock_is_reentrant_within_a_process(tmp_path):
    (tmp_path / "run").mkdir()
    outer = RunLock(tmp_path / "run")
    inner = RunLock(tmp_path / "run")
    inner.release()
    # still held by the outer acquisition: another process is refused
    code = "import sys\nfrom terralite.run_folder import RunLock\ntry:\n    RunLock(sys.argv[1])\nexcept Exception as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True).stdout
    assert f"PID {os.getpid()}" in out
    outer.release()
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True).stdout
    assert out == ""


@pytest.mark.slow
def test_two_concurrent_trainings_one_wins(tmp_path, synthetic_root, tiny_model_name):
    """Two processes started on the same --out: exactly one trains, the other is refused (no interleaved log)."""
    from tiny_model import TINY_CLI

    run = tmp_path / "run"
    args = [sys.executable, str(TINY_CLI), "train", "--model", tiny_model_name, "--data", str(synthetic_root), "--out", str(run),
            "--epochs", "2", "--batch-size", "2", "--crop", "32", "--device", "cpu", "--set", "optim.lr=0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "another terralite process" in refused or "already holds" in refused or "meanwhile" in refused
    rows = (run / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2"]

