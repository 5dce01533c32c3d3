"""``python -m nerdistill.select_loop``: an active-learning loop, simulated with the pool's gold tags
(:mod:`nerdistill.selection.loop`)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from nerdistill.checks import exit_on_input_error
from nerdistill.runtime import configure_process
from nerdistill.selection.loop import run_loop

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="select_loop")
def main(cfg: DictConfig) -> None:
    configure_process(cfg.get("runtime"))
    with exit_on_input_error(log):
        run_loop(cfg)


if __name__ == "__main__":
    main()
