"""One selection: score a pool's candidates with a student, rank them (spread over clusters when
asked), take the budget's worth, and write what a person labels, the rest and a report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from nerdistill.checks import check_value
from nerdistill.data.conll import Sentence, write_conll
from nerdistill.data.labels import spans
from nerdistill.files import write_json, write_text
from nerdistill.selection import strategies
from nerdistill.selection.clusters import kmeans
from nerdistill.selection.pick import UNITS, rank, spread, take
from nerdistill.selection.pool import Pool, block
from nerdistill.student.inference import Tagger

log = logging.getLogger(__name__)
QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9, "max": 1.0}
# what a selection writes into its folder; report.json last: a folder with it is a finished selection
OUTPUTS = ("selected.conll", "selected.index", "rest.index", "ranking.tsv", "report.md", "report.json")


@dataclass(frozen=True)
class Settings:
    """How to choose: ``strategy`` (:data:`~nerdistill.selection.strategies.STRATEGIES`),
    ``per_word`` (a summed score over the sentence's words), the budget (``unit``, ``size``),
    ``seed`` (random scores and the order of ties), ``passes`` (``bald``'s dropout passes) and
    ``clusters`` (spread the picks over that many k-means clusters of sentence embeddings; ``None``: off)."""

    strategy: str
    per_word: bool = False
    unit: str = "sentences"
    size: int = 800
    seed: int = 0
    passes: int = 10
    clusters: int | None = None
    iterations: int = 50

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Settings:
        """The settings of a ``select`` config, each checked and named by its key (before any model loads)."""
        values = {
            "strategy": ("strategy", cfg.strategy, (str,)),
            "per_word": ("per_word", cfg.per_word, (bool,)),
            "unit": ("budget.unit", cfg.budget.unit, (str,)),
            "size": ("budget.size", cfg.budget.size, (int,)),
            "seed": ("seed", cfg.seed, (int,)),
            "passes": ("bald.passes", cfg.bald.passes, (int,)),
            "clusters": ("diversity.clusters", cfg.diversity.clusters, (int, type(None))),
            "iterations": ("diversity.iterations", cfg.diversity.iterations, (int,)),
        }
        for key, value, allowed in values.values():
            check_value(key, value, allowed)
        settings = cls(**{name: value for name, (_, value, _) in values.items()})
        settings.check()
        return settings

    def check(self) -> None:
        if self.strategy not in strategies.STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r}: expected one of {list(strategies.STRATEGIES)}")
        if self.per_word and not strategies.STRATEGIES[self.strategy].sums_words:
            summed = [s.name for s in strategies.STRATEGIES.values() if s.sums_words]
            raise ValueError(
                f"per_word=true: strategy={self.strategy} is not a sum over words; per_word divides {summed}"
            )
        if self.unit not in UNITS:
            raise ValueError(f"budget.unit={self.unit!r}: expected one of {list(UNITS)}")
        if self.size < 1:
            raise ValueError(f"budget.size must be >= 1, got {self.size}")
        if self.passes < 1:
            raise ValueError(f"bald.passes must be >= 1, got {self.passes}")
        if self.clusters is not None and self.clusters < 1:
            raise ValueError(f"diversity.clusters must be >= 1 or null, got {self.clusters}")
        if self.iterations < 1:
            raise ValueError(f"diversity.iterations must be >= 1, got {self.iterations}")

    @property
    def needs(self) -> str:
        return strategies.STRATEGIES[self.strategy].needs


@dataclass(frozen=True)
class Scored:
    """Each candidate's score and (with a model) predicted tags; the model's passes over the pool
    and the seconds they took."""

    scores: np.ndarray
    predicted: list[list[str]] | None
    passes: int
    seconds: float


def score(
    settings: Settings, sentences: Sequence[Sentence], tagger: Tagger | None, llm: Sequence[Sequence[str] | None] | None
) -> Scored:
    """Score ``sentences`` by ``settings.strategy``: one pass of ``tagger`` (its tags and
    probabilities; also for ``random``, for the report's predicted entities), and for ``bald``
    ``settings.passes`` more with dropout on. ``llm``: the LLM's tags per sentence (``disagreement``)."""
    needs = settings.needs
    if needs != "nothing" and tagger is None:
        raise ValueError(f"strategy={settings.strategy} needs a model: set model_dir")
    if needs == "llm" and llm is None:
        raise ValueError(f"strategy={settings.strategy} needs the LLM's labels of the pool: set llm_labels")
    started = time.perf_counter()
    tokens = [s.tokens for s in sentences]
    tagged = tagger.tag_with_probabilities(tokens) if tagger is not None else None
    predicted = [tags for tags, _ in tagged] if tagged is not None else None
    probs = [p for _, p in tagged] if tagged is not None else None
    passes = int(tagged is not None)
    if settings.strategy == "random":
        values = strategies.random_scores(len(sentences), settings.seed)
    elif needs == "probabilities":
        values = strategies.FROM_PROBABILITIES[settings.strategy](probs)
    elif needs == "samples":
        values = strategies.bald(tagger.sample_probabilities(tokens, settings.passes, settings.seed))
        passes += settings.passes
    else:
        values = strategies.disagreement(predicted, llm)
    if settings.per_word:
        values = strategies.divide_by_words(values, [len(t) for t in tokens])
    return Scored(np.asarray(values, dtype=np.float64), predicted, passes, time.perf_counter() - started)


def order_candidates(
    settings: Settings, scores: np.ndarray, embed: Callable[[], np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ranking, spread over ``settings.clusters`` k-means clusters of ``embed()`` when set;
    returns it and each candidate's cluster (``None`` without clusters)."""
    order = rank(scores, settings.seed)
    if settings.clusters is None:
        return order, None
    if embed is None:
        raise ValueError("diversity.clusters is set but no sentence encoder was given (diversity.encoder)")
    clusters = kmeans(embed(), settings.clusters, settings.seed, settings.iterations)
    return spread(order, clusters), clusters


def quantiles(values: np.ndarray) -> dict[str, float] | None:
    """The spread of the finite ``values``: min, deciles and quartiles, max and mean (``None`` if none)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    out = {name: round(float(np.quantile(finite, q)), 6) for name, q in QUANTILES.items()}
    return out | {"mean": round(float(finite.mean()), 6)}


def entities(tag_sequences: Sequence[Sequence[str]]) -> int:
    return sum(len(spans(tags)) for tags in tag_sequences)


def describe(indices: Sequence[int], sentences: Sequence[Sentence], scored: Scored, has_tags: bool) -> dict:
    """Counts of a group of candidates: sentences, tokens, entities (predicted, and the pool
    file's own tags where it has any), and their scores."""
    chosen = [sentences[i] for i in indices]
    return {
        "sentences": len(chosen),
        "tokens": sum(len(s.tokens) for s in chosen),
        "predicted_entities": entities([scored.predicted[i] for i in indices])
        if scored.predicted is not None
        else None,
        "pool_entities": entities([s.tags for s in chosen]) if has_tags else None,
        "scores": quantiles(scored.scores[np.asarray(indices, dtype=np.int64)]),
    }


def run_selection(
    settings: Settings,
    pool: Pool,
    out: str | Path,
    tagger: Tagger | None = None,
    llm: Sequence[Sequence[str] | None] | None = None,
    embed: Callable[[], np.ndarray] | None = None,
    context: Mapping[str, Any] | None = None,
    also: Mapping[str, Sequence[Sentence]] | None = None,
) -> dict:
    """Score, rank and pick from ``pool.candidates``, then write into ``out``: ``selected.conll``
    (the picks with the pool file's tags, in pick order), ``selected.index`` and ``rest.index``
    (block numbers; the rest in file order), ``ranking.tsv`` (every candidate in ranking order),
    ``report.md`` and ``report.json`` (last). ``context`` adds the caller's settings to the report;
    ``also`` names more sentence files to write beside them (``<name>.conll``). Every file is
    written whole or not at all, and nothing before the choice is made."""
    started = time.perf_counter()
    sentences = pool.candidates
    if not sentences:
        raise ValueError(f"the pool has no sentence left to choose from (left out: {pool.left_out})")
    scored = score(settings, sentences, tagger, llm)
    embed_started = time.perf_counter()
    order, clusters = order_candidates(settings, scored.scores, embed)
    embed_s = time.perf_counter() - embed_started
    lengths = [len(s.tokens) for s in sentences]
    chosen = take(order, lengths, settings.unit, settings.size)
    if not chosen:
        log.warning(
            "budget.size=%d %s buys no sentence: the first ranked one has %d tokens",
            settings.size,
            settings.unit,
            lengths[order[0]],
        )
    chosen_set = set(chosen)
    rest = [i for i in range(len(sentences)) if i not in chosen_set]
    has_tags = any(t != "O" for s in sentences for t in s.tags)
    truncated = (
        sum(kept < n for kept, n in zip(tagger.words_kept([s.tokens for s in sentences]), lengths))
        if tagger is not None
        else None
    )
    report = {
        **dict(context or {}),
        "settings": asdict(settings),
        "pool": {
            "sentences": pool.read,
            "left_out": pool.left_out,
            "candidates": len(sentences),
            "tokens": sum(lengths),
            "longer_than_max_length": truncated,
            "llm_labelled": sum(t is not None for t in llm) if llm is not None else None,
        },
        "budget": {
            "unit": settings.unit,
            "size": settings.size,
            "spent": len(chosen) if settings.unit == "sentences" else sum(lengths[i] for i in chosen),
        },
        "selected": describe(chosen, sentences, scored, has_tags),
        "rest": describe(rest, sentences, scored, has_tags),
        "scores": {"all": quantiles(scored.scores), "unscored": int(np.isnan(scored.scores).sum())},
        "clusters": _cluster_counts(clusters, chosen),
        "timing": {
            "score_s": round(scored.seconds, 2),
            "model_passes": scored.passes,
            "ms_per_sentence_and_pass": round(1000 * scored.seconds / max(1, scored.passes * len(sentences)), 3)
            if scored.passes
            else None,
            "embed_and_rank_s": round(embed_s, 2),
            "total_s": round(time.perf_counter() - started, 2),
        },
    }
    report["outputs"] = [*OUTPUTS[:-2], *(f"{name}.conll" for name in also or {}), *OUTPUTS[-2:]]
    _write(Path(out), sentences, scored, order, clusters, chosen, rest, report, also or {})
    log.info(
        "chose %d of %d candidates (%d tokens) by %s; outputs in %s",
        len(chosen),
        len(sentences),
        report["selected"]["tokens"],
        settings.strategy,
        out,
    )
    return report


def _cluster_counts(clusters: np.ndarray | None, chosen: Sequence[int]) -> dict | None:
    if clusters is None:
        return None
    sizes = np.bincount(clusters)
    picks = np.bincount(clusters[np.asarray(chosen, dtype=np.int64)], minlength=len(sizes))
    return {"k": len(sizes), "sizes": sizes.tolist(), "selected": picks.tolist()}


def _write(
    out: Path,
    sentences: Sequence[Sentence],
    scored: Scored,
    order: np.ndarray,
    clusters: np.ndarray | None,
    chosen: list[int],
    rest: list[int],
    report: dict,
    also: Mapping[str, Sequence[Sentence]],
) -> None:
    write_conll(out / "selected.conll", [sentences[i] for i in chosen])
    write_text(out / "selected.index", "".join(f"{block(sentences[i])}\n" for i in chosen))
    write_text(out / "rest.index", "".join(f"{block(sentences[i])}\n" for i in rest))
    chosen_set = set(chosen)
    rows = ["rank\tid\twords\tscore\tcluster\tselected"]
    for position, i in enumerate(order):
        cluster = "" if clusters is None else str(int(clusters[i]))
        rows.append(
            f"{position + 1}\t{sentences[i].id}\t{len(sentences[i].tokens)}\t"
            f"{scored.scores[i]:.6g}\t{cluster}\t{int(i in chosen_set)}"
        )
    write_text(out / "ranking.tsv", "\n".join(rows) + "\n")
    for name, group in also.items():
        write_conll(out / f"{name}.conll", group)
    write_text(out / "report.md", format_report(report))
    write_json(out / "report.json", report)


def format_report(report: dict) -> str:
    """``report.json`` as Markdown for a person."""
    settings, pool = report["settings"], report["pool"]
    lines = [
        f"# Selection: {settings['strategy']}" + (" per word" if settings["per_word"] else ""),
        "",
        f"- model: {report.get('model_dir') or 'none'}"
        + (f" ({report['precision']})" if report.get("precision") else ""),
        f"- pool: {report.get('pool_path', '?')}: {pool['sentences']} sentences; left out {pool['left_out']}; "
        f"{pool['candidates']} candidates, {pool['tokens']} tokens",
        f"- budget: {report['budget']['size']} {report['budget']['unit']} (spent {report['budget']['spent']}); "
        f"seed {settings['seed']}",
    ]
    if pool["longer_than_max_length"] is not None:
        lines.append(
            f"- candidates longer than max_length ({report.get('max_length', '?')} sub-tokens): "
            f"{pool['longer_than_max_length']} (their cut words count as O, certain)"
        )
    if pool["llm_labelled"] is not None:
        lines.append(f"- candidates the LLM labelled: {pool['llm_labelled']}")
    if report["clusters"]:
        lines.append(f"- spread over {report['clusters']['k']} k-means clusters of sentence embeddings")
    timing = report["timing"]
    lines.append(
        f"- scoring: {timing['score_s']} s, {timing['model_passes']} model pass(es)"
        + (
            f", {timing['ms_per_sentence_and_pass']} ms per sentence and pass"
            if timing["ms_per_sentence_and_pass"]
            else ""
        )
    )
    lines += [
        "",
        "| | sentences | tokens | predicted entities | pool file's entities | score p10 | p50 | p90 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("selected", "rest"):
        group = report[name]
        q = group["scores"] or {}
        cells = [
            group["sentences"],
            group["tokens"],
            group["predicted_entities"],
            group["pool_entities"],
            q.get("p10"),
            q.get("p50"),
            q.get("p90"),
        ]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
