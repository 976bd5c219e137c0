"""Every model spec committed under results/ still loads and builds, whatever format version wrote it."""

import json
from pathlib import Path

import pytest
import torch

from terralite.models import build_model, load_spec_file
from terralite.search_spaces.base import SEARCH_SPACES, get_search_space

RESULTS = Path(__file__).resolve().parents[2] / "results"


def _spec_files() -> list[Path]:
    """The JSON files under results/ that hold a model spec (an object with a ``kind``), not reports or tables."""
    found = []
    for path in sorted(RESULTS.rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "kind" in data:
            found.append(path)
    return found


SPEC_FILES = _spec_files()


def test_both_spaces_have_committed_architectures():
    kinds = {json.loads(p.read_text())["kind"] for p in SPEC_FILES}
    assert {"fasterseg", "sparsemask"} <= kinds


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_spec_loads_and_builds(path):
    spec = load_spec_file(path)
    model = build_model(spec).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, spec["in_channels"], 64, 64))
    assert out.shape == (1, spec["num_classes"], 64, 64)
    if spec["kind"] in SEARCH_SPACES:
        space = get_search_space(spec["kind"], in_channels=spec["in_channels"], num_classes=spec["num_classes"])
        arch = space.validate(spec["arch"], str(path))  # migrated in memory to the current format
        assert space.from_json(space.to_json(arch), str(path)) == arch
        assert space.validate(json.loads(space.to_json(arch))) == arch
