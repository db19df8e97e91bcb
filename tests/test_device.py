import pytest
import torch

from labkit.device import autocast, grad_scaler, resolve_precision

CUDA = torch.device("cuda")


@pytest.fixture
def gpu_with_capability(monkeypatch):
    """Pretend the CUDA device has the given compute capability; `is_bf16_supported` says yes, as it
    does on a T4 or V100 that only emulates bf16."""
    def fake(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"a GPU of capability {major}.{minor}")
    return fake


@pytest.mark.parametrize("capability", [(7, 5), (7, 0), (6, 1)])  # T4, V100, GTX 10xx
def test_auto_precision_is_fp16_on_gpus_without_native_bf16(gpu_with_capability, capability):
    gpu_with_capability(*capability)
    assert resolve_precision("auto", CUDA) == "fp16"


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (9, 0)])  # A100, RTX 30xx, H100/H200
def test_auto_precision_is_bf16_on_gpus_with_native_bf16(gpu_with_capability, capability):
    gpu_with_capability(*capability)
    assert resolve_precision("auto", CUDA) == "bf16"


def test_auto_precision_is_fp32_on_a_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_asking_for_bf16_on_a_gpu_that_emulates_it_warns(gpu_with_capability):
    gpu_with_capability(7, 5)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert resolve_precision("bf16", CUDA) == "bf16"


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="fp32"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize("precision, enabled", [("fp16", True), ("bf16", False), ("fp32", False)])
def test_only_fp16_scales_the_loss(precision, enabled):
    assert grad_scaler(torch.device("cpu"), precision).is_enabled() is enabled


def test_bf16_autocast_runs_a_convolution_in_bf16_on_a_cpu():
    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast(torch.device("cpu"), "bf16"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16


# ---------------------------------------------------------------- set up to run fast on a GPU


def test_a_model_placed_on_a_gpu_lets_cudnn_choose_its_fastest_algorithms(monkeypatch):
    from labkit import device

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda model, **where: moved.append(where) or model)
    device.place(torch.nn.Conv2d(3, 4, 3), CUDA)  # no GPU here: the move is recorded, not made
    assert torch.backends.cudnn.benchmark is True
    assert moved == [{"device": CUDA, "memory_format": torch.channels_last}]


def test_a_model_placed_on_a_cpu_is_channels_last_and_leaves_cudnn_alone(monkeypatch):
    """oneDNN ran the lab's models faster channels_last on the CPU (docs/benchmarks.md)."""
    from labkit import device

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    model = device.place(torch.nn.Conv2d(3, 4, 3), torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    assert device.memory_format_of(model) == torch.channels_last


def test_batches_on_the_cpu_come_in_the_models_memory_format():
    import numpy as np

    from labkit import data
    from labkit.data.cache import SplitArrays

    arrays = SplitArrays(np.zeros((2, 8, 8, 3), np.uint8), np.full((2, 8, 8), 2, np.uint8), [], [(8, 8)] * 2, "x")
    images, _ = data.to_tensors(arrays, device="cpu")
    assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()


def test_a_checkpoint_loaded_onto_a_gpu_is_placed_in_its_memory_format(tmp_path, monkeypatch):
    from labkit import checkpoint
    from labkit.models import build_model

    path = checkpoint.save_checkpoint(
        checkpoint.make_checkpoint("unet", {"base_width": 4}, build_model("unet", base_width=4)), tmp_path / "m.pt")
    placed = []
    monkeypatch.setattr(checkpoint, "place", lambda model, where: placed.append(where) or model)
    checkpoint.load_trained(path, "cuda")
    assert placed == [CUDA]


@pytest.mark.parametrize("capability, tf32", [((9, 0), True), ((8, 0), True), ((7, 5), False)])
def test_fp32_on_an_ampere_or_later_gpu_is_said_to_be_tf32(gpu_with_capability, monkeypatch, capability, tf32):
    from labkit.device import tf32_in_use

    gpu_with_capability(*capability)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # PyTorch's default
    assert tf32_in_use(CUDA, "fp32") is tf32
    assert tf32_in_use(CUDA, "bf16") is False and tf32_in_use(torch.device("cpu"), "fp32") is False
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert tf32_in_use(CUDA, "fp32") is False


def test_a_speed_row_in_tf32_says_so():
    from labkit.bench.speed import format_speed

    row = {"model": "unet", "precision": "fp32", "tf32": True, "compiled": False, "train_model_only": 10.0,
           "train_end_to_end": 9.0, "end_to_end_share": 0.9, "inference": 30.0}
    assert "fp32 (TF32)" in format_speed(row) and "(TF32)" not in format_speed({**row, "tf32": False})


def test_the_memory_format_of_a_model_is_that_of_its_convolutions():
    from labkit.device import memory_format_of

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3))
    assert memory_format_of(model) == torch.contiguous_format
    assert memory_format_of(model.to(memory_format=torch.channels_last)) == torch.channels_last


# ---------------------------------------------------------------- proving that training steps never wait


def test_a_sync_free_region_under_the_check_runs_in_error_mode_after_its_warm_up(monkeypatch):
    from labkit.device import host_syncs_forbidden, sync_free_region

    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: modes.append(mode))
    with host_syncs_forbidden(warm_up=1) as counts:
        for _ in range(3):
            with sync_free_region(CUDA):
                pass
    assert modes == ["error", 0, "error", 0] and counts["checked"] == 2


def test_a_sync_free_region_costs_nothing_outside_the_check_or_off_cuda(monkeypatch):
    from labkit.device import host_syncs_forbidden, sync_free_region

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: pytest.fail("the debug mode was set"))
    with sync_free_region(CUDA):
        pass
    with host_syncs_forbidden(warm_up=0), sync_free_region(torch.device("cpu")):
        pass
