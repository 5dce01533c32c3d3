"""The noise-aware stages of a training run (``denoise`` config): train or reuse a gold model, let it
relabel the distilled pool (:mod:`nerdistill.student.denoise`), and for self-training rounds train the next
relabelling model on that pool. The pools are written into the run dir for inspection and reuse
(``data.distilled=[<run>/relabel_1/distilled.jsonl]``).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from nerdistill.data.conll import Sentence, write_conll
from nerdistill.data.labels import LabelSet
from nerdistill.data.pools import Pools, build_pools, read_files
from nerdistill.data.weighted import write_weighted
from nerdistill.files import write_json
from nerdistill.student.denoise import Relabel, RelabelStats, pool_quality, relabel_sentence, untrusted_types
from nerdistill.student.inference import Tagger

log = logging.getLogger(__name__)
# config keys that do not change what a gold-only run learns: left out of its reuse key
NOT_IN_GOLD_KEY = {"data": ("distilled", "distilled_budget", "distilled_loss_weight", "cache_dir"), "trainer": ("enable_progress_bar", "default_root_dir")}


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
    parts = {"seed": cfg.seed, "labels": list(cfg.labels), "model": OmegaConf.to_container(cfg.model, resolve=True), "schedule": OmegaConf.to_container(cfg.schedule, resolve=True)}
    for node, skipped in NOT_IN_GOLD_KEY.items():
        parts[node] = {k: v for k, v in OmegaConf.to_container(cfg[node], resolve=True).items() if k not in skipped}
    parts["data"]["passes"] = {"original": parts["data"]["passes"]["original"]}
    draws = parts["data"].pop("draws", None) or {}
    if draws.get("original") is not None:  # keys of runs without fixed gold draws stay those of before data.draws
        parts["data"]["draws"] = {"original": draws["original"], "unit": draws.get("unit", "sentences")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def gold_model(cfg: DictConfig, train: Callable[[DictConfig], dict]) -> tuple[Path, dict]:
    """The gold-only model of this run's seed and data: ``denoise.model_dir`` if given, else trained
    once into ``denoise.gold_dir/<key>`` (schedule ``original``) and reused by every run with the
    same key. Returns its model dir and its metrics."""
    if cfg.denoise.get("model_dir"):
        path = Path(cfg.denoise.model_dir)
        metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
        return path, metrics
    probe = sub_run(cfg, Path("."), schedule={"_target_": "nerdistill.student.schedules.Original"})
    folder = Path(cfg.denoise.gold_dir) / gold_key(probe)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sweep jobs that need the same gold model train it once
        return _gold_model_locked(cfg, folder, train)


def _gold_model_locked(cfg: DictConfig, folder: Path, train: Callable[[DictConfig], dict]) -> tuple[Path, dict]:
    done = folder / "metrics.json"
    if done.exists():
        log.info("gold model reused from %s", folder)
        return folder, json.loads(done.read_text()) | {"reused": True}
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier attempt: start it again
    log.info("training the gold model into %s", folder)
    gold = sub_run(cfg, folder, schedule={"_target_": "nerdistill.student.schedules.Original"})
    metrics = train(gold)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # model/ and metrics.json are what is reused
    # a run record like Hydra's, so `python -m nerdistill.report <gold_dir>` reports the gold-only runs
    (folder / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(gold, folder / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(["schedule=original", "denoise=none", f"seed={cfg.seed}"]), folder / ".hydra" / "overrides.yaml")
    return folder, metrics


def relabel_pool(cfg: DictConfig, pools: Pools, rule: Relabel, untrusted: tuple[frozenset[str], dict], reference: list[Sentence], model_dir: Path, out: Path) -> tuple[Path, dict]:
    """Tag the distilled pool with ``model_dir``, relabel it by ``rule`` (``untrusted``: the types
    :func:`untrusted_types` found, and its evidence), write ``distilled.jsonl`` (tags, weights,
    provenance), ``distilled.conll`` and ``summary.json`` into ``out``; returns the JSONL path and
    the summary. ``reference``: the gold files' sentences, for the summary's diagnostics only."""
    started = time.perf_counter()
    labels, data = LabelSet(tuple(cfg.labels)), cfg.data
    untrusted, trust = untrusted
    tagger = Tagger(model_dir, batch_size=cfg.denoise.get("batch_size", 128), max_length=data.max_length, precision=cfg.trainer.precision)
    if tuple(tagger.labels.types) != labels.types:
        raise ValueError(f"denoise: the model in {model_dir} predicts {list(tagger.labels.types)}, not this run's labels {list(labels.types)}")
    tags = [tagger.id2label[i] for i in range(len(tagger.id2label))]
    if tags != list(labels.tags):
        raise ValueError(f"denoise: the model in {model_dir} orders its tags {tags}, not as this run's label set {list(labels.tags)}")
    predicted = tagger.tag_with_probabilities([s.tokens for s in pools.distilled])
    stats = RelabelStats()
    relabelled = [relabel_sentence(s, model_tags, probs, tags, rule, untrusted, stats) for s, (model_tags, probs) in zip(pools.distilled, predicted)]
    out.mkdir(parents=True, exist_ok=True)
    write_weighted(out / "distilled.jsonl", relabelled)
    write_conll(out / "distilled.conll", relabelled)
    summary = {
        "model_dir": str(model_dir),
        "rule": OmegaConf.to_container(cfg.denoise.rule, resolve=True),
        "untrusted_types": sorted(untrusted),
        "trust": trust,
        **stats.as_dict(),
        # diagnostics against the gold files' tags of the same sentences: never used for choices
        "quality_against_gold": {
            "teacher": pool_quality(pools.distilled, reference),
            "model": pool_quality([replace(s, tags=tuple(t)) for s, (t, _) in zip(pools.distilled, predicted)], reference),
            "relabelled": pool_quality(relabelled, reference),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "summary.json", summary)
    log.info("relabelled %d sentences with %s: %s", len(relabelled), model_dir, {k: summary[k] for k in ("changed", "unlabelled", "mean_weight")})
    return out / "distilled.jsonl", summary


def prepare(cfg: DictConfig, out: Path, train: Callable[[DictConfig], dict]) -> dict:
    """Run the noise-aware stages for ``cfg`` (whose results go into ``out``) and point
    ``cfg.data.distilled`` at the last relabelled pool. Returns what happened, for metrics.json."""
    rounds = int(cfg.denoise.get("rounds", 1))
    if rounds < 1:
        raise ValueError(f"denoise.rounds must be >= 1, got {rounds}")
    started = time.perf_counter()
    data, labels = cfg.data, LabelSet(tuple(cfg.labels))
    # every file read and checked, and the rule's settings, before any model trains
    pools = build_pools(data.original, data.distilled, labels, data.gold_budget, data.distilled_budget, data.gold_overlap, data.budget_seed)
    rule: Relabel = instantiate(cfg.denoise.rule, _convert_="all")
    untrusted = untrusted_types(pools.original, pools.distilled, labels, rule.trust)
    reference = read_files(data.original, labels)  # gold tags of the same sentences, where the gold files have them
    model_dir, gold_metrics = gold_model(cfg, train)
    record = {
        "gold_model": str(model_dir),
        "gold_model_test_f1": gold_metrics.get("test", {}).get("micro", {}).get("f1"),
        "gold_model_val_f1_best": gold_metrics.get("val_f1_best"),
        # the gold model's own wall time; trained by this run (counted in its total) or reused
        "gold_model_seconds": gold_metrics.get("timing", {}).get("total_s"),
        "gold_model_trained_here": not gold_metrics.get("reused", bool(cfg.denoise.get("model_dir"))),
        "rounds": [],
    }
    for round_ in range(1, rounds + 1):
        pool, summary = relabel_pool(cfg, pools, rule, untrusted, reference, model_dir, out / f"relabel_{round_}")
        entry = {"pool": str(pool), "changed": summary["changed"], "unlabelled": summary["unlabelled"], "mean_weight": summary["mean_weight"], "quality_against_gold": summary["quality_against_gold"]}
        if round_ < rounds:  # self-training: the student of this round relabels the next
            student = sub_run(cfg, out / f"round_{round_}", **{"data.distilled": [str(pool)]})
            metrics = train(student)
            shutil.rmtree(out / f"round_{round_}" / "checkpoints", ignore_errors=True)
            entry |= {"student_test_f1": metrics["test"]["micro"]["f1"], "student_val_f1_best": metrics["val_f1_best"]}
            model_dir = out / f"round_{round_}" / "model"
        record["rounds"].append(entry)
    with open_dict(cfg):
        cfg.data.distilled = [str(pool)]
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record
