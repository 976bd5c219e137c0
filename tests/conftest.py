"""Shared fixtures: a tiny synthetic OpenEarthMap-layout dataset, generated once per test session; torchrun."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Root of a 6-tile, 64 px synthetic dataset (2 regions, train/val/test lists of 4/1/1). Do not modify it:
    copy it (``shutil.copytree``) before breaking files."""
    from terralite.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synthetic") / "oem", tiles=6, size=64, seed=0)


@pytest.fixture
def torchrun():
    """``torchrun(args, cwd)``: run ``torchrun --nproc_per_node=2 --standalone ARGS`` (one thread per rank) in its
    own session, so that a hang kills the launcher and both ranks; returns the CompletedProcess."""

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    return run


@pytest.fixture(autouse=True)
def _private_user_cache(tmp_path_factory, monkeypatch):
    """Statistics of read-only datasets (the shared fixtures) are cached per user: keep the tests' cache private."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "user-cache"))
