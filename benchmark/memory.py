"""Peak memory of a measurement, on the GPU (torch's allocator) and on the CPU (the process's RSS).

On the CPU, Linux lets a process reset its resident-set high-water mark (``VmHWM``) by writing ``5`` to
``/proc/self/clear_refs``; the peak is then ``VmHWM`` after the run minus ``VmRSS`` before it: the
resident memory the measured calls added on top of the loaded model/session (activations, workspaces,
arenas). Heap freed by earlier measurements is first returned to the OS (glibc ``malloc_trim``) so that
it is not reused unseen. Where the reset is not possible the figure is the growth of ``ru_maxrss`` (0 when the run stays
below an earlier peak of the process), and ``method`` says so.
"""

from __future__ import annotations

import ctypes
import gc
import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_freed_heap() -> None:
    """Hand memory freed by earlier measurements back to the OS, so it is not silently reused below the baseline."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the baseline then includes the freed heap
        pass


class PeakMemory:
    """``start()`` before the calls, ``stop() -> MB`` after; ``method`` names what was measured."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.method = ""
        self._base_kb = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda max_memory_allocated (torch allocator: weights + activations)"
            return
        _release_freed_heap()
        try:
            _CLEAR_REFS.write_text("5")
            self._base_kb = _status_kb("VmRSS") or 0
            self.method = "cpu VmHWM - VmRSS before (resident memory added by the measured calls)"
        except OSError:
            self._base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "cpu ru_maxrss growth (0 when below an earlier peak of the process)"

    def stop(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.method.startswith("cpu VmHWM"):
            peak_kb = _status_kb("VmHWM") or self._base_kb
        else:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(peak_kb - self._base_kb, 0) / 1024


class FreeMemoryDrop:
    """GPU memory an external runtime (ONNX Runtime, TensorRT) holds, invisible to torch's allocator:
    the drop of the device's free memory since ``free_before`` (taken before the runtime was set up)."""

    method = "cuda free-memory drop since the runtime was set up (arena + weights + I/O buffers)"

    def __init__(self, device: torch.device, free_before: int):
        self.device = torch.device(device)
        self.free_before = free_before

    def start(self) -> None:
        """Nothing to reset: the baseline was taken before the runtime allocated anything."""

    def stop(self) -> float:
        torch.cuda.synchronize(self.device)
        return max(self.free_before - torch.cuda.mem_get_info(self.device)[0], 0) / 2**20
