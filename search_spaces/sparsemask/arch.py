"""The SparseMask architecture JSON: kept connections per decoder stage, human-readable and validated.

An architecture (the ``arch`` field of a model spec) looks like::

    {
      "format_version": 2,
      "encoder": "mobilenet_v2",
      "decoder_channels": 64,
      "final_upsample": "bilinear_x2",
      "stages": {"stage0": ["tap0", "up0"], "stage1": [], ..., "stage8": ["tap8", "up7"]}
    }

``stages`` lists, for each of the 9 decoder stages, the inputs it keeps: ``tapJ`` (encoder tap J, deep →
shallow, J ≤ stage) and ``upK`` (K = 0: global pool of tap 0; K ≥ 1: output of stage K−1; K ≤ stage); see
:mod:`.topology`. ``final_upsample: "bilinear_x2"`` records that the built network ends with a bilinear ×2
from the head's stride 2 to the input size, inside the network and counted in its GMACs.

Format versions: 1 (files written before ``format_version`` existed) had a ``"version": 1`` field and an
optional ``encoder_weights`` path; 2 drops both, because an architecture says what to build, not how to
initialise it (pretrained weights are an argument of :func:`~.network.build`). Version-1 files still load:
the two fields are dropped, so a checkpoint moved to another machine loads without the weights file.

Validation errors name the offending field (``arch.stages.stage3[1]``) and say what is allowed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from terralite.search_spaces.arch_json import FORMAT_VERSION_KEY, parse_json, read_format_version
from terralite.search_spaces.sparsemask.derive import derive_mask
from terralite.search_spaces.sparsemask.topology import (
    DECODER_CHANNELS,
    NUM_STAGES,
    TAP,
    UP,
    candidates,
    input_name,
    num_candidates,
    parse_input_name,
    stage_name,
)
from terralite.errors import TerraLiteError

FORMAT_VERSION = 2
ENCODERS = ("mobilenet_v2",)
FINAL_UPSAMPLE = "bilinear_x2"
_KEYS = (FORMAT_VERSION_KEY, "encoder", "decoder_channels", "final_upsample", "stages")
_V1_ONLY_KEYS = ("version", "encoder_weights")  # fields of format 1 that format 2 dropped


def default_target_ratio(stage: int) -> float:
    """The official per-stage target share of live inputs: ``min(2 / n_l, 0.5)`` (about two inputs)."""
    return min(2.0 / num_candidates(stage), 0.5)


def _migrate_v1(arch: dict, source: str) -> dict:
    """A format-1 architecture as format 2: its ``version`` checked and dropped, ``encoder_weights`` dropped."""
    if arch.get("version", 1) != 1:
        raise TerraLiteError(f"{source}.version: format-1 architectures have version 1, got {arch['version']!r}")
    return {k: v for k, v in arch.items() if k not in _V1_ONLY_KEYS}


def validate_arch(arch: Any, source: str = "arch") -> dict:
    """Check an architecture and return a normalised copy (current format, defaults filled, inputs in canonical order)."""
    if not isinstance(arch, dict):
        raise TerraLiteError(f"{source}: a SparseMask architecture must be a JSON object with a 'stages' field, got {type(arch).__name__}")
    if read_format_version(arch, FORMAT_VERSION, source) == 1:
        arch = _migrate_v1(arch, source)
    unknown = sorted(set(arch) - set(_KEYS))
    if unknown:
        hint = " (pass pretrained encoder weights to build(), not in the architecture)" if "encoder_weights" in unknown else ""
        raise TerraLiteError(f"{source}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(_KEYS)}{hint}")
    encoder = arch.get("encoder", ENCODERS[0])
    if encoder not in ENCODERS:
        raise TerraLiteError(f"{source}.encoder: unknown encoder {encoder!r}; valid: {', '.join(ENCODERS)}")
    channels = arch.get("decoder_channels", DECODER_CHANNELS)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise TerraLiteError(f"{source}.decoder_channels must be a positive integer, got {channels!r}")
    upsample = arch.get("final_upsample", FINAL_UPSAMPLE)
    if upsample != FINAL_UPSAMPLE:
        raise TerraLiteError(f"{source}.final_upsample: only {FINAL_UPSAMPLE!r} (bilinear x2 to the input size inside the network) is supported, got {upsample!r}")
    stages = arch.get("stages")
    if not isinstance(stages, dict):
        raise TerraLiteError(f"{source}.stages must be an object mapping stage0..stage8 to lists of inputs, got {type(stages).__name__}")
    expected = [stage_name(s) for s in range(NUM_STAGES)]
    missing = [name for name in expected if name not in stages]
    extra = sorted(set(stages) - set(expected))
    if missing or extra:
        problem = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
        raise TerraLiteError(f"{source}.stages: {problem}; it must have exactly the keys stage0..stage8 (an empty list for a stage without inputs)")
    mask = np.zeros((NUM_STAGES, NUM_STAGES, 2), dtype=bool)
    for s, name in enumerate(expected):
        inputs = stages[name]
        where = f"{source}.stages.{name}"
        if not isinstance(inputs, list):
            raise TerraLiteError(f"{where} must be a list of input names like \"tap3\" or \"up2\", got {inputs!r}")
        for i, item in enumerate(inputs):
            parsed = parse_input_name(item)
            if parsed is None or parsed[1] > s:
                raise TerraLiteError(f"{where}[{i}]: {item!r} is not an input of {name}; candidates: {', '.join(candidates(s))}")
            if mask[s, parsed[1], parsed[0]]:
                raise TerraLiteError(f"{where}[{i}]: {item!r} is listed twice")
            mask[s, parsed[1], parsed[0]] = True
    check_mask(mask, source)
    return {FORMAT_VERSION_KEY: FORMAT_VERSION, "encoder": encoder, "decoder_channels": channels,
            "final_upsample": FINAL_UPSAMPLE, "stages": mask_to_stages(mask)}


def check_mask(mask: np.ndarray, source: str = "arch") -> None:
    """Structural rules every buildable mask obeys (what :func:`derive_mask` guarantees)."""
    last = stage_name(NUM_STAGES - 1)
    if not mask[NUM_STAGES - 1].any():
        raise TerraLiteError(f"{source}.stages.{last} is empty: the output stage needs at least one input")
    for s in range(NUM_STAGES - 1):
        takers = [stage_name(t) for t in range(NUM_STAGES) if mask[t, s + 1, UP]]
        if not mask[s].any() and takers:
            raise TerraLiteError(f"{source}.stages.{takers[0]} takes 'up{s + 1}' but {stage_name(s)} has no inputs; "
                                 f"remove 'up{s + 1}' or give {stage_name(s)} inputs")
        if mask[s].any() and not takers:
            raise TerraLiteError(f"{source}.stages.{stage_name(s)} has inputs but no later stage takes its output 'up{s + 1}'; "
                                 f"empty {stage_name(s)} or connect 'up{s + 1}'")


def mask_to_stages(mask: np.ndarray) -> dict[str, list[str]]:
    return {stage_name(s): [input_name(kind, idx) for kind in (TAP, UP) for idx in range(s + 1) if mask[s, idx, kind]]
            for s in range(NUM_STAGES)}


def arch_to_mask(arch: dict) -> np.ndarray:
    """Boolean ``[9, 9, 2]`` mask of a (validated) architecture."""
    mask = np.zeros((NUM_STAGES, NUM_STAGES, 2), dtype=bool)
    for s in range(NUM_STAGES):
        for item in arch["stages"][stage_name(s)]:
            kind, idx = parse_input_name(item)
            mask[s, idx, kind] = True
    return mask


def mask_to_arch(mask: np.ndarray, decoder_channels: int = DECODER_CHANNELS) -> dict:
    """The (validated) architecture of a ``[9, 9, 2]`` connectivity mask."""
    return validate_arch({FORMAT_VERSION_KEY: FORMAT_VERSION, "encoder": ENCODERS[0], "decoder_channels": decoder_channels,
                          "final_upsample": FINAL_UPSAMPLE, "stages": mask_to_stages(np.asarray(mask, dtype=bool))})


def num_connections(arch: dict) -> int:
    return sum(len(inputs) for inputs in arch["stages"].values())


def max_arch() -> dict:
    """All 90 connections (the supernet's decoder, without gates): every other architecture is a subset, so
    it has the most parameters and MACs."""
    return validate_arch({"stages": {stage_name(s): candidates(s) for s in range(NUM_STAGES)}})


def min_arch() -> dict:
    """The cheapest network: the stem's tap (``tap8``: 32 channels at stride 2) straight into the output
    stage, the encoder cut after the stem.

    Every architecture holds a path from some tap into the output stage, and no path costs less in
    parameters or MACs: ``tap8`` needs only the stem, and the next cheapest, ``tap7`` (16 channels), needs the
    first bottleneck too, whose expansion, depthwise and projection convs cost more than the 16 channels
    saved in the decoder conv; a path through another stage adds a 64-channel conv.
    """
    stages = {stage_name(s): [] for s in range(NUM_STAGES)}
    stages[stage_name(NUM_STAGES - 1)] = ["tap8"]
    return validate_arch({"stages": stages})


def sample_arch(rng: np.random.Generator | int | None = None) -> dict:
    """A random architecture: each candidate of stage l kept with the target probability ``α_l``, then the
    derivation clean-up rules (so it is what a search could produce). The output stage always keeps at least
    one tap, so that it cannot end up fed only by stages the clean-up empties."""
    rng = np.random.default_rng(rng)
    gates = np.zeros((NUM_STAGES, NUM_STAGES, 2))
    for s in range(NUM_STAGES):
        gates[s, : s + 1] = (rng.random((s + 1, 2)) < default_target_ratio(s)) * 2.0
    last = NUM_STAGES - 1
    if not gates[last, :, TAP].any():
        gates[last, rng.integers(NUM_STAGES), TAP] = 2.0
    return mask_to_arch(derive_mask(gates))


def make_spec(arch: dict, in_channels: int = 3, num_classes: int = 8, label: str | None = None, **extra: Any) -> dict:
    """A full model spec around an architecture (what ``RUN/arch.json`` holds)."""
    spec = {"kind": "sparsemask"}
    if label:
        spec["label"] = label
    spec.update({"in_channels": in_channels, "num_classes": num_classes, "arch": validate_arch(arch)})
    spec.update(extra)
    return spec


def _render(value: Any, indent: int = 0) -> str:
    """Indented JSON with each list of scalars on one line (one line per stage)."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(str(k))}: {_render(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(pad + _render(v, indent + 1) for v in value) + "\n" + "  " * indent + "]"
    return json.dumps(value)


def spec_to_json(spec: dict) -> str:
    """JSON text of a spec, indented, with each list of scalars on one line (one line per stage)."""
    return _render(spec) + "\n"


def dumps_arch(arch: dict) -> str:
    """JSON text of an architecture (validated, so in the current format), one line per stage."""
    return _render(validate_arch(arch)) + "\n"


def loads_arch(text: str, source: str = "sparsemask arch") -> dict:
    """Parse and validate an architecture from JSON text; errors name ``source``."""
    return validate_arch(parse_json(text, source), source)
