"""A space's architectures as a tuner's parameters: named categorical or uniform variables, and the decoder
that turns one set of values into an architecture through the space's own derivation rules.

NNI's tuners (and any other hyper-parameter optimiser) see an architecture as a flat dict of variables;
:func:`to_nni_search_space` writes the variables in NNI's search-space format and :func:`decode` maps the
tuner's values back. Decoding goes through the space's public contract (``arch_from_params`` for FasterSeg,
``derive`` for SparseMask), so every decoded architecture is one the space's searches could produce.

- **fasterseg**: per cell of the lattice an op (``a<scale>_<row>``: one of the space's ops), per 1/16 and 1/32
  row a down-sampling preference (``b<scale>_<row>`` in [-3, 3], the β logit of "down" against "keep"),
  per node a width (``w<scale>_<row>``: an index into the width choices) and the branch set (``branch_set``:
  an index into the config's sets). The derivation rules (skip removal, down positions) then apply.
  With a width skew ``q < 1`` (:class:`Prior`) a width variable is instead a quantile ``u`` in [0, 1] of the prior
  P(choice k) ∝ q**k (:func:`width_index`), so that a tuner's uniform prior over ``u`` — and NNI's random
  tuner — draws narrow widths more often, as a latency band near the fastest architectures requires.
- **sparsemask**: per stage and candidate input a keep/drop bit (``<stage>.<input>``); the derivation clean-up
  rules then remove dead ends. With a keep probability ``p != 0.5`` a bit is instead a quantile ``u`` in [0, 1],
  kept when ``u < p``, so that a tuner's uniform prior keeps each connection with probability ``p``. A set of
  bits that leaves the output stage without input decodes to no architecture (:class:`NoArchitecture`): the
  trial is rejected, not trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from terralite.errors import TerraLiteError
from terralite.search_spaces.base import SearchSpace

BETA_RANGE = (-3.0, 3.0)  # logits: softmax([u, 0]) puts between 5 % and 95 % on "down"
ONE_HOT = 3.0  # logit of the chosen op / width (the others 0): the argmax the derivation reads


class NoArchitecture(TerraLiteError):
    """The tuner's values decode to no valid architecture (e.g. an output stage left without input)."""


@dataclass(frozen=True)
class Variable:
    """One tuner variable: ``choice`` over ``values``, or ``uniform`` in ``[values[0], values[1]]``."""

    kind: str
    values: tuple

    def to_nni(self) -> dict:
        return {"_type": self.kind, "_value": list(self.values)}


def width_index(u: float, n_widths: int, width_skew: float) -> int:
    """The width choice at quantile ``u`` of the prior P(k) ∝ width_skew**k, k < n_widths."""
    prior = width_skew ** np.arange(n_widths)
    cdf = np.cumsum(prior) / prior.sum()
    return int(min(np.searchsorted(cdf, u, side="right"), n_widths - 1))


@dataclass(frozen=True)
class Prior:
    """How likely each choice is before a tuner has seen a result: ``width_skew`` (FasterSeg, P(width k) ∝
    width_skew**k) and ``keep_prob`` (SparseMask, P(connection kept)). The defaults are uniform."""

    width_skew: float = 1.0
    keep_prob: float = 0.5

    @classmethod
    def of(cls, cfg) -> "Prior":
        """The prior of a :class:`~terralite.nas.multi_trial.config.MultiTrialConfig`."""
        return cls(cfg.width_skew, cfg.keep_prob)

    @property
    def skews_widths(self) -> bool:
        return self.width_skew != 1

    @property
    def thins_connections(self) -> bool:
        return self.keep_prob != 0.5

    def describe(self) -> str:
        """One line for tables and logs."""
        parts = []
        if self.skews_widths:
            parts.append(f"each width with P(choice k) ∝ {self.width_skew:g}^k (other choices uniform)")
        if self.thins_connections:
            parts.append(f"each connection kept with probability {self.keep_prob:g}")
        return "; ".join(parts) or "every choice uniform"


UNIFORM = Prior()


def _fasterseg_variables(space, prior: Prior) -> dict[str, Variable]:
    a_shapes, b_shapes, r_shapes = space.param_shapes()
    ops, scales = space.choices["ops"], space.choices["scales"]
    variables: dict[str, Variable] = {}
    for j, (rows, _) in enumerate(a_shapes):
        for r in range(rows):
            variables[f"a{scales[j]}_{r}"] = Variable("choice", tuple(ops))
    for j, shape in enumerate(b_shapes):
        if shape is not None:
            for r in range(shape[0]):
                variables[f"b{scales[j]}_{r}"] = Variable("uniform", BETA_RANGE)
    for j, (rows, n_widths) in enumerate(r_shapes):
        for r in range(rows):
            variables[f"w{scales[j]}_{r}"] = (Variable("choice", tuple(range(n_widths))) if not prior.skews_widths
                                               else Variable("uniform", (0.0, 1.0)))
    variables["branch_set"] = Variable("choice", tuple(range(len(space.cfg.branch_sets))))
    return variables


