"""``prune`` and ``distill`` killed mid fine-tune continue with the same command plus ``--resume`` (issue 14,
item 4) and end with exactly the weights of an uninterrupted run (CPU); changed settings are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from terralite.checkpoint import load_checkpoint
from terralite.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from tiny_model import TINY_CLI  # noqa: E402

from test_compress_commands import BENCH, _checkpoint  # noqa: E402

TRAIN_SET = ["--train-set", "batch_size=2", "--train-set", "crop=32", "--train-set", "checkpoint_every=1",
             "--train-set", "optim.lr=0.01", "--device", "cpu", "--eval-split", "none", *BENCH]


@pytest.fixture(scope="module")
def parent(synthetic_root, tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("parent") / "tiny.pt", synthetic_root)


def _cli(argv: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``terralite ARGV`` in its own process (one thread: every run computes alike), SIGKILLed right after the
    mid-epoch checkpoint ``kill_at`` (E:S) when given."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TINY_KILL_AT", None)
    if kill_at:
        env["TINY_KILL_AT"] = kill_at
    proc = subprocess.run([sys.executable, str(TINY_CLI), *argv], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == (-signal.SIGKILL if kill_at else 0), proc.stderr
    return proc


def _same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _rows(path: Path) -> list[str]:
    return [line.split(",")[0] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_prune_killed_mid_finetune_resumes_to_identical_weights(parent, synthetic_root, tmp_path, capsys):
    base = ["prune", str(parent), "--ratio", "0.5", "--data", str(synthetic_root), "--finetune-epochs", "2", *TRAIN_SET]
    _cli([*base, "--out", str(tmp_path / "whole")])
    _cli([*base, "--out", str(tmp_path / "cut")], kill_at="1:1")
    assert not (tmp_path / "cut" / "pruned.pt").exists()
    # the same command without --resume is refused, pointing to --resume
    assert main([*base, "--out", str(tmp_path / "cut")]) != 0
    assert "--resume" in capsys.readouterr().err
    _cli([*base, "--out", str(tmp_path / "cut"), "--resume"])
    _same_weights(tmp_path / "whole" / "pruned.pt", tmp_path / "cut" / "pruned.pt")
    assert _rows(tmp_path / "cut" / "finetune1" / "log.csv") == ["epoch", "1", "2"]
    assert not [p for p in (tmp_path / "cut").rglob(".*.tmp*")]


def test_prune_resume_with_changed_settings_is_refused(parent, synthetic_root, tmp_path, capsys):
    base = ["prune", str(parent), "--data", str(synthetic_root), "--out", str(tmp_path / "run"), *TRAIN_SET]
    assert main([*base, "--ratio", "0.5"]) == 0
    capsys.readouterr()
    before = (tmp_path / "run" / "pruned.pt").read_bytes()
    assert main([*base, "--ratio", "0.25", "--resume"]) != 0
    err = capsys.readouterr().err.strip()
    assert "ratio 0.5 -> 0.25" in err and len(err.splitlines()) == 1
    assert (tmp_path / "run" / "pruned.pt").read_bytes() == before
    assert main([*base, "--ratio", "0.5", "--resume"]) == 0  # a finished run resumes to the same result


@pytest.mark.slow
def test_distill_killed_mid_training_resumes_to_identical_weights(parent, synthetic_root, tmp_path, capsys):
    base = ["distill", "--teacher", str(parent), "--student", str(parent), "--data", str(synthetic_root), "--epochs", "2",
            *TRAIN_SET]
    _cli([*base, "--out", str(tmp_path / "whole")])
    _cli([*base, "--out", str(tmp_path / "cut")], kill_at="1:1")
    _cli([*base, "--out", str(tmp_path / "cut"), "--resume"])
    _same_weights(tmp_path / "whole" / "distilled" / "last.pt", tmp_path / "cut" / "distilled" / "last.pt")
    assert _rows(tmp_path / "cut" / "distilled" / "log.csv") == ["epoch", "1", "2"]


def test_train_resume_of_a_distilled_run_points_to_distill(parent, synthetic_root, tmp_path, capsys):
    out = tmp_path / "kd"
    assert main(["distill", "--teacher", str(parent), "--student", str(parent), "--data", str(synthetic_root),
                 "--epochs", "1", "--out", str(out), *TRAIN_SET]) == 0
    capsys.readouterr()
    # the run's own settings (its config.yaml), as a user would resume a training run
    assert main(["train", "--config", str(out / "distilled" / "config.yaml"), "--out", str(out / "distilled"), "--resume",
                 "--epochs", "2"]) != 0
    err = capsys.readouterr().err.strip()
    assert "terralite distill" in err and "--resume" in err and "Traceback" not in err
