"""Eager CPU processes keep freed memory: a large map allocated again reuses pages instead of faulting in new ones."""

import json
import subprocess
import sys

import pytest

# A forward's large maps (40-100 MB, above glibc's largest mmap threshold, alive together), allocated, filled
# and freed 8 times, as repeated calls do; prints the minor page faults of each round, in a process with the
# default allocator settings or after keep_freed_memory() (then also what a second call returns).
PROBE = """
import json, resource, sys, torch
from terralite.cpu_allocator import keep_freed_memory

outcome = keep_freed_memory() if sys.argv[1] == "kept" else None
rounds = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    maps = [torch.empty(mb * 2**18).fill_(1.0) for mb in (40, 64, 100, 48)]
    del maps
    rounds.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"rounds": rounds, "outcome": outcome, "again": keep_freed_memory() if outcome else None}))
"""
PAGES = (40 + 64 + 100 + 48) * 2**20 // 4096  # one round's maps in 4 KiB pages


def probe(mode: str, env_extra: dict | None = None) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_large_maps_reuse_freed_memory():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc and page-fault accounting: Linux only")
    default, kept = probe("default"), probe("kept")
    assert kept["outcome"] == kept["again"] == "kept"
    # glibc by default: every round's maps are new pages (mmap on allocation, munmap on free)
    assert all(faults > 0.9 * PAGES for faults in default["rounds"])
    # kept: after a few rounds (glibc's aligned allocations settle into the freed heap) the same pages again
    assert kept["rounds"][0] > 0.9 * PAGES
    assert sum(kept["rounds"][-4:]) / 4 < 0.1 * PAGES  # seen: 0-3 % (a round may still take a few new pages)
    assert sum(kept["rounds"][1:]) < 0.5 * sum(default["rounds"][1:])


def test_a_users_malloc_settings_win():
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc: Linux only")
    result = probe("kept", {"MALLOC_MMAP_MAX_": "65536"})
    assert result["outcome"] == "user"
    assert all(faults > 0.9 * PAGES for faults in result["rounds"])  # untouched: new pages every round
