"""`bench gpu-check`: a plan that fits six minutes, stages in their budgets, a report after each,
the data found wherever the tree has it, and an exit code that reflects the path checks."""

import json
import os
import time
from pathlib import Path

import pytest
import torch

from labkit.bench import check_data, check_stages, gpu_check
from labkit.cli import main

REPO = Path(__file__).resolve().parents[1]


def report_of(home: Path, smoke: bool = True) -> dict:
    name = "gpu_check_smoke_on_cpu.json" if smoke else "gpu_check_on_cpu.json"
    return json.loads((home / "reports" / "bench" / name).read_text())


def stage(name: str, budget: float, path_check: bool, results):
    """A stage that yields `results(context)`; the estimate is its budget."""
    return gpu_check.Stage(name, "a stage of a test", results, budget, lambda context: budget, path_check)


def test_the_gpu_check_runs_every_stage_in_its_smoke_form_on_a_cpu(synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "gpu-check", "--smoke", "--data-path", str(synthetic_root)]) == 0
    report = report_of(tmp_path)
    statuses = {result["stage"]: result["status"] for result in report["results"]}
    assert statuses == {"fit-bf16": "passed", "quality-unet": "measured", "quality-resnet34_unet": "measured",
                        "fit-fp16": "passed", "resume": "passed", "torchrun": "passed",
                        "speed-eager: unet": "measured", "speed-eager: resnet34_unet": "measured",
                        "speed-compiled: unet": "measured"}
    fp16 = next(result for result in report["results"] if result["stage"] == "fit-fp16")
    assert fp16["values"]["precision"] == "fp16" and fp16["values"]["loss_scaler"] is True
    torchrun = next(result for result in report["results"] if result["stage"] == "torchrun")
    assert torchrun["values"]["processes"] == {"count": 1, "backend": "gloo", "data_parallel": True,
                                               "sync_batch_norm": False}
    assert [row["stage"] for row in report["plan"]] == list(gpu_check.STAGES)
    assert "PASS resume" in capsys.readouterr().out


def test_the_whole_check_is_planned_to_fit_six_minutes_on_the_data_at_hand(shared_sample, synthetic_root, tmp_path):
    for root in (shared_sample, synthetic_root):
        context = check_stages.CheckContext(False, torch.device("cpu"), check_data.find_data(str(root)), tmp_path,
                                            budgets={name: stage.budget for name, stage in gpu_check.STAGES.items()})
        plan = gpu_check.make_plan(context, list(gpu_check.STAGES))
        assert sum(row["budget_seconds"] for row in plan) + gpu_check.STARTUP_SECONDS <= 360
        assert sum(row["estimate_seconds"] for row in plan) + gpu_check.STARTUP_SECONDS <= 360


