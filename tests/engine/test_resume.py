"""A run SIGKILLed mid-epoch and resumed ends with exactly the weights of an uninterrupted run (CPU)."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from tiny_model import TINY_CLI
from terralite.checkpoint import load_checkpoint
from terralite.engine.presets import resolve_train_config
from terralite.engine.train import train
from terralite.errors import TerraLiteError

OVERRIDES = ["checkpoint_every=1", "optim.lr=0.01", "augment=true"]
ARGS = ["--epochs", "2", "--batch-size", "2", "--crop", "32", "--device", "cpu", "--seed", "3",
        *[arg for item in OVERRIDES for arg in ("--set", item)]]


def _cli(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, str(TINY_CLI), *args], capture_output=True, text=True, env=env, timeout=300)


def test_killed_run_resumes_to_identical_weights(synthetic_root, tiny_model_name, tmp_path):
    data = str(synthetic_root)
    run_b = tmp_path / "b"
    common = ["train", "--model", tiny_model_name, "--data", data, "--out", str(run_b), *ARGS]

    killed = _cli(common, {"TINY_KILL_AT": "1:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    mid = load_checkpoint(run_b / "last.pt")
    assert (mid["epoch"], mid["step_in_epoch"]) == (1, 1)  # died in the middle of the second epoch

    resumed = _cli([*common, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at epoch 2 batch 1" in resumed.stderr

    # the uninterrupted reference, in this process
    cfg = resolve_train_config(None, None, OVERRIDES, model=tiny_model_name, data=data, out=str(tmp_path / "a"),
                               epochs=2, batch_size=2, crop=32, device="cpu", seed=3)
    train(cfg)
    with pytest.raises(TerraLiteError, match="already holds a run"):  # never silently overwritten
        train(cfg)

    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(run_b / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["metrics"]["val_miou"] == b["metrics"]["val_miou"]
    rows = (run_b / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2"]
    assert not [p.name for p in run_b.iterdir() if p.name.endswith(".tmp.pt")]  # no half-written checkpoint left


def test_resume_drops_log_rows_of_unfinished_epochs(tmp_path):
    from terralite.run_folder import RunFolder

    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss\n1,0.9\n2,0.8\n3,0.7\n")
    folder = RunFolder(tmp_path, tensorboard=False)
    folder.trim_log(2)  # the checkpoint had completed 2 epochs; epoch 3 will be trained again
    folder.close()
    assert log.read_text() == "epoch,train_loss\n1,0.9\n2,0.8\n"
