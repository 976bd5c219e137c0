"""Parameters and multiply-accumulates of a deployed network, counted two ways.

Parameters (``params_m``) are those of the network as deployed (METHODS §4): the parameters of the
modules that run in one eval-mode forward, each tensor once. Auxiliary heads that run only in training
(FasterSeg's 1/16 and 1/32 heads, ...) are left out; ``params_total_m`` counts every parameter the module
holds.

The reported figure (``gmacs``) comes from fvcore's ``FlopCountAnalysis``: it traces the network with
``torch.jit.trace`` at ``1 x C x S x S`` and counts one multiply-add as one, for convolutions, matrix
products and the elementwise cost of normalisation and upsampling layers. A trace sees every operator,
including convolutions called functionally (which hook-based counters such as thop miss).

The cross-check (``flop_counter_gmacs``) comes from ``torch.utils.flop_counter.FlopCounterMode``, which
counts FLOPs = 2 x MACs for convolutions, matrix products and attention only; it is halved here. The two
should agree within a few percent; ``disagreement_pct`` above :data:`DISAGREEMENT_FLAG_PCT` sets
``flagged`` (usually a network whose normalisation/upsampling cost is large next to its convolutions, or
an operator one of the counters skips — see ``unsupported_ops``).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter
from typing import Iterable, Iterator

import torch
from torch import nn

DISAGREEMENT_FLAG_PCT = 2.0


def count_all_params(model: nn.Module) -> int:
    """Number of parameters the module holds, used or not (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@contextlib.contextmanager
def record_invoked(model: nn.Module) -> Iterator[dict[int, nn.Module]]:
    """Record the sub-modules of ``model`` (itself included) called while the block runs, keyed by id."""
    invoked: dict[int, nn.Module] = {}

    def seen(module, args):
        invoked[id(module)] = module

    handles = [m.register_forward_pre_hook(seen) for m in model.modules()]
    try:
        yield invoked
    finally:
        for handle in handles:
            handle.remove()


def invoked_params(invoked: dict[int, nn.Module]) -> int:
    """Parameters held directly by the invoked modules (a parent's own parameters count only if the parent
    ran, its children's only if they ran), each tensor once however many modules share it."""
    params = {id(p): p for m in invoked.values() for p in m.parameters(recurse=False)}
    return sum(p.numel() for p in params.values())


@contextlib.contextmanager
def stated_structure(model: nn.Module):
    """Run networks with a folded eager-inference path (``fold_eval``) as their architecture states them, so that
    parameters and MACs are counted on the modules the spec describes."""
    folding = [m for m in model.modules() if getattr(m, "fold_eval", False)]
    for module in folding:
        module.fold_eval = False
    try:
        yield model
    finally:
        for module in folding:
            module.fold_eval = True


def count_params(model: nn.Module, in_channels: int = 3, size: int = 64) -> int:
    """Number of parameters of the network as deployed: those of the modules one eval-mode forward of
    ``1 x in_channels x size x size`` runs (see the module docstring). The model's mode is restored.

    A parameter used functionally by a module other than its owner (``F.conv2d(x, self.other.weight)``
    while ``self.other`` never runs) is not seen; no TerraLite network does that.
    """
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    was_training = model.training
    try:
        with torch.no_grad(), stated_structure(model), record_invoked(model.eval()) as invoked:
            model(torch.zeros(1, in_channels, size, size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return invoked_params(invoked)


def fvcore_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int], dict[str, int]]:
    """``(total MACs, MACs by operator, {skipped operator: occurrences})`` counted by fvcore."""
    with warnings.catch_warnings():
        # importing fvcore.nn scripts a loss with torch.jit.script, which warns of its deprecation
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    # fvcore logs every skipped operator at WARNING level; the profile reports them instead.
    logger = logging.getLogger("fvcore.nn.jit_analysis")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        total = int(analysis.total())
        by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
        skipped = dict(Counter(analysis.unsupported_ops()))
    finally:
        logger.setLevel(level)
    return total, by_operator, skipped


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs counted by ``torch.utils.flop_counter`` (its FLOPs are 2 x MACs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, stated_structure(model):
        model(x)
    return counter.get_total_flops() // 2


def profile_model(model: nn.Module, size: int = 1024, in_channels: int = 3, batch: int = 1) -> dict:
    """Profile ``model`` at ``batch x in_channels x size x size`` on the CPU.

    Returns ``{"params_m", "params_total_m", "gmacs", "flop_counter", "flop_counter_gmacs",
    "disagreement_pct", "flagged", "unsupported_ops", "gmacs_by_operator", "input_shape"}`` —
    ``params_m`` counts the deployed network (the modules this eval forward runs), ``params_total_m``
    every parameter of the module; ``flop_counter`` names the counter behind ``gmacs``. The model is put
    in eval mode (counts are those of inference).
    """
    model = model.eval()
    x = torch.zeros(batch, in_channels, size, size)
    with torch.no_grad():
        macs, by_operator, skipped = fvcore_macs(model, x)
        with record_invoked(model) as invoked:  # the cross-check's forward tells which modules are deployed
            cross = flop_counter_macs(model, x)
    disagreement = abs(macs - cross) / max(macs, cross, 1) * 100
    return {
        "params_m": invoked_params(invoked) / 1e6,
        "params_total_m": count_all_params(model) / 1e6,
        "gmacs": macs / 1e9,
        "flop_counter": "fvcore",
        "flop_counter_gmacs": cross / 1e9,
        "disagreement_pct": disagreement,
        "flagged": disagreement > DISAGREEMENT_FLAG_PCT,
        "unsupported_ops": skipped,
        "gmacs_by_operator": {k: v / 1e9 for k, v in sorted(by_operator.items(), key=lambda kv: -kv[1])},
        "input_shape": list(x.shape),
    }


def paper_comparison(row: dict, spec: dict) -> dict | None:
    """The OEM paper's Table 3 figures for the network ``spec`` builds, beside ``row``'s (a :func:`profile_model`
    result), with the relative differences and the counter each side used; None when the paper does not list it.

    Only zoo baselines have a paper row (``PaperRow.zoo_name``); a searched network of ours is not the
    paper's searched network, so it gets None too. Differences are ``(ours - paper) / paper`` in percent.
    """
    from terralite.benchmark.paper_reference import paper_row_for

    paper = paper_row_for(spec["name"]) if spec.get("kind") == "baseline" else None
    if paper is None:
        return None
    _, channels, height, width = row["input_shape"]
    return {
        "method": f"{paper.method} {paper.backbone}",
        "params_m": paper.params_m,
        "gflops": paper.gflops,
        "counter": paper.counter,
        "params_diff_pct": (row["params_m"] - paper.params_m) / paper.params_m * 100,
        "flops_diff_pct": (row["gmacs"] - paper.gflops) / paper.gflops * 100,
        "ours_counter": f"{row['flop_counter']} GMACs at 1x{channels}x{height}x{width}",
        "note": paper.note,
    }


def profile_reference(ref: str, size: int = 1024, in_channels: int | None = None, paper: bool = False) -> dict:
    """:func:`profile_model` of the model ``ref`` names (baseline name, spec JSON or checkpoint), with its name;
    with ``paper``, also ``"paper"``: :func:`paper_comparison` (None when the paper does not list the network)."""
    from terralite.errors import TerraLiteError
    from terralite.models import describe, load_model, spec_hash

    if size < 32 or size % 32:
        raise TerraLiteError(f"--size {size} must be a positive multiple of 32 (every network downsamples by 32)")
    model, spec, _ = load_model(ref, in_channels=in_channels)
    row = {"model": describe(spec), "spec_hash": spec_hash(spec), **profile_model(model, size, spec["in_channels"])}
    if paper:
        row["paper"] = paper_comparison(row, spec)
    return row


def profile_references(refs: Iterable[str], size: int = 1024, in_channels: int | None = None, paper: bool = False) -> Iterator[dict]:
    """:func:`profile_reference` of each model in ``refs``, one at a time (a large network at 1024 px takes
    a while on a CPU, so a caller can report each as it comes)."""
    for ref in refs:
        yield profile_reference(ref, size, in_channels, paper)
