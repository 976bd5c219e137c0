"""What a search method is: a job on the shared run loop (:mod:`terralite.engine.run`) that adds a step, a
derivation and some extra state.

FasterSeg's bilevel teacher–student search and SparseMask's single-level sparsity search differ only there:
device, ``torchrun``, AMP, seeding, the run folder, resume, checkpoints (``last.pt``), the log and progress
are the loop's, exactly as for training, so a SIGKILLed search of either kind resumes through the same code.
"""

from __future__ import annotations

import abc

from terralite.engine.run import RunJob


class SearchMethod(RunJob):
    """Base of the search methods. A subclass implements the :class:`RunJob` hooks and :meth:`derive`."""

    what = "search"
    resume_may_change = ("data", "out", "epochs", "device", "workers")  # a resumed search may be extended

    @abc.abstractmethod
    def derive(self, *args, **kwargs):
        """The architecture(s) the search state gives now (called after every epoch, from ``end_epoch``)."""
