"""How honest is the latency table? Predicted vs measured end-to-end latency of random architectures.

Samples N architectures of the table's search space, predicts each from the table and measures the built
network with the table's runtime on the table's device through the benchmark runners (the path
``terralite bench`` takes), and reports the Spearman rank correlation and the mean errors.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from terralite.nas.fasterseg.latency import arch_latency, check_table_layout
from terralite.nas.latency_table import LatencyTable
from terralite.search_spaces.fasterseg.config import FasterSegSpaceConfig
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace
from terralite.atomic import ensure_parent, write_text_atomic
from terralite.device import device_name
from terralite.errors import TerraLiteError
from terralite.models import spec_hash
from terralite.versions import library_versions


def space_of_table(table: LatencyTable) -> FasterSegSearchSpace:
    c = table.conditions
    if c.get("search_space") != "fasterseg":
        raise TerraLiteError(f"{table.source} is not a FasterSeg table (search_space={c.get('search_space')!r})")
    return FasterSegSearchSpace(FasterSegSpaceConfig(**c["space"]), c["in_channels"], c["num_classes"])


def latency_check(lut: str | Path, samples: int, out: str | Path, seed: int = 0, warmup: int = 5, iters: int = 20,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Measure ``samples`` random student architectures; write and return the comparison."""
    from scipy.stats import spearmanr

    from terralite.benchmark.runners import build_runner
    from terralite.benchmark.runners.base import measure_side_by_side

    if samples < 3:
        raise TerraLiteError(f"--samples must be at least 3 for a rank correlation, got {samples}")
    ensure_parent(out)
    table = LatencyTable.load(lut)
    space = space_of_table(table)
    check_table_layout(table)  # before any timing: an old table would predict with wrong fusion widths
    c = table.conditions
    device = torch.device(c["device_type"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TerraLiteError(f"{table.source} was measured on a GPU; run the check on a machine with CUDA")
    here = device_name(device)
    rng = np.random.default_rng(seed)
    rows, runners = [], []
    for n in range(samples):
        arch = space.sample(rng)
        predicted = arch_latency(table, arch, c["size"], space.in_channels, space.num_classes)["total"]
        model = space.build(arch).eval()
        runners.append(build_runner(c["runtime"], model, size=c["size"], in_channels=space.in_channels, device=device))
        params = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("aux"))
        rows.append({"arch_hash": spec_hash(arch), "params_m": params / 1e6, "predicted_ms": predicted, "arch": arch})
        if progress:
            progress(f"built {n + 1}/{samples}: predicted {predicted:.1f} ms")
    # all networks timed in turn, so that a drift of the machine's speed moves every measurement alike (timed one
    # after another, a CPU whose speed drifts by ±20 % within minutes ranks networks by when they were timed)
    if device.type == "cpu":
        stats = measure_side_by_side(runners, warmup, iters)
    else:
        stats = [runner.measure(warmup, iters) for runner in runners]
    for row, stat in zip(rows, stats):
        row["measured_ms"] = stat.latency_ms_median
        if progress:
            progress(f"{row['arch_hash']}: predicted {row['predicted_ms']:.1f} ms, measured {row['measured_ms']:.1f} ms")
    pred = np.array([r["predicted_ms"] for r in rows])
    meas = np.array([r["measured_ms"] for r in rows])
    rho, p_value = spearmanr(pred, meas)
    result = {
        "table": str(lut), "table_conditions": {k: v for k, v in c.items() if k != "space"},
        "device_now": here, "same_device": here == c.get("device"),
        "samples": samples, "seed": seed, "warmup": warmup, "iters": iters, "statistic": "median",
        "timing": "side by side" if device.type == "cpu" else "one network at a time",
        "spearman": float(rho), "spearman_p": float(p_value),
        "mean_abs_error_ms": float(np.mean(np.abs(pred - meas))),
        "mean_rel_error": float(np.mean(np.abs(pred - meas) / meas)),
        "mean_pred_over_measured": float(np.mean(pred / meas)),
        "versions": library_versions(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    return result
