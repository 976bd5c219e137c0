"""One trial of a multi-trial search — the same function for the random baseline and for NNI's trials.

A trial prices the architecture's latency (:mod:`.latency`); outside the band (or, with ``--measured-band``,
outside it by a side-by-side measurement against the target) it is *rejected*: its row says so and nothing is
trained. Inside it, the architecture is written as a model spec, trained with the engine's
:class:`~terralite.engine.train.Trainer` under the search's one recipe and proxy budget (no validation
during training: the trial's figure is its final weights' mIoU on ``eval_split``, so no trial is picked at
its luckiest epoch), evaluated, optionally timed end to end, and scored by the objective.

The row is written atomically to ``trials/<trial>/result.json`` last; a trial that has one is finished and
is returned as it is. A start interrupted during training resumes the trial's run from its ``last.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from terralite.atomic import write_text_atomic
from terralite.nas.multi_trial.context import SearchContext
from terralite.nas.multi_trial.latency import arch_key, measure_latency
from terralite.nas.multi_trial.objective import objective

TRAINED, REJECTED = "trained", "rejected"


def read_result(ctx: SearchContext, trial_id: str) -> dict | None:
    path = ctx.trial_dir(trial_id) / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _write_result(ctx: SearchContext, trial_id: str, row: dict) -> dict:
    write_text_atomic(ctx.trial_dir(trial_id) / "result.json", json.dumps(row, indent=1) + "\n")
    return row


def arch_spec(ctx: SearchContext, arch: dict, label: str) -> dict:
    """The model spec of a trial's architecture (what ``arch.json`` and ``best.json`` hold)."""
    space = ctx.space
    return {"kind": space.name, "label": label, "in_channels": space.in_channels, "num_classes": space.num_classes,
            "arch": json.loads(space.to_json(arch))}


def run_trial(ctx: SearchContext, trial_id: str, arch: dict, tuner_params: dict | None = None,
              reason: str | None = None) -> dict:
    """Run (or return the finished row of) trial ``trial_id`` on ``arch``; returns its row.

    ``tuner_params``: the tuner's values the architecture was decoded from (kept in the row, so that a
    resumed NNI search can hand the tuner its history). ``reason``: reject without pricing (e.g. the
    values decode to no architecture; ``arch`` is then None).
    """
    done = read_result(ctx, trial_id)
    if done is not None:
        return done
    folder = ctx.trial_dir(trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"trial": trial_id, "status": REJECTED, "tuner_params": tuner_params}
    if arch is None:
        return _write_result(ctx, trial_id, {**row, "reason": reason or "no architecture"})
    cost = ctx.space.cost(arch, ctx.size)
    latency_ms = ctx.latency(arch)
    row.update({"arch_key": arch_key(ctx.space, arch), "params": cost["params"], "gmacs": cost["macs"] / 1e9,
                "latency_ms": latency_ms, "latency_source": ctx.latency.source, "fps": 1000.0 / latency_ms})
    rejected = ctx.rejection(arch, latency_ms)
    if ctx.side_by_side is not None and ctx.in_band(latency_ms):
        row["measured_ratio"] = ctx.side_by_side(arch)["ratio"]  # cached by the rejection check
    if rejected:
        return _write_result(ctx, trial_id, {**row, "reason": rejected[1]})

    arch_path = folder / "arch.json"
    write_text_atomic(arch_path, json.dumps(arch_spec(ctx, arch, f"{ctx.space.name}-{trial_id}"), indent=1) + "\n")
    row["arch_json"] = str(arch_path.relative_to(ctx.run_dir))
    from terralite.engine.evaluate import evaluate_checkpoint
    from terralite.engine.train import train

    run_dir = folder / "train"
    train_cfg = dataclasses.replace(ctx.cfg.train, model=str(arch_path), out=str(run_dir), val_split=None,
                                    label=f"{ctx.space.name}-{trial_id}", resume=(run_dir / "last.pt").is_file())
    started = time.perf_counter()
    train(train_cfg)
    row["train_s"] = time.perf_counter() - started
    metrics = evaluate_checkpoint(run_dir / "last.pt", ctx.cfg.train.data, ctx.cfg.eval_split, device=ctx.cfg.train.device)
    row["miou"] = float(metrics["miou"])
    if ctx.cfg.measure:
        # SparseMask's latency is already a measurement (the same runtime and size): not timed twice
        row["measured_ms"] = latency_ms if ctx.latency.source == "measured" else measure_latency(
            ctx.space, arch, ctx.size, ctx.latency.runtime, ctx.latency.device, ctx.cfg.latency_warmup, ctx.cfg.latency_iters)
    row["objective"] = objective(ctx.cfg.objective, row["miou"], latency_ms, ctx.target_ms)
    row["status"] = TRAINED
    return _write_result(ctx, trial_id, row)
