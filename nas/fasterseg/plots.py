"""The architecture-evolution plot of a FasterSeg search: how α, β and the widths moved per epoch."""

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


def plot_arch_evolution(history: list[dict], path: str | Path) -> Path:
    """Three panels over epochs: op probabilities, down probabilities, expected widths (student)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("op_", "α: mean op probability"), ("down_", "β: mean down probability"), ("width_", "expected width fraction"))
    for ax, (prefix, title) in zip(axes, panels):
        for key in [k for k in history[0] if k.startswith(prefix)] if history else []:
            ax.plot(epochs, [h[key] for h in history], marker="o", label=key[len(prefix):])
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.suptitle("FasterSeg student architecture parameters")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)
