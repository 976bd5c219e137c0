"""SparseMask derivation rules on crafted gate patterns, and the architecture JSON."""

import json

import numpy as np
import pytest

from terralite.search_spaces.sparsemask.arch import (
    arch_to_mask,
    check_mask,
    dumps_arch,
    loads_arch,
    make_spec,
    mask_to_arch,
    max_arch,
    min_arch,
    sample_arch,
    validate_arch,
)
from terralite.search_spaces.sparsemask.derive import (
    clean_up,
    derive_mask,
    drop_subset_stages,
    drop_unused_stages,
    merge_duplicate_stages,
    threshold,
)
from terralite.search_spaces.sparsemask.topology import TAP, UP, parse_input_name
from terralite.errors import TerraLiteError
from terralite.models import load_spec_file


def gates_for(connections: dict[int, list[str]], value: float = 1.0) -> np.ndarray:
    gates = np.zeros((9, 9, 2))
    for stage, names in connections.items():
        for name in names:
            kind, idx = parse_input_name(name)
            gates[stage, idx, kind] = value
    return gates


def stages_of(mask) -> dict:
    """Non-empty stages of a mask as {stage: [names]}."""
    arch_stages = {}
    for s in range(9):
        names = [f"{'tap' if k == TAP else 'up'}{i}" for k in (TAP, UP) for i in range(9) if mask[s, i, k]]
        if names:
            arch_stages[s] = names
    return arch_stages


def test_threshold_is_on_half_the_clamped_gate():
    gates = gates_for({8: ["tap8"]})
    gates[8, 0, TAP] = 0.002   # w/2 = 1e-3: not above the threshold
    gates[8, 1, TAP] = 0.0021  # kept
    gates[8, 2, TAP] = -0.5    # |w| as in the official prune
    gates[2, 5, TAP] = 1.0     # not a candidate of stage 2 (tap5 is shallower): ignored
    mask = threshold(gates)
    assert stages_of(mask) == {8: ["tap1", "tap2", "tap8"]}


def test_unused_stages_are_dropped():
    # stage 3 feeds nobody; stage 2 feeds stage 5, which feeds stage 8: both kept
    mask = threshold(gates_for({3: ["tap3"], 2: ["tap0"], 5: ["up3"], 8: ["tap8", "up6"]}))
    assert stages_of(drop_unused_stages(mask)) == {2: ["tap0"], 5: ["up3"], 8: ["tap8", "up6"]}


def test_stage_without_inputs_is_disconnected():
    # stage 4 has no live input but stage 8 takes its output (up5): that link goes
    mask = threshold(gates_for({8: ["tap8", "up5"]}))
    assert stages_of(merge_duplicate_stages(mask)) == {8: ["tap8"]}


def test_duplicate_stage_merged_into_earlier():
    # stages 2 and 4 take the same inputs; stage 8 takes both: stage 4 goes, its consumer takes up3
    mask = threshold(gates_for({2: ["tap0", "up0"], 4: ["tap0", "up0"], 8: ["tap8", "up5"]}))
    assert stages_of(merge_duplicate_stages(mask)) == {2: ["tap0", "up0"], 8: ["tap8", "up3"]}


def test_subset_stage_removed():
    # stage 2's inputs ⊂ stage 5's, and stage 2's only consumer (8) also takes stage 5: stage 2 goes
    mask = threshold(gates_for({2: ["tap0"], 5: ["tap0", "tap5"], 8: ["tap8", "up3", "up6"]}))
    assert stages_of(drop_subset_stages(mask)) == {5: ["tap0", "tap5"], 8: ["tap8", "up6"]}
    # not when the later stage itself consumes the earlier one
    mask = threshold(gates_for({2: ["tap0"], 5: ["tap0", "up3"], 8: ["tap8", "up3", "up6"]}))
    assert stages_of(drop_subset_stages(mask)) == stages_of(mask)


def test_derive_collapsed_search_raises():
    with pytest.raises(TerraLiteError, match="stage8.*collapsed"):
        derive_mask(gates_for({3: ["tap0"]}))


