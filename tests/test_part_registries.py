"""Parts chosen by name (samplers, heads, post-hoc corrections): one Registry, and users' own parts.

A user's sampler or head is named by ``_target_`` (no registration) and is what
the run then uses; a user's post-hoc correction is registered with
``imbal.posthoc.register``.  Unknown names are one line listing the choices.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import Sampler, TensorDataset

from imbal import posthoc as ph
from imbal.data.loaders import build_sampler, train_loader
from imbal.data.samplers import SAMPLERS
from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.kinds import MULTICLASS
from imbal.models.heads import HEADS, CosineHead, build_head
from imbal.registry import Registry

COUNTS = [6, 3, 2]
LABELS = torch.repeat_interleave(torch.arange(3), torch.tensor(COUNTS))  # class 2: indices 9, 10
HERE = __name__  # "tests.test_part_registries": the dotted prefix of the user parts below


# -- a user's parts, importable by dotted path ------------------------------------------------


class RareFirst(Sampler[int]):
    """A user's sampler: the indices of class ``cls``, rotated by ``seed + epoch``, ``repeats`` times."""

    def __init__(self, labels, seed, cls: int = 2, repeats: int = 1):
        self.labels, self.seed, self.cls, self.repeats = labels, seed, cls, repeats
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        idx = (self.labels == self.cls).nonzero().flatten().tolist()
        k = (self.seed + self.epoch) % len(idx)
        return idx[k:] + idx[:k]

    def __len__(self) -> int:
        return self.repeats * len(self._order())

    def __iter__(self):
        return iter(self._order() * self.repeats)


