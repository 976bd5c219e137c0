"""FasterSeg latency model: table coverage, per-op charging, differentiable supernet latency."""

import numpy as np
import pytest
import torch

from nas.fasterseg.latency import DECOUPLED_WEIGHTS, SupernetLatency, arch_latency, measure_table, table_conditions, table_entries
from nas.latency_table import LatencyTable
from search_spaces.fasterseg.network import plan_branches, share_cells
from search_spaces.fasterseg.ops import OP_NAMES
from search_spaces.fasterseg.space import FasterSegSearchSpace

SIZE = 64


@pytest.fixture(scope="module")
def space():
    return FasterSegSearchSpace.from_preset("tiny", widths=[6, 12])


def _table(space, value):
    """A table over every entry, ``value(key) -> ms`` (to test the arithmetic with known numbers)."""
    cond = table_conditions(space, SIZE, torch.device("cpu"), "onnxruntime")
    return LatencyTable(cond, {k: value(k) for k in table_entries(space, SIZE)})


def test_table_covers_supernet_and_sampled_archs(space):
    table = _table(space, lambda k: 1.0)
    rng = np.random.default_rng(0)
    for role in ("student", "teacher", "student"):
        arch = space.sample(rng, role=role)
        arch_latency(table, arch, SIZE, 3, 8)  # raises on a missing entry
    SupernetLatency(space, table, SIZE)  # every supernet cell at every width
    assert {k.split("|")[0] for k in table.entries} == set(OP_NAMES) | {"stem", "conv1x1_up", "fusion_head"}


def test_arch_latency_counts_each_part_once(space):
    table = _table(space, lambda k: 1.0)
    arch = space.sample(np.random.default_rng(1))
    _, plans = plan_branches(arch)
    unique, _ = share_cells(plans)
    parts = arch_latency(table, arch, SIZE, 3, 8)
    assert parts["stem"] == 1.0 and parts["cells"] == len(unique)
    # a 1/32 branch: 1x1-up + 3x3 at 1/16, then 1x1-up + 3x3 at 1/8; a 1/16 branch: the last two; + fusion head
    assert parts["fusion"] == 4 + 2 + 1
    assert parts["total"] == parts["stem"] + parts["cells"] + parts["fusion"]


def test_each_op_charged_its_own_latency(space):
    cost = {name: float(i + 1) for i, name in enumerate(OP_NAMES)}
    table = _table(space, lambda k: cost.get(k.split("|")[0], 0.0))
    arch = space.sample(np.random.default_rng(2))
    for branch in arch["branches"]:
        for cell in branch["cells"]:
            cell["op"] = "zoomed_conv_2x"
    _, plans = plan_branches(arch)
    unique, _ = share_cells(plans)
    assert arch_latency(table, arch, SIZE, 3, 8)["cells"] == cost["zoomed_conv_2x"] * len(unique) != cost["conv_2x"] * len(unique)


def test_supernet_latency_values_and_gradients(space):
    L = space.cfg.layers
    ones = SupernetLatency(space, _table(space, lambda k: 1.0), SIZE)
    net = space.supernet()
    # every path to each of the three last-layer nodes crosses L cells of 1 ms
    for live in DECOUPLED_WEIGHTS:
        assert float(ones(net, live).detach()) == pytest.approx(3 * L)
    # skip free, others 1 ms: more skip probability, less latency
    lat = SupernetLatency(space, _table(space, lambda k: 0.0 if k.startswith("skip|") else 1.0), SIZE)
    loss = lat.loss(net)
    loss.backward()
    for j in range(3):
        g = net.arch[f"student_alpha_{j}"].grad
        assert (g[:, OP_NAMES.index("skip")] < 0).all() and (g[:, 1:] > 0).all()
    assert net.arch["teacher_alpha_0"].grad is None  # the teacher carries no latency term
    # wider outputs cost more: the width gradient favours the narrow choice
    wide = SupernetLatency(space, _table(space, lambda k: float(k.split("cout=")[1].split("|")[0])), SIZE)
    net.zero_grad()
    wide(net, "widths").backward()
    g = net.arch["student_ratio_0"].grad
    assert (g[:, 0] < 0).all() and (g[:, -1] > 0).all()


def test_measured_entries_onnxruntime(space):
    pytest.importorskip("onnxruntime")
    keys = sorted(table_entries(space, SIZE))
    only = {next(k for k in keys if k.startswith("zoomed_conv_2x|")), next(k for k in keys if k.startswith("stem|")),
            next(k for k in keys if k.startswith("fusion_head|"))}
    table = measure_table(space, SIZE, torch.device("cpu"), "onnxruntime", warmup=1, iters=2, only=only)
    assert set(table.entries) == only and all(v > 0 for v in table.entries.values())
    c = table.conditions
    assert c["runtime"] == "onnxruntime" and c["size"] == SIZE and c["device"].startswith("cpu") and c["versions"]["onnxruntime"]
    table.check_conditions(table_conditions(space, SIZE, torch.device("cpu"), "onnxruntime"))


def test_cli_errors(tmp_path, capsys):
    from terralite.cli import main

    assert main(["latency-table", "fasterseg", "--size", "100", "--out", str(tmp_path / "t.json")]) == 2
    assert "--size must be a positive multiple of 32" in capsys.readouterr().err
    assert main(["latency-table", "fasterseg", "--out", str(tmp_path / "missing" / "t.json")]) == 2
    assert "output folder" in capsys.readouterr().err
    other = LatencyTable({"search_space": "sparsemask"}, {}).save(tmp_path / "other.json")
    assert main(["latency-check", "fasterseg", "--lut", str(other), "--samples", "5", "--out", str(tmp_path / "c.json")]) == 2
    assert "is not a FasterSeg table" in capsys.readouterr().err
    assert main(["latency-check", "fasterseg", "--lut", str(other), "--samples", "2", "--out", str(tmp_path / "c.json")]) == 2
    assert "at least 3" in capsys.readouterr().err
