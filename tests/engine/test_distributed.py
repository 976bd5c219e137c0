"""``torchrun --nproc_per_node=2`` on the CPU (gloo): DDP training, sharded evaluation with reduced metrics."""

import json
import shutil

import pytest
import torch

from tiny_model import TINY_CLI
from terralite.checkpoint import load_checkpoint
from terralite.engine.evaluate import dataset_for_checkpoint, evaluate
from terralite.models import build_model


@pytest.fixture
def one_thread():
    """The ranks run with one thread each; evaluate here the same way so the float sums agree bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_ddp_train_and_eval_match_one_process(synthetic_root, tiny_model_name, tmp_path, one_thread, torchrun):
    run = tmp_path / "ddp"
    # validate on the 4-tile train split so each of the 2 ranks evaluates 2 tiles
    done = torchrun([str(TINY_CLI), "train", "--model", tiny_model_name, "--data", str(synthetic_root), "--out", str(run),
                     "--epochs", "2", "--batch-size", "2", "--crop", "32", "--device", "cpu", "--set", "val_split=train"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("epoch 2/2") == 1  # only rank 0 reports and writes
    assert len((run / "log.csv").read_text().splitlines()) == 3
    ckpt = load_checkpoint(run / "last.pt")
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # the unwrapped model is saved

    model = build_model(ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    single = evaluate(model, dataset_for_checkpoint(ckpt, synthetic_root, "train"), "none", "cpu")
    assert ckpt["metrics"]["val_miou"] == pytest.approx(single["miou"], abs=1e-12)

    out = tmp_path / "eval.json"
    done = torchrun([str(TINY_CLI), "eval", str(run / "last.pt"), "--data", str(synthetic_root), "--split", "train",
                     "--json", str(out), "--device", "cpu", "--tta", "hflip"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    both = json.loads(out.read_text())
    alone = evaluate(model, dataset_for_checkpoint(ckpt, synthetic_root, "train"), "hflip", "cpu")
    assert both["processes"] == 2 and both["tiles"] == alone["tiles"] == 4 and both["pixels"] == alone["pixels"]
    assert both["miou"] == pytest.approx(alone["miou"], abs=1e-12)
    assert both["iou"] == pytest.approx([None if v != v else v for v in alone["iou"]], abs=1e-12)
    shutil.rmtree(run)
