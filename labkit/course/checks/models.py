"""Checks for the model exercises of notebooks 01 (UNet) and 02 (ResNet34-UNet).

Every class is compared with `labkit.models` case by case: the names and shapes of its weights,
its output under the reference's weights (eval mode, BatchNorm statistics randomized so that no
layer can hide; train mode too, where a hidden case asks), and that a backward pass reaches every
parameter. Weights are loaded by name, so the order in which layers were created never matters.
Hidden cases add other channel counts, the other shortcut cases and the initialisation.
"""

import torch

from labkit.course.checks.core import Checker, case_seed, check, listed
from labkit.course.subjects import Subject, as_subject, reference_subject
from labkit.models import resnet34_unet as reference_resnet
from labkit.models import unet as reference_unet

ODD = (37, 51)  # an input size no power of two divides


def call_text(name: str, args: tuple = (), kwargs: dict | None = None) -> str:
    parts = [*map(repr, args), *(f"{key}={value!r}" for key, value in (kwargs or {}).items())]
    return f"{name}({', '.join(parts)})"


def compare_module(checker: Checker, student: Subject, reference, args: tuple = (), kwargs: dict | None = None, *,
                   inputs: tuple, seed: int, hint: str, names_hint: str, train: bool = False,
                   gradient_inputs: tuple | None = None) -> None:
    """The student's module, built like the reference and given its weights, computes what it
    computes: same weight names and shapes, same outputs on `inputs`, gradients everywhere."""
    built = call_text(student.name, args, kwargs)
    expected = reference_subject(reference, student.name).probe(
        "module_report", args=args, kwargs=kwargs, seed=seed, inputs=inputs, train=train, randomize=seed,
        return_weights=True)
    got = checker.probe(student, "module_report", args=args, kwargs=kwargs, seed=seed, weights=expected["weights"],
                        inputs=inputs, train=train, gradient_inputs=gradient_inputs)
    checker.expect(f"{built} is a torch nn.Module", got["is_module"], "an nn.Module", got["type"],
                   "subclass nn.Module (or nn.Sequential) and call super().__init__() first")
    missing, extra = set(expected["shapes"]) - set(got["shapes"]), set(got["shapes"]) - set(expected["shapes"])
    checker.expect(f"the names of the weights of {built}", not missing and not extra,
                   f"{len(expected['shapes'])} tensors" + (f", among them {listed(missing)}" if missing else ""),
                   f"{len(got['shapes'])} tensors" + (f", {listed(missing)} missing" if missing else "")
                   + (f", {listed(extra)} not expected" if extra else ""), names_hint)
    wrong = sorted(name for name in expected["shapes"] if expected["shapes"][name] != got["shapes"][name])
    checker.expect(f"the shapes of the weights of {built}", not wrong,
                   ", ".join(f"{name} {expected['shapes'][name]}" for name in wrong[:3]),
                   ", ".join(f"{name} {got['shapes'][name]}" for name in wrong[:3]), hint)
    mode = "train" if train else "eval"
    described = ", ".join(str(tuple(x.shape)) for x in inputs)
    outputs = expected["outputs"]
    if isinstance(outputs, (tuple, list)):
        checker.expect(f"{built} returns {len(outputs)} tensors", isinstance(got["outputs"], (tuple, list))
                       and len(got["outputs"]) == len(outputs), f"{len(outputs)} tensors",
                       type(got["outputs"]).__name__, hint)
        for index, (one_expected, one_got) in enumerate(zip(outputs, got["outputs"])):
            checker.close(f"output {index + 1} of {built} on {described} in {mode} mode, the reference's weights",
                          one_expected, one_got, hint, atol=1e-4)
    else:
        checker.close(f"output of {built} on {described} in {mode} mode, the reference's weights", outputs,
                      got["outputs"], hint, atol=1e-4)
    if gradient_inputs is not None:
        without = got["without_gradient"]
        checker.expect(f"a backward pass through {built} reaches every parameter", not without,
                       "a gradient in every parameter", f"no gradient in {listed(without)}",
                       "every layer the constructor makes must be used in forward")


