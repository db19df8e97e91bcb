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
