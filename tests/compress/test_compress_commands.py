"""The prune / quantize / distill commands end to end on a tiny FasterSeg network and a 64 px dataset,
and their error paths (nothing left behind)."""

import json

import pytest
import torch

from terralite.checkpoint import save_checkpoint
from terralite.cli import main
from terralite.data.classes import IGNORE_INDEX
from terralite.data.openearthmap import OpenEarthMapDataset
from terralite.models import build_model

TINY_ARCH = {
    "F": 2, "width_base": 12, "stem_width": 12, "head_width": 12,
    "branches": [{"scale": 16, "cells": [
        {"op": "conv", "scale": 8, "down": True, "width": 12},
        {"op": "conv", "scale": 16, "down": False, "width": 12}]}],
}
BENCH = ["--bench-size", "64", "--bench-iters", "1"]


def _checkpoint(path, root, in_channels=3, label="tiny"):
    spec = {"kind": "fasterseg", "label": label, "arch": TINY_ARCH, "in_channels": in_channels, "num_classes": 8}
    torch.manual_seed(0)
    record = OpenEarthMapDataset(root, "train").input_record()
    if in_channels != 3:
        record = {"bands": None, "mean": [100.0] * in_channels, "std": [50.0] * in_channels}
    return save_checkpoint(path, spec, build_model(spec).state_dict(), input=record)


@pytest.fixture(scope="module")
def tiny_ckpt(synthetic_root, tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", synthetic_root)


def test_prune_with_finetune_writes_a_reloadable_checkpoint_and_rows(tiny_ckpt, synthetic_root, tmp_path):
    out = tmp_path / "run"
    code = main(["prune", str(tiny_ckpt), "--ratio", "0.5", "--data", str(synthetic_root), "--out", str(out),
                 "--finetune-epochs", "1", "--train-set", "batch_size=2", "--train-set", "crop=64",
                 "--train-set", "max_steps_per_epoch=1",
                 "--device", "cpu", *BENCH])
    assert code == 0
    from terralite.models import load_model

    model, spec, ckpt = load_model(str(out / "pruned.pt"))
    assert spec["kind"] == "pruned" and ckpt["input"]["mean"]
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 8, 64, 64)
    assert (out / "finetune1" / "last.pt").is_file()
    rows = [json.loads(line) for line in (out / "compression_rows.jsonl").read_text().splitlines()]
    assert [r["role"] for r in rows] == ["parent", "pruned", "finetuned"]
    assert rows[1]["params_m"] < 0.4 * rows[0]["params_m"] and rows[1]["gmacs"] < rows[0]["gmacs"]
    assert all(r["miou"] is not None and r["input_size"] == 64 and r["runtime"] == "torch" for r in rows)
    summary = json.loads((out / "prune.json").read_text())
    assert set(summary["models"]) == {"parent", "pruned", "finetuned"}


@pytest.mark.slow
def test_iterative_global_taylor_pruning_records_every_step(tiny_ckpt, synthetic_root, tmp_path):
    out = tmp_path / "run"
    code = main(["prune", str(tiny_ckpt), "--ratio", "0.5", "--iterative", "2", "--importance", "taylor", "--global",
                 "--round-to", "4", "--data", str(synthetic_root), "--out", str(out), "--eval-split", "none", *BENCH])
    assert code == 0
    from terralite.models import load_model

    model, spec, _ = load_model(str(out / "pruned.pt"))
    assert [r["step"] for r in spec["pruning"]] == [1, 2] and (out / "step1.pt").is_file()
    assert spec["pruning"][1]["step_ratio"] == pytest.approx(0.5 / 0.75 * 0.5)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 8, 64, 64)
    summary = json.loads((out / "prune.json").read_text())["models"]
    assert summary["pruned"]["conv_params"] < 0.6 * summary["parent"]["conv_params"]
    assert summary["pruned"]["miou"] is None


