"""Temporaries of atomic writes left by a killed process are removed by the next write of the same file (issue 14,
item 5), while a live writer's temporary is kept (it holds an flock on it)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys

from terralite.atomic import atomic_path, write_text_atomic

WRITER = ("import sys, time\n"
          "from terralite.atomic import atomic_path\n"
          "with atomic_path(sys.argv[1]) as tmp:\n"
          "    tmp.write_bytes(b'half'); print(tmp, flush=True); time.sleep(120)\n")


def test_a_killed_writers_temporary_goes_at_the_next_write(tmp_path):
    target = tmp_path / "map.tif"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        tmp = proc.stdout.readline().strip()
        assert os.path.basename(tmp).startswith(".map.tif.") and os.path.exists(tmp)
        write_text_atomic(target, "first")  # the writer is alive: its temporary stays
        assert os.path.exists(tmp)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert os.path.exists(tmp)  # a kill leaves it behind...
    write_text_atomic(target, "second")  # ...and the next write of map.tif removes it
    assert not os.path.exists(tmp)
    assert target.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]


def test_the_temporary_is_locked_while_written(tmp_path):
    with atomic_path(tmp_path / "x.pt") as tmp:
        tmp.write_bytes(b"x")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = False
            except OSError:
                locked = True
        finally:
            os.close(fd)
    assert locked
