"""regularizer=maxnorm (imbal/callbacks/maxnorm.py): per-class classifier weight norms projected to <= thresh."""

from __future__ import annotations

import pytest
import torch

from imbal.callbacks.maxnorm import MaxNorm, project_rows
from imbal.errors import ImbalError
from tests.test_bad_inputs import run_inprocess

TINY = ["data=gaussian_lt", "data.n_max=40", "data.ratio=4", "data.val_per_class=5", "data.test_per_class=5",
        "data.num_classes=4", "data.batch_size=16", "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
        "trainer.accelerator=cpu"]


def test_project_rows_by_hand():
    """Row [3, 4] (norm 5) -> [0.6, 0.8] at thresh 1; a row inside the ball stays as it is."""
    w = torch.tensor([[3.0, 4.0], [0.03, 0.04], [0.0, 0.0]])
    project_rows(w, 1.0)
    assert torch.allclose(w, torch.tensor([[0.6, 0.8], [0.03, 0.04], [0.0, 0.0]]), atol=1e-7, rtol=0)


def test_bad_thresh_in_the_constructor():
    with pytest.raises(ImbalError, match=r"regularizer.thresh=0: expected a number > 0"):
        MaxNorm(thresh=0)


def test_classifier_norms_in_the_checkpoint_are_at_most_thresh(tmp_path, capsys):
    run_dir = tmp_path / "run"
    thresh = 0.1
    code, err = run_inprocess([*TINY, "regularizer=maxnorm", f"regularizer.thresh={thresh}", "optimizer.optim.lr=0.05",
                               f"hydra.run.dir={run_dir}"], capsys)
    assert code == 0, err[-3000:]
    for ckpt in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        norms = state["head.weight"].norm(dim=1)
        assert len(norms) == 4
        assert (norms <= thresh + 1e-6).all(), (ckpt.name, norms)
        assert (norms >= thresh - 1e-6).any(), norms  # the constraint is active (MLP head rows start above 0.1)
    import imbal

    run = imbal.load_run(run_dir)  # the callback adds no parameters: the run dir loads as any other
    assert run.model.head.weight.norm(dim=1).max().item() <= thresh + 1e-6


@pytest.mark.parametrize("value,expected", [
    ("0", "regularizer.thresh=0: expected a finite number > 0 (the largest class weight norm)"),
    ("-1", "regularizer.thresh=-1: expected a finite number > 0 (the largest class weight norm)"),
    ("abc", "regularizer.thresh='abc': expected a finite number > 0 (the largest class weight norm)"),
])
def test_bad_thresh_refused_in_one_line(value, expected, tmp_path, capsys):
    code, err = run_inprocess([*TINY, "regularizer=maxnorm", f"regularizer.thresh={value}",
                               f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("imbal: error:")]
    assert code == 2, err[-2000:]
    assert lines == [f"imbal: error: {expected}"], err[-2000:]
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "summary.json").exists()


def test_unknown_regularizer_refused(tmp_path, capsys):
    code, err = run_inprocess([*TINY, "regularizer=maxnrom", f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("imbal: error:")]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert "maxnrom" in lines[0] and "maxnorm" in lines[0], lines[0]


def test_no_classifier_head_refused():
    """A backbone that outputs its logits itself (a U-Net) has no per-class weight to project."""
    from types import SimpleNamespace

    from imbal.callbacks.maxnorm import classifier_weight

    with pytest.raises(ImbalError, match=r"^regularizer=maxnorm: the model's classifier head \(Identity\) has no "
                                         r"per-class weight to project"):
        classifier_weight(SimpleNamespace(head=torch.nn.Identity()))
    weight = classifier_weight(SimpleNamespace(head=torch.nn.Linear(3, 2)))
    assert weight.shape == (2, 3)
