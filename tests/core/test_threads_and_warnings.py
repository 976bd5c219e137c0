"""``--threads`` caps torch's CPU threads; the ``terralite`` command hides third-party warnings, the library does not."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from terralite.cli import build_parser, main

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_predict import NORM3, random_image, write_raster  # noqa: E402


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("command", ["train", "bench", "predict", "demo"])
def test_every_cpu_job_takes_threads(command):
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices[command]._actions}
    assert "threads" in actions and actions["threads"].help


def test_train_threads_sets_torch_threads(synthetic_root, tmp_path, restore_threads, capsys):
    torch.set_num_threads(2)
    assert main(["train", "--model", "unet-resnet18", "--data", str(synthetic_root), "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--batch-size", "2", "--crop", "32", "--device", "cpu", "--set", "steps_per_epoch=1", "--set", "val_split=null",
                 "--threads", "1"]) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == 1
    assert main(["train", "--model", "unet-resnet18", "--data", str(synthetic_root), "--out", str(tmp_path / "r2"),
                 "--threads", "0"]) == 2
    assert "--threads must be at least 1, got 0" in capsys.readouterr().err


def test_predict_threads_sets_torch_and_onnxruntime_threads(tmp_path, restore_threads, capsys):
    from terralite.checkpoint import save_checkpoint
    from terralite.models import build_model
    from terralite.predict import _load_onnxruntime

    spec = {"kind": "baseline", "name": "lraspp-mobilenetv3", "in_channels": 3, "num_classes": 8}
    model = build_model(spec)
    save_checkpoint(tmp_path / "m.pt", spec, model.state_dict(), input=NORM3)
    src = write_raster(tmp_path / "in.tif", random_image(64, 64))
    torch.set_num_threads(2)
    assert main(["predict", str(tmp_path / "m.pt"), str(src), "--out", str(tmp_path / "map.tif"), "--tile", "64", "--quiet",
                 "--threads", "1"]) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == 1
    assert "peak RSS" in capsys.readouterr().out
    # ONNX Runtime: the session is built with the intra-op thread cap
    import onnxruntime as ort

    torch.onnx.export(model.eval(), torch.zeros(1, 3, 64, 64), tmp_path / "m.onnx", dynamo=False)
    seen = {}
    original = ort.InferenceSession

    class Recording(original):
        def __init__(self, path, options=None, **kwargs):
            seen["threads"] = options.intra_op_num_threads
            super().__init__(path, options, **kwargs)

    ort.InferenceSession = Recording
    try:
        _load_onnxruntime(tmp_path / "m.onnx", "cpu", "none", NORM3, threads=1)
    finally:
        ort.InferenceSession = original
    assert seen["threads"] == 1


def test_demo_passes_threads_to_its_commands():
    from terralite.demo import FAST, DemoContext

    assert DemoContext(out=Path("x"), sizes=FAST, device="cpu", threads=2).threads_flags() == ["--threads", 2]
    assert DemoContext(out=Path("x"), sizes=FAST, device="cpu").threads_flags() == []
    assert build_parser().parse_args(["demo", "--threads", "2"]).threads == 2


def test_cli_output_has_no_library_warnings_and_the_library_keeps_them():
    out = subprocess.run([sys.executable, "-m", "terralite", "profile", "lraspp-mobilenetv3", "--size", "64"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr and "warn" not in out.stderr.lower(), out.stderr
    before = list(warnings.filters)
    import terralite.cli  # noqa: F401  importing the CLI (or the library) changes no warning filter

    assert main(["models", "--json"]) == 0
    assert warnings.filters == before
