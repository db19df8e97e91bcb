"""Training one model on two CPU processes with torchrun (gloo), as `torchrun --nproc_per_node=2
-m labkit train ...` does on two GPUs: the run, its scores, its files and resuming it."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit import train
from labkit.checkpoint import load_trained
from labkit.distributed import WorldInfo, init_from_env
from labkit.evaluate import score_tensors
from labkit.history import read_history

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
LAUNCH_TIMEOUT_S = 300  # a launch that hangs fails the test instead of the suite


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(env: dict, *program: str) -> subprocess.CompletedProcess:
    """Two processes on this machine running `program` (`-m labkit ...` or a script and its arguments)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", *program]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)


def train_args(synthetic_root: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "--model", "unet", "--profile", "smoke", "--data-path", str(synthetic_root),
            "--output", str(output), "--image-size", "32", "--epochs", "2", "--batch-size", "4", *extra]


@pytest.fixture(scope="module")
def launch_env(tmp_path_factory) -> dict:
    """The environment of a launch: this checkout's labkit, the session's cache, one thread a process."""
    env = {key: value for key, value in os.environ.items() if key not in ("LABKIT_DATA", "RANK", "WORLD_SIZE")}
    env.update(LABKIT_CACHE=str(tmp_path_factory.getbasetemp() / "cache"), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    return env


@pytest.fixture(scope="module")
def two_process_run(launch_env, synthetic_root, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One 2-epoch run on two processes, which several tests look at; returns the launch and its run folder."""
    output = tmp_path_factory.mktemp("two-processes")
    launch = torchrun(launch_env, "-m", "labkit", *train_args(synthetic_root, output))
    return launch, output / "unet-smoke"


def test_torchrun_trains_one_model_on_two_processes(two_process_run):
    launch, run_dir = two_process_run
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert load_trained(run_dir / "last.pt").info.epoch == 2


def test_the_reported_valid_scores_are_the_one_process_scores_of_the_saved_weights(two_process_run):
    _, run_dir = two_process_run
    trained = load_trained(run_dir / "last.pt")
    valid = train.load_training_data(trained.info.config, torch.device("cpu"), progress=False).valid
    scores = score_tensors(trained.model, valid.images, valid.masks)
    reported = read_history(run_dir)[-1]
    assert (reported.valid_dice, reported.valid_iou, reported.valid_dice_dataset) == (
        scores["dice"], scores["iou"], scores["dice_dataset"])


def test_only_rank_0_writes_and_reports(two_process_run):
    launch, run_dir = two_process_run
    assert [record.epoch for record in read_history(run_dir)] == [1, 2]
    assert not list(run_dir.glob("*.tmp")) and not (run_dir / "interrupted.pt").exists()
    assert launch.stdout.count("best valid Dice") == 1


def test_two_process_checkpoints_hold_the_plain_model_and_load_safely(two_process_run):
    _, run_dir = two_process_run
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(run_dir / name, weights_only=True)
        assert checkpoint["world_size"] == 2
        assert not any(key.startswith("module.") for key in checkpoint["state_dict"])


def test_an_interrupted_two_process_run_resumes_to_the_same_weights(two_process_run, launch_env, synthetic_root,
                                                                      tmp_path):
    interrupted = torchrun(launch_env, str(WORKER), "interrupt", *train_args(synthetic_root, tmp_path))
    run_dir = tmp_path / "unet-smoke"
    assert (run_dir / "interrupted.pt").is_file() and load_trained(run_dir / "last.pt").info.epoch == 1, \
        interrupted.stderr[-3000:]
    resumed = torchrun(launch_env, "-m", "labkit", *train_args(synthetic_root, tmp_path, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [record.epoch for record in read_history(run_dir)] == [1, 2]
    expected = load_trained(two_process_run[1] / "last.pt").model.state_dict()
    actual = load_trained(run_dir / "last.pt").model.state_dict()
    assert all(torch.allclose(expected[key].float(), actual[key].float()) for key in expected)


def test_a_failing_rank_stops_the_other_with_its_message(launch_env, synthetic_root, tmp_path):
    launch = torchrun(launch_env, str(WORKER), "fail", *train_args(synthetic_root, tmp_path))
    assert launch.returncode != 0
    assert "labkit train (rank 1 of 2): error: planted failure on rank 1" in launch.stderr


def test_the_ranks_shares_of_one_permutation_partition_it():
    shares = [train.shuffled_batches(24, 4, torch.Generator().manual_seed(0), WorldInfo(rank, world_size=2))
              for rank in (0, 1)]
    assert [len(batches) for batches in shares] == [3, 3]  # every rank takes as many steps
    assert sorted(torch.cat(shares[0] + shares[1]).tolist()) == list(range(24))


def test_the_ranks_validation_shares_partition_the_split():
    for count in (1, 5, 6):
        shares = [range(count)[WorldInfo(rank, world_size=2).share(count)] for rank in (0, 1)]
        assert [*shares[0], *shares[1]] == list(range(count))


def test_without_torchrun_training_runs_in_one_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world = init_from_env(torch.device("cpu"))
    assert (world.distributed, world.world_size, world.is_main) == (False, 1, True)
    counts = torch.arange(4)
    assert world.all_reduce_sum(counts) is counts


def test_the_checkpoint_says_the_processes_trained_together(two_process_run):
    _, run_dir = two_process_run
    from labkit.checkpoint import load_checkpoint

    assert load_checkpoint(run_dir / "last.pt")["processes"] == {
        "count": 2, "backend": "gloo", "data_parallel": True, "sync_batch_norm": False}  # gloo has no SyncBatchNorm
