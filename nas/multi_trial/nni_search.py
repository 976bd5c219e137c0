"""A multi-trial search driven by an NNI 3.0 experiment (optional extra ``terralite[nni]``).

The experiment is NNI's own: ``nni.experiment.Experiment`` on the local training service, its manager on
localhost (a free port), one of its built-in tuners, and one trial process per architecture running
:mod:`terralite.nas.multi_trial.nni_trial`, which decodes the tuner's parameters into an architecture
(:mod:`.encoding`), runs the shared trial function and reports the objective to NNI.

NNI's experiment folders live in ``RUN/nni`` (``experiment_working_directory``); NNI itself only keeps its
one-line-per-experiment index in ``~/nni-experiments/.experiment``, as it always does.

Budget: ``trials`` counts trained architectures. Proposals outside the latency band are rejected in seconds
(counted, reported to the tuner as 0, not trained) and do not use it up; ``max_proposals`` bounds the whole
experiment, so a band the tuner cannot find ends the search instead of running for ever.

Resume: trials are identified as ``nni-<index>`` and every finished one keeps its row in RUN, so a new start
runs a fresh experiment for the missing trials only (until ``trials`` are trained or ``max_proposals``
proposals are used; indices continue after the highest one used) and hands the finished trials' parameters
and objectives to the new tuner (NNI's import-data), so the tuner resumes from the same history. This does
not depend on NNI's own checkpoint, which would be lost with its home-directory index. Trials NNI counts as
failed (a crash in the trial process) leave no row; their logs are in ``RUN/nni/<experiment>/environments/``.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
import socket
import sys
import time

from terralite.errors import TerraLiteError
from terralite.nas.multi_trial.config import MultiTrialConfig
from terralite.nas.multi_trial.context import SearchContext
from terralite.nas.multi_trial.table import trial_rows, write_outputs
from terralite.nas.multi_trial.trial import TRAINED

PREFIX = "nni-"
#: ``--tuner`` → (NNI built-in tuner name, whether it takes a ``seed``)
TUNERS = {"random": ("Random", True), "tpe": ("TPE", True), "evolution": ("Evolution", False), "anneal": ("Anneal", False)}
POLL_S = 1.0
#: Seconds NNI may take to start its manager. NNI 3.0 gives it 3 s, which a loaded machine exceeds.
MANAGER_START_S = 60
#: Seconds the tuner's dispatcher thread may take to end once the manager has stopped.
DISPATCHER_EXIT_S = 10


def require_nni():
    """The ``nni`` module, or a one-line error naming the extra to install."""
    try:
        import nni
    except ImportError:
        raise TerraLiteError("`terralite search nni` needs NNI: pip install 'terralite[nni]'") from None
    return nni


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tuner_class_args(tuner: str, seed: int, trials: int) -> dict:
    """NNI class arguments of a tuner: maximise; seeded where the tuner takes a seed (evolution and anneal take
    none: their proposals are not reproducible); the evolution tuner's population is half the trials (2..32),
    so that it mutates within a short budget."""
    name, seeded = TUNERS[tuner]
    args = {"optimize_mode": "maximize"}
    if seeded:
        args["seed"] = seed
    if name == "Evolution":
        args["population_size"] = max(2, min(32, trials // 2))
    return args


@contextlib.contextmanager
def _patient_manager_start():
    """Let NNI wait up to :data:`MANAGER_START_S` seconds (one check per second) for its manager's REST server."""
    from nni.experiment import launcher

    original = launcher._check_rest_server
    launcher._check_rest_server = functools.partial(original, retry=MANAGER_START_S)
    try:
        yield
    finally:
        launcher._check_rest_server = original


def _trial_index(trial_id: str) -> int:
    return int(trial_id[len(PREFIX):])


def _used_indices(ctx: SearchContext) -> list[int]:
    folder = ctx.run_dir / "trials"
    return [_trial_index(p.name) for p in folder.glob(f"{PREFIX}*") if p.is_dir()] if folder.is_dir() else []


def _trained(rows: list[dict]) -> int:
    return sum(r["status"] == TRAINED for r in rows)


def nni_search(cfg: MultiTrialConfig, tuner: str, trials: int, concurrency: int = 1, port: int | None = None,
               max_proposals: int | None = None) -> dict:
    """Run (or resume) an NNI search in ``cfg.out`` until ``trials`` architectures are trained or
    ``max_proposals`` (default 20 x ``trials``) were proposed; returns the summary."""
    max_proposals = max_proposals or 20 * trials
    if tuner not in TUNERS:
        raise TerraLiteError(f"unknown tuner {tuner!r}; valid: {', '.join(TUNERS)}")
    if trials < 1 or concurrency < 1 or max_proposals < trials:
        raise TerraLiteError(f"--trials and --concurrency must be at least 1 and --max-proposals at least --trials, "
                             f"got {trials}, {concurrency} and {max_proposals}")
    require_nni()
    ctx = SearchContext.open(cfg, f"nni-{tuner}")
    finished = trial_rows(ctx, PREFIX)
    proposals_left = max_proposals - len(finished)
    if _trained(finished) < trials and proposals_left > 0:
        _run_experiment(ctx, tuner, trials, proposals_left, concurrency, port, finished)
    rows = trial_rows(ctx, PREFIX)
    started = len(_used_indices(ctx))
    counts = {"proposed": len(rows), "trained": _trained(rows), "rejected": sum(r["status"] == "rejected" for r in rows),
              "failed": max(0, started - len(rows))}
    if counts["failed"]:
        print(f"nni search: {counts['failed']} trial(s) left no result (see the trial logs under {ctx.run_dir / 'nni'})",
              file=sys.stderr)
    if counts["trained"] < trials:
        print(f"nni search: only {counts['trained']} of {trials} architectures trained after {len(rows)} proposal(s); "
              "raise --max-proposals, widen --band or skew the widths (--width-skew)", file=sys.stderr)
    return write_outputs(ctx, rows, counts)


