import pytest
import torch

from terralite.atomic import atomic_path, write_text_atomic
from terralite.checkpoint import load_checkpoint, save_checkpoint
from terralite.errors import TerraLiteError


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TerraLiteError, match="does not exist: create it first"):
        write_text_atomic(tmp_path / "missing" / "x.txt", "x")


def test_checkpoint_round_trip_weights_only(tmp_path):
    spec = {"kind": "baseline", "name": "x", "num_classes": 8, "in_channels": 3}
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    path = save_checkpoint(tmp_path / "last.pt", spec, state, epoch=3, metrics={"miou": 0.5})
    ckpt = load_checkpoint(path)
    assert ckpt["spec"] == spec and ckpt["epoch"] == 3 and ckpt["metrics"] == {"miou": 0.5}
    assert torch.equal(ckpt["state_dict"]["w"], state["w"])
    assert "torch" in ckpt["versions"]


def test_foreign_and_missing_checkpoints(tmp_path):
    with pytest.raises(TerraLiteError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(1)}, foreign)
    with pytest.raises(TerraLiteError, match="not a TerraLite checkpoint"):
        load_checkpoint(foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(TerraLiteError, match="not a readable TerraLite checkpoint"):
        load_checkpoint(garbage)
