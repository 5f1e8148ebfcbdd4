"""Train one configuration (or sweep with -m):  python train.py data=gaussian_lt loss=focal"""

import sys

import hydra
from omegaconf import DictConfig

from imbal.config import check_choices, conf_dir, register_configs
from imbal.errors import ImbalError, exit_with

try:
    register_configs()
    check_choices(a for a in sys.argv[1:] if not a.startswith("-"))
except ImbalError as err:
    exit_with(err)


@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")
def main(cfg: DictConfig) -> float:
    from imbal.run import train

    try:
        return train(cfg)
    except ImbalError as err:
        exit_with(err)


if __name__ == "__main__":
    main()
