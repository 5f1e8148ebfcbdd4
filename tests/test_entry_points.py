"""Entry points: ``python train.py``, ``python -m imbal.train``, ``imbal train``, a torch-free --help, extras."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imbal.errors import ImbalError

REPO = Path(__file__).resolve().parents[1]

#: ``train.py --help`` run in-process, then whether torch (or an extra) got imported
HELP_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, runpy, sys
    sys.argv = [sys.argv[1], "--help"]
    out = io.StringIO()
    code = None
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    heavy = sorted(m for m in ("torch", "lightning", "pandas", "matplotlib", "transformers") if m in sys.modules)
    print("EXIT", code, "HEAVY", ",".join(heavy) or "-", "GROUPS", "loss: " in out.getvalue())
    """
)


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "IMBAL_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}


def _run(args: list[str], tmp_path: Path, cwd: Path | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, *args], cwd=cwd or tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _warm_cache(tmp_path: Path) -> None:
    proc = _run(["-c", "from imbal.config import loss_nodes; loss_nodes()"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_train_py_help_exits_0_without_importing_torch(tmp_path):
    _warm_cache(tmp_path)
    proc = _run(["-c", HELP_SCRIPT, str(REPO / "train.py")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "EXIT 0 HEAVY - GROUPS True" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_help_with_a_cold_cache_still_lists_the_generated_losses(tmp_path):
    proc = _run([str(REPO / "train.py"), "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loss_line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("loss: "))
    assert "ce" in loss_line.split(": ")[1].split(", ") and "focal" in loss_line
    assert (tmp_path / "cache" / "loss-nodes.json").is_file()


def test_checking_a_loss_choice_reads_no_torch_on_a_warm_cache(tmp_path):
    _warm_cache(tmp_path)
    script = textwrap.dedent(
        """
        import sys
        from imbal.config import check_choices, register_configs
        register_configs()
        check_choices(["loss=focal", "model=mlp", "data=gaussian_lt"])
        print("TORCH", "torch" in sys.modules)
        """
    )
    proc = _run(["-c", script], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH False" in proc.stdout


def test_cached_loss_nodes_are_the_computed_ones(tmp_path, monkeypatch):
    from imbal.config import loss_nodes

    monkeypatch.setenv("IMBAL_CACHE", str(tmp_path / "cache"))
    computed = loss_nodes(use_cache=False)
    first = loss_nodes()  # computes and writes the cache
    again = loss_nodes()  # reads it
    assert computed["nodes"] == first["nodes"] == again["nodes"]
    assert again["nodes"]["focal"]["name"] == "focal" and "gamma" in again["nodes"]["focal"]
    assert "key" in again and not again["failed"]


@pytest.mark.parametrize("entry", [["-m", "imbal.train"], ["-m", "imbal.cli", "train"]])
def test_train_entry_points_run_from_any_directory(tmp_path, entry):
    """``python -m imbal.train`` and ``imbal train`` from outside the checkout: one-line errors, Hydra's help."""
    proc = _run([*entry, "model=nope"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().startswith("imbal: error: unknown model 'nope'; choose one of: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = _run([*entry, "--help"], tmp_path)
    assert proc.returncode == 0 and "== Configuration groups ==" in proc.stdout, proc.stderr[-2000:]


def test_imbal_version(capsys):
    from imbal import __version__
    from imbal.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"imbal {__version__}"


def test_imbal_train_hands_the_rest_to_hydra(monkeypatch):
    import imbal.train
    from imbal.cli import main

    seen = []
    monkeypatch.setattr(imbal.train, "cli", lambda: seen.append(list(sys.argv[1:])))
    monkeypatch.setattr(sys, "argv", ["imbal", "train", "-m", "loss=ce,focal", "--config-dir", "x"])
    assert main(["train", "-m", "loss=ce,focal", "--config-dir", "x"]) == 0
    assert seen == [["-m", "loss=ce,focal", "--config-dir", "x"]]


# -- extras ---------------------------------------------------------------------------
def test_require_names_the_extra_and_feature(monkeypatch):
    from imbal.extras import MissingExtraError, require

    assert require("json", "none").dumps([1]) == "[1]"
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed (even if another test imported it)
    monkeypatch.setitem(sys.modules, "timm.models", None)
    with pytest.raises(MissingExtraError, match=r"^model=timm needs timm: pip install 'imbal\[vision\]'$") as exc:
        require("timm", "vision", feature="model=timm")
    assert isinstance(exc.value, ImbalError) and exc.value.extra == "vision"
    with pytest.raises(ImbalError, match=r"^timm needs timm: pip install 'imbal\[vision\]'$"):
        require("timm.models", "vision")


def test_require_keeps_a_broken_dependency_as_it_is(tmp_path, monkeypatch):
    from imbal.extras import require

    (tmp_path / "halfbroken.py").write_text("import a_module_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_module_that_is_not_there"):
        require("halfbroken", "text")


@pytest.mark.parametrize(
    "overrides,blocked,expected",
    [
        (["data=text_synth"], "pandas", "data=text_synth needs pandas: pip install 'imbal[text]'"),
        (["data=text_synth", "model=hf_encoder"], "transformers", "model=hf_encoder needs transformers: pip install 'imbal[text]'"),
        (["logger=wandb"], "wandb", "logger=wandb needs wandb: pip install 'imbal[wandb]'"),
        (["logger=many"], "tensorboard", None),  # tensorboardX would do as well
    ],
)
def test_config_check_names_the_missing_extra(make_cfg, monkeypatch, overrides, blocked, expected):
    from hydra.core.hydra_config import HydraConfig

    from imbal.extras import MissingExtraError, check_config

    cfg = make_cfg(*overrides)
    monkeypatch.setitem(sys.modules, blocked, None)
    if blocked == "tensorboard":
        monkeypatch.setitem(sys.modules, "tensorboardX", None)
        expected = "logger=tensorboard needs tensorboard: pip install 'imbal[tensorboard]'"
    # compose() outside a run has no Hydra runtime: name the group's choice as a run would
    choices = {"data": overrides[0].split("=")[1], "model": overrides[-1].split("=")[1]}
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: type("H", (), {"runtime": type("R", (), {
        "choices": choices})()})()))
    with pytest.raises(MissingExtraError) as exc:
        check_config(cfg)
    assert str(exc.value) == expected


def test_default_config_needs_no_extra(make_cfg, monkeypatch):
    from imbal.extras import check_config

    for name in ("pandas", "matplotlib", "transformers", "tokenizers", "wandb", "mlflow", "timm"):
        monkeypatch.setitem(sys.modules, name, None)
    check_config(make_cfg())


def test_a_hydra_plugin_choice_names_its_extra(monkeypatch):
    from imbal import extras

    monkeypatch.setattr(extras, "available", lambda module: False)
    with pytest.raises(extras.MissingExtraError, match=r"^hydra/launcher=slurm needs the Hydra plugin "
                       r"hydra_submitit_launcher: pip install 'imbal\[slurm\]'$"):
        extras.check_overrides(["loss=ce", "hydra/launcher=slurm"])
    extras.check_overrides(["loss=ce", "hydra/launcher=basic"])


def test_run_plots_without_matplotlib_say_so_once(monkeypatch, capsys, tmp_path):
    from imbal import extras
    from imbal.runner import flow

    monkeypatch.setattr(extras, "available", lambda module: module != "matplotlib")
    monkeypatch.setattr(flow, "_plots_noted", False)
    for _ in range(2):
        assert flow.write_plots(tmp_path, None, None, None, [], 0) == []
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["imbal: run plots skipped: they need matplotlib: pip install 'imbal[plots]'"]


def test_report_without_pandas_names_the_extra(monkeypatch, tmp_path, capsys):
    from imbal.cli import main

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "imbal: error: imbal report needs pandas: pip install 'imbal[plots]'\n"


# -- a real core install (minutes, GBs): -m slow ---------------------------------------------
@pytest.mark.slow
def test_core_wheel_runs_the_default_experiment_and_names_missing_extras(tmp_path):
    venv = tmp_path / "core"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {**os.environ, "IMBAL_CACHE": str(tmp_path / "cache")}
    imbal = str(venv / "bin" / "imbal")
    run = subprocess.run([imbal, "train", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()
    assert "pip install 'imbal[plots]'" in run.stdout
    check = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import lightning, sys; print('transformers' in sys.modules)"], capture_output=True, text=True)
    assert check.stdout.strip() == "False"
    text = subprocess.run([imbal, "train", "data=sms_spam", f"data.root={tmp_path}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert text.returncode == 2
    assert text.stderr.strip() == "imbal: error: data=sms_spam needs pandas: pip install 'imbal[text]'"
