"""The loss registry: entry points, lazy loading, injection, errors, isolation of broken plugins."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import pytest
import torch
from torch import nn

from imbal import losses
from imbal.errors import ImbalError
from imbal.losses import registry

BUILTINS = ["ce", "weighted_ce", "focal", "logit_adjusted"]


class _FakeDist:
    def __init__(self, name: str, version: str = "9.9"):
        self.metadata = {"Name": name}
        self.version = version


def _ep(name: str, value: str, dist: str) -> EntryPoint:
    ep = EntryPoint(name=name, value=value, group=registry.GROUP)
    # EntryPoint is immutable; the registry reads .dist like importlib does.
    object.__setattr__(ep, "dist", _FakeDist(dist))
    return ep


class GoodLoss(nn.Module):
    """A fake plugin loss that names every injectable argument."""

    tasks = ("multiclass",)

    def __init__(self, *, scale: float = 2.0, class_counts=None, num_classes=None, task=None):
        super().__init__()
        self.scale, self.class_counts, self.num_classes, self.task = scale, class_counts, num_classes, task

    def forward(self, logits, target):
        return self.scale * nn.functional.cross_entropy(logits, target)


@pytest.fixture
def fake_plugins(monkeypatch):
    """Simulated installed distributions: a good plugin, a broken one, a duplicate name, a lazy one."""
    mod = types.ModuleType("fake_imbal_plugin")
    mod.GoodLoss = GoodLoss
    monkeypatch.setitem(sys.modules, "fake_imbal_plugin", mod)
    real = list(registry.entry_points(group=registry.GROUP))
    fakes = [
        _ep("good", "fake_imbal_plugin:GoodLoss", "imbal-good"),
        _ep("broken", "no_such_module_xyz.sub:Loss", "imbal-broken"),
        _ep("ce", "fake_imbal_plugin:GoodLoss", "imbal-impostor"),
        _ep("lazy", "fake_lazy_plugin_never_imported:Loss", "imbal-lazy"),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: real + fakes)
    with pytest.warns(UserWarning, match="imbal-impostor"):
        registry.refresh()
    yield
    monkeypatch.undo()
    registry.refresh()


def test_builtins_are_entry_points():
    names = losses.available(refresh=True)
    for name in BUILTINS:
        assert name in names
        assert registry.entries()[name].package == "imbal"


def test_listing_is_lazy(fake_plugins):
    assert "lazy" in losses.available()
    # listed, but its module was never imported
    assert "fake_lazy_plugin_never_imported" not in sys.modules
    assert registry.entries()["lazy"].value == "fake_lazy_plugin_never_imported:Loss"


def test_broken_plugin_is_isolated(fake_plugins):
    with pytest.raises(losses.LossPluginError, match=r"'broken' from package 'imbal-broken'.*ModuleNotFoundError"):
        losses.get("broken")
    assert "broken" in losses.broken()
    # every other loss still works
    loss = losses.build("good", stats={"class_counts": [5, 1], "num_classes": 2, "task": "multiclass"})
    assert isinstance(loss, GoodLoss)
    assert isinstance(losses.build("ce"), nn.Module)


def test_duplicate_name_keeps_the_builtin(fake_plugins):
    assert registry.entries()["ce"].package == "imbal"
    assert any("imbal-impostor" in m and "'ce'" in m for m in losses.conflicts())
    assert type(losses.build("ce")).__name__ == "CrossEntropy"


def test_injection_only_what_is_named(fake_plugins):
    stats = {"class_counts": [10, 3, 1], "num_classes": 3, "task": "multiclass", "test_prior": [0.3, 0.3, 0.4]}
    loss = losses.build("good", stats=stats, scale=3.0)
    assert (loss.scale, loss.class_counts, loss.num_classes, loss.task) == (3.0, [10, 3, 1], 3, "multiclass")
    # ce names none of them: building it with stats must not pass any
    ce = losses.build("ce", stats=stats)
    assert ce.label_smoothing == 0.0


def test_injection_from_datastats_object():
    from imbal.data.stats import DataStats

    stats = DataStats(task="multiclass", num_classes=3, class_counts=[6, 3, 1], class_names=list("abc"), modality="vector")
    la = losses.build("logit_adjusted", stats=stats)
    expected = torch.tensor([0.6, 0.3, 0.1]).log()
    assert torch.allclose(la.log_prior, expected)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ImbalError) as err:
        losses.build("nope")
    msg = str(err.value)
    assert "unknown loss 'nope'" in msg and "ce" in msg and "focal" in msg
    assert "\n" not in msg


def test_unknown_hparam_and_missing_counts_and_wrong_task():
    with pytest.raises(ImbalError, match="no hyper-parameter 'gama'; valid: gamma"):
        losses.build("focal", gama=1.0)
    with pytest.raises(ImbalError, match="needs 'class_counts'"):
        losses.build("logit_adjusted", stats={"task": "multiclass", "num_classes": 3})
    with pytest.raises(ImbalError, match="does not support task 'binary'; it supports: multiclass"):
        losses.build("logit_adjusted", stats={"task": "binary", "class_counts": [3, 1], "num_classes": 2})


def test_zero_count_class_named_for_log_prior():
    with pytest.raises(ImbalError, match="class 2 has zero training samples"):
        losses.build("logit_adjusted", stats={"class_counts": [5, 2, 0], "num_classes": 3, "task": "multiclass"})


def test_describe_lists_package_tasks_defaults():
    d = losses.describe("focal")
    assert d["package"] == "imbal"
    assert "binary" in d["tasks"] and "multiclass" in d["tasks"]
    assert d["hparams"]["gamma"] == 2.0
    assert d["injected"] == ("class_counts", "task")
