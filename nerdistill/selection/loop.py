"""An active-learning loop, simulated: a random seed set of gold sentences, then round by round
train the students, let one choose the next sentences, reveal their gold tags, and train again,
until the human budget is spent. The pool's own gold tags play the human annotator.

Each round ``r`` keeps its work in ``round_<r>/``: ``gold.conll`` (the gold set it trains on),
``distilled.conll`` (the LLM's labels of the pool's sentences not in it), ``original/`` (the
gold-only student: ``metrics.json``, ``model/``, ``.hydra/config.yaml``), ``sequential/`` (the
LLM labels, then gold), ``selection/`` (what ``python -m nerdistill.select`` writes: the next
sentences to reveal) and ``round.json``, written last. A re-run skips every round with a
``round.json``, reuses a finished student or selection of an unfinished round, and trains again
whatever a kill interrupted; training and selection are deterministic on the CPU, so the resumed
loop is the uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from nerdistill.checks import check_tagger_config, check_value
from nerdistill.data.conll import Sentence, read_conll, write_conll
from nerdistill.data.labels import LabelSet, spans
from nerdistill.data.pools import take_budget
from nerdistill.files import write_json, write_text
from nerdistill.selection.job import Settings, run_selection
from nerdistill.selection.pick import planned_selections
from nerdistill.selection.pool import block, leave_out, llm_tags, read_pool
from nerdistill.student.inference import Tagger

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[2] / "conf"
STUDENTS = {"original": "original", "sequential": "sequential"}  # folder: schedule
HUMAN = (
    "The pool's gold tags (CoNLL-2003 train's by default) play the human annotator: "
    "the labels revealed each round are the dataset's, not a person's."
)


def check_loop(cfg: DictConfig, settings: Settings) -> None:
    """The loop's settings, named by their keys, before anything is read or trained."""
    loop = cfg.loop
    for key, allowed in (("seed_size", (int,)), ("total", (int,)), ("sequential", (bool, str)), ("selector", (str,))):
        check_value(f"loop.{key}", loop.get(key), allowed)
    check_tagger_config(cfg)
    if loop.seed_size < 1 or loop.total < 1:
        raise ValueError(f"loop.seed_size and loop.total must be >= 1, got {loop.seed_size} and {loop.total}")
    if isinstance(loop.sequential, str) and loop.sequential != "last":
        raise ValueError(f"loop.sequential={loop.sequential!r}: expected true, false or last")
    if loop.selector not in STUDENTS:
        raise ValueError(f"loop.selector={loop.selector!r}: expected one of {list(STUDENTS)}")
    if loop.selector == "sequential" and loop.sequential is not True:
        raise ValueError(
            "loop.selector=sequential needs loop.sequential=true (the sequential student of every round chooses)"
        )
    if not isinstance(loop.train, (list, ListConfig)) or not all(isinstance(o, str) for o in loop.train):
        raise ValueError(f"loop.train={loop.train!r}: expected a list of train overrides (key=value)")
    if (loop.sequential or settings.needs == "llm") and not cfg.llm_labels:
        raise ValueError(
            "loop.sequential=true or last and strategy=disagreement need the LLM's labels of the pool: "
            "set llm_labels=<CoNLL file>"
        )


