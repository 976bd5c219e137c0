"""The outputs of a multi-trial search, rendered from the trials' rows: ``trials.csv`` and ``trials.md`` (every
trial, trained or rejected), ``best.json`` (the best trained architecture's spec), ``trials.png`` (mIoU against
latency, the target band shaded) and ``summary.json`` (counts, target, band, best)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

from terralite.atomic import atomic_path, write_text_atomic
from terralite.nas.multi_trial.context import SearchContext
from terralite.nas.multi_trial.encoding import Prior
from terralite.nas.multi_trial.trial import TRAINED, read_result

TABLE_FIELDS = ("trial", "status", "arch_json", "params", "gmacs", "latency_ms", "latency_source", "fps", "measured_ms",
                "measured_ratio", "miou", "objective", "train_s", "reason")


def trial_rows(ctx: SearchContext, prefix: str) -> list[dict]:
    """The finished trials whose id starts with ``prefix``, in id order."""
    folder = ctx.run_dir / "trials"
    ids = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith(prefix)) if folder.is_dir() else []
    return [row for row in (read_result(ctx, i) for i in ids) if row is not None]


def best_row(rows: list[dict]) -> dict | None:
    trained = [r for r in rows if r["status"] == TRAINED]
    return max(trained, key=lambda r: (r["objective"], r["trial"])) if trained else None


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in TABLE_FIELDS})
    return buf.getvalue()


def _markdown(ctx: SearchContext, rows: list[dict], summary: dict) -> str:
    lo, hi = ctx.band_ms
    lines = [f"# {summary['strategy']} search over {ctx.space.name}", "",
             f"Target latency {ctx.target_ms:.2f} ms ({1000 / ctx.target_ms:.2f} FPS), band [{lo:.2f}, {hi:.2f}] ms "
             f"({ctx.latency.source} latency at {ctx.size}x{ctx.size}); objective {ctx.cfg.objective}; "
             f"mIoU on the {ctx.cfg.eval_split} split after the proxy budget "
             f"({ctx.cfg.train.epochs} epoch(s), steps/epoch {ctx.cfg.train.steps_per_epoch or 'all'}, "
             f"crop {ctx.cfg.train.crop}, preset {ctx.cfg.train.preset}).", "",
             f"Draws / proposals: {Prior.of(ctx.cfg).describe()}.", "",
             *([f"Band by measurement: latency within ±{ctx.cfg.measured_band:g} of the target's, timed side by side "
                f"({ctx.cfg.side_by_side_iters} calls each, {ctx.latency.runtime} on the CPU; measured_ratio).", ""]
               if ctx.side_by_side else []),
             "Counts: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()), "",
             "| " + " | ".join(TABLE_FIELDS) + " |", "|" + "---|" * len(TABLE_FIELDS)]
    lines += ["| " + " | ".join(_fmt(row.get(k)) for k in TABLE_FIELDS) + " |" for row in rows]
    best = summary.get("best")
    if best:
        lines += ["", f"Best: {best['trial']} (objective {best['objective']:.4f}, mIoU {best['miou']:.4f}, "
                      f"{best['latency_ms']:.2f} ms), architecture in best.json."]
    return "\n".join(lines) + "\n"


def plot_trials(ctx: SearchContext, rows: list[dict], path: Path) -> Path:
    """mIoU against latency of the trained trials; the band shaded, the best one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in rows if r["status"] == TRAINED]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axvspan(*ctx.band_ms, color="tab:green", alpha=0.12, label="latency band")
    ax.axvline(ctx.target_ms, color="tab:green", lw=1)
    if trained:
        ax.scatter([r["latency_ms"] for r in trained], [r["miou"] for r in trained], color="tab:blue", label="trials")
        best = best_row(rows)
        ax.scatter([best["latency_ms"]], [best["miou"]], color="tab:red", marker="*", s=160, label=f"best ({best['trial']})")
    ax.set_xlabel(f"{ctx.latency.source} latency (ms) at {ctx.size}x{ctx.size}")
    ax.set_ylabel(f"mIoU ({ctx.cfg.eval_split})")
    ax.set_title(f"{ctx.strategy} search, {ctx.space.name}: {len(trained)} trained")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def write_outputs(ctx: SearchContext, rows: list[dict], counts: dict) -> dict:
    """Write the table, plot, best architecture and summary; returns the summary."""
    best = best_row(rows)
    summary = {"strategy": ctx.strategy, "space": ctx.space.name, "target_ms": ctx.target_ms, "band_ms": list(ctx.band_ms),
               "measured_band": ctx.cfg.measured_band,
               "latency_source": ctx.latency.source, "size": ctx.size, "objective": ctx.cfg.objective,
               "prior": dataclasses.asdict(Prior.of(ctx.cfg)), "counts": counts,
               "best": best and {k: best.get(k) for k in TABLE_FIELDS if best.get(k) is not None}}
    write_text_atomic(ctx.run_dir / "trials.csv", _csv(rows))
    write_text_atomic(ctx.run_dir / "trials.md", _markdown(ctx, rows, summary))
    if best:
        with atomic_path(ctx.run_dir / "best.json") as tmp:
            shutil.copyfile(ctx.run_dir / best["arch_json"], tmp)
    plot_trials(ctx, rows, ctx.run_dir / "trials.png")
    write_text_atomic(ctx.run_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
