"""Third-party loss plugins installed for real (pip install --target, not editable) and used by imbal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, run_train

PLUGIN = REPO / "plugins" / "imbal-polyloss"


def pip_install_target(src: Path, target: Path) -> None:
    """A regular (non-editable) install into an isolated directory; no network needed."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )


def env_with(*paths: Path) -> dict:
    extra = os.pathsep.join(str(p) for p in paths)
    old = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": extra + (os.pathsep + old if old else ""), "COLUMNS": "250"}


def imbal_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imbal.cli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **env}, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def polyloss_site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site-polyloss")
    pip_install_target(PLUGIN, target)
    assert (target / "imbal_polyloss" / "__init__.py").is_file()
    assert not (target / "hydra_plugins" / "__init__.py").exists()
    return target


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory) -> Path:
    """Two installed plugins: one whose import fails, one that claims the built-in name 'ce'."""
    root = tmp_path_factory.mktemp("bad-plugins")
    target = root / "site"
    for name, module, body, entry in [
        ("imbal-broken", "imbal_broken_plugin", "raise ImportError('needs libfoo 3.0')\n", 'broken_loss = "imbal_broken_plugin:Loss"'),
        ("imbal-dup", "imbal_dup_plugin", "from torch import nn\nclass Loss(nn.Module):\n    tasks = ('multiclass',)\n", 'ce = "imbal_dup_plugin:Loss"'),
    ]:
        pkg = root / name
        (pkg / module).mkdir(parents=True)
        (pkg / module / "__init__.py").write_text(body)
        (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{name}"
            version = "0.0.1"
            [project.entry-points."imbal.losses"]
            {entry}
            [tool.setuptools]
            packages = ["{module}"]
        """))
        pip_install_target(pkg, target)
    return target


def test_listing_shows_plugin_with_package(polyloss_site):
    proc = imbal_cli("losses", env=env_with(polyloss_site))
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if " poly1 " in line)
    assert "imbal-polyloss" in row and "epsilon=1.0" in row and "multiclass" in row


def test_train_with_plugin_and_its_hparam(polyloss_site, tmp_path):
    out = tmp_path / "run"
    proc = run_train("loss=poly1", "loss.epsilon=2", "trainer.fast_dev_run=true", f"hydra.run.dir={out}",
                     env=env_with(polyloss_site))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == "poly1" and summary["config"]["loss"] == {"name": "poly1", "epsilon": 2, "reduction": "mean"}


def test_plugin_own_tests_pass(polyloss_site):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        capture_output=True, text=True, timeout=300, cwd=polyloss_site,
        env={**os.environ, **env_with(polyloss_site)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "4 passed" in proc.stdout


def test_broken_and_duplicate_plugins_are_reported_not_fatal(bad_site, tmp_path):
    env = env_with(bad_site)
    proc = imbal_cli("losses", env=env)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "broken_loss" in line)
    assert "imbal-broken" in row and "failed to load" in row
    err = next(line for line in proc.stdout.splitlines() if line.startswith("error: loss 'broken_loss'"))
    assert "from package 'imbal-broken'" in err and "ImportError: needs libfoo 3.0" in err
    ce_row = next(line for line in proc.stdout.splitlines() if line.strip("│ ").startswith("ce "))
    assert "imbal 0.1.0" in ce_row  # the built-in keeps its name
    warn = next(line for line in proc.stdout.splitlines() if line.startswith("warning: loss name 'ce'"))
    assert "package 'imbal-dup'" in warn and "already taken by package 'imbal'" in warn
    # every other loss keeps working
    ok = run_train("loss=focal", "trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path / 'ok'}", env=env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    # asking for the broken one fails in one line naming package and error
    bad = run_train("loss=broken_loss", f"hydra.run.dir={tmp_path / 'bad'}", env=env)
    assert bad.returncode == 2
    err = [ln for ln in bad.stderr.splitlines() if ln.startswith("imbal: error:")]
    assert len(err) == 1 and "'broken_loss' from package 'imbal-broken'" in err[0] and "needs libfoo 3.0" in err[0]
