"""Every config option composes; what can be built offline, is."""

import pytest
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig
from pytorch_lightning.strategies import DDPStrategy

from nerdistill.train import build_trainer
from tests.conftest import CONF, compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def targets(node) -> list[str]:
    """Every ``_target_`` in a config subtree."""
    if isinstance(node, DictConfig):
        own = [node["_target_"]] if "_target_" in node else []
        return own + [t for key in node if key != "_target_" for t in targets(node[key])]
    if isinstance(node, ListConfig):
        return [t for item in node for t in targets(item)]
    return []


@pytest.mark.parametrize("group", ["schedule", "model", "trainer", "logger", "callbacks", "data", "denoise"])
def test_every_option_composes_and_names_importable_targets(group, tmp_path):
    for option in options(group):
        cfg = compose_config("train", [f"{group}={option}"], tmp_path)
        for target in targets(cfg.get(group)):
            assert callable(get_object(target)), f"{group}={option}: {target}"


@pytest.mark.parametrize("option", ["default", "cpu"])
def test_cpu_trainers_instantiate(option, tmp_path):
    cfg = compose_config("train", [f"trainer={option}"], tmp_path)
    trainer = build_trainer(cfg, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == 5


def test_ddp_cpu_trainer_is_two_gloo_ranks(tmp_path):
    trainer = build_trainer(
        compose_config("train", ["trainer=ddp_cpu"], tmp_path), logger=False, enable_checkpointing=False
    )
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.world_size == 2
    assert trainer.strategy._get_process_group_backend() == "gloo"  # Lightning's choice for CPU devices
    assert trainer.strategy.root_device.type == "cpu"


def test_loggers_and_callbacks_instantiate_offline(tmp_path):
    cfg = compose_config("train", ["logger=wandb", "tags=[a,b]"], tmp_path)
    wandb_logger = instantiate(cfg.logger.wandb)
    assert wandb_logger._offline and wandb_logger._wandb_init["tags"] == ["a", "b"]
    for callback in cfg.callbacks.values():
        instantiate(callback)


@pytest.mark.parametrize("config_name", ["evaluate", "predict"])
def test_entry_point_configs_compose(config_name, tmp_path):
    cfg = compose_config(
        config_name, ["model_dir=x", "input_file=y"] if config_name == "predict" else ["model_dir=x"], tmp_path
    )
    assert cfg.model_dir == "x"
