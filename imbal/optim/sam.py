"""Sharpness-aware minimisation (Foret et al. 2021) around SGD or AdamW; ASAM with ``adaptive=True``.

One step, given the closure Lightning passes to ``optimizer.step`` (forward and backward):

1. ``g = grad L(w)`` (first closure call);
2. ``e_w = rho * g / ||g||`` (adaptive, Kwon et al. 2021: ``e_w = rho * T_w^2 g / ||T_w g||`` with
   ``T_w = |w|``), ``w <- w + e_w``;
3. ``g' = grad L(w + e_w)`` (second closure call), ``w <- w`` restored;
4. the base optimizer's step with ``g'``.

The norm runs over every parameter with a gradient, across param groups (``rho`` per group).
Lightning's precision plugin clips the gradient after each closure call; norm clipping leaves the
direction of ``e_w`` unchanged and clips ``g'``, the gradient the base step uses.  What cannot work
(a GradScaler, gradient accumulation, clipping by value) is refused before training
(:mod:`imbal.optim.checks`).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from imbal.errors import ImbalError

#: the base optimizers by the name ``base`` takes
BASES = ("sgd", "adamw")


def base_optimizer(base: str, params, *, lr: float, weight_decay: float, momentum: float | None,
                   nesterov: bool, betas, eps: float | None) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` or ``torch.optim.AdamW`` with the keys that belong to it (the other's refused)."""
    from imbal.optim.checks import base_keys_error

    wrong = base_keys_error(base, momentum, nesterov, betas, eps)
    if wrong:
        raise ImbalError(wrong)
    if base == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0 if momentum is None else float(momentum),
                               weight_decay=weight_decay, nesterov=bool(nesterov))
    if base == "adamw":
        extra = {} if eps is None else {"eps": float(eps)}
        if betas is not None:
            extra["betas"] = tuple(float(b) for b in betas)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)
    raise ImbalError(f"optimizer.optim.base={base!r}: expected one of {', '.join(BASES)}")


class SAM(torch.optim.Optimizer):
    """SAM over a base optimizer (``base``: ``sgd`` | ``adamw``) that shares its param groups.

    Args:
        params: parameters or param groups (imbal's groups: backbone lr multiplier, no decay on norms).
        base: the base optimizer; ``momentum``/``nesterov`` are SGD's keys, ``betas``/``eps`` AdamW's
            (null: that optimizer's default; a key of the other base is refused).
        rho: the radius of the perturbation (Foret et al.: 0.05).
        adaptive: ASAM's scale-invariant perturbation (Kwon et al. suggest a larger rho, e.g. 2.0 with SGD).
    """

    def __init__(self, params, *, base: str = "sgd", rho: float = 0.05, adaptive: bool = False, lr: float = 0.1,
                 weight_decay: float = 0.0, momentum: float | None = None, nesterov: bool = False,
                 betas=None, eps: float | None = None):
        if not (isinstance(rho, (int, float)) and rho > 0):
            raise ImbalError(f"optimizer.optim.rho={rho}: expected a number > 0 (the perturbation radius)")
        super().__init__(params, {"rho": float(rho), "adaptive": bool(adaptive)})
        self.base_optimizer = base_optimizer(base, self.param_groups, lr=lr, weight_decay=weight_decay,
                                             momentum=momentum, nesterov=nesterov, betas=betas, eps=eps)
        self._share_base()
        self.base = base
        self._pass = 0  # which closure call of the step runs now (pass_loss reads it)
        self._e_w: dict[torch.Tensor, torch.Tensor] = {}  # kept out of state: the base's state is the checkpoint's

    def _share_base(self) -> None:
        # one set of groups (schedulers change the lr the base reads) and one state (the checkpoint's)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self._share_base()

    # -- the closure calls ------------------------------------------------
    def closure_loss(self, loss_fn, logits, y, loss):
        """The task's loss for every call; recorded on the first (at ``w``), not the second (at ``w + e_w``)."""
        return loss, self._pass == 0

    def _call(self, closure: Callable[[], Any], index: int):
        self._pass = index
        try:
            with torch.enable_grad():
                return closure()
        finally:
            self._pass = 0

    def _params(self):
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def _perturb(self) -> None:
        """``w <- w + e_w`` from the gradients the last closure call left."""
        norms = [((torch.abs(p) if g["adaptive"] else 1.0) * p.grad).norm(p=2)
                 for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not norms:
            return
        grad_norm = torch.norm(torch.stack([n.to(norms[0].device) for n in norms]), p=2)
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
                self._e_w[p] = e_w

    @torch.no_grad()
    def _restore(self) -> None:
        for p, e_w in self._e_w.items():
            p.sub_(e_w)
        self._e_w = {}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):
        if closure is None:
            raise RuntimeError(f"{type(self).__name__}.step needs the closure (forward and backward) to take its "
                               "second gradient; a GradScaler (precision 16-mixed) steps without one")
        loss = self._call(closure, 0)
        if loss is None:  # the task skipped the batch (nan_policy=skip): no step
            return None
        self._perturb()
        self.zero_grad(set_to_none=True)
        second = self._call(closure, 1)
        self._restore()
        if second is not None:
            self.base_optimizer.step()
        return loss
