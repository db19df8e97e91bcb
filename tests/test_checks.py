"""Every exercise check passes labkit's reference and catches the classic mistake it exists for."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import data, losses, metrics, train
from labkit.checks import (
    CheckFailed, check_basic_block, check_dice_iou, check_double_conv, check_down, check_loss, check_mask_at_photo_size,
    check_resnet34_encoder, check_resnet34_unet, check_stage_builder, check_train_one_epoch, check_training_step,
    check_trimap_to_mask, check_unet, check_up,
)
from labkit.checks.pipeline import reference_mask_at_photo_size
from labkit.models import resnet34_unet as reference_resnet
from labkit.models import unet as reference_unet


def failure(check, *implementation) -> str:
    """The message of the CheckFailed that `check(*implementation)` raises."""
    with pytest.raises(CheckFailed) as raised:
        check(*implementation)
    return str(raised.value)


# --- wrong implementations: the classic mistakes -------------------------------------------------------------

def trimap_border_as_background(trimap: np.ndarray) -> np.ndarray:
    return (trimap == 1).astype(np.uint8)


def trimap_in_place(trimap: np.ndarray) -> np.ndarray:
    trimap[trimap == 3] = 1
    trimap[trimap == 2] = 0
    return trimap


class DoubleConvWithoutPadding(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid_channels = mid_channels or out_channels
        super().__init__(nn.Conv2d(in_channels, mid_channels, 3, bias=False), nn.BatchNorm2d(mid_channels), nn.ReLU(),
                         nn.Conv2d(mid_channels, out_channels, 3, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())


class DoubleConvThatRaises(reference_unet.DoubleConv):
    def forward(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied\nsecond line of the message")


class DownConvBeforePool(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(reference_unet.DoubleConv(in_channels, out_channels), nn.MaxPool2d(2))


class UpPaddingToSkip(reference_unet.Up):
    """Upsamples by exactly 2, then pads to the skip's size instead of resizing to it."""

    def forward(self, x, skip):
        if self.up_conv is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        else:
            x = self.up_conv(x)
        x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
        return self.conv(torch.cat([skip, x], dim=1))


class UpWithoutSkip(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True) -> None:
        super().__init__()
        self.conv = reference_unet.DoubleConv(in_channels // 2, out_channels)

    def forward(self, x, skip):
        return self.conv(F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False))


class UNetWithoutSkips(reference_unet.UNet):
    def __init__(self, in_channels: int = 3, out_channels: int = 1, base_width: int = 64, bilinear: bool = True):
        super().__init__(in_channels, out_channels, base_width, bilinear)
        w, factor = base_width, 2 if bilinear else 1
        self.up1 = UpWithoutSkip(16 * w // factor * 2, 8 * w // factor)
        self.up2 = UpWithoutSkip(8 * w // factor * 2, 4 * w // factor)
        self.up3 = UpWithoutSkip(4 * w // factor * 2, 2 * w // factor)
        self.up4 = UpWithoutSkip(2 * w // factor * 2, w)


class UNetWithoutPadding(reference_unet.UNet):
    pad_multiple = 1


class BasicBlockWithoutProjection(reference_resnet.BasicBlock):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, stride)
        self.downsample = None


class BasicBlockReluBeforeAdd(reference_resnet.BasicBlock):
    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))) + shortcut


