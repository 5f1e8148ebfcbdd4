"""trainer.channels_last / trainer.compile / trainer.precision=bf16-mixed: what they change, one-line refusals,
and a bf16-mixed ResNet-32 run on the CPU whose loss is computed in float32."""

from __future__ import annotations

import copy
import json
import types

import lightning as L
import pytest
import torch

from imbal.errors import ImbalError
from imbal.models.resnet_cifar import ResNetCifar
from imbal.runner.trainer_options import IMBAL_TRAINER_KEYS, apply_trainer_options, compile_targets
from tests.cifar_fixture import write_cifar10

CPU = torch.device("cpu")


def task_of(backbone, loss=None):
    return types.SimpleNamespace(backbone=backbone, loss_fn=loss if loss is not None else torch.nn.CrossEntropyLoss())


def test_keys_are_imbals_and_documented():
    from omegaconf import OmegaConf

    from imbal.config import conf_dir

    node = OmegaConf.load(conf_dir() / "trainer" / "default.yaml")
    for key in ("channels_last", "compile", "compile_mode"):
        assert key in IMBAL_TRAINER_KEYS and key in node
    assert node.channels_last is False and node.compile is False  # defaults chosen by bench/trainer_options.py


@pytest.mark.parametrize("value,expected", [
    (False, ()), (None, ()), ("false", ()), (True, ("model",)), ("model", ("model",)), ("loss", ("loss",)),
    ("all", ("model", "loss")), ("MODEL", ("model",)),
])
def test_compile_values(value, expected):
    assert compile_targets(value) == expected


def test_compile_bad_value_one_line():
    with pytest.raises(ImbalError) as e:
        compile_targets("backbone")
    assert str(e.value) == "trainer.compile must be one of false, model, true, loss, all, got 'backbone'"


def test_channels_last_converts_weights_and_4d_inputs_only():
    torch.manual_seed(0)
    net = ResNetCifar(in_shape=(3, 32, 32), blocks=1)
    ref = copy.deepcopy(net).eval()
    seen = []
    net.eval()
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    keys = list(net.state_dict())
    assert not first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    applied = apply_trainer_options(task_of(net), {"channels_last": True, "compile": False}, CPU)
    assert applied == {"channels_last": True}
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    assert x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    out = net(x)
    assert seen == [True] and torch.allclose(out, ref(x), atol=1e-5) and list(net.state_dict()) == keys
    # a vector model: nothing to convert, inputs pass through unchanged
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 3))
    apply_trainer_options(task_of(mlp), {"channels_last": True}, CPU)
    v = torch.randn(2, 5)
    assert torch.equal(mlp(v), mlp[0](v))


@pytest.mark.parametrize("value,compiled", [("model", {"backbone"}), ("loss", {"loss"}), ("all", {"backbone", "loss"}),
                                            (False, set())])
def test_compile_is_in_place_on_the_named_parts(monkeypatch, value, compiled):
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: calls.append((self, kw)))
    monkeypatch.setattr("imbal.runner.trainer_options.check_compile_available", lambda device: None)
    net, loss = torch.nn.Linear(3, 2), torch.nn.CrossEntropyLoss()
    task = task_of(net, loss)
    apply_trainer_options(task, {"compile": value, "compile_mode": "max-autotune"}, CPU)
    names = {"backbone" if m is net else "loss" for m, _ in calls}
    assert names == compiled and len(calls) == len(compiled)
    assert all(kw == {"mode": "max-autotune"} for _, kw in calls)
    assert task.backbone is net and task.loss_fn is loss  # same objects: state_dict keys unchanged


def test_compile_of_a_plain_function_loss_is_refused(monkeypatch):
    monkeypatch.setattr("imbal.runner.trainer_options.check_compile_available", lambda device: None)
    with pytest.raises(ImbalError, match=r"^trainer.compile=loss: the loss is a function, not a torch.nn.Module"):
        apply_trainer_options(task_of(torch.nn.Linear(2, 2), lambda a, b: a), {"compile": "loss"}, CPU)


def test_compile_without_a_cpp_compiler_is_one_line():
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/g++")}), pytest.raises(ImbalError) as e:
        apply_trainer_options(task_of(torch.nn.Linear(2, 2)), {"compile": "model"}, CPU)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("trainer.compile on the CPU needs a C++ compiler")
    assert "/nonexistent/g++" in msg and msg.endswith("install g++ or set CXX, or use trainer.compile=false")


