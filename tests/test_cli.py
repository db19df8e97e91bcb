import json
import subprocess
import sys

import pytest

from labkit.checkpoint import load_checkpoint
from labkit.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs")
    code = main(["train", "--model", "unet", "--profile", "smoke", "--data-path", str(synthetic_root),
                 "--output", str(output), "--epochs", "1", "--image-size", "32"])
    assert code == 0
    return output / "unet-smoke" / "best.pt"


@pytest.mark.parametrize("command", ["download", "synthetic", "train", "evaluate", "predict", "workbook", "bench"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: labkit" in capsys.readouterr().out


def test_train_says_where_everything_was_saved(trained, capsys):
    assert trained.is_file() and (trained.parent / "history.csv").is_file()


def test_evaluate_prints_a_table_and_writes_json(trained, synthetic_root, tmp_path, capsys):
    output = tmp_path / "scores.json"
    assert main(["evaluate", "--checkpoint", str(trained), "--split", "valid", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "resized" in printed and "original" in printed
    saved = json.loads(output.read_text())
    assert saved["info"]["split"] == "valid" and 0 <= saved["metrics"]["original"]["dice"] <= 1


def test_predict_writes_masks_for_a_folder(trained, synthetic_root, tmp_path):
    photos = sorted((synthetic_root / "images").glob("*.jpg"))[:2]
    assert main(["predict", *map(str, photos), "--checkpoint", str(trained), "--output", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*_mask.png"))) == 2


def test_train_with_deep_supervision_keeps_the_profile_widths(synthetic_root, tmp_path):
    assert main(["train", "--profile", "smoke", "--data-path", str(synthetic_root), "--output", str(tmp_path),
                 "--epochs", "1", "--image-size", "32", "--deep-supervision"]) == 0
    saved = load_checkpoint(tmp_path / "unet-smoke" / "best.pt")
    assert saved["model_kwargs"] == {"base_width": 8, "deep_supervision": True}


def test_synthetic_command_writes_the_official_layout(tmp_path):
    assert main(["synthetic", "--output", str(tmp_path / "s"), "--count", "6", "--size", "48"]) == 0
    assert (tmp_path / "s" / "annotations" / "trainval.txt").is_file()


def test_missing_checkpoint_exits_with_one_line_and_no_traceback(tmp_path):
    finished = run_cli("evaluate", "--checkpoint", str(tmp_path / "missing.pt"))
    assert finished.returncode == 1
    assert finished.stderr.strip().count("\n") == 0 and "missing.pt" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_unknown_profile_exits_with_one_line(tmp_path):
    finished = run_cli("train", "--profile", "fastest", "--output", str(tmp_path))
    assert finished.returncode == 1 and "unknown profile 'fastest'" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_unknown_model_is_refused_by_the_parser():
    finished = run_cli("train", "--model", "vgg")
    assert finished.returncode == 2 and "invalid choice: 'vgg'" in finished.stderr


def test_pipeline_runs_on_the_real_photo_sample(shared_sample, tmp_path, capsys):
    """train -> evaluate -> predict on real photos, including the palette GIF named .jpg that no
    split lists (Abyssinian_34) and the RGBA PNG named .jpg in the test split (Abyssinian_5)."""
    assert main(["train", "--model", "resnet34_unet", "--profile", "smoke", "--data-path", str(shared_sample),
                 "--output", str(tmp_path), "--epochs", "1", "--image-size", "32"]) == 0
    checkpoint = tmp_path / "resnet34_unet-smoke" / "best.pt"
    output = tmp_path / "scores.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(output)]) == 0
    scores = json.loads(output.read_text())
    assert scores["info"]["images"] == 101 and "Abyssinian_5" in {row["name"] for row in scores["per_image"]}
    photos = [shared_sample / "images" / name for name in ("Abyssinian_34.jpg", "Abyssinian_82.jpg")]
    assert main(["predict", *map(str, photos), "--checkpoint", str(checkpoint), "--output", str(tmp_path / "p")]) == 0
    assert len(list((tmp_path / "p").glob("*_cutout.png"))) == 2