def test_the_plan_is_printed_without_running_a_stage(shared_sample, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setattr(gpu_check, "run_stage", lambda *args: pytest.fail("a stage ran"))
    assert main(["bench", "gpu-check", "--plan", "--data-path", str(shared_sample)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "the real 301-photo sample" in lines[0]
    assert all(any(line.startswith(name) for line in lines) for name in gpu_check.STAGES)
    assert any(line.startswith("in all") and "360s" in line for line in lines)
    assert not (tmp_path / "reports").exists()


def test_a_stage_out_of_time_is_recorded_as_such_and_the_next_one_starts(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))

    def hangs(context):
        time.sleep(30)  # a compilation or a collective that does not come back
        yield

    def quick(context):
        yield check_stages.StageResult("fit-bf16", "passed", "done")

    monkeypatch.setattr(gpu_check, "SMOKE_BUDGET_SECONDS", 1)
    monkeypatch.setattr(gpu_check, "STAGES", {"resume": stage("resume", 1, True, hangs),
                                              "fit-bf16": stage("fit-bf16", 1, True, quick)})
    assert main(["bench", "gpu-check", "--smoke", "--data-path", str(synthetic_root), "--stages", "resume",
                 "fit-bf16"]) == 1
    results = report_of(tmp_path)["results"]
    assert [(result["stage"], result["status"]) for result in results] == [("resume", "out of time"),
                                                                          ("fit-bf16", "passed")]
    assert results[0]["detail"] == "stopped at its budget of 1 s"  # cut, not left to finish its 30 s


def test_the_report_is_written_after_each_stage(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    seen_by_the_second = []

    def first(context):
        yield check_stages.StageResult("fit-bf16", "passed", "done")

    def second(context):
        seen_by_the_second.extend(result["stage"] for result in report_of(tmp_path)["results"])
        raise RuntimeError("the run is cut off here")
        yield

    monkeypatch.setattr(gpu_check, "STAGES", {"fit-bf16": stage("fit-bf16", 10, True, first),
                                              "resume": stage("resume", 10, True, second)})
    main(["bench", "gpu-check", "--smoke", "--data-path", str(synthetic_root), "--stages", "fit-bf16", "resume"])
    assert seen_by_the_second == ["fit-bf16"]
    data = report_of(tmp_path)["data"]
    assert data["kind"] == "synthetic" and data["found"] == "--data-path"


def test_a_failing_path_check_fails_the_check_and_the_others_still_run(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))

    def broken(context):
        raise RuntimeError("device assert triggered")
        yield  # a generator, like every stage

    monkeypatch.setitem(gpu_check.STAGES, "resume", stage("resume", 10, True, broken))
    assert main(["bench", "gpu-check", "--smoke", "--data-path", str(synthetic_root),
                 "--stages", "resume", "fit-bf16"]) == 1
    results = report_of(tmp_path)["results"]
    assert [(r["stage"], r["status"]) for r in results] == [("resume", "failed"), ("fit-bf16", "passed")]
    assert "RuntimeError: device assert triggered" in results[0]["detail"]


def test_a_quality_target_missed_is_recorded_but_does_not_fail_the_check(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))

    def missed(context):
        yield check_stages.StageResult("quality-unet", "measured", "test Dice 0.50; target 0.90 MISSED",
                                    {"met": False})

    monkeypatch.setitem(gpu_check.STAGES, "quality-unet", stage("quality-unet", 10, False, missed))
    assert main(["bench", "gpu-check", "--smoke", "--data-path", str(synthetic_root), "--stages", "quality-unet"]) == 0


def test_the_samples_quality_targets_lie_below_what_the_cpu_profile_measured_on_it():
    """0.90 cannot be reached on the 301-photo sample; its targets come from what was measured there."""
    evaluation = json.loads((REPO / "reports" / "results.json").read_text())["evaluation"]
    targets = check_data.QUALITY_TARGETS["sample"].test_dice
    for model, target in targets.items():
        measured = evaluation[model]["test"]["original"]["dice"]
        standard_error = evaluation[model]["test_dice_std"] / evaluation[model]["test_images"] ** 0.5
        assert measured - 4 * standard_error < target < measured


def test_the_check_finds_the_sample_in_a_shared_folder_inside_or_beside_the_project(shared_sample, tmp_path,
                                                                                   monkeypatch, capsys):
    for shared in (tmp_path / "project" / "shared", tmp_path / "shared"):
        monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "project"))
        (shared / "data").mkdir(parents=True)
        os.symlink(shared_sample, shared / "data" / "oxford-iiit-pet-sample")
        found = check_data.find_data(None)
        assert found.kind == "sample" and found.root == shared / "data" / "oxford-iiit-pet-sample"
        (shared / "data" / "oxford-iiit-pet-sample").unlink()


def test_without_real_data_the_check_makes_the_synthetic_set_and_says_so_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "project"))
    monkeypatch.setattr(gpu_check, "STAGES", {})
    assert main(["bench", "gpu-check", "--smoke"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "the synthetic set (no real photos found)" in first
    assert (tmp_path / "project" / "data" / "synthetic" / "SYNTHETIC.md").is_file()
    assert report_of(tmp_path / "project")["data"]["kind"] == "synthetic"


def test_a_data_path_that_holds_no_dataset_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["bench", "gpu-check", "--smoke", "--data-path", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err
