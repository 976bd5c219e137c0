"""Keep freed memory in the process for reuse: eager PyTorch on a CPU without the page-fault tax of large maps.

PyTorch's CPU allocator hands every tensor to ``malloc``. glibc serves a block above its mmap threshold (which
it never lets grow past 32 MB on 64-bit systems) with a fresh ``mmap`` and unmaps it on ``free``, so every
large activation of an eager forward at 1024 x 1024 — a 64 x 512 x 512 fp32 map is 67 MB, an encoder map of
96 x 512 x 512 100 MB — arrives as new pages the kernel must fault in and zero, call after call (what that
costs an eager forward is measured in ``results/cpu/README.md``). ONNX Runtime does not pay this: it keeps its
own arena.

:func:`keep_freed_memory` gives an eager process the same: glibc's own tunables ``M_MMAP_MAX = 0`` (large
blocks come from the heap, like small ones) and a trim threshold of 1 GiB (freed heap stays mapped for the next
call), which is what PyTorch's CPU performance guide gets from swapping in jemalloc or tcmalloc. The price is
memory: freed blocks stay with the process (returned at exit, or by an explicit ``malloc_trim``) and some are the
wrong size for the next request, so the resident memory the calls add grew 1.2-2.3x on the demo's board
(``results/demo/README.md``) while its eager calls got about twice as fast. A user's own ``MALLOC_*_`` /
``GLIBC_TUNABLES`` malloc settings win, and on a C library other than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import os

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD_BYTES = 1 << 30

_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


@functools.cache
def keep_freed_memory() -> str:
    """Make this process keep freed heap for reuse (once; later calls return the first outcome).

    Returns what happened, for logs and rows: ``"kept"`` (glibc tuned), ``"user"`` (the user's malloc settings
    left as they are) or ``"unavailable"`` (not glibc)."""
    if any(name in os.environ for name in _USER_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "user"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return "unavailable"
    # mallopt returns 1 on success
    if mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) != 1 or mallopt(_M_MMAP_MAX, 0) != 1:
        return "unavailable"
    return "kept"