def compare_initialisation(checker: Checker, student: Subject, reference, kwargs: dict, seed: int, hint: str) -> None:
    """The spread of every freshly built weight is the reference's (the values differ: they are random)."""
    built = call_text(student.name, (), kwargs)
    expected = reference_subject(reference, student.name).probe("module_report", kwargs=kwargs, seed=seed,
                                                                 statistics=True)["statistics"]
    got = checker.probe(student, "module_report", kwargs=kwargs, seed=seed, statistics=True).get("statistics", {})
    for name, (count, mean, spread) in expected.items():
        if name not in got:
            checker.fail(f"the weights of a freshly built {built}", f"a weight named {name}", "none", hint)
        # Estimated spreads of n random numbers vary by about 1/sqrt(2n): a wide margin for small tensors.
        margin = 1.3 if count >= 200 else 3.0
        _, got_mean, got_spread = got[name]
        if spread == 0:
            ok = got_spread <= 1e-6 and abs(got_mean - mean) <= 1e-6
        else:
            ok = spread / margin <= got_spread <= spread * margin
        checker.expect(f"the initial values of {name} in a freshly built {built}", ok,
                       f"mean {mean:.3g}, standard deviation {spread:.3g}",
                       f"mean {got_mean:.3g}, standard deviation {got_spread:.3g}", hint)


