"""The budgeted SparseMask variant (ours): steer the search so the derived network fits a GMACs budget.

The official search aims at "about two live inputs per stage" whatever they cost. With ``--budget-gmacs G``:

1. **Price list** — :class:`~terralite.search_spaces.sparsemask.cost.CostModel` gives the exact (fvcore-convention) MACs
   of every connection at the report size (1024x1024): a shallow ``up`` connection at stride 2 costs about
   1 GMAC, a ``tap0`` connection about 0.08.
2. **Controller** — :class:`TargetRatioController` scales every stage's target ratio ``α_l`` by one factor
   ``ρ``. After each epoch it compares the derived network's decoder cost (total minus the full encoder
   and head) with the decoder budget and multiplies ``ρ`` by ``sqrt(budget / cost)`` (damped, clipped), so
   targets shrink while the network is over budget and recover when it is under.
3. **Guarantee** — :func:`derive_within_budget` derives as usual and, while the network is over budget,
   zeroes the gate of the live connection with the lowest gate (ties: the most expensive first) and derives
   again. It never empties the output stage; when even one input is over budget it says so.
"""

from __future__ import annotations

import math

import numpy as np

from terralite.search_spaces.sparsemask.arch import default_target_ratio
from terralite.search_spaces.sparsemask.cost import CostModel
from terralite.search_spaces.sparsemask.derive import DEFAULT_THRESHOLD, derive_mask
from terralite.search_spaces.sparsemask.topology import NUM_STAGES, TAP, input_name, stage_name
from terralite.errors import TerraLiteError

MIN_RATIO = 1e-3
MAX_RATIO = 0.5
RHO_RANGE = (0.02, 4.0)


def base_targets() -> list[float]:
    return [default_target_ratio(s) for s in range(NUM_STAGES)]


def smallest_network_macs(cost: CostModel) -> int:
    """MACs of the cheapest buildable network: a single tap straight into the output stage."""
    best = None
    for j in range(NUM_STAGES):
        mask = np.zeros((NUM_STAGES, NUM_STAGES, 2), dtype=bool)
        mask[NUM_STAGES - 1, j, TAP] = True
        macs = cost.mask_macs(mask)
        best = macs if best is None else min(best, macs)
    return best


class TargetRatioController:
    """Per-stage target ratios ``α_l = clip(ρ · min(2/n_l, 0.5), 1e-3, 0.5)`` with ``ρ`` steered by the budget."""

    def __init__(self, budget_macs: float, cost: CostModel, rho: float = 1.0):
        self.budget_macs = float(budget_macs)
        self.cost = cost
        self.rho = rho
        self.fixed_macs = cost.encoder_macs(0) + cost.head_macs
        smallest = smallest_network_macs(cost)
        if budget_macs < smallest:
            raise TerraLiteError(f"budget {budget_macs / 1e9:.3f} GMACs at {cost.height}x{cost.width} is below the smallest "
                                 f"SparseMask network ({smallest / 1e9:.3f} GMACs: one tap into the output stage); raise --budget-gmacs")

    def targets(self) -> list[float]:
        return [min(MAX_RATIO, max(MIN_RATIO, self.rho * t)) for t in base_targets()]

    def update(self, derived_macs: float) -> float:
        """Adjust ``ρ`` from the derived network's MACs; returns the new ``ρ``."""
        budget = max(self.budget_macs - self.fixed_macs, 1.0)
        used = max(derived_macs - self.fixed_macs, 1.0)
        self.rho = min(RHO_RANGE[1], max(RHO_RANGE[0], self.rho * math.sqrt(budget / used)))
        return self.rho

    def state_dict(self) -> dict:
        return {"rho": self.rho}

    def load_state_dict(self, state: dict) -> None:
        self.rho = float(state["rho"])


def derive_within_budget(gates: np.ndarray, cost: CostModel, budget_macs: float,
                         threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, list[str]]:
    """Derived mask whose cost is at most ``budget_macs``; also returns the connections dropped for it."""
    gates = np.clip(np.abs(np.asarray(gates, dtype=np.float64)), 0, 2)
    table = cost.connection_table()
    dropped: list[str] = []
    mask = derive_mask(gates, threshold)
    while cost.mask_macs(mask) > budget_macs:
        live = np.argwhere(mask)
        # lowest gate first; among equal gates the most expensive connection first
        order = sorted(live.tolist(), key=lambda e: (gates[tuple(e)], -table[tuple(e)]))
        for stage, idx, kind in order:
            trial = gates.copy()
            trial[stage, idx, kind] = 0.0
            try:
                new_mask = derive_mask(trial, threshold)
            except TerraLiteError:  # it was what kept the output stage alive: try the next one
                continue
            if np.array_equal(new_mask, mask):
                # a connection that merging duplicate stages added (its own gate may be 0): zeroing it changes
                # nothing, and accepting it would loop forever
                continue
            gates, mask = trial, new_mask
            dropped.append(f"{stage_name(stage)}<-{input_name(kind, idx)}")
            break
        else:
            raise TerraLiteError(f"cannot fit the budget {budget_macs / 1e9:.3f} GMACs: the smallest network left "
                                 f"({cost.mask_macs(mask) / 1e9:.3f} GMACs) has nothing more to drop; raise --budget-gmacs")
    return mask, dropped
