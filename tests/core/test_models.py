import json

import pytest

from terralite.errors import TerraLiteError
from terralite.models import build_model, resolve_model_reference, spec_hash, validate_spec, with_io


def test_spec_hash_is_order_independent():
    a = {"kind": "baseline", "name": "n", "num_classes": 8}
    b = {"num_classes": 8, "name": "n", "kind": "baseline"}
    assert spec_hash(a) == spec_hash(b) and len(spec_hash(a)) == 12
    assert spec_hash(a) != spec_hash(with_io(a, in_channels=4))


@pytest.mark.parametrize(
    "spec, message",
    [
        ([1, 2], "must be a JSON object"),
        ({"name": "x"}, "'kind' is missing"),
        ({"kind": "teleporter"}, "unknown model kind 'teleporter'"),
        ({"kind": "baseline", "num_classes": 0}, "'num_classes' must be a positive integer"),
    ],
)
def test_invalid_specs(spec, message):
    with pytest.raises(TerraLiteError, match=message):
        validate_spec(spec)


def test_bad_spec_file_names_the_file(tmp_path):
    bad = tmp_path / "arch.json"
    bad.write_text("{not json")
    with pytest.raises(TerraLiteError, match="arch.json is not valid JSON"):
        resolve_model_reference(str(bad))


def test_spec_file_gets_io_defaults(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"kind": "baseline", "name": "unet-resnet18"}))
    spec, ckpt = resolve_model_reference(str(path), in_channels=5)
    assert ckpt is None
    assert spec == {"kind": "baseline", "name": "unet-resnet18", "in_channels": 5, "num_classes": 8}


def test_build_model_rejects_unknown_kind():
    with pytest.raises(TerraLiteError, match="unknown model kind"):
        build_model({"kind": "nope"})
