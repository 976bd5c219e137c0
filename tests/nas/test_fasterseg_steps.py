"""The FasterSeg search steps as the original trains (METHODS §2), on the real tiny supernet.

Forward passes and width modes of one warm-up step and one search step (architecture and weight) are counted
with a forward pre-hook on the supernet the search built; the weight lr of each epoch is read from a real
run's log across the warm-up/search boundary and a resume; a non-finite term stops a step before it steps.
"""

import csv

import pytest
import torch

from terralite.engine.run import NonFiniteLossError
from terralite.nas.fasterseg.config import SEARCH_PRESETS, FasterSegSearchConfig, resolve_search_config
from terralite.nas.fasterseg.latency import table_conditions, table_entries
from terralite.nas.fasterseg.search import FasterSegSearch, search
from terralite.nas.latency_table import LatencyTable
from terralite.search_spaces.fasterseg.config import preset_config
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace

MAX_MIN_RANDOM = [("student", "max"), ("student", "min"), ("student", "random"), ("student", "random")]
SANDWICH = [("teacher", "max"), ("student", "gumbel"), ("student", "max"), ("student", "min")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from terralite.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("steps") / "data", tiles=12, size=64, seed=0)


@pytest.fixture(scope="module")
def lut(data, tmp_path_factory):
    """A table for the tiny preset's target with every entry 1 ms (nothing is timed)."""
    cfg = resolve_search_config("tiny", overrides=[f"data={data}", "out=o"])
    space = FasterSegSearchSpace(preset_config(cfg.preset, **cfg.space))
    t = cfg.target
    cond = table_conditions(space, t.size, torch.device(t.device), t.runtime, t.precision)
    return LatencyTable(cond, {k: 1.0 for k in table_entries(space, t.size)}).save(tmp_path_factory.mktemp("lut") / "lut.json")


def _config(data, lut, out, *overrides):
    return resolve_search_config("tiny", overrides=[f"data={data}", f"out={out}", f"lut={lut}", "device=cpu", "workers=0",
                                                    "val_images=1", *overrides])


@pytest.fixture
def job(data, lut, tmp_path):
    job = FasterSegSearch(_config(data, lut, tmp_path / "run"))
    job._start()  # the run loop's setup: data, supernet, optimisers, run folder
    calls = []
    hook = job.supernet.register_forward_pre_hook(lambda m, args, kwargs: calls.append((kwargs["role"], kwargs["width_mode"])),
                                                  with_kwargs=True)
    job.calls = calls
    yield job
    hook.remove()
    job.folder.close()


def _snapshot(params):
    return [p.detach().clone() for p in params]


def _changed(before, params):
    return [not torch.equal(b, p.detach()) for b, p in zip(before, params)]


def _batch(job, loader):
    return job._batch(next(iter(loader)))


def test_warmup_step_is_max_min_and_two_random_widths_weights_only(job):
    arch, weights = job.supernet.arch_parameters(), job.supernet.weight_parameters()
    arch0, weights0 = _snapshot(arch), _snapshot(weights)
    terms = job._warmup_step(*_batch(job, job.weight_loader))
    assert job.calls == MAX_MIN_RANDOM  # no teacher, no Gumbel pass
    assert list(terms) == ["max", "min", "random1", "random2"] and all(v > 0 for v in terms.values())
    assert not any(_changed(arch0, arch))  # weights only
    assert any(_changed(weights0, weights))


def test_arch_step_sums_teacher_gumbel_max_min_and_latency(job):
    sn = job.supernet
    arch, weights = sn.arch_parameters(), sn.weight_parameters()
    arch0, weights0 = _snapshot(arch), _snapshot(weights)
    terms, latency_ms = job._arch_step(*_batch(job, job.arch_loader))
    assert job.calls == SANDWICH
    assert list(terms) == ["teacher", "gumbel", "max", "min"] and latency_ms > 0
    assert not any(_changed(weights0, weights))  # the weights learn from the weight half only...
    assert all(p.grad is None for p in weights)  # ...and no gradient of the arch batch is left for them
    names = {id(p): n for n, p in sn.arch.items()}
    moved = {names[id(p)] for p, c in zip(arch, _changed(arch0, arch)) if c}
    assert {"teacher_alpha_0", "teacher_beta_1", "student_alpha_0", "student_beta_2", "student_ratio_0"} <= moved


