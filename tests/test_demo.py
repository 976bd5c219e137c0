"""``terralite demo``: the step runner (resume, failures naming the step) and, slow, the whole fast demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio

import terralite.demo as demo
from terralite.cli import main
from terralite.errors import TerraLiteError


def test_list_names_every_step(capsys):
    assert main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    for step in demo.STEPS:
        assert step.name in out
    for name in ("data", "search-fasterseg", "search-sparsemask", "prune", "distill", "quantize", "export",
                 "bench", "leaderboard", "map"):
        assert name in [s.name for s in demo.STEPS]


def _failing_step(ctx):
    # a real command that fails: checking a dataset that does not exist
    demo.terralite(ctx, "data", "check", ctx.path("no-such-dataset"))


def test_failed_step_is_named_and_rerun_resumes(tmp_path, monkeypatch):
    data_step = next(s for s in demo.STEPS if s.name == "data")
    broken = demo.Step("broken", "a step whose command fails", lambda c: [c.path("never.txt")], _failing_step, ["broken"])
    monkeypatch.setattr(demo, "STEPS", [data_step, broken])
    lines: list[str] = []
    with pytest.raises(TerraLiteError, match=r"demo step 'broken' failed: `terralite data check .*no-such-dataset` exited with status"):
        demo.run_demo(tmp_path / "out", fast=True, log=lines.append)
    assert (tmp_path / "out" / "data" / "test.txt").is_file()
    assert "$ terralite data synth" in "\n".join(lines)

    lines.clear()
    with pytest.raises(TerraLiteError, match="demo step 'broken' failed"):
        demo.run_demo(tmp_path / "out", fast=True, log=lines.append)
    assert any("data" in line and "skipped" in line for line in lines)
    assert not any(line.startswith("$ terralite data synth") for line in lines)


def test_cli_reports_a_failed_step_in_one_line(tmp_path, monkeypatch, capsys):
    broken = demo.Step("broken", "a step whose command fails", lambda c: [c.path("never.txt")], _failing_step)
    monkeypatch.setattr(demo, "STEPS", [broken])
    assert main(["demo", "--out", str(tmp_path / "out"), "--fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("terralite: error: demo step 'broken' failed")


def test_sizes_of_an_output_folder_are_not_mixed(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "STEPS", [s for s in demo.STEPS if s.name == "data"])
    demo.run_demo(tmp_path / "out", fast=True, log=lambda line: None)
    with pytest.raises(TerraLiteError, match="other sizes"):
        demo.run_demo(tmp_path / "out", fast=False, log=lambda line: None)


def test_unknown_only_step(tmp_path):
    with pytest.raises(TerraLiteError, match="unknown demo step"):
        demo.run_demo(tmp_path / "out", fast=True, only=["nope"])


@pytest.mark.slow
def test_fast_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--fast"]) == 0
    produced = demo.run_demo(out, fast=True, log=lambda line: None)  # resumes: every step skipped
    for step in demo.STEPS:
        for path in produced[step.name]:
            assert Path(path).exists(), path
    rows = [json.loads(line) for line in (out / "bench" / "rows.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 10 and {r["tta"] for r in rows} == {"none", "hflip"}  # 5 networks x 2 TTA modes
    models = " ".join(r["model"] for r in rows)
    for kind in ("fasterseg", "sparsemask", demo.BASELINE, "pruned"):  # searched, baseline, compressed
        assert kind in models
    board = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "int8" in board and "hflip" in board
    tile = demo.held_out_tile(demo.DemoContext(out, demo.FAST, "cpu"))
    with rasterio.open(out / "map" / "fasterseg_map.tif") as m, rasterio.open(tile) as src:
        assert m.crs == src.crs and m.transform == src.transform and m.shape == src.shape
