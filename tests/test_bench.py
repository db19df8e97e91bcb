import json
import subprocess

import pytest
import torch

from labkit import train
from labkit.bench import quality, reports, speed
from labkit.bench.quality import parse_settings, quality_report_name
from labkit.bench.speed import speed_report_name
from labkit.cli import EXIT_INTERRUPTED, main
from labkit.config import make_config


def test_speed_benchmark_measures_both_models_and_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "speed", "--profile", "smoke", "--image-size", "32", "--batch-size", "2", "--steps", "1"]) == 0
    report = json.loads((tmp_path / "reports" / "bench" / "speed_smoke_32px_batch2_float32_on_cpu.json").read_text())
    assert [row["model"] for row in report["rows"]] == ["unet", "resnet34_unet"]
    assert all(row["train_model_only"] > 0 and row["train_end_to_end"] > 0 and row["inference"] > 0
               for row in report["rows"])
    assert "img/s" in capsys.readouterr().out


def test_quality_benchmark_reports_valid_and_test_dice(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "quality", "--data-path", str(synthetic_root), "--profile", "smoke",
                 "--models", "unet", "--epochs", "1"]) == 0
    row = json.loads((tmp_path / "reports" / "bench" / "quality_smoke_unet_epochs-1_on_cpu.json").read_text())["rows"][0]
    for key in ("valid_dice", "valid_dice_tta", "test_dice", "test_dice_original", "test_dice_original_tta"):
        assert 0 <= row[key] <= 1
    assert row["epochs"] == 1 and row["train_seconds"] > 0
    assert row["config"]["epochs"] == 1 and row["config"]["profile"] == "smoke"


def test_quality_benchmark_applies_settings_and_summarizes_seeds(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "quality", "--data-path", str(synthetic_root), "--profile", "smoke", "--models", "unet",
                 "--set", "epochs=1", "--set", "border=ignore", "--seeds", "0", "1"]) == 0
    report = json.loads((tmp_path / "reports" / "bench" / "quality_smoke_unet_seeds-0-1_border-ignore_epochs-1_on_cpu.json").read_text())
    assert report["overrides"] == {"epochs": 1, "border": "ignore"}
    assert [row["seed"] for row in report["rows"]] == [0, 1]
    valid = [row["valid_dice"] for row in report["rows"]]
    assert report["summary"]["unet"]["valid_dice"]["mean"] == pytest.approx(sum(valid) / 2)
    assert "over 2 run(s)" in capsys.readouterr().out


