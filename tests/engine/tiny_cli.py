"""``python tests/engine/tiny_cli.py ARGS`` = ``terralite ARGS`` with the ``tiny-test`` baseline registered.

Used by tests that need a real separate process (SIGKILL, torchrun). With ``TINY_KILL_AT=E:S`` in the
environment the process SIGKILLs itself right after it saved the mid-epoch checkpoint of epoch E (0-based)
at batch S: a kill at a known point between two checkpoints, without any hook in the engine.
"""

import os
import signal
import sys

import terralite.checkpoint
from tiny_model import register

register()

kill_at = os.environ.get("TINY_KILL_AT")
if kill_at:
    epoch, step = (int(v) for v in kill_at.split(":"))
    real_save = terralite.checkpoint.save_checkpoint

    def save_then_maybe_die(path, spec, state_dict, **extra):
        real_save(path, spec, state_dict, **extra)
        if extra.get("epoch") == epoch and extra.get("step_in_epoch") == step:
            os.kill(os.getpid(), signal.SIGKILL)

    terralite.checkpoint.save_checkpoint = save_then_maybe_die

from terralite.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
