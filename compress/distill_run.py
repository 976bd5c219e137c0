"""``terralite distill``: train a student with knowledge distillation from a frozen teacher, through the engine.

Run folder::

    RUN/student_init.pt   an untrained student's seeded initial weights (both runs start from them)
    RUN/distilled/        the engine's run folder of the distilled student (best.pt, last.pt, log.csv, ...)
    RUN/alone/            with --compare-alone: the same student, same config and seed, without distillation
    RUN/distill.json      options, mIoU of teacher / distilled / alone on the evaluation split
    RUN/compression_rows.jsonl  benchmark rows of the teacher and the student(s)
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from terralite.compress.distillation import DistillationTerm, parse_layer_pairs
from terralite.compress.report import Entry, write_compression_rows
from terralite.compress.training import (check_bench, check_run_folder, compression_train_config, new_run_folder,
                                         require_options, split_or_none)
from terralite.atomic import write_text_atomic
from terralite.checkpoint import save_checkpoint
from terralite.device import resolve_device
from terralite.distillation import load_teacher
from terralite.engine.evaluate import dataset_for_checkpoint, evaluate
from terralite.engine.train import train
from terralite.errors import TerraLiteError
from terralite.models import build_model, describe, load_model, resolve_model_reference, with_io


@dataclass
class DistillOptions:
    """The flags of ``terralite distill`` (or its ``--config`` YAML).

    Every field has a default so that a partial YAML loads; ``teacher``, ``student``, ``data`` and ``out``
    must be given all the same (:func:`distill` names a missing one). ``eval_split`` ``"none"`` means no
    evaluation (None).
    """

    teacher: str = ""  # trained checkpoint
    student: str = ""  # baseline name, spec/arch JSON or checkpoint
    data: str = ""
    out: str = ""
    kd: str = "logits"  # logits | cwd | both
    tau: float | None = None  # None: 1 for logits KL, 4 for CWD (the CWD paper's value for segmentation)
    alpha: float = 1.0
    feature_layers: list[str] = field(default_factory=list)  # STUDENT_LAYER[:TEACHER_LAYER]
    half_teacher: bool = False
    epochs: int | None = None
    overrides: list[str] = field(default_factory=list)  # TrainConfig key=value for the training runs (--train-set)
    compare_alone: bool = False
    eval_split: str | None = "val"
    device: str = "auto"
    bench_size: int = 1024
    bench_iters: int = 10
    resume: bool = False  # continue a killed run in ``out`` (same options) from the training runs' last.pt

    def __post_init__(self) -> None:
        self.eval_split = split_or_none(self.eval_split)

    def temperature(self) -> float:
        return self.tau if self.tau is not None else (1.0 if self.kd == "logits" else 4.0)


#: Options that have no default: field → the flag that sets it.
REQUIRED = {"teacher": "--teacher", "student": "--student", "data": "--data", "out": "--out"}


def _resumed(cfg, opts: DistillOptions):
    """``cfg`` continuing its run folder's last.pt when resuming a killed distillation (else a new run)."""
    if opts.resume and (Path(cfg.out) / "last.pt").is_file():
        return dataclasses.replace(cfg, resume=True)
    return cfg


def distill(opts: DistillOptions) -> Path:
    """Run ``terralite distill``; returns the run folder. Inputs are checked before anything is written.

    An untrained student (a spec) is initialised once, seeded, into ``RUN/student_init.pt`` with the
    teacher's input record: the engine then normalises tiles exactly as the teacher saw them, and the
    distilled and the stand-alone student start from the same weights.
    """
    require_options(opts, REQUIRED)
    check_bench(opts.bench_size, opts.bench_iters)
    device = resolve_device(opts.device)
    pairs = parse_layer_pairs(opts.feature_layers)
    out = check_run_folder(opts.out, opts)
    student_spec, student_ckpt = resolve_model_reference(opts.student)
    teacher_model, teacher_spec, teacher_ckpt = load_model(opts.teacher)
    if teacher_ckpt is None:
        raise TerraLiteError(f"teacher {opts.teacher!r} must be a trained TerraLite checkpoint (.pt)")
    eval_set = dataset_for_checkpoint(teacher_ckpt, opts.data, opts.eval_split) if opts.eval_split else None
    if student_ckpt is None:
        student_spec = with_io(student_spec, teacher_spec["in_channels"], teacher_spec["num_classes"])
    student_input = (student_ckpt or {}).get("input") or teacher_ckpt.get("input")
    teacher = load_teacher(opts.teacher, student_spec, student_input, device)
    term = DistillationTerm(teacher, opts.kd, opts.temperature(), opts.alpha, pairs, opts.half_teacher,
                            in_channels=student_spec["in_channels"])
    fields = {"data": opts.data, "device": opts.device, "val_split": opts.eval_split}
    if opts.epochs is not None:
        fields["epochs"] = opts.epochs
    cfg = compression_train_config((student_ckpt or {}).get("config"), student_spec, opts.overrides, model=opts.student,
                                   out=str(out / "distilled"), **fields)

    if student_ckpt is None:
        torch.manual_seed(cfg.seed)
        student = build_model(student_spec)  # also checks the spec before anything is written

    with new_run_folder(out, opts):
        if student_ckpt is None:
            # seeded: a resumed run writes the same initial weights again
            init = save_checkpoint(out / "student_init.pt", student_spec, student.state_dict(), input=student_input,
                                   class_names=teacher_ckpt.get("class_names"))
            cfg = dataclasses.replace(cfg, model=str(init))
        runs = {"distilled": train(_resumed(dataclasses.replace(cfg, label=f"{describe(student_spec)}-distilled"), opts), [term])}
        if opts.compare_alone:
            runs["alone"] = train(_resumed(dataclasses.replace(cfg, out=str(out / "alone"), label=f"{describe(student_spec)}-alone"), opts))

    evaluated = {}
    if eval_set is not None:
        evaluated["teacher"] = evaluate(teacher_model, eval_set, device=device)["miou"]
    entries = [Entry(f"{describe(teacher_spec)}-teacher", teacher_spec, model=teacher_model, miou=evaluated.get("teacher"), role="teacher")]
    for name, run in runs.items():
        ckpt_path = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
        model, spec, _ = load_model(str(ckpt_path))
        if eval_set is not None:
            evaluated[name] = evaluate(model, eval_set, device=device)["miou"]
        entries.append(Entry(describe(spec), spec, model=model, miou=evaluated.get(name), role=name))
    summary = {"options": dataclasses.asdict(opts), "tau": opts.temperature(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "eval_split": opts.eval_split, "miou": evaluated, "runs": {k: str(v) for k, v in runs.items()}}
    write_text_atomic(out / "distill.json", json.dumps(summary, indent=2) + "\n")
    write_compression_rows(out, entries, bench_size=opts.bench_size, iterations=opts.bench_iters, eval_split=opts.eval_split)
    return out
