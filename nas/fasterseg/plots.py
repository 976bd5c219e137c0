"""The architecture-evolution plot of a FasterSeg search: how α, β and the widths moved per epoch, and the
student's predicted speed against its target."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from terralite.search_spaces.fasterseg.ops import OP_NAMES
from terralite.atomic import atomic_path


def arch_summary(supernet, role: str = "student") -> dict:
    """Per-epoch summary: mean op probabilities, mean down probability per scale, mean width fraction per scale."""
    with torch.no_grad():
        ops = torch.cat([F.softmax(a, -1) for a in supernet.alphas(role)]).mean(0)
        summary = {f"op_{name}": float(p) for name, p in zip(OP_NAMES, ops)}
        for j, b in ((1, supernet.betas(role)[1]), (2, supernet.betas(role)[2])):
            summary[f"down_1_{8 * 2 ** j}"] = float(F.softmax(b, -1)[:, 0].mean())
        if role == "student":
            widths = torch.tensor(supernet.cfg.widths, dtype=torch.float32) / supernet.cfg.width_base
            for j, r in enumerate(supernet.ratios()):
                summary[f"width_1_{8 * 2 ** j}"] = float((F.softmax(r, -1) * widths).sum(-1).mean())
    return summary


#: Below this much movement (max - min over the epochs, of every probability and width fraction) the plot
#: says the architecture parameters barely moved: the search was too short for them to learn anything.
BARELY_MOVED = 0.01


def _scale(key: str, prefix: str) -> str:
    """``down_1_16`` → ``1/16``; op names stay as they are."""
    name = key[len(prefix):]
    return name.replace("_", "/") if name.startswith("1_") else name


def arch_evolution_figure(history: list[dict], target_fps: float | None = None, band: float = 0.0,
                          warmup_epochs: int = 0):
    """The figure of :func:`plot_arch_evolution` (matplotlib ``Figure``, Agg canvas): four panels over epochs —
    α (op probabilities), β (probability of going down a scale), the expected width per scale, and the
    student's predicted FPS against its target band ``[target_fps, target_fps·(1+band)]``; a dashed line
    marks the end of the warm-up (weights only, architecture frozen)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(18, 4.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    # fixed scales (probabilities 0–1, widths up to the base width): a flat line reads as "did not move",
    # never as a jump magnified by autoscaling (or by an offset such as "1e-8 + 2e-1" while α is frozen)
    panels = (("op_", "α: operator probability (mean over cells)", "probability", 1.0),
              ("down_", "β: probability of going down to the scale", "probability", 1.0),
              ("width_", "expected width per scale", "width / base width", 1.05))
    moved = 0.0
    for ax, (prefix, title, ylabel, top) in zip(axes, panels):
        ax.set_ylim(0.0, top)
        for key in [k for k in history[0] if k.startswith(prefix)] if history else []:
            values = [h[key] for h in history]
            moved = max(moved, max(values) - min(values))
            ax.plot(epochs, values, marker="o", label=_scale(key, prefix))
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, title="scale" if prefix != "op_" else "operator", title_fontsize=8)
    ax = axes[3]
    points = [(h["epoch"], h["student_fps"]) for h in history if h.get("student_fps") is not None]
    if target_fps is not None:
        ax.axhspan(target_fps, target_fps * (1 + band), color="#2a7d2a", alpha=0.2,
                   label=f"target band {target_fps:g}–{target_fps * (1 + band):g} FPS")
    if points:
        ax.plot(*zip(*points), marker="o", color="black", label="student (latency table)")
    ax.set_title("student's predicted speed", fontsize=10)
    ax.set_ylabel("FPS at the target size")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
        if warmup_epochs and history:
            ax.axvline(warmup_epochs + 0.5, color="grey", linestyle="--", linewidth=1)
            ax.text(warmup_epochs + 0.5, 1.0, " warm-up ends", transform=ax.get_xaxis_transform(), fontsize=7,
                    color="grey", va="top", ha="left")
    fig.suptitle("FasterSeg student: architecture parameters over the search")
    if history and moved < BARELY_MOVED:
        fig.text(0.5, 0.005, f"note: the architecture parameters moved by at most {moved:.4f} over {len(history)} epochs — "
                 "too short a search for them to learn; the derived student mostly reflects the initial values",
                 ha="center", va="bottom", fontsize=9, color="#b00000")
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig


def plot_arch_evolution(history: list[dict], path: str | Path, target_fps: float | None = None, band: float = 0.0,
                        warmup_epochs: int = 0) -> Path:
    """Write :func:`arch_evolution_figure` as a PNG at ``path`` (atomically)."""
    fig = arch_evolution_figure(history, target_fps, band, warmup_epochs)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return Path(path)
