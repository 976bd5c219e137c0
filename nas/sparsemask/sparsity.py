"""The SparseMask sparsity loss and gate statistics.

Per decoder stage ``l`` with gates ``w`` (the noisy, clamped gates of the forward), ``p = w / 2`` ∈ [0, 1]:

    L_l = mean_i H(p_i) + BCE(α_l, mean_i p_i)
        = -mean_i [p_i log p_i + (1 - p_i) log(1 - p_i)] - [α_l log m + (1 - α_l) log(1 - m)],   m = mean_i p_i

The entropy term pushes every gate to 0 or 2 (polarisation); the cross-entropy term pulls the stage's mean
gate to its target share of live inputs ``α_l = min(2 / n_l, 0.5)`` (about two live inputs). The search adds
``λ · Σ_l L_l`` (λ = 0.01) to the task loss. Logs use ``ε = 1e-10`` as the official code does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

EPS = 1e-10
POLARISED_WITHIN = 0.05


def stage_sparsity_loss(gates: torch.Tensor, target: float) -> torch.Tensor:
    """``L_l`` for one stage's gates (any shape, values in [0, 2]) and target ratio ``α_l``."""
    p = gates.float() / 2
    m = p.mean()
    entropy = -(p * torch.log(p + EPS) + (1 - p) * torch.log(1 - p + EPS)).mean()
    cross = -(target * torch.log(m + EPS) + (1 - target) * torch.log(1 - m + EPS))
    return entropy + cross


def sparsity_loss(stage_gates: Sequence[torch.Tensor], targets: Sequence[float]) -> torch.Tensor:
    """``Σ_l L_l`` over the stages (not yet multiplied by λ)."""
    if len(stage_gates) != len(targets):
        raise ValueError(f"{len(stage_gates)} stages of gates but {len(targets)} target ratios")
    return torch.stack([stage_sparsity_loss(g, t) for g, t in zip(stage_gates, targets)]).sum()


def gate_polarisation(gates: np.ndarray, valid: np.ndarray, within: float = POLARISED_WITHIN) -> float:
    """Fraction of the gates whose ``w / 2`` lies within ``within`` of 0 or of 1 (``valid`` marks real gates)."""
    p = np.clip(np.asarray(gates, dtype=np.float64), 0, 2)[valid] / 2
    return float(np.mean((p <= within) | (p >= 1 - within)))
