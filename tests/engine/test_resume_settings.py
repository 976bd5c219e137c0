"""A changed setting on ``--resume`` is refused, never silently ignored (issue 14, item 4); the run folder a
resume writes is the one given (a copied folder resumes into the copy)."""

from __future__ import annotations

import shutil

from terralite.cli import main

ARGS = ["--epochs", "1", "--batch-size", "2", "--crop", "32", "--device", "cpu", "--set", "optim.lr=0.01"]


def test_changed_batch_size_or_crop_on_resume_is_refused(synthetic_root, tiny_model_name, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--model", tiny_model_name, "--data", str(synthetic_root), "--out", str(run)]
    assert main([*base, *ARGS]) == 0
    before = (run / "last.pt").read_bytes()
    capsys.readouterr()
    for flag, value, shown in (("--batch-size", "4", "batch_size 2 -> 4"), ("--crop", "64", "crop 32 -> 64")):
        argv = [*base, *ARGS, "--resume", "--epochs", "2"]
        argv[argv.index(flag) + 1] = value
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert shown in err[-1] and "--resume" in err[-1]
        assert (run / "last.pt").read_bytes() == before
    # the same command (more epochs may be asked for) continues
    assert main([*base, *ARGS, "--resume", "--epochs", "2"]) == 0


def test_resuming_a_copied_folder_writes_into_the_copy(synthetic_root, tiny_model_name, tmp_path):
    run, copy = tmp_path / "run", tmp_path / "copy"
    base = ["train", "--model", tiny_model_name, "--data", str(synthetic_root)]
    assert main([*base, "--out", str(run), *ARGS]) == 0
    shutil.copytree(run, copy)
    original = (run / "last.pt").read_bytes()
    assert main([*base, "--out", str(copy), *ARGS, "--resume", "--epochs", "2"]) == 0
    assert (run / "last.pt").read_bytes() == original
    assert (copy / "log.csv").read_text().splitlines()[-1].startswith("2,")