def _fasterseg_decode(space, values: dict, prior: Prior) -> dict:
    a_shapes, b_shapes, r_shapes = space.param_shapes()
    ops, scales = space.choices["ops"], space.choices["scales"]
    alphas, betas, ratios = [], [None], []
    for j, shape in enumerate(a_shapes):
        a = np.zeros(shape)
        for r in range(shape[0]):
            a[r, ops.index(values[f"a{scales[j]}_{r}"])] = ONE_HOT
        alphas.append(a)
    for j, shape in enumerate(b_shapes[1:], start=1):
        b = np.zeros(shape)
        for r in range(shape[0]):
            b[r, 0] = float(values[f"b{scales[j]}_{r}"])  # column 0 = down, column 1 (keep) stays 0
        betas.append(b)
    for j, shape in enumerate(r_shapes):
        w = np.zeros(shape)
        for r in range(shape[0]):
            value = values[f"w{scales[j]}_{r}"]
            k = width_index(float(value), shape[1], prior.width_skew) if prior.skews_widths else int(value)
            w[r, k] = ONE_HOT
        ratios.append(w)
    branch_set = space.cfg.branch_sets[int(values["branch_set"])]
    return space.arch_from_params(alphas, betas, ratios, branch_set, role="student")


def _sparsemask_variables(space, prior: Prior) -> dict[str, Variable]:
    bit = Variable("uniform", (0.0, 1.0)) if prior.thins_connections else Variable("choice", (0, 1))
    return {f"{stage}.{name}": bit for stage, inputs in space.choices["stages"].items() for name in inputs}


def _kept(value, prior: Prior) -> bool:
    return float(value) < prior.keep_prob if prior.thins_connections else bool(int(value))


def _sparsemask_decode(space, values: dict, prior: Prior) -> dict:
    from terralite.search_spaces.sparsemask.topology import NUM_STAGES, parse_input_name

    gates = np.zeros((NUM_STAGES, NUM_STAGES, 2))
    for stage_number, (stage, inputs) in enumerate(space.choices["stages"].items()):
        for name in inputs:
            if _kept(values[f"{stage}.{name}"], prior):
                kind, index = parse_input_name(name)
                gates[stage_number, index, kind] = 2.0  # fully open (derive clips gates to [0, 2])
    try:
        return space.derive(gates)
    except TerraLiteError as exc:
        raise NoArchitecture(f"the kept connections form no network ({exc})") from None


_ENCODINGS = {"fasterseg": (_fasterseg_variables, _fasterseg_decode),
              "sparsemask": (_sparsemask_variables, _sparsemask_decode)}


def _encoding(space: SearchSpace):
    try:
        return _ENCODINGS[space.name]
    except KeyError:
        raise TerraLiteError(f"search space {space.name!r} has no tuner encoding; spaces with one: {', '.join(_ENCODINGS)}") from None


def variables(space: SearchSpace, prior: Prior = UNIFORM) -> dict[str, Variable]:
    """The tuner variables of ``space``, by name (a fixed order); ``prior``: see the module's notes."""
    return _encoding(space)[0](space, prior)


def decode(space: SearchSpace, values: dict[str, Any], prior: Prior = UNIFORM) -> dict:
    """The (validated) architecture that the tuner's ``values`` stand for; raises :class:`NoArchitecture`."""
    missing = sorted(set(variables(space, prior)) - set(values))
    if missing:
        raise TerraLiteError(f"tuner parameters lack {len(missing)} variable(s) of the {space.name} space, e.g. {missing[0]!r}")
    return _encoding(space)[1](space, values, prior)


def to_nni_search_space(space: SearchSpace, prior: Prior = UNIFORM) -> dict:
    """The variables in NNI's search-space format (``{name: {"_type": ..., "_value": [...]}}``)."""
    return {name: var.to_nni() for name, var in variables(space, prior).items()}


def sample_values(space: SearchSpace, rng: np.random.Generator, prior: Prior = UNIFORM) -> dict:
    """Values drawn uniformly from every variable (what NNI's random tuner does; under a non-uniform ``prior``
    the choices follow it, since their variables are its quantiles)."""
    out: dict[str, Any] = {}
    for name, var in variables(space, prior).items():
        if var.kind == "choice":
            out[name] = var.values[int(rng.integers(len(var.values)))]
        else:
            out[name] = float(rng.uniform(*var.values))
    return out
