import dataclasses
import json
import math
import re
from datetime import datetime, timezone

import pytest
import torch
import torchvision

from labkit import run_folder, train
from labkit.checkpoint import CheckpointInfo, load_checkpoint, load_model, save_checkpoint
from labkit.config import make_config
from labkit.data import SyntheticDataWarning
from labkit.device import describe_device
from labkit.divergence import TrainingDiverged
from labkit.models import build_model
from labkit.pretrained import imagenet_weights_path, load_pretrained_encoder
from labkit.resume import config_differences


@pytest.fixture
def config(synthetic_root, tmp_path):
    return make_config("unet", "smoke", data_root=str(synthetic_root), output_dir=str(tmp_path),
                       image_size=32, epochs=2, train_limit=16, batch_size=8)


def interrupt_second_epoch(monkeypatch):
    """Make the second epoch raise KeyboardInterrupt, as Ctrl-C would; returns the real epoch."""
    real_epoch = train.train_one_epoch
    calls = []

    def interrupted_on_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", interrupted_on_second_epoch)
    return real_epoch


def test_fit_writes_best_and_last_checkpoints_and_history(config):
    result = train.fit(config, progress=False)
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()
    assert [row["epoch"] for row in json.loads((result.run_dir / "history.json").read_text())] == [1, 2]
    assert (result.run_dir / "history.csv").read_text().startswith("epoch,")


def test_a_step_budget_is_whole_epochs_and_a_last_shorter_one(config):
    config.epochs, config.train_steps = None, 5  # 16 photos in batches of 8: 2 steps an epoch
    assert train.epoch_plan(config, train_count=16) == [2, 2, 1]


@pytest.mark.parametrize("train_count, plan", [(16, [2, 2, 2]), (40, [5, 2])])
def test_epochs_with_a_step_ceiling_stop_at_the_ceiling_on_a_bigger_split(config, train_count, plan):
    config.epochs, config.train_steps = 3, 7  # batches of 8: 2 steps an epoch on 16 photos, 5 on 40
    assert train.epoch_plan(config, train_count=train_count) == plan


def test_a_step_budget_trains_exactly_that_many_steps(config, monkeypatch):
    config.epochs, config.train_steps = None, 3
    steps = []
    real_step = train.training_step
    monkeypatch.setattr(train, "training_step", lambda *args: steps.append(1) or real_step(*args))
    result = train.fit(config, progress=False)
    assert len(steps) == 3 and len(result.history) == 2


def test_fit_trains_a_model_built_elsewhere_and_saves_it_as_the_configured_model(config):
    student_unet = build_model("unet", **config.model_kwargs)
    before = {name: tensor.clone() for name, tensor in student_unet.state_dict().items()}
    result = train.fit(config, progress=False, model=student_unet)
    assert any(not torch.equal(before[name], tensor) for name, tensor in student_unet.state_dict().items())
    saved = load_model(result.last_checkpoint)
    assert all(torch.equal(tensor, student_unet.state_dict()[name]) for name, tensor in saved.state_dict().items())


def test_fit_refuses_a_model_whose_weights_are_not_the_configured_models(config):
    too_wide = build_model("unet", base_width=config.model_kwargs["base_width"] * 2)
    with pytest.raises(ValueError, match="does not match config.model 'unet'.*has shape"):
        train.fit(config, progress=False, model=too_wide)


def test_best_checkpoint_holds_the_best_validation_epoch(config):
    result = train.fit(config, progress=False)
    best_record = max(result.history, key=lambda record: record.valid_dice)
    saved = load_checkpoint(result.best_checkpoint)
    assert saved["epoch"] == best_record.epoch and saved["best"]["valid_dice"] == best_record.valid_dice


