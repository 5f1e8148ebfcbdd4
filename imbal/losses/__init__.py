"""Losses for learning under class imbalance, found through the ``imbal.losses`` entry-point group.

Public API::

    imbal.losses.available()                 # -> ["ce", "focal", ...]
    imbal.losses.build("focal", stats=stats, gamma=1.0)
    imbal.losses.describe("focal")          # package, tasks, hyper-parameters
"""

from imbal.losses.registry import (  # noqa: F401
    GROUP,
    INJECTABLE,
    LossPluginError,
    available,
    broken,
    build,
    conflicts,
    describe,
    get,
    hparams,
    refresh,
    supported_tasks,
)
