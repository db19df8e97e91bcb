"""Checks for the model exercises of notebooks 01 (UNet) and 02 (ResNet34-UNet).

Every class is compared with `labkit.models` at odd input sizes: its parameter count, its output
shapes, its output under the reference's weights (eval mode, BatchNorm statistics randomized so
that no layer can hide) and, for whole models, that a backward pass reaches every parameter.
"""

import copy
from collections.abc import Callable

import torch
from torch import nn

from labkit.checks.core import Checker, check, check_gradients, check_module_output, count_parameters
from labkit.models import resnet34_unet as reference_resnet
from labkit.models import unet as reference_unet

ODD = (37, 51)  # an input size no power of two divides


def _build(checker: Checker, cls: Callable, *args, **kwargs) -> nn.Module:
    arguments = ", ".join([*map(repr, args), *(f"{key}={value!r}" for key, value in kwargs.items())])
    module = checker.call(f"when built as {checker.subject}({arguments})", cls, *args, **kwargs)
    checker.expect(f"{checker.subject}({arguments}) is a torch nn.Module", isinstance(module, nn.Module),
                   "an nn.Module", type(module).__name__, "subclass nn.Module (or nn.Sequential) and call super().__init__()")
    return module


def _same_size(checker: Checker, reference: nn.Module, student: nn.Module, built: str, hint: str) -> None:
    checker.equal(f"parameter count of {built}", count_parameters(reference), count_parameters(student), hint)


def _shape(checker: Checker, student: nn.Module, built: str, inputs: tuple, expected: tuple, hint: str) -> None:
    with torch.no_grad():
        output = checker.call(f"on input {tuple(inputs[0].shape)}", student.eval(), *inputs)
    got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    checker.equal(f"output shape of {built} on input {tuple(inputs[0].shape)}", expected, got, hint)


@check
def check_double_conv(cls: Callable, seed: int = 0) -> None:
    """`DoubleConv(in_channels, out_channels, mid_channels=None)`: (conv3x3 -> BN -> ReLU) twice."""
    checker, generator = Checker("DoubleConv"), torch.Generator().manual_seed(seed)
    hint = "two blocks of Conv2d(kernel_size=3, padding=1, bias=False) -> BatchNorm2d -> ReLU"
    for args in ((3, 8), (8, 4, 6)):
        built = f"DoubleConv{args}"
        student, reference = _build(checker, cls, *args), reference_unet.DoubleConv(*args)
        _same_size(checker, reference, student, built, hint + "; the first conv outputs mid_channels (out_channels when None)")
        x = torch.randn(1, args[0], *ODD, generator=generator)
        _shape(checker, student, built, (x,), (1, args[1], *ODD), "padding=1 keeps H and W: " + hint)
        check_module_output(checker, reference, student, built, (x,), str(tuple(x.shape)), hint, generator)
    checker.done()


