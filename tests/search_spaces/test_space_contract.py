"""Every registered search space keeps the SearchSpace contract (search_spaces/base.py), on a small instance."""

import json

import numpy as np
import pytest
import torch

from terralite.benchmark.profiler import count_params, fvcore_macs
from terralite.errors import TerraLiteError
from terralite.search_spaces.base import SEARCH_SPACES, SearchSpace, get_search_space

# A small instance of each space; a newly registered space must add one here.
SMALL = {
    "fasterseg": {"cfg": "tiny", "in_channels": 3, "num_classes": 8},
    "sparsemask": {},
}
SIZE = 64  # px: the counts and the ONNX check run at 64x64


@pytest.fixture(params=SEARCH_SPACES.names())
def space(request) -> SearchSpace:
    assert request.param in SMALL, f"add a small instance of search space {request.param!r} to SMALL"
    return get_search_space(request.param, **SMALL[request.param])


def _archs(space: SearchSpace) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    return {"min": space.min_arch(), "max": space.max_arch(), **{f"sample{i}": space.sample(rng) for i in range(3)}}


def test_registry_names_and_errors():
    assert set(SEARCH_SPACES.names()) >= {"fasterseg", "sparsemask"}
    for name in SEARCH_SPACES.names():
        assert SEARCH_SPACES.get(name).name == name
    with pytest.raises(TerraLiteError, match="unknown search space 'nope'; valid names: fasterseg, sparsemask"):
        get_search_space("nope")


def test_choices_and_sampling(space):
    assert isinstance(space, SearchSpace)
    assert json.loads(json.dumps(space.choices)) == space.choices
    assert space.sample(np.random.default_rng(5)) == space.sample(np.random.default_rng(5))


def test_json_round_trip(space):
    for label, arch in _archs(space).items():
        text = space.to_json(arch)
        assert isinstance(json.loads(text)["format_version"], int), label
        assert space.from_json(text) == arch, label


def test_cost_bounded_by_extremes(space):
    costs = {label: space.cost(arch) for label, arch in _archs(space).items()}
    for label, cost in costs.items():
        for key in ("params", "macs"):
            assert costs["min"][key] <= cost[key] <= costs["max"][key], (label, key)


def test_cost_equals_profiler(space):
    x = torch.zeros(1, space.in_channels, SIZE, SIZE)
    for label, arch in list(_archs(space).items())[:3]:  # min, max, a sample: each trace takes a while
        model = space.build(arch).eval()
        with torch.no_grad():
            macs = fvcore_macs(model, x)[0]
        assert space.cost(arch, SIZE) == {"params": count_params(model, space.in_channels, SIZE), "macs": macs}, label


def test_derive_from_fresh_supernet_builds(space):
    arch = space.derive(space.supernet())
    assert space.validate(arch) == arch
    with torch.no_grad():
        out = space.build(arch).eval()(torch.randn(1, space.in_channels, SIZE, SIZE))
    assert out.shape == (1, space.num_classes, SIZE, SIZE)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_onnx_export_matches_pytorch(space, tmp_path):
    pytest.importorskip("onnxruntime")
    from terralite.benchmark.export import DEFAULT_OPSET, verify_onnx

    model = space.build(space.sample(np.random.default_rng(1))).eval()
    x = torch.randn(1, space.in_channels, SIZE, SIZE)
    path = tmp_path / f"{space.name}.onnx"
    # the TorchScript exporter at the suite's opset: a few seconds, where export_onnx's torch.export-based
    # one takes ten (the per-space export tests run that one)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), opset_version=DEFAULT_OPSET, dynamo=False)
    assert verify_onnx(model, path, x) < 1e-4
