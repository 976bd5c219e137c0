import pytest
import torch
from torch import nn

from terralite.engine.optim import build_optimizer, build_scheduler, decoder_parameters, lr_factor
from terralite.engine.presets import ScheduleConfig, get_preset, resolve_train_config
from terralite.errors import TerraLiteError


def test_presets_follow_the_recipes():
    unet = get_preset("unet")
    assert (unet.optim.name, unet.optim.lr, unet.optim.weight_decay, unet.crop, unet.batch_size, unet.epochs) == ("adamw", 1e-4, 1e-6, 512, 8, 200)
    assert unet.loss == {"ce": 1.0} and unet.schedule.name == "constant"
    fs = get_preset("fasterseg")
    assert (fs.optim.name, fs.optim.lr, fs.optim.momentum, fs.optim.weight_decay) == ("sgd", 0.01, 0.9, 5e-4)
    assert (fs.schedule.name, fs.schedule.gamma) == ("exponential", 0.992) and "ohem" in fs.loss and fs.aux_weight > 0
    sm = get_preset("sparsemask")
    assert (sm.optim.name, sm.schedule.name, sm.schedule.power, sm.optim.decoder_lr_mult) == ("sgd", "poly", 0.9, 10.0)
    with pytest.raises(TerraLiteError, match="unknown training preset 'segformer'"):
        get_preset("segformer")


def test_resolution_order_and_loss_replacement(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("preset: fasterseg\nepochs: 7\nloss: {ce: 1.0, lovasz: 0.5}\noptim: {lr: 0.05}\n")
    cfg = resolve_train_config(None, str(yaml), ["epochs=9"], crop=256, batch_size=None)
    assert cfg.preset == "fasterseg" and cfg.epochs == 9 and cfg.crop == 256 and cfg.batch_size == 8
    assert cfg.loss == {"ce": 1.0, "lovasz": 0.5}  # replaces the preset's OHEM instead of adding to it
    assert cfg.optim.lr == 0.05 and cfg.optim.momentum == 0.9  # nested keys merge
    with pytest.raises(TerraLiteError, match="unknown config key"):
        resolve_train_config("unet", None, ["optim.learning_rate=1"])


class WithDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Conv2d(3, 4, 1)
        self.decoder = nn.Conv2d(4, 8, 1)


def test_decoder_group_gets_its_multiplier():
    model = WithDecoder()
    opt = build_optimizer(model, get_preset("sparsemask").optim)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in model.decoder.parameters()}

    class Marked(WithDecoder):
        def decoder_parameters(self):
            return self.encoder.parameters()

    assert {id(p) for p in decoder_parameters(Marked())} != {id(p) for p in Marked().decoder.parameters()}
    with pytest.raises(TerraLiteError, match="marks no decoder parameters"):
        build_optimizer(nn.Conv2d(3, 8, 1), get_preset("sparsemask").optim)


def test_schedules():
    exp = ScheduleConfig(name="exponential", gamma=0.992)
    assert lr_factor(exp, 9, 10, 100) == 1.0 and lr_factor(exp, 25, 10, 100) == pytest.approx(0.992**2)
    poly = ScheduleConfig(name="poly", power=0.9)
    assert lr_factor(poly, 50, 10, 100) == pytest.approx(0.5**0.9) and lr_factor(poly, 100, 10, 100) == 0.0
    warm = ScheduleConfig(name="constant", warmup_steps=4)
    assert [lr_factor(warm, s, 10, 100) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    sched = build_scheduler(opt, poly, 10, 100)
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5**0.9)
    with pytest.raises(TerraLiteError, match="unknown schedule"):
        build_scheduler(opt, ScheduleConfig(name="cosine"), 10, 100)
