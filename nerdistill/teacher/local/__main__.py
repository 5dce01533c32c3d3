"""``python -m nerdistill.teacher.local teacher.local.port=8000 [runtime.torch_threads=1]``: the local model
as a standalone OpenAI-compatible server for any client (config ``conf/local.yaml``)."""

import logging
import time

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from nerdistill.runtime import configure_process
from nerdistill.teacher.local.serve import LocalServer

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../../../conf", config_name="local")
def main(cfg: DictConfig) -> None:
    configure_process(cfg.get("runtime"))
    server = LocalServer(instantiate(cfg.teacher.local)).start()
    log.info(
        "local teacher (a REAL model: %s) at %s, models %s; Ctrl-C stops it",
        server.settings.description,
        server.url,
        server.settings.models,
    )
    print(f"serving {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopping; %s", server.info()["stats"])
    finally:
        server.stop()


if __name__ == "__main__":
    main()
