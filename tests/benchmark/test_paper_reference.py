"""Our baselines are the paper's: parameters equal Table 3's, and `profile --reference` prints both sides."""

import json

import pytest

from terralite.benchmark.paper_reference import PAPER_BASELINES, paper_row_for
from terralite.benchmark.profiler import count_all_params
from terralite.benchmark.zoo import BASELINES
from terralite.cli import main

LINKED = [row for row in PAPER_BASELINES if row.zoo_name]


def test_every_link_names_a_zoo_entry():
    assert {row.zoo_name for row in LINKED} == {"unet-vgg11", "unet-resnet34", "unet-efficientnet-b4", "segformer-mitb5"}
    assert {row.zoo_name for row in LINKED} <= set(BASELINES.names())
    assert paper_row_for("segformer-mitb5-d768") is None  # the 768-channel decoder is another network


@pytest.mark.parametrize("row", LINKED, ids=lambda r: r.zoo_name)
def test_params_equal_the_papers(row):
    # 8 classes, RGB: the paper's setting; every parameter of these networks runs in the forward
    params_m = count_all_params(BASELINES.get(row.zoo_name)(3, 8)) / 1e6
    assert abs(params_m - row.params_m) / row.params_m < 0.005, (row.zoo_name, params_m, row.params_m)


def test_segformer_decoders():
    assert count_all_params(BASELINES.get("segformer-mitb5")(3, 8)) == 81_970_888  # smp default: the paper's 81.97 M
    assert count_all_params(BASELINES.get("segformer-mitb5-d768")(3, 8)) == 84_599_496


@pytest.mark.slow
def test_unlinked_rows_have_no_zoo_match():
    """A paper row without a link really has no zoo network of its size (else it should be linked)."""
    counts = {name: count_all_params(BASELINES.get(name)(3, 8)) / 1e6 for name in BASELINES.names()}
    for row in PAPER_BASELINES:
        if row.zoo_name is None:
            close = [n for n, p in counts.items() if abs(p - row.params_m) / row.params_m < 0.005]
            assert not close, (row.method, row.backbone, close)


def test_profile_reference_json_and_table(capsys):
    assert main(["profile", "unet-resnet34", "unet-resnet18", "--size", "64", "--reference", "--json"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    paper = first["paper"]
    assert paper["method"] == "U-Net ResNet-34" and paper["params_m"] == 24.44 and paper["gflops"] == 126.68
    assert paper["params_diff_pct"] == pytest.approx((first["params_m"] - 24.44) / 24.44 * 100)
    assert abs(paper["params_diff_pct"]) < 0.5
    assert paper["flops_diff_pct"] == pytest.approx((first["gmacs"] - 126.68) / 126.68 * 100)
    assert paper["counter"] == "paper (hook-based counter)" and paper["ours_counter"] == "fvcore GMACs at 1x3x64x64"
    assert second["paper"] is None  # U-Net ResNet-18 is not in Table 3
    assert main(["profile", "unet-resnet34", "unet-resnet18", "--size", "64", "--reference"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("  paper U-Net ResNet-34: params 24.44 M (ours -0.01 %), FLOPs 126.68 G [paper (hook-based counter)] "
                               "vs ours [fvcore GMACs at 1x3x64x64]")
    assert lines[4] == "  paper: not in the OEM paper's Table 3"
    assert main(["profile", "unet-resnet18", "--size", "64", "--json"]) == 0
    assert "paper" not in json.loads(capsys.readouterr().out)  # only with --reference