def test_slow_checkpoint_writes_are_skipped_but_the_best_weights_are_kept(config, monkeypatch):
    monkeypatch.setattr(run_folder, "CHECKPOINT_TIME_SHARE", 0.0)  # any write is over budget: epoch 1 and the last only
    dice_per_epoch = iter([0.5, 0.9, 0.7, 0.6])
    weights_per_epoch = []

    def scored(model, *args, **kwargs):
        weights_per_epoch.append({key: value.clone() for key, value in model.state_dict().items()})
        dice = next(dice_per_epoch)
        return {"dice": dice, "iou": dice, "dice_dataset": dice}

    written = []
    real_save = run_folder.save_checkpoint
    monkeypatch.setattr(train, "score_tensors", scored)
    monkeypatch.setattr(run_folder, "save_checkpoint", lambda checkpoint, path: written.append(path.name) or real_save(checkpoint, path))
    config.epochs = 4
    result = train.fit(config, progress=False)
    assert written == ["best.pt", "last.pt", "best.pt", "last.pt"]
    best = load_checkpoint(result.best_checkpoint)
    assert best["epoch"] == 2 and [row["epoch"] for row in best["history"]] == [1, 2]
    assert all(torch.equal(best["state_dict"][key], weights_per_epoch[1][key]) for key in weights_per_epoch[1])


def test_a_deep_supervised_model_trains_and_its_checkpoint_predicts_one_mask(config):
    config.model_kwargs = {**config.model_kwargs, "deep_supervision": True}
    model = load_model(train.fit(config, progress=False).best_checkpoint)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_checkpoint_records_config_data_and_the_day_and_device_it_was_written(config):
    before = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    saved = load_checkpoint(train.fit(config, progress=False).last_checkpoint)
    assert saved["config"]["model"] == "unet" and saved["config"]["image_size"] == 32
    assert saved["data"]["synthetic"] is True and saved["data"]["train_images"] == 16
    written = CheckpointInfo.from_checkpoint(saved).written  # a reused checkpoint's times are from that day
    assert written["date"] in {before, datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    assert written["device"] == describe_device(train.resolve_device(config.device))


def test_interrupt_saves_weights_and_returns_partial_history(config, monkeypatch):
    interrupt_second_epoch(monkeypatch)
    result = train.fit(config, progress=False)
    assert result.interrupted and len(result.history) == 1
    assert (result.run_dir / "interrupted.pt").is_file()
    assert load_checkpoint(result.last_checkpoint)["epoch"] == 1


def test_resume_after_interrupt_matches_an_uninterrupted_run(config, tmp_path, monkeypatch):
    straight = train.fit(config, progress=False)
    expected = load_checkpoint(straight.last_checkpoint)["state_dict"]

    config.output_dir = str(tmp_path / "interrupted")
    real_epoch = interrupt_second_epoch(monkeypatch)
    train.fit(config, progress=False)
    monkeypatch.setattr(train, "train_one_epoch", real_epoch)
    resumed = train.fit(config, resume=True, progress=False)
    actual = load_checkpoint(resumed.last_checkpoint)["state_dict"]
    assert [record.epoch for record in resumed.history] == [1, 2]
    assert all(torch.allclose(expected[key].float(), actual[key].float()) for key in expected)


def test_resume_with_a_changed_schedule_is_refused(config):
    train.fit(config, progress=False)
    config.lr = config.lr * 2
    with pytest.raises(ValueError, match=r"differs in \['lr'\]"):
        train.fit(config, resume=True, progress=False)


def test_resume_without_a_last_checkpoint_says_there_is_none(config):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        train.fit(config, resume=True, progress=False)


def test_pretrained_encoder_loads_a_saved_torchvision_state_dict(tmp_path):
    reference = torchvision.models.resnet34(weights=None).state_dict()
    torch.save(reference, tmp_path / "resnet34.pth")
    model = build_model("resnet34_unet")
    load_pretrained_encoder(model, tmp_path / "resnet34.pth")
    assert torch.equal(model.encoder.layer3[5].conv2.weight, reference["layer3.5.conv2.weight"])


def test_imagenet_weights_come_from_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet34(weights=None).state_dict()
    imagenet_weights_path().parent.mkdir(parents=True)
    torch.save(reference, imagenet_weights_path())
    model = build_model("resnet34_unet")
    load_pretrained_encoder(model, "imagenet")
    assert torch.equal(model.encoder.conv1.weight, reference["conv1.weight"])


def test_imagenet_weights_offline_say_which_file_to_place_where(tmp_path, monkeypatch):
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match=str(imagenet_weights_path().name)):
        load_pretrained_encoder(build_model("resnet34_unet"), "imagenet")