def _experiment(ctx: SearchContext, tuner: str, trials: int, remaining: int, concurrency: int, offset: int):
    """A local NNI experiment of at most ``remaining`` trials whose trial ids start at ``offset``, whose tuner
    runs in this process (see :func:`_run_experiment`)."""
    from nni.experiment import Experiment

    from terralite.nas.multi_trial.encoding import Prior, to_nni_search_space

    class InProcessTunerExperiment(Experiment):
        """NNI's manager told that the tuner connects by itself (as NNI's own NAS experiments do)."""

        def _start_nni_manager(self, port, debug, run_mode=None, tuner_command_channel=None, tags=()):
            from nni.experiment import RunMode

            return super()._start_nni_manager(port, debug, run_mode or RunMode.Background, f"ws://localhost:{port}/tuner", list(tags))

    work = ctx.run_dir / "nni"
    code = work / "trial_code"  # NNI's trial working tree: an empty folder (our trial reads RUN, not its cwd)
    code.mkdir(parents=True, exist_ok=True)
    exp = InProcessTunerExperiment("local")
    c = exp.config
    c.experiment_name = f"terralite-{ctx.space.name}-{tuner}"
    c.experiment_working_directory = str(work)
    c.trial_code_directory = str(code)
    c.trial_command = shlex.join([sys.executable, "-m", "terralite.nas.multi_trial.nni_trial", str(ctx.run_dir),
                                  "--index-offset", str(offset)])
    c.search_space = to_nni_search_space(ctx.space, Prior.of(ctx.cfg))
    c.tuner.name = TUNERS[tuner][0]
    c.tuner.class_args = tuner_class_args(tuner, ctx.cfg.seed, trials)
    c.max_trial_number = remaining
    c.trial_concurrency = concurrency
    return exp


def _run_experiment(ctx: SearchContext, tuner: str, trials: int, remaining: int, concurrency: int, port: int | None,
                    finished: list[dict]) -> None:
    """Run the experiment until ``trials`` architectures are trained (rows of earlier starts included) or its
    ``remaining`` proposals are used.

    The tuner (NNI's built-in class, built by NNI's factory) runs in this process behind NNI's message
    dispatcher, connected to the manager over its tuner channel: NNI 3.0 gives a tuner process it starts
    itself 10 s to import NNI and connect, which a busy machine exceeds. Built here, the tuner is handed
    the finished trials of earlier starts before the experiment begins (NNI's import-data).
    """
    import threading

    from nni.runtime.msg_dispatcher import MsgDispatcher
    from nni.tools.package_utils.tuner_factory import create_builtin_class_instance

    offset = max(_used_indices(ctx), default=-1) + 1
    exp = _experiment(ctx, tuner, trials, remaining, concurrency, offset)
    folder = ctx.run_dir / "nni" / exp.id
    tuner_obj = create_builtin_class_instance(exp.config.tuner.name, exp.config.tuner.class_args, "tuners")
    history = [{"parameter": r["tuner_params"], "value": float(r.get("objective") or 0.0)} for r in finished if r.get("tuner_params")]
    tuner_obj.update_search_space(exp.config.search_space)
    if history:
        tuner_obj.import_data(history)
    port = port or _free_port()
    print(f"nni search: experiment {exp.id} ({remaining} trial(s), tuner {exp.config.tuner.name}) on http://127.0.0.1:{port}, "
          f"folder {folder}", file=sys.stderr)
    try:
        with _patient_manager_start():
            exp.start(port)
    except Exception as exc:  # NNI raises whatever its launcher met (requests, RuntimeError...)
        exp.stop()
        raise TerraLiteError(f"NNI's manager did not start ({type(exc).__name__}: {exc}); see {folder / 'log'}") from None
    thread = None
    try:
        dispatcher = MsgDispatcher(f"ws://localhost:{port}/tuner", tuner_obj)
        thread = threading.Thread(target=dispatcher.run, name="nni-dispatcher", daemon=True)
        thread.start()
        while True:
            status = exp.get_status()
            if status in ("DONE", "STOPPED") or _trained(trial_rows(ctx, PREFIX)) >= trials:
                return
            if status == "ERROR":
                raise TerraLiteError(f"the NNI experiment {exp.id} failed; its log: {folder / 'log' / 'nnimanager.log'}")
            time.sleep(POLL_S)
    finally:
        exp.stop()
        if thread is not None:  # let the dispatcher see the manager go and log its last line while logging still works
            thread.join(timeout=DISPATCHER_EXIT_S)
