"""Multi-trial search: tuner encodings, the latency band, rejection counting, resume, outputs, and a real
2-trial NNI experiment (skipped without the ``nni`` extra)."""

import csv
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from terralite.cli import main
from terralite.errors import TerraLiteError
from terralite.nas.fasterseg.latency import table_conditions, table_entries
from terralite.nas.latency_table import LatencyTable
from terralite.nas.multi_trial import encoding
from terralite.nas.multi_trial.config import resolve_multi_trial_config
from terralite.nas.multi_trial.context import SearchContext
from terralite.nas.multi_trial.latency import arch_key
from terralite.nas.multi_trial.objective import objective
from terralite.nas.multi_trial.random_search import draw_in_band, random_search
from terralite.nas.multi_trial.trial import run_trial
from terralite.search_spaces.base import get_search_space
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace

SIZE = 64
RESULTS = Path(__file__).resolve().parents[2] / "results"
# the proxy budget of the tests: one optimizer step of batch 2 on 64 px crops
BUDGET = {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "crop": 64, "device": "cpu"}
BUDGET_ARGS = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--crop", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_space():
    return FasterSegSearchSpace.from_preset("tiny", widths=[6, 12])


def _made_up_table(folder: Path, space, runtime: str) -> Path:
    cond = table_conditions(space, SIZE, torch.device("cpu"), runtime)
    table = LatencyTable(cond, {k: 0.1 + (zlib.crc32(k.encode()) % 100) / 10 for k in table_entries(space, SIZE)})
    table.save(folder / "lut.json")
    return folder / "lut.json"


@pytest.fixture(scope="module")
def lut(tmp_path_factory, tiny_space):
    """A table over every entry of the tiny space at 64 px with made-up but key-dependent latencies (0.1–10 ms),
    so that architectures differ in latency and the arithmetic is exact (no timing in the default suite)."""
    return _made_up_table(tmp_path_factory.mktemp("lut"), tiny_space, "onnxruntime")


@pytest.fixture(scope="module")
def torch_lut(tmp_path_factory, tiny_space):
    """The same table said to be measured with PyTorch: side-by-side checks then time eager networks (no export)."""
    return _made_up_table(tmp_path_factory.mktemp("torch_lut"), tiny_space, "torch")


@pytest.fixture(scope="module")
def median_fps(lut, tiny_space):
    """A target FPS at the median LUT latency of sampled students (about half the draws fall in a wide band)."""
    from terralite.nas.fasterseg.latency import arch_latency

    table = LatencyTable.load(lut)
    rng = np.random.default_rng(123)
    ms = [arch_latency(table, tiny_space.sample(rng), SIZE, 3, 8)["total"] for _ in range(40)]
    return 1000.0 / float(np.median(ms))


def _cfg(out, data, lut, fps, band=0.1, **extra):
    return resolve_multi_trial_config(train_flags={"data.root": str(data), **BUDGET}, space="fasterseg", out=str(out),
                                      lut=str(lut), target_fps=fps, band=band, **extra)


# -- encodings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs", [("fasterseg", {"cfg": "tiny"}), ("sparsemask", {})])
def test_encoding_decodes_every_draw_into_a_valid_architecture(name, kwargs):
    space = get_search_space(name, **kwargs)
    nni_space = encoding.to_nni_search_space(space)
    assert set(nni_space) == set(encoding.variables(space)) and nni_space
    assert all(v["_type"] in ("choice", "uniform") and v["_value"] for v in nni_space.values())
    rng = np.random.default_rng(0)
    archs = []
    for _ in range(5):
        values = json.loads(json.dumps(encoding.sample_values(space, rng)))  # as NNI hands them over (JSON)
        arch = encoding.decode(space, values)
        assert space.validate(arch) == arch
        archs.append(space.to_json(arch))
    assert len(set(archs)) > 1  # the values reach the architecture


def test_fasterseg_encoding_sets_ops_and_widths(tiny_space):
    values = encoding.sample_values(tiny_space, np.random.default_rng(1))
    values.update({k: "conv" for k in values if k.startswith("a")})
    values.update({k: 0 for k in values if k.startswith("w")})
    arch = encoding.decode(tiny_space, values)
    cells = [c for b in arch["branches"] for c in b["cells"]]
    assert {c["op"] for c in cells} == {"conv"}
    narrow = tiny_space.cfg.widths[0]
    assert {c["width"] for c in cells[:-1]} <= {narrow, arch["head_width"]}


