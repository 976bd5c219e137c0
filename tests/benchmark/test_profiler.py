import json

import pytest

from benchmark.profiler import profile_model
from terralite.cli import main


def test_profile_matches_hand_count(tiny):
    result = profile_model(tiny, size=32, in_channels=3)
    # params: 8*3*3*3 + 8 (bias) + 4*8 = 256; MACs: 32*32 * (8*3*9 + 4*8) = 1024 * 248
    assert result["params_m"] * 1e6 == pytest.approx(256)
    assert result["gmacs"] * 1e9 == pytest.approx(1024 * 248)
    assert result["flop_counter_gmacs"] * 1e9 == pytest.approx(1024 * 248)
    assert result["disagreement_pct"] == pytest.approx(0)
    assert result["flagged"] is False
    assert result["flop_counter"] == "fvcore"
    assert result["unsupported_ops"] == {"aten::sigmoid": 1}  # elementwise: fvcore skips it and says so
    assert result["input_shape"] == [1, 3, 32, 32]


def test_profile_cli(capsys):
    assert main(["profile", "unet-resnet18", "--size", "64", "--in-channels", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "unet-resnet18" and result["input_shape"] == [1, 4, 64, 64]
    assert result["params_m"] == pytest.approx(14.329, abs=0.01)
    assert result["gmacs"] == pytest.approx(result["flop_counter_gmacs"], rel=0.02)
    assert main(["profile", "unet-resnet18", "--size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["profile", "unet-nope", "--size", "64"]) == 2
    assert "unknown baseline 'unet-nope'" in capsys.readouterr().err
