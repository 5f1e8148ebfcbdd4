"""Train one configuration (or sweep with -m):  python train.py data=gaussian_lt loss=focal"""

import sys

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from imbal.config import check_choices, check_output_dirs, conf_dir, register_configs
from imbal.errors import ImbalError, exit_with

try:
    register_configs()
    _args = [a for a in sys.argv[1:] if not a.startswith("-")]
    check_choices(_args)
    check_output_dirs(_args)
except ImbalError as err:
    exit_with(err)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")
def main(cfg: DictConfig) -> float:
    from imbal.run import train

    try:
        return train(cfg)
    except ImbalError as err:
        exit_with(err)
    except MissingMandatoryValue as err:
        # e.g. data=tensors without data.path: name the key, in one line
        exit_with(ImbalError(f"missing value for {err.full_key}: set it on the command line ({err.full_key}=...)"))


if __name__ == "__main__":
    main()
