import pytest
import torch

from terralite.errors import TerraLiteError
from terralite.tta import TTA_MODES, tta_forward


class Counting(torch.nn.Module):
    """A position-dependent 'model' (not flip invariant) that counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        self.calls += 1
        h, w = x.shape[-2:]
        ramp = torch.arange(w, dtype=x.dtype).expand(h, w)
        return self.conv(x) + ramp


@pytest.mark.parametrize("mode,passes", sorted(TTA_MODES.items()))
def test_pass_counts_and_shapes(mode, passes):
    model = Counting()
    x = torch.randn(2, 2, 8, 8)
    y = tta_forward(model, x, mode)
    assert y.shape == (2, 3, 8, 8) and model.calls == passes


def test_hflip_is_identity_plus_flipped_sum_and_differs_from_none():
    model = Counting()
    x = torch.randn(1, 2, 8, 8)
    expected = model(x) + model(x.flip(-1)).flip(-1)
    assert torch.allclose(tta_forward(model, x, "hflip"), expected)
    assert not torch.allclose(tta_forward(model, x, "hflip"), 2 * model(x))


def test_equivariant_model_gives_multiple_of_identity():
    conv = torch.nn.Conv2d(2, 3, 1)  # 1x1 convs commute with flips and rotations
    x = torch.randn(1, 2, 8, 8)
    for mode, passes in TTA_MODES.items():
        assert torch.allclose(tta_forward(conv, x, mode), passes * conv(x), atol=1e-5)


def test_bad_modes():
    with pytest.raises(TerraLiteError, match="unknown TTA mode 'vflip'"):
        tta_forward(Counting(), torch.randn(1, 2, 8, 8), "vflip")
    with pytest.raises(TerraLiteError, match="square"):
        tta_forward(Counting(), torch.randn(1, 2, 8, 16), "d4")
