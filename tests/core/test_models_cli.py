"""``terralite models``: every registry entry is listed; --size adds params and GMACs."""

import json

import pytest

from terralite.cli import main


def test_models_json_lists_every_registry_entry(capsys):
    from terralite.benchmark.zoo import BASELINES
    from terralite.models import MODEL_KINDS
    from terralite.search_spaces.base import SEARCH_SPACES

    assert main(["models", "--json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in catalogue["baselines"]] == BASELINES.names()
    assert [e["name"] for e in catalogue["search_spaces"]] == SEARCH_SPACES.names() == ["fasterseg", "sparsemask"]
    assert [e["name"] for e in catalogue["model_kinds"]] == MODEL_KINDS.names()
    assert {"baseline", "fasterseg", "sparsemask", "pruned"} <= set(MODEL_KINDS.names())
    assert all(e["description"] for e in catalogue["baselines"] + catalogue["search_spaces"])
    kinds = {e["name"]: e for e in catalogue["model_kinds"]}
    assert kinds["sparsemask"]["pretrained"].startswith("torchvision mobilenet_v2") and kinds["fasterseg"]["pretrained"] is None
    assert "params_m" not in catalogue["baselines"][0]


def test_models_size_adds_params_and_gmacs(capsys):
    assert main(["models", "unet-resnet18", "sparsemask", "--size", "64", "--json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    by_name = {e["name"]: e for e in catalogue["baselines"]}
    assert list(by_name) == ["unet-resnet18"] and [e["name"] for e in catalogue["search_spaces"]] == ["sparsemask"]
    assert by_name["unet-resnet18"]["params_m"] == pytest.approx(14.329, abs=1e-3) and 0.3 < by_name["unet-resnet18"]["gmacs"] < 0.4
    sparsemask = {e["name"]: e for e in catalogue["search_spaces"]}["sparsemask"]
    assert sparsemask["lightest"]["gmacs"] <= sparsemask["heaviest"]["gmacs"]
    assert main(["models", "unet-resnet18", "sparsemask", "--size", "64"]) == 0
    text = capsys.readouterr().out
    assert "unet-resnet18" in text and "14.329 M" in text and "heaviest:" in text and "model kinds" in text


def test_models_bad_size_is_one_line(capsys):
    assert main(["models", "--size", "50"]) == 2
    assert "--size 50 must be a positive multiple of 32" in capsys.readouterr().err
    assert main(["models", "unet-nope"]) == 2
    assert "unknown baseline or search space unet-nope; valid names:" in capsys.readouterr().err