def test_train_refuses_before_any_work(make_cfg, tmp_path, monkeypatch):
    """A bad value or a missing compiler stops train() before the data is built or a Trainer prints anything."""
    import torch._inductor.config as inductor_config

    from imbal.runner import train

    built = []
    monkeypatch.setattr("imbal.runner.flow.build_parts", lambda cfg: built.append(cfg))
    with pytest.raises(ImbalError, match=r"^trainer.compile must be one of false, model, true, loss, all, got 'yes'$"):
        train(make_cfg("trainer.compile=yes", run_dir=tmp_path / "a"))
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/g++")}), \
            pytest.raises(ImbalError, match=r"^trainer.compile on the CPU needs a C\+\+ compiler"):
        train(make_cfg("trainer.compile=loss", "trainer.accelerator=cpu", run_dir=tmp_path / "b"))
    assert built == [] and not (tmp_path / "b" / "summary.json").exists()


class DtypeProbe(L.Callback):
    """Records, in a training step, the dtypes the loss sees and returns, and the input's memory format."""

    seen: list = []

    def on_fit_start(self, trainer, pl_module):
        DtypeProbe.seen = []

        def loss_hook(module, args, out):
            DtypeProbe.seen.append(("loss", args[0].dtype, out.dtype, torch.is_autocast_enabled("cpu")))

        def input_hook(module, args):
            DtypeProbe.seen.append(("input", args[0].is_contiguous(memory_format=torch.channels_last)))

        pl_module.loss_fn.register_forward_hook(loss_hook)
        first_conv = next(m for m in pl_module.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_pre_hook(input_hook)


def test_bf16_mixed_resnet32_on_cpu_end_to_end(make_cfg, tmp_path):
    """`trainer.precision=bf16-mixed trainer.channels_last=true model=resnet32` on the generated CIFAR set:
    logits in bfloat16 under autocast, the loss in float32, inputs channels_last, a complete run."""
    from imbal.runner import train

    root = write_cifar10(tmp_path / "cifar")
    rd = tmp_path / "run"
    cfg = make_cfg("data=cifar10_lt", f"data.root={root}", "data.ratio=10", "data.num_workers=0", "data.batch_size=32",
                   "model=resnet32", "model.blocks=1", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                   "trainer.precision=bf16-mixed", "trainer.channels_last=true", "posthoc={}",
                   "+callbacks.probe._target_=tests.test_trainer_options.DtypeProbe",
                   f"hydra.run.dir={rd}", run_dir=rd)
    train(cfg)
    s = json.loads((rd / "summary.json").read_text())
    assert s["config"]["trainer"]["precision"] == "bf16-mixed" and s["global_step"] == 3  # 78 images / 32
    assert 0 <= s["test"]["balanced_accuracy"] <= 1 and s["test"]["num_samples"] == 40
    losses = [r for r in DtypeProbe.seen if r[0] == "loss"]
    assert len(losses) == 3
    assert all(r[1:] == (torch.bfloat16, torch.float32, True) for r in losses), losses
    inputs = [r[1] for r in DtypeProbe.seen if r[0] == "input"]
    assert inputs and all(inputs)  # training and evaluation batches reach the first conv channels_last


@pytest.mark.slow
def test_compile_model_run_on_cpu(make_cfg, tmp_path):
    """A real torch.compile of the backbone (inductor, C++ on the CPU): ~1 min on 2 cores."""
    from imbal.runner import train

    rd = tmp_path / "run"
    cfg = make_cfg("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.enable_progress_bar=false",
                   "trainer.compile=model", "posthoc={}", f"hydra.run.dir={rd}", run_dir=rd)
    train(cfg)
    s = json.loads((rd / "summary.json").read_text())
    assert s["global_step"] == 2 and 0 <= s["test"]["balanced_accuracy"] <= 1
    ckpt = torch.load(rd / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])  # in-place compile: plain keys


@pytest.mark.slow
def test_train_py_compile_without_compiler_prints_one_line(tmp_path):
    from tests.conftest import run_train

    proc = run_train("trainer.compile=model", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}",
                     env={"CXX": "/nonexistent/g++"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imbal: error: trainer.compile on the CPU needs a C++ compiler"), \
        proc.stderr[-2000:]
