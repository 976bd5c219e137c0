import subprocess
import sys

import pytest

from terralite.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: terralite " + name in capsys.readouterr().out


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "required" in capsys.readouterr().err


def test_parser_builds_without_importing_torch():
    # --help must stay fast: subcommand modules import heavy libraries inside run(), not at import.
    code = "import sys; from terralite.cli import build_parser; build_parser(); print(sorted(m for m in ('torch', 'rasterio', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _sub_parsers():
    from terralite.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def _leaf_parsers(prefix, parser):
    """``(command words, parser)`` of every runnable (sub-)subcommand, e.g. ``("search fasterseg", parser)``."""
    nested = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not nested:
        return [(prefix, parser)]
    return [leaf for name, sub in nested[0].choices.items() for leaf in _leaf_parsers(f"{prefix} {name}", sub)]


LEAVES = [leaf for name, parser in _sub_parsers().items() for leaf in _leaf_parsers(name, parser)]


@pytest.mark.parametrize("name, parser", LEAVES, ids=[name for name, _ in LEAVES])
def test_every_option_has_help_and_no_batch_flag_is_visible(name, parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"terralite {name} {action.option_strings or action.dest} has no help"
        if action.help is not argparse.SUPPRESS:
            assert "--batch" not in action.option_strings, f"terralite {name} shows --batch; use --batch-size"


@pytest.mark.parametrize("name", ["train", "search fasterseg", "search sparsemask", "prune", "distill", "quantize"])
def test_every_job_takes_config_set_and_print_config(name):
    parser = dict(LEAVES)[name]
    options = {o for a in parser._actions for o in a.option_strings}
    assert {"--config", "--set", "--print-config", "--out"} <= options


def test_tta_mode_names_are_the_core_modes():
    from terralite.benchmark.tta import BENCH_TTA_MODES
    from terralite.cli import TTA_MODE_NAMES
    from terralite.tta import TTA_MODES

    assert TTA_MODE_NAMES == tuple(TTA_MODES)
    assert set(TTA_MODES) < set(BENCH_TTA_MODES)  # the bench times the same modes, plus hflip-batched
    for name in ("eval", "predict"):
        tta = next(a for a in _sub_parsers()[name]._actions if a.dest == "tta")
        assert tuple(tta.choices) == TTA_MODE_NAMES


def test_export_help_states_the_library_tolerances():
    from terralite.benchmark.export_verify import TOLERANCE_FP16, TOLERANCE_FP32
    from terralite.cli import export

    assert (export._TOLERANCE_FP32, export._TOLERANCE_FP16) == (TOLERANCE_FP32, TOLERANCE_FP16)


@pytest.mark.parametrize("argv, dest, value", [
    (["eval", "m.pt", "--data", "d", "--json", "m.json"], "out", "m.json"),  # old spelling of --out
    (["eval", "m.pt", "--data", "d", "--out", "m.json"], "out", "m.json"),
    (["predict", "m.onnx", "in.tif", "--out", "o.tif", "--batch", "4"], "batch_size", 4),
    (["predict", "m.onnx", "in.tif", "--out", "o.tif"], "batch_size", 1),
    (["bench", "m", "--out", "r.jsonl", "--batch", "2"], "batch_size", 2),
    (["bench", "m", "--out", "r.jsonl"], "batch_size", 1),
    (["throughput", "--model", "m", "--data", "d", "--batch", "2"], "batch_size", 2),
    (["throughput", "--model", "m", "--data", "d", "--batch-size", "3"], "batch_size", 3),
])
def test_old_flag_spellings_still_parse(argv, dest, value):
    from terralite.cli import build_parser

    assert getattr(build_parser().parse_args(argv), dest) == value
