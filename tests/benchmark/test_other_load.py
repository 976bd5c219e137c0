"""The meter of other processes' work during a measurement (what the load average cannot separate from our own).

Each case is compared with the same meter over an idle second just before it, so that whatever else runs on the
machine (another test process, a background job) cancels out.
"""

import os
import subprocess
import sys
import time

import pytest

from terralite.benchmark.runners.other_load import OtherLoad

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")


def _measured(work) -> float:
    meter = OtherLoad()
    meter.start()
    work()
    return meter.stop()


def _spin(seconds: float = 1.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_own_work_is_not_counted():
    background = _measured(lambda: time.sleep(1.5))
    assert _measured(_spin) - background < 0.4  # this process kept one core busy: not "other" work


def test_another_process_is_counted():
    background = _measured(lambda: time.sleep(1.5))
    if background > os.cpu_count() - 1.2:
        pytest.skip(f"no free core to run the busy process on (other work already keeps {background:.1f} CPUs busy)")
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 4\nwhile time.monotonic() < end: pass"])
    try:
        time.sleep(0.5)  # the child is running
        other = _measured(lambda: time.sleep(1.5))  # we are idle; the child holds one core
    finally:
        busy.kill()
        busy.wait()
    assert 0.6 < other - background < 1.4