def test_pretrained_weights_are_refused_for_the_plain_unet(tmp_path):
    with pytest.raises(ValueError, match="only for resnet34_unet"):
        load_pretrained_encoder(build_model("unet", base_width=4), "imagenet")


def test_cpu_profile_learns_the_synthetic_set(tmp_path, monkeypatch):
    """The bar the workbook promises a student: the `cpu` profile's best valid Dice on the built-in
    synthetic set is above 0.9. The run stops (as Ctrl-C would) at the first epoch over the bar,
    which decides the same question as the whole run at a fraction of its cost."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))

    def stop_over_the_bar(history):
        if history[-1].valid_dice > 0.9:
            raise KeyboardInterrupt

    with pytest.warns(SyntheticDataWarning):  # no real dataset in the empty home: the synthetic set is made
        result = train.fit(make_config("unet", "cpu"), progress=False, on_epoch_end=stop_over_the_bar)
    assert result.best.valid_dice > 0.9


def test_a_checkpoint_config_with_tuples_matches_its_own_config(synthetic_root, tmp_path):
    config = make_config("resnet34_unet", "smoke", data_root=str(synthetic_root), output_dir=str(tmp_path),
                         image_size=32, epochs=1, train_limit=8)
    saved = load_checkpoint(train.fit(config, progress=False).best_checkpoint)["config"]
    assert config_differences(saved, config) == []


def test_resume_on_other_data_is_refused(config, tmp_path):
    from labkit.data import make_synthetic

    train.fit(config, progress=False)
    config.data_root = str(make_synthetic(tmp_path / "other", n=24, size=48, seed=1))
    with pytest.raises(ValueError, match=r"differs in \['data_root'\]"):
        train.fit(config, resume=True, progress=False)


def stop_after_first_epoch(history):
    """An `on_epoch_end` that acts like Ctrl-C once the first epoch is done."""
    if len(history) == 1:
        raise KeyboardInterrupt


def test_the_training_state_holds_everything_a_step_changes(config):
    state = train.build_training_state(config, train.build_training_model(config, torch.device("cpu")), 16)
    assert (state.precision, state.device.type, state.scaler.is_enabled()) == ("fp32", "cpu", False)
    assert state.step_model is state.model and state.augment.strength == config.augment_strength


def test_a_training_step_changes_the_weights_and_advances_the_schedule(config):
    state = train.build_training_state(config, train.build_training_model(config, torch.device("cpu")), 16)
    before = [parameter.detach().clone() for parameter in state.model.parameters()]
    lr_before = state.scheduler.get_last_lr()[0]
    images, masks = torch.rand(4, 3, 32, 32), torch.randint(0, 2, (4, 32, 32), dtype=torch.uint8)
    loss = train.training_step(state, images, masks)
    assert loss.ndim == 0 and not loss.requires_grad
    assert any(not torch.equal(old, new) for old, new in zip(before, state.model.parameters()))
    assert state.scheduler.get_last_lr()[0] != lr_before


def test_bf16_training_on_a_cpu_runs_and_the_checkpoint_says_bf16(config):
    config.precision, config.epochs, config.train_limit = "bf16", 1, 8  # CPU bf16 convolutions are slow
    result = train.fit(config, progress=False)
    assert all(math.isfinite(record.train_loss) for record in result.history)
    assert load_checkpoint(result.last_checkpoint)["precision"] == "bf16"


def test_channels_last_batches_give_the_same_loss_as_contiguous_ones(config):
    losses = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        model = train.build_training_model(config, torch.device("cpu")).to(memory_format=memory_format)
        state = train.build_training_state(config, model, 16)
        images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        masks = (images[:, 0] > 0.5).to(torch.uint8)
        losses.append(train.training_step(state, images.contiguous(memory_format=memory_format), masks))
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-4)


def test_a_compiled_model_trains_and_saves_plain_weights(config):
    # Batches of 4 at 32 px, as the GPU check's smoke form compiles (test_gpu_check, earlier in a
    # run): one process compiles those shapes once, and compiling costs about 40 s on 2 cores.
    config.compile, config.epochs, config.train_limit, config.batch_size = True, 1, 8, 4
    result = train.fit(config, progress=False)
    saved = load_checkpoint(result.last_checkpoint)["state_dict"]
    assert not any(key.startswith("_orig_mod.") for key in saved)
    assert math.isfinite(result.history[0].train_loss)


def test_an_fp16_loss_scaler_state_is_saved_and_resumed(config, monkeypatch):
    config.precision = "fp16"
    train.fit(config, progress=False, on_epoch_end=stop_after_first_epoch)
    last = train.run_dir_for(config) / "last.pt"
    checkpoint = load_checkpoint(last)
    assert "scale" in checkpoint["scaler"]  # an enabled scaler's state was saved (a disabled one saves {})
    checkpoint["scaler"]["scale"] = saved_scale = 1024.0  # as if many overflows had lowered it
    save_checkpoint(checkpoint, last)
    resumed_scales = []
    real_load = train.TrainingState.load_optimization_state

    def remember_scale(state, checkpoint):
        real_load(state, checkpoint)
        resumed_scales.append(state.scaler.get_scale())

    monkeypatch.setattr(train.TrainingState, "load_optimization_state", remember_scale)
    result = train.fit(config, resume=True, progress=False)
    assert resumed_scales == [saved_scale]
    assert [record.epoch for record in result.history] == [1, 2]


def test_resume_in_another_precision_is_refused_naming_the_saved_one(config):
    config.precision = "bf16"
    train.fit(config, progress=False, on_epoch_end=stop_after_first_epoch)
    config.precision = "fp32"
    with pytest.raises(ValueError, match=r"trained in bf16 .* --precision bf16"):
        train.fit(config, resume=True, progress=False)


def test_resume_with_auto_precision_that_resolves_alike_is_allowed(config):
    config.precision = "fp32"
    train.fit(config, progress=False, on_epoch_end=stop_after_first_epoch)
    config.precision = "auto"  # fp32 on this CPU, as before
    assert [record.epoch for record in train.fit(config, resume=True, progress=False).history] == [1, 2]


def test_an_optimizer_state_saved_on_a_gpu_does_not_make_the_cpu_optimizer_fused(config):
    """A GPU run saves AdamW with fused=True; loading it as it is would carry that onto CPU weights."""
    state = train.build_training_state(config, train.build_training_model(config, torch.device("cpu")), 16)
    saved = state.optimization_state()
    saved["optimizer"]["param_groups"] = [{**group, "fused": True} for group in saved["optimizer"]["param_groups"]]
    state.load_optimization_state(saved)
    assert not state.optimizer.param_groups[0]["fused"]


def test_epoch_records_round_trip_through_the_history_file(config):
    from labkit.history import read_history

    result = train.fit(config, progress=False)
    assert read_history(result.run_dir) == result.history


def test_resuming_removes_the_out_of_date_interrupted_checkpoint(config):
    train.fit(config, progress=False, on_epoch_end=stop_after_first_epoch)
    interrupted = train.run_dir_for(config) / "interrupted.pt"
    assert interrupted.is_file()
    train.fit(config, resume=True, progress=False)
    assert not interrupted.exists()


class ProgressBar:
    """What train_one_epoch uses of a tqdm bar, recording the loss it is shown."""

    disable = False

    def __init__(self):
        self.shown = []

    def update(self, steps):
        pass

    def set_postfix(self, loss):
        self.shown.append(loss)


class DeviceTensor(torch.Tensor):
    """A tensor standing for one on the GPU, whose value the CPU must not wait for."""

    def item(self):
        raise AssertionError("the progress bar read the loss on the device, making the CPU wait")


def test_on_a_gpu_the_progress_bar_shows_the_loss_once_its_copy_has_arrived(monkeypatch):
    answers = [False, True]  # the copy has not landed at the second refresh, it has at the third

    class Event:
        def record(self):
            pass

        def query(self):
            return answers.pop(0)

    monkeypatch.setattr(train, "pinned_scalar", lambda: torch.zeros(()))  # pinned memory needs a GPU
    monkeypatch.setattr(torch.cuda, "Event", Event)
    shown, bar = train.RunningLoss(torch.device("cuda")), ProgressBar()
    for total, seen in ((8.0, 4), (20.0, 8), (36.0, 12)):
        shown.refresh(bar, torch.tensor(total).as_subclass(DeviceTensor), seen)
    assert bar.shown == ["2.0000"] and not answers  # 8 / 4, copied at the first refresh


def test_on_a_cpu_the_progress_bar_shows_the_running_mean_loss_at_once():
    shown, bar = train.RunningLoss(torch.device("cpu")), ProgressBar()
    shown.refresh(bar, torch.tensor(8.0), 4)
    assert bar.shown == ["2.0000"]


def test_an_epochs_steps_and_its_progress_bar_run_in_one_sync_free_region(config, monkeypatch):
    import contextlib

    inside, seen_inside = [], []

    @contextlib.contextmanager
    def region(device):
        inside.append(True)
        yield
        inside.pop()

    step = train.training_step

    def recorded_step(*args):
        seen_inside.append(("step", bool(inside)))
        return step(*args)

    class RecordingBar(ProgressBar):
        def set_postfix(self, loss):
            seen_inside.append(("bar", bool(inside)))

    monkeypatch.setattr(train, "sync_free_region", region)
    monkeypatch.setattr(train, "training_step", recorded_step)
    # A schedule long enough for 12 steps: 2 epochs of 96 photos in batches of 8.
    state = train.build_training_state(config, train.build_training_model(config, torch.device("cpu")), 96)
    split = train.SplitTensors(torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8),
                               torch.randint(0, 2, (24, 32, 32), dtype=torch.uint8))
    train.train_one_epoch(state, split, batch_size=2, bar=RecordingBar())
    assert seen_inside == [("step", True)] * 10 + [("bar", True)] + [("step", True)] * 2 + [("bar", True)]


def test_a_checkpoint_says_how_its_processes_trained(config):
    result = train.fit(config, progress=False)
    assert load_checkpoint(result.last_checkpoint)["processes"] == {
        "count": 1, "backend": None, "data_parallel": False, "sync_batch_norm": False}


def test_a_checkpoint_saved_before_a_field_existed_matches_that_fields_default(config):
    saved = config.to_dict()
    from labkit.resume import config_differences

    del saved["valid_fold"], saved["folds"]  # a checkpoint from before validation folds
    assert config_differences(saved, config) == []
    assert config_differences(saved, dataclasses.replace(config, valid_fold=3)) == ["valid_fold"]


def test_zero_init_residual_starts_every_residual_block_as_the_identity(config):
    config.model, config.model_kwargs, config.zero_init_residual = "resnet34_unet", {"decoder_widths": (8, 8, 8, 8, 8)}, True
    model = train.build_training_model(config, torch.device("cpu"))
    blocks = [module for module in model.modules() if hasattr(module, "bn2") and hasattr(module, "downsample")]
    assert len(blocks) == 16 and all(bool((block.bn2.weight == 0).all()) for block in blocks)
    config.zero_init_residual = False
    assert not any(bool((block.bn2.weight == 0).all()) for block in train.build_training_model(config, torch.device("cpu")).modules()
                   if hasattr(block, "bn2") and hasattr(block, "downsample"))
# ---------------------------------------------------------------- a run that diverges


def test_a_learning_rate_that_blows_the_loss_up_stops_the_run_naming_epoch_step_and_fix(synthetic_root, tmp_path,
                                                                                      capsys):
    """The issue's case: at --lr 1e6 the loss reached 2.8e24, then nan, and best.pt kept NaN weights.
    In this short run the loss is still finite (about 1e20) when the epoch ends, but batch norm's
    running variances have already overflowed."""
    from labkit.cli import main

    assert main(["train", "--profile", "smoke", "--data-path", str(synthetic_root), "--output", str(tmp_path),
                 "--lr", "1e6"]) == 1
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("labkit")]
    assert len(error) == 1 and re.search(r"error: training diverged: .* at epoch 1, step \d+ of \d+; "
                                         r".*a lower --lr \(lr\) than 1e\+06", error[0])
    assert not list((tmp_path / "unet-smoke").glob("*.pt"))  # no epoch finished: nothing to keep, nothing saved


def test_statistics_that_overflow_while_the_loss_is_still_finite_stop_the_run(config):
    """At lr 1e12 the second step's loss is about 1e21, finite, but its forward pass has already
    made batch norm's running variances infinite: only the check of the weights sees it."""
    config.lr, config.epochs, config.train_steps = 1e12, None, 2  # one epoch of two steps
    with pytest.raises(TrainingDiverged, match=r"the weights or batch-norm statistics stopped being finite at epoch 1, "
                                               r"step 2 of 2"):
        train.fit(config, progress=False)
    assert not (train.run_dir_for(config) / "best.pt").exists()


