"""Ensembles of finished runs, fitted on validation and scored once on test (``imbal ensemble``).

* :mod:`~imbal.ensemble.members`: finding the members and checking they share data, split and classes;
* :mod:`~imbal.ensemble.methods`: mean, logit_mean, weighted, stacking and greedy (fitted on validation only);
* :mod:`~imbal.ensemble.build`: the command: fit, score, write ``ensemble.json`` and ``predictions/``.

docs/ensembles.md describes the protocol and a worked example.  This module imports nothing heavy
(the ``imbal`` command builds its parser from it).
"""

from __future__ import annotations

import argparse

ENSEMBLE_FILE = "ensemble.json"
METHODS = ("mean", "logit_mean", "weighted", "stacking", "greedy")
OBJECTIVES = ("log_loss", "balanced_accuracy", "macro_f1")


def build_ensemble(*args, **kwargs) -> dict:
    """:func:`imbal.ensemble.build.build_ensemble`: fit, score and write an ensemble; returns ensemble.json's content."""
    from imbal.ensemble.build import build_ensemble as build

    return build(*args, **kwargs)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("paths", nargs="+", metavar="PATH", help="run or sweep directories (every finished run under "
                   "them is a member), or ensemble directories")
    p.add_argument("-o", "--out", default=None, help="output directory (default: <first PATH>/ensemble_<method>)")
    p.add_argument("--method", default="mean", choices=METHODS, help="how to combine the members (default: mean)")
    p.add_argument("--objective", default="log_loss", choices=OBJECTIVES,
                   help="what weighted and greedy optimise on validation (default: log_loss)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weighted search and stacking's folds")
    p.add_argument("--posthoc", action="append", default=None, metavar="NAME[:KEY=VALUE,...]",
                   help="post-hoc correction fitted on the ensemble's validation outputs: la, la_tuned, "
                   "prior_shift (e.g. prior_shift:test_prior=em), threshold; repeat for several")
    p.add_argument("--rounds", type=int, default=50, help="greedy: selection rounds (default 50)")
    p.add_argument("--folds", type=int, default=5, help="stacking: cross-fitting folds on validation (default 5)")
    return p


def cmd_ensemble(args: argparse.Namespace) -> int:
    from imbal.ensemble.build import cmd_ensemble as run

    return run(args)


__all__ = ["ENSEMBLE_FILE", "METHODS", "OBJECTIVES", "add_arguments", "build_ensemble", "cmd_ensemble"]
