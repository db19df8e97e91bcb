import json

from labkit.cli import main


def test_speed_benchmark_measures_both_models_and_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "speed", "--profile", "smoke", "--image-size", "32", "--batch-size", "2", "--steps", "1"]) == 0
    report = json.loads((tmp_path / "reports" / "bench" / "speed_smoke_32px_on_cpu.json").read_text())
    assert [row["model"] for row in report["rows"]] == ["unet", "resnet34_unet"]
    assert all(row["train_model_only"] > 0 and row["train_end_to_end"] > 0 and row["inference"] > 0
               for row in report["rows"])
    assert "img/s" in capsys.readouterr().out


def test_quality_benchmark_reports_valid_and_test_dice(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "quality", "--data-path", str(synthetic_root), "--profile", "smoke",
                 "--models", "unet", "--epochs", "1"]) == 0
    row = json.loads((tmp_path / "reports" / "bench" / "quality_smoke_on_cpu.json").read_text())["rows"][0]
    for key in ("valid_dice", "valid_dice_tta", "test_dice", "test_dice_original", "test_dice_original_tta"):
        assert 0 <= row[key] <= 1
    assert row["epochs"] == 1 and row["train_seconds"] > 0