@check
def check_double_conv(DoubleConv, *, seed: int | None = None, hidden: bool = False) -> None:
    """`DoubleConv(in_channels, out_channels, mid_channels=None)`: (conv3x3 -> BN -> ReLU) twice."""
    student, checker, seed = as_subject(DoubleConv, "DoubleConv"), Checker("DoubleConv"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    hint = ("two blocks, each a 3x3 convolution with padding 1 and no bias, then BatchNorm, then ReLU; the first "
            "convolution outputs mid_channels (out_channels when mid_channels is None)")
    names = "an nn.Sequential of the six layers in the order the exercise lists them (weights 0.weight, 1.weight, ...)"
    cases = [((5, 7), True), ((6, 10, 3), True)] if hidden else [((3, 8), False), ((8, 4, 6), False)]
    for args, train in cases:
        x = torch.randn(2 if train else 1, args[0], *ODD, generator=generator)
        compare_module(checker, student, reference_unet.DoubleConv, args, inputs=(x,), seed=seed, hint=hint,
                       names_hint=names, train=train, gradient_inputs=(x,) if hidden else None)
    checker.done(hidden)


@check
def check_down(Down, *, seed: int | None = None, hidden: bool = False) -> None:
    """`Down(in_channels, out_channels)`: 2x2 max-pool, then DoubleConv."""
    student, checker, seed = as_subject(Down, "Down"), Checker("Down"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    hint = "first halve H and W with a 2x2 max-pool, then a DoubleConv from in_channels to out_channels"
    names = "an nn.Sequential of the pool and a DoubleConv, in that order (weights 1.0.weight, ...)"
    args, size, batch = ((3, 5), (21, 30), 2) if hidden else ((4, 8), ODD, 1)
    x = torch.randn(batch, args[0], *size, generator=generator)
    compare_module(checker, student, reference_unet.Down, args, inputs=(x,), seed=seed, hint=hint, names_hint=names,
                   train=hidden)
    checker.done(hidden)


@check
def check_up(Up, *, seed: int | None = None, hidden: bool = False) -> None:
    """`Up(in_channels, out_channels, bilinear=True)`, `forward(x, skip)`: resize x to the skip's
    exact size, concatenate [skip, x] on the channels, then DoubleConv."""
    student, checker, seed = as_subject(Up, "Up"), Checker("Up"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    names = ("attributes up_conv (the transposed convolution, or None when bilinear) and conv (the DoubleConv), "
             "so the weights are named up_conv.weight, conv.0.weight, ...")
    hint_bilinear = ("resize x bilinearly (align_corners=False) to the skip's exact height and width, concatenate "
                     "the skip first and x second along the channels, then a DoubleConv whose middle width is half "
                     "of in_channels")
    hint_transposed = ("a 2x2 transposed convolution with stride 2 that halves the channels, asked for the skip's "
                       "exact size (its output_size argument), then the skip first and x second, then a DoubleConv")
    # (in_channels, out_channels, bilinear, batch, x size, skip size); odd skips are one pixel more than 2x.
    if hidden:
        cases = [(12, 6, True, 2, (10, 7), (21, 15)), (20, 5, False, 2, (6, 11), (13, 23))]
    else:
        cases = [(16, 4, True, 1, (9, 12), (19, 25)), (16, 8, False, 1, (9, 12), (19, 25))]
    for in_channels, out_channels, bilinear, batch, x_size, skip_size in cases:
        skip = torch.randn(batch, in_channels // 2, *skip_size, generator=generator)
        x = torch.randn(batch, in_channels // 2 if bilinear else in_channels, *x_size, generator=generator)
        compare_module(checker, student, reference_unet.Up, (in_channels, out_channels), {"bilinear": bilinear},
                       inputs=(x, skip), seed=seed, hint=hint_bilinear if bilinear else hint_transposed,
                       names_hint=names, train=hidden)
    checker.done(hidden)


UNET_NAMES = ("attributes input_block, down1 to down4, up1 to up4 and output_conv, as the exercise names them "
              "(the blocks beneath are labkit's while your UNet is checked)")


@check
def check_unet(UNet, *, seed: int | None = None, hidden: bool = False) -> None:
    """`UNet(in_channels=3, out_channels=1, base_width=64, bilinear=True)` -> logits (B, out_channels, H, W) for any H, W."""
    student, checker, seed = as_subject(UNet, "UNet"), Checker("UNet"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    hint = ("follow the diagram: the widths double at every level down (the bottom one divided by the factor), every "
            "up block gets the skip of its level, the input is padded to a multiple of 32 and the logits cropped back "
            "to the input's size")
    if hidden:
        for kwargs, size in (({"in_channels": 1, "out_channels": 3, "base_width": 4}, (33, 47)),
                             ({"in_channels": 4, "out_channels": 2, "base_width": 4, "bilinear": False}, (40, 29))):
            x = torch.randn(2, kwargs["in_channels"], *size, generator=generator)
            compare_module(checker, student, reference_unet.UNet, kwargs=kwargs, inputs=(x,), seed=seed,
                           hint="use the in_channels and out_channels you are given: " + hint, names_hint=UNET_NAMES)
        compare_initialisation(checker, student, reference_unet.UNet, {"base_width": 16}, seed,
                               "call init_weights(self) once every layer exists, then reset the parameters of "
                               "output_conv so that it keeps PyTorch's default initialisation")
    else:
        for bilinear in (True, False):
            x = torch.randn(1, 3, 32, 32, generator=generator)
            compare_module(checker, student, reference_unet.UNet, kwargs={"base_width": 8, "bilinear": bilinear},
                           inputs=(x,), seed=seed, hint=hint, names_hint=UNET_NAMES)
        x = torch.randn(2, 3, *ODD, generator=generator)
        compare_module(checker, student, reference_unet.UNet, kwargs={"base_width": 4}, inputs=(x,), seed=seed,
                       hint=hint, names_hint=UNET_NAMES, gradient_inputs=(torch.randn(2, 3, 32, 32, generator=generator),))
    checker.done(hidden)


BLOCK_NAMES = ("attributes conv1, bn1, relu, conv2, bn2 and downsample (None, or an nn.Sequential of the 1x1 "
               "convolution and its BatchNorm), the names torchvision gives them")


@check
def check_basic_block(BasicBlock, *, seed: int | None = None, hidden: bool = False) -> None:
    """`BasicBlock(in_channels, out_channels, stride=1)`: relu(F(x) + shortcut(x))."""
    student, checker, seed = as_subject(BasicBlock, "BasicBlock"), Checker("BasicBlock"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    hint = ("F is conv1 (3x3, the block's stride), BatchNorm, ReLU, conv2 (3x3), BatchNorm; the shortcut is x itself, "
            "or the 1x1 projection with the same stride when the stride or the width changes; ReLU comes after the sum")
    cases = [(16, 16, 2), (16, 32, 1)] if hidden else [(16, 16, 1), (16, 32, 2)]
    for args in cases:
        x = torch.randn(2, 16, 15, 17, generator=generator)
        compare_module(checker, student, reference_resnet.BasicBlock, args, inputs=(x,), seed=seed, hint=hint,
                       names_hint=BLOCK_NAMES, train=hidden, gradient_inputs=(x,) if hidden else None)
    checker.done(hidden)


@check
def check_stage_builder(make_stage, *, seed: int | None = None, hidden: bool = False) -> None:
    """`make_stage(in_channels, out_channels, num_blocks, stride) -> nn.Sequential` of BasicBlocks."""
    student, checker, seed = as_subject(make_stage, "make_stage"), Checker("make_stage"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    hint = ("num_blocks BasicBlocks in an nn.Sequential; only the first one takes in_channels and the stride, the "
            "others keep out_channels and stride 1")
    names = "an nn.Sequential of the blocks (weights 0.conv1.weight, 1.conv1.weight, ...)"
    cases = [(8, 16, 1, 1), (12, 12, 3, 2)] if hidden else [(16, 32, 3, 2), (8, 8, 2, 1)]
    for args in cases:
        expected = reference_subject(reference_resnet.make_stage, "make_stage").probe("module_report", args=args)
        got = checker.probe(student, "module_report", args=args)
        checker.equal(f"the number of blocks of {call_text('make_stage', args)}", expected["length"], got.get("length"),
                      hint)
        x = torch.randn(2, args[0], 15, 17, generator=generator)
        compare_module(checker, student, reference_resnet.make_stage, args, inputs=(x,), seed=seed, hint=hint,
                       names_hint=names, train=hidden)
    checker.done(hidden)


ENCODER_NAMES = ("torchvision's names: conv1, bn1, relu, maxpool, layer1 to layer4, so that ImageNet weights load "
                 "into it")


@check
def check_resnet34_encoder(ResNet34Encoder, *, seed: int | None = None, hidden: bool = False) -> None:
    """`ResNet34Encoder(in_channels=3)`, `forward(x)` -> (x1, x2, x3, x4, x5) at strides 2, 4, 8, 16, 32."""
    student = as_subject(ResNet34Encoder, "ResNet34Encoder")
    checker, seed = Checker("ResNet34Encoder"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    hint = ("the stem is a 7x7 convolution with stride 2 and padding 3 (no bias), BatchNorm and ReLU, which gives x1; "
            "then a 3x3 max-pool with stride 2 and padding 1 and four stages of 3, 4, 6 and 3 blocks, 64, 128, 256 "
            "and 512 wide, the first at stride 1 and the others at stride 2, giving x2 to x5")
    if hidden:
        x = torch.randn(2, 1, 64, 64, generator=generator)
        compare_module(checker, student, reference_resnet.ResNet34Encoder, (1,), inputs=(x,), seed=seed,
                       hint="use the in_channels you are given: " + hint, names_hint=ENCODER_NAMES, train=True)
    else:
        x = torch.randn(1, 3, 64, 96, generator=generator)
        compare_module(checker, student, reference_resnet.ResNet34Encoder, inputs=(x,), seed=seed, hint=hint,
                       names_hint=ENCODER_NAMES)
    checker.done(hidden)


@check
def check_resnet34_unet(ResNet34UNet, *, seed: int | None = None, hidden: bool = False) -> None:
    """`ResNet34UNet(in_channels=3, out_channels=1, decoder_widths=(256, 128, 64, 32, 16))` -> (B, out_channels, H, W) logits."""
    student, checker, seed = as_subject(ResNet34UNet, "ResNet34UNet"), Checker("ResNet34UNet"), case_seed(seed, hidden)
    generator = torch.Generator().manual_seed(seed)
    hint = ("the encoder gives x1 to x5; up1 takes x5 with the skip x4, up2 the result with x3, up3 with x2, up4 with "
            "x1, up5 has no skip; then the 1x1 output_conv; pad the input to a multiple of 32 and crop the logits back")
    names = "attributes encoder, up1 to up5 and output_conv, as the exercise names them"
    if hidden:
        kwargs = {"in_channels": 1, "out_channels": 2, "decoder_widths": (32, 16, 8, 8, 4)}
        x = torch.randn(1, 1, 45, 38, generator=generator)
        compare_module(checker, student, reference_resnet.ResNet34UNet, kwargs=kwargs, inputs=(x,), seed=seed,
                       hint="use the in_channels, out_channels and decoder_widths you are given: " + hint,
                       names_hint=names)
        compare_initialisation(checker, student, reference_resnet.ResNet34UNet, {"decoder_widths": (32, 16, 16, 16, 16)},
                               seed, "call init_weights(self) once every layer exists, then reset the parameters of "
                                     "output_conv so that it keeps PyTorch's default initialisation")
    else:
        kwargs = {"decoder_widths": (16, 8, 8, 8, 8)}
        x = torch.randn(1, 3, *ODD, generator=generator)
        compare_module(checker, student, reference_resnet.ResNet34UNet, kwargs=kwargs, inputs=(x,), seed=seed,
                       hint=hint, names_hint=names, gradient_inputs=(torch.randn(2, 3, 64, 64, generator=generator),))
    checker.done(hidden)
