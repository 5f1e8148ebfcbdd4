"""Non-finite losses stop the run with the evidence saved, or are skipped up to a bound."""

from __future__ import annotations


import pytest
import torch

from imbal.guards import NonFiniteGuard, NonFiniteLossError
from tests.conftest import run_train


def test_finite_passes_and_skip_counts(tmp_path):
    g = NonFiniteGuard("skip", max_skips=2, run_dir=tmp_path)
    logits = torch.tensor([[1.0, -2.0], [float("nan"), 3.0]])
    ok = dict(logits=logits, batch=(torch.zeros(2, 3), torch.tensor([0, 1])), batch_idx=7, distributed=False)
    assert g.check(torch.tensor(0.5), global_step=1, **ok) is True
    assert g.check(torch.tensor(float("nan")), global_step=2, **ok) is False
    assert g.check(torch.tensor(float("inf")), global_step=3, **ok) is False
    with pytest.raises(NonFiniteLossError) as err:
        g.check(torch.tensor(float("nan")), global_step=4, **ok)
    msg = str(err.value)
    assert "global step 4, batch 7" in msg and "finite logits in [-2, 3]" in msg and "1 non-finite logits" in msg
    assert "2 earlier batches skipped" in msg and "\n" not in msg
    saved = torch.load(tmp_path / "nonfinite_batch_step4.pt", weights_only=True)
    assert saved["global_step"] == 4 and saved["batch"][1].tolist() == [0, 1]
    assert g.skipped == 2


def test_distributed_never_skips(tmp_path):
    g = NonFiniteGuard("skip", max_skips=5, run_dir=None)
    with pytest.raises(NonFiniteLossError):
        g.check(torch.tensor(float("nan")), logits=torch.zeros(1, 2), batch=None, batch_idx=0, global_step=0, distributed=True)


def test_bad_policy_is_one_line():
    with pytest.raises(Exception, match="trainer.nan_policy='maybe' is not one of error, skip"):
        NonFiniteGuard("maybe")


def test_diverging_run_stops_with_evidence(tmp_path):
    out = tmp_path / "run"
    proc = run_train("optimizer.optim.lr=1e9", "trainer.max_epochs=3", f"hydra.run.dir={out}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("imbal: error: non-finite training loss")]
    assert len(err) == 1 and "at global step" in err[0] and "batch saved to" in err[0]
    assert list(out.glob("nonfinite_batch_step*.pt"))
    assert not (out / "summary.json").exists()
