"""model.prior for mask models: a probability (Lin et al.'s output-bias init), auto (the training pixels'
foreground share, from the injected DataStats) or null; bad values in one line."""

from __future__ import annotations

import math

import pytest
import torch

from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.models.unet import UNet, prior_bias


def _stats(counts):
    return DataStats(task="segmentation", num_classes=2, class_counts=list(counts),
                     class_names=["background", "foreground"], modality="mask", input_shape=(3, 32, 32))


def test_prior_bias_by_hand():
    assert prior_bias(0.01) == pytest.approx(-math.log(99.0), abs=1e-12)
    assert prior_bias("auto", _stats([300, 700])) == pytest.approx(math.log(7 / 3), abs=1e-12)
    assert prior_bias(None) is None
    # an all-background or all-foreground training split stays finite (clipped to [1e-4, 1 - 1e-4])
    assert prior_bias("auto", _stats([100, 0])) == pytest.approx(-math.log((1 - 1e-4) / 1e-4), abs=1e-9)
    assert prior_bias("auto", _stats([0, 100])) == pytest.approx(math.log((1 - 1e-4) / 1e-4), abs=1e-9)


@pytest.mark.parametrize("value,match", [
    ("often", r"^model.prior='often': expected a probability in \(0, 1\), auto or null$"),
    (1.0, r"^model.prior=1.0: expected a probability in \(0, 1\), auto or null$"),
    (True, r"^model.prior=True: expected a probability in \(0, 1\), auto or null$"),
])
def test_bad_prior_is_one_line(value, match):
    with pytest.raises(ImbalError, match=match):
        prior_bias(value)


def test_auto_without_counts_is_one_line():
    with pytest.raises(ImbalError, match=r"^model.prior=auto: needs the training split's \[background, foreground\]"):
        prior_bias("auto", None)


def test_unet_starts_at_the_foreground_share():
    torch.manual_seed(0)
    net = UNet(in_shape=(3, 16, 16), base_width=2, depth=1, prior="auto", stats=_stats([240, 760]))
    assert torch.allclose(net.outc.bias, torch.full_like(net.outc.bias, math.log(0.76 / 0.24)))


def test_smp_starts_at_the_foreground_share():
    pytest.importorskip("segmentation_models_pytorch")
    from imbal.models.smp_model import SmpModel

    m = SmpModel(encoder="resnet18", in_shape=(3, 32, 32), prior="auto", stats=_stats([1, 3]))
    bias = m.model.segmentation_head[0].bias
    assert torch.allclose(bias, torch.full_like(bias, math.log(3.0)))