def test_width_prior_maps_quantiles_to_choices():
    # skew 0.1 over 5 widths: P = (0.9, 0.09, 0.009, ...); a uniform prior (skew 1) splits [0, 1] evenly
    assert [encoding.width_index(u, 5, 0.1) for u in (0.0, 0.5, 0.899, 0.95, 0.995, 1.0)] == [0, 0, 0, 1, 2, 4]
    assert [encoding.width_index(u, 5, 1.0) for u in (0.0, 0.19, 0.21, 0.5, 0.99, 1.0)] == [0, 0, 1, 2, 4, 4]


def test_skewed_width_variables_are_quantiles(tiny_space):
    skewed = encoding.to_nni_search_space(tiny_space, encoding.Prior(width_skew=0.2))
    widths = [v for k, v in skewed.items() if k.startswith("w")]
    assert widths and all(v == {"_type": "uniform", "_value": [0.0, 1.0]} for v in widths)
    ops = [v for k, v in skewed.items() if k.startswith("a")]
    assert ops == [v for k, v in encoding.to_nni_search_space(tiny_space).items() if k.startswith("a")]
    values = encoding.sample_values(tiny_space, np.random.default_rng(0), encoding.Prior(width_skew=0.2))
    values.update({k: 0.1 for k in values if k.startswith("w")})  # below P(narrowest) = 1 / 1.2
    arch = encoding.decode(tiny_space, values, encoding.Prior(width_skew=0.2))
    cells = [c for b in arch["branches"] for c in b["cells"]]
    assert {c["width"] for c in cells[:-1]} <= {tiny_space.cfg.widths[0], arch["head_width"]}


def test_keep_probability_thins_sparsemask_draws():
    space = get_search_space("sparsemask")
    sparse = encoding.Prior(keep_prob=0.08)
    bits = encoding.to_nni_search_space(space, sparse)
    assert all(v == {"_type": "uniform", "_value": [0.0, 1.0]} for v in bits.values())
    rng = np.random.default_rng(0)

    def connections(prior):
        kept, none = [], 0
        for _ in range(60):
            try:
                arch = encoding.decode(space, encoding.sample_values(space, rng, prior), prior)
            except encoding.NoArchitecture:
                none += 1
                continue
            kept.append(sum(len(inputs) for inputs in arch["stages"].values()))
        return float(np.mean(kept)), none

    sparse_mean, sparse_none = connections(sparse)
    uniform_mean, uniform_none = connections(encoding.UNIFORM)
    assert sparse_mean < 12 < 30 < uniform_mean  # about 90 x 0.08 before clean-up, against about 90 x 0.5
    assert sparse_none > 0 == uniform_none  # an output stage left without input happens only when sparse


@pytest.mark.skipif(not (RESULTS / "fasterseg" / "lut_cpu_onnxruntime_1024.json").is_file(), reason="committed results absent")
def test_skewed_widths_reach_a_searched_students_band_that_uniform_draws_miss(tmp_path, synthetic_root):
    """The committed 3 FPS student costs 231.5 ms by the committed CPU table, near the space's floor (209.5 ms):
    no uniform draw lies within ±5 %, narrow-skewed draws do (about 1 in 5), with some wider nodes among them."""
    def ctx(name, skew):
        cfg = resolve_multi_trial_config(
            train_flags={"data.root": str(synthetic_root), **BUDGET}, space="fasterseg", out=str(tmp_path / name),
            lut=str(RESULTS / "fasterseg" / "lut_cpu_onnxruntime_1024.json"),
            match=str(RESULTS / "fasterseg" / "search_oem-cpu_3fps" / "student.json"), width_skew=skew)
        return SearchContext.open(cfg, "random")

    assert ctx("uniform", 1.0).target_ms == pytest.approx(231.53, abs=0.01)
    assert draw_in_band(ctx("uniform", 1.0), 1, 200)[1]["in_band"] == 0
    skewed = ctx("skewed", 0.1)
    archs, counts = draw_in_band(skewed, 8, 200)
    assert len(archs) == 8 and counts["drawn"] < 100
    lo, hi = skewed.band_ms
    assert all(lo <= skewed.latency(a) <= hi for a in archs)
    widths = [c["width"] for a in archs for b in a["branches"] for c in b["cells"]]
    assert min(widths) == 4 and max(widths) > 4  # mostly the narrowest width (4 of 12), not only


