"""The runner: one training run from a composed config (``train``), and the parts it builds.

=====================  ===========================================================
module                 owns
=====================  ===========================================================
``flow``               ``train(cfg)``: the order of things in one run
``validate``           one-line checks of config values, before anything is read or built
``build``              instantiating data, backbone, loss, task, callbacks, trainer
``trainer_options``    imbal's own keys of the ``trainer`` node, launch checks
``rundir``             the run dir: lock, resume, manifest, stored data stats
``resume``             a resumed checkpoint must come from the same run definition
``stages``             two-stage decoupling: ``init_from`` weights, what cRT / LWS / finetune freeze
``rebuild``            a run dir's model from its model/loss nodes only (a run dir is data, not code)
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
