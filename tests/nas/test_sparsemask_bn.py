"""SparseMask search: BatchNorm affine parameters stay fixed during the search (as the original), running
statistics still update; a non-finite loss term stops the step."""

import pytest
import torch
from torch import nn

from terralite.engine.run import NonFiniteLossError
from terralite.nas.sparsemask.search import SparseMaskSearch, resolve_search_config


def _job(root, out, *overrides):
    cfg = resolve_search_config("tiny", overrides=[f"data={root}", f"out={out}", "device=cpu", "steps_per_epoch=1",
                                                   "profile_size=64", *overrides])
    job = SparseMaskSearch(cfg)
    job._start()  # the run loop's setup: data, supernet, optimiser, run folder
    return job


def _affine_bns(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.affine]


@pytest.mark.parametrize("frozen", [True, False])
def test_bn_affine_frozen_during_the_search_step(synthetic_root, tmp_path, frozen):
    job = _job(synthetic_root, tmp_path / "run", f"freeze_bn_affine={str(frozen).lower()}")
    model = job.raw_model
    bns = _affine_bns(model)
    assert len(bns) > 9  # the encoder's and one per decoder stage
    assert all(m.weight.requires_grad is not frozen and m.bias.requires_grad is not frozen for m in bns)
    in_optimizer = {id(p) for group in job.optimizer.param_groups for p in group["params"]}
    assert all((id(m.weight) in in_optimizer) is not frozen for m in bns)
    # BN affine values start away from (1, 0) so that any update shows
    with torch.no_grad():
        for m in bns:
            m.weight.fill_(1.5)
            m.bias.fill_(0.1)
    affine0 = [(m.weight.clone(), m.bias.clone()) for m in bns]
    stats0 = [m.running_mean.clone() for m in bns]
    conv0 = model.head.weight.detach().clone()
    job.train_epoch(0, 0)
    affine_same = [torch.equal(w0, m.weight) and torch.equal(b0, m.bias) for (w0, b0), m in zip(affine0, bns)]
    assert all(affine_same) if frozen else not any(affine_same)
    assert not any(torch.equal(s0, m.running_mean) for s0, m in zip(stats0, bns))  # statistics still update
    assert not torch.equal(conv0, model.head.weight)  # and the convolutions train
    job.folder.close()


def test_non_finite_term_stops_the_search_step(synthetic_root, tmp_path):
    job = _job(synthetic_root, tmp_path / "run")
    first_conv = next(job.raw_model.encoder.parameters())
    first_conv.data.fill_(float("inf"))
    gates0 = [g.detach().clone() for g in job.raw_model.gate_parameters()]
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1: the cross-entropy loss is nan"):
        job.train_epoch(0, 0)
    assert all(torch.equal(g0, g) for g0, g in zip(gates0, job.raw_model.gate_parameters()))
    job.folder.close()
