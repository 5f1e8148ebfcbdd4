"""Samplers: class frequencies match Kang et al.'s definitions; epochs; sharding under DDP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imbal.data.loaders import build_sampler, train_loader
from imbal.data.samplers import ClassSampler, ProgressiveSampler, class_probabilities, progressive_probabilities
from imbal.errors import ImbalError

COUNTS = [1000, 100, 10]
LABELS = torch.repeat_interleave(torch.arange(3), torch.tensor(COUNTS))  # 1,110 samples


def class_freq(indices, labels=LABELS, c=3) -> np.ndarray:
    return np.bincount(labels[torch.as_tensor(list(indices))].numpy(), minlength=c) / len(indices)


def within_tol(freq: np.ndarray, p: np.ndarray, n: int, sigmas: float = 4.5) -> None:
    """Every class frequency within `sigmas` binomial standard deviations of its probability."""
    sd = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= sigmas * sd + 1e-12), (freq, p, sd)


def test_probability_definitions_by_hand():
    # p_j = n_j^q / sum n^q, computed independently
    sq = np.sqrt(COUNTS)
    assert class_probabilities(COUNTS, 0.5).numpy() == pytest.approx(sq / sq.sum())
    assert class_probabilities(COUNTS, 0.0).numpy() == pytest.approx([1 / 3] * 3)
    assert class_probabilities(COUNTS, 1.0).numpy() == pytest.approx(np.array(COUNTS) / 1110)
    # progressive: epoch 5 of 20 -> 3/4 instance + 1/4 class-balanced
    expect = 0.75 * np.array(COUNTS) / 1110 + 0.25 / 3
    assert progressive_probabilities(COUNTS, 5, 20).numpy() == pytest.approx(expect)
    assert progressive_probabilities(COUNTS, 25, 20).numpy() == pytest.approx([1 / 3] * 3)  # clipped at T


@pytest.mark.parametrize("name,p", [
    ("class_balanced", np.array([1 / 3, 1 / 3, 1 / 3])),
    ("sqrt", np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()),
])
def test_sampler_class_frequencies(name, p):
    n = 30000
    s = build_sampler({"name": name, "num_samples": n}, LABELS, seed=3)
    idx = list(s)
    assert len(idx) == n == len(s)
    within_tol(class_freq(idx), p, n)
    # uniform within a class: the 10 samples of the rarest class each get ~1/10 of its draws
    rare = np.array([i for i in idx if i >= 1100]) - 1100
    share = np.bincount(rare, minlength=10) / len(rare)
    within_tol(share, np.full(10, 0.1), len(rare))


def test_default_draws_one_epoch_and_none_means_shuffle():
    assert len(build_sampler({"name": "class_balanced"}, LABELS, seed=0)) == len(LABELS)
    assert build_sampler({"name": "none"}, LABELS, seed=0) is None
    assert build_sampler(None, LABELS, seed=0) is None


def test_progressive_moves_from_instance_to_class_balanced():
    n = 30000
    s = build_sampler({"name": "progressive", "epochs": 10, "num_samples": n}, LABELS, seed=0)
    for epoch in (0, 5, 10):
        s.set_epoch(epoch)
        expect = (1 - epoch / 10) * np.array(COUNTS) / 1110 + (epoch / 10) / 3
        within_tol(class_freq(list(s)), expect, n)


def test_same_seed_and_epoch_same_sequence_new_epoch_new_sequence():
    a = ClassSampler(LABELS, q=0.0, seed=7)
    b = ClassSampler(LABELS, q=0.0, seed=7)
    assert list(a) == list(b) == list(a)  # re-iterating the same epoch repeats it (every rank agrees)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_lightning_calls_set_epoch_through_its_wrapper():
    """DistributedSamplerWrapper (what Lightning puts around a custom sampler) forwards set_epoch."""
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    s = ProgressiveSampler(LABELS, total_epochs=4, seed=0)
    w = DistributedSamplerWrapper(s, num_replicas=2, rank=1, shuffle=False)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(LABELS), sampler=w)
    _set_sampler_epoch(loader, 3)
    assert s.epoch == 3 and w.epoch == 3


def test_wrapper_gives_each_rank_a_distinct_share():
    """In-process check of the sharding: both ranks' shares partition the one sequence every rank draws."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    shares = []
    for rank in (0, 1):
        s = ClassSampler(LABELS, q=0.0, seed=11)  # a fresh sampler per rank, as in separate processes
        w = DistributedSamplerWrapper(s, num_replicas=2, rank=rank, shuffle=True, seed=0)
        shares.append(list(w))
    full = list(ClassSampler(LABELS, q=0.0, seed=11))
    assert len(shares[0]) == len(shares[1]) == len(full) // 2
    assert sorted(shares[0] + shares[1]) == sorted(full)  # a partition of the positions of one draw


