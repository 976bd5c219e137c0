import importlib.util
import json
import sys

import pytest

from terralite.benchmark.bench import benchmark_model, benchmark_rows
from terralite.benchmark.rows import ROW_FIELDS, conditions_file_name, read_rows, write_rows
from terralite.cli import main
from terralite.errors import TerraLiteError


def test_rows_have_every_field(tiny, tiny_spec):
    rows = benchmark_model(tiny, tiny_spec, size=32, runtime="torch", tta=("none", "hflip", "hflip-batched"), warmup=1, iters=2)
    assert [r["tta"] for r in rows] == ["none", "hflip", "hflip-batched"]
    for row in rows:
        assert tuple(row) == ROW_FIELDS
        assert row["model"] == "tiny" and row["runtime"] == "torch" and row["precision"] == "fp32"
        assert row["input_size"] == 32 and row["batch"] == 1 and row["device"].startswith("cpu")
        assert row["params_m"] == pytest.approx(256e-6) and row["gmacs"] == pytest.approx(1024 * 248 / 1e9)
        assert row["flop_counter"] == "fvcore" and row["miou"] is None
        assert row["fps"] == pytest.approx(1000 / row["latency_ms_median"], rel=1e-3)  # FPS from the median
        assert row["latency_ms_p10"] <= row["latency_ms_median"] <= row["latency_ms_p90"]
        assert row["warmup"] == 1 and row["iters"] == 2 and row["loadavg"] is not None and row["cpus"] >= 1
        if sys.platform.startswith("linux"):
            assert row["other_load"] is not None and row["other_load"] >= 0
        assert "torch" in row["versions"] and row["date"].endswith("+00:00")


def test_write_rows_appends_atomically(tmp_path, tiny, tiny_spec):
    rows = benchmark_model(tiny, tiny_spec, size=32, warmup=0, iters=1)
    path = tmp_path / "rows.jsonl"
    write_rows(path, rows)
    write_rows(path, rows)
    assert len(read_rows(path)) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
    with pytest.raises(TerraLiteError, match="fields .*fps.* are missing"):
        write_rows(path, [{"model": "x"}])
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(TerraLiteError, match="bad.jsonl:1 is not valid JSON"):
        read_rows(tmp_path / "bad.jsonl")


def test_conditions_file_name():
    assert conditions_file_name("cpu", "onnxruntime", "fp32", 1024) == "bench_cpu_onnxruntime_fp32_1024.jsonl"
    assert conditions_file_name("cuda:0", "torch+compile", "fp16", 512, 2) == "bench_cuda-0_torch+compile_fp16_512_b2.jsonl"


def test_bench_cli_writes_to_a_folder(tmp_path, capsys):
    out = tmp_path / "boards"
    code = main(["bench", "unet-resnet18", "--size", "64", "--runtime", "torch", "--tta", "hflip-batched", "--warmup", "0", "--iters", "1", "--out", f"{out}/"])
    assert code == 0
    rows = read_rows(out / "bench_cpu_torch_fp32_64.jsonl")
    assert [(r["model"], r["tta"]) for r in rows] == [("unet-resnet18", "hflip-batched")]
    assert "unet-resnet18" in capsys.readouterr().out


def test_bench_cli_takes_the_core_tta_names_and_the_old_batch_spelling(tmp_path):
    out = tmp_path / "rows.jsonl"
    code = main(["bench", "unet-resnet18", "--size", "64", "--tta", "none,flips", "--batch", "2", "--warmup", "0",
                 "--iters", "1", "--out", str(out)])
    assert code == 0
    assert [(r["tta"], r["batch"]) for r in read_rows(out)] == [("none", 2), ("flips", 2)]


def test_unknown_bench_tta_lists_the_modes(tmp_path, capsys):
    assert main(["bench", "unet-resnet18", "--size", "64", "--tta", "vflip", "--out", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert all(mode in err for mode in ("none", "hflip", "flips", "d4", "hflip-batched"))
    assert list(tmp_path.iterdir()) == []  # refused before any file was written


def test_bench_cli_errors(tmp_path, capsys):
    assert main(["bench", "unet-resnet18", "--size", "64", "--data", str(tmp_path), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "--data needs a checkpoint" in capsys.readouterr().err
    assert main(["bench", "unet-resnet18", "--size", "64", "--out", str(tmp_path / "missing" / "r.jsonl")]) == 2
    assert "output folder" in capsys.readouterr().err
    assert main(["bench", "unet-resnet18", "--size", "64", "--runtime", "onnxruntime", "--compile", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "torch options" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_bench_cli_explains_missing_tensorrt_before_profiling(tmp_path, capsys, monkeypatch):
    import terralite.benchmark.bench

    monkeypatch.setattr(terralite.benchmark.bench, "profile_model", None)  # reaching the profiler would raise TypeError
    code = main(["bench", "unet-resnet18", "--runtime", "tensorrt", "--device", "cpu", "--out", str(tmp_path / "r.jsonl")])
    assert code == 2 and "TensorRT is not installed" in capsys.readouterr().err


def test_bench_evaluates_miou_of_a_checkpoint(tmp_path):
    from terralite.checkpoint import save_checkpoint
    from terralite.data.synthetic import generate_dataset
    from terralite.models import build_model

    root = generate_dataset(tmp_path / "data", tiles=8, size=64, seed=0)
    spec = {"kind": "baseline", "name": "unet-resnet18", "in_channels": 3, "num_classes": 8}
    ckpt = save_checkpoint(tmp_path / "m.pt", spec, build_model(spec).state_dict(),
                           input={"bands": None, "mean": [128.0] * 3, "std": [64.0] * 3})
    rows = benchmark_rows(str(ckpt), size=64, data=root, split="test", tta=("hflip-batched",), warmup=0, iters=1)
    assert len(rows) == 1 and 0 <= rows[0]["miou"] <= 1  # evaluated as hflip: same logits
    json.dumps(rows)  # rows are plain JSON
