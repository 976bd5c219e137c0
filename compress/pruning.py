"""Structured channel pruning with torch-pruning: channel surgery that makes networks physically smaller.

torch-pruning traces the network into a dependency graph, so channels coupled through concatenations
(U-Net skips), sums (residuals, SparseMask stage sums) and resizes are removed together. Every pruning
step is recorded as torch-pruning's *pruning history* (module name, out/in flag, channel indices: plain
ints), which :func:`replay_history` applies to a freshly built base network; that is how a pruned spec is
rebuilt in a new process without pickling modules (see :mod:`terralite.compress.pruned_model`).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from terralite.errors import TerraLiteError
from terralite.registry import Registry

# Spatial size of the dummy input used to trace the graph. Any multiple of 32 gives the same graph.
TRACE_SIZE = 64

IMPORTANCES = Registry("pruning importance")
IMPORTANCES.register("l1", lambda: _tp().importance.MagnitudeImportance(p=1))
IMPORTANCES.register("l2", lambda: _tp().importance.MagnitudeImportance(p=2))
IMPORTANCES.register("taylor", lambda: _tp().importance.TaylorImportance())
IMPORTANCES.register("bn-scale", lambda: _tp().importance.BNScaleImportance())

# Importances that rank channels by first-order gradients, so they need labelled batches before each step.
GRADIENT_IMPORTANCES = {"taylor"}


def _tp():
    import torch_pruning

    return torch_pruning


def _trace_input(model: nn.Module, in_channels: int) -> torch.Tensor:
    # Batch 2: train-mode code paths (auxiliary heads) must see a normal batch.
    device = next(model.parameters()).device
    return torch.zeros(2, in_channels, TRACE_SIZE, TRACE_SIZE, device=device)


@contextlib.contextmanager
def tracing_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in train mode (so auxiliary heads are part of the traced graph and are pruned with the
    features they read) while its normalisation and dropout layers stay in eval mode (tracing must not
    change running statistics). Restores the previous mode on exit."""
    was_training = model.training
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)):
            module.eval()
    try:
        yield
    finally:
        model.train(was_training)


def traced_forward(model: nn.Module, example: torch.Tensor):
    """The forward torch-pruning traces (it puts the model in eval mode first): the train-mode graph."""
    with tracing_mode(model):
        return model(example)


def classifier_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """The layers that must keep their output channels: every conv/linear producing ``num_classes`` channels
    (the main head and any auxiliary heads)."""
    heads = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd) and module.out_channels == num_classes:
            heads.append(module)
        elif isinstance(module, nn.Linear) and module.out_features == num_classes:
            heads.append(module)
    if not heads:
        raise TerraLiteError(f"found no classifier layer with {num_classes} output channels to protect; the model does not follow the segmentation output contract")
    return heads


def step_ratios(ratio: float, steps: int) -> list[float]:
    """Per-step pruning ratios, each relative to the width left by the previous steps, whose product removes
    ``ratio`` of the original channels in ``steps`` equal (linear) decrements of the kept fraction."""
    check_ratio(ratio)
    if steps < 1:
        raise TerraLiteError(f"--iterative must be a positive number of pruning steps, got {steps}")
    kept = [1.0 - ratio * k / steps for k in range(steps + 1)]
    return [1.0 - kept[k] / kept[k - 1] for k in range(1, steps + 1)]


def check_ratio(ratio: float) -> float:
    """A pruning ratio must remove some channels and keep some."""
    if not 0.0 < ratio < 1.0:
        raise TerraLiteError(f"pruning ratio must lie strictly between 0 and 1 (the fraction of channels to remove), got {ratio}")
    return ratio


