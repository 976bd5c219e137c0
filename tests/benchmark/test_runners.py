import importlib.util
import json

import pytest
import torch

from terralite.benchmark.export import cached_export
from terralite.benchmark.rows import read_rows
from terralite.benchmark.runners import RUNNERS, LatencyStats, build_runner
from terralite.cli import main
from terralite.errors import TerraLiteError
from terralite.tta import tta_forward

MODES = ("none", "hflip", "hflip-batched", "flips", "d4")  # the core's TTA modes and the bench's batched hflip


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_runner_logits_and_stats(tiny, runtime):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = {mode: tta_forward(tiny, x, mode) for mode in ("none", "hflip", "flips", "d4")}
    expected["hflip-batched"] = expected["hflip"]
    for mode in MODES:
        runner = build_runner(runtime, tiny, size=32, in_channels=3, tta=mode)
        assert runner.network_batch == (2 if mode == "hflip-batched" else 1)
        with torch.no_grad():
            torch.testing.assert_close(runner(x), expected[mode], atol=1e-5, rtol=1e-5)
        stats = runner.measure(warmup=1, iters=4)
        assert isinstance(stats, LatencyStats) and stats.iters == 4
        assert 0 < stats.latency_ms_min <= stats.latency_ms_median <= stats.latency_ms_p90
        assert stats.fps == pytest.approx(1000 / stats.latency_ms_median)
        assert stats.peak_mem_mb >= 0 and stats.peak_mem_method.startswith("cpu")


def test_torch_runner_options_and_label(tiny):
    runner = build_runner("torch", tiny, size=32, in_channels=3, precision="bf16", channels_last=True)
    assert runner.label == "torch+channels_last"
    assert runner.make_input().dtype == torch.bfloat16
    assert runner(runner.make_input()).shape == (1, 4, 32, 32)
    assert next(tiny.parameters()).dtype == torch.float32  # the caller's model is not cast
    with pytest.raises(TerraLiteError, match="CUDA graphs need --device cuda"):
        build_runner("torch", tiny, size=32, in_channels=3, cuda_graphs=True)


