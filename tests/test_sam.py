"""optimizer=sam|imbsam (imbal/optim): SAM's step against a hand-written two-step SAM, ImbSAM against its
definition and against plain SGD without tail classes, inside Lightning, and the combinations refused."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imbal.optim.imbsam import ImbSAM
from imbal.optim.sam import SAM
from tests.test_bad_inputs import run_inprocess

X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-1.2, 0.8, 0.1], [0.2, 0.2, -1.9], [1.0, -0.4, 0.6]])
Y = torch.tensor([0, 1, 2, 1, 0])


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))


def closure_for(model, opt):
    """What Lightning's closure does: the task's loss for this call, zero_grad, backward."""
    def closure():
        logits = model(X)
        loss = F.cross_entropy(logits, Y)
        part, _ = opt.closure_loss(F.cross_entropy, logits, Y, loss)
        opt.zero_grad()
        part.backward()
        return loss
    return closure


def grads_at(model, params, loss_of):
    """Gradient of ``loss_of(model)`` at ``params`` (a list of tensors), computed on a copy."""
    with torch.no_grad():
        for p, v in zip(model.parameters(), params):
            p.copy_(v)
    model.zero_grad()
    loss_of(model).backward()
    return [p.grad.clone() for p in model.parameters()]


def full_loss(m):
    return F.cross_entropy(m(X), Y)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_equals_hand_two_step_sam(adaptive):
    """Two steps of SAM(SGD, momentum, weight decay) == e_w, gradient at w + e_w, restore, SGD by hand."""
    rho, lr, mu, wd = 0.3, 0.1, 0.9, 0.01
    model, ref = tiny(), tiny()
    opt = SAM(model.parameters(), base="sgd", rho=rho, adaptive=adaptive, lr=lr, momentum=mu, weight_decay=wd)
    w = [p.detach().clone() for p in ref.parameters()]
    buf = None
    for _ in range(2):
        opt.step(closure_for(model, opt))
        g = grads_at(ref, w, full_loss)
        t = [wi.abs() if adaptive else torch.ones_like(wi) for wi in w]   # T_w (ASAM) or identity (SAM)
        norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
        e = [rho * ti * ti * gi / (norm + 1e-12) for ti, gi in zip(t, g)]
        g2 = grads_at(ref, [wi + ei for wi, ei in zip(w, e)], full_loss)
        d = [gi + wd * wi for gi, wi in zip(g2, w)]                       # SGD: weight decay, momentum
        buf = d if buf is None else [mu * b + di for b, di in zip(buf, d)]
        w = [wi - lr * b for wi, b in zip(w, buf)]
        for p, wi in zip(model.parameters(), w):
            assert torch.allclose(p, wi, atol=1e-6, rtol=0), (p, wi)
    assert not torch.allclose(w[0], tiny()[0].weight)  # it moved


def test_sam_first_gradient_step_differs_from_sgd_by_the_perturbation():
    """Same model, same lr: SAM's update is SGD's at w + e_w, not at w (a numeric difference of the two)."""
    model, plain = tiny(), tiny()
    sam = SAM(model.parameters(), base="sgd", rho=0.5, lr=0.1, momentum=None, weight_decay=0.0)
    sgd = torch.optim.SGD(plain.parameters(), lr=0.1)
    sam.step(closure_for(model, sam))
    sgd.zero_grad()
    full_loss(plain).backward()
    sgd.step()
    diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), plain.parameters()))
    assert diff > 1e-4


def test_sam_adamw_base_and_state_dict_round_trip():
    """base=adamw steps as AdamW at w + e_w; the checkpointed state is AdamW's and loads back."""
    model, ref = tiny(), tiny()
    opt = SAM(model.parameters(), base="adamw", rho=0.05, lr=1e-2, weight_decay=0.1)
    opt.step(closure_for(model, opt))
    w = [p.detach().clone() for p in ref.parameters()]
    g = grads_at(ref, w, full_loss)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    g2 = grads_at(ref, [wi + 0.05 * gi / (norm + 1e-12) for wi, gi in zip(w, g)], full_loss)
    with torch.no_grad():
        for p, wi in zip(ref.parameters(), w):
            p.copy_(wi)
    adamw = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
    for p, gi in zip(ref.parameters(), g2):
        p.grad = gi
    adamw.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-7, rtol=0)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    other = SAM(tiny().parameters(), base="adamw", rho=0.05, lr=1e-2, weight_decay=0.1)
    other.load_state_dict(sd)
    assert other.param_groups is other.base_optimizer.param_groups and other.state is other.base_optimizer.state
    assert torch.equal(other.state[other.param_groups[0]["params"][0]]["exp_avg"], sd["state"][0]["exp_avg"])


