import pytest

from terralite.errors import TerraLiteError
from terralite.registry import Registry


def test_register_get_and_names():
    reg = Registry("widget")
    reg.register("b", 2)

    @reg.register("a")
    def make_a():
        return 1

    assert reg.get("a") is make_a
    assert reg.get("b") == 2
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "zzz" not in reg
    assert len(reg) == 2


def test_duplicate_name_raises():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a", 2)


def test_unknown_name_lists_valid_ones():
    reg = Registry("widget")
    reg.register("alpha", 1)
    reg.register("beta", 2)
    with pytest.raises(TerraLiteError, match=r"unknown widget 'gamma'; valid names: alpha, beta"):
        reg.get("gamma")


def test_entry_point_group_feeds_model_kinds():
    from terralite.models import MODEL_KINDS

    # The model kinds are declared as entry points in pyproject.toml and load lazily.
    assert {"baseline", "fasterseg", "sparsemask", "pruned"} <= set(MODEL_KINDS.names())
