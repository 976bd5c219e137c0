"""``terralite card CKPT``: a Markdown model card from what a checkpoint holds."""

import json
import sys
from pathlib import Path

import pytest

from terralite.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from tiny_model import NAME as TINY, register  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root):
    register()
    out = tmp_path_factory.mktemp("card") / "run"
    assert main(["train", "--model", TINY, "--data", str(synthetic_root), "--out", str(out), "--epochs", "1", "--batch-size", "2",
                 "--crop", "32", "--device", "cpu", "--set", "steps_per_epoch=1", "--set", "optim.lr=0.003"]) == 0
    return out


def test_card_holds_spec_params_data_recipe_metrics_versions(trained, synthetic_root, capsys):
    from terralite.benchmark.profiler import profile_model
    from terralite.checkpoint import load_checkpoint
    from terralite.models import build_model, spec_hash

    capsys.readouterr()
    assert main(["card", str(trained / "best.pt"), "--size", "64"]) == 0
    card = capsys.readouterr().out
    ckpt = load_checkpoint(trained / "best.pt")
    params = profile_model(build_model(ckpt["spec"]), 64, 3)["params_m"]
    assert card.startswith(f"# Model card: {TINY}\n") and f"spec hash `{spec_hash(ckpt['spec'])}`" in card
    assert json.dumps(ckpt["spec"], indent=1, sort_keys=True) in card
    assert f"| parameters (deployed) | {params:.3f} M |" in card and "| GMACs at 64x64 |" in card
    assert f"| dataset | `{synthetic_root}` |" in card and "| normalisation mean | `[" in card
    assert "| preset | `unet` |" in card and "| epochs | `1` |" in card and '"lr": 0.003' in card
    assert f"| val_miou | {ckpt['metrics']['val_miou']:.4g} |" in card
    assert "| torch | `" in card and "## Versions" in card


def test_card_out_writes_the_file_and_refuses_the_checkpoint(trained, tmp_path, capsys):
    assert main(["card", str(trained / "best.pt"), "--size", "64", "--out", str(tmp_path / "CARD.md")]) == 0
    assert (tmp_path / "CARD.md").read_text().startswith("# Model card:")
    assert main(["card", str(trained / "best.pt"), "--out", str(trained / "best.pt")]) == 2
    assert "is also an input of this command" in capsys.readouterr().err  # the CLI-wide output guard
    assert main(["card", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt does not exist" in capsys.readouterr().err
