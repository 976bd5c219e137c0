"""``terralite prune``: prune a trained checkpoint (optionally in several steps), fine-tune it through the
training engine after each step, evaluate before/after and write the comparison rows.

Run folder::

    RUN/step1.pt ...          the network right after each pruning step (kind "pruned" spec + weights)
    RUN/finetune1/ ...        the engine's run folder of each fine-tune (when --finetune-epochs > 0)
    RUN/pruned.pt             the final network (fine-tuned when asked)
    RUN/prune.json            what was done: ratios, channel counts, parameters, mIoU before/after
    RUN/compression_rows.jsonl  benchmark rows of the parent, the pruned and the fine-tuned network
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from terralite.compress.pruned_model import pruned_spec
from terralite.compress.pruning import GRADIENT_IMPORTANCES, IMPORTANCES, count_parameters, prune_model, step_ratios
from terralite.compress.report import Entry, write_compression_rows
from terralite.compress.training import (check_bench, check_run_folder, compression_train_config, new_run_folder,
                                         require_options, split_or_none)
from terralite.atomic import write_text_atomic
from terralite.checkpoint import load_checkpoint, save_checkpoint
from terralite.device import resolve_device
from terralite.engine.evaluate import dataset_for_checkpoint, evaluate
from terralite.errors import TerraLiteError
from terralite.models import build_model, describe, load_weights
from terralite.run_folder import RunFolder


@dataclass
class PruneOptions:
    """Everything one pruning run needs (the flags of ``terralite prune``, or its ``--config`` YAML).

    Every field has a default so that a partial YAML loads; ``checkpoint``, ``data``, ``out`` and ``ratio``
    must be given all the same (:func:`prune_checkpoint` names a missing one). ``eval_split`` ``"none"``
    means no evaluation (None).
    """

    checkpoint: str = ""
    data: str = ""
    out: str = ""
    ratio: float | None = None  # share of channels to remove, strictly between 0 and 1
    importance: str = "l1"
    global_pruning: bool = False
    round_to: int | None = None
    iterative: int = 1  # pruning steps; each removes an equal share of the original width
    finetune_epochs: int = 0  # epochs of fine-tuning after every step
    finetune_overrides: list[str] = field(default_factory=list)  # TrainConfig key=value for the fine-tunes
    eval_split: str | None = "val"
    taylor_tiles: int = 4  # labelled training tiles whose gradients rank channels (taylor importance)
    device: str = "auto"
    bench_size: int = 1024
    bench_iters: int = 10
    resume: bool = False  # continue a killed run in ``out`` (same options): each fine-tune resumes from its last.pt

    def __post_init__(self) -> None:
        self.eval_split = split_or_none(self.eval_split)


#: Options that have no default: field → the flag that sets it.
REQUIRED = {"checkpoint": "CKPT", "data": "--data", "out": "--out", "ratio": "--ratio"}


def _load_parent(path: str):
    ckpt = load_checkpoint(path)
    model = load_weights(build_model(ckpt["spec"]), ckpt["state_dict"], f"checkpoint {path}")
    return model.eval(), ckpt


def prune_checkpoint(opts: PruneOptions) -> Path:
    """Run ``terralite prune`` as ``opts`` say; returns the run folder. Every input is checked before the
    run folder is created, so a bad ratio, checkpoint or dataset leaves nothing behind."""
    require_options(opts, REQUIRED)
    ratios = step_ratios(opts.ratio, opts.iterative)
    check_bench(opts.bench_size, opts.bench_iters)
    IMPORTANCES.get(opts.importance)
    if opts.finetune_epochs < 0:
        raise TerraLiteError(f"--finetune-epochs must be 0 or more, got {opts.finetune_epochs}")
    out = check_run_folder(opts.out, opts)
    model, parent = _load_parent(opts.checkpoint)
    spec = parent["spec"]
    eval_set = dataset_for_checkpoint(parent, opts.data, opts.eval_split) if opts.eval_split else None
    grad_set = dataset_for_checkpoint(parent, opts.data, "train") if opts.importance in GRADIENT_IMPORTANCES else None
    if opts.finetune_epochs:
        compression_train_config(parent.get("config"), spec, opts.finetune_overrides)  # fail now on bad overrides

    device = resolve_device(opts.device)
    with new_run_folder(out, opts):
        return _prune_run(opts, out, model, parent, ratios, eval_set, grad_set, device)


def _prune_run(opts: PruneOptions, out: Path, model, parent: dict, ratios: list[float], eval_set, grad_set, device) -> Path:
    spec = parent["spec"]
    run = RunFolder(out)
    try:
        run.info(f"pruning {describe(spec)} ({opts.checkpoint}) by {opts.ratio:g} in {opts.iterative} step(s), importance {opts.importance}"
                 + (", global" if opts.global_pruning else "") + (f", round to {opts.round_to}" if opts.round_to else ""))
        evaluated: dict[str, dict] = {}
        if eval_set is not None:
            evaluated["parent"] = evaluate(model, eval_set, device=device)
            run.info(f"parent mIoU on {opts.eval_split}: {evaluated['parent']['miou']:.4f}")
        models = {"parent": (model_copy(model), spec)}
        for step, ratio in enumerate(ratios, start=1):
            batches = None
            if grad_set is not None:
                batches = [(image[None], label[None]) for image, label in (grad_set[i] for i in range(min(opts.taylor_tiles, len(grad_set))))]
            history = prune_model(model.cpu(), in_channels=spec["in_channels"], num_classes=spec["num_classes"], ratio=ratio,
                                  importance=opts.importance, global_pruning=opts.global_pruning, round_to=opts.round_to,
                                  gradient_batches=batches)
            record = {"ratio": opts.ratio, "step": step, "steps": opts.iterative, "step_ratio": ratio,
                      "importance": opts.importance, "global": opts.global_pruning, "round_to": opts.round_to}
            spec = pruned_spec(spec, history, record)
            current = str(out / f"step{step}.pt")
            save_checkpoint(current, spec, model.state_dict(), input=parent.get("input"), class_names=parent.get("class_names"),
                            config=parent.get("config"), metrics={}, parent=str(opts.checkpoint))
            run.info(f"step {step}/{opts.iterative}: removed {ratio:.3f} of the remaining channels -> {current}")
            if opts.finetune_epochs:
                if step == len(ratios):
                    models["pruned"] = (model_copy(model), spec)
                    if eval_set is not None:
                        evaluated["pruned"] = evaluate(model, eval_set, device=device)
                current = _finetune(parent, spec, current, out / f"finetune{step}", opts)
                model, _ = _load_parent(current)
        final = "finetuned" if opts.finetune_epochs else "pruned"
        models[final] = (model, spec)
        if eval_set is not None:
            evaluated[final] = evaluate(model, eval_set, device=device)
        for name in evaluated:
            if name != "parent":
                run.info(f"{name} mIoU on {opts.eval_split}: {evaluated[name]['miou']:.4f}")
        # the config the final weights were trained with: the fine-tune's, else the parent's (kept in step files)
        save_checkpoint(out / "pruned.pt", spec, model.state_dict(), input=parent.get("input"), class_names=parent.get("class_names"),
                        config=load_checkpoint(current).get("config"),
                        metrics={"val_miou": evaluated[final]["miou"]} if final in evaluated else {}, parent=str(opts.checkpoint))
        summary = _summary(opts, models, evaluated)
        write_text_atomic(out / "prune.json", json.dumps(summary, indent=2) + "\n")
        entries = [Entry(f"{describe(s)}" + ("-finetuned" if name == "finetuned" else ""), s, model=m, role=name,
                         miou=evaluated.get(name, {}).get("miou")) for name, (m, s) in models.items()]
        write_compression_rows(out, entries, bench_size=opts.bench_size, iterations=opts.bench_iters, eval_split=opts.eval_split, log=run.info)
        return out
    finally:
        run.close()


def model_copy(model):
    return copy.deepcopy(model).cpu().eval()


def _finetune(parent: dict, spec: dict, checkpoint: str, out: Path, opts: PruneOptions) -> str:
    """Fine-tune ``checkpoint`` through the engine; returns its best (else last) checkpoint."""
    from terralite.engine.train import train

    cfg = compression_train_config(parent.get("config"), spec, opts.finetune_overrides, model=checkpoint, data=opts.data,
                                   out=str(out), epochs=opts.finetune_epochs, device=opts.device,
                                   val_split=opts.eval_split)
    if opts.resume and (out / "last.pt").is_file():
        # the pruning steps are deterministic (same parent, same importance): step N's network is the one this
        # fine-tune started from, so its saved state continues it (a finished fine-tune returns at once)
        cfg = dataclasses.replace(cfg, resume=True)
    run = train(cfg)
    best = Path(run) / "best.pt"
    return str(best if best.is_file() else Path(run) / "last.pt")


def _summary(opts: PruneOptions, models: dict, evaluated: dict) -> dict:
    from terralite.benchmark.profiler import count_params

    return {
        "options": dataclasses.asdict(opts),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": {name: {"params": count_params(m, s["in_channels"]), "conv_params": count_parameters(m, conv_only=True), "miou": evaluated.get(name, {}).get("miou"),
                          "eval_split": opts.eval_split if name in evaluated else None} for name, (m, s) in models.items()},
    }
