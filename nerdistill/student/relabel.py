"""The parts of the noise-aware stage (``denoise`` config), which ``nerdistill.train`` runs before the
data module: the gold-only model that relabels (:func:`gold_model`: ``denoise.model_dir``, or trained
once per key into ``denoise.gold_dir`` and reused), the relabelling of the distilled pool by a model
(:class:`Relabelling`, with the rules of :mod:`nerdistill.student.denoise`), and the configs of the
stage's own training runs (:func:`sub_run`). Each relabelled pool is written into the run dir for
inspection and reuse (``data.distilled=[<run>/relabel_1/distilled.jsonl]``).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from nerdistill.data.conll import Sentence, write_conll
from nerdistill.data.labels import LabelSet
from nerdistill.data.pools import Pools
from nerdistill.data.sources import read_source
from nerdistill.data.weighted import write_weighted
from nerdistill.files import write_json
from nerdistill.student.denoise import Relabel, RelabelStats, pool_quality, relabel_sentence, untrusted_types
from nerdistill.student.inference import Tagger

log = logging.getLogger(__name__)
# config keys that do not change what a gold-only run learns: left out of its reuse key
NOT_IN_GOLD_KEY = {
    "data": ("distilled", "distilled_budget", "distilled_loss_weight", "cache_dir"),
    "trainer": ("enable_progress_bar", "default_root_dir"),
}
GOLD_ONLY = {"_target_": "nerdistill.student.schedules.Original"}


def enabled(cfg: DictConfig) -> bool:
    return bool(cfg.get("denoise") and cfg.denoise.get("rule"))


def sub_run(cfg: DictConfig, output_dir: Path, **overrides) -> DictConfig:
    """``cfg`` for a stage of its own: no relabelling, written into ``output_dir``, with ``overrides``
    (dotted keys) applied."""
    sub = copy.deepcopy(cfg)
    with open_dict(sub):
        sub.denoise = {}
        sub.ckpt_path = None
        sub.paths.output_dir = str(output_dir)
        for key, value in overrides.items():
            OmegaConf.update(sub, key, value, merge=False)
    return sub


def gold_key(cfg: DictConfig) -> str:
    """What decides a gold-only run's model: seed, labels, gold data, model, trainer and recipe."""
    parts = {
        "seed": cfg.seed,
        "labels": list(cfg.labels),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "schedule": OmegaConf.to_container(cfg.schedule, resolve=True),
    }
    for node, skipped in NOT_IN_GOLD_KEY.items():
        parts[node] = {k: v for k, v in OmegaConf.to_container(cfg[node], resolve=True).items() if k not in skipped}
    parts["data"]["passes"] = {"original": parts["data"]["passes"]["original"]}
    draws = parts["data"].pop("draws", None) or {}
    if draws.get("original") is not None:  # keys of runs without fixed gold draws stay those of before data.draws
        parts["data"]["draws"] = {"original": draws["original"], "unit": draws.get("unit", "sentences")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class GoldModel:
    """The gold-only model that relabels: its folder (a run dir) and its ``metrics.json``. While it is
    still to be trained, ``config`` holds the run that trains it into ``folder``: train it and hand
    :meth:`trained` the metrics."""

    folder: Path
    metrics: dict
    config: DictConfig | None = None
    trained_here: bool = False

    def trained(self, metrics: dict) -> None:
        """Keep what is reused (``model/`` and ``metrics.json``) and a run record like Hydra's, so
        ``python -m nerdistill.report <gold_dir>`` reports the gold-only runs."""
        shutil.rmtree(self.folder / "checkpoints", ignore_errors=True)
        (self.folder / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(self.config, self.folder / ".hydra" / "config.yaml")
        OmegaConf.save(
            OmegaConf.create(["schedule=original", "denoise=none", f"seed={self.config.seed}"]),
            self.folder / ".hydra" / "overrides.yaml",
        )
        self.metrics, self.config, self.trained_here = metrics, None, True

    def record(self) -> dict:
        """What the run's ``metrics.json`` says of it (under ``denoise``)."""
        return {
            "gold_model": str(self.folder),
            "gold_model_test_f1": self.metrics.get("test", {}).get("micro", {}).get("f1"),
            "gold_model_val_f1_best": self.metrics.get("val_f1_best"),
            # the gold model's own wall time; trained by this run (counted in its total) or reused
            "gold_model_seconds": self.metrics.get("timing", {}).get("total_s"),
            "gold_model_trained_here": self.trained_here,
        }


@contextmanager
def gold_model(cfg: DictConfig) -> Iterator[GoldModel]:
    """The gold-only model of this run's seed and data: ``denoise.model_dir`` if given, else the
    one in ``denoise.gold_dir/<key>`` (schedule ``original``), shared by every run with the same
    key. It is held under a file lock, so parallel sweep jobs that need the same gold model train it
    once: one still to be trained (``config`` set) must be trained inside the ``with`` block."""
    if cfg.denoise.get("model_dir"):
        path = Path(cfg.denoise.model_dir)
        yield GoldModel(
            path, json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
        )
        return
    probe = sub_run(cfg, Path("."), schedule=GOLD_ONLY)
    folder = Path(cfg.denoise.gold_dir) / gold_key(probe)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "metrics.json"
        if done.exists():
            log.info("gold model reused from %s", folder)
            yield GoldModel(folder, json.loads(done.read_text()))
            return
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier attempt: start it again
        log.info("training the gold model into %s", folder)
        yield GoldModel(folder, {}, config=sub_run(cfg, folder, schedule=GOLD_ONLY))


class Relabelling:
    """How a run relabels its distilled pool (``denoise.rule``, ``denoise.rounds``): the rule
    checked and the untrusted types found (from ``pools``) before any model trains. ``reference``:
    the gold sources' sentences, for the summaries' diagnostics only."""

    def __init__(self, cfg: DictConfig, pools: Pools, reference: list[Sentence]) -> None:
        self.rounds = int(cfg.denoise.get("rounds", 1))
        if self.rounds < 1:
            raise ValueError(f"denoise.rounds must be >= 1, got {self.rounds}")
        self.cfg, self.labels = cfg, LabelSet(tuple(cfg.labels))
        self.rule: Relabel = instantiate(cfg.denoise.rule, _convert_="all")
        self.untrusted, self.trust = untrusted_types(pools.original, pools.distilled, self.labels, self.rule.trust)
        self.pool, self.reference = pools.distilled, reference

    def relabel(self, model_dir: Path, out: Path) -> tuple[list[Sentence], dict]:
        """Tag the distilled pool with ``model_dir``, relabel it by the rule, write
        ``distilled.jsonl`` (tags, weights, provenance), ``distilled.conll`` and ``summary.json``
        into ``out``. Returns the pool as the JSONL file holds it (soft targets rounded as written,
        so ``data.distilled=[<out>/distilled.jsonl]`` trains on the same pool) and the round's
        entry for the run's record."""
        started = time.perf_counter()
        data = self.cfg.data
        tagger = Tagger(
            model_dir,
            batch_size=self.cfg.denoise.get("batch_size", 128),
            max_length=data.max_length,
            precision=self.cfg.trainer.precision,
        )
        if tuple(tagger.labels.types) != self.labels.types:
            raise ValueError(
                f"denoise: the model in {model_dir} predicts {list(tagger.labels.types)}, "
                f"not this run's labels {list(self.labels.types)}"
            )
        tags = [tagger.id2label[i] for i in range(len(tagger.id2label))]
        if tags != list(self.labels.tags):
            raise ValueError(
                f"denoise: the model in {model_dir} orders its tags {tags}, "
                f"not as this run's label set {list(self.labels.tags)}"
            )
        predicted = tagger.tag_with_probabilities([s.tokens for s in self.pool])
        stats = RelabelStats()
        relabelled = [
            relabel_sentence(s, model_tags, probs, tags, self.rule, self.untrusted, stats)
            for s, (model_tags, probs) in zip(self.pool, predicted)
        ]
        out.mkdir(parents=True, exist_ok=True)
        write_weighted(out / "distilled.jsonl", relabelled)
        write_conll(out / "distilled.conll", relabelled)
        summary = {
            "model_dir": str(model_dir),
            "rule": OmegaConf.to_container(self.cfg.denoise.rule, resolve=True),
            "untrusted_types": sorted(self.untrusted),
            "trust": self.trust,
            **stats.as_dict(),
            # diagnostics against the gold files' tags of the same sentences: never used for choices
            "quality_against_gold": {
                "teacher": pool_quality(self.pool, self.reference),
                "model": pool_quality(
                    [replace(s, tags=tuple(t)) for s, (t, _) in zip(self.pool, predicted)], self.reference
                ),
                "relabelled": pool_quality(relabelled, self.reference),
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_json(out / "summary.json", summary)
        log.info(
            "relabelled %d sentences with %s: %s",
            len(relabelled),
            model_dir,
            {k: summary[k] for k in ("changed", "unlabelled", "mean_weight")},
        )
        entry = {"pool": str(out / "distilled.jsonl")} | {
            k: summary[k] for k in ("changed", "unlabelled", "mean_weight", "quality_against_gold")
        }
        return read_source(out / "distilled.jsonl", self.labels), entry
