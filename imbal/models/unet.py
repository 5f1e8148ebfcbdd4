"""U-Net (Ronneberger, Fischer, Brox 2015) for binary segmentation: one logit per pixel."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imbal.errors import ImbalError


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Up(nn.Module):
    """Up-sample by 2, concatenate the skip connection, double convolution."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, *, bilinear: bool):
        super().__init__()
        if bilinear:
            # bilinear up-sampling keeps the channels; a 1x1 conv halves them as the
            # transposed convolution does, so both variants have the same widths
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(c_in, c_in // 2, 1)
            )
        else:
            self.up = nn.ConvTranspose2d(c_in, c_in // 2, kernel_size=2, stride=2)
        self.conv = double_conv(c_in // 2 + c_skip, c_out)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net with ``depth`` down-samplings; widths ``base_width * 2^level``.

    Differences from the paper, as in most modern re-implementations: padded
    ("same") convolutions so the output has the input's size (the paper used
    valid convolutions and an overlap-tile strategy), and batch norm after each
    convolution.  Inputs whose sides are not multiples of ``2^depth`` are
    reflect-padded and the logits cropped back.

    Args:
        in_shape: ``(channels, H, W)`` of one input (injected from the data).
        num_classes: classes of the data (injected); 1 or 2 give one logit channel
            (binary masks, sigmoid), more give one channel per class.
        depth: number of 2x down-samplings (paper: 4).
        base_width: channels of the first level (paper: 64).
        bilinear: bilinear up-sampling + 1x1 conv instead of 2x2 transposed convolutions (paper).
        prior: initial foreground probability of every pixel: the output bias starts at
            ``-log((1 - prior) / prior)`` (Lin et al. 2017's prior initialisation,
            which keeps the many background pixels from swamping the first steps);
            null: PyTorch's default initialisation.

    Shape:
        ``[N, C, H, W]`` -> logits ``[N, 1, H, W]``.

    Reference:
        Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
        Image Segmentation. MICCAI 2015.
    """

    #: the task uses the output as logits (no classifier head)
    outputs_logits = True

    def __init__(
        self,
        *,
        in_shape: Sequence[int] = (3, 256, 256),
        num_classes: int = 1,
        depth: int = 4,
        base_width: int = 64,
        bilinear: bool = False,
        prior: float | None = 0.01,
    ):
        super().__init__()
        if depth < 1 or base_width < 2:
            raise ImbalError(f"model 'unet': depth must be >= 1 and base_width >= 2, got {depth}, {base_width}")
        c_in = int(in_shape[0])
        self.depth = int(depth)
        self.out_channels = 1 if int(num_classes) <= 2 else int(num_classes)
        widths = [int(base_width) * 2**i for i in range(depth + 1)]
        self.inc = double_conv(c_in, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), double_conv(widths[i], widths[i + 1])) for i in range(depth)
        )
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], bilinear=bilinear) for i in reversed(range(depth))
        )
        self.outc = nn.Conv2d(widths[0], self.out_channels, 1)
        if prior is not None:
            if not 0.0 < prior < 1.0:
                raise ImbalError(f"model 'unet': prior must be in (0, 1) or null, got {prior}")
            nn.init.constant_(self.outc.bias, -math.log((1.0 - prior) / prior))
        self.out_features = self.out_channels

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.outc(y)[..., :h, :w]