@check
def check_down(cls: Callable, seed: int = 0) -> None:
    """`Down(in_channels, out_channels)`: 2x2 max-pool, then DoubleConv."""
    checker, generator = Checker("Down"), torch.Generator().manual_seed(seed)
    hint = "MaxPool2d(2) first, then DoubleConv(in_channels, out_channels)"
    student, reference = _build(checker, cls, 4, 8), reference_unet.Down(4, 8)
    _same_size(checker, reference, student, "Down(4, 8)", hint)
    x = torch.randn(1, 4, *ODD, generator=generator)
    _shape(checker, student, "Down(4, 8)", (x,), (1, 8, ODD[0] // 2, ODD[1] // 2), "pooling halves H and W, rounding down: " + hint)
    check_module_output(checker, reference, student, "Down(4, 8)", (x,), str(tuple(x.shape)), hint, generator)
    checker.done()


@check
def check_up(cls: Callable, seed: int = 0) -> None:
    """`Up(in_channels, out_channels, bilinear=True)`, `forward(x, skip)`: resize x to the skip's
    size, concatenate [skip, x] on channels, then DoubleConv."""
    checker, generator = Checker("Up"), torch.Generator().manual_seed(seed)
    skip = torch.randn(1, 8, 19, 25, generator=generator)  # odd: 2 x the deeper map is one pixel short
    for bilinear, x_channels, out_channels in ((True, 8, 4), (False, 16, 8)):
        built = f"Up(16, {out_channels}, bilinear={bilinear})"
        how = ("F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False), then DoubleConv("
               "in_channels, out_channels, mid_channels=in_channels // 2)" if bilinear else
               "ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2) called with output_size=skip.shape[-2:]")
        hint = f"resize to the skip's exact size (do not pad), concatenate torch.cat([skip, x], dim=1): {how}"
        student = _build(checker, cls, 16, out_channels, bilinear=bilinear)
        reference = reference_unet.Up(16, out_channels, bilinear=bilinear)
        _same_size(checker, reference, student, built, hint)
        x = torch.randn(1, x_channels, 9, 12, generator=generator)
        _shape(checker, student, built, (x, skip), (1, out_channels, 19, 25), hint)
        check_module_output(checker, reference, student, built, (x, skip), f"x {tuple(x.shape)}, skip {tuple(skip.shape)}",
                            hint, generator)
    checker.done()


@check
def check_unet(cls: Callable, seed: int = 0) -> None:
    """`UNet(in_channels=3, out_channels=1, base_width=64, bilinear=True)` -> logits (B, 1, H, W) for any H, W."""
    checker, generator = Checker("UNet"), torch.Generator().manual_seed(seed)
    hint = ("follow the diagram: x1 = input_block(x), x2..x5 = down1..down4, then up1(x5, x4), up2(., x3), "
            "up3(., x2), up4(., x1): every Up gets its skip; pad to a multiple of 32 first, crop the logits back")
    for bilinear in (True, False):
        built = f"UNet(base_width=8, bilinear={bilinear})"
        student = _build(checker, cls, base_width=8, bilinear=bilinear)
        _same_size(checker, reference_unet.UNet(base_width=8, bilinear=bilinear), student, built,
                   "the widths double at every level (w, 2w, 4w, 8w, 16w // factor) and each Up's in_channels "
                   "counts the skip's channels too (no skip connections means fewer weights)")
    student, reference = _build(checker, cls, base_width=4), reference_unet.UNet(base_width=4)
    x = torch.randn(2, 3, *ODD, generator=generator)
    _shape(checker, student, "UNet(base_width=4)", (x,), (2, 1, *ODD), "pad H and W to a multiple of 32, run, then crop "
           "the logits back with [..., :H, :W]")
    check_module_output(checker, reference, student, "UNet(base_width=4)", (x,), str(tuple(x.shape)), hint, generator)
    check_gradients(checker, _build(checker, cls, base_width=4), "UNet(base_width=4)",
                    (torch.randn(2, 3, 32, 32, generator=generator),), "every block must be used in forward")
    checker.done()


@check
def check_basic_block(cls: Callable, seed: int = 0) -> None:
    """`BasicBlock(in_channels, out_channels, stride=1)`: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
    checker, generator = Checker("BasicBlock"), torch.Generator().manual_seed(seed)
    hint = ("out = relu(bn1(conv1(x))); out = bn2(conv2(out)); return relu(out + shortcut), where shortcut is x, "
            "or downsample(x) when the stride or the width changes")
    for args in ((16, 16, 1), (16, 32, 2)):
        built = f"BasicBlock{args}"
        student, reference = _build(checker, cls, *args), reference_resnet.BasicBlock(*args)
        _same_size(checker, reference, student, built,
                   "two conv3x3 (no bias) with BatchNorm; when stride != 1 or in_channels != out_channels the "
                   "shortcut is a projection: Conv2d(in, out, kernel_size=1, stride=stride, bias=False) + BatchNorm2d "
                   "(none otherwise)")
        x = torch.randn(2, 16, 15, 17, generator=generator)
        expected = (2, args[1], 8, 9) if args[2] == 2 else (2, args[1], 15, 17)
        _shape(checker, student, built, (x,), expected, "only conv1 and the shortcut take the stride")
        check_module_output(checker, reference, student, built, (x,), str(tuple(x.shape)), hint, generator)
    checker.done()


@check
def check_stage_builder(fn: Callable, seed: int = 0) -> None:
    """`make_stage(in_channels, out_channels, num_blocks, stride) -> nn.Sequential` of BasicBlocks."""
    checker, generator = Checker("make_stage"), torch.Generator().manual_seed(seed)
    hint = ("the first block is BasicBlock(in_channels, out_channels, stride), the other num_blocks - 1 are "
            "BasicBlock(out_channels, out_channels)")
    for args in ((16, 32, 3, 2), (8, 8, 2, 1)):
        built = f"make_stage{args}"
        student, reference = _build(checker, fn, *args), reference_resnet.make_stage(*args)
        checker.equal(f"number of blocks in {built}", len(reference), len(student) if hasattr(student, "__len__") else "no len()", hint)
        _same_size(checker, reference, student, built, hint)
        x = torch.randn(2, args[0], 15, 17, generator=generator)
        expected = (2, args[1], 8, 9) if args[3] == 2 else (2, args[1], 15, 17)
        _shape(checker, student, built, (x,), expected, "only the first block changes the stride: " + hint)
        check_module_output(checker, reference, student, built, (x,), str(tuple(x.shape)), hint, generator)
    checker.done()


@check
def check_resnet34_encoder(cls: Callable, seed: int = 0) -> None:
    """`ResNet34Encoder(in_channels=3)`, `forward(x)` -> (x1, x2, x3, x4, x5) at strides 2, 4, 8, 16, 32."""
    checker, generator = Checker("ResNet34Encoder"), torch.Generator().manual_seed(seed)
    hint = ("stem conv1 (7x7, stride 2, padding 3, no bias), bn1, relu -> x1; maxpool (3, stride 2, padding 1) then "
            "layer1 -> x2; layer2 -> x3; layer3 -> x4; layer4 -> x5, with 3, 4, 6, 3 blocks and widths 64, 64, 128, 256, 512")
    student, reference = _build(checker, cls), reference_resnet.ResNet34Encoder()
    _same_size(checker, reference, student, "ResNet34Encoder()", hint)
    names, expected_names = list(student.state_dict()), list(reference.state_dict())
    checker.expect("ResNet34Encoder() takes torchvision's resnet34 weights (same tensor names)", names == expected_names,
                   f"names like {expected_names[:3]} ... {expected_names[-1:]}",
                   f"{[n for n in names if n not in expected_names][:3]} not in resnet34" if set(names) != set(expected_names)
                   else "the same names in another order", "name the layers conv1, bn1, relu, maxpool, layer1..layer4 as torchvision does")
    x = torch.randn(1, 3, 64, 96, generator=generator)
    with torch.no_grad():
        outputs = checker.call(f"on input {tuple(x.shape)}", student.eval(), x)
    shapes = [tuple(o.shape) for o in outputs] if isinstance(outputs, (tuple, list)) else type(outputs).__name__
    expected = [(1, c, 64 // s, 96 // s) for c, s in zip((64, 64, 128, 256, 512), (2, 4, 8, 16, 32))]
    checker.equal(f"shapes of the five feature maps for input {tuple(x.shape)}", expected, shapes, hint)
    check_module_output(checker, reference, student, "ResNet34Encoder()", (x,), str(tuple(x.shape)), hint, generator)
    checker.done()


@check
def check_resnet34_unet(cls: Callable, seed: int = 0) -> None:
    """`ResNet34UNet(in_channels=3, out_channels=1, decoder_widths=(256, 128, 64, 32, 16))` -> (B, 1, H, W) logits."""
    checker, generator = Checker("ResNet34UNet"), torch.Generator().manual_seed(seed)
    widths = (16, 8, 8, 8, 8)
    built = f"ResNet34UNet(decoder_widths={widths})"
    hint = ("encoder -> x1..x5; d1 = up1(x5, x4), up2(d1, x3), up3(., x2), up4(., x1), up5(.) with no skip, then the "
            "1x1 output_conv; pad the input to a multiple of 32 and crop the logits back")
    student, reference = _build(checker, cls, decoder_widths=widths), reference_resnet.ResNet34UNet(decoder_widths=widths)
    _same_size(checker, reference, student, built, "decoder blocks DecoderBlock(in, skip, out): 512+256 -> w0, w0+128 -> w1, "
               "w1+64 -> w2, w2+64 -> w3, w3 (no skip) -> w4, then Conv2d(w4, out_channels, 1)")
    x = torch.randn(1, 3, *ODD, generator=generator)
    _shape(checker, student, built, (x,), (1, 1, *ODD), hint)
    check_module_output(checker, reference, student, built, (x,), str(tuple(x.shape)), hint, generator)
    check_gradients(checker, copy.deepcopy(student), built, (torch.randn(2, 3, 64, 64, generator=generator),),
                    "every block must be used in forward")
    checker.done()