def test_derive_results_always_valid():
    rng = np.random.default_rng(0)
    for _ in range(300):
        gates = rng.random((9, 9, 2)) * 2 * (rng.random((9, 9, 2)) < rng.random())
        try:
            mask = derive_mask(gates)
        except TerraLiteError:
            continue
        check_mask(mask)
        assert np.array_equal(clean_up(mask), mask)  # the rules are idempotent on their result


def test_json_round_trip(tmp_path):
    for arch in (max_arch(), min_arch(), sample_arch(7)):
        spec = make_spec(arch, in_channels=4, num_classes=6, label="t")
        path = tmp_path / "arch.json"
        path.write_text(json.dumps(spec, indent=2))
        loaded = load_spec_file(path)
        assert validate_arch(loaded["arch"]) == arch
        assert np.array_equal(arch_to_mask(mask_to_arch(arch_to_mask(arch))), arch_to_mask(arch))


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("stages"), "arch.stages must be an object"),
    (lambda a: a["stages"].pop("stage3"), "arch.stages: missing stage3"),
    (lambda a: a["stages"].update(stage9=[]), "arch.stages: unknown stage9"),
    (lambda a: a["stages"].update(stage2=["tap5"]), r"arch.stages.stage2\[0\]: 'tap5' is not an input of stage2; candidates: tap0, tap1, tap2, up0"),
    (lambda a: a["stages"].update(stage8=["tap8", "conv"]), r"arch.stages.stage8\[1\]: 'conv' is not an input"),
    (lambda a: a["stages"].update(stage8=["tap8", "tap8"]), r"stage8\[1\]: 'tap8' is listed twice"),
    (lambda a: a["stages"].update(stage8="tap8"), "arch.stages.stage8 must be a list"),
    (lambda a: a["stages"].update(stage8=[]), "arch.stages.stage8 is empty"),
    (lambda a: a["stages"].update(stage8=["up4"]), "stage8 takes 'up4' but stage3 has no inputs"),
    (lambda a: a["stages"].update(stage2=["tap0"]), "stage2 has inputs but no later stage takes its output 'up3'"),
    (lambda a: a.update(decoder_channels=0), "arch.decoder_channels must be a positive integer"),
    (lambda a: a.update(final_upsample="none"), "arch.final_upsample: only 'bilinear_x2'"),
    (lambda a: a.update(encoder="resnet18"), "arch.encoder: unknown encoder 'resnet18'"),
    (lambda a: a.update(gates=[1, 2]), "arch: unknown field.*gates"),
    (lambda a: a.update(format_version=3), "arch: format_version 3 is newer than this TerraLite reads"),
    (lambda a: a.update(format_version="2"), "arch: field 'format_version' must be a positive integer"),
    (lambda a: a.update(encoder_weights="w.pth"), r"unknown field\(s\) encoder_weights.*pass pretrained encoder weights to build"),
    (lambda a: (a.pop("format_version"), a.update(version=2)), "arch.version: format-1 architectures have version 1"),
])
def test_malformed_arch_rejected(change, message):
    arch = min_arch()
    change(arch)
    with pytest.raises(TerraLiteError, match=message):
        validate_arch(arch)


def test_format_1_migrates():
    """Files written before format_version: their ``version`` and ``encoder_weights`` are dropped on load."""
    current = min_arch()
    old = {k: v for k, v in current.items() if k != "format_version"}
    old.update(version=1, encoder_weights="/elsewhere/mobilenet_v2.pth")
    assert validate_arch(old) == current
    assert validate_arch({"stages": current["stages"]}) == current  # every field but stages has a default
    assert current["format_version"] == 2 and "encoder_weights" not in mask_to_arch(arch_to_mask(current))


def test_loads_arch_names_the_source():
    text = dumps_arch(max_arch())
    assert loads_arch(text) == max_arch() and json.loads(text) == max_arch()
    with pytest.raises(TerraLiteError, match="runs/a.json is not valid JSON"):
        loads_arch("{", source="runs/a.json")
    newer = json.dumps({**min_arch(), "format_version": 7})
    with pytest.raises(TerraLiteError, match="runs/a.json: format_version 7 is newer"):
        loads_arch(newer, source="runs/a.json")


def test_not_an_object_rejected():
    with pytest.raises(TerraLiteError, match="must be a JSON object"):
        validate_arch(["stage8"])