def test_imbsam_without_tail_classes_is_sgd_bit_for_bit():
    model, plain = tiny(), tiny()
    opt = ImbSAM(model.parameters(), class_counts=[50, 40, 30], tail_max_count=20, rho=0.5, lr=0.1,
                 momentum=0.9, weight_decay=5e-4)
    sgd = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    assert opt.tail_classes == []
    for _ in range(3):
        opt.step(closure_for(model, opt))
        sgd.zero_grad()
        full_loss(plain).backward()
        sgd.step()
    for a, b in zip(model.parameters(), plain.parameters()):
        assert torch.equal(a, b)


def test_imbsam_equals_head_gradient_plus_tail_gradient_at_the_perturbed_weights():
    """Class 2 is the tail (10 < 20): update = grad L_head(w) + grad L_tail(w + e_w), e_w from grad L_tail(w)."""
    rho, lr = 0.4, 0.1
    model, ref = tiny(), tiny()
    opt = ImbSAM(model.parameters(), class_counts=[50, 40, 10], tail_max_count=20, rho=rho, lr=lr, weight_decay=0.0)
    assert opt.tail_classes == [2]
    opt.step(closure_for(model, opt))
    tail = Y == 2  # one of five samples

    def head_loss(m):
        return F.cross_entropy(m(X)[~tail], Y[~tail]) * (4 / 5)

    def tail_loss(m):
        return F.cross_entropy(m(X)[tail], Y[tail]) * (1 / 5)

    w = [p.detach().clone() for p in ref.parameters()]
    gh = grads_at(ref, w, head_loss)
    gt = grads_at(ref, w, tail_loss)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in gt))
    gt2 = grads_at(ref, [wi + rho * gi / (norm + 1e-12) for wi, gi in zip(w, gt)], tail_loss)
    expected = [wi - lr * (a + b) for wi, a, b in zip(w, gh, gt2)]
    for p, e in zip(model.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-6, rtol=0)
    # which part each closure call trains, and only the first (at w) is the step's recorded loss
    logits = ref(X)
    loss = F.cross_entropy(logits, Y)
    parts = []
    for i in range(3):
        opt._pass = i
        parts.append(opt.closure_loss(F.cross_entropy, logits, Y, loss))
    opt._pass = 0
    assert [rec for _, rec in parts] == [True, False, False]
    assert torch.allclose(parts[0][0], F.cross_entropy(logits[~tail], Y[~tail]) * 0.8)
    assert torch.allclose(parts[1][0], F.cross_entropy(logits[tail], Y[tail]) * 0.2)
    # the head and tail parts sum to the batch loss (mean cross-entropy)
    assert torch.allclose(head_loss(ref) + tail_loss(ref), full_loss(ref), atol=1e-6)


