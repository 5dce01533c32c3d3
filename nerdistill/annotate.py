"""``python -m nerdistill.annotate``: an LLM teacher annotates sentences into a distilled set.

Writes ``distilled.conll`` (IOB2, annotated sentences), ``distilled.jsonl`` (every sentence
with provenance, parse status, entity confidences and raw responses), ``report.json`` and
``report.md`` into the run's output dir, and with ``confidence_pool.write``
``distilled_weighted.jsonl`` (the annotated sentences, the teacher's confidence as per-token loss
weights). Responses are cached in ``paths.cache_dir``: a re-run makes no calls, and an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nerdistill.checks import check_value, in_multirun
from nerdistill.data.conll import CoNLLFormatError, write_conll
from nerdistill.data.labels import LabelSet
from nerdistill.data.weighted import write_weighted
from nerdistill.files import write_json, write_text
from nerdistill.runtime import configure_process
from nerdistill.teacher.batch import BatchRunner
from nerdistill.teacher.batch_job import annotate_in_batches
from nerdistill.teacher.cache import CacheError, ResponseCache
from nerdistill.teacher.client import TeacherError
from nerdistill.teacher.inputs import InputFormatError
from nerdistill.teacher.job import Annotator, Outcome, annotate_all
from nerdistill.teacher.prompts import Prompt
from nerdistill.teacher.report import build_report, markdown
from nerdistill.teacher.sim import SimServer, style_for

log = logging.getLogger(__name__)
ERRORS = (TeacherError, CacheError, InputFormatError, CoNLLFormatError)


def build(node: DictConfig, **kwargs: object) -> Any:
    """``instantiate``, but our own errors and bad config values (``ValueError``) surface as themselves, not
    wrapped by Hydra."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, (*ERRORS, ValueError)):
            raise err.__cause__ from None
        raise


@contextmanager
def endpoint(teacher: DictConfig) -> Iterator[tuple[str, str, Any]]:
    """``(base_url, identity for cache keys, server or None)``; starts the simulator for ``teacher=sim``
    and the local model's server for ``teacher=local``."""
    if teacher.get("local") is not None:
        from nerdistill.teacher.local import LocalServer  # loads transformers' GGUF support only for teacher=local

        with LocalServer(build(teacher.local)) as server:
            log.info(
                "local teacher at %s: %s (REAL model answers, not simulated)", server.url, server.settings.description
            )
            yield server.url, server.identity(), server
        return
    if teacher.get("sim") is None:
        yield teacher.base_url, str(teacher.base_url).rstrip("/"), None
        return
    settings = build(teacher.sim)
    with SimServer(settings) as server:
        log.info("simulated teacher at %s (labels it returns are SIMULATED)", server.url)
        yield server.url, settings.identity(), server


def simulator_info(server: SimServer, prompt: Prompt) -> dict:
    """The simulator's settings, the F1 its noise aimed at for this prompt's style (as the prompt declares
    it: reasoning or not; the server reads the same from the request's text), and its request counts."""
    return {
        "settings": {k: v for k, v in asdict(server.settings).items() if k not in ("host", "port")},
        "target_f1": server.settings.target_for(style_for(prompt.reasoning)),
        "stats": dict(server.teacher.stats),
    }


def record(outcome: Outcome, provenance: dict, has_gold: bool) -> dict:
    sentence = outcome.sentence
    return {
        "id": sentence.id,
        "source": sentence.source,
        "status": outcome.status,
        "tokens": list(sentence.tokens),
        "tags": outcome.tags,
        "gold": list(sentence.tags) if has_gold else None,
        "entities": outcome.entities,
        "confidence_source": outcome.confidence_source,
        "samples_ok": outcome.samples_ok,
        "provenance": provenance,
        "reason": outcome.reason,
        "errors": outcome.errors,
        "responses": [call.record() for call in outcome.calls],
        "verifications": outcome.verifications,
    }


def confidence_weights(outcome: Outcome, outside: float) -> tuple[float, ...]:
    """Per-token loss weights: an entity's tokens get its confidence, all others ``outside``."""
    weights = [float(outside)] * len(outcome.sentence.tokens)
    for e in outcome.entities:
        weights[e["start"] : e["end"]] = [float(e["confidence"])] * (e["end"] - e["start"])
    return tuple(weights)


