import pytest
import torch
import torch.nn.functional as F

from terralite.errors import TerraLiteError
from terralite.losses import LOSSES, build_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    target[:, :2] = 255
    return logits, target


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_ignores_ignore_pixels_and_backprops(name, batch):
    logits, target = batch
    loss = build_loss(name)(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.all(logits.grad[:, :, :2] == 0)  # ignore rows get no gradient
    # changing logits on ignore pixels does not change the loss
    other = logits.detach().clone()
    other[:, :, :2] = 100.0
    assert build_loss(name)(other, target).item() == pytest.approx(loss.item(), rel=1e-5)


@pytest.mark.parametrize("name", LOSSES.names())
def test_all_ignore_batch_gives_zero(name):
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = build_loss(name)(logits, torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()


def test_ce_matches_torch(batch):
    logits, target = batch
    assert build_loss("ce")(logits, target).item() == pytest.approx(F.cross_entropy(logits, target, ignore_index=255).item())


def test_weighted_sum_and_options(batch):
    logits, target = batch
    total = build_loss({"ce": 1.0, "lovasz": 0.5, "focal": {"weight": 2.0, "gamma": 0.0}})
    ce = F.cross_entropy(logits, target, ignore_index=255)
    lov = build_loss("lovasz")(logits, target)
    # focal with gamma 0 is CE
    assert total(logits, target).item() == pytest.approx((ce + 0.5 * lov + 2.0 * ce).item(), rel=1e-5)
    assert set(total.last_terms) == {"ce", "lovasz", "focal"}


def test_lovasz_perfect_prediction_is_zero():
    target = torch.tensor([[[0, 1], [1, 2]]])
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert build_loss("lovasz")(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_ohem_keeps_hard_pixels(batch):
    logits, target = batch
    ohem = build_loss({"ohem": {"thresh": 0.7, "min_kept_ratio": 0.0}})(logits, target)
    valid = target != 255
    pix = F.cross_entropy(logits, target, ignore_index=255, reduction="none")[valid]
    hard = pix[torch.exp(-pix) <= 0.7]
    assert ohem.item() == pytest.approx(hard.mean().item(), rel=1e-5)


def test_bad_configs_are_clear():
    with pytest.raises(TerraLiteError, match="unknown loss 'dice'.*valid names: ce"):
        build_loss({"dice": 1.0})
    with pytest.raises(TerraLiteError, match="weight must be a number"):
        build_loss({"ce": "x"})
    with pytest.raises(TerraLiteError, match="bad option"):
        build_loss({"ce": {"gama": 2}})
