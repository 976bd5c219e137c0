"""Model kind ``pruned``: a base spec plus the torch-pruning history that turns it into the pruned network.

Spec layout (JSON-able, no pickled modules)::

    {"kind": "pruned", "base": {<any spec>}, "history": [[module_name, is_out_channel, [indices]], ...],
     "pruning": [{"ratio": ..., "importance": ..., ...}, ...], "label": "...", "in_channels": C, "num_classes": K}

``history`` is replayed in order on a freshly built base network (several pruning rounds simply append
to it); ``pruning`` lists the rounds (one record each) that produced the history (not needed to rebuild).
"""

from __future__ import annotations

import copy

from torch import nn

from terralite.errors import TerraLiteError
from terralite.models import build_model, describe, with_io


def pruned_spec(base: dict, history: list, record: dict) -> dict:
    """The spec of ``base`` pruned by ``history``; pruning a pruned spec again extends its history."""
    if base.get("kind") == "pruned":
        history = list(base["history"]) + list(history)
        rounds = list(base.get("pruning", [])) + [dict(record)]
        root = base["base"]
    else:
        rounds = [dict(record)]
        root = base
    root = copy.deepcopy(root)
    return {
        "kind": "pruned",
        "label": f"{describe(root)}-pruned",
        "base": root,
        "history": history,
        "pruning": rounds,
        "in_channels": base["in_channels"],
        "num_classes": base["num_classes"],
    }


def build_pruned(spec: dict) -> nn.Module:
    """Builder of kind ``pruned``: build the base network, then replay the recorded pruning history."""
    from terralite.compress.pruning import replay_history

    base = spec.get("base")
    history = spec.get("history")
    if not isinstance(base, dict) or not isinstance(history, list):
        raise TerraLiteError("a 'pruned' model spec needs a 'base' spec object and a 'history' list (written by terralite prune)")
    base = with_io(base, spec["in_channels"], spec["num_classes"])
    model = build_model(base)
    return replay_history(model, history, spec["in_channels"])
