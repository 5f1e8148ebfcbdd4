"""Config mistakes: a key typo, a bad value, a post-hoc parameter, a plugin loss's output: one line, exit 2.

Every case runs ``train.py`` in-process (``run_inprocess``); the config cases fail before the run
dir is locked or any data is read (only Hydra's ``.hydra/`` and ``train.log`` are in the run dir).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import pytest

from tests.test_bad_inputs import run_inprocess

#: tiny Gaussian data: a case that slipped through validation would still end in seconds
TINY = ["data=gaussian_lt", "data.n_max=40", "data.ratio=2", "data.val_per_class=5", "data.test_per_class=5",
        "data.batch_size=16", "trainer.enable_progress_bar=false"]

TYPOS = {
    "loss hyper-parameter": (["loss=focal", "loss.gama=2"],
                             "unknown config key 'loss.gama' (did you mean loss.gamma?); add a new key with +loss.gama=2"),
    "trainer key": (["trainer.max_epoch=1"], "unknown config key 'trainer.max_epoch' (did you mean trainer.max_epochs"),
    "data key": (["data.ratoi=10"], "unknown config key 'data.ratoi' (did you mean data.ratio"),
    "group name": (["los=focal"], "unknown config group or key 'los' (did you mean loss?); add a new key with +los=focal"),
    "nested key": (["optimizer.lr=-1"], "unknown config key 'optimizer.lr' (did you mean optimizer.optim.lr"),
    "post-hoc parameter": (["posthoc.la.taux=2"], "unknown config key 'posthoc.la.taux' (did you mean posthoc.la.tau"),
}

VALUES = {
    "batch size 0": (["data.batch_size=0"], "data.batch_size=0: expected an integer >= 1"),
    "negative workers": (["data.num_workers=-1"], "data.num_workers=-1: expected an integer >= 0"),
    "n_max 0": (["data.n_max=0"], "data.n_max=0: expected an integer >= 1 (training samples of the head class"),
    "negative lr": (["optimizer.optim.lr=-1"], "optimizer.optim.lr=-1: expected a finite number >= 0"),
    "nan lr": (["optimizer.optim.lr=nan"], "optimizer.optim.lr=nan: expected a finite number >= 0"),
    "inf lr": (["optimizer.optim.lr=inf"], "optimizer.optim.lr=inf: expected a finite number >= 0"),
    "seed not a number": (["seed=abc"], "seed='abc': expected an integer in [0, 4294967295]"),
    "negative seed": (["seed=-1"], "seed=-1: expected an integer in [0, 4294967295]"),
    "fractional seed": (["seed=1.5"], "seed=1.5: expected an integer in [0, 4294967295]"),
    "negative epochs": (["trainer.max_epochs=-3"], "trainer.max_epochs=-3: expected an integer >= 1"),
    "zero epochs": (["trainer.max_epochs=0"], "trainer.max_epochs=0: expected an integer >= 1"),
    "endless epochs": (["trainer.max_epochs=-1"], "trainer.max_epochs=-1: expected an integer >= 1; -1 (no epoch limit) "
                                                  "needs trainer.max_steps >= 1"),
    "bogus precision": (["trainer.precision=bogus"], "trainer.precision='bogus': expected one of "),
    "zero devices": (["trainer.devices=0"], "trainer.devices=0: expected a number of devices >= 1, -1 (all), auto"),
    "post-hoc tau not a number": (["posthoc.la.tau=abc"], "posthoc.la.tau='abc': expected a finite number"),
    "post-hoc beta 0": (["posthoc.threshold.beta=0"], "posthoc.threshold.beta=0: expected a number > 0"),
    "post-hoc test prior": (["posthoc.prior_shift.test_prior=foo"],
                            "posthoc.prior_shift.test_prior='foo': expected null, em or a list of class priors"),
    "post-hoc grid empty": (["+posthoc.la_tuned.grid=[]"], "posthoc.la_tuned.grid=[]: expected a non-empty list of numbers (the tuning grid is empty)"),
    "metric name": (["optimized_metric=val/bal_acc"], "optimized_metric='val/bal_acc': expected val/<metric> or "
                                                      "test/<metric>"),
}
if not torch.cuda.is_available():
    for _acc in ("gpu", "cuda"):
        VALUES[f"accelerator {_acc} without a GPU"] = (
            [f"trainer.accelerator={_acc}"],
            f"trainer.accelerator='{_acc}': no CUDA GPU on this machine (torch.cuda.is_available() is False); "
            "use trainer.accelerator=cpu or auto")

#: refused once the data is set up (the task is known, the parts' modules imported), before training
BEFORE_FIT = {
    "metric of another task": (["optimized_metric=val/dice"], "optimized_metric='val/dice': expected val/<metric> or "
                                                              "test/<metric>, <metric> one of the metrics of a multiclass"),
    "unknown correction": (["+posthoc.nope={}"], "unknown post-hoc correction 'nope'; choose from: la,"),
}


def _run(args: list[str], tmp_path, capsys) -> tuple[int, list[str], str]:
    code, err = run_inprocess([*TINY, *args, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    return code, [ln for ln in err.splitlines() if ln.startswith("imbal: error:")], err


def _assert_one_line(code: int, lines: list[str], err: str, expected: str, tmp_path) -> None:
    assert code == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("name", list(TYPOS))
def test_key_typo(name, tmp_path, capsys):
    args, expected = TYPOS[name]
    code, lines, err = _run(args, tmp_path, capsys)
    _assert_one_line(code, lines, err, expected, tmp_path)
    assert lines[0].startswith("imbal: error: unknown config")
    assert not (tmp_path / "run").exists()  # refused while Hydra composes: no run dir at all


@pytest.mark.parametrize("name", list(VALUES))
def test_bad_value(name, tmp_path, capsys):
    args, expected = VALUES[name]
    code, lines, err = _run(args, tmp_path, capsys)
    _assert_one_line(code, lines, err, expected, tmp_path)
    assert lines[0].startswith(f"imbal: error: {expected}")
    # before the lock and the data: nothing but Hydra's own files in the run dir
    assert {p.name for p in (tmp_path / "run").iterdir()} <= {".hydra", "train.log"}


def test_bad_precision_lists_lightnings_values(tmp_path, capsys):
    code, lines, err = _run(["trainer.precision=bogus"], tmp_path, capsys)
    assert code == 2 and len(lines) == 1, err[-2000:]
    for valid in ("16-mixed", "bf16-mixed", "32-true", "64-true", "bf16"):
        assert valid in lines[0].split("expected one of ")[1].split(", ")


@pytest.mark.parametrize("name", list(BEFORE_FIT))
def test_refused_before_fit(name, tmp_path, capsys):
    args, expected = BEFORE_FIT[name]
    code, lines, err = _run(["trainer.max_epochs=1", *args], tmp_path, capsys)
    _assert_one_line(code, lines, err, expected, tmp_path)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_key_check_leaves_hydra_as_it_was(tmp_path, capsys):
    """The wrapped override step is Hydra's own again after the command (the compose API sees no change)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    before = ConfigLoaderImpl.__dict__["_apply_overrides_to_config"]
    code, _, err = _run(["loss.gama=2"], tmp_path, capsys)
    assert code == 2, err[-2000:]
    assert ConfigLoaderImpl.__dict__["_apply_overrides_to_config"] is before