def test_search_folders_from_before_newer_settings_resume(tmp_path, synthetic_root, lut, median_fps):
    run = tmp_path / "run"
    SearchContext.open(_cfg(run, synthetic_root, lut, median_fps), "random")
    saved = json.loads((run / "search.json").read_text())
    for key in ("width_skew", "measured_band", "side_by_side_iters"):  # as written before these settings existed
        del saved["config"][key]
    (run / "search.json").write_text(json.dumps(saved))
    SearchContext.open(_cfg(run, synthetic_root, lut, median_fps), "random")  # the default: the same search
    with pytest.raises(TerraLiteError, match="width_skew"):
        SearchContext.open(_cfg(run, synthetic_root, lut, median_fps, width_skew=0.5), "random")


def test_width_skew_is_checked(tmp_path, synthetic_root, lut):
    with pytest.raises(TerraLiteError, match=r"--width-skew must lie in \(0, 1\]"):
        _cfg(tmp_path / "a", synthetic_root, lut, 10.0, width_skew=0.0)
    with pytest.raises(TerraLiteError, match="--space sparsemask"):
        _cfg(tmp_path / "c", synthetic_root, lut, 10.0, keep_prob=0.2)
    with pytest.raises(TerraLiteError, match="--space fasterseg"):
        resolve_multi_trial_config(train_flags={"data.root": str(synthetic_root), **BUDGET}, space="sparsemask",
                                   out=str(tmp_path / "b"), target_fps=10.0, width_skew=0.5)


def test_sparsemask_values_without_output_decode_to_no_architecture():
    space = get_search_space("sparsemask")
    values = {name: 0 for name in encoding.variables(space)}
    with pytest.raises(encoding.NoArchitecture):
        encoding.decode(space, values)
    with pytest.raises(TerraLiteError, match="lack"):
        encoding.decode(space, {})


def test_objective_is_fasterseg_rule():
    assert objective("fasterseg", 0.5, 10.0, 10.0) == pytest.approx(0.5)
    assert objective("fasterseg", 0.5, 20.0, 10.0) == pytest.approx(0.5 * 2 ** -0.07)
    assert objective("miou", 0.5, 20.0, 10.0) == 0.5


# -- band and rejection -----------------------------------------------------------------------------
def test_random_draws_lie_in_the_band_and_rejections_are_counted(tmp_path, synthetic_root, lut, median_fps):
    ctx = SearchContext.open(_cfg(tmp_path / "run", synthetic_root, lut, median_fps, band=0.05), "random")
    archs, counts = draw_in_band(ctx, 4, 500)
    assert len(archs) == 4 == counts["in_band"]
    assert counts["drawn"] == counts["in_band"] + counts["rejected_latency"] + counts["duplicates"]
    assert counts["rejected_latency"] > 0
    target = 1000.0 / median_fps
    for arch in archs:
        assert abs(ctx.latency(arch) / target - 1) <= 0.05
    again, counts_again = draw_in_band(ctx, 4, 500)  # a function of the seed alone
    assert again == archs and counts_again == counts


def test_trial_outside_the_band_is_rejected_untrained(tmp_path, synthetic_root, lut, median_fps, tiny_space):
    ctx = SearchContext.open(_cfg(tmp_path / "run", synthetic_root, lut, median_fps, band=0.05), "random")
    heavy = tiny_space.max_arch()  # a teacher-width architecture: far slower than the median student
    row = run_trial(ctx, "random-999", heavy)
    assert row["status"] == "rejected" and "outside" in row["reason"]
    assert not (ctx.trial_dir("random-999") / "train").exists()
    assert not (ctx.trial_dir("random-999") / "arch.json").exists()


def test_match_targets_an_architecture_latency(tmp_path, synthetic_root, lut, tiny_space):
    arch = tiny_space.sample(np.random.default_rng(5))
    path = tmp_path / "student.json"
    path.write_text(json.dumps({"kind": "fasterseg", "arch": arch}))
    cfg = resolve_multi_trial_config(train_flags={"data.root": str(synthetic_root), **BUDGET}, space="fasterseg",
                                     out=str(tmp_path / "run"), lut=str(lut), match=str(path))
    ctx = SearchContext.open(cfg, "random")
    assert ctx.target_ms == pytest.approx(ctx.latency(arch))


