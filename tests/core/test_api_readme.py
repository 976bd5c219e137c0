"""The README's "Python API" blocks run as written, on a tiny synthetic dataset; and the API's doctests.

The blocks name real-world paths and sizes; the test runs them in a temporary folder where
``data/OpenEarthMap`` is a 12-tile, 64 px synthetic dataset and ``scene.tif`` one of its images, with the
substitutions of :data:`SUBSTITUTIONS` (each must match, so an edited README cannot silently run something
else). The search-then-retrain block runs first: it writes ``runs/sm/best.pt``, which the others use.
"""

from __future__ import annotations

import doctest
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

#: block index (in README order) → (text as in the README, text run instead)
SUBSTITUTIONS = {
    1: [('preset="oem", budget_gmacs=10', 'preset="tiny", budget_gmacs=10, epochs=1, batch_size=4'),
        ('preset="sparsemask")', 'preset="sparsemask", epochs=1, crop=64, batch_size=4)')],
    2: [("size=1024)", "size=64)"), ("size=1024,", "size=64,"), ("iters=50", "warmup=1, iters=2")],
}


def api_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section, in order."""
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def runnable(index: int, block: str) -> str:
    for written, run in SUBSTITUTIONS.get(index, []):
        assert written in block, f"README Python API block {index} no longer contains {written!r}: update {__file__}"
        block = block.replace(written, run)
    return block


def test_import_is_light_and_lists_the_api():
    code = ("import sys, terralite; assert 'torch' not in sys.modules, 'import terralite loaded torch'; "
            "print(sorted(n for n in terralite.API if callable(getattr(terralite, n))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == sorted(
        ["bench", "build_model", "list_models", "load_model", "load_predictor", "predict_raster", "profile", "search", "train"])
    import terralite

    for name in terralite.API:  # each has a docstring with an example
        assert ">>> " in getattr(terralite, name).__doc__, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        terralite.nope  # noqa: B018


def test_api_doctests():
    from terralite import api

    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_readme_python_api_blocks_run(tmp_path, monkeypatch):
    import torch

    from terralite.data.synthetic import generate_dataset

    blocks = api_blocks()
    assert len(blocks) == 3 and all(b.startswith("import terralite\n") for b in blocks)
    assert len(blocks[0].strip().splitlines()) == 3  # the three-line inference example
    (tmp_path / "data").mkdir()
    root = generate_dataset(tmp_path / "data" / "OpenEarthMap", tiles=12, size=64, seed=0)
    shutil.copy(next(root.glob("*/images/*.tif")), tmp_path / "scene.tif")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        for index in (1, 0, 2):  # search-then-retrain writes the checkpoint the others use
            namespace: dict = {}
            exec(compile(runnable(index, blocks[index]), f"README Python API block {index}", "exec"), namespace)
            if index == 1:
                assert (tmp_path / "runs/sm-search/arch.json").is_file()
                assert namespace["best"] == Path("runs/sm/best.pt") and namespace["best"].is_file()
                assert not namespace["net"].training
            if index == 0:
                import rasterio

                with rasterio.open(tmp_path / "scene_map.tif") as src:
                    assert (src.width, src.height) == (64, 64) and src.read(1).max() <= 8
                assert (tmp_path / "scene_map.png").stat().st_size > 0
            if index == 2:
                rows = namespace["rows"]
                assert [(r["model"], r["tta"]) for r in rows][::2] == [("unet-mobilenetv2", "none"), (rows[2]["model"], "none")]
                assert len(rows) == 4 and all(r["fps"] > 0 and r["input_size"] == 64 for r in rows)
                assert len((tmp_path / "bench_cpu.jsonl").read_text().splitlines()) == 4
    finally:
        torch.set_num_threads(threads)


def test_load_model_refuses_what_is_not_a_checkpoint(tmp_path):
    import terralite
    from terralite.errors import TerraLiteError

    (tmp_path / "spec.json").write_text('{"kind": "baseline", "name": "unet-resnet18"}')
    with pytest.raises(TerraLiteError, match="is a model spec, not a checkpoint"):
        terralite.load_model(tmp_path / "spec.json")
    with pytest.raises(TerraLiteError, match="nope.pt does not exist"):
        terralite.load_model(tmp_path / "nope.pt")