def student_config(cfg: DictConfig, schedule: str, out: Path, gold: Path, distilled: Path | None) -> DictConfig:
    """The train config of one round's student: ``loop.train`` overrides, ``schedule``, the round's
    gold file (all of it) and distilled file, the loop's seed, data dir and cache, into ``out``."""
    overrides = [
        f"paths.data_dir={cfg.paths.data_dir}",
        f"paths.cache_dir={cfg.paths.cache_dir}",
        *cfg.loop.train,
        f"schedule={schedule}",
        f"seed={cfg.seed}",
    ]
    if GlobalHydra.instance().is_initialized():  # under ``python -m nerdistill.select_loop``: its search path
        student = compose(config_name="train", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            student = compose(config_name="train", overrides=overrides)
    with open_dict(student):
        student.labels = list(cfg.labels)
        student.paths.output_dir = str(out)
        student.ckpt_path = None
        OmegaConf.update(student, "data.original", [str(gold)], merge=False)
        OmegaConf.update(student, "data.distilled", [str(distilled)] if distilled is not None else [], merge=False)
        student.data.gold_budget = None
        student.data.distilled_budget = None
        student.data.gold_overlap = "any"
    return student


def train_student(
    cfg: DictConfig, train_fn: Callable[[DictConfig], dict], name: str, round_dir: Path, distilled: Path | None
) -> dict:
    """One student of a round, trained into ``round_dir/name`` (a finished one is reused; an
    interrupted one is trained again from the start); its checkpoints are removed, its config kept."""
    folder = round_dir / name
    done = folder / "metrics.json"
    if done.exists():
        return json.loads(done.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    student = student_config(cfg, STUDENTS[name], folder, round_dir / "gold.conll", distilled)
    log.info("round %s: training the %s student into %s", round_dir.name, name, folder)
    metrics = train_fn(student)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # model/ and metrics.json are what is kept
    (folder / ".hydra").mkdir(exist_ok=True)
    # a run record: select's exclude_model_gold and the report read it
    OmegaConf.save(student, folder / ".hydra" / "config.yaml")
    return metrics


def check_gold(round_dir: Path, gold: list[Sentence], labels: LabelSet) -> None:
    """A round folder from an earlier run must hold the gold set this config gives it, else it is another loop's."""
    if {s.text_key for s in read_conll(round_dir / "gold.conll", labels)} != {s.text_key for s in gold}:
        raise ValueError(
            f"{round_dir / 'gold.conll'} holds another gold set than this config gives round {round_dir.name}: "
            "the folder is another loop's (seed, pool or strategy differ); "
            "choose a new output dir (hydra.run.dir=...)"
        )


def cost(sentences: Sequence[Sentence], unit: str) -> int:
    return len(sentences) if unit == "sentences" else sum(len(s.tokens) for s in sentences)


def summary(metrics: dict) -> dict:
    return {
        "val_f1_best": metrics.get("val_f1_best"),
        "test_f1": metrics.get("test", {}).get("micro", {}).get("f1"),
        "seconds": metrics.get("timing", {}).get("total_s"),
    }


def run_loop(cfg: DictConfig, train_fn: Callable[[DictConfig], dict] | None = None) -> dict:
    """Run (or resume) the loop into ``cfg.paths.output_dir``; returns the report it writes."""
    if train_fn is None:
        from nerdistill.train import train as train_fn  # the training stack loads only when a loop runs
    settings = Settings.from_config(cfg)
    check_loop(cfg, settings)
    labels = LabelSet(tuple(cfg.labels))
    candidates = leave_out(read_pool(cfg.pool.path, cfg.pool.format, labels), {}).candidates
    llm = read_conll(cfg.llm_labels, labels, labels_name="labels") if cfg.llm_labels else None
    # a bad loop.train override fails here, before any training
    student_config(cfg, "original", Path("."), Path("gold.conll"), None)
    position = {s.id: i for i, s in enumerate(candidates)}
    encoder = instantiate(cfg.diversity.encoder) if settings.clusters is not None else None
    # the whole pool once, for every round
    embeddings = functools.cache(lambda: encoder.encode([s.tokens for s in candidates]))
    out = Path(cfg.paths.output_dir)
    by_block = {block(s): s for s in candidates}
    gold = sorted(take_budget(candidates, cfg.loop.seed_size, cfg.seed, "loop.seed_size"), key=lambda s: position[s.id])
    selections = planned_selections(cost(gold, settings.unit), settings.size, cfg.loop.total)
    rounds = []
    for r in range(len(candidates) + 1):
        round_dir = out / f"round_{r}"
        finished = round_dir / "round.json"
        if finished.exists():
            check_gold(round_dir, gold, labels)
            record = json.loads(finished.read_text())
            log.info("round %d: finished earlier, skipped", r)
        else:
            record = run_round(
                cfg,
                settings,
                r,
                round_dir,
                gold,
                candidates,
                llm,
                train_fn,
                embeddings if encoder is not None else None,
                selections,
            )
            write_json(finished, record)
        rounds.append(record)
        write_report(out, cfg, settings, rounds)
        if record["selection"] is None:
            break
        chosen = [int(x) for x in (round_dir / "selection" / "selected.index").read_text().split()]
        gold = sorted([*gold, *(by_block[b] for b in chosen)], key=lambda s: position[s.id])
    return json.loads((out / "report.json").read_text())


def run_round(
    cfg: DictConfig,
    settings: Settings,
    r: int,
    round_dir: Path,
    gold: list[Sentence],
    candidates: list[Sentence],
    llm: list[Sentence] | None,
    train_fn: Callable[[DictConfig], dict],
    embeddings: Callable[[], np.ndarray] | None,
    selections: int,
) -> dict:
    """Train the round's students on ``gold`` and, until the loop's ``selections`` are made, the budget is
    spent or the pool used up, choose the next sentences (the last selection: the rest of the budget). The
    sequential student trains every round with ``loop.sequential=true``, in the final round only with ``last``."""
    started = time.perf_counter()
    if (round_dir / "gold.conll").exists():
        check_gold(round_dir, gold, LabelSet(tuple(cfg.labels)))
    write_conll(round_dir / "gold.conll", gold)
    spent, unit, total = cost(gold, settings.unit), settings.unit, cfg.loop.total
    pool = leave_out(candidates, {"gold": gold})
    final = r >= selections or spent >= total or not pool.candidates
    sequential = cfg.loop.sequential is True or (cfg.loop.sequential == "last" and final)
    distilled = None
    if sequential:  # the LLM's labels of the pool's sentences not in gold
        known, pooled = {s.text_key for s in gold}, {s.text_key for s in candidates}
        labelled = [s for s in llm if s.text_key in pooled and s.text_key not in known]
        if not labelled:
            raise ValueError(
                f"llm_labels={cfg.llm_labels}: none of its sentences is in the pool outside round {r}'s gold set; "
                "set loop.sequential=false to train gold-only students"
            )
        distilled = round_dir / "distilled.conll"
        write_conll(distilled, labelled)
    students = {"original": train_student(cfg, train_fn, "original", round_dir, None)}
    if sequential:
        students["sequential"] = train_student(cfg, train_fn, "sequential", round_dir, distilled)
    selection = None
    if not final:
        selection = choose(
            cfg,
            # before the last selection the picks never reach total (a pick does not over-spend)
            replace(settings, size=total - spent if r + 1 == selections else settings.size, seed=settings.seed + r),
            round_dir,
            pool,
            candidates,
            llm,
            embeddings,
        )
    else:
        log.info(
            "round %d: %d of loop.total=%d %s spent%s: the last round",
            r,
            spent,
            total,
            unit,
            " and the pool is used up"
            if not pool.candidates
            else f" after {selections} selections (the last was given the rest)"
            if spent < total
            else "",
        )
    return {
        "round": r,
        "gold": {
            "sentences": len(gold),
            "tokens": cost(gold, "tokens"),
            "entities": sum(len(spans(s.tags)) for s in gold),
        },
        "students": {name: summary(metrics) for name, metrics in students.items()},
        "selection": selection,
        "seconds": round(time.perf_counter() - started, 1),
    }


def choose(
    cfg: DictConfig,
    settings: Settings,
    round_dir: Path,
    pool,
    candidates: list[Sentence],
    llm: list[Sentence] | None,
    embeddings: Callable[[], np.ndarray] | None,
) -> dict:
    """The round's selection with its selector student, into ``round_dir/selection`` (a finished one is reused)."""
    folder = round_dir / "selection"
    done = folder / "report.json"
    if not done.exists():
        model_dir = round_dir / cfg.loop.selector / "model"
        tagger = Tagger(
            model_dir,
            cfg.batch_size,
            cfg.max_length,
            cfg.precision,
            quantize=cfg.get("quantize"),
            progress=cfg.progress,
        )
        index = {s.id: i for i, s in enumerate(candidates)}
        rows = np.array([index[s.id] for s in pool.candidates], dtype=np.int64)
        embed = (lambda: embeddings()[rows]) if embeddings is not None else None
        context = {
            "model_dir": str(model_dir),
            "precision": tagger.precision,
            "max_length": cfg.max_length,
            "pool_path": str(cfg.pool.path),
            "llm_labels": cfg.llm_labels,
            "note": HUMAN,
        }
        run_selection(
            settings, pool, folder, tagger, llm_tags(pool.candidates, llm) if llm is not None else None, embed, context
        )
    report = json.loads(done.read_text())
    return {
        "sentences": report["selected"]["sentences"],
        "tokens": report["selected"]["tokens"],
        "score_s": report["timing"]["score_s"],
        "total_s": report["timing"]["total_s"],
    }


def write_report(out: Path, cfg: DictConfig, settings: Settings, rounds: list[dict]) -> None:
    """``report.json`` and ``report.md``: per round the gold set and the students' dev and test F1."""
    report = {
        "note": HUMAN,
        "settings": OmegaConf.to_container(cfg.loop, resolve=True)
        | {
            "strategy": settings.strategy,
            "per_word": settings.per_word,
            "budget": {"unit": settings.unit, "size": settings.size},
            "clusters": settings.clusters,
            "seed": cfg.seed,
        },
        "rounds": rounds,
    }
    names = list(STUDENTS)
    lines = [
        f"# Active learning: {settings.strategy}" + (" per word" if settings.per_word else "") + f", seed {cfg.seed}",
        "",
        HUMAN,
        "",
        "| round | gold sentences | gold tokens | gold entities | "
        + " | ".join(f"{n} dev / test" for n in names)
        + " | chosen next | seconds |",
        "|---|---|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for record in rounds:
        students = record["students"]
        f1 = [
            f"{students[n]['val_f1_best']:.4f} / {students[n]['test_f1']:.4f}"
            if n in students and students[n]["test_f1"] is not None
            else "-"
            for n in names
        ]
        chosen = record["selection"]["sentences"] if record["selection"] else "-"
        gold = record["gold"]
        lines.append(
            f"| {record['round']} | {gold['sentences']} | {gold['tokens']} | {gold['entities']} | "
            + " | ".join(f1)
            + f" | {chosen} | {record['seconds']} |"
        )
    write_text(out / "report.md", "\n".join(lines) + "\n")
    write_json(out / "report.json", report)
