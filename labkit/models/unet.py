"""U-Net (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation") with two changes now standard: BatchNorm after every conv, and padded convs so
the output has the input's size instead of the paper's shrinking valid-conv tiles."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labkit.models.layers import SideOutputs, conv3x3, init_weights, pad_to_multiple


class DoubleConv(nn.Sequential):
    """(conv3x3 -> BatchNorm -> ReLU) twice: the unit every level of the U is built from."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid_channels = mid_channels or out_channels
        super().__init__(
            conv3x3(in_channels, mid_channels),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            conv3x3(mid_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then DoubleConv: halves H and W (one step down the U)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Upsample to the skip's exact size, concatenate the skip, then DoubleConv.

    Args:
        in_channels: channels after concatenation (upsampled input + skip).
        bilinear: resize bilinearly (no weights; DoubleConv's first conv halves the channels)
            instead of the paper's 2x2 "up-conv" (a transposed conv that halves them itself).
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True) -> None:
        super().__init__()
        if bilinear:
            self.up_conv = None
            self.conv = DoubleConv(in_channels, out_channels, mid_channels=in_channels // 2)
        else:
            self.up_conv = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        if self.up_conv is None:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        else:
            x = self.up_conv(x, output_size=skip.shape[-2:])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net returning one logit per pixel (B, out_channels, H, W) for any input H x W.

    Args:
        base_width: channels of the first level; each level down doubles them (64 in the paper).
        bilinear: bilinear upsampling instead of transposed convs. The bottom level then has
            half the channels, so each concatenation joins two equally wide tensors.
        deep_supervision: in train mode, also return logits from the three coarser decoder
            levels (see `SideOutputs`): a list, main logits first.
    """

    # 32, not the 16 that four poolings need, so both lab models accept the same sizes unchanged.
    pad_multiple = 32

    def __init__(
        self, in_channels: int = 3, out_channels: int = 1, base_width: int = 64, bilinear: bool = True,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, base_width) < 1:
            raise ValueError(
                f"in_channels, out_channels and base_width must be positive integers, got "
                f"{in_channels}, {out_channels}, {base_width}"
            )
        w, factor = base_width, 2 if bilinear else 1
        self.input_block = DoubleConv(in_channels, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 16 * w // factor)
        self.up1 = Up(16 * w, 8 * w // factor, bilinear)
        self.up2 = Up(8 * w, 4 * w // factor, bilinear)
        self.up3 = Up(4 * w, 2 * w // factor, bilinear)
        self.up4 = Up(2 * w, w, bilinear)
        self.output_conv = nn.Conv2d(w, out_channels, kernel_size=1)
        init_weights(self)
        # No ReLU follows the logits: PyTorch's smaller default init keeps first sigmoids near 0.5.
        self.output_conv.reset_parameters()
        # Made after init_weights, so the side heads keep that default init too.
        side_channels = [8 * w // factor, 4 * w // factor, 2 * w // factor]
        self.side_outputs = SideOutputs(side_channels, out_channels) if deep_supervision else None

    @staticmethod
    def arguments_from_weights(weights: dict[str, Tensor]) -> dict:
        """The constructor arguments that give a UNet exactly these weights (KeyError: not a UNet's)."""
        first = weights["input_block.0.weight"]  # (w, in_channels, 3, 3)
        return {"in_channels": first.shape[1], "out_channels": weights["output_conv.weight"].shape[0],
                "base_width": first.shape[0], "bilinear": "up1.up_conv.weight" not in weights,
                "deep_supervision": "side_outputs.heads.0.weight" in weights}

    def forward(self, images: Tensor) -> Tensor | list[Tensor]:
        height, width = images.shape[-2:]
        x = pad_to_multiple(images, self.pad_multiple)  # (B, 3, H, W), H and W now multiples of 32
        x1 = self.input_block(x)  # (B, w, H, W)
        x2 = self.down1(x1)  # (B, 2w, H/2, W/2)
        x3 = self.down2(x2)  # (B, 4w, H/4, W/4)
        x4 = self.down3(x3)  # (B, 8w, H/8, W/8)
        x5 = self.down4(x4)  # (B, 16w / factor, H/16, W/16)
        u1 = self.up1(x5, x4)  # (B, 8w / factor, H/8, W/8)
        u2 = self.up2(u1, x3)  # (B, 4w / factor, H/4, W/4)
        u3 = self.up3(u2, x2)  # (B, 2w / factor, H/2, W/2)
        u4 = self.up4(u3, x1)  # (B, w, H, W)
        logits = self.output_conv(u4)  # (B, out_channels, H, W)
        if self.side_outputs is None or not self.training:
            return logits[..., :height, :width]
        side_logits = self.side_outputs([u1, u2, u3], size=x.shape[-2:])
        return [output[..., :height, :width] for output in (logits, *side_logits)]
