"""The GPU suite's whole pipeline, dry run on the CPU (tiny sizes, one call per measurement)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about 90 s: seven terralite processes
def test_gpu_suite_dry_run_writes_rows_board_and_readme(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "PY": sys.executable}
    done = subprocess.run(["bash", str(REPO / "results/gpu/run.sh"), "--dry-run", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "suite.json").read_text())
    status = {step["step"]: step["status"] for step in summary["steps"]}
    assert status["paper protocol: torch eager fp32"] == "ok" and status["deploy: onnxruntime"] == "ok"
    assert status["deploy: torch fp32"] == "ok" and status["leaderboard"] == "ok"
    assert status["training throughput: student"] == "ok"
    assert status["search: fasterseg --preset tiny"] == "ok"
    search = next(s for s in summary["steps"] if s["step"].startswith("search"))
    assert search["s_per_iteration"] > 0 and search["projected_gpu_hours"] > 0 and search["full_schedule_iterations"] == 9400
    rows = [json.loads(line) for f in sorted((out / "rows").glob("*.jsonl")) for line in f.read_text().splitlines()]
    # 1 model x (paper: 2 TTA modes + torch deploy: 3 + onnxruntime: 3)
    assert len(rows) == 8 and {r["input_size"] for r in rows} == {64}
    assert {(r["runtime"], r["tta"]) for r in rows} >= {("torch", "hflip"), ("onnxruntime", "hflip-batched")}
    readme = (out / "README.md").read_text()
    assert readme.startswith("# GPU suite — cpu") and "Dry run" in readme and "tensorrt" in readme
    assert (out / "leaderboard.md").is_file() and (out / "pareto.png").is_file()
    assert not (out / "work").exists()  # the synthetic data and search run are cleaned up