def test_quality_benchmark_keeps_finished_runs_when_stopped(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    trained = []

    def quality_or_stop(config, data_root, device):
        if trained:
            raise KeyboardInterrupt  # a time limit or Ctrl-C during the second run
        trained.append(config.seed)
        return {"model": config.model, "seed": config.seed, "profile": config.profile, "valid_dice": 0.5}

    monkeypatch.setattr(quality, "quality_of", quality_or_stop)
    assert main(["bench", "quality", "--data-path", str(synthetic_root), "--profile", "smoke",
                 "--seeds", "0", "1"]) == EXIT_INTERRUPTED
    report = json.loads((tmp_path / "reports" / "bench" / "quality_smoke_seeds-0-1_on_cpu.json").read_text())
    assert [row["seed"] for row in report["rows"]] == [0]
    assert (report["runs_finished"], report["runs_planned"]) == (1, 4)


def test_an_interrupted_training_run_stops_the_quality_benchmark(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "fit", lambda config: train.TrainResult(run_dir=tmp_path, interrupted=True))
    with pytest.raises(KeyboardInterrupt):
        quality.quality_of(make_config("unet", "smoke"), None, "cpu")


def test_quality_reports_of_other_models_or_seeds_do_not_overwrite_each_other():
    names = {quality_report_name("cpu", models, seeds, {})
             for models in (["unet", "resnet34_unet"], ["unet"], ["resnet34_unet"]) for seeds in ([0], [0, 1, 2])}
    assert len(names) == 6


def test_quality_report_names_spell_out_model_arguments():
    name = quality_report_name("cpu", ["unet"], [0], {"model_kwargs": {"deep_supervision": True}, "lr": 0.001})
    assert name == "quality_cpu_unet_lr-0.001_model_kwargs-deep_supervision-True"


def test_speed_reports_of_other_batches_precisions_or_compilation_do_not_overwrite_each_other():
    names = {speed_report_name("gpu", 256, batch, ["unet", "resnet34_unet"], precisions, compiled)
             for batch in (32, 64) for precisions in (["fp32"], ["fp32", "bf16"])
             for compiled in (False, True)}
    assert len(names) == 8


def test_quality_benchmark_refuses_a_setting_without_a_value():
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_settings(["augment_strength"])


def test_settings_are_read_as_json_else_as_text():
    assert parse_settings(["lr=0.002", "border=ignore", 'model_kwargs={"base_width": 32}']) == {
        "lr": 0.002, "border": "ignore", "model_kwargs": {"base_width": 32}}


def test_a_report_is_labelled_by_the_device_measured_not_by_what_the_machine_has(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine that measured its CPU
    cpu = torch.device("cpu")
    reports.save_report("speed_test", {"machine": reports.machine(cpu)}, cpu)
    report = json.loads((tmp_path / "reports" / "bench" / "speed_test_on_cpu.json").read_text())
    assert report["machine"]["device"].startswith("cpu")


def test_a_speed_report_measured_with_the_default_malloc_is_named_apart(monkeypatch):
    from labkit import allocator

    monkeypatch.setattr(allocator, "applied", True)
    tuned = speed_report_name("cpu", 128, 16, ["unet"], ["fp32"], False)
    monkeypatch.setattr(allocator, "applied", False)
    assert speed_report_name("cpu", 128, 16, ["unet"], ["fp32"], False) == tuned + "_default-malloc"


def test_quality_cross_validates_over_folds_on_valid_only(synthetic_root, tmp_path, monkeypatch, capsys):
    """--folds K trains once per fold, scores each run on its held-out fold, and never on test."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    scored = []
    real_evaluate = __import__("labkit.evaluate", fromlist=["evaluate"]).evaluate
    monkeypatch.setattr("labkit.evaluate.evaluate", lambda *a, **k: scored.append((k["split"], k["tta"])) or real_evaluate(*a, **k))
    quality.run_quality(data_root=str(synthetic_root), profile="smoke", models=["unet"], epochs=1,
                        settings=["image_size=32", "train_limit=8"], seeds=[0], device="cpu", folds=3)
    report = json.loads(next((tmp_path / "reports" / "bench").glob("quality_smoke_unet_folds-3_*.json")).read_text())
    assert [row["valid_fold"] for row in report["rows"]] == [0, 1, 2] and report["runs_finished"] == 3
    assert scored == [("valid", False)] * 3
    assert "test_dice" not in report["summary"]["unet"] and "last_valid_dice" in report["summary"]["unet"]


def write_quality_report(tmp_path, name: str, config) -> "Path":
    path = tmp_path / "reports" / "bench" / f"{name}_on_cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": [{"model": config.model, "seed": 0, "config": config.to_dict()}]}))
    return path


def test_a_report_of_another_recipe_under_the_same_name_is_refused_not_overwritten(tmp_path, monkeypatch, capsys):
    """After a profile changes, the same command means another recipe: the earlier runs are kept."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setattr(quality, "quality_of", lambda *args, **kwargs: pytest.fail("trained"))
    then = make_config("unet", "smoke", epochs=1, image_size=48)  # the profile as it was
    path = write_quality_report(tmp_path, "quality_smoke_unet_epochs-1", then)
    before = path.read_text()
    assert main(["bench", "quality", "--profile", "smoke", "--models", "unet", "--epochs", "1"]) != 0
    message = capsys.readouterr().err
    assert path.name in message and "image_size 48 there, 64 now" in message and "--set" in message
    assert path.read_text() == before


def test_a_report_of_the_same_recipe_is_run_again_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setattr(quality, "quality_of", lambda config, *args, **kwargs: {
        "model": config.model, "seed": config.seed, "valid_dice": 0.5, "last_valid_dice": 0.5, "train_seconds": 1.0,
        "config": config.to_dict()})
    path = write_quality_report(tmp_path, "quality_smoke_unet_epochs-1", make_config("unet", "smoke", epochs=1))
    assert main(["bench", "quality", "--profile", "smoke", "--models", "unet", "--epochs", "1"]) == 0
    assert json.loads(path.read_text())["rows"][0]["valid_dice"] == 0.5


def machine_counted(monkeypatch, module):
    """Make each `machine()` of `module` return how many times it has been called, itself included."""
    calls = []
    monkeypatch.setattr(module, "machine", lambda device: calls.append(device) or {"call": len(calls)})


def test_a_quality_report_records_the_machine_and_code_as_its_run_started(tmp_path, monkeypatch):
    """Not as its last fold ended: an hour of folds can cross midnight or outlast an edit of labkit."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setattr(quality, "quality_of", lambda config, *args, **kwargs: {
        "model": config.model, "seed": config.seed, "valid_fold": config.valid_fold, "valid_dice": 0.5,
        "last_valid_dice": 0.5, "train_seconds": 1.0, "config": config.to_dict()})
    machine_counted(monkeypatch, quality)
    quality.run_quality(data_root=None, profile="smoke", models=["unet"], epochs=1, settings=[], seeds=[0],
                        device="cpu", folds=3)
    report = json.loads(next((tmp_path / "reports" / "bench").glob("quality_smoke_unet_folds-3_*.json")).read_text())
    assert report["runs_finished"] == 3 and report["machine"] == {"call": 1}


def test_a_speed_report_records_the_machine_and_code_as_its_run_started(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    machine_counted(monkeypatch, speed)
    assert main(["bench", "speed", "--profile", "smoke", "--image-size", "32", "--batch-size", "2", "--steps", "1"]) == 0
    report = json.loads(next((tmp_path / "reports" / "bench").glob("speed_smoke_32px_*.json")).read_text())
    assert len(report["rows"]) == 2 and report["machine"] == {"call": 1}


def git_checkout_with_labkit(root):
    """A git repository holding labkit/module.py and README.md, committed."""
    (root / "labkit").mkdir(parents=True)
    (root / "labkit" / "module.py").write_text("VALUE = 1\n")
    (root / "README.md").write_text("notes\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["add", "."], [*identity, "commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(root), *command], check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_report_names_the_commit_it_ran_from_and_whether_labkit_differed_from_it(tmp_path):
    commit = git_checkout_with_labkit(tmp_path)
    assert reports.code_version(tmp_path) == {"commit": commit, "labkit_changed": False}
    (tmp_path / "README.md").write_text("more notes\n")  # not labkit's code: the runs are still that commit's
    assert reports.code_version(tmp_path) == {"commit": commit, "labkit_changed": False}
    (tmp_path / "labkit" / "module.py").write_text("VALUE = 2\n")
    assert reports.code_version(tmp_path) == {"commit": commit, "labkit_changed": True}


def test_a_report_made_outside_a_git_checkout_says_its_code_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # even where the temporary folder is in a clone
    (tmp_path / "labkit").mkdir()
    assert reports.code_version(tmp_path) is None


def test_a_report_records_the_code_of_the_labkit_that_wrote_it():
    assert reports.machine(torch.device("cpu"))["code"] == reports.code_version()


def test_labkit_installed_inside_another_repository_does_not_take_that_repository_s_commit(tmp_path):
    git_checkout_with_labkit(tmp_path)
    installed = tmp_path / ".venv" / "lib" / "site-packages"  # what parents[2] of an installed reports.py is
    (installed / "labkit").mkdir(parents=True)
    assert reports.code_version(installed) is None
