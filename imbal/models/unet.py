"""U-Net (Ronneberger, Fischer, Brox 2015) for binary segmentation: one logit per pixel."""

from __future__ import annotations

import math
from typing import Any, Sequence

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



#: ``prior: auto`` is clipped to [PRIOR_CLIP, 1 - PRIOR_CLIP] (an empty or full training split stays finite)
PRIOR_CLIP = 1e-4


def prior_bias(prior: float | str | None, stats: Any = None) -> float | None:
    """The output bias ``-log((1 - p) / p)`` of a foreground prior ``p`` (Lin et al. 2017), or None for ``null``.

    ``prior="auto"`` takes ``p`` from the training counts ``[background, foreground]`` of ``stats``
    (the foreground share of the training pixels), clipped to [1e-4, 1 - 1e-4].
    """
    if prior is None:
        return None
    if isinstance(prior, str):
        if prior.strip().lower() != "auto":
            raise ImbalError(f"model.prior={prior!r}: expected a probability in (0, 1), auto or null")
        counts = getattr(stats, "class_counts", None)
        if not counts or len(counts) != 2 or sum(counts) <= 0:
            raise ImbalError("model.prior=auto: needs the training split's [background, foreground] pixel counts "
                             "(a mask data module); give a probability instead")
        p = min(max(float(counts[1]) / float(sum(counts)), PRIOR_CLIP), 1.0 - PRIOR_CLIP)
    else:
        if isinstance(prior, bool) or not 0.0 < float(prior) < 1.0:
            raise ImbalError(f"model.prior={prior}: expected a probability in (0, 1), auto or null")
        p = float(prior)
    return -math.log((1.0 - p) / p)

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
            ``auto``: the foreground share of the training pixels (``stats.class_counts``), for
            data whose foreground is not rare; null: PyTorch's default initialisation.
        stats: the data's statistics (injected; read by ``prior: auto``).

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
        prior: float | str | None = 0.01,
        stats: Any = None,
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
        bias = prior_bias(prior, stats)
        if bias is not None:
            nn.init.constant_(self.outc.bias, bias)
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