def test_bad_settings_are_one_line_errors(tmp_path, synthetic_root, lut, capsys):
    base = ["search", "random", "--space", "fasterseg", "--data", str(synthetic_root), "--samples", "1", *BUDGET_ARGS]
    assert main([*base, "--out", str(tmp_path / "a"), "--target-fps", "10"]) == 2  # fasterseg without --lut
    assert "--lut" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--lut", str(lut), "--target-fps", "10", "--band", "1.5"]) == 2
    assert "--band" in capsys.readouterr().err


# -- the band by measurement (side by side with the target) ---------------------------------------------
def _matched_cfg(tmp_path, data, lut, space, measured_band, band=0.9, out="run"):
    """A search whose target is a sampled architecture of ``space`` (its JSON as --match)."""
    path = tmp_path / "target.json"
    path.write_text(json.dumps({"kind": "fasterseg", "arch": space.sample(np.random.default_rng(5))}))
    return resolve_multi_trial_config(train_flags={"data.root": str(data), **BUDGET}, space="fasterseg",
                                      out=str(tmp_path / out), lut=str(lut), match=str(path), band=band,
                                      measured_band=measured_band, side_by_side_iters=5)


def test_measured_band_keeps_draws_timed_within_it_beside_the_target(tmp_path, synthetic_root, torch_lut, tiny_space,
                                                                     monkeypatch):
    """Real side-by-side timings (the table's runtime, here PyTorch; 64 px, 5 calls each): a kept draw's cached
    ratio lies within the measured band; a band no timing can meet (±1e-9) rejects every draw the table let
    through, counted apart."""
    lut = torch_lut
    ctx = SearchContext.open(_matched_cfg(tmp_path, synthetic_root, lut, tiny_space, 0.9), "random")
    archs, counts = draw_in_band(ctx, 2, 6)
    cache = json.loads((tmp_path / "run" / "side_by_side_cache.json").read_text())
    assert len(archs) == counts["in_band"] >= 1
    assert counts["drawn"] == sum(counts[k] for k in ("in_band", "rejected_latency", "rejected_measured", "duplicates"))
    assert len(cache) == counts["in_band"] + counts["rejected_measured"]  # only draws inside the table's band are timed
    for arch in archs:
        entry = cache[arch_key(tiny_space, arch)]
        assert abs(entry["ratio"] - 1) <= 0.9 and entry["iters"] == 5
        assert entry["ratio"] == pytest.approx(entry["ms"] / entry["target_ms"])
    # the ratios are cached: the same draws again time nothing
    import terralite.benchmark.runners.base as runners_base

    monkeypatch.setattr(runners_base, "measure_side_by_side", lambda *a, **k: pytest.fail("timed a cached draw again"))
    assert draw_in_band(ctx, 2, 6) == (archs, counts)
    monkeypatch.undo()

    strict = SearchContext.open(_matched_cfg(tmp_path, synthetic_root, lut, tiny_space, 1e-9, out="strict"), "random")
    none, strict_counts = draw_in_band(strict, 2, 6)
    assert none == [] and strict_counts["in_band"] == 0
    strict_cache = json.loads((tmp_path / "strict" / "side_by_side_cache.json").read_text())
    assert strict_counts["rejected_measured"] == len(strict_cache) >= len(cache)  # every draw the table let through
    assert strict_counts["drawn"] == 6 == sum(strict_counts[k] for k in ("rejected_latency", "rejected_measured", "duplicates"))
    row = run_trial(strict, "random-000", archs[0])  # a trial (as NNI's) is rejected the same way, untrained
    assert row["status"] == "rejected" and "side by side" in row["reason"] and "measured_ratio" in row
    assert not (strict.trial_dir("random-000") / "train").exists()
    with pytest.raises(TerraLiteError, match="measured_band"):  # the kept set depends on it: no resume with another
        SearchContext.open(_matched_cfg(tmp_path, synthetic_root, lut, tiny_space, 0.5, out="strict"), "random")


