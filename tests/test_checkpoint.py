import pytest
import torch

from labkit.checkpoint import (
    FORMAT_KEY, FORMAT_VERSION, CheckpointError, load_checkpoint, load_model, load_trained, make_checkpoint,
    save_checkpoint,
)
from labkit.config import make_config
from labkit.history import EpochRecord
from labkit.models import build_model

from filesystems import small_disk  # noqa: F401

SMALL = {"unet": {"base_width": 4}, "resnet34_unet": {"decoder_widths": (16, 16, 8, 8, 8)}}


def saved(tmp_path, name="unet", **extra):
    torch.manual_seed(0)
    model = build_model(name, **SMALL[name]).eval()
    path = save_checkpoint(make_checkpoint(name, SMALL[name], model, **extra), tmp_path / f"{name}.pt")
    return model, path


@pytest.mark.parametrize("name", ["unet", "resnet34_unet"])
def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path, name):
    model, path = saved(tmp_path, name)
    loaded = load_model(path)
    assert all(torch.equal(weight, loaded.state_dict()[name]) for name, weight in model.state_dict().items())
    image = torch.randn(1, 3, 40, 56)
    with torch.inference_mode():  # the loaded model is placed channels_last: the same sums, rounded in another order
        torch.testing.assert_close(model(image), loaded(image), rtol=1e-4, atol=1e-4)
    assert type(loaded) is type(model) and not loaded.training


def test_checkpoint_carries_its_description_beside_the_model(tmp_path):
    best = EpochRecord(epoch=3, lr=1e-3, train_loss=0.2, valid_dice=0.5, valid_iou=0.4, valid_dice_dataset=0.6,
                       epoch_seconds=1.0, train_images_per_second=10.0)
    _, path = saved(tmp_path, config=make_config("unet", "smoke", image_size=64).to_dict(), best=best.to_dict(),
                    precision="bf16")
    trained = load_trained(path)
    assert trained.info.config.image_size == 64 and trained.info.best == best and trained.info.precision == "bf16"
    assert trained.info.versions["torch"] == torch.__version__ and trained.info.path == path
    assert not hasattr(trained.model, "checkpoint_info")


def test_a_format_1_checkpoint_still_says_its_best_epoch(tmp_path):
    row = {"epoch": 2, "lr": 1e-3, "train_loss": 0.3, "valid_dice": 0.7, "valid_iou": 0.6, "valid_dice_dataset": 0.7,
           "epoch_seconds": 1.0, "train_images_per_second": 5.0}
    _, path = saved(tmp_path, metrics=row, history=[row])
    info = load_trained(path).info
    assert info.best.valid_dice == 0.7 and info.config is None and info.precision is None


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint_is_reported_as_such(tmp_path):
    _, path = saved(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_a_file_that_is_not_a_pytorch_file_says_so(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not weights")
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        load_checkpoint(path)


def test_a_pickle_with_arbitrary_objects_is_refused_by_safe_loading(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"function": print}, path)
    with pytest.raises(CheckpointError, match="safe loading"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_mistaken_for_a_checkpoint(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save(build_model("unet", base_width=4).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a labkit checkpoint"):
        load_checkpoint(path)


def test_checkpoint_from_a_newer_format_asks_for_an_upgrade(tmp_path):
    _, path = saved(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[FORMAT_KEY] = FORMAT_VERSION + 1
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="newer labkit"):
        load_checkpoint(path)


def test_a_full_disk_names_the_file_removes_the_temporary_and_keeps_the_old_checkpoint(small_disk):
    """On a real full disk torch.save fails with its own RuntimeError ("enforce fail at
    inline_container.cc ... unexpected pos"), not the OSError a mock would raise."""
    import errno

    disk = small_disk("2M")
    _, path = saved(disk)
    before = path.read_bytes()
    with pytest.raises(OSError, match=rf"^no space left on the disk writing {path}; free some space") as raised:
        save_checkpoint({"weights": torch.zeros(1_000_000)}, path)  # 4 MB
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and list(disk.iterdir()) == [path]


def test_two_processes_saving_the_same_checkpoint_use_their_own_temporary_files(tmp_path, monkeypatch):
    temporaries = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, file: temporaries.append(file.name) or real_save(obj, file))
    save_checkpoint({"a": 1}, tmp_path / "last.pt")
    monkeypatch.setattr("os.getpid", lambda: 424242)
    save_checkpoint({"a": 2}, tmp_path / "last.pt")
    assert len(set(temporaries)) == 2 and temporaries[1].endswith("last.pt.424242.tmp")


def test_a_reader_of_the_first_format_refuses_todays_checkpoint_instead_of_losing_its_best_row(tmp_path, monkeypatch):
    """The first labkit read format 1 and looked for the best row under "metrics"; today's
    checkpoints keep it under "best", so they must not call themselves format 1."""
    from labkit import checkpoint

    _, path = saved(tmp_path, best={"epoch": 1, "valid_dice": 0.5})
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 1)  # what that reader accepts
    with pytest.raises(CheckpointError, match="newer labkit"):
        load_checkpoint(path)


def test_a_checkpoint_of_the_first_layout_still_loads_with_its_best_row(tmp_path):
    best = EpochRecord(epoch=2, lr=1e-3, train_loss=0.3, valid_dice=0.7, valid_iou=0.6, valid_dice_dataset=0.7,
                       epoch_seconds=1.0, train_images_per_second=10.0)
    _, path = saved(tmp_path, metrics=best.to_dict())
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[FORMAT_KEY] = 1
    torch.save(checkpoint, path)
    assert load_trained(path).info.best == best
def test_a_named_pipe_given_as_checkpoint_is_called_one_and_not_opened(tmp_path):
    import os

    fifo = tmp_path / "best.pt"
    os.mkfifo(fifo)  # opening it would wait forever for a writer
    with pytest.raises(CheckpointError, match=r"best.pt is a named pipe \(FIFO\), not a labkit checkpoint"):
        load_checkpoint(fifo)


def edited(path, **changes):
    """The checkpoint at `path` with its metadata changed, as a hand edit would leave it."""
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(changes)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("changes, named", [
    ({"model_kwargs": {"base_width": 8}}, "its metadata names unet(base_width=8), but"),
    ({"model_kwargs": {"base_width": 4, "widht": 2}}, "unet(base_width=4, widht=2), which labkit cannot build"),
    ({"model_name": "resnet34_unet", "model_kwargs": {}}, "its metadata names resnet34_unet(), but"),
])
def test_metadata_that_does_not_match_the_weights_names_both_models(tmp_path, changes, named):
    _, path = saved(tmp_path)  # a unet with base_width 4
    with pytest.raises(CheckpointError) as raised:
        load_trained(edited(path, **changes))
    message = str(raised.value)
    assert named in message and "its weights fit unet(base_width=4)" in message and "\n" not in message


def test_weights_that_fit_no_labkit_model_are_said_to(tmp_path):
    _, path = saved(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    edited(path, state_dict={"linear.weight": torch.zeros(2, 2)} | checkpoint["state_dict"])
    with pytest.raises(CheckpointError, match=r"its weights fit no labkit model"):
        load_trained(path)


def test_weights_that_are_not_finite_are_refused_as_a_diverged_run(tmp_path):
    _, path = saved(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["output_conv.weight"].fill_(float("nan"))
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"not finite \(output_conv.weight and 0 more\).*diverged.*lower --lr"):
        load_trained(path)
