"""The pool a selection ranks: a CoNLL file or raw text, without the sentences already labelled
and without repeats, and the LLM's tags of its sentences where an LLM labelled them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nerdistill.data.conll import Sentence, read_conll
from nerdistill.data.hf import is_hf
from nerdistill.data.labels import LabelSet
from nerdistill.data.pools import build_pools
from nerdistill.data.sources import read_source
from nerdistill.data.text import sentences_from_text
from nerdistill.student.inference import current_targets

FORMATS = ("conll", "text")


@dataclass(frozen=True)
class Pool:
    """``candidates``: the distinct texts of the pool file not left out, in file order; ``read``:
    the sentences the file holds; ``left_out``: how many were left out, by reason (a config key for
    already-labelled sentences, ``repeats`` for a text seen earlier in the pool)."""

    candidates: list[Sentence]
    read: int
    left_out: dict[str, int] = field(default_factory=dict)


def read_pool(path: str | Path, fmt: str, labels: LabelSet) -> list[Sentence]:
    """The pool's sentences: a CoNLL file (ids ``<file>:<block>``, the ``train_gpt35.index``
    convention) or ``hf:`` dataset (``<name>:<split>:<row>``; :mod:`nerdistill.data.hf`), or a raw
    text file split and tokenised like CoNLL (ids ``<file>:<sentence>``, 0-based, tags all ``O``).
    An empty pool is an error naming ``pool.path``."""
    if fmt not in FORMATS:
        raise ValueError(f"pool.format={fmt!r}: expected one of {list(FORMATS)}")
    if fmt == "conll" and is_hf(path):
        return read_source(str(path), labels)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pool.path={path}: not a file")
    if fmt == "conll":
        return read_conll(path, labels)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"pool.path={path}: cannot read as UTF-8 text ({err})") from err
    sentences = [
        Sentence(tuple(tokens), ("O",) * len(tokens), f"{path.name}:{i}", path.name)
        for i, tokens in enumerate(sentences_from_text(text))
    ]
    if not sentences:
        raise ValueError(f"pool.path={path}: no sentences (the file is empty or blank)")
    return sentences


def block(sentence: Sentence) -> int:
    """The number after the last ``:`` of the sentence's id: its block in a CoNLL file, its sentence number in text."""
    return int(sentence.id.rsplit(":", 1)[1])


def leave_out(sentences: Sequence[Sentence], labelled: Mapping[str, Sequence[Sentence]]) -> Pool:
    """The pool without the sentences whose tokens are those of a sentence in ``labelled`` (by
    the config key that named them) and without a text's later repeats."""
    keys = {reason: {s.text_key for s in group} for reason, group in labelled.items()}
    left_out = dict.fromkeys([*keys, "repeats"], 0)
    seen: set[str] = set()
    candidates = []
    for sentence in sentences:
        key = sentence.text_key
        reason = next((r for r, known in keys.items() if key in known), None)
        if reason is None and key in seen:
            reason = "repeats"
        if reason is not None:
            left_out[reason] += 1
            continue
        seen.add(key)
        candidates.append(sentence)
    return Pool(candidates, len(sentences), left_out)


def llm_tags(candidates: Sequence[Sentence], llm: Sequence[Sentence]) -> list[tuple[str, ...] | None]:
    """Per candidate, the LLM's tags of the same tokens (its first sentence with them), or ``None``."""
    by_text: dict[str, tuple[str, ...]] = {}
    for sentence in llm:
        by_text.setdefault(sentence.text_key, sentence.tags)
    return [by_text.get(s.text_key) for s in candidates]


def run_config_path(model_dir: str | Path) -> Path | None:
    """The ``.hydra/config.yaml`` of the training run a model comes from (a run dir, its ``model/``
    or one of its checkpoints), or ``None`` for a model without one."""
    path = Path(model_dir)
    runs = [path.parent.parent] if path.suffix == ".ckpt" else [path, path.parent] if path.name == "model" else [path]
    return next((run / ".hydra" / "config.yaml" for run in runs if (run / ".hydra" / "config.yaml").is_file()), None)


def model_gold(model_dir: str | Path, labels: LabelSet) -> list[Sentence] | None:
    """The gold sentences the training run of ``model_dir`` drew (its ``data.original``,
    ``data.gold_budget``, ``data.budget_seed`` and ``data.gold_overlap``, recomputed as
    :func:`~nerdistill.data.pools.build_pools` drew them), or ``None`` when ``model_dir`` holds
    no run config."""
    config = run_config_path(model_dir)
    if config is None:
        return None
    try:
        cfg = OmegaConf.create(current_targets(config.read_text()))
        data = cfg.data
        if not instantiate(cfg.schedule).resolve(1, 1).uses_original:
            return []
        distilled = list(data.distilled) if data.gold_overlap != "any" else []
        return build_pools(
            list(data.original),
            distilled,
            labels,
            data.gold_budget,
            data.get("distilled_budget"),
            data.gold_overlap,
            data.budget_seed,
        ).original
    except (OmegaConfBaseException, InstantiationException, KeyError, AttributeError) as err:
        raise ValueError(
            f"exclude_model_gold: cannot recompute the gold sentences of the run config {config} "
            f"({type(err).__name__}: {err}); set exclude_model_gold=false and name them in seed_set"
        ) from None
