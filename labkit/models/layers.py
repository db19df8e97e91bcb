"""Pieces both models share: the 3x3 conv, He initialisation, padding to a multiple of 32 and the
side outputs of deep supervision."""

import torch.nn.functional as F
from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1, so stride 1 keeps H and W. No bias: a BatchNorm follows."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def init_weights(model: nn.Module) -> None:
    """torchvision's ResNet initialisation: He et al. (2015) normal for convs followed by a ReLU,
    BatchNorm starting as the identity (scale 1, shift 0)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def pad_to_multiple(images: Tensor, multiple: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom and right so H and W become multiples of `multiple`.

    Every downsampling then halves an even size, and the caller crops the output back with
    `output[..., :H, :W]`. Mirroring the border is how Ronneberger et al. (2015) extend a tile;
    inputs too small to mirror (pad >= size) repeat their edge pixels instead.
    """
    height, width = images.shape[-2:]
    pad_height, pad_width = -height % multiple, -width % multiple
    if pad_height == 0 and pad_width == 0:
        return images
    mode = "reflect" if pad_height < height and pad_width < width else "replicate"
    return F.pad(images, (0, pad_width, 0, pad_height), mode=mode)


class SideOutputs(nn.Module):
    """Deep supervision (Lee et al. 2015, "Deeply-Supervised Nets"; UNet++, Zhou et al. 2018):
    a 1x1 conv turns each coarser decoder stage into logits, upsampled bilinearly to full size, so
    the loss reaches the early decoder directly instead of only through the layers above it.

    Used only while training: the models return these logits next to the main ones in train mode
    and the loss weighs them (`labkit.losses.SegmentationLoss`); in eval mode they are skipped.
    """

    def __init__(self, channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Conv2d(width, out_channels, kernel_size=1) for width in channels)

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> list[Tensor]:
        return [F.interpolate(head(feature), size=size, mode="bilinear", align_corners=False)
                for head, feature in zip(self.heads, features)]
