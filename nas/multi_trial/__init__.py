"""Multi-trial architecture search over any registered space: a latency-matched random baseline and
NNI-driven searches, both running one shared trial function (sample → price → train → evaluate).

- :func:`~terralite.nas.multi_trial.random_search.random_search` — ``terralite search random``
- :func:`~terralite.nas.multi_trial.nni_search.nni_search` — ``terralite search nni`` (extra ``terralite[nni]``)
- :func:`~terralite.nas.multi_trial.trial.run_trial` — one trial; :mod:`.context` — the run folder's layout
"""
