"""Each benchmark of bench/ runs to its table with ``--quick`` (slow: minutes on a loaded 2-core box)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, header",
    [
        ("overhead.py", "| workload | data | variant |"),
        ("data.py", "| data | module | workers |"),
        ("e2e.py", "| command | wall s |"),
        ("throughput.py", "| workload | variant | images/s |"),
    ],
)
def test_bench_quick(script, header):
    p = subprocess.run([sys.executable, str(REPO / "bench" / script), "--quick"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    assert header in p.stdout, p.stdout[-2000:]
    assert "failed:" not in p.stdout, p.stdout[-2000:]