def test_bad_sampler_config_is_one_line():
    with pytest.raises(ImbalError, match=r"unknown sampler 'nope'; choose one of: none, class_balanced, sqrt, progressive"):
        build_sampler({"name": "nope"}, LABELS, seed=0)
    with pytest.raises(ImbalError, match=r"sampler 'sqrt' got unknown keys \['q'\]"):
        build_sampler({"name": "sqrt", "q": 2}, LABELS, seed=0)
    with pytest.raises(ImbalError, match=r"epochs must be an integer >= 1, got None"):
        build_sampler({"name": "progressive"}, LABELS, seed=0)
    with pytest.raises(ImbalError, match=r"integer class ids"):
        build_sampler({"name": "sqrt"}, torch.rand(5), seed=0)


def test_train_loader_uses_the_sampler():
    ds = torch.utils.data.TensorDataset(torch.arange(len(LABELS)), LABELS)
    loader = train_loader(ds, labels=LABELS, batch_size=555, seed=0, sampler_cfg={"name": "class_balanced"})
    assert isinstance(loader.sampler, ClassSampler)
    ys = torch.cat([y for _, y in loader])
    assert len(ys) == 1110 and (ys == 2).sum() > 250  # the 10-sample class drawn ~370 times


# -- DDP: two CPU processes (ddp_spawn, gloo), Lightning wraps the sampler itself ---------------


import lightning as L  # noqa: E402


class Recorder(L.LightningModule):
    """Records the dataset indices its rank trains on (module level: ddp_spawn pickles it)."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir
        self.lin = torch.nn.Linear(1, 3)
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        idx, y = batch
        self.seen.setdefault(self.current_epoch, []).extend(idx.tolist())
        return self.lin(idx.float()[:, None]).sum() * 0.0

    def on_train_end(self):
        Path(self.out_dir, f"rank{self.global_rank}.json").write_text(json.dumps(self.seen))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["class_balanced", "progressive"])
def test_ddp_two_processes_see_distinct_shares(tmp_path, name):
    ds = torch.utils.data.TensorDataset(torch.arange(len(LABELS)), LABELS)
    cfg = {"name": name, "epochs": 2} if name == "progressive" else {"name": name}
    loader = train_loader(ds, labels=LABELS, batch_size=111, seed=5, sampler_cfg=cfg)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(Recorder(str(tmp_path)), train_dataloaders=loader)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for epoch in ("0", "1"):
        a, b = seen[0][epoch], seen[1][epoch]
        assert len(a) == len(b) == 555
        # the same sampler draw on both ranks, split by position: together exactly one epoch's draw
        expect = ClassSampler(LABELS, q=0.0 if name == "class_balanced" else 1.0, seed=5)
        if name == "progressive":
            expect = ProgressiveSampler(LABELS, total_epochs=2, seed=5)
        expect.set_epoch(int(epoch))
        assert sorted(a + b) == sorted(expect)
        assert a != b
    assert seen[0]["0"] != seen[0]["1"]  # set_epoch reached the sampler through the wrapper
    # progressive: epoch 0 instance-balanced (rare class ~1%), epoch 1 halfway to class-balanced (~17%)
    rare = [np.mean(np.array(seen[0][e] + seen[1][e]) >= 1100) for e in ("0", "1")]
    if name == "progressive":
        assert rare[0] < 0.03 and 0.1 < rare[1] < 0.25, rare
    else:
        assert 0.25 < rare[0] < 0.42, rare


def test_single_process_trainer_advances_the_progressive_sampler(tmp_path):
    """Without DDP Lightning calls set_epoch on the sampler itself: epoch 1 of 2 is halfway to balanced."""
    ds = torch.utils.data.TensorDataset(torch.arange(len(LABELS)), LABELS)
    loader = train_loader(ds, labels=LABELS, batch_size=555, seed=5, sampler_cfg={"name": "progressive", "epochs": 2})
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Recorder(str(tmp_path)), train_dataloaders=loader)
    seen = json.loads((tmp_path / "rank0.json").read_text())
    expect = ProgressiveSampler(LABELS, total_epochs=2, seed=5)
    for epoch in (0, 1):
        expect.set_epoch(epoch)
        assert seen[str(epoch)] == list(expect)
    rare = [np.mean(np.array(seen[e]) >= 1100) for e in ("0", "1")]
    assert rare[0] < 0.03 and 0.1 < rare[1] < 0.25, rare  # p_rare: 0.009, then (0.009 + 1/3) / 2 = 0.171
