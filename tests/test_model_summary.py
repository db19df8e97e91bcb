import torch
from torch import nn

from labkit.models import build_model
from labkit.models.summary import flops_per_image, layer_shapes


def test_layer_shapes_follow_the_unet_down_and_up_the_ladder():
    rows = layer_shapes(build_model("unet", base_width=4, bilinear=False), image_size=(64, 64))
    shapes = {row["name"]: row["output_shape"] for row in rows}
    assert shapes["down4"][1:] == (64, 4, 4) and shapes["up4"][1:] == (4, 64, 64)


def test_layer_shape_parameters_add_up_to_the_model():
    model = build_model("resnet34_unet", decoder_widths=(16, 16, 8, 8, 8))
    rows = layer_shapes(model, image_size=(64, 64))
    assert sum(row["parameters"] for row in rows) == sum(p.numel() for p in model.parameters())


def test_flops_of_a_single_convolution_match_the_formula():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    # 2 (multiply + add) * output pixels * output channels * (input channels * 3 * 3)
    assert flops_per_image(conv, image_size=16) == 2 * 16 * 16 * 8 * 3 * 3 * 3


def test_training_flops_are_about_three_times_the_forward_pass():
    model = build_model("unet", base_width=4)
    forward, training = flops_per_image(model, 32), flops_per_image(model, 32, training=True)
    assert 2.5 * forward < training < 3.5 * forward
    assert all(p.grad is None for p in model.parameters())


def test_summaries_restore_the_training_mode():
    model = build_model("unet", base_width=4).train()
    layer_shapes(model, (32, 32))
    flops_per_image(model, 32)
    assert model.training