def accumulate_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], ignore_index: int) -> int:
    """Back-propagate cross-entropy over ``batches`` through the train-mode graph (main and auxiliary heads,
    BN statistics frozen); gradients are summed in the weights. Returns the number of batches."""
    from terralite.engine.train import split_outputs

    device = next(model.parameters()).device
    model.zero_grad()
    count = 0
    with tracing_mode(model):
        for images, labels in batches:
            labels = labels.to(device)
            logits, aux = split_outputs(model(images.to(device)))
            loss = F.cross_entropy(logits, labels, ignore_index=ignore_index)
            for head in aux:
                head = F.interpolate(head, size=labels.shape[-2:], mode="bilinear", align_corners=False)
                loss = loss + F.cross_entropy(head, labels, ignore_index=ignore_index)
            loss.backward()
            count += 1
    if count == 0:
        raise TerraLiteError("the Taylor importance needs at least one labelled batch; check the --data split")
    for p in model.parameters():
        if p.grad is None:  # a layer no loss reaches ranks as unimportant, not as an error
            p.grad = torch.zeros_like(p)
    return count


def prune_model(
    model: nn.Module,
    *,
    in_channels: int,
    num_classes: int,
    ratio: float,
    importance: str = "l1",
    global_pruning: bool = False,
    round_to: int | None = None,
    gradient_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ignore_index: int = 255,
) -> list:
    """Remove ``ratio`` of the prunable channels of ``model`` in place (one torch-pruning step).

    ``ratio`` is per layer (uniform) or over the whole network (``global_pruning``); ``round_to`` keeps
    channel counts multiples of it; classifier heads keep their outputs. ``gradient_batches`` (image, label)
    are required by the ``taylor`` importance. Returns the JSON-able pruning history of this step.
    """
    tp = _tp()
    check_ratio(ratio)
    was_training = model.training
    factory = IMPORTANCES.get(importance)
    if round_to is not None and round_to < 1:
        raise TerraLiteError(f"--round-to must be a positive channel multiple, got {round_to}")
    pruner = tp.pruner.MetaPruner(
        model,
        _trace_input(model, in_channels),
        forward_fn=traced_forward,
        importance=factory(),
        global_pruning=global_pruning,
        pruning_ratio=ratio,
        ignored_layers=classifier_layers(model, num_classes),
        round_to=round_to,
    )
    if importance in GRADIENT_IMPORTANCES:
        if gradient_batches is None:
            raise TerraLiteError(f"importance {importance!r} ranks channels by gradients: pass labelled data (--data)")
        accumulate_gradients(model, gradient_batches, ignore_index)
    pruner.step()
    model.zero_grad(set_to_none=True)
    check_output_contract(model, in_channels, num_classes)
    model.train(was_training)
    return _jsonable(pruner.pruning_history())


def replay_history(model: nn.Module, history: list, in_channels: int) -> nn.Module:
    """Apply a recorded pruning history to a freshly built copy of the network it was recorded on."""
    tp = _tp()
    was_training = model.training
    graph = tp.DependencyGraph().build_dependency(model, _trace_input(model, in_channels), forward_fn=traced_forward)
    try:
        graph.load_pruning_history(history)
    except (AttributeError, IndexError, KeyError) as exc:
        raise TerraLiteError(f"the pruning history does not fit the base network ({type(exc).__name__}: {exc}); the spec's 'base' must be the network that was pruned") from None
    return model.train(was_training)


def check_output_contract(model: nn.Module, in_channels: int, num_classes: int) -> None:
    """Fail loudly if pruning broke the model: eval logits must stay (B, num_classes, H, W) and the
    train-mode graph (auxiliary heads) must still run."""
    was_training = model.training
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, TRACE_SIZE + 32, TRACE_SIZE, device=device)
    try:
        with torch.no_grad():
            traced_forward(model, _trace_input(model, in_channels))
            out = model.eval()(x)
    except RuntimeError as exc:
        raise TerraLiteError(f"the pruned network no longer runs ({str(exc).splitlines()[0]}); this architecture has a layer torch-pruning cannot follow") from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (1, num_classes, TRACE_SIZE + 32, TRACE_SIZE):
        raise TerraLiteError(f"the pruned network returns {tuple(out.shape)} instead of (1, {num_classes}, {TRACE_SIZE + 32}, {TRACE_SIZE})")


def _jsonable(history) -> list:
    return [[str(name), bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in history]


def count_parameters(model: nn.Module, conv_only: bool = False) -> int:
    """Number of parameters (of conv layers only with ``conv_only``)."""
    if conv_only:
        return sum(p.numel() for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd) for p in m.parameters(recurse=False))
    return sum(p.numel() for p in model.parameters())
