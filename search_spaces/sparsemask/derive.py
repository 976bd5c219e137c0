"""Gates → kept connections: the threshold and the clean-up rules of the official SparseMask ``prune``.

Every function works on a connectivity mask ``[9 stages, 9 inputs, 2 kinds]`` (see :mod:`.topology`) and
reproduces the official code's order of operations, so that the same gates give the same network.
Stage ``s`` outputs the input ``up(s+1)``; its *consumers* are the stages whose mask has ``[:, s+1, UP]`` set.

1. :func:`threshold` — keep a connection when ``clamp(|w|, 0, 2) / 2 > threshold`` (1e-3).
2. :func:`drop_unused_stages` — walking from stage 8 (the output, always used) towards stage 0, a stage whose
   output no kept later stage takes loses all its inputs.
3. :func:`merge_duplicate_stages` — for s = 0..7 (deep → shallow): a stage without inputs (it would output
   0) is disconnected from its consumers; otherwise every later stage t in s+1..7 with exactly the same
   inputs is emptied and its consumers take ``up(s+1)`` instead (the later stage computed the same sum).
   Stage 8 is never merged away. Emptied stages are disconnected when the walk reaches them.
4. :func:`drop_subset_stages` — for s = 7..1 (shallow → deep) with inputs, every earlier stage t in
   s-1..0 whose inputs are a subset of stage s's and whose consumers all also take stage s's output is
   removed with its outgoing connections (stage s already carries that information to the same places).

:func:`derive_mask` chains them; its result has no dead stage (inputs but no consumer) and no connection
from an empty stage.
"""

from __future__ import annotations

import numpy as np

from terralite.search_spaces.sparsemask.topology import NUM_STAGES, UP, valid_entries
from terralite.errors import TerraLiteError

DEFAULT_THRESHOLD = 1e-3


def threshold(gates: np.ndarray, level: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Boolean mask of the connections whose normalised gate ``clamp(|w|, 0, 2)/2`` exceeds ``level``."""
    gates = np.asarray(gates, dtype=np.float64)
    if gates.shape != (NUM_STAGES, NUM_STAGES, 2):
        raise ValueError(f"gates must have shape (9, 9, 2), got {gates.shape}")
    return (np.clip(np.abs(gates), 0, 2) / 2 > level) & valid_entries()


def drop_unused_stages(mask: np.ndarray) -> np.ndarray:
    """Rule 2: empty every stage whose output no kept later stage takes (stage 8 is the output)."""
    mask = mask.copy()
    used = mask[NUM_STAGES - 1, :, UP].copy()  # used[k]: some kept stage takes up k
    for s in range(NUM_STAGES - 2, -1, -1):
        if not used[s + 1]:
            mask[s] = False
        used |= mask[s, :, UP]
    return mask


def merge_duplicate_stages(mask: np.ndarray) -> np.ndarray:
    """Rule 3: disconnect empty stages; merge a later stage with the same inputs into the earlier one."""
    mask = mask.copy()
    for s in range(NUM_STAGES - 1):
        if not mask[s].any():
            mask[:, s + 1, UP] = False
            continue
        for t in range(s + 1, NUM_STAGES - 1):
            if np.array_equal(mask[s], mask[t]):
                mask[t] = False
                mask[:, s + 1, UP] |= mask[:, t + 1, UP]
    return mask


def drop_subset_stages(mask: np.ndarray) -> np.ndarray:
    """Rule 4: remove an earlier stage covered by a later one (subset of inputs and of consumers)."""
    mask = mask.copy()
    for s in range(NUM_STAGES - 2, 0, -1):
        if not mask[s].any():
            continue
        for t in range(s - 1, -1, -1):
            inputs_covered = np.array_equal(mask[s] & mask[t], mask[t])
            consumers_covered = np.array_equal(mask[:, s + 1, UP] & mask[:, t + 1, UP], mask[:, t + 1, UP])
            if inputs_covered and consumers_covered:
                mask[:, t + 1, UP] = False
                mask[t] = False
    return mask


def clean_up(mask: np.ndarray) -> np.ndarray:
    """Rules 2–4 in the official order on an already thresholded mask."""
    return drop_subset_stages(merge_duplicate_stages(drop_unused_stages(np.asarray(mask, dtype=bool) & valid_entries())))


def derive_mask(gates: np.ndarray, level: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Gates ``[9, 9, 2]`` (raw values; clamped here) → the cleaned-up connectivity mask.

    Raises a TerraLiteError when nothing reaches the output stage (every gate of stage 8 below threshold).
    """
    mask = clean_up(threshold(gates, level))
    if not mask[NUM_STAGES - 1].any():
        raise TerraLiteError(f"no connection of the output stage (stage8) has a gate above the threshold {level}: "
                             "the search collapsed; lower --lambda (sparsity weight) or train longer")
    return mask
