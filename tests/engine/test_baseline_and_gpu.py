"""Longer checks: a real registered baseline learns; AMP and channels_last on a GPU."""

import pytest
import torch

from terralite.checkpoint import load_checkpoint
from terralite.engine.presets import get_preset
from terralite.engine.train import train


@pytest.mark.slow
def test_unet_resnet18_learns_on_synthetic_data(synthetic_root, tmp_path):
    cfg = get_preset("unet", model="unet-resnet18", data=str(synthetic_root), out=str(tmp_path / "r"), epochs=8,
                     batch_size=2, crop=64, device="cpu", checkpoint_every=0)
    cfg.optim.lr = 1e-3
    train(cfg)
    rows = [line.split(",") for line in (tmp_path / "r" / "log.csv").read_text().splitlines()[1:]]
    assert float(rows[-1][1]) < float(rows[0][1])
    assert load_checkpoint(tmp_path / "r" / "best.pt")["metrics"]["val_miou"] > 0.15  # chance is about 0.06; this run reaches 0.24


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_channels_last_on_gpu(amp, synthetic_root, tiny_model_name, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = get_preset("fasterseg", model=tiny_model_name, data=str(synthetic_root), out=str(tmp_path / "r"), epochs=2,
                     batch_size=2, crop=64, device="cuda", amp=amp, workers=2, accumulate=2)
    train(cfg)
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["metrics"]["train_loss"] == ckpt["metrics"]["train_loss"]  # finite, not NaN
    if amp == "fp16":
        assert ckpt["scaler"]["scale"] > 0  # the GradScaler state is checkpointed
