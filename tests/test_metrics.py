import math

import numpy as np
import pytest
import torch

from terralite.metrics import ConfusionMatrix, json_safe


def test_confusion_matrix_values_and_ignore():
    cm = ConfusionMatrix(3, ignore_index=255)
    target = torch.tensor([[0, 0, 1, 1, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2]])  # the ignored pixel's prediction must not count
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    out = cm.compute()
    assert out["pixels"] == 5
    assert out["iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert out["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert out["f1"] == pytest.approx([0.5, 0.8, 0.0])
    assert out["pixel_accuracy"] == pytest.approx(3 / 5)


def test_accumulates_over_split_not_per_image_and_accepts_logits():
    rng = np.random.default_rng(0)
    targets = [torch.from_numpy(rng.integers(0, 4, (2, 8, 8))) for _ in range(3)]
    logits = [torch.randn(2, 4, 8, 8) for _ in range(3)]
    cm = ConfusionMatrix(4)
    for lg, t in zip(logits, targets):
        cm.update(lg, t)
    pred = torch.cat([lg.argmax(1) for lg in logits]).flatten().numpy()
    tgt = torch.cat(targets).flatten().numpy()
    ious = [((pred == c) & (tgt == c)).sum() / ((pred == c) | (tgt == c)).sum() for c in range(4)]
    assert cm.compute()["miou"] == pytest.approx(float(np.mean(ious)))


def test_absent_class_is_nan_and_left_out():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    out = cm.compute()
    assert math.isnan(out["iou"][2]) and out["miou"] == 1.0
    assert json_safe(out)["iou"] == [1.0, 1.0, None]


def test_bad_target_values_raise():
    with pytest.raises(ValueError, match="outside"):
        ConfusionMatrix(3).update(torch.tensor([0]), torch.tensor([7]))