def make_stage_stride_everywhere(in_channels: int, out_channels: int, num_blocks: int, stride: int) -> nn.Sequential:
    blocks = [reference_resnet.BasicBlock(in_channels, out_channels, stride)]
    blocks += [reference_resnet.BasicBlock(out_channels, out_channels, stride) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class EncoderWithoutMaxPool(reference_resnet.ResNet34Encoder):
    def __init__(self, in_channels: int = 3) -> None:
        super().__init__(in_channels)
        self.maxpool = nn.Identity()


class ResNet34UNetWithoutPadding(reference_resnet.ResNet34UNet):
    pad_multiple = 1


def loss_with_batch_dice(logits, target):
    """Soft Dice pooled over the whole batch instead of per image."""
    probability, truth = torch.sigmoid(logits[:, 0]), target.float()
    dice = (2 * (probability * truth).sum() + 1) / (probability.sum() + truth.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits[:, 0], truth) + 1 - dice


def loss_without_smoothing(logits, target):
    probability, truth = torch.sigmoid(logits[:, 0]), target.float()
    dice = 2 * (probability * truth).sum((1, 2)) / (probability.sum((1, 2)) + truth.sum((1, 2)))
    return F.binary_cross_entropy_with_logits(logits[:, 0], truth) + (1 - dice).mean()


def training_step_without_zero_grad(state, images, masks):
    loss = state.loss_fn(state.step_model(images), masks)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    return loss.detach()


def training_step_without_scheduler(state, images, masks):
    loss = state.loss_fn(state.step_model(images), masks)
    state.optimizer.zero_grad()
    loss.backward()
    state.optimizer.step()
    return loss.detach()


def train_one_epoch_in_eval_mode(state, split, batch_size):
    total, seen = 0.0, 0
    for indices in train.shuffled_batches(len(split), batch_size, state.generator):
        images, masks = train.prepare_batch(state, split, indices)
        total += train.training_step(state, images, masks).item() * len(indices)
        seen += len(indices)
    return total / seen


def counts(logits, target, threshold=0.5):
    predicted = torch.sigmoid(logits[:, 0]) > threshold
    truth = target == 1
    return (predicted & truth).sum((1, 2)).float(), predicted.sum((1, 2)).float(), truth.sum((1, 2)).float()


def dice_over_batch(logits, target, threshold=0.5):
    intersection, predicted, truth = (value.sum() for value in counts(logits, target, threshold))
    return (2 * intersection / (predicted + truth)).repeat(len(logits))


def dice_empty_scores_zero(logits, target, threshold=0.5):
    intersection, predicted, truth = counts(logits, target, threshold)
    return 2 * intersection / (predicted + truth).clamp_min(1)


def dice_argmax_one_channel(logits, target, threshold=0.5):
    predicted = logits.argmax(dim=1).bool()
    truth = target == 1
    intersection, size = (predicted & truth).sum((1, 2)).float(), (predicted.sum((1, 2)) + truth.sum((1, 2))).float()
    return torch.where(size > 0, 2 * intersection / size.clamp_min(1), torch.ones_like(size))


def iou_thresholding_logits(logits, target, threshold=0.5):
    predicted, truth = logits[:, 0] > threshold, target == 1
    union = (predicted | truth).sum((1, 2)).float()
    return torch.where(union > 0, (predicted & truth).sum((1, 2)).float() / union.clamp_min(1), torch.ones_like(union))


def mask_argmax_one_channel(logits, height, width, threshold=0.5):
    return F.interpolate(logits, size=(height, width), mode="bilinear").argmax(dim=1)[0].bool()


def mask_resized_after_threshold(logits, height, width, threshold=0.5):
    mask = (torch.sigmoid(logits) > threshold).float()
    return F.interpolate(mask, size=(height, width), mode="nearest")[0, 0].bool()


def mask_width_first(logits, height, width, threshold=0.5):
    return reference_mask_at_photo_size(logits, width, height, threshold)


# --- the reference passes every check ---------------------------------------------------------------------------

@pytest.mark.parametrize("check, implementation", [
    (check_trimap_to_mask, (lambda trimap: data.trimap_to_mask(trimap),)),
    (check_double_conv, (reference_unet.DoubleConv,)),
    (check_down, (reference_unet.Down,)),
    (check_up, (reference_unet.Up,)),
    (check_unet, (reference_unet.UNet,)),
    (check_basic_block, (reference_resnet.BasicBlock,)),
    (check_stage_builder, (reference_resnet.make_stage,)),
    (check_resnet34_encoder, (reference_resnet.ResNet34Encoder,)),
    (check_resnet34_unet, (reference_resnet.ResNet34UNet,)),
    (check_loss, (losses.SegmentationLoss(),)),
    (check_training_step, (train.training_step,)),
    (check_train_one_epoch, (train.train_one_epoch,)),
    (check_dice_iou, (metrics.dice_per_image, metrics.iou_per_image)),
    (check_mask_at_photo_size, (reference_mask_at_photo_size,)),
], ids=lambda value: getattr(value, "__name__", ""))
def test_the_reference_passes_with_one_line(check, implementation, capsys):
    check(*implementation)
    output = capsys.readouterr().out.strip()
    assert output.startswith("All ") and output.endswith("checks passed.") and "\n" not in output


# --- each classic mistake fails, naming its case -----------------------------------------------------------------

@pytest.mark.parametrize("check, implementation, case", [
    (check_trimap_to_mask, (trimap_border_as_background,), "border pixels (value 3) gives mask value 1"),
    (check_trimap_to_mask, (trimap_in_place,), "the trimap passed in is left unchanged"),
    (check_double_conv, (DoubleConvWithoutPadding,), "output shape of DoubleConv(3, 8) on input (1, 3, 37, 51)"),
    (check_down, (DownConvBeforePool,), "output of Down(4, 8) on input (1, 4, 37, 51), same weights"),
    (check_up, (UpPaddingToSkip,), "output of Up(16, 4, bilinear=True) on input x (1, 8, 9, 12)"),
    (check_unet, (UNetWithoutSkips,), "parameter count of UNet(base_width=8, bilinear=True)"),
    (check_unet, (UNetWithoutPadding,), "output of UNet(base_width=4) on input (2, 3, 37, 51), same weights"),
    (check_basic_block, (BasicBlockWithoutProjection,), "parameter count of BasicBlock(16, 32, 2)"),
    (check_basic_block, (BasicBlockReluBeforeAdd,), "output of BasicBlock(16, 16, 1) on input (2, 16, 15, 17)"),
    (check_stage_builder, (make_stage_stride_everywhere,), "parameter count of make_stage(16, 32, 3, 2)"),
    (check_resnet34_encoder, (EncoderWithoutMaxPool,), "shapes of the five feature maps"),
    (check_resnet34_unet, (ResNet34UNetWithoutPadding,), "output of ResNet34UNet(decoder_widths=(16, 8, 8, 8, 8)) on input"),
    (check_loss, (loss_with_batch_dice,), "a batch with a large and a small pet"),
    (check_loss, (loss_without_smoothing,), "an empty target predicted confidently empty"),
    (check_training_step, (training_step_without_zero_grad,), "the weights after step 2"),
    (check_training_step, (training_step_without_scheduler,), "learning-rate schedule position after step 1"),
    (check_train_one_epoch, (train_one_epoch_in_eval_mode,), "the model is in train mode after the epoch"),
    (check_dice_iou, (dice_over_batch, metrics.iou_per_image), "image 0: 4 of 6 pixels shared"),
    (check_dice_iou, (dice_empty_scores_zero, metrics.iou_per_image), "image 1: empty truth, empty prediction"),
    (check_dice_iou, (dice_argmax_one_channel, metrics.iou_per_image), "image 0: 4 of 6 pixels shared"),
    (check_dice_iou, (metrics.dice_per_image, iou_thresholding_logits), "iou_per_image failed the case: logits of 0.3"),
    (check_mask_at_photo_size, (mask_argmax_one_channel,), "confident pet logits (+5) give an all-pet mask"),
    (check_mask_at_photo_size, (mask_resized_after_threshold,), "random logits (1, 1, 16, 16) to a 37 x 51 photo"),
    (check_mask_at_photo_size, (mask_width_first,), "shape of the mask for a 51 wide, 37 high photo"),
], ids=lambda value: getattr(value, "__name__", None) if callable(value) else "")
def test_a_classic_mistake_fails_naming_its_case(check, implementation, case):
    message = failure(check, *implementation)
    assert case in message, message
    if "failed the case" in message:
        assert "expected:" in message and "got:" in message and "hint:" in message


def test_an_exception_in_the_students_code_is_one_line_naming_the_input():
    message = failure(check_double_conv, DoubleConvThatRaises)
    assert message == ("your DoubleConv raised RuntimeError: mat1 and mat2 shapes cannot be multiplied "
                       "on input (1, 3, 37, 51)")


def test_an_unwritten_exercise_says_so():
    def stub(trimap):
        raise NotImplementedError()

    assert "trimap_to_mask is not written yet" in failure(check_trimap_to_mask, stub)


def test_a_failure_renders_in_ipython_without_a_traceback():
    with pytest.raises(CheckFailed) as raised:
        check_trimap_to_mask(trimap_border_as_background)
    lines = raised.value._render_traceback_()
    assert lines[0].startswith("CheckFailed: trimap_to_mask failed the case")
    assert not any("Traceback" in line or "File " in line for line in lines)
    assert raised.value.__suppress_context__


def test_a_check_restores_the_thread_count():
    threads = torch.get_num_threads()
    check_trimap_to_mask(lambda trimap: data.trimap_to_mask(trimap))
    assert torch.get_num_threads() == threads


def test_the_checks_accept_the_students_own_tensor_names():
    class RenamedDoubleConv(nn.Module):
        def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
            super().__init__()
            self.first = reference_unet.DoubleConv(in_channels, out_channels, mid_channels)

        def forward(self, x):
            return self.first(x)

    check_double_conv(RenamedDoubleConv)
