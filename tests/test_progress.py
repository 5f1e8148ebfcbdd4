"""imbal.callbacks.progress.ProgressBar: Lightning's tqdm bar, redrawn at most every min_interval seconds."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks.progress import tqdm_progress
from torch.utils.data import DataLoader, TensorDataset

from imbal.callbacks.progress import ProgressBar


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.lin(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self.lin(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n=200):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)), batch_size=4)


def _fit(tmp_path, bar, monkeypatch):
    """Fit 50 train and 50 val batches; return the bar's draws as (bar description, n)."""
    draws = []
    real = tqdm_progress._update_n

    def spy(b, value):
        draws.append((b.desc, value))
        real(b, value)

    monkeypatch.setattr(tqdm_progress, "_update_n", spy)
    trainer = L.Trainer(max_epochs=1, callbacks=[bar], logger=False, enable_checkpointing=False,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(_Tiny(), train_dataloaders=_loader(), val_dataloaders=_loader())
    return draws, trainer


def test_lightning_bar_draws_every_step_ours_only_when_due(tmp_path, monkeypatch):
    lightning_draws, _ = _fit(tmp_path, tqdm_progress.TQDMProgressBar(), monkeypatch)
    assert sum(d.startswith("Epoch") for d, _ in lightning_draws) == 50  # the cost this bar removes
    draws, trainer = _fit(tmp_path, ProgressBar(min_interval=3600), monkeypatch)
    train = [n for d, n in draws if d.startswith("Epoch")]
    val = [n for d, n in draws if d.startswith("Validation")]
    # the first batch (nothing drawn yet) and the last of each loop: the bars end full
    assert train == [1, 50]
    assert val == [50]
    assert isinstance(trainer.progress_bar_callback, ProgressBar)


def test_zero_interval_draws_like_lightning(tmp_path, monkeypatch):
    draws, _ = _fit(tmp_path, ProgressBar(min_interval=0), monkeypatch)
    assert [n for d, n in draws if d.startswith("Epoch")] == list(range(1, 51))


def test_due_is_time_limited(monkeypatch):
    bar = ProgressBar(min_interval=0.1)
    now = [100.0]
    monkeypatch.setattr("imbal.callbacks.progress.time.monotonic", lambda: now[0])
    assert bar._due(1, 10)          # first draw
    now[0] += 0.05
    assert not bar._due(2, 10)      # 50 ms later: skipped
    now[0] += 0.06
    assert bar._due(3, 10)          # 110 ms after the first
    assert bar._due(10, 10)         # the last batch is always drawn
    assert not bar._due(4, None)    # unknown total (iterable data): time only
    with pytest.raises(ValueError, match="min_interval=-1"):
        ProgressBar(min_interval=-1)


def test_train_py_uses_it_unless_a_bar_is_given(make_cfg, tmp_path, monkeypatch):
    """train() adds imbal's bar; a bar given in callbacks (here Lightning's tqdm bar) replaces it."""
    import lightning.pytorch as pl

    seen = []

    def fit(self, *a, **k):
        seen.append(type(self.progress_bar_callback))
        raise KeyboardInterrupt  # stop before training: only the Trainer's callbacks matter here

    monkeypatch.setattr(pl.Trainer, "fit", fit)
    from imbal.runner import train

    for extra, expected in [((), ProgressBar),
                            (("+callbacks.bar._target_=lightning.pytorch.callbacks.TQDMProgressBar",),
                             tqdm_progress.TQDMProgressBar)]:
        cfg = make_cfg("trainer.max_epochs=1", *extra, run_dir=tmp_path / str(len(seen)))
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
        assert seen[-1] is expected
    cfg = make_cfg("trainer.max_epochs=1", "trainer.enable_progress_bar=false", run_dir=tmp_path / "off")
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert seen[-1] is type(None)
