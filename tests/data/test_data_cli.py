import json
import shutil

import pytest

from terralite.cli import main
from terralite.data.openearthmap import list_samples


def test_synth_check_stats(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--tiles", "3", "--size", "64", "--seed", "2"]) == 0
    assert "wrote 3 tiles of 64 px" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "OK: 3 images"
    assert main(["data", "check", str(out), "--split", "train"]) == 0
    assert capsys.readouterr().out.strip() == "OK: 1 images"
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_images"] == 3 and len(stats["bands"]["mean"]) == 3
    assert all(stats["class_pixels"][name] > 0 for name in stats["class_pixels"])
    assert main(["data", "stats", str(out), "--split", "val"]) == 0
    table = capsys.readouterr().out
    assert "images: 1" in table and "developed space" in table


def test_check_lists_every_problem_and_fails(synthetic_root, tmp_path, capsys):
    root = tmp_path / "oem"
    shutil.copytree(synthetic_root, root)
    (first_image, _), (second_image, second_label) = list_samples(root, "train")[0][:2]
    first_image.unlink()
    shutil.copyfile(second_image, second_label)  # a 3-band label
    assert main(["data", "check", str(root)]) == 1
    captured = capsys.readouterr()
    assert f"{first_image}: listed in train.txt but missing" in captured.out
    assert f"{second_label}: label has 3 bands" in captured.out
    assert "FAILED: " in captured.err


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("terralite: error: dataset folder") and "\n" not in err
    with pytest.raises(SystemExit):
        main(["data", "synth"])
