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


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")
def main(cfg: DictConfig) -> float:
    from imbal.runner import train

    try:
        return train(cfg)
    except ImbalError as err:
        exit_with(err)
    except MissingMandatoryValue as err:
        # e.g. data=tensors without data.path: name the key, in one line
        exit_with(ImbalError(f"missing value for {err.full_key}: set it on the command line ({err.full_key}=...)"))


def cli() -> None:
    """Check the command line in one-line errors, then hand it to Hydra."""
    from imbal.config import check_choices, check_output_dirs, register_configs, share_config_store, split_argv
    from imbal.extras import check_overrides

    share_config_store()
    try:
        overrides = split_argv(sys.argv[1:])[1]
        check_overrides(overrides)  # hydra/launcher=slurm without its plugin: the extra, in one line
        register_configs()
        check_choices(sys.argv[1:])
        check_output_dirs(overrides)
    except ImbalError as err:
        exit_with(err)
    main()


if __name__ == "__main__":
    cli()
