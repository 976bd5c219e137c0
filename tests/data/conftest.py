"""Fixtures of the data-layer tests: the shared real rasters (skipped when absent) and small raster writers."""

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

FIXTURES = Path(__file__).resolve().parents[1].parent.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not present at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def make_tile():
    """Write ``(image, label)`` of any size into ``<root>/<region>/images|labels/<name>`` on one grid."""
    from terralite.data.raster import write_geotiff

    def make(root: Path, name: str, image: np.ndarray, label: np.ndarray | None = None, interleave="pixel"):
        region = name.rsplit("_", 1)[0]
        transform = Affine(1e-5, 0.0, 10.0, 0.0, -1e-5, 50.0)
        for sub in ("images", "labels"):
            (root / region / sub).mkdir(parents=True, exist_ok=True)
        write_geotiff(root / region / "images" / name, image, crs="EPSG:4326", transform=transform,
                      interleave=interleave)
        if label is not None:
            write_geotiff(root / region / "labels" / name, label, crs="EPSG:4326", transform=transform)

    return make
