"""Train one configuration (or sweep with -m):  imbal train data=gaussian_lt loss=focal

The same as ``python train.py ...`` in a checkout and ``python -m imbal.train ...``; Hydra reads
``imbal.config.conf_dir()`` (the repository's ``conf/``, or the copy an installed wheel carries).
"""

import sys

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from imbal.config import conf_dir
from imbal.errors import ImbalError, exit_with

#: exit status of a run stopped by SIGTERM (128 + 15): not a success, resume=auto continues it
EXIT_SIGTERM = 143


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")
def main(cfg: DictConfig) -> float:
    from imbal.runner import train

    try:
        return train(cfg)
    except SystemExit as exc:
        # lightning.pytorch.utilities.exceptions.SIGTERMException, matched by name: importing Lightning
        # here would cost a config error ~10 s of start-up before validate_config runs
        if type(exc).__name__ != "SIGTERMException":
            raise
        # Lightning stops at the next batch and raises this SystemExit (code 0): a pre-empted run
        # must not look complete.  128 + SIGTERM, as a shell reports a killed process; under
        # submitit the requeue is its own signal handler's (SIGUSR2), whatever the exit code.
        print("imbal: run stopped by SIGTERM before it completed (no summary.json); continue it with "
              "resume=auto in the same hydra.run.dir", file=sys.stderr, flush=True)
        sys.exit(EXIT_SIGTERM)
    except ImbalError as err:
        exit_with(err)
    except MissingMandatoryValue as err:
        # e.g. data=tensors without data.path: name the key, in one line
        exit_with(ImbalError(f"missing value for {err.full_key}: set it on the command line ({err.full_key}=...)"))


def cli() -> None:
    """Check the command line in one-line errors, then hand it to Hydra."""
    from imbal.config import check_choices, check_output_dirs, register_configs, share_config_store, split_argv
    from imbal.config_keys import check_override_syntax, one_line_key_errors
    from imbal.extras import check_overrides
    from imbal.runlock import claim_from_argv

    share_config_store()
    try:
        overrides = split_argv(sys.argv[1:])[1]
        check_override_syntax(overrides)  # init_from=<sweep job dir with '=' in it>: quote it, in one line
        check_overrides(overrides)  # hydra/launcher=slurm without its plugin: the extra, in one line
        register_configs()
        check_choices(sys.argv[1:])
        check_output_dirs(overrides)
        # a named hydra.run.dir is claimed before Hydra writes its .hydra/ there (imbal/runlock.py)
        lock = claim_from_argv(*split_argv(sys.argv[1:]))
    except ImbalError as err:
        exit_with(err)
    try:
        with one_line_key_errors(sys.argv[1:]):  # loss.gama=2: one line naming loss.gamma, exit 2
            main()
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    cli()