class ConstantHead(nn.Module):
    """A user's head: every weight ``value``, bias ``bias``."""

    def __init__(self, in_features: int, out_features: int, value: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.lin = nn.Linear(in_features, out_features)
        with torch.no_grad():
            self.lin.weight.fill_(value)
            self.lin.bias.fill_(bias)

    def forward(self, x):
        return self.lin(x)


def not_a_module(in_features, out_features):
    return in_features * out_features


def not_a_sampler(*, labels, seed):
    return len(labels) + seed


# -- the Registry itself ---------------------------------------------------------------------


def test_registry_register_get_names_and_unknown_message():
    reg = Registry("widget")

    @reg.register("b")
    def make_b(*, size=1):
        return ("b", size)

    assert reg.register("a", dict) is dict  # the call form returns the object
    assert reg.names() == reg.available() == list(reg) == ["b", "a"]  # registration order
    assert "a" in reg and "c" not in reg and ["x"] not in reg and len(reg) == 2
    assert reg.get("b") is make_b and reg["a"] is dict
    with pytest.raises(ImbalError) as err:
        reg.get("c")
    assert str(err.value) == "unknown widget 'c'; choose one of: b, a"
    assert str(Registry("widget", hint="choose from", sort=True).unknown("z")) == "unknown widget 'z'; choose from: (none registered)"
    reg.register("b", dict)  # a second registration replaces the first
    assert reg.get("b") is dict and reg.names() == ["b", "a"]
    assert reg.unregister("a") is dict and reg.names() == ["b"]


def test_registry_build_by_name_node_path_and_target():
    reg = Registry("widget")
    reg.register("pair", lambda x, *, k=2: (x, k))
    assert reg.build("pair", 5) == (5, 2)
    assert reg.build({"name": "pair", "k": 7}, 5) == (5, 7)
    # a dotted path (no registration), alone or as _target_ with parameters; name only labels the node
    head = reg.build(f"{HERE}.ConstantHead", 3, 2)
    assert isinstance(head, ConstantHead) and head.lin.weight.tolist() == [[1.0] * 3] * 2
    head = reg.build({"_target_": f"{HERE}:ConstantHead", "name": "mine", "value": 0.5, "_partial_": False}, 3, 2)
    assert head.lin.weight.tolist() == [[0.5] * 3] * 2
    with pytest.raises(ImbalError, match=r"^widget 'pair' got unknown keys \['j'\]; it takes: k$"):
        reg.build({"name": "pair", "j": 1}, 5)
    with pytest.raises(ImbalError, match=r"^widget 'mine' got unknown keys \['valu'\]; it takes: value, bias$"):
        reg.build({"_target_": f"{HERE}.ConstantHead", "name": "mine", "valu": 0.5}, 3, 2)
    with pytest.raises(ImbalError, match=r"^widget 'pair' cannot be called as <lambda>\(<2 positional>\): too many"):
        reg.build("pair", 5, 6)
    with pytest.raises(ImbalError, match=r"^a widget node needs 'name' \(one of: pair\) or '_target_'"):
        reg.build({"k": 1}, 5)


@pytest.mark.parametrize("path,msg", [
    ("nopkg_xyz.mod.Thing", "widget _target_ 'nopkg_xyz.mod.Thing' cannot be imported: No module named 'nopkg_xyz'"),
    (f"{HERE}.Nope", f"widget _target_ '{HERE}.Nope' cannot be imported: {HERE} has no attribute 'Nope'"),
    (f"{HERE}.HERE", f"widget _target_ '{HERE}.HERE' is a str, not a class or function"),
    ("Thing", "widget _target_ 'Thing' is not a dotted path such as 'mypkg.module.Class'"),
])
def test_bad_target_is_one_line_naming_the_path(path, msg):
    with pytest.raises(ImbalError) as err:
        Registry("widget").build({"_target_": path})
    assert str(err.value) == msg


def test_registry_module_imports_neither_torch_nor_hydra():
    code = "import sys, imbal.registry; print(sorted(m for m in ('torch', 'hydra') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- samplers --------------------------------------------------------------------------------


def test_builtin_samplers_are_registered():
    assert SAMPLERS.names() == ["none", "class_balanced", "sqrt", "progressive"]
    with pytest.raises(ImbalError) as err:
        build_sampler({"name": "nope"}, LABELS, seed=0)
    assert str(err.value) == "unknown sampler 'nope'; choose one of: none, class_balanced, sqrt, progressive"


def test_user_sampler_by_target_is_what_the_dataloader_yields():
    ds = TensorDataset(torch.arange(len(LABELS)), LABELS)
    cfg = {"name": "rare_first", "_target_": f"{HERE}.RareFirst", "repeats": 3}
    loader = train_loader(ds, labels=LABELS, batch_size=4, seed=1, sampler_cfg=cfg)
    s = loader.sampler
    assert isinstance(s, RareFirst)
    # it received the labels as a tensor, the run's seed, and the node's other keys
    assert torch.equal(s.labels, LABELS) and (s.seed, s.cls, s.repeats) == (1, 2, 3)
    batches = [(i.tolist(), y.tolist()) for i, y in loader]
    # class 2 is indices [9, 10]; rotated by seed 1 -> [10, 9], three times, in batches of 4
    assert batches == [([10, 9, 10, 9], [2, 2, 2, 2]), ([10, 9], [2, 2])]
    s.set_epoch(1)  # Lightning calls set_epoch every epoch: rotation 2 = none
    assert torch.cat([i for i, _ in loader]).tolist() == [9, 10] * 3


def test_user_sampler_through_hydra_partial_reaches_the_data_module():
    """A config's sampler node with ``_partial_: true``: Hydra hands over the class, the data module adds labels and seed."""
    from hydra.utils import instantiate

    node = {
        "_target_": "imbal.data.gaussian.GaussianLTDataModule", "num_classes": 3, "n_max": 20, "ratio": 10,
        "val_per_class": 2, "test_per_class": 2, "batch_size": 64, "seed": 0,
        "sampler": {"_target_": f"{HERE}.RareFirst", "_partial_": True, "cls": 1, "repeats": 2},
    }
    dm = instantiate(node, _convert_="all")
    dm.setup("fit")
    x_all, y_all = dm.splits["train"].tensors
    expect = (y_all == 1).nonzero().flatten().tolist() * 2  # seed 0, epoch 0: no rotation
    (x, y), = list(dm.train_dataloader())
    assert y.tolist() == [1] * len(expect) and len(expect) == 2 * int((y_all == 1).sum()) > 0
    assert torch.equal(x, x_all[expect])


def test_user_sampler_mistakes_are_one_line():
    with pytest.raises(ImbalError) as err:
        build_sampler({"_target_": f"{HERE}.RareFirst", "name": "mine", "repeat": 2}, LABELS, seed=0)
    assert str(err.value) == "sampler 'mine' got unknown keys ['repeat']; it takes: cls, repeats"
    with pytest.raises(ImbalError, match=r"^sampler _target_ 'mypkg_nope.Sampler' cannot be imported: No module named 'mypkg_nope'$"):
        build_sampler({"_target_": "mypkg_nope.Sampler"}, LABELS, seed=0)
    with pytest.raises(ImbalError, match=r"^sampler 'torch.utils.data.SequentialSampler' must take the keyword arguments imbal passes \(labels, seed\)"):
        build_sampler({"_target_": "torch.utils.data.SequentialSampler"}, LABELS, seed=0)
    with pytest.raises(ImbalError, match=r"^sampler 'mine' gave a int, not a torch.utils.data.Sampler"):
        build_sampler({"_target_": f"{HERE}.not_a_sampler", "name": "mine"}, LABELS, seed=0)


# -- heads -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    {"_target_": f"{HERE}.ConstantHead", "value": 0.5, "bias": -1.0},
    {"_target_": f"{HERE}:ConstantHead", "value": 0.5, "bias": -1.0},
])
def test_user_head_by_target_is_built(spec):
    head = build_head(spec, 3, 2)
    assert isinstance(head, ConstantHead) and (head.in_features, head.out_features) == (3, 2)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert head(x).tolist() == [[2.0, 2.0], [-1.0, -1.0]]  # 0.5 * 6 - 1, then the bias alone


