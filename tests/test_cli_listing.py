"""``imbal losses`` caches its listing: a repeat is a file read (no torch import); any change of plugins or sources refreshes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imbal import cli

PROBE = "import sys; from imbal.cli import main; main(['losses']); print('TORCH', 'torch' in sys.modules)"


def _run(cache: Path) -> tuple[str, bool]:
    env = {**os.environ, "IMBAL_CACHE": str(cache), "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    body, _, flag = out.rpartition("TORCH ")
    return body, flag.strip() == "True"


def test_second_listing_comes_from_the_cache_without_torch(tmp_path):
    first, torch1 = _run(tmp_path)
    second, torch2 = _run(tmp_path)
    assert torch1 and not torch2
    assert first == second and "focal" in second and "logit_adjusted" in second
    cached = json.loads((tmp_path / "losses-listing.json").read_text())
    assert [r[0] for r in cached["rows"]] == sorted(r[0] for r in cached["rows"]) and len(cached["rows"]) >= 20
    # a cache written under another key (plugins or sources changed since) is not used
    cached["key"] = "stale"
    cached["rows"] = [["nonsense", "x", "-", "", "-"]]
    (tmp_path / "losses-listing.json").write_text(json.dumps(cached))
    third, torch3 = _run(tmp_path)
    assert torch3 and third == first and "nonsense" not in third


def test_key_changes_with_a_new_plugin_and_with_its_source(tmp_path, monkeypatch):
    before = cli._listing_key()
    pkg = tmp_path / "fakeloss_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("class L:\n    pass\n")
    info = tmp_path / "fakeloss_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeloss-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[imbal.losses]\nfakeloss = fakeloss_pkg:L\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with_plugin = cli._listing_key()
    assert with_plugin not in (None, before)
    (pkg / "__init__.py").write_text("class L:\n    def __init__(self, gamma=3.0):\n        pass\n")
    os.utime(pkg / "__init__.py", ns=(1, 1))  # a different mtime even on a coarse clock
    assert cli._listing_key() not in (None, with_plugin, before)