def provenance_for(outcome: Outcome, teacher: dict, prompt: dict, examples: list[str]) -> dict:
    """Who labelled the sentence and how: the teacher, the prompt, the ids of the examples it was shown, the
    cache keys of its calls."""
    final = outcome.calls[-1].parsed.status if outcome.calls else None
    return {
        "teacher": teacher,
        "prompt": prompt,
        "examples": examples,
        "cache_keys": [call.key for call in outcome.calls],
        "parse_status": final if outcome.tags is not None else "failed",
    }


def check_config(cfg: DictConfig) -> None:
    """Self-consistency and client settings, checked before the simulator starts or any file is read."""
    sc = cfg.self_consistency
    check_value("self_consistency.n", sc.n, (int,))
    check_value("self_consistency.min_agreement", sc.min_agreement, (float,))
    check_value("self_consistency.temperature", sc.temperature, (float,))
    if sc.n < 1 or not 0 < sc.min_agreement <= 1 or sc.temperature < 0:
        raise ValueError(
            "self_consistency: n must be >= 1, min_agreement in (0, 1] and temperature >= 0, "
            f"got {OmegaConf.to_container(sc)}"
        )
    client = cfg.teacher.client
    for key, allowed in (("timeout", (float,)), ("max_retries", (int,)), ("concurrency", (int,))):
        check_value(f"teacher.client.{key}", client.get(key), allowed)
    if client.concurrency < 1:  # a semaphore of 0 would wait forever
        raise ValueError(f"teacher.client.concurrency must be >= 1, got {cfg.teacher.client.concurrency}")
    mode = cfg.teacher.get("mode", "online")
    if mode not in ("online", "batch"):
        raise ValueError(f"teacher.mode must be online or batch, got {mode!r}")
    if mode == "batch":
        batch = cfg.teacher.batch
        check_value("teacher.batch.poll_interval", batch.poll_interval, (float,))
        check_value("teacher.batch.max_requests", batch.max_requests, (int,))
        check_value("batch_price_factor", cfg.batch_price_factor, (float,))
        if batch.poll_interval < 0 or batch.max_requests < 1 or cfg.batch_price_factor < 0:
            raise ValueError(
                "teacher.batch: poll_interval must be >= 0 and max_requests >= 1, batch_price_factor >= 0; "
                f"got {OmegaConf.to_container(batch)}, {cfg.batch_price_factor}"
            )


