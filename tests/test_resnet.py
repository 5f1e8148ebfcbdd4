"""Backbones: ResNet-32 of He et al. (parameter count, shapes), torchvision ResNets with the CIFAR stem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imbal.errors import ImbalError
from imbal.models.heads import CosineHead, build_head
from imbal.models.resnet_cifar import ResNetCifar
from imbal.models.resnets import TorchvisionResNet


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet32_layout_and_parameter_count():
    m = ResNetCifar(in_shape=(3, 32, 32), blocks=5)
    # by hand: stem 3*16*9 + BN 32; stage s with c_in -> c: first block c_in*c*9 + c*c*9 + 2 BN (4c),
    # then 4 blocks of 2*c*c*9 + 4c; option-A shortcuts have no parameters
    def stage(cin, c):
        return (cin * c * 9 + c * c * 9 + 4 * c) + 4 * (2 * c * c * 9 + 4 * c)
    expect = 3 * 16 * 9 + 32 + stage(16, 16) + stage(16, 32) + stage(32, 64)
    assert n_params(m) == expect == 463_504
    head = build_head("linear", m.out_features, 10)
    assert n_params(m) + n_params(head) == 464_154  # "0.46M" of He et al. Table 6 / the LDAM code
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 31  # + the fc layer = 32 weighted layers
    assert [b.conv1.out_channels for b in (m.layer1[0], m.layer2[0], m.layer3[0])] == [16, 32, 64]
    assert len(m.layer1) == len(m.layer2) == len(m.layer3) == 5


def test_resnet32_features_shape_and_cosine_head():
    m = ResNetCifar(in_shape=(3, 32, 32)).eval()
    x = torch.randn(4, 3, 32, 32)
    f = m(x)
    assert f.shape == (4, 64) and m.out_features == 64
    logits = CosineHead(64, 10)(f)
    assert logits.shape == (4, 10) and logits.abs().max() <= 1.0 + 1e-6
    # the downsampling shortcut: stride-2 subsample, zero-padded channels
    block = m.layer2[0]
    z = torch.randn(2, 16, 8, 8)
    sc = block.shortcut(z)
    assert sc.shape == (2, 32, 4, 4)
    assert torch.equal(sc[:, 8:24], z[:, :, ::2, ::2]) and sc[:, :8].abs().sum() == 0 and sc[:, 24:].abs().sum() == 0


@pytest.mark.parametrize("arch,width,params", [("resnet18", 512, 11_168_832), ("resnet50", 2048, 23_500_352)])
def test_torchvision_resnets_cifar_stem(arch, width, params):
    m = TorchvisionResNet(arch=arch, in_shape=(3, 32, 32)).eval()
    assert m.cifar_stem and m.out_features == width
    assert m.net.conv1.kernel_size == (3, 3) and m.net.conv1.stride == (1, 1) and isinstance(m.net.maxpool, nn.Identity)
    # torchvision's resnet without fc has 11,176,512 (18) / 23,508,032 (50) parameters; the 3x3 stem
    # has 3*64*9 = 1,728 weights instead of 3*64*49 = 9,408
    assert n_params(m) == params
    if arch == "resnet18":  # (resnet50's forward is the same code path, only slower)
        with torch.no_grad():
            assert m(torch.randn(2, 3, 32, 32)).shape == (2, width)


def test_torchvision_resnet_imagenet_stem_and_channels():
    m = TorchvisionResNet(arch="resnet18", in_shape=(3, 96, 96))
    assert not m.cifar_stem and m.net.conv1.kernel_size == (7, 7)
    m1 = TorchvisionResNet(arch="resnet18", in_shape=(1, 28, 28), cifar_stem=False)
    assert m1.net.conv1.in_channels == 1 and m1.net.conv1.kernel_size == (7, 7)
    with torch.no_grad():
        assert m1(torch.randn(2, 1, 28, 28)).shape == (2, 512)


def test_bad_backbone_input_is_one_line():
    with pytest.raises(ImbalError, match=r"takes images \[C, H, W\], but the data gives inputs of shape \[64\]"):
        ResNetCifar(in_shape=(64,))
    with pytest.raises(ImbalError, match=r"model.arch 'resnet7' is not one of"):
        TorchvisionResNet(arch="resnet7", in_shape=(3, 32, 32))
