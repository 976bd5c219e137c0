import math

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


def _two_class(z, target):
    """Logits (1, 2, H, W) with class-0 logit 0 and class-1 logit z: p(class 1) = sigmoid(z)."""
    z = torch.as_tensor(z, dtype=torch.float32).reshape(target.shape)
    return torch.stack([torch.zeros_like(z), z], dim=1).requires_grad_(True)


def _ce(z):  # -log sigmoid(z), by hand
    return math.log(1.0 + math.exp(-z))


def test_ohem_no_valid_pixel_is_zero_with_a_graph():
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    loss = build_loss("ohem")(logits, torch.full((1, 8, 8), 255))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_ohem_fewer_valid_than_min_kept_keeps_every_valid_pixel():
    # 64 pixels → min_kept 4; only 3 valid, all confident (p > 0.7): mining would keep none (the old NaN)
    target = torch.full((1, 8, 8), 255)
    target[0, 0, :3] = 1
    z = torch.zeros(8, 8)
    z[0, :3] = torch.tensor([2.0, 3.0, 4.0])  # p = 0.88, 0.95, 0.98
    loss = build_loss("ohem")(_two_class(z, target), target)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx((_ce(2.0) + _ce(3.0) + _ce(4.0)) / 3, rel=1e-6)
    # exactly min_kept valid pixels: every one counts too
    target[0, 0, 3] = 1
    z[0, 3] = 5.0
    loss = build_loss("ohem")(_two_class(z, target), target)
    assert loss.item() == pytest.approx((_ce(2.0) + _ce(3.0) + _ce(4.0) + _ce(5.0)) / 4, rel=1e-6)


def test_ohem_all_confident_keeps_the_min_kept_hardest():
    target = torch.ones(1, 8, 8, dtype=torch.long)
    z = torch.linspace(1.0, 8.0, 64)  # every p(true) >= sigmoid(1) = 0.73 > 0.7
    loss = build_loss("ohem")(_two_class(z, target), target)  # min_kept = 64/16 = 4
    assert loss.item() == pytest.approx(sum(_ce(float(v)) for v in z[:4]) / 4, rel=1e-6)


def test_ohem_keeps_every_pixel_below_the_threshold_when_more_than_min_kept():
    target = torch.ones(1, 8, 8, dtype=torch.long)
    z = torch.full((64,), 5.0)
    z[:10] = torch.linspace(-2.0, 0.5, 10)  # 10 pixels with p <= sigmoid(0.5) = 0.62 < 0.7; min_kept 4
    loss = build_loss("ohem")(_two_class(z, target), target)
    assert loss.item() == pytest.approx(sum(_ce(float(v)) for v in z[:10]) / 10, rel=1e-6)