def test_user_head_by_dotted_path_and_builtins():
    assert isinstance(build_head(f"{HERE}.ConstantHead", 4, 5), ConstantHead)
    assert HEADS.names() == ["linear", "cosine"]
    lin, cos = build_head("linear", 4, 5), build_head("cosine", 4, 5)
    assert type(lin) is nn.Linear and (lin.in_features, lin.out_features) == (4, 5)
    assert type(cos) is CosineHead and tuple(cos.weight.shape) == (5, 4)


def test_unknown_or_bad_head_is_one_line_value_error():
    with pytest.raises(ValueError) as err:  # ImbalError is a ValueError
        build_head("nope", 3, 2)
    assert isinstance(err.value, ImbalError)
    assert str(err.value) == "unknown head kind 'nope'; choose one of: linear, cosine"
    with pytest.raises(ImbalError, match=r"^head kind '.*not_a_module' gave a int, not a torch.nn.Module$"):
        build_head(f"{HERE}.not_a_module", 3, 2)


# -- post-hoc corrections ----------------------------------------------------------------------


@pytest.fixture
def user_correction():
    @ph.register("temper")
    def temper(ctx, *, t: float = 2.0):
        ctx.info["temper"] = {"t": t}
        return {"temper": ctx.test_logits / t}

    yield temper
    ph.CORRECTIONS.unregister("temper")


def _ctx():
    stats = DataStats(task=MULTICLASS, num_classes=2, class_counts=[9, 1], class_names=["a", "b"], modality="vector")
    logits = torch.tensor([[2.0, -4.0], [1.0, 3.0]])
    return ph.PosthocContext(stats=stats, val_logits=logits, val_targets=torch.tensor([0, 1]),
                             test_logits=logits, test_targets=torch.tensor([0, 1]))


def test_user_correction_registered_through_posthoc_register_is_applied(user_correction):
    assert "temper" in ph.CORRECTIONS and ph.CORRECTIONS.get("temper") is user_correction
    ctx = _ctx()
    out = ph.apply({"temper": {"t": 4.0}, "la": None}, ctx)
    assert list(out) == ["temper"]
    assert out["temper"].tolist() == [[0.5, -1.0], [0.25, 0.75]]
    assert ctx.info["temper"] == {"t": 4.0}
    # `true` runs it with its defaults, next to a built-in one
    out = ph.apply({"temper": True, "la": {"tau": 1.0}}, ctx)
    assert out["temper"].tolist() == [[1.0, -2.0], [0.5, 1.5]]
    # logit adjustment with prior (0.9, 0.1): z - log(prior)
    assert out["la"].flatten().tolist() == pytest.approx(
        [2.0 - math.log(0.9), -4.0 - math.log(0.1), 1.0 - math.log(0.9), 3.0 - math.log(0.1)], abs=1e-5)


def test_unknown_correction_lists_every_registered_one(user_correction):
    with pytest.raises(ImbalError) as err:
        ph.apply({"nope": {}}, _ctx())
    assert str(err.value) == ("unknown post-hoc correction 'nope'; choose from: "
                              + ", ".join(sorted(ph.CORRECTIONS.names())))
    assert {"la", "la_tuned", "tau_norm", "prior_shift", "threshold", "temper"} <= set(ph.CORRECTIONS)


def test_user_sampler_from_the_command_line_reaches_the_data_module(make_cfg):
    """``sampler._target_=...`` on the command line (no ``_partial_``): the runner hands the sampler node
    to the data module as plain data, which builds it with the training labels."""
    from imbal.runner import build_parts

    cfg = make_cfg("data=gaussian_lt", "data.num_classes=3", "data.n_max=20", "data.ratio=10",
                   "data.val_per_class=2", "data.test_per_class=2", "~sampler.name",
                   f"+sampler._target_={HERE}.RareFirst", "+sampler.cls=1", "+sampler.repeats=2")
    dm, _, _ = build_parts(cfg)
    y_all = dm.splits["train"].tensors[1]
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, RareFirst)
    ys = torch.cat([y for _, y in loader])
    assert ys.tolist() == [1] * (2 * int((y_all == 1).sum())) and len(ys) > 0
