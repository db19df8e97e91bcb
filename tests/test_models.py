"""Specifications of labkit.models: shapes for any input size, gradients, ResNet34 weight names."""

import pytest
import torch
import torchvision
from torch import nn

from labkit.models import MODELS, ResNet34UNet, UNet, build_model, count_parameters
from labkit.models.layers import pad_to_multiple
from labkit.models.unet import Up

# Tiny widths keep every test to CPU seconds; the ResNet34 encoder is always full size.
TINY_UNET = {"base_width": 8}
TINY_DECODER = {"decoder_widths": (32, 16, 16, 8, 8)}


TINY_MODELS = {
    "unet_bilinear": lambda: UNet(**TINY_UNET, bilinear=True),
    "unet_transposed": lambda: UNet(**TINY_UNET, bilinear=False),
    "resnet34_unet": lambda: ResNet34UNet(**TINY_DECODER),
}


@pytest.fixture(params=list(TINY_MODELS))
def model(request) -> nn.Module:
    torch.manual_seed(0)
    return TINY_MODELS[request.param]()


def resnet34_encoder_state_dict() -> dict:
    return {key: value for key, value in torchvision.models.resnet34(weights=None).state_dict().items()
            if not key.startswith("fc.")}


@pytest.mark.parametrize("height, width", [(37, 53), (65, 97)])
def test_output_is_one_logit_per_input_pixel(model, height, width):
    logits = model(torch.randn(2, 3, height, width))
    assert logits.shape == (2, 1, height, width)
    assert logits.dtype == torch.float32


def test_odd_sized_input_gives_the_top_left_crop_of_the_padded_input_output(model):
    model.eval()
    images = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        direct = model(images)
        padded = model(pad_to_multiple(images, 32))
    assert torch.allclose(direct, padded[..., :37, :53])


def test_gradient_reaches_every_parameter(model):
    model.train()
    model(torch.randn(2, 3, 37, 53)).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


DEEP_SUPERVISED = {
    "unet": lambda **extra: UNet(**TINY_UNET, **extra),
    "resnet34_unet": lambda **extra: ResNet34UNet(**TINY_DECODER, **extra),
}


@pytest.mark.parametrize("name", list(DEEP_SUPERVISED))
def test_deep_supervision_adds_three_full_size_side_outputs_in_train_mode_only(name):
    model = DEEP_SUPERVISED[name](deep_supervision=True)
    images = torch.randn(2, 3, 37, 53)
    assert [tuple(output.shape) for output in model.train()(images)] == [(2, 1, 37, 53)] * 4
    assert model.eval()(images).shape == (2, 1, 37, 53)


@pytest.mark.parametrize("name", list(DEEP_SUPERVISED))
def test_deep_supervision_leaves_the_main_output_as_it_was(name):
    torch.manual_seed(0)
    plain = DEEP_SUPERVISED[name]().eval()
    torch.manual_seed(0)
    supervised = DEEP_SUPERVISED[name](deep_supervision=True).eval()
    images = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        assert torch.equal(plain(images), supervised(images))


@pytest.mark.parametrize("name", list(DEEP_SUPERVISED))
def test_deep_supervision_trains_every_side_head(name):
    model = DEEP_SUPERVISED[name](deep_supervision=True).train()
    sum(output.square().mean() for output in model(torch.randn(2, 3, 37, 53))).backward()
    for parameter in model.side_outputs.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_eval_mode_gives_the_same_output_twice(model):
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), model(images))


def test_eval_mode_output_of_an_image_does_not_depend_on_the_rest_of_the_batch(model):
    model.eval()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        alone = model(images[:1])
        in_batch = model(images)[:1]
    # Untrained running statistics let logits grow to ~30, and a batch of one may take another
    # convolution kernel whose float32 sums round differently: compare relative to their size
    # (a leak between images, the bug this catches, changes them by far more than 1e-4 of it).
    assert torch.allclose(alone, in_batch, rtol=0, atol=1e-4 * alone.abs().max().item())


@pytest.mark.parametrize("bilinear", [True, False])
def test_up_block_resizes_to_the_skip_exact_odd_size(bilinear):
    up = Up(in_channels=16, out_channels=4, bilinear=bilinear)
    below = torch.randn(1, 16 if not bilinear else 8, 5, 7)
    skip = torch.randn(1, 8, 11, 15)
    assert up(below, skip).shape == (1, 4, 11, 15)


def test_pad_to_multiple_keeps_the_image_in_the_top_left_corner():
    images = torch.randn(1, 3, 37, 53)
    padded = pad_to_multiple(images, 32)
    assert padded.shape == (1, 3, 64, 64)
    assert torch.equal(padded[..., :37, :53], images)