def test_quantize_gives_a_smaller_int8_model_that_agrees_with_fp32(tiny_ckpt, synthetic_root, tmp_path):
    out = tmp_path / "tiny.int8.onnx"
    code = main(["quantize", str(tiny_ckpt), "--calib", str(synthetic_root), "--out", str(out), "--calib-images", "3", *BENCH])
    assert code == 0
    report = json.loads((tmp_path / "tiny.int8.onnx.json").read_text())
    assert out.stat().st_size < 0.5 * (tmp_path / "tiny.fp32.onnx").stat().st_size
    assert report["agreement"]["pixel_agreement"] >= 0.99  # per-channel weights, calibrated on the tiles
    assert abs(report["agreement"]["miou_difference"]) < 0.1
    import onnx

    graph = onnx.load(str(out)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    assert report["per_channel"] and report["float_ops"] == ["Resize", "Softmax"]
    # the convolution that reads the image keeps float weights; every other one is int8
    graph = onnx.load(str(out)).graph
    (first,) = report["float_convs"]
    reads_image = {node.name for node in graph.node if node.op_type == "Conv" and node.input[0].startswith(graph.input[0].name)}
    assert reads_image == {first}
    # the resizes (the final upsample too) stay in float: no resize reads an int8 tensor
    dequantised = {o for node in graph.node if node.op_type == "DequantizeLinear" for o in node.output}
    quantised = {o for node in graph.node if node.op_type == "QuantizeLinear" for o in node.output}
    resizes = [node for node in graph.node if node.op_type == "Resize"]
    assert resizes and all(node.input[0] not in quantised for node in resizes)
    assert dequantised
    # the measured ratio from the two rows, and below the target the operators that cost it
    speed = report["speed"]
    rows_now = [json.loads(line) for line in (tmp_path / "compression_rows.jsonl").read_text().splitlines()]
    assert speed["speedup"] == pytest.approx(rows_now[0]["latency_ms_median"] / rows_now[1]["latency_ms_median"], rel=1e-2)
    assert speed["meets_target"] == (speed["speedup"] >= 1.3) and speed["input_size"] == 64
    if not speed["meets_target"]:
        ops = [o["op"] for o in speed["costliest_int8_ops"]]
        assert ops and set(ops) <= set(speed["op_ms"]["int8"]) and speed["op_ms"]["fp32"]
        assert 0 < sum(o["share"] for o in speed["costliest_int8_ops"]) <= 1.0 + 1e-6
    meta = {p.key for p in onnx.load(str(out)).metadata_props}
    assert "terralite.input" in meta  # the int8 file maps rasters on its own (terralite predict)
    rows = [json.loads(line) for line in (tmp_path / "compression_rows.jsonl").read_text().splitlines()]
    assert [(r["runtime"], r["precision"]) for r in rows] == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    from terralite.benchmark.onnx_file import read_onnx_file

    fp32, int8 = read_onnx_file(tmp_path / "tiny.fp32.onnx"), read_onnx_file(out)
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert int8.params == fp32.params  # int8 weights and int32 biases; scales and zero points are not parameters
    # the benchmark times the int8 file itself (dynamic H, W fixed to --size), with counts from the spec it carries
    assert main(["bench", str(out), "--runtime", "onnxruntime", "--size", "64", "--warmup", "0", "--iters", "1",
                 "--out", str(tmp_path / "bench.jsonl")]) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "bench.jsonl").read_text().splitlines()]
    assert (row["model"], row["precision"], row["tta"]) == ("tiny", "int8", "none")
    assert row["params_m"] == pytest.approx(rows[1]["params_m"]) and row["gmacs"] == pytest.approx(rows[1]["gmacs"])


