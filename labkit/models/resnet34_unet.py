"""ResNet34-UNet: a ResNet34 encoder (He et al. 2016, "Deep Residual Learning for Image
Recognition") under a U-Net decoder (Ronneberger et al. 2015), as segmentation_models_pytorch's
`Unet("resnet34")` builds it.

The encoder's parameter names match torchvision's `resnet34`, so ImageNet weights load into it
unchanged; the lab trains it from scratch by default.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.models.layers import SideOutputs, conv3x3, init_weights, pad_to_multiple
from labkit.models.unet import DoubleConv


class BasicBlock(nn.Module):
    """Two 3x3 convs whose output is added to the input (He et al. 2016, Fig. 2).

    When the block changes the stride or the width, a 1x1 conv + BatchNorm (`downsample`)
    reshapes the shortcut so the two can be added.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


def make_stage(in_channels: int, out_channels: int, num_blocks: int, stride: int) -> nn.Sequential:
    """`num_blocks` BasicBlocks; only the first one changes the stride and the width."""
    blocks = [BasicBlock(in_channels, out_channels, stride)]
    blocks += [BasicBlock(out_channels, out_channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


def zero_residual_branches(model: nn.Module) -> int:
    """Start every BasicBlock of `model` as the identity: its last BatchNorm's scale set to zero, so
    the residual branch adds nothing until training grows it (Goyal et al. 2017, "Accurate, Large
    Minibatch SGD"; torchvision's `zero_init_residual`). Returns how many blocks were set."""
    blocks = [module for module in model.modules() if isinstance(module, BasicBlock)]
    for block in blocks:
        nn.init.zeros_(block.bn2.weight)
    return len(blocks)


class ResNet34Encoder(nn.Module):
    """torchvision's resnet34 without its pooling and classifier, returning five feature maps."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = make_stage(64, 64, num_blocks=3, stride=1)
        self.layer2 = make_stage(64, 128, num_blocks=4, stride=2)
        self.layer3 = make_stage(128, 256, num_blocks=6, stride=2)
        self.layer4 = make_stage(256, 512, num_blocks=3, stride=2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        x1 = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        x2 = self.layer1(self.maxpool(x1))  # (B, 64, H/4, W/4)
        x3 = self.layer2(x2)  # (B, 128, H/8, W/8)
        x4 = self.layer3(x3)  # (B, 256, H/16, W/16)
        x5 = self.layer4(x4)  # (B, 512, H/32, W/32)
        return x1, x2, x3, x4, x5


class DecoderBlock(nn.Module):
    """Upsample bilinearly to the skip's size (2x when there is no skip), concatenate, DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([skip, x], dim=1)
        return self.conv(x)


class ResNet34UNet(nn.Module):
    """ResNet34 encoder + U-Net decoder returning (B, out_channels, H, W) logits for any H x W.

    Args:
        decoder_widths: output channels of the five decoder blocks, from 1/16 up to full size.
        deep_supervision: in train mode, also return logits from the decoder blocks at 1/8, 1/4
            and 1/2 of the size (see `SideOutputs`): a list, main logits first.
    """

    pad_multiple = 32  # five stride-2 steps in the encoder

    def __init__(
        self, in_channels: int = 3, out_channels: int = 1, decoder_widths: tuple[int, ...] = (256, 128, 64, 32, 16),
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        widths = tuple(decoder_widths)
        if len(widths) != 5 or min(widths) < 1 or min(in_channels, out_channels) < 1:
            raise ValueError(
                f"decoder_widths must be five positive integers (one per decoder block, e.g. "
                f"(256, 128, 64, 32, 16)) and channels positive, got {decoder_widths}"
            )
        self.encoder = ResNet34Encoder(in_channels)
        self.up1 = DecoderBlock(512, 256, widths[0])
        self.up2 = DecoderBlock(widths[0], 128, widths[1])
        self.up3 = DecoderBlock(widths[1], 64, widths[2])
        self.up4 = DecoderBlock(widths[2], 64, widths[3])
        self.up5 = DecoderBlock(widths[3], 0, widths[4])
        self.output_conv = nn.Conv2d(widths[4], out_channels, kernel_size=1)
        init_weights(self)
        # No ReLU follows the logits: PyTorch's smaller default init keeps first sigmoids near 0.5.
        self.output_conv.reset_parameters()
        # Made after init_weights, so the side heads keep that default init too.
        self.side_outputs = SideOutputs(list(widths[1:4]), out_channels) if deep_supervision else None

    @staticmethod
    def arguments_from_weights(weights: dict[str, Tensor]) -> dict:
        """The constructor arguments that give a ResNet34UNet exactly these weights (KeyError: not its)."""
        return {"in_channels": weights["encoder.conv1.weight"].shape[1],
                "out_channels": weights["output_conv.weight"].shape[0],
                "decoder_widths": tuple(weights[f"up{level}.conv.0.weight"].shape[0] for level in range(1, 6)),
                "deep_supervision": "side_outputs.heads.0.weight" in weights}

    def forward(self, images: Tensor) -> Tensor | list[Tensor]:
        height, width = images.shape[-2:]
        x = pad_to_multiple(images, self.pad_multiple)  # (B, 3, H, W), H and W now multiples of 32
        x1, x2, x3, x4, x5 = self.encoder(x)  # strides 2, 4, 8, 16, 32
        d1 = self.up1(x5, x4)  # (B, 256, H/16, W/16) with the default widths
        d2 = self.up2(d1, x3)  # (B, 128, H/8, W/8)
        d3 = self.up3(d2, x2)  # (B, 64, H/4, W/4)
        d4 = self.up4(d3, x1)  # (B, 32, H/2, W/2)
        d5 = self.up5(d4)  # (B, 16, H, W): no skip at full resolution
        logits = self.output_conv(d5)  # (B, out_channels, H, W)
        if self.side_outputs is None or not self.training:
            return logits[..., :height, :width]
        side_logits = self.side_outputs([d2, d3, d4], size=x.shape[-2:])
        return [output[..., :height, :width] for output in (logits, *side_logits)]

    def load_encoder_weights(self, state_dict: dict[str, Tensor]) -> None:
        """Load a torchvision `resnet34` state_dict into the encoder; its `fc.*` classifier is dropped.

        Raises:
            ValueError: the keys are not resnet34's; the message names the missing and unexpected ones.
        """
        weights = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
        expected = self.encoder.state_dict().keys()
        missing = [key for key in expected if key not in weights]
        unexpected = [key for key in weights if key not in expected]
        if missing or unexpected:
            raise ValueError(
                "not a torchvision resnet34 state_dict: "
                f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
                " (pass torchvision.models.resnet34().state_dict() or the file it was saved to)"
            )
        self.encoder.load_state_dict(weights)
