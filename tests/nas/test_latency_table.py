"""Latency-table file format and the conditions check."""

import json

import pytest

from terralite.nas.latency_table import LatencyTable, entry_key
from terralite.errors import TerraLiteError

CONDITIONS = {"search_space": "fasterseg", "device_type": "cpu", "runtime": "onnxruntime", "precision": "fp32",
              "size": 1024, "batch": 1, "in_channels": 3, "num_classes": 8, "space": {"layers": 16, "F": 12},
              "device": "cpu: Test CPU (2 threads)", "date": "2026-11-21T12:00:00+00:00"}


def test_round_trip_and_lookup(tmp_path):
    key = entry_key("conv", H=128, W=128, cin=64, cout=96, stride=1)
    assert key == "conv|H=128|W=128|cin=64|cout=96|stride=1"
    table = LatencyTable(dict(CONDITIONS), {key: 12.5, entry_key("skip", H=8, W=8, cin=8, cout=8, stride=2): 0.25})
    path = table.save(tmp_path / "lut.json")
    again = LatencyTable.load(path)
    assert again.conditions == CONDITIONS and again.entries == table.entries
    assert again.lookup("conv", H=128, W=128, cin=64, cout=96, stride=1) == 12.5
    with pytest.raises(TerraLiteError, match=r"has no entry 'conv\|H=64.*rebuild it"):
        again.lookup("conv", H=64, W=64, cin=64, cout=96, stride=1)


def test_conditions_refused_naming_differences():
    table = LatencyTable(dict(CONDITIONS), {}, source="latency table X.json")
    table.check_conditions({k: v for k, v in CONDITIONS.items() if k not in ("device", "date")})  # same: accepted
    with pytest.raises(TerraLiteError) as info:
        table.check_conditions({**CONDITIONS, "runtime": "torch", "size": 512, "space": {"layers": 6, "F": 12}})
    msg = str(info.value)
    assert "X.json was measured under other conditions" in msg
    assert "runtime='onnxruntime' (needed 'torch')" in msg and "size=1024 (needed 512)" in msg
    assert "space fields layers differ" in msg and "terralite latency-table" in msg
    with pytest.raises(TerraLiteError, match="device_type='cpu' \\(needed 'cuda'\\)"):
        table.check_conditions({"device_type": "cuda"})


@pytest.mark.parametrize("content, words", [
    ("not json", "not valid JSON"),
    (json.dumps({"format": "other"}), "not a TerraLite latency table"),
    (json.dumps({"format": "terralite-latency-table", "version": 9}), "version 9"),
    (json.dumps({"format": "terralite-latency-table", "version": 1, "conditions": {}, "entries": {"a": -1}}), "entry 'a'"),
])
def test_malformed_tables(tmp_path, content, words):
    path = tmp_path / "lut.json"
    path.write_text(content)
    with pytest.raises(TerraLiteError, match=words):
        LatencyTable.load(path)
    with pytest.raises(TerraLiteError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")
