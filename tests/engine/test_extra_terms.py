"""Extra loss terms that take part in training: attached to the model, optimised, checkpointed, resumed."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from terralite.checkpoint import load_checkpoint
from terralite.engine.presets import get_preset
from terralite.engine.train import train
from terralite.errors import TerraLiteError


class FeatureProbeTerm(nn.Module):
    """A 1x1 conv from the tiny net's body features (16 channels) to the classes, pulled towards the logits."""

    def __init__(self):
        super().__init__()
        self.adapter = nn.Conv2d(16, 8, 1)
        self.features = []
        self.attached = 0

    def attach(self, model):
        self.attached += 1
        model.body.register_forward_hook(lambda module, args, out: self.features.append(out))

    def forward(self, images, logits, targets):
        projected = F.interpolate(self.adapter(self.features.pop()), size=logits.shape[-2:], mode="bilinear")
        self.features.clear()  # validation forwards also fill it
        return 0.1 * F.mse_loss(projected, logits.detach())


def _config(root, model, out, epochs):
    cfg = get_preset("unet", model=model, data=str(root), out=str(out), epochs=epochs, batch_size=2, crop=32,
                     device="cpu", checkpoint_every=0, max_steps_per_epoch=1, val_split=None)
    cfg.optim.lr, cfg.optim.decoder_lr_mult = 0.01, 10.0
    cfg.schedule.name = "constant"  # the lr does not depend on the epoch count: a 1 + 1 epoch run equals a 2 epoch run
    return cfg


def _term():
    torch.manual_seed(1)
    return FeatureProbeTerm()


def test_parameterised_term_is_trained_saved_and_resumed(synthetic_root, tiny_model_name, tmp_path):
    initial = _term().adapter.weight.detach().clone()

    straight = _term()
    train(_config(synthetic_root, tiny_model_name, tmp_path / "a", 2), [straight])
    assert straight.attached == 1
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    assert list(a["extra_terms"][0]) == ["adapter.weight", "adapter.bias"]
    assert not torch.equal(a["extra_terms"][0]["adapter.weight"], initial)  # optimised with the model
    assert not any(key.startswith("adapter") for key in a["state_dict"])  # the student's weights stay its own
    # the adapter's 2 parameters join the tiny net's 10 in the base group (decoder_lr_mult=10 puts the
    # decoder's 2 in a group of their own)
    assert [len(g["params"]) for g in a["optimizer"]["param_groups"]] == [10, 2]

    cfg = _config(synthetic_root, tiny_model_name, tmp_path / "b", 1)
    train(cfg, [_term()])
    resume = dataclasses.replace(cfg, epochs=2, resume=True)
    with pytest.raises(TerraLiteError, match=r"trained with the extra loss terms \[.FeatureProbeTerm.\] but this run was given none"):
        train(resume)
    resumed_term = _term()
    train(resume, [resumed_term])
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert b["epoch"] == 2
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for key, value in a["extra_terms"][0].items():
        assert torch.equal(value, b["extra_terms"][0][key]), key
    assert torch.equal(resumed_term.adapter.weight.detach(), b["extra_terms"][0]["adapter.weight"])
