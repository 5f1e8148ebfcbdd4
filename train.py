"""Train one configuration (or sweep with -m):  python train.py data=gaussian_lt loss=focal (imbal/train.py)"""
from imbal.train import cli

if __name__ == "__main__":
    cli()
