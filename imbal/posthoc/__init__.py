"""Post-hoc corrections applied at evaluation time, logged beside the raw metrics.

Every correction maps the stored test outputs to *corrected test logits*
(log-scores whose argmax is the corrected decision), so one set of metrics
scores them all.  A correction is a function::

    fn(ctx: PosthocContext, **params) -> dict[str, torch.Tensor]

returning ``{result_name: corrected_test_logits}`` (a correction may return
several variants, e.g. ``la`` with tau=1 and ``la_tuned``), and may record
what it chose (a tuned tau, an estimated prior) in ``ctx.info[result_name]``.
Corrections are registered in :data:`CORRECTIONS` (an :class:`imbal.registry.Registry`)
with :func:`register` and switched on by the ``posthoc`` config node
(``posthoc.<name>: {params}`` or ``null`` to skip).  A user's correction is
registered the same way, before the run (e.g. in a module its config imports)::

    from imbal.posthoc import register

    @register("my_shift")
    def my_shift(ctx, *, delta=1.0):
        return {"my_shift": ctx.test_logits + delta}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import Tensor, nn

from imbal.data.stats import DataStats
from imbal.errors import ImbalError
from imbal.registry import Registry


@dataclass
class PosthocContext:
    """What a correction may use: val/test outputs of the best model, the data stats, the head."""

    stats: DataStats
    val_logits: Tensor
    val_targets: Tensor
    test_logits: Tensor
    test_targets: Tensor
    val_features: Tensor | None = None
    test_features: Tensor | None = None
    head: nn.Module | None = None
    info: dict[str, Any] = field(default_factory=dict)


Correction = Callable[..., "dict[str, Tensor]"]
CORRECTIONS: Registry[Correction] = Registry("post-hoc correction", hint="choose from", sort=True)


#: correction name -> {parameter: (test, what is expected)}: value rules beyond the parameter's type
RULES: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {}


def register(name: str, *, rules: Mapping[str, tuple[Callable[[Any], bool], str]] | None = None,
             ) -> Callable[[Correction], Correction]:
    """Decorator: register ``fn(ctx, **params) -> {result_name: logits}`` as correction ``name``.

    Its keyword parameters are checked before training (:func:`build`) against their annotations
    (``float``, ``int``, ``str``, ``Sequence[float]``, unions, ``None``) and ``rules``
    (``{param: (test, "what is expected")}``).
    """
    if rules:
        RULES[name] = dict(rules)
    return CORRECTIONS.register(name)


def apply(posthoc_cfg: Mapping[str, Any] | None, ctx: PosthocContext, *, skip_errors: bool = False) -> dict[str, Tensor]:
    """Run every enabled correction; returns ``{result_name: corrected test logits}``.

    ``skip_errors`` (as ``imbal.run`` calls it, after training): a correction that raises
    ImbalError is skipped with a warning and recorded in ``ctx.info["skipped"]``.
    """
    out: dict[str, Tensor] = {}
    for name, fn, params in build(posthoc_cfg):
        try:
            out.update(fn(ctx, **params))
        except ImbalError as exc:
            if not skip_errors:
                raise
            # Runs after training: a correction the data cannot support (e.g. log of an
            # empty class's prior) is skipped and reported, never the cause of a lost run.
            import warnings

            warnings.warn(f"post-hoc '{name}' skipped: {exc}", stacklevel=2)
            ctx.info.setdefault("skipped", {})[name] = str(exc)
    return out


def build(posthoc_cfg: Mapping[str, Any] | None, *, strict: bool = True) -> list[tuple[str, Correction, dict]]:
    """``(name, fn, params)`` of every enabled correction of a ``posthoc`` node, its parameters checked.

    ``imbal.run`` calls it before training, so a bad parameter costs no run; ``strict=False`` passes
    over a name not registered yet (a module the config imports may register it later).
    """
    from imbal.posthoc.params import check_params

    planned = []
    for name, params in (posthoc_cfg or {}).items():
        if params is None or params is False:
            continue
        if name not in CORRECTIONS and not strict:
            continue
        if name not in CORRECTIONS:
            raise CORRECTIONS.unknown(name)
        if params is not True and not isinstance(params, Mapping):
            raise ImbalError(f"posthoc.{name}={params}: expected its parameters ({{key: value}}), true or null")
        params = {} if params is True else dict(params)
        if params.pop("enabled", True) is False:
            continue
        fn = CORRECTIONS.get(name)
        check_params(name, fn, params, RULES.get(name, {}))
        planned.append((name, fn, params))
    return planned


# Built-in corrections register themselves on import.
from imbal.posthoc import logit_adjust  # noqa: E402,F401
from imbal.posthoc import tau_norm  # noqa: E402,F401
from imbal.posthoc import prior_shift  # noqa: E402,F401
from imbal.posthoc import threshold  # noqa: E402,F401