def test_weight_step_uses_the_same_sandwich_and_leaves_the_architecture(job):
    arch, weights = job.supernet.arch_parameters(), job.supernet.weight_parameters()
    arch0, weights0 = _snapshot(arch), _snapshot(weights)
    terms = job._weight_step(*_batch(job, job.weight_loader))
    assert job.calls == SANDWICH
    assert list(terms) == ["teacher", "gumbel", "max", "min"]
    assert not any(_changed(arch0, arch))
    assert any(_changed(weights0, weights))
    # the teacher's own stem and the student's both train in the search phase
    stems = job.supernet.stems
    assert all(p.grad is not None for p in stems["teacher"].parameters()) and all(p.grad is not None for p in stems["student"].parameters())


def test_non_finite_term_stops_the_step_before_it_steps(job):
    stem_weight = next(job.supernet.stems["student"].parameters())
    stem_weight.data.fill_(float("nan"))
    others = [p for p in job.supernet.weight_parameters() if p is not stem_weight]
    before = _snapshot(others)
    with pytest.raises(NonFiniteLossError, match=r"search .* stopped at epoch 3, step 5: the warm-up step, student at max "
                                                 r"width loss is nan \(not finite\); no weight was updated"):
        job._warmup_step(*_batch(job, job.weight_loader), epoch=2, step=4)
    assert not any(_changed(before, others))
    assert "stopped at epoch 3, step 5" in (job.run_dir / "run.log").read_text()


def test_weight_lr_per_epoch_across_the_phases_and_a_resume(data, lut, tmp_path):
    out = tmp_path / "run"
    gw, gs = 0.9, 0.8  # decays that make every epoch's lr distinct
    common = ["steps_per_epoch=1", "lr_decay_warmup=0.9", "lr_decay=0.8"]
    search(_config(data, lut, out, "warmup_epochs=2", "epochs=1", *common))
    cfg = _config(data, lut, out, "warmup_epochs=2", "epochs=2", *common)
    cfg.resume = True  # one more search epoch, from the checkpointed schedule
    search(cfg)
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["phase"] for r in rows] == ["warmup", "warmup", "search", "search"]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.02, 0.02 * gw, 0.01, 0.01 * gs], rel=1e-12)
    # every term of each phase is logged, and the loss is their sum
    warm, srch = rows[0], rows[2]
    assert [warm[f"loss_{t}"] != "" for t in ("max", "min", "random1", "random2", "teacher", "gumbel")] == [True] * 4 + [False] * 2
    assert all(srch[f"loss_{t}"] != "" and srch[f"arch_loss_{t}"] != "" for t in ("teacher", "gumbel", "max", "min"))
    assert srch["loss_random1"] == ""
    for row, terms in ((warm, ("max", "min", "random1", "random2")), (srch, ("teacher", "gumbel", "max", "min"))):
        assert float(row["loss"]) == pytest.approx(sum(float(row[f"loss_{t}"]) for t in terms))


def test_presets_schedules():
    cfg = lambda name: resolve_search_config(name, overrides=["data=d", "out=o"])  # noqa: E731
    full, cpu, tiny = cfg("oem"), cfg("oem-cpu"), cfg("tiny")
    assert (full.lr_weights_warmup, full.lr_decay_warmup, full.lr_weights, full.lr_decay) == (0.02, 0.978, 0.01, 0.978)
    assert (full.warmup_epochs, full.epochs) == (20, 30)
    # the CPU schedule keeps the base lrs and ends each phase at the lr the original's phase ends at
    assert (cpu.lr_weights_warmup, cpu.lr_weights) == (0.02, 0.01)
    assert cpu.lr_decay_warmup ** cpu.warmup_epochs == pytest.approx(0.978 ** 20)
    assert cpu.lr_decay ** cpu.epochs == pytest.approx(0.978 ** 30)
    assert (tiny.lr_weights_warmup, tiny.lr_weights) == (0.02, 0.01)
    assert set(SEARCH_PRESETS) == {"oem", "oem-cpu", "tiny"}  # a new preset must be added to this test
    with pytest.raises(Exception, match="'lr_decay'.*must be in \\(0, 1\\]"):
        FasterSegSearchConfig(data=full.data, out="o", lr_decay=1.5).validate()
    with pytest.raises(Exception, match="lut_rounds must be at least 1, got 0"):
        FasterSegSearchConfig(data=full.data, out="o", lut_rounds=0).validate()
    assert (full.lut_rounds, tiny.lut_rounds) == (3, 1)
