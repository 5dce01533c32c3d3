"""``python -m nerdistill.select``: choose the sentences of a pool that people should label."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from nerdistill.checks import check_tagger_config, check_value, exit_on_input_error
from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet
from nerdistill.data.sources import read_source
from nerdistill.runtime import configure_process
from nerdistill.selection.job import Settings, run_selection
from nerdistill.selection.pool import leave_out, llm_tags, model_gold, read_pool
from nerdistill.student.inference import Tagger

log = logging.getLogger(__name__)


def seed_files(value) -> list[str]:
    """``seed_set``: a list of CoNLL files, one file, or null."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, ListConfig)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"seed_set={value!r}: expected a list of CoNLL files")
    return list(value)


def check_config(cfg: DictConfig) -> Settings:
    """Every setting, by its key, before anything is read or loaded."""
    settings = Settings.from_config(cfg)
    check_tagger_config(cfg)
    for key, allowed in (
        ("model_dir", (str, type(None))),
        ("llm_labels", (str, type(None))),
        ("exclude_model_gold", (bool,)),
        ("progress", (bool,)),
    ):
        check_value(key, cfg.get(key), allowed)
    if cfg.model_dir is None and settings.needs != "nothing":
        raise ValueError(
            f"model_dir=null: strategy={settings.strategy} scores with a model (only strategy=random runs without one)"
        )
    if settings.needs == "llm" and not cfg.llm_labels:
        raise ValueError(
            f"strategy={settings.strategy} compares the student with the LLM's labels of the pool: "
            "set llm_labels=<CoNLL file>"
        )
    return settings


def labelled_sentences(cfg: DictConfig, labels: LabelSet) -> dict[str, list[Sentence]]:
    """The already-labelled sentences to leave out, by the config key that names them."""
    labelled = {"seed_set": [s for path in seed_files(cfg.seed_set) for s in read_source(path, labels)]}
    if cfg.exclude_model_gold and cfg.model_dir is not None:
        gold = model_gold(cfg.model_dir, labels)
        if gold is not None:
            labelled["exclude_model_gold"] = gold
    return labelled


def select(cfg: DictConfig) -> dict:
    """Read the pool and what to leave out, load the model, choose, write; bad settings and bad
    files fail before the model loads, and before anything is written."""
    settings = check_config(cfg)
    labels = LabelSet(tuple(cfg.labels))
    labelled = labelled_sentences(cfg, labels)
    pool = leave_out(read_pool(cfg.pool.path, cfg.pool.format, labels), labelled)
    if not pool.candidates:
        raise ValueError(
            f"pool.path={cfg.pool.path}: no sentence left to choose from ({pool.read} read, left out: {pool.left_out})"
        )
    llm = (
        llm_tags(pool.candidates, read_source(cfg.llm_labels, labels, labels_name="labels")) if cfg.llm_labels else None
    )
    tagger = None
    if cfg.model_dir is not None:
        tagger = Tagger(
            cfg.model_dir,
            cfg.batch_size,
            cfg.max_length,
            cfg.precision,
            quantize=cfg.get("quantize"),
            progress=cfg.progress,
        )
        if tagger.labels.types != labels.types:
            raise ValueError(
                f"labels={list(labels.types)}: the model in {cfg.model_dir} predicts {list(tagger.labels.types)}"
            )
    encoder = instantiate(cfg.diversity.encoder) if settings.clusters is not None else None
    context = {
        "model_dir": cfg.model_dir,
        "precision": tagger.precision if tagger is not None else None,
        "max_length": cfg.max_length,
        "pool_path": str(cfg.pool.path),
        "pool_format": cfg.pool.format,
        "seed_set": seed_files(cfg.seed_set),
        "exclude_model_gold": cfg.exclude_model_gold,
        "llm_labels": cfg.llm_labels,
        "encoder": cfg.diversity.encoder.name_or_path if encoder is not None else None,
    }
    embed = (lambda: encoder.encode([s.tokens for s in pool.candidates])) if encoder is not None else None
    # the gold a training run drew, as a file: train on it and selected.conll together
    also = {"model_gold": labelled["exclude_model_gold"]} if labelled.get("exclude_model_gold") else None
    return run_selection(settings, pool, Path(cfg.paths.output_dir), tagger, llm, embed, context, also)


@hydra.main(version_base="1.3", config_path="../conf", config_name="select")
def main(cfg: DictConfig) -> None:
    configure_process(cfg.get("runtime"))
    with exit_on_input_error(log):
        select(cfg)


if __name__ == "__main__":
    main()