def test_sam_inside_lightning_with_norm_clipping_equals_hand_sam():
    """Lightning's closure drives both passes; clipping by norm clips the gradient the base step uses."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    rho, lr, clip = 0.2, 0.5, 0.05

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = tiny()
            self.calls = 0

        def training_step(self, batch, batch_idx):
            self.calls += 1
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return SAM(self.parameters(), rho=rho, lr=lr, momentum=None, weight_decay=0.0)

    module, ref = Tiny(), tiny()
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=clip)
    trainer.fit(module, DataLoader(TensorDataset(X, Y), batch_size=5))
    assert module.calls == 2
    w = [p.detach().clone() for p in ref.parameters()]
    g = grads_at(ref, w, full_loss)
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    g2 = grads_at(ref, [wi + rho * gi / (norm + 1e-12) for wi, gi in zip(w, g)], full_loss)
    n2 = torch.sqrt(sum((gi ** 2).sum() for gi in g2)).item()
    assert n2 > clip  # clipping changes this step
    expected = [wi - lr * gi * clip / (n2 + 1e-6) for wi, gi in zip(w, g2)]
    for p, e in zip(module.net.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-6, rtol=0)


TINY = ["data=gaussian_lt", "data.n_max=40", "data.ratio=4", "data.val_per_class=5", "data.test_per_class=5",
        "data.num_classes=4", "data.batch_size=16", "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
        "trainer.accelerator=cpu"]


@pytest.mark.parametrize("args", [
    ["optimizer=sam"],
    ["optimizer=imbsam", "optimizer.optim.tail_max_count=25"],
    ["optimizer=sam", "mixing=mixup"],  # the mixer reuses its draw on the closure's second call
    pytest.param(["optimizer=sam", "optimizer.optim.base=adamw", "optimizer.optim.momentum=null",
                  "optimizer.optim.adaptive=true", "optimizer.optim.lr=0.01"], marks=pytest.mark.slow),
])
def test_a_run_trains_and_loads(args, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, err = run_inprocess([*TINY, *args, f"hydra.run.dir={run_dir}"], capsys)
    assert code == 0, err[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test"]["num_samples"] == 20
    import imbal

    run = imbal.load_run(run_dir)
    assert run.model is not None


#: (args, the one line on stderr): refused before training
REFUSED = {
    "accumulation": (["optimizer=sam", "trainer.accumulate_grad_batches=2"],
                     "optimizer=sam with trainer.accumulate_grad_batches=2: its gradients are taken on one batch, "
                     "at w and at the perturbed w; set trainer.accumulate_grad_batches=1 (or a larger data.batch_size)"),
    "16-mixed": (["optimizer=imbsam", "trainer.precision=16-mixed"],
                 "optimizer=imbsam with trainer.precision=16-mixed: the gradient scaler steps the optimizer without "
                 "the closure its second gradient needs; use trainer.precision=bf16-mixed or 32-true"),
    "clip by value": (["optimizer=sam", "trainer.gradient_clip_val=1.0", "+trainer.gradient_clip_algorithm=value"],
                      "optimizer=sam with trainer.gradient_clip_algorithm=value: clipping by value turns the "
                      "perturbation away from the gradient; use trainer.gradient_clip_algorithm=norm"),
    "imbsam clipping": (["optimizer=imbsam", "trainer.gradient_clip_val=1.0"],
                        "optimizer=imbsam with trainer.gradient_clip_val=1.0: Lightning would clip the head and the "
                        "tail gradients separately, not the sum ImbSAM steps with; set trainer.gradient_clip_val=null"),
    "fsdp": (["optimizer=sam", "trainer.strategy=fsdp"],
             "optimizer=sam with trainer.strategy=fsdp: sharded parameters (the perturbation's norm would be one "
             "shard's); use trainer.strategy=ddp or auto"),
    "imbsam mixing": (["optimizer=imbsam", "mixing=mixup"],
                      "optimizer=imbsam with mixing=mixup: ImbSAM splits the batch into head and tail classes by "
                      "its unmixed targets; use mixing=none (or optimizer=sam)"),
    "adamw with momentum": (["optimizer=sam", "optimizer.optim.base=adamw"],
                            "optimizer.optim.momentum=0.9: SGD's momentum, not used by optimizer.optim.base=adamw; "
                            "set optimizer.optim.momentum=null (AdamW's betas: optimizer.optim.betas)"),
    "sgd with betas": (["optimizer=sam", "optimizer.optim.betas=[0.9,0.99]"],
                       "optimizer.optim.betas=[0.9, 0.99]: AdamW's betas, not used by optimizer.optim.base=sgd; "
                       "set optimizer.optim.betas=null (SGD's momentum: optimizer.optim.momentum)"),
    "base": (["optimizer=sam", "optimizer.optim.base=adam"],
             "optimizer.optim.base='adam': expected sgd or adamw (the base optimizer of SAM / ImbSAM)"),
    "rho 0": (["optimizer=sam", "optimizer.optim.rho=0"],
              "optimizer.optim.rho=0: expected a finite number > 0 (SAM's perturbation radius)"),
    "adaptive": (["optimizer=sam", "optimizer.optim.adaptive=yes"],
                 "optimizer.optim.adaptive='yes': expected true (ASAM) or false"),
    "tail count": (["optimizer=imbsam", "optimizer.optim.tail_max_count=-1"],
                   "optimizer.optim.tail_max_count=-1: expected an integer >= 0 (tail classes have fewer training "
                   "samples)"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_in_one_line_before_training(case, tmp_path, capsys):
    args, expected = REFUSED[case]
    code, err = run_inprocess([*TINY, *args, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("imbal: error:")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_pass_loss_and_class_counts_binding():
    """The task asks the optimizer which loss a closure call trains; ImbSAM gets the training class counts."""
    import functools
    from types import SimpleNamespace

    from imbal.errors import ImbalError
    from imbal.optim import bind_stats, pass_loss

    logits, loss = torch.zeros(5, 3, requires_grad=True), torch.tensor(1.5)
    plain = SimpleNamespace(_trainer=SimpleNamespace(optimizers=[torch.optim.SGD(tiny().parameters(), lr=0.1)]),
                            loss_fn=F.cross_entropy)
    assert pass_loss(plain, logits, Y, loss) == (loss, True)
    sam = SAM(tiny().parameters(), lr=0.1)
    task = SimpleNamespace(_trainer=SimpleNamespace(optimizers=[sam]), loss_fn=F.cross_entropy)
    sam._pass = 1
    assert pass_loss(task, logits, Y, loss) == (loss, False)  # the loss at w + e_w is not recorded
    sam._pass = 0

    stats = SimpleNamespace(task="multiclass", class_counts=[50, 19, 20])
    factory = bind_stats(functools.partial(ImbSAM, lr=0.1), stats)
    assert factory(tiny().parameters()).tail_classes == [1]
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    assert bind_stats(sgd, stats) is sgd
    with pytest.raises(ImbalError, match="optimizer=imbsam: expected a multiclass task .*got a multilabel task"):
        bind_stats(functools.partial(ImbSAM, lr=0.1), SimpleNamespace(task="multilabel", class_counts=[3, 4]))