def annotate(cfg: DictConfig) -> dict:
    """Run the job and write its outputs; returns the report."""
    started = time.perf_counter()
    check_config(cfg)
    labels = LabelSet(tuple(cfg.labels))
    source = build(cfg.input)
    if cfg.teacher.get("sim") is not None and not source.has_gold and not cfg.teacher.sim.model_dir:
        raise TeacherError(
            "the simulated teacher knows only the sentences in its oracle files; for raw text set "
            "teacher.sim.model_dir to a trained nerdistill model (e.g. <train run>/model)"
        )
    sentences = source.load(labels)
    prompt = build(cfg.prompt).setup(labels)
    prompt.fit(sentences)
    out = Path(cfg.paths.output_dir)
    sc = cfg.self_consistency
    log.info("annotating %d sentences with %s, prompt %s", len(sentences), cfg.teacher.model, prompt.key)
    with ResponseCache(cfg.cache) as cache, endpoint(cfg.teacher) as (base_url, identity, server):
        client = build(cfg.teacher.client, base_url=base_url, endpoint=identity)
        annotator = Annotator(
            client,
            cache,
            prompt,
            labels,
            generation=OmegaConf.to_container(cfg.teacher.generation, resolve=True),
            samples=sc.n,
            temperature=sc.temperature,
            min_agreement=sc.min_agreement,
            reask=cfg.reask,
            parser=OmegaConf.to_container(cfg.parser, resolve=True),
            logprobs=bool(cfg.teacher.get("logprobs", False)),
        )
        runner = None
        if cfg.teacher.get("mode", "online") == "batch":
            batch = cfg.teacher.batch
            runner = BatchRunner(
                client,
                cache,
                out / "batches",
                poll_interval=batch.poll_interval,
                max_requests=batch.max_requests,
                progress=cfg.progress,
            )
        begun, begun_cpu = time.perf_counter(), time.process_time()
        try:
            if runner is not None:
                outcomes = asyncio.run(annotate_in_batches(annotator, sentences, runner))
            else:
                outcomes = asyncio.run(annotate_all(annotator, sentences, cfg.progress))
        except KeyboardInterrupt:
            if runner is not None:
                log.warning(
                    "interrupted: batches in flight are recorded in the cache %s; "
                    "run the same command again to collect them",
                    cfg.cache,
                )
            else:
                log.warning(
                    "interrupted: %d responses are in the cache %s (%d made this run); "
                    "run the same command again to resume",
                    len(cache),
                    cfg.cache,
                    annotator.stats.made,
                )
            raise
        annotate_s, annotate_cpu_s = time.perf_counter() - begun, time.process_time() - begun_cpu
        simulated = isinstance(server, SimServer)
        simulator = simulator_info(server, prompt) if simulated else None
        local = server.info() if server is not None and not simulated else None
    where = "simulated" if simulated else f"local: {local['description']}" if local else client.base_url
    teacher = {
        "name": cfg.teacher.name,
        "model": client.model,
        "endpoint": where,
        "identity": identity,
        "simulated": simulated,
    }
    prompt_info = {"id": prompt.id, "version": prompt.version}
    examples = prompt.examples.summary() if prompt.examples is not None else None

    pool = cfg.get("confidence_pool") or {}
    records, distilled, weighted = [], [], []
    for outcome in outcomes:
        provenance = provenance_for(
            outcome, teacher, prompt_info, [s.id for s in prompt.examples_for(outcome.sentence)]
        )
        records.append(record(outcome, provenance, source.has_gold))
        if outcome.tags is not None:
            distilled.append(replace(outcome.sentence, tags=tuple(outcome.tags), provenance=provenance))
            weights = confidence_weights(outcome, pool.get("outside", 1.0))
            weighted.append(
                replace(
                    distilled[-1],
                    weights=weights,
                    provenance={**provenance, "confidence_source": outcome.confidence_source},
                )
            )
    write_conll(out / "distilled.conll", distilled)
    if pool.get("write"):
        write_weighted(out / "distilled_weighted.jsonl", weighted)
    write_text(out / "distilled.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in records))
    price = cfg.prices.get(client.model)
    report = build_report(
        outcomes,
        annotator.stats,
        has_gold=source.has_gold,
        teacher=teacher,
        prompt=prompt_info,
        input=source.describe(),
        self_consistency=OmegaConf.to_container(sc),
        price=OmegaConf.to_container(price) if price is not None else None,
        annotate_s=annotate_s,
        annotate_cpu_s=annotate_cpu_s,
        wall_s=time.perf_counter() - started,
        simulator=simulator,
        local=local,
        structured={
            "requested": prompt.structured,
            "used": annotator.structured,
            "refusal": annotator.refusal,
            "calls_refused": annotator.stats.refused,
        },
        batch=runner.summary(float(cfg.batch_price_factor)) if runner is not None else None,
        examples=examples,
        verify=prompt.verify,
    )
    write_json(out / "report.json", report)
    write_text(out / "report.md", markdown(report))
    f1 = report["quality"]["micro"]["f1"] if report["quality"] else None
    log.info(
        "%d annotated, %d failed; calls %d made, %d cached; micro F1 %s; outputs in %s",
        report["sentences"]["annotated"],
        report["sentences"]["failed"],
        report["calls"]["made"],
        report["calls"]["cached"],
        f"{f1:.4f}" if f1 is not None else "n/a (no gold)",
        out,
    )
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="annotate")
def main(cfg: DictConfig) -> float | None:
    """Returns the micro F1 against gold (None without gold) for Hydra sweepers."""
    configure_process(cfg.get("runtime"))
    for name in ("httpx", "httpx2", "openai"):  # one line per request/retry otherwise; the report counts them
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        report = annotate(cfg)
    except (*ERRORS, ValueError) as err:  # a bad file or config value: its message, not a traceback
        if in_multirun():  # under -m the launcher records this job as failed and runs the others
            raise
        log.error("%s", err)
        raise SystemExit(f"error: {err}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    return report["quality"]["micro"]["f1"] if report["quality"] else None


if __name__ == "__main__":
    main()
