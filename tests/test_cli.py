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


def every_command(commands=None, path=()):
    from labkit.cli import COMMANDS

    for command in COMMANDS if commands is None else commands:
        yield (*path, command.name)
        yield from every_command(command.commands, (*path, command.name))


@pytest.mark.parametrize("command", list(every_command()), ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: labkit" in capsys.readouterr().out


def test_every_command_a_user_knows_is_registered():
    assert set(every_command()) >= {("download",), ("synthetic",), ("train",), ("evaluate",), ("predict",),
                                     ("workbook",), ("cache",), ("release",), ("grade",), ("bench", "speed"),
                                     ("bench", "quality"), ("bench", "gpu-check"), ("bench", "rehearsal")}


@pytest.mark.parametrize("where", ["before the command", "after the subcommand"])
def test_debug_may_stand_anywhere_on_the_line(where, tmp_path):
    flags = ["bench", "rehearsal", "--checkpoint", str(tmp_path / "missing.pt")]
    line = ["--debug", *flags] if where == "before the command" else [*flags, "--debug"]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        main(line)


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


def test_unknown_profile_is_refused_by_the_parser_with_the_choices(tmp_path):
    finished = run_cli("train", "--profile", "fastest", "--output", str(tmp_path))
    assert finished.returncode == 2 and "invalid choice: 'fastest'" in finished.stderr and "smoke" in finished.stderr
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


@pytest.mark.parametrize("flags, setting", [(["--batch-size", "0"], "batch_size"), (["--epochs", "0"], "epochs"),
                                            (["--epochs", "-1"], "epochs"), (["--batch-size", "-4"], "batch_size"),
                                            (["--lr", "0"], "lr")])
def test_a_numeric_setting_out_of_range_ends_in_one_line_before_any_photo_is_decoded(flags, setting, tmp_path,
                                                                                       monkeypatch, capsys):
    from labkit import data

    monkeypatch.setattr(data, "load_split", lambda *a, **k: pytest.fail("decoded before checking the settings"))
    assert main(["train", "--profile", "smoke", "--output", str(tmp_path), *flags]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{setting} (--{setting.replace('_', '-')}) must be" in error


def test_evaluate_with_a_batch_size_of_zero_ends_in_one_line(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained), "--batch-size", "0"]) == 1
    assert "batch_size (--batch-size) must be a whole number >= 1, got 0" in capsys.readouterr().err


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    result = run_cli("train", "--profile", "smoke", "--batch-size", "0", "--output", str(tmp_path), "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "batch_size" in result.stderr


def test_an_unexpected_error_is_not_hidden_behind_one_line(trained, monkeypatch):
    """A load_state_dict mismatch or a device assert is a bug to report, not a user error."""
    from labkit import evaluate

    def mismatch(*args, **kwargs):
        raise RuntimeError("Error(s) in loading state_dict for UNet: size mismatch")

    monkeypatch.setattr(evaluate, "evaluate", mismatch)
    with pytest.raises(RuntimeError, match="size mismatch"):
        main(["evaluate", "--checkpoint", str(trained)])


def test_cuda_out_of_memory_suggests_a_smaller_batch(trained, monkeypatch, capsys):
    import torch

    from labkit import evaluate

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(evaluate, "evaluate", out_of_memory)
    assert main(["evaluate", "--checkpoint", str(trained)]) == 1
    assert "smaller --batch-size" in capsys.readouterr().err


def test_a_left_out_flag_keeps_the_functions_own_default(trained, monkeypatch, tmp_path):
    from labkit import evaluate

    calls = []

    def record(*args, **kwargs):
        calls.append(kwargs)
        raise ValueError("stop after the call")

    monkeypatch.setattr(evaluate, "evaluate", record)
    assert main(["evaluate", "--checkpoint", str(trained), "--output", str(tmp_path / "out.json")]) == 1
    assert "batch_size" not in calls[0] and "device" not in calls[0]


def test_a_checkpoint_trained_with_a_relative_data_path_evaluates_from_another_folder(synthetic_root, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.chdir(synthetic_root.parent)
    assert main(["train", "--profile", "smoke", "--data-path", synthetic_root.name, "--output", str(tmp_path),
                 "--epochs", "1", "--image-size", "32"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--checkpoint", str(tmp_path / "unet-smoke" / "best.pt"), "--split", "valid",
                 "--output", str(tmp_path / "scores.json")]) == 0


def test_synthetic_command_writes_a_set_shaped_like_the_full_dataset(tmp_path, capsys):
    assert main(["synthetic", "--like-full", "--output", str(tmp_path / "full"), "--count", "74", "--size", "32",
                 "--workers", "2"]) == 0
    assert "37 breeds, 37 trainval and 37 test photos" in capsys.readouterr().out
    assert len(list((tmp_path / "full" / "images").glob("*.jpg"))) == 74
