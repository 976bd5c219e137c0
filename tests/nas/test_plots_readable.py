"""The search plots name their axes and explain their marks (checked on the figure objects)."""

import json
from pathlib import Path

from terralite.nas.fasterseg.plots import arch_evolution_figure, plot_arch_evolution
from terralite.nas.sparsemask.plot import EDGE_COLOURS, connectivity_figure, plot_connectivity
from terralite.search_spaces.fasterseg.ops import OP_NAMES

RESULTS = Path(__file__).resolve().parents[2] / "results"


def history(step: float) -> list[dict]:
    rows = []
    for epoch in range(1, 5):
        row = {"epoch": epoch, **{f"op_{n}": 0.2 + step * epoch * (i - 2) for i, n in enumerate(OP_NAMES)}}
        row.update(down_1_16=0.5 + step * epoch, down_1_32=0.5, width_1_8=0.6, width_1_16=0.6, width_1_32=0.6 + step,
                   student_fps=7.0 + epoch)
        rows.append(row)
    return rows


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]


def test_arch_evolution_axes_scales_warmup_and_target_band(tmp_path):
    fig = arch_evolution_figure(history(0.01), target_fps=8.0, band=0.2, warmup_epochs=1)
    axes = fig.axes[:4]
    assert [a.get_xlabel() for a in axes] == ["epoch"] * 4
    assert [a.get_ylabel() for a in axes] == ["probability", "probability", "width / base width", "FPS at the target size"]
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["1/16", "1/32"]
    assert [t.get_text() for t in axes[2].get_legend().get_texts()] == ["1/8", "1/16", "1/32"]
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == list(OP_NAMES)
    assert [t.get_text() for t in axes[3].get_legend().get_texts()] == ["target band 8–9.6 FPS", "student (latency table)"]
    assert all(any(line.get_xdata()[0] == 1.5 and line.get_linestyle() == "--" for line in a.get_lines()) for a in axes)
    assert not any("barely" in t or "moved by at most" in t for t in texts(fig))
    # fixed scales: a probability never autoscales into a magnified (or offset) axis
    assert [a.get_ylim() for a in axes[:3]] == [(0.0, 1.0), (0.0, 1.0), (0.0, 1.05)]
    assert not any(a.yaxis.get_major_formatter().get_offset() for a in axes[:3])
    plot_arch_evolution(history(0.01), tmp_path / "a.png", 8.0, 0.2, 1)
    assert (tmp_path / "a.png").stat().st_size > 10_000


def test_arch_evolution_notes_parameters_that_barely_moved():
    still = arch_evolution_figure(history(0.0001), target_fps=8.0, band=0.2, warmup_epochs=1)
    assert any(t.startswith("note: the architecture parameters moved by at most 0.00") for t in texts(still))


def test_connectivity_legend_names_edge_colours_and_dropped_stages(tmp_path):
    spec = json.loads((RESULTS / "sparsemask" / "budget_10" / "arch.json").read_text())
    fig = connectivity_figure(spec["arch"])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:3] == list(EDGE_COLOURS)
    assert labels[3].startswith("dropped (no kept input / unused)")
    colours = {tuple(round(c, 3) for c in p.get_edgecolor()[:3]) for p in fig.axes[0].patches if hasattr(p, "get_arrowstyle")}
    from matplotlib.colors import to_rgb

    assert colours <= {tuple(round(c, 3) for c in to_rgb(c)) for c in EDGE_COLOURS.values()} | {(0.0, 0.0, 0.0)}
    assert plot_connectivity(spec["arch"], tmp_path / "c.png").stat().st_size > 10_000
