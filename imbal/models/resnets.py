"""``model=resnet18`` / ``model=resnet50``: torchvision's ImageNet ResNets as feature backbones.

Random initialisation (no downloaded weights).  The classifier ``fc`` is
replaced by the identity, so the backbone returns pooled features and the task
adds its own (linear or cosine) head.  ``cifar_stem`` swaps the 7x7 stride-2
stem and its max-pool for a 3x3 stride-1 convolution, the usual adaptation
for 32x32 inputs (e.g. Kang et al. 2020's and the SimCLR CIFAR variants):
``null`` (auto) adapts it when the input side is at most 64 pixels.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from imbal.errors import ImbalError

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet without its classifier, returning ``[N, out_features]`` features.

    Args:
        arch: ``resnet18`` | ``resnet34`` | ``resnet50`` | ``resnet101``.
        in_shape: input shape ``[C, H, W]`` (injected); ``C != 3`` replaces the stem convolution.
        cifar_stem: ``true``: 3x3 stride-1 stem, no max-pool; ``false``: ImageNet stem;
            ``null``: ``true`` when ``min(H, W) <= 64``.
        zero_init_residual: torchvision's option (last BN of each block starts at 0).
    """

    def __init__(
        self,
        *,
        arch: str = "resnet18",
        in_shape: Sequence[int] = (3, 224, 224),
        cifar_stem: bool | None = None,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        import torchvision

        if arch not in ARCHS:
            raise ImbalError(f"model.arch '{arch}' is not one of {', '.join(ARCHS)}")
        if len(in_shape) != 3:
            raise ImbalError(f"model '{arch}' takes images [C, H, W], but the data gives inputs of shape {list(in_shape)}")
        net = getattr(torchvision.models, arch)(weights=None, zero_init_residual=zero_init_residual)
        c, h, w = (int(v) for v in in_shape)
        small = min(h, w) <= 64 if cifar_stem is None else bool(cifar_stem)
        if small:
            net.conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif c != 3:
            net.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if small or c != 3:
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        self.cifar_stem = small
        self.out_features = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
