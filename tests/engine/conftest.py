import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so test modules can import tiny_model

from tiny_model import NAME, register  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_name():
    """Registers the tiny baseline for the engine tests and removes it afterwards, so that tests iterating
    over every registered baseline later in the session never see it (Registry has no public removal)."""
    from terralite.benchmark.zoo import BASELINES

    register()
    yield NAME
    BASELINES._entries.pop(NAME, None)
