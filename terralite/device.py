"""Device selection and human-readable device names for logs and benchmark rows."""

from __future__ import annotations

import platform
from functools import lru_cache

import torch

from terralite.errors import TerraLiteError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the current CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TerraLiteError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TerraLiteError(f"device {name!r} asked for, but CUDA is not available on this machine; use --device cpu")
    return device


@lru_cache(maxsize=None)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    """E.g. ``NVIDIA H200`` or ``cpu: AMD EPYC 7B13 (2 threads)``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_name()} ({torch.get_num_threads()} threads)"
