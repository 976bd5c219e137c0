"""The trial process of an NNI search: ``python -m terralite.nas.multi_trial.nni_trial RUN --index-offset K``.

NNI starts one per architecture. It reads the tuner's parameters (``nni.get_next_parameter``), decodes them
into an architecture through the space's choices (:mod:`.encoding`), runs the shared trial function as trial
``nni-<K + NNI's sequence id>`` and reports the objective (0 for a rejected architecture: outside the latency
band, or no network) with ``nni.report_final_result``.
"""

from __future__ import annotations

import argparse
import sys

from terralite.errors import TerraLiteError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="terralite.nas.multi_trial.nni_trial", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the search's run folder (holds search.json)")
    parser.add_argument("--index-offset", type=int, default=0, help="index of this experiment's first trial")
    args = parser.parse_args(argv)

    import nni

    from terralite.nas.multi_trial.context import SearchContext
    from terralite.nas.multi_trial.encoding import NoArchitecture, Prior, decode
    from terralite.nas.multi_trial.nni_search import PREFIX
    from terralite.nas.multi_trial.trial import run_trial

    try:
        params = nni.get_next_parameter()
        ctx = SearchContext.load(args.run)
        trial_id = f"{PREFIX}{args.index_offset + nni.get_sequence_id():03d}"
        try:
            arch, reason = decode(ctx.space, params, Prior.of(ctx.cfg)), None
        except NoArchitecture as exc:
            arch, reason = None, str(exc)
        row = run_trial(ctx, trial_id, arch, tuner_params=params, reason=reason)
    except TerraLiteError as exc:
        print(f"terralite: error: {exc}", file=sys.stderr)
        return 2
    metrics = {"default": float(row.get("objective") or 0.0)}
    metrics.update({k: float(row[k]) for k in ("miou", "latency_ms") if row.get(k) is not None})
    nni.report_final_result(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