def test_a_run_that_diverges_after_good_epochs_keeps_their_checkpoints(config):
    config.epochs = 3
    train.fit(config, progress=False, on_epoch_end=stop_after_first_epoch)
    run_dir = train.run_dir_for(config)
    last = load_checkpoint(run_dir / "last.pt")
    for group in last["optimizer"]["param_groups"]:  # the schedule now climbs to a rate that must diverge
        group.update(lr=1e12, initial_lr=1e12, max_lr=1e12, min_lr=1e12)
    save_checkpoint(last, run_dir / "last.pt")
    kept = {name: (run_dir / name).read_bytes() for name in ("best.pt", "last.pt", "history.json")}
    with pytest.raises(TrainingDiverged, match=r"at epoch 2, .*best.pt keeps epoch 1 and last.pt epoch 1"):
        train.fit(config, resume=True, progress=False)
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept


def test_an_image_size_too_large_for_memory_is_refused_before_the_folder_is_claimed(config):
    config.image_size = 100_000  # 40 GB a photo decoded
    with pytest.raises(ValueError, match=r"image_size \(--image-size\) 100000 needs [\d.]+ TB .* more than this "
                                         r"machine's memory"):
        train.fit(config, progress=False)
    assert not train.run_dir_for(config).exists()


def test_a_pretrained_file_that_would_run_code_is_refused_in_one_line_and_nothing_runs(synthetic_root, tmp_path,
                                                                                       capsys):
    from labkit.cli import main

    marker = tmp_path / "ran"
    torch.save({"conv1.weight": RunsCode(f"open({str(marker)!r}, 'w').close()")}, tmp_path / "resnet34.pth")
    assert main(["train", "--model", "resnet34_unet", "--profile", "smoke", "--data-path", str(synthetic_root),
                 "--output", str(tmp_path), "--epochs", "1", "--image-size", "32",
                 "--pretrained", str(tmp_path / "resnet34.pth")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("labkit train: error: ") and "safe loading" in error[-1] and "nothing in it was run" in error[-1]
    assert not marker.exists()


class RunsCode:
    """Unpickling this runs `code`: what a malicious .pth file does."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy (torch < 1.6)"])
def test_a_pretrained_state_dict_in_either_format_of_torch_save_loads_and_one_that_runs_code_does_not(tmp_path,
                                                                                                    zip_format):
    from labkit.checkpoint import CheckpointError
    from labkit.pretrained import load_state_dict_file

    weights = {"conv1.weight": torch.arange(6.0).reshape(2, 3)}
    torch.save(weights, tmp_path / "resnet34.pth", _use_new_zipfile_serialization=zip_format)
    assert torch.equal(load_state_dict_file(tmp_path / "resnet34.pth")["conv1.weight"], weights["conv1.weight"])
    marker = tmp_path / "ran"
    torch.save({"conv1.weight": RunsCode(f"open({str(marker)!r}, 'w').close()")}, tmp_path / "bad.pth",
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match="nothing in it was run"):
        load_state_dict_file(tmp_path / "bad.pth")
    assert not marker.exists()


def test_weights_broken_on_another_rank_stop_this_rank_too(config):
    """Without SyncBatchNorm (CPU processes) each rank has its own statistics; all must stop together."""
    from labkit import divergence

    model = build_model("unet", base_width=4)  # every weight finite here
    another_rank_broken = lambda local: local + 1  # noqa: E731 - the sum over ranks, one of which is not finite
    with pytest.raises(TrainingDiverged):
        divergence.check_epoch(torch.tensor(1.0), divergence.no_step_yet(torch.device("cpu")), model, 10,
                               another_rank_broken)
    divergence.check_epoch(torch.tensor(1.0), divergence.no_step_yet(torch.device("cpu")), model, 10)