def test_pad_to_multiple_leaves_a_multiple_untouched():
    images = torch.randn(1, 3, 64, 96)
    assert pad_to_multiple(images, 32) is images


def test_pad_to_multiple_handles_inputs_smaller_than_the_padding():
    images = torch.randn(1, 3, 5, 40)
    assert pad_to_multiple(images, 32).shape == (1, 3, 32, 64)


def test_resnet34_encoder_keys_are_torchvision_resnet34_keys_without_fc():
    assert list(ResNet34UNet(**TINY_DECODER).encoder.state_dict()) == list(resnet34_encoder_state_dict())


def test_torchvision_resnet34_state_dict_loads_into_the_encoder(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model = ResNet34UNet(**TINY_DECODER)
    model.load_encoder_weights(state_dict)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, state_dict[key]), key


def test_load_encoder_weights_rejects_a_foreign_state_dict_naming_the_keys():
    model = ResNet34UNet(**TINY_DECODER)
    foreign = UNet(**TINY_UNET).state_dict()
    with pytest.raises(ValueError, match=r"missing.*conv1\.weight.*unexpected.*input_block\.0\.weight"):
        model.load_encoder_weights(foreign)


def test_load_encoder_weights_rejects_a_state_dict_missing_one_key():
    state_dict = resnet34_encoder_state_dict()
    del state_dict["layer4.2.bn2.weight"]
    with pytest.raises(ValueError, match=r"layer4\.2\.bn2\.weight"):
        ResNet34UNet(**TINY_DECODER).load_encoder_weights(state_dict)


def test_resnet34_encoder_has_torchvision_resnet34_parameters_minus_fc():
    resnet34 = torchvision.models.resnet34(weights=None)
    fc = resnet34.fc.weight.numel() + resnet34.fc.bias.numel()
    assert count_parameters(ResNet34UNet(**TINY_DECODER).encoder) == count_parameters(resnet34) - fc


def test_build_model_rejects_an_unknown_name_listing_valid_ones():
    with pytest.raises(ValueError, match="unet.*resnet34_unet"):
        build_model("segformer")


def test_build_model_passes_keyword_arguments():
    model = build_model("unet", base_width=8, bilinear=False)
    assert isinstance(model, MODELS["unet"])
    assert model.input_block[0].out_channels == 8
    assert model.up1.up_conv is not None


def test_build_model_accepts_decoder_widths_as_a_list_from_json():
    model = build_model("resnet34_unet", decoder_widths=[32, 16, 16, 8, 8])
    assert model.output_conv.in_channels == 8


def test_resnet34_unet_rejects_the_wrong_number_of_decoder_widths():
    with pytest.raises(ValueError, match="five"):
        ResNet34UNet(decoder_widths=(64, 32))


def test_count_parameters_is_the_sum_of_weight_sizes_and_can_skip_frozen_ones():
    model = nn.Sequential(nn.Conv2d(3, 4, kernel_size=3), nn.BatchNorm2d(4))
    assert count_parameters(model) == (3 * 4 * 9 + 4) + (4 + 4)
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 4 + 4


def double_conv_parameters(in_channels: int, out_channels: int, mid_channels: int) -> int:
    """Two bias-free 3x3 convs, each followed by a BatchNorm (scale + shift per channel)."""
    return 9 * in_channels * mid_channels + 2 * mid_channels + 9 * mid_channels * out_channels + 2 * out_channels


def unet_parameters_by_formula(w: int, bilinear: bool, in_channels: int = 3, out_channels: int = 1) -> int:
    factor = 2 if bilinear else 1
    encoder = double_conv_parameters(in_channels, w, w) + sum(
        double_conv_parameters(c, 2 * c, 2 * c) for c in (w, 2 * w, 4 * w))
    encoder += double_conv_parameters(8 * w, 16 * w // factor, 16 * w // factor)
    decoder = 0
    for concat, out in [(16 * w, 8 * w // factor), (8 * w, 4 * w // factor), (4 * w, 2 * w // factor), (2 * w, w)]:
        if bilinear:
            decoder += double_conv_parameters(concat, out, concat // 2)
        else:  # 2x2 transposed conv with bias, halving the channels
            decoder += 4 * concat * (concat // 2) + concat // 2 + double_conv_parameters(concat, out, out)
    return encoder + decoder + w * out_channels + out_channels


@pytest.mark.parametrize("bilinear", [True, False])
def test_default_unet_has_the_parameter_count_of_its_architecture(bilinear):
    assert count_parameters(UNet(bilinear=bilinear)) == unet_parameters_by_formula(64, bilinear)