# --- plugin losses whose output training cannot use, installed as a distribution with entry points ---

class VectorLoss(nn.Module):
    """Per-sample losses: forgot the reduction."""

    def forward(self, logits, y):
        return F.cross_entropy(logits, y, reduction="none")


class FloatLoss(nn.Module):
    """A Python number."""

    def forward(self, logits, y):
        return F.cross_entropy(logits, y).item()


class DetachedLoss(nn.Module):
    """Cut from the graph."""

    def forward(self, logits, y):
        return F.cross_entropy(logits, y).detach()


PLUGIN_LOSSES = {"bad_vector": "VectorLoss", "bad_float": "FloatLoss", "bad_detached": "DetachedLoss"}


@pytest.fixture
def bad_plugin(tmp_path, monkeypatch):
    """A distribution ``my-plugin 0.1`` on sys.path whose entry points name this module's losses."""
    from hydra.core.config_store import ConfigStore

    from imbal.losses import registry

    site = tmp_path / "site"
    info = site / "my_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    lines = [f"{name} = {__name__}:{cls}" for name, cls in PLUGIN_LOSSES.items()]
    (info / "entry_points.txt").write_text("[imbal.losses]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    registry.refresh()
    yield
    monkeypatch.undo()
    registry.refresh()
    stored = ConfigStore.instance().repo.get("loss", {})
    for name in PLUGIN_LOSSES:
        stored.pop(f"{name}.yaml", None)


@pytest.mark.parametrize("loss,expected", [
    ("bad_vector", "loss 'bad_vector' (package my-plugin 0.1) returned a tensor of shape [16], expected a scalar "
                   "tensor with a gradient"),
    ("bad_float", "loss 'bad_float' (package my-plugin 0.1) returned a float ("),
    ("bad_detached", "loss 'bad_detached' (package my-plugin 0.1) returned a tensor without a gradient"),
])
def test_plugin_loss_output_refused_on_first_batch(bad_plugin, loss, expected, tmp_path, capsys):
    code, lines, err = _run([f"loss={loss}", "trainer.max_epochs=1", "posthoc={}"], tmp_path, capsys)
    _assert_one_line(code, lines, err, expected, tmp_path)
    assert "expected a scalar tensor with a gradient" in lines[0]


def test_metric_name_suggests_the_closest(tmp_path, capsys):
    code, lines, err = _run(["optimized_metric=val/bal_acc"], tmp_path, capsys)
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].endswith("; did you mean val/balanced_accuracy?")