def test_measured_band_settings_are_checked(tmp_path, synthetic_root, lut, tiny_space, capsys):
    with pytest.raises(TerraLiteError, match="--match ARCH.json"):
        _cfg(tmp_path / "a", synthetic_root, lut, 10.0, measured_band=0.05)
    with pytest.raises(TerraLiteError, match=r"--measured-band must lie in \(0, 1\)"):
        _matched_cfg(tmp_path, synthetic_root, lut, tiny_space, 1.5)
    base = ["search", "random", "--space", "fasterseg", "--data", str(synthetic_root), "--samples", "1", "--lut", str(lut),
            "--target-fps", "10", "--out", str(tmp_path / "c"), *BUDGET_ARGS]
    assert main([*base, "--measured-band", "0.05"]) == 2
    assert "give the target as --match" in capsys.readouterr().err
    assert main([*base, "--side-by-side-iters", "2"]) == 2
    assert "--side-by-side-iters must be at least 5" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


# -- the random baseline end to end, resume --------------------------------------------------------------
def test_random_search_trains_writes_outputs_and_resumes(tmp_path, synthetic_root, lut, median_fps, monkeypatch):
    run = tmp_path / "run"
    cfg = _cfg(run, synthetic_root, lut, median_fps, band=0.1)
    summary = random_search(cfg, samples=2)
    assert summary["counts"]["trained"] == 2 and summary["counts"]["in_band"] == 2
    with open(run / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["random-000", "random-001"]
    lo, hi = summary["band_ms"]
    for r in rows:
        assert r["status"] == "trained" and lo <= float(r["latency_ms"]) <= hi
        assert 0.0 <= float(r["miou"]) <= 1.0 and int(r["params"]) > 0 and float(r["gmacs"]) > 0
        assert (run / r["arch_json"]).is_file()
        assert float(r["objective"]) == pytest.approx(float(r["miou"]) * (float(r["latency_ms"]) / summary["target_ms"]) ** -0.07)
    best = json.loads((run / "best.json").read_text())
    assert best["kind"] == "fasterseg" and best["label"] == f"fasterseg-{summary['best']['trial']}"
    assert (run / "trials.png").stat().st_size > 0 and "| random-001 |" in (run / "trials.md").read_text()
    assert summary["prior"] == {"width_skew": 1.0, "keep_prob": 0.5} and "every choice uniform" in (run / "trials.md").read_text()

    # a rerun trains nothing: every trial is finished
    import terralite.engine.train as engine_train

    def no_training(cfg):
        raise AssertionError(f"trained {cfg.out} again")

    monkeypatch.setattr(engine_train, "train", no_training)
    assert random_search(cfg, samples=2)["counts"] == summary["counts"]
    # ... and a rerun with other settings is refused
    with pytest.raises(TerraLiteError, match="band"):
        random_search(_cfg(run, synthetic_root, lut, median_fps, band=0.2), samples=2)


def test_interrupted_trial_resumes_its_training(tmp_path, synthetic_root, lut, median_fps):
    """A start killed after training but before the row was written resumes from last.pt (0 epochs left)."""
    cfg = _cfg(tmp_path / "run", synthetic_root, lut, median_fps, band=0.1)
    random_search(cfg, samples=1)
    ctx = SearchContext.open(cfg, "random")
    result = ctx.trial_dir("random-000") / "result.json"
    first = json.loads(result.read_text())
    result.unlink()
    random_search(cfg, samples=1)
    again = json.loads(result.read_text())
    assert again["miou"] == pytest.approx(first["miou"]) and again["arch_key"] == first["arch_key"]


# -- NNI ---------------------------------------------------------------------------------------------
def test_nni_missing_is_one_line(monkeypatch, tmp_path, synthetic_root, lut):
    import builtins

    real_import = builtins.__import__

    def no_nni(name, *args, **kwargs):
        if name == "nni" or name.startswith("nni."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nni)
    from terralite.nas.multi_trial.nni_search import require_nni

    with pytest.raises(TerraLiteError, match=r"pip install 'terralite\[nni\]'"):
        require_nni()


def test_nni_experiment_runs_two_trials_and_writes_its_table(tmp_path, synthetic_root, lut, median_fps, capsys):
    pytest.importorskip("nni", reason="NNI is not installed (pip install 'terralite[nni]')")
    run = tmp_path / "run"
    args = ["search", "nni", "--space", "fasterseg", "--tuner", "tpe", "--trials", "2", "--lut", str(lut),
            "--target-fps", str(median_fps), "--band", "0.9", "--data", str(synthetic_root), "--out", str(run), *BUDGET_ARGS]
    assert main(args) == 0
    with open(run / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    # --trials counts trained architectures; proposals outside the band are rows too, rejected
    assert sum(r["status"] == "trained" for r in rows) == 2
    assert all(r["status"] in ("trained", "rejected") for r in rows)
    assert sorted(r["trial"] for r in rows) == [f"nni-{k:03d}" for k in range(len(rows))]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"] == "nni-tpe" and summary["counts"]["trained"] == 2 and summary["counts"]["failed"] == 0
    assert summary["counts"]["proposed"] == len(rows)
    experiments = [p for p in (run / "nni").iterdir() if p.is_dir() and p.name not in ("trial_code", "_latest")]
    assert len(experiments) == 1 and (experiments[0] / "log" / "nnimanager.log").is_file()
    for r in rows:  # each trial's architecture came from the tuner's parameters
        result = json.loads((run / "trials" / r["trial"] / "result.json").read_text())
        assert set(result["tuner_params"]) == set(encoding.variables(FasterSegSearchSpace.from_preset("tiny", widths=[6, 12])))
    # a rerun finds both trials finished and starts no experiment
    assert main(args) == 0
    assert len([p for p in (run / "nni").iterdir() if p.is_dir() and p.name not in ("trial_code", "_latest")]) == 1


# -- measured latency (SparseMask) ----------------------------------------------------------------------
# Not in CI: it times architectures, and on a busy 2-core machine (2026-12-01, another test suite running beside
# it) only 1 of 40 draws landed in a +-20 % band of the reference's measured latency. Run it alone: pytest -m scale
@pytest.mark.scale
def test_sparsemask_random_architectures_lie_in_the_band_by_measurement(tmp_path, synthetic_root):
    """SparseMask's latency is measured: re-timing the accepted architectures independently lands them in
    the band (with room for timing noise on a shared machine)."""
    from terralite.nas.multi_trial.latency import measure_latency

    space = get_search_space("sparsemask")
    ref = space.sample(np.random.default_rng(7))
    ref_path = tmp_path / "ref.json"
    ref_path.write_text(json.dumps({"kind": "sparsemask", "arch": ref}))
    cfg = resolve_multi_trial_config(train_flags={"data.root": str(synthetic_root), **BUDGET}, space="sparsemask",
                                     out=str(tmp_path / "run"), match=str(ref_path), band=0.2, size=SIZE,
                                     latency_runtime="torch", latency_iters=10)
    ctx = SearchContext.open(cfg, "random")
    archs, counts = draw_in_band(ctx, 2, 40)
    assert len(archs) == 2 and counts["drawn"] >= 2
    assert len(json.loads((tmp_path / "run" / "latency_cache.json").read_text())) >= counts["drawn"] - counts["duplicates"]
    for arch in archs:
        again = measure_latency(space, arch, SIZE, "torch", "cpu", 3, 10)
        assert abs(again / ctx.target_ms - 1) <= 2 * cfg.band


@pytest.mark.parametrize("tuner", ["random", "tpe", "evolution", "anneal"])
def test_every_tuner_proposes_decodable_architectures(tuner, tiny_space):
    """NNI's built-in tuner (as the experiment builds it) proposes values that decode, after importing history."""
    pytest.importorskip("nni", reason="NNI is not installed (pip install 'terralite[nni]')")
    from nni.tools.package_utils.tuner_factory import create_builtin_class_instance

    from terralite.nas.multi_trial.nni_search import TUNERS, tuner_class_args

    instance = create_builtin_class_instance(TUNERS[tuner][0], tuner_class_args(tuner, 0, 8), "tuners")
    instance.update_search_space(encoding.to_nni_search_space(tiny_space))
    rng = np.random.default_rng(0)
    instance.import_data([{"parameter": encoding.sample_values(tiny_space, rng), "value": v} for v in (0.1, 0.2)])
    for i in range(3):
        values = instance.generate_parameters(i)
        assert tiny_space.validate(encoding.decode(tiny_space, values))
        instance.receive_trial_result(i, values, 0.3)
