"""Every config option composes (Hydra compose API), and the data's default backbone is picked."""

from __future__ import annotations

import itertools

import pytest
from omegaconf import OmegaConf

from imbal import losses
from imbal.config import check_choices, yaml_options
from imbal.errors import ImbalError

DATA = yaml_options("data")
MODELS = yaml_options("model")


@pytest.fixture(scope="module")
def compose_fast():
    """One Hydra initialisation for the whole module (the per-test one costs ~0.5 s each)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from imbal.config import conf_dir, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        yield lambda *ov: compose(config_name="train", overrides=["run_dir=/nonexistent-not-used", *ov])
    GlobalHydra.instance().clear()


# Every loss with one data config of each task family, and every data config with its default loss
# and with ce: composing all 17 x 36 pairs takes over a minute and tests nothing more.
LOSS_PAIRS = sorted(
    set(itertools.product(["digits_lt", "airbus", "sms_spam"], losses.available()))
    | {(d, l) for d in DATA for l in ("ce", "focal")}
)


@pytest.mark.parametrize("data,loss", LOSS_PAIRS)
def test_data_x_loss_composes(compose_fast, data, loss):
    cfg = compose_fast(f"data={data}", f"loss={loss}")
    assert cfg.loss.name == loss
    assert cfg.data.name == data
    OmegaConf.to_container(cfg.loss, resolve=True)  # every hparam default resolves


@pytest.mark.parametrize("data,model", list(itertools.product(DATA, MODELS)))
def test_data_x_model_composes(compose_fast, data, model):
    cfg = compose_fast(f"data={data}", f"model={model}")
    # the command line wins over the data's default backbone (model=timm is named by its timm model)
    assert cfg.model.name == {"timm": "resnet18"}.get(model, model)


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in ("trainer", "logger", "optimizer", "sampler", "experiment", "regularizer", "mixing") for o in yaml_options(g)],
)
def test_other_groups_compose(compose_fast, group, option):
    cfg = compose_fast(f"{group}={option}")
    assert cfg is not None


def test_data_picks_its_default_backbone(make_cfg):
    assert make_cfg().model.name == "small_cnn"
    assert make_cfg("data=gaussian_lt").model.name == "mlp"


def test_generated_loss_node_takes_overrides(make_cfg):
    cfg = make_cfg("loss=focal", "loss.gamma=0.5")
    assert cfg.loss == {"name": "focal", "gamma": 0.5, "alpha": None, "reduction": "mean",
                        "drw_epoch": None, "drw_beta": 0.9999}


def test_check_choices_one_line():
    with pytest.raises(ImbalError) as err:
        check_choices(["loss=nope"])
    assert str(err.value).startswith("unknown loss 'nope'; choose one of: ")
    assert "focal" in str(err.value)
    with pytest.raises(ImbalError, match="unknown data 'cifar5'"):
        check_choices(["data=digits_lt,cifar5"])
    check_choices(["loss=ce,focal", "seed=1", "loss.gamma=2", "hydra.run.dir=x"])  # valid: no error
