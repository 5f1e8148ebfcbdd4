"""The runner: one training run from a composed config (``train``), and the parts it builds.

=====================  ===========================================================
module                 owns
=====================  ===========================================================
``flow``               ``train(cfg)``: the order of things in one run
``build``              instantiating data, backbone, loss, task, callbacks, trainer
``trainer_options``    imbal's own keys of the ``trainer`` node, launch checks
``rundir``             the run dir: lock, resume, manifest, stored data stats
``summary``            :class:`RunSummary`, the schema of ``summary.json``
``evaluate``           post-hoc corrections scored after training
``predictions``        ``predictions/``: the logits (masks: thresholded RLE) every metric was computed from
``env``                versions, git commit, peak memory
=====================  ===========================================================
"""

from imbal.runner.build import build_parts, build_task
from imbal.runner.flow import train
from imbal.runner.summary import RunSummary

__all__ = ["train", "build_parts", "build_task", "RunSummary"]
