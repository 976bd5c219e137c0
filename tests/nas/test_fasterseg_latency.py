"""FasterSeg latency model: table coverage, per-op charging, differentiable supernet latency."""

import json

import numpy as np
import pytest
import torch

from terralite.nas.fasterseg.latency import DECOUPLED_WEIGHTS, SupernetLatency, arch_latency, measure_table, table_conditions, table_entries
from terralite.errors import TerraLiteError
from terralite.nas.latency_table import LatencyTable
from terralite.search_spaces.fasterseg.network import plan_branches, share_cells
from terralite.search_spaces.fasterseg.ops import OP_NAMES
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace

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


def test_measured_entries_keep_the_median_of_their_rounds(space, monkeypatch):
    """Each entry is timed once per round, in a new order each round, and keeps the median of its rounds."""
    import terralite.nas.fasterseg.latency as latency

    keys = ["a", "b", "c", "d"]
    rounds_of = {"a": [5.0, 1.0, 3.0], "b": [2.0, 9.0, 4.0], "c": [7.0, 7.0, 1.0], "d": [1.0, 2.0, 8.0]}
    # one channel count per key, so the fake timer knows which entry it is timing from the input shape
    monkeypatch.setattr(latency, "table_entries", lambda space, size: {
        key: (torch.nn.Identity, (1, n + 1, 8, 8)) for n, key in enumerate(keys)})
    visited = []

    def fake_time(module, shape, runtime, device, warmup, iters, threads):
        key = keys[shape[1] - 1]
        visited.append(key)
        return rounds_of[key][visited.count(key) - 1]

    monkeypatch.setattr(latency, "time_module", fake_time)
    table = latency.measure_table(space, SIZE, torch.device("cpu"), "onnxruntime", warmup=1, iters=2, rounds=3)
    assert table.entries == {"a": 3.0, "b": 4.0, "c": 7.0, "d": 2.0}
    assert table.conditions["rounds"] == 3 and len(visited) == 12
    assert sorted(visited[:4]) == sorted(visited[4:8]) == sorted(visited[8:]) == keys  # each round visits all
    assert not visited[:4] == visited[4:8] == visited[8:]  # in a new order
    with pytest.raises(TerraLiteError, match="--rounds must be at least 1"):
        latency.measure_table(space, SIZE, torch.device("cpu"), "onnxruntime", rounds=0)


def test_latency_check_times_the_networks_side_by_side(space, tmp_path):
    """The check builds every sampled network first and times them in turn (a drifting CPU moves them alike)."""
    pytest.importorskip("onnxruntime")
    from terralite.nas.fasterseg.latency_check import latency_check

    table = measure_table(space, SIZE, torch.device("cpu"), "onnxruntime", warmup=1, iters=2, rounds=1)
    table.conditions["device"] = "cpu: " + table.conditions["device"].split(": ", 1)[-1]
    lut = table.save(tmp_path / "lut.json")
    result = latency_check(lut, 3, tmp_path / "check.json", warmup=1, iters=5)
    assert result["timing"] == "side by side" and result["samples"] == 3 and len(result["rows"]) == 3
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in result["rows"])
    assert -1.0 <= result["spearman"] <= 1.0
    assert json.loads((tmp_path / "check.json").read_text())["rows"] == result["rows"]


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


def test_paths_latency_matches_path_enumeration(space):
    """The β recursion equals the expectation over explicit lattice paths (each scale weighted by its own β)."""
    import itertools

    from terralite.search_spaces.fasterseg.config import SCALES, cell_channels, stem_channels

    c, L = space.cfg, space.cfg.layers
    table = _table(space, lambda k: (1 + OP_NAMES.index(k.split("|")[0]) if k.split("|")[0] in OP_NAMES else 0)
                   * float(k.split("H=")[1].split("|")[0]) * (3.0 if k.endswith("stride=2") else 1.0))
    net = space.supernet()
    torch.manual_seed(0)
    with torch.no_grad():
        for j in (1, 2):
            net.arch[f"student_beta_{j}"].normal_()
    betas = {j: torch.softmax(net.arch[f"student_beta_{j}"].detach(), -1) for j in (1, 2)}
    full = [cell_channels(s, c.F, c.width_base, c.width_base) for s in SCALES]
    stem = stem_channels(c.F, c.student_stem_width, c.width_base)[2]
    head = [cell_channels(s, c.F, c.student_head_width, c.width_base) for s in SCALES]

    def cell(i, j, down):  # uniform ops, full widths
        cin = stem if i == 0 else full[j]
        cout = full[j + 1] if down else (head[j] if i == L - 1 else full[j])
        return sum(table.lookup(op, H=SIZE // SCALES[j], W=SIZE // SCALES[j], cin=cin, cout=cout, stride=2 if down else 1)
                   for op in OP_NAMES) / len(OP_NAMES)

    expected = 0.0
    for steps in itertools.product((0, 1), repeat=L - 1):
        path = [0]
        for s in steps:
            path.append(path[-1] + s)
        if any(p > min(i, 2) for i, p in enumerate(path)):
            continue
        prob, lat = 1.0, 0.0
        for i, j in enumerate(path):
            down = i < L - 1 and path[i + 1] > j
            lat += cell(i, j, down)
            if j >= 1 and i > j:  # this cell chose its input: down (column 0) or keep (column 1)
                prob *= float(betas[j][i - j - 1][0 if path[i - 1] < j else 1])
        expected += prob * lat
    got = float(SupernetLatency(space, table, SIZE)(net, "paths").detach())
    assert got == pytest.approx(expected, rel=1e-5)


def test_fusion_entry_charges_the_built_width(space):
    """The table's fusion_head entry has the width the network's fusion conv and head are built with."""
    arch = space.sample(np.random.default_rng(2))
    net = space.build(arch)
    fused = net.fusion_head.fusion[0].weight.shape[0]
    assert net.fusion_head.fusion[0].weight.shape[1] == fused  # the fusion keeps the concatenated width
    seen = []
    table = _table(space, lambda k: 1.0)
    table.lookup = lambda op, **f: seen.append((op, f)) or 1.0  # record what arch_latency charges
    arch_latency(table, arch, SIZE, 3, 8)
    assert [f for op, f in seen if op == "fusion_head"] == [{"H": SIZE // 8, "W": SIZE // 8, "cin": fused, "cout": fused, "classes": 8}]
    assert any(k.startswith(f"fusion_head|H={SIZE // 8}|W={SIZE // 8}|cin={fused}|cout={fused}|") for k in table_entries(space, SIZE))


def test_old_layout_table_is_refused_with_one_clear_message(space, tmp_path, capsys):
    """A table written before the fusion fix (no ``layout``: its fusion entries charge half the width) is refused."""
    good = _table(space, lambda k: 1.0)
    old = LatencyTable({k: v for k, v in good.conditions.items() if k != "layout"}, dict(good.entries))
    path = old.save(tmp_path / "old_lut.json")
    old = LatencyTable.load(path)
    arch = space.sample(np.random.default_rng(0))
    for use in (lambda: arch_latency(old, arch, SIZE, 3, 8), lambda: SupernetLatency(space, old, SIZE)):
        with pytest.raises(TerraLiteError, match=r"old_lut\.json has FasterSeg table layout 1: .*halved the branches' "
                                                 r"concatenated width.*terralite latency-table fasterseg"):
            use()
    from terralite.cli import main

    assert main(["latency-check", "fasterseg", "--lut", str(path), "--samples", "3", "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "table layout 1" in err and "Traceback" not in err and not (tmp_path / "c.json").exists()
