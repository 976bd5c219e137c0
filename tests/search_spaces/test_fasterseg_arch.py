"""FasterSeg architecture JSON: exact round trips and malformed files rejected naming the field."""

import copy
import json

import numpy as np
import pytest

from terralite.search_spaces.fasterseg.arch import arch_spec, dumps_arch, dumps_spec, load_arch, loads_arch, validate_arch
from terralite.search_spaces.fasterseg.space import FasterSegSearchSpace
from terralite.errors import TerraLiteError
from terralite.models import load_spec_file


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_exact(seed, tmp_path):
    space = FasterSegSearchSpace.from_preset("oem")
    arch = space.sample(np.random.default_rng(seed))
    text = dumps_arch(arch)
    assert loads_arch(text) == arch
    assert dumps_arch(loads_arch(text)) == text
    assert json.loads(text) == arch  # plain JSON, readable by anything
    spec = arch_spec(arch, 3, 8, "student")
    path = tmp_path / "student.json"
    path.write_text(dumps_spec(spec))
    assert json.loads(path.read_text()) == spec
    assert load_spec_file(path) == spec
    assert load_arch(path) == arch


def _good():
    return FasterSegSearchSpace.from_preset("tiny").sample(np.random.default_rng(0))


@pytest.mark.parametrize("mutate, field, words", [
    (lambda a: a.pop("F"), "F", "is missing"),
    (lambda a: a.update(colour="red"), "colour", "not a known field"),
    (lambda a: a.update(width_base="12"), "width_base", "integer"),
    (lambda a: a.update(head_width=13), "head_width", "1..12"),
    (lambda a: a.update(branches=[]), "branches", "non-empty"),
    (lambda a: a["branches"][1].update(scale=32), "branches[1].scale", "repeats"),
    (lambda a: a["branches"][0].update(scale=64), "branches[0].scale", "one of"),
    (lambda a: a["branches"][0]["cells"][0].update(op="skip"), "branches[0].cells[0].op", "must be one of conv"),
    (lambda a: a["branches"][0]["cells"][0].pop("width"), "branches[0].cells[0].width", "is missing"),
    (lambda a: a["branches"][0]["cells"][0].update(scale=16), "branches[0].cells[0].scale", "must be 8"),
    (lambda a: a["branches"][0]["cells"][0].update(down="yes"), "branches[0].cells[0].down", "true or false"),
    (lambda a: a["branches"][0]["cells"][-1].update(width=4), "branches[0].cells[5].width", "head_width"),
    (lambda a: a["branches"][1].update(scale=8), "branches[1].scale", "cells end at scale 16"),
])
def test_malformed_rejected_naming_field(mutate, field, words):
    arch = copy.deepcopy(_good())
    mutate(arch)
    with pytest.raises(TerraLiteError) as info:
        validate_arch(arch)
    assert f"field '{field}'" in str(info.value) and words in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(TerraLiteError, match="does not exist"):
        load_arch(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"F\": 12,")
    with pytest.raises(TerraLiteError, match="not valid JSON"):
        load_arch(bad)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"kind": "fasterseg", "arch": {"F": 1}}))
    with pytest.raises(TerraLiteError, match=r"spec.json \(field 'arch'\): field 'width_base' is missing"):
        load_arch(spec)


def test_format_version(tmp_path):
    arch = _good()
    assert arch["format_version"] == 1 and dumps_arch(arch).startswith('{\n  "format_version": 1,\n')
    # written before the field existed: still version 1
    old = {k: v for k, v in arch.items() if k != "format_version"}
    assert validate_arch(old) == arch and loads_arch(json.dumps(old)) == arch
    newer = tmp_path / "student.json"
    newer.write_text(json.dumps({"kind": "fasterseg", "arch": {**arch, "format_version": 2}}))
    with pytest.raises(TerraLiteError, match=r"student.json \(field 'arch'\): format_version 2 is newer than this TerraLite reads \(1..1\)"):
        load_arch(newer)
    with pytest.raises(TerraLiteError, match="'format_version' must be a positive integer"):
        validate_arch({**arch, "format_version": "1"})
