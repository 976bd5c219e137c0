"""A non-finite loss stops a training run before it steps, with one clear line, and leaves last.pt good."""

import pytest
import torch

from terralite.checkpoint import load_checkpoint
from terralite.engine.presets import get_preset
from terralite.engine.run import NonFiniteLossError
from terralite.engine.train import train
from terralite.errors import TerraLiteError


class NanFromSecondEpoch:
    """An extra loss term that is 0 for the first epoch's steps and NaN after them."""

    def __init__(self, good_steps: int):
        self.calls, self.good_steps = 0, good_steps

    def __call__(self, images, logits, targets):
        self.calls += 1
        return logits.sum() * (0.0 if self.calls <= self.good_steps else float("nan"))


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synthetic_root, tiny_model_name, tmp_path):
    out = tmp_path / "run"
    cfg = get_preset("unet", model=tiny_model_name, data=str(synthetic_root), out=str(out), epochs=3, batch_size=2, crop=32,
                     device="cpu", checkpoint_every=0, steps_per_epoch=2, val_split=None)
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg, [NanFromSecondEpoch(good_steps=2)])
    message = str(caught.value)
    assert isinstance(caught.value, TerraLiteError) and "\n" not in message
    assert message.startswith(f"run {out} stopped at epoch 2, step 1: the training (NanFromSecondEpoch#0 term) loss is nan")
    assert f"{out / 'last.pt'} keeps the last good state" in message
    assert message in (out / "run.log").read_text()
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1  # the first epoch's checkpoint, untouched
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    assert [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()] == ["epoch", "1"]


def test_nan_in_the_first_step_says_no_checkpoint_exists(synthetic_root, tiny_model_name, tmp_path):
    out = tmp_path / "run"
    cfg = get_preset("unet", model=tiny_model_name, data=str(synthetic_root), out=str(out), epochs=1, batch_size=2, crop=32,
                     device="cpu", checkpoint_every=0, steps_per_epoch=1, val_split=None)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1: .* loss is nan .*no checkpoint had been written yet"):
        train(cfg, [NanFromSecondEpoch(good_steps=0)])
    assert not (out / "last.pt").exists()
