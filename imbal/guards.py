"""Numerical fault handling: stop (or skip) on a non-finite training loss, and keep the evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imbal.errors import ImbalError

POLICIES = ("error", "skip")


class NonFiniteLossError(ImbalError):
    """The training loss became NaN or infinite."""


class NonFiniteGuard:
    """Checks every training loss.

    ``policy="error"`` stops the run with one line naming the global step, the
    batch index, the loss and the min/max logits, after saving the offending
    batch (inputs, targets, logits) to ``<run_dir>/nonfinite_batch_step<N>.pt``.
    ``policy="skip"`` skips the optimiser step of up to ``max_skips`` such
    batches (counted in ``summary.json`` as ``nonfinite_batches_skipped``) and
    errors on the next one.  Skipping needs every rank to agree, so under DDP the
    policy is always ``error``.
    """

    def __init__(self, policy: str = "error", max_skips: int = 10, run_dir: str | Path | None = None):
        if policy not in POLICIES:
            raise ImbalError(f"trainer.nan_policy={policy!r} is not one of {', '.join(POLICIES)}")
        if int(max_skips) < 0:
            raise ImbalError(f"trainer.nan_max_skips must be >= 0, got {max_skips}")
        self.policy = policy
        self.max_skips = int(max_skips)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.skipped = 0

    def check(self, loss: Tensor, *, logits: Tensor, batch: Any, batch_idx: int, global_step: int, distributed: bool) -> bool:
        """True when the loss is finite; False when this batch is to be skipped; raises otherwise."""
        if bool(torch.isfinite(loss.detach()).all()):
            return True
        if self.policy == "skip" and not distributed and self.skipped < self.max_skips:
            self.skipped += 1
            return False
        saved = self._save(batch, logits, global_step)
        lg = logits.detach().float()
        finite = lg[torch.isfinite(lg)]
        lo = f"{finite.min().item():.4g}" if finite.numel() else "n/a"
        hi = f"{finite.max().item():.4g}" if finite.numel() else "n/a"
        nonfinite = int((~torch.isfinite(lg)).sum())
        raise NonFiniteLossError(
            f"non-finite training loss {loss.detach().float().item()} at global step {global_step}, batch {batch_idx}: "
            f"finite logits in [{lo}, {hi}], {nonfinite} non-finite logits"
            + (f"; batch saved to {saved}" if saved else "")
            + (f"; {self.skipped} earlier batches skipped (trainer.nan_max_skips={self.max_skips})" if self.policy == "skip" else "")
            + "; lower the learning rate, clip gradients (trainer.gradient_clip_val) or check the data"
        )

    def _save(self, batch: Any, logits: Tensor, global_step: int) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir / f"nonfinite_batch_step{global_step}.pt"

        def cpu(x):
            if isinstance(x, Tensor):
                return x.detach().cpu()
            if isinstance(x, dict):
                return {k: cpu(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return type(x)(cpu(v) for v in x)
            return x

        try:
            torch.save({"batch": cpu(batch), "logits": cpu(logits), "global_step": global_step}, path)
        except OSError:
            return None
        return path
