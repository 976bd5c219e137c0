"""How busy the rest of the machine was during a measurement: the processors' worth of work other processes did.

The 1-minute load average cannot tell: a two-thread benchmark on a two-processor machine drives it to 2 by itself,
so an idle machine looked loaded to the leaderboard. Linux's ``/proc/stat`` gives the busy time of all processors;
minus this process's own CPU time over the same window (all its threads: the runtime's pools included) it is what
everything else used. Elsewhere (no ``/proc/stat``) the meter gives None and the board falls back to the load average.
"""

from __future__ import annotations

import os
import time


def _busy_seconds() -> float | None:
    """Seconds all processors have spent busy since boot (user, nice, system, irq, softirq), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 7:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """``start()`` … ``stop() -> processors' worth of other processes' work in between`` (e.g. 1.0 = one busy core)."""

    def start(self) -> None:
        self._wall, self._own, self._busy = time.monotonic(), time.process_time(), _busy_seconds()

    def stop(self) -> float | None:
        busy, wall = _busy_seconds(), time.monotonic() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return None
        own = time.process_time() - self._own
        # the kernel counts in clock ticks (10 ms): a window of a second can read a tick below our own time
        return round(max(0.0, (busy - self._busy - own) / wall), 2)
