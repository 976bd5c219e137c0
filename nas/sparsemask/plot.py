"""Picture of a SparseMask architecture: encoder taps and up inputs → decoder stages, kept connections drawn.

Left column: the encoder taps (deep at the top) and the global pool of tap 0 (``up0``); right column: the
decoder stages at the same rows (stage ``i`` works at tap ``i``'s resolution). Straight lines are kept
``tapJ`` / ``up0`` inputs, arcs on the right are kept ``upK`` inputs (stage K−1 → stage i), coloured by kind
(:data:`EDGE_COLOURS`, in the legend). Dropped stages (no kept input) and unused taps are grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from terralite.search_spaces.sparsemask.arch import arch_to_mask, num_connections
from terralite.search_spaces.sparsemask.topology import NUM_STAGES, TAP, TAP_CHANNELS, TAP_STRIDES, UP
from terralite.atomic import atomic_path


#: Edge colours of the picture and what each means (the legend).
EDGE_COLOURS = {
    "encoder tap → stage": "#1f4e9c",
    "global pool (up0) → stage": "#c77700",
    "stage → later stage (up input)": "#2a7d2a",
}


def connectivity_figure(arch: dict, title: str = ""):
    """The picture of ``arch`` as a matplotlib ``Figure`` (Agg canvas, no display), with a legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, Patch

    tap_colour, pool_colour, up_colour = EDGE_COLOURS.values()
    mask = arch_to_mask(arch)
    fig = Figure(figsize=(7.5, 8.3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    rows = {s: NUM_STAGES - s for s in range(NUM_STAGES)}  # stage/tap s at height 9 - s (deep on top)
    tap_x, pool_x, stage_x = 0.0, 0.0, 1.0
    pool_y = NUM_STAGES + 1.0

    def node(x, y, text, live, colour):
        ax.text(x, y, text, ha="center", va="center", fontsize=8, color="black" if live else "#999999",
                bbox={"boxstyle": "round,pad=0.3", "fc": colour if live else "#eeeeee", "ec": "black" if live else "#bbbbbb"})

    used_taps = mask[:, :, TAP].any(axis=0)
    for j in range(NUM_STAGES):
        node(tap_x, rows[j], f"tap{j}\n{TAP_CHANNELS[j]} ch, /{TAP_STRIDES[j]}", used_taps[j], "#cfe2ff")
    node(pool_x, pool_y, "up0 = pool(tap0)", mask[:, 0, UP].any(), "#ffe5b4")
    for s in range(NUM_STAGES):
        node(stage_x, rows[s], f"stage{s}\n/{TAP_STRIDES[s]}", mask[s].any(), "#d4f4d2")
    node(stage_x + 0.45, rows[NUM_STAGES - 1], "head\n(x2 up)", True, "#f8d7da")
    ax.annotate("", xy=(stage_x + 0.35, rows[NUM_STAGES - 1]), xytext=(stage_x + 0.12, rows[NUM_STAGES - 1]),
                arrowprops={"arrowstyle": "->"})

    for s, idx, kind in np.argwhere(mask):
        end = (stage_x - 0.12, rows[s])
        if kind == TAP:
            ax.add_patch(FancyArrowPatch((tap_x + 0.17, rows[idx]), end, arrowstyle="->", mutation_scale=8, color=tap_colour, lw=0.9))
        elif idx == 0:
            ax.add_patch(FancyArrowPatch((pool_x + 0.2, pool_y), end, arrowstyle="->", mutation_scale=8, color=pool_colour, lw=0.9))
        else:
            ax.add_patch(FancyArrowPatch((stage_x + 0.1, rows[idx - 1]), (stage_x + 0.1, rows[s]), arrowstyle="->",
                                         connectionstyle="arc3,rad=-0.5", mutation_scale=8, color=up_colour, lw=0.9))
    ax.set_xlim(-0.4, 1.75)
    ax.set_ylim(0.3, NUM_STAGES + 1.7)
    ax.axis("off")
    dropped = [s for s in range(NUM_STAGES) if not mask[s].any()]
    handles = [Line2D([], [], color=c, lw=1.5, marker=">", markersize=5, label=label) for label, c in EDGE_COLOURS.items()]
    handles.append(Patch(facecolor="#eeeeee", edgecolor="#bbbbbb",
                         label="dropped (no kept input / unused)" + (f": stages {', '.join(map(str, dropped))}" if dropped else "")))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title or f"SparseMask architecture: {num_connections(arch)} connections", fontsize=10)
    return fig


def plot_connectivity(arch: dict, path: str | Path, title: str = "") -> Path:
    """Draw ``arch`` into a PNG at ``path`` (written atomically)."""
    fig = connectivity_figure(arch, title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return path
