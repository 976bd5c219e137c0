"""One config path: flags set typed fields as typed, ``--print-config`` round-trips, old keys migrate."""

import pytest
import yaml

from terralite.cli import main
from terralite.config import resolve_config
from terralite.engine.presets import TrainConfig, resolve_train_config
from terralite.errors import TerraLiteError
from terralite.nas.fasterseg.config import FasterSegSearchConfig, resolve_search_config as resolve_fasterseg
from terralite.nas.sparsemask.search import SparseMaskSearchConfig, resolve_search_config as resolve_sparsemask

JOBS = {
    "train": ["train", "--model", "unet-mobilenetv2", "--preset", "fasterseg"],
    "search fasterseg": ["search", "fasterseg", "--preset", "oem-cpu", "--target-fps", "14"],
    "search sparsemask": ["search", "sparsemask", "--preset", "tiny", "--lambda", "0.2"],
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_print_config_round_trips_and_keeps_flag_types(job, tmp_path, capsys):
    argv = [*JOBS[job], "--data", "off", "--out", "2024", "--set", "seed=3"]
    if job == "search fasterseg":
        argv += ["--lut", "null"]
    assert main([*argv, "--print-config"]) == 0
    printed = capsys.readouterr().out
    cfg = yaml.safe_load(printed)
    assert cfg["out"] == "2024" and cfg["data"]["root"] == "off" and cfg["seed"] == 3  # typed as given, not YAML-parsed
    if job == "search fasterseg":
        assert cfg["lut"] == "null" and cfg["target"]["fps"] == 14.0 and cfg["crop"] == 64
    saved = tmp_path / "config.yaml"
    saved.write_text(printed)
    assert main([*JOBS[job][:2 if job.startswith("search") else 1], "--config", str(saved), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    assert not (tmp_path / "2024").exists()  # printing runs nothing


def test_flags_override_yaml_and_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\nbatch_size: 4\n")
    cfg = resolve_train_config(None, str(path), ["epochs=7", "optim.lr=0.5"], **{"epochs": 9, "data.root": "d", "crop": None})
    assert (cfg.epochs, cfg.batch_size, cfg.optim.lr, cfg.data.root, cfg.crop) == (9, 4, 0.5, "d", 512)


def test_configs_written_by_earlier_versions_still_load():
    old_train = {"model": "m", "data": "/data/oem", "out": "r", "bands": [0, 1, 2], "skip_missing": True, "max_steps_per_epoch": 4}
    cfg = resolve_config(TrainConfig, None, None, base=old_train)
    assert (cfg.data.root, cfg.data.bands, cfg.data.skip_missing, cfg.steps_per_epoch) == ("/data/oem", [0, 1, 2], True, 4)
    old_fs = {"data": "/d", "out": "o", "amp": True, "steps_per_epoch": None}
    fs = resolve_config(FasterSegSearchConfig, None, None, base=old_fs)
    assert (fs.data.root, fs.amp, fs.steps_per_epoch) == ("/d", "auto", 0)
    sm = resolve_config(SparseMaskSearchConfig, None, None, base={"data": "/d", "out": "o", "max_steps_per_epoch": 2})
    assert (sm.data.root, sm.steps_per_epoch) == ("/d", 2)


def test_search_resolvers_take_presets_from_yaml_and_flags(tmp_path):
    assert resolve_fasterseg("tiny", None, None, **{"data.root": "d", "out": "o"}).crop == 64
    assert resolve_sparsemask(None, None, ["preset=tiny"], **{"data.root": "d"}).sparsity_weight == 0.5
    with pytest.raises(TerraLiteError, match="unknown search preset 'huge'"):
        resolve_fasterseg("huge")


@pytest.mark.parametrize("value, message", [("x=[1,", "not valid YAML"), ("novalue", "must look like key=value"),
                                            ("a..b=1", "malformed")])
def test_bad_overrides_are_one_clear_line(value, message, capsys):
    assert main(["train", "--model", "m", "--data", "d", "--out", "o", "--set", value, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_config_pointing_at_a_folder_is_refused(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path), "--print-config"]) == 2
    assert "is a folder" in capsys.readouterr().err
