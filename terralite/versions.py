"""Library versions recorded beside every checkpoint and benchmark row."""

from __future__ import annotations

import platform
from importlib import metadata

_DISTRIBUTIONS = (
    "terralite", "torch", "torchvision", "segmentation-models-pytorch", "timm", "onnx", "onnxruntime",
    "onnxruntime-gpu", "tensorrt", "torch-pruning", "fvcore", "rasterio", "numpy",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        if torch.version.cuda:
            versions["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return versions
