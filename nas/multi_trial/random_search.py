"""The latency-matched random baseline: K architectures drawn with the space's ``sample``, each priced by the
latency model and kept only inside the band around the target, each trained with the same recipe.

Under a non-uniform prior (``width_skew < 1`` for FasterSeg: operators, down-sampling logits and branch set
uniform, each width with P(k) ∝ width_skew**k; ``keep_prob != 0.5`` for SparseMask: each connection kept with
that probability) a draw is the tuner encoding's values drawn at random instead, so the baseline is "random
among architectures of this latency" where the band lies in a corner of the space that uniform draws almost never
reach (a searched student's narrow widths, a budgeted SparseMask network's few connections). Values that decode
to no network are counted as ``no_network`` and drawn again.

The draws are a function of the seed alone (``default_rng(seed)``, one ``sample`` per draw), and the latency
of a draw is exact (table) or cached (measured), so a second start draws the same sequence, finds the
finished trials' rows and trains only what is missing; a larger ``samples`` continues the sequence.
An architecture drawn a second time is counted as a duplicate and not trained again. Rejected draws are
counted, never written as trials.
"""

from __future__ import annotations

import sys

import numpy as np

from terralite.nas.multi_trial.config import MultiTrialConfig
from terralite.nas.multi_trial.context import SearchContext
from terralite.nas.multi_trial.encoding import UNIFORM, NoArchitecture, Prior, decode, sample_values
from terralite.nas.multi_trial.latency import arch_key
from terralite.nas.multi_trial.table import trial_rows, write_outputs
from terralite.nas.multi_trial.trial import run_trial

PREFIX = "random-"


def draw_in_band(ctx: SearchContext, samples: int, max_draws: int) -> tuple[list[dict], dict]:
    """The first ``samples`` distinct in-band architectures of the seed's sequence (at most ``max_draws``
    draws), and the counts: ``drawn``, ``in_band``, ``rejected_latency``, ``rejected_measured`` (outside the
    band by side-by-side measurement, ``--measured-band``), ``duplicates``, ``no_network``."""
    rng = np.random.default_rng(ctx.cfg.seed)
    archs, seen = [], set()
    counts = {"drawn": 0, "in_band": 0, "rejected_latency": 0, "rejected_measured": 0, "duplicates": 0, "no_network": 0}
    prior = Prior.of(ctx.cfg)
    while len(archs) < samples and counts["drawn"] < max_draws:
        counts["drawn"] += 1
        if prior == UNIFORM:
            arch = ctx.space.sample(rng)
        else:
            try:
                arch = decode(ctx.space, sample_values(ctx.space, rng, prior), prior)
            except NoArchitecture:
                counts["no_network"] += 1
                continue
        key = arch_key(ctx.space, arch)
        if key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        rejected = ctx.rejection(arch, ctx.latency(arch))
        if rejected:
            counts[rejected[0]] += 1
            continue
        counts["in_band"] += 1
        archs.append(arch)
    return archs, counts


def random_search(cfg: MultiTrialConfig, samples: int, max_draws: int = 2000) -> dict:
    """Run (or resume) the random baseline in ``cfg.out``; returns the summary (see :mod:`.table`)."""
    from terralite.errors import TerraLiteError

    if samples < 1 or max_draws < samples:
        raise TerraLiteError(f"--samples must be at least 1 and --max-draws at least --samples, got {samples} and {max_draws}")
    ctx = SearchContext.open(cfg, "random")
    archs, counts = draw_in_band(ctx, samples, max_draws)
    lo, hi = ctx.band_ms
    measured = (f" and within ±{ctx.cfg.measured_band:g} of the target side by side" if ctx.side_by_side else "")
    print(f"random search: {counts['in_band']} architecture(s) in [{lo:.2f}, {hi:.2f}] ms{measured} after {counts['drawn']} "
          f"draw(s) ({counts['rejected_latency']} rejected by latency, {counts['rejected_measured']} by side-by-side "
          f"measurement, {counts['duplicates']} duplicate(s), {counts['no_network']} without a network)", file=sys.stderr)
    for k, arch in enumerate(archs):
        run_trial(ctx, f"{PREFIX}{k:03d}", arch)
    rows = trial_rows(ctx, PREFIX)[:samples]
    counts["trained"] = sum(r["status"] == "trained" for r in rows)
    summary = write_outputs(ctx, rows, counts)
    if len(archs) < samples:
        print(f"random search: only {len(archs)} of {samples} architectures within the band after {max_draws} draws; "
              "widen --band or raise --max-draws", file=sys.stderr)
    return summary