# --- validate_config on composed configs: every shipped config passes, the edge values it allows ---

@pytest.fixture(scope="module")
def compose_cfg():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imbal.config import conf_dir, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield lambda *ov: compose(config_name="train", overrides=["run_dir=/nonexistent-not-used", *ov])
    GlobalHydra.instance().clear()


def _shipped():
    from imbal.config import yaml_options

    return [f"{g}={o}" for g in ("data", "experiment", "trainer", "optimizer") for o in yaml_options(g)]


@pytest.mark.parametrize("choice", _shipped())
def test_shipped_configs_pass_validation(compose_cfg, choice):
    from imbal.runner.validate import validate_config

    from imbal.errors import ImbalError

    if choice in ("trainer=gpu", "trainer=ddp") and not torch.cuda.is_available():
        # a GPU preset on a machine without one is refused, in the one line naming the accelerator
        with pytest.raises(ImbalError, match=r"^trainer.accelerator='gpu': no CUDA GPU on this machine"):
            validate_config(compose_cfg(choice))
        return

    cfg = compose_cfg(choice)
    if cfg.get("stage") is not None:  # a stage-2 recipe (experiment=cifar*_lt_crt, ...): the user gives init_from
        with pytest.raises(ImbalError, match=r"^stage=(crt|lws|finetune): needs init_from=<"):
            validate_config(cfg)
        return
    validate_config(cfg)


@pytest.mark.parametrize("overrides", [
    ["trainer.max_epochs=-1", "trainer.max_steps=5"],  # bounded by steps
    ["trainer.max_epochs=0", "trainer.fast_dev_run=true"],  # fast_dev_run runs one epoch
    ["trainer.max_epochs=null"],  # Lightning's default
    ["optimizer.optim.lr=0", "seed=4294967295", "trainer.precision=16", "trainer.devices=auto"],
    ["trainer.devices=[0]", "trainer.precision=bf16-mixed", "trainer.accelerator=cpu"],
])
def test_edge_values_allowed(compose_cfg, overrides):
    from imbal.runner.validate import validate_config

    validate_config(compose_cfg(*overrides))


def test_unknown_added_key_names_the_key(tmp_path, capsys):
    """``+data.foo=1`` on a data class without ``foo``: one line naming data.foo, not Python's TypeError."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()  # a compose test before this one may leave Hydra initialised
    code, lines, err = _run(["+data.foo=1"], tmp_path, capsys)
    expected = "data.foo: imbal.data.gaussian.GaussianLTDataModule takes no argument 'foo'"
    _assert_one_line(code, lines, err, expected, tmp_path)
    assert lines[0].startswith(f"imbal: error: {expected}")


def test_unquoted_path_with_equals_names_the_fix(tmp_path, capsys):
    """A sweep job dir (``0_seed=0,loss=ce``) as a value: one line saying how to quote it, not Hydra's parser error."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    code, lines, err = _run(["init_from=/tmp/sweep/0_seed=0,loss=ce"], tmp_path, capsys)
    expected = ("cannot read the override 'init_from=/tmp/sweep/0_seed=0,loss=ce' (mismatched input '=' expecting "
                "<EOF>); a value holding '=', ',', spaces or brackets needs quotes: "
                "\"init_from='/tmp/sweep/0_seed=0,loss=ce'\"")
    assert code == 2 and lines == [f"imbal: error: {expected}"], err[-2000:]
