import json

from terralite.cli import main


def test_throughput_cli_reports_images_per_second_and_wait_share(synthetic_root, tiny_model_name, tmp_path, capsys):
    out = tmp_path / "tp.json"
    rc = main(["throughput", "--model", tiny_model_name, "--data", str(synthetic_root), "--crop", "32", "--batch", "2",
               "--steps", "3", "--warmup", "1", "--workers", "0", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["images_per_s"] > 0 and 0 <= result["data_wait_share"] <= 1
    assert (result["crop"], result["batch"], result["steps"], result["workers"]) == (32, 2, 3, 0)
    assert result["step_ms_mean"] >= result["data_wait_ms_mean"] > 0
    assert "images/s" in capsys.readouterr().out
