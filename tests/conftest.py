"""Shared fixtures: a tiny synthetic OpenEarthMap-layout dataset, generated once per test session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Root of a 6-tile, 64 px synthetic dataset (2 regions, train/val/test lists of 4/1/1). Do not modify it:
    copy it (``shutil.copytree``) before breaking files."""
    from terralite.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synthetic") / "oem", tiles=6, size=64, seed=0)