def test_runner_errors(tiny):
    with pytest.raises(TerraLiteError, match="unknown runtime 'tvm'; valid names: onnxruntime, tensorrt, torch"):
        build_runner("tvm", tiny, size=32, in_channels=3)
    with pytest.raises(TerraLiteError, match="'onnxruntime' supports precision fp32, int8, not 'fp16'"):
        build_runner("onnxruntime", tiny, size=32, in_channels=3, precision="fp16")
    with pytest.raises(TerraLiteError, match="int8 on onnxruntime needs a quantised ONNX file"):
        build_runner("onnxruntime", tiny, size=32, in_channels=3, precision="int8")
    with pytest.raises(TerraLiteError, match="unknown TTA mode 'vflip'"):
        build_runner("torch", tiny, size=32, in_channels=3, tta="vflip")
    with pytest.raises(TerraLiteError, match="warmup >= 0 and iters >= 1"):
        build_runner("torch", tiny, size=32, in_channels=3).measure(0, 0)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_missing_is_explained(tiny):
    assert "tensorrt" in RUNNERS
    with pytest.raises(TerraLiteError, match=r"TensorRT is not installed.*pip install terralite\[tensorrt\]"):
        build_runner("tensorrt", tiny, size=32, in_channels=3, device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("runtime,options", [("torch", {}), ("torch", {"cuda_graphs": True}), ("torch", {"compile": True}), ("onnxruntime", {}), ("tensorrt", {})])
def test_gpu_runners(tiny, runtime, options):
    if runtime == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT is not installed")
    x = torch.randn(1, 3, 32, 32, device="cuda")
    expected = tta_forward(tiny.cuda(), x, "hflip")
    for mode in ("hflip", "hflip-batched"):
        runner = build_runner(runtime, tiny, size=32, in_channels=3, device="cuda", tta=mode, **options)
        with torch.no_grad():
            torch.testing.assert_close(runner(x), expected, atol=1e-4, rtol=1e-4)
        assert runner.measure(2, 5).peak_mem_method.startswith("cuda")


def test_onnxruntime_runners_share_exports(tiny, tmp_path):
    for mode in MODES:
        build_runner("onnxruntime", tiny, size=32, in_channels=3, tta=mode, onnx_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_1x3x32x32.onnx", "model_2x3x32x32.onnx"]


def test_onnxruntime_times_an_existing_onnx_file(tiny, tmp_path, capsys):
    path = cached_export(tiny, tmp_path, 32, 3, 1)  # static 1x3x32x32, no TerraLite metadata
    x = torch.randn(1, 3, 32, 32)
    runner = build_runner("onnxruntime", None, onnx_path=path, size=32, in_channels=3, tta="hflip")
    with torch.no_grad():
        torch.testing.assert_close(runner(x), tta_forward(tiny, x, "hflip"), atol=1e-5, rtol=1e-5)
    assert runner.measure(0, 2).iters == 2

    with pytest.raises(TerraLiteError, match="fixed input height of 32, but the measurement needs 64; pass --size 32"):
        build_runner("onnxruntime", None, onnx_path=path, size=64, in_channels=3)
    with pytest.raises(TerraLiteError, match="fixed input batch of 1, but the measurement needs 2"):
        build_runner("onnxruntime", None, onnx_path=path, size=32, in_channels=3, tta="hflip-batched")
    with pytest.raises(TerraLiteError, match="holds an fp32 graph; time it with precision fp32, not int8"):
        build_runner("onnxruntime", None, onnx_path=path, size=32, in_channels=3, precision="int8")
    with pytest.raises(TerraLiteError, match="'torch' times a PyTorch network"):
        build_runner("torch", None, size=32, in_channels=3)

    out = tmp_path / "boards"
    assert main(["bench", str(path), "--runtime", "onnxruntime", "--size", "32", "--warmup", "0", "--iters", "1", "--out", f"{out}/"]) == 0
    assert "GMACs left empty" in capsys.readouterr().err
    (row,) = read_rows(out / "bench_cpu_onnxruntime_fp32_32.jsonl")
    assert (row["model"], row["precision"], row["runtime"], row["gmacs"], row["flop_counter"]) == ("model_1x3x32x32", "fp32", "onnxruntime", None, None)
    assert row["params_m"] * 1e6 == pytest.approx(256)  # the initializers: conv1 weight and bias, conv2 weight
    assert len(row["spec_hash"]) == 12
    json.dumps(row)
    assert main(["bench", str(path), "--size", "32", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "time it with --runtime onnxruntime" in capsys.readouterr().err


CALLS: list[str] = []  # module level: the runner works on a copy of the network


class _Sleeper(torch.nn.Module):
    """A network whose call takes a known time and records the order of the calls."""

    def __init__(self, name, seconds):
        super().__init__()
        self.name, self.seconds = name, seconds

    def forward(self, x):
        import time

        CALLS.append(self.name)
        time.sleep(self.seconds)
        return x[:, :2]


def test_side_by_side_timing_alternates_the_runners_and_keeps_their_ratio():
    from terralite.benchmark.runners.base import measure_side_by_side

    CALLS.clear()
    fast, slow = (build_runner("torch", _Sleeper(n, s), size=32, in_channels=3) for n, s in (("a", 0.004), ("b", 0.012)))
    stats = measure_side_by_side([fast, slow], warmup=2, iters=12)
    # each warm-up alone, then blocks of 5 calls in turn (the last block shorter)
    assert CALLS == ["a"] * 2 + ["b"] * 2 + (["a"] * 5 + ["b"] * 5) * 2 + ["a"] * 2 + ["b"] * 2
    assert [s.iters for s in stats] == [12, 12] and [s.warmup for s in stats] == [2, 2]
    assert 2.0 < stats[1].latency_ms_median / stats[0].latency_ms_median < 4.0
    with pytest.raises(TerraLiteError, match="need warmup >= 0 and iters >= 1"):
        measure_side_by_side([fast], warmup=0, iters=0)