@pytest.mark.parametrize("ratio", ["1.5", "0"])
def test_prune_ratio_outside_0_1_leaves_nothing(tiny_ckpt, synthetic_root, tmp_path, capsys, ratio):
    out = tmp_path / "run"
    assert main(["prune", str(tiny_ckpt), "--ratio", ratio, "--data", str(synthetic_root), "--out", str(out)]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_foreign_checkpoint_is_refused_and_leaves_nothing(synthetic_root, tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, foreign)
    assert main(["prune", str(foreign), "--ratio", "0.5", "--data", str(synthetic_root), "--out", str(tmp_path / "run")]) == 2
    assert "not a TerraLite checkpoint" in capsys.readouterr().err
    assert main(["quantize", str(foreign), "--calib", str(synthetic_root), "--out", str(tmp_path / "m.int8.onnx")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pt"]


def test_calibration_data_with_other_band_count_leaves_nothing(synthetic_root, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "four.pt", synthetic_root, in_channels=4)
    assert main(["quantize", str(ckpt), "--calib", str(synthetic_root), "--out", str(tmp_path / "m.int8.onnx")]) == 2
    assert "band" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["four.pt"]


def test_distill_logits_cwd_beside_the_student_alone(tiny_ckpt, synthetic_root, tmp_path):
    out = tmp_path / "kd"
    code = main(["distill", "--teacher", str(tiny_ckpt), "--student", str(tiny_ckpt), "--data", str(synthetic_root),
                 "--out", str(out), "--kd", "both", "--epochs", "1", "--train-set", "batch_size=2", "--train-set", "crop=64",
                 "--train-set", "max_steps_per_epoch=1", "--device", "cpu", "--compare-alone", *BENCH])
    assert code == 0
    summary = json.loads((out / "distill.json").read_text())
    assert set(summary["miou"]) == {"teacher", "distilled", "alone"}
    assert (out / "distilled" / "last.pt").is_file() and (out / "alone" / "last.pt").is_file()
    rows = [json.loads(line) for line in (out / "compression_rows.jsonl").read_text().splitlines()]
    assert [r["role"] for r in rows] == ["teacher", "distilled", "alone"]


@pytest.mark.slow
def test_feature_cwd_trains_adapters_that_stay_out_of_the_student(tiny_ckpt, synthetic_root, tmp_path):
    student = tmp_path / "student.json"
    student.write_text(json.dumps({"kind": "fasterseg", "label": "narrow", "arch": dict(TINY_ARCH, F=1)}))
    out = tmp_path / "kd"
    code = main(["distill", "--teacher", str(tiny_ckpt), "--student", str(student), "--data", str(synthetic_root),
                 "--out", str(out), "--kd", "cwd", "--feature-layers", "stem", "--epochs", "1", "--train-set", "batch_size=2",
                 "--train-set", "crop=64", "--train-set", "max_steps_per_epoch=1", "--device", "cpu", "--eval-split", "none", *BENCH])
    assert code == 0
    from terralite.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out / "distilled" / "last.pt")
    assert ckpt["spec"]["label"] == "narrow-distilled" and ckpt["spec"]["arch"]["F"] == 1  # the trained network is named
    assert not any("adapter" in key for key in ckpt["state_dict"])
    assert list(ckpt["extra_terms"][0]) == ["adapters.0.weight", "adapters.0.bias"]  # kept for a resume
    init = load_checkpoint(out / "student_init.pt")
    assert init["input"] == load_checkpoint(tiny_ckpt)["input"]  # the student reads tiles as the teacher did


def test_tensorrt_without_the_package_is_a_clear_error(tiny_ckpt, synthetic_root, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    out = tmp_path / "m.int8.onnx"
    assert main(["quantize", str(tiny_ckpt), "--calib", str(synthetic_root), "--out", str(out), "--tensorrt", str(tmp_path / "m.engine")]) == 2
    assert "drop --tensorrt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
def test_tensorrt_int8_engine_from_the_qdq_model(tiny_ckpt, synthetic_root, tmp_path):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    engine = tmp_path / "tiny.int8.engine"
    assert main(["quantize", str(tiny_ckpt), "--calib", str(synthetic_root), "--out", str(tmp_path / "tiny.int8.onnx"),
                 "--calib-images", "3", "--tensorrt", str(engine), *BENCH]) == 0
    from terralite.benchmark.tensorrt_engine import load_engine

    assert engine.stat().st_size > 0 and load_engine(engine) is not None


# --------------------------------------------------------------------------- options: --config, --set, --print-config

PRINT_CONFIG_CASES = {
    "prune": ["prune", "parent.pt", "--ratio", "0.5", "--data", "data", "--out", "2024", "--train-set", "batch_size=2",
              "--eval-split", "none", "--set", "taylor_tiles=8"],
    "distill": ["distill", "--teacher", "t.pt", "--student", "unet-resnet18", "--data", "data", "--out", "2024",
                "--train-set", "seed=1", "--feature-layers", "stem", "enc:dec", "--set", "kd=cwd"],
    "quantize": ["quantize", "m.pt", "--calib", "data", "--out", "2024", "--eval-split", "none", "--set", "calib_images=3"],
}


@pytest.mark.parametrize("command", sorted(PRINT_CONFIG_CASES))
def test_print_config_round_trips_through_config(command, tmp_path, capsys):
    import yaml

    assert main([*PRINT_CONFIG_CASES[command], "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed)["out"] == "2024"  # a flag's value is the string, never re-read as YAML (the int 2024)
    (tmp_path / "opts.yaml").write_text(printed)
    assert main([command, "--config", str(tmp_path / "opts.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    assert list(tmp_path.iterdir()) == [tmp_path / "opts.yaml"]  # printing runs nothing


def test_print_config_options_land_in_their_fields(capsys):
    import yaml

    assert main([*PRINT_CONFIG_CASES["prune"], "--print-config"]) == 0
    opts = yaml.safe_load(capsys.readouterr().out)
    assert (opts["checkpoint"], opts["ratio"], opts["eval_split"], opts["taylor_tiles"]) == ("parent.pt", 0.5, None, 8)
    assert opts["finetune_overrides"] == ["batch_size=2"]
    assert main([*PRINT_CONFIG_CASES["distill"], "--print-config"]) == 0
    opts = yaml.safe_load(capsys.readouterr().out)
    assert opts["overrides"] == ["seed=1"] and opts["feature_layers"] == ["stem", "enc:dec"] and opts["kd"] == "cwd"
    assert main([*PRINT_CONFIG_CASES["quantize"], "--print-config"]) == 0
    opts = yaml.safe_load(capsys.readouterr().out)
    assert opts["eval_split"] is None and opts["calib_images"] == 3


def test_flags_override_the_config_file_and_train_set_appends(tmp_path, capsys):
    import yaml

    config = tmp_path / "prune.yaml"
    config.write_text("checkpoint: a.pt\nratio: 0.25\nfinetune_overrides: [crop=64]\ndevice: cpu\n")
    assert main(["prune", "--config", str(config), "--ratio", "0.5", "--train-set", "batch_size=2", "--print-config"]) == 0
    opts = yaml.safe_load(capsys.readouterr().out)
    assert (opts["checkpoint"], opts["ratio"], opts["device"]) == ("a.pt", 0.5, "cpu")
    assert opts["finetune_overrides"] == ["crop=64", "batch_size=2"]
    # the fine-tunes' overrides stay reachable as an option
    assert main(["prune", "--set", "finetune_overrides=[seed=3]", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["finetune_overrides"] == ["seed=3"]


@pytest.mark.parametrize("command", ["prune", "distill"])
def test_set_of_a_training_key_points_to_train_set(command, capsys):
    # --set used to mean a training override here: the old spelling fails loudly instead of changing meaning
    assert main([command, "--set", "batch_size=2", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "--train-set batch_size=2" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, missing", [
    (["prune", "--ratio", "0.5", "--data", "d"], "CKPT, --out"),
    (["prune", "parent.pt", "--data", "d", "--out", "run"], "--ratio"),
    (["distill", "--teacher", "t.pt", "--data", "d"], "--student, --out"),
    (["quantize", "m.pt", "--out", "m.int8.onnx"], "--calib"),
])
def test_missing_required_options_are_named(argv, missing, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert f"missing {missing}:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("static_size, crops_per_tile", [(32, 4), (128, 1)])
def test_static_onnx_quantises_on_tiles_of_another_size(tiny_ckpt, synthetic_root, tmp_path, capsys, static_size, crops_per_tile):
    """A static export takes one size only: 64 px calibration tiles are cut into 32 px crops, or padded to 128."""
    from terralite.benchmark.onnx_file import read_onnx_file
    from terralite.compress.quantization import model_sized_crops

    fp32 = tmp_path / "static.onnx"
    assert main(["export", str(tiny_ckpt), "--out", str(fp32), "--size", str(static_size)]) == 0
    assert read_onnx_file(fp32).input_dims == (1, 3, static_size, static_size)
    capsys.readouterr()
    out = tmp_path / "static.int8.onnx"
    assert main(["quantize", str(fp32), "--calib", str(synthetic_root), "--out", str(out), "--calib-images", "2",
                 "--eval-images", "2", *BENCH]) == 0
    assert f"fixed {static_size}x{static_size} input; both models are timed at {static_size} px" in capsys.readouterr().out
    report = json.loads((tmp_path / "static.int8.onnx.json").read_text())
    assert report["agreement"]["pixel_agreement"] >= 0.99 and report["speed"]["input_size"] == static_size
    assert read_onnx_file(out).input_dims == (1, 3, static_size, static_size)
    image, label = OpenEarthMapDataset(synthetic_root, "val")[0]  # (3, 64, 64)
    crops = model_sized_crops(image, label, (static_size, static_size))
    assert len(crops) == crops_per_tile
    assert all(c.shape == (3, static_size, static_size) and lab.shape == real.shape == (static_size, static_size) for c, lab, real in crops)
    assert sum(int(real.sum()) for _, _, real in crops) == 64 * 64  # every pixel once, padding marked
    if static_size > 64:
        (crop, lab, real), = crops
        assert (lab[~real] == IGNORE_INDEX).all() and (crop[:, 64:, :] == 0).all()
