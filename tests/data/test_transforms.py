import pytest
import torch

from terralite.data.classes import IGNORE_INDEX
from terralite.data.transforms import (Compose, RandomCrop, RandomFlipRotate, pad_to_multiple, resize_to_multiple,
                                       train_transform)
from terralite.errors import TerraLiteError


def pair(h=48, w=48):
    # the label is a function of the image, so geometric transforms must keep them consistent
    image = torch.arange(3 * h * w, dtype=torch.float32).reshape(3, h, w)
    label = (image[0].long() % 7)
    return image, label


def consistent(image, label):
    return torch.equal(image[0].long() % 7, label)


def test_random_crop_shape_and_consistency():
    image, label = pair()
    out_i, out_l = RandomCrop(32, generator=torch.Generator().manual_seed(0))(image, label)
    assert out_i.shape == (3, 32, 32) and out_l.shape == (32, 32) and consistent(out_i, out_l)


def test_random_crop_pads_small_inputs_with_ignore():
    image, label = pair(20, 24)
    out_i, out_l = RandomCrop((32, 40))(image, label)
    assert out_i.shape == (3, 32, 40)
    assert (out_l == IGNORE_INDEX).sum() == 32 * 40 - 20 * 24
    with pytest.raises(TerraLiteError, match="crop size must be positive"):
        RandomCrop(0)


def test_same_seed_same_result_different_seed_differs():
    image, label = pair(64, 64)
    runs = []
    for seed in (3, 3, 4):
        t = train_transform(32, generator=torch.Generator().manual_seed(seed))
        runs.append([t(image, label) for _ in range(4)])
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(runs[0], runs[1]))
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(runs[0], runs[2]))


def test_global_seed_makes_default_rng_reproducible():
    image, label = pair()
    torch.manual_seed(7)
    first = RandomFlipRotate()(image, label)
    torch.manual_seed(7)
    second = RandomFlipRotate()(image, label)
    assert torch.equal(first[0], second[0])


def test_flip_rotate_covers_the_dihedral_group_and_stays_consistent():
    image, label = pair(8, 8)
    t = RandomFlipRotate(generator=torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(200):
        out_i, out_l = t(image, label)
        assert consistent(out_i, out_l) and out_i.is_contiguous()
        seen.add(tuple(out_i[0].flatten().tolist()))
    assert len(seen) == 8


def test_non_square_keeps_its_shape():
    image, label = pair(8, 12)
    t = RandomFlipRotate(generator=torch.Generator().manual_seed(0))
    for _ in range(30):
        out_i, out_l = t(image, label)
        assert out_i.shape == (3, 8, 12) and out_l.shape == (8, 12)


def test_pad_and_resize_to_multiple():
    image, label = pair(33, 64)
    padded_i, padded_l = pad_to_multiple(image, label, 32)
    assert padded_i.shape == (3, 64, 64) and (padded_l[33:] == IGNORE_INDEX).all()
    resized_i, resized_l = resize_to_multiple(image, label, 32)
    assert resized_i.shape == (3, 32, 64) and resized_l.dtype == torch.int64
    assert set(resized_l.unique().tolist()) <= set(range(7))


def test_compose_applies_in_order():
    image, label = pair()
    calls = []

    def step(name):
        def f(i, l):
            calls.append(name)
            return i + 1, l
        return f

    out_i, _ = Compose([step("a"), step("b")])(image, label)
    assert calls == ["a", "b"] and torch.equal(out_i, image + 2)
