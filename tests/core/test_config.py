from dataclasses import dataclass, field

import pytest

from terralite.config import dump_yaml, parse_overrides, resolve_config
from terralite.errors import TerraLiteError


@dataclass
class Optim:
    name: str = "sgd"
    lr: float = 0.01


@dataclass
class Cfg:
    epochs: int = 10
    optim: Optim = field(default_factory=Optim)
    crops: list[int] = field(default_factory=lambda: [512])
    amp: str | None = None


def test_overrides_are_typed_and_nested():
    assert parse_overrides(["optim.lr=0.5", "epochs=3", "amp=bf16"]) == {"optim": {"lr": 0.5}, "epochs": 3, "amp": "bf16"}


def test_resolve_layers_preset_yaml_and_overrides(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("epochs: 7\noptim:\n  name: adamw\n")
    cfg = resolve_config(Cfg, yaml_file, ["optim.lr=1"], base={"epochs": 5, "crops": [256, 256]})
    assert cfg.epochs == 7
    assert cfg.optim == Optim("adamw", 1.0)  # int 1 becomes float 1.0
    assert cfg.crops == [256, 256]
    assert "name: adamw" in dump_yaml(cfg)


def test_unknown_key_is_named():
    with pytest.raises(TerraLiteError, match="optim.momentum"):
        resolve_config(Cfg, overrides=["optim.momentum=0.9"])


def test_wrong_type_is_named():
    with pytest.raises(TerraLiteError, match="'epochs' must be int"):
        resolve_config(Cfg, overrides=["epochs=many"])


def test_bad_override_syntax():
    with pytest.raises(TerraLiteError, match="key=value"):
        parse_overrides(["epochs"])


def test_missing_yaml(tmp_path):
    with pytest.raises(TerraLiteError, match="does not exist"):
        resolve_config(Cfg, tmp_path / "nope.yaml")
