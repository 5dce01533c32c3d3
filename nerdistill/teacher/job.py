"""Annotate sentences with a teacher: cached calls, one re-ask, self-consistency voting,
structured output with a fallback, and per-entity confidence."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from tqdm import tqdm

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet
from nerdistill.teacher.cache import CachedResponse, ResponseCache, cache_key
from nerdistill.teacher.client import TeacherClient, TeacherError
from nerdistill.teacher.confidence import entity_confidences
from nerdistill.teacher.parser import Entity, Parsed, parse_response, parse_verdict, to_tags
from nerdistill.teacher.prompts import Prompt

FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
# a 400/422 with one of these words, to a request with `response_format`: the endpoint does not do structured output
REFUSAL = re.compile(r"response_format|json_schema|structured|schema|guided|grammar", re.I)
log = logging.getLogger(__name__)


def refused_structure(err: openai.APIError, params: Mapping[str, Any]) -> bool:
    """Whether ``err`` is the endpoint refusing the ``response_format`` of a request with one."""
    return (
        isinstance(err, (openai.BadRequestError, openai.UnprocessableEntityError))
        and "response_format" in params
        and bool(REFUSAL.search(str(err.message)))
    )


@dataclass
class Call:
    """One response as used for a sentence (from the API or the cache)."""

    key: str
    cached: bool
    response: CachedResponse
    sample: int
    reask: bool
    parsed: Parsed

    def record(self) -> dict:
        r = self.response
        return {
            "cache_key": self.key,
            "cached": self.cached,
            "sample": self.sample,
            "reask": self.reask,
            "finish_reason": r.finish_reason,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "parse_status": self.parsed.status,
            "counts": self.parsed.counts,
            "unknown_types": self.parsed.unknown_types,
            "logprobs": r.logprobs is not None,
            "text": r.text,
        }


@dataclass
class Outcome:
    """A sentence's annotation: ``tags`` is None if it failed. Each failed sample adds a message
    to ``errors`` and its kind to ``reasons``: the ``openai`` error left after the client's
    retries (``RateLimitError``, ``APITimeoutError``, ...), ``unparseable`` or ``truncated``."""

    sentence: Sentence
    tags: list[str] | None
    entities: list[dict] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    samples_ok: int = 0
    confidence_source: str | None = None  # "logprobs" or "agreement" (self-consistency), None if failed
    verifications: list[dict] = field(default_factory=list)  # with prompt.verify: one record per entity asked about

    @property
    def status(self) -> str:
        return "annotated" if self.tags is not None else "failed"

    @property
    def reason(self) -> str | None:
        """Why the sentence failed: its samples' distinct reasons joined by `` + ``; None if annotated."""
        return None if self.tags is not None else " + ".join(sorted(set(self.reasons)))


@dataclass
class Stats:
    made: int = 0
    cached: int = 0
    failed: int = 0
    reasked: int = 0
    refused: int = 0  # calls refused for their response_format, then sent again without it
    tokens_made: Counter = field(default_factory=Counter)
    tokens_cached: Counter = field(default_factory=Counter)


def usable(call: Call) -> bool:
    """Parsed, and not cut off by the token limit."""
    return call.parsed.status != "unparseable" and call.response.finish_reason != "length"


def vote(samples: Sequence[Sequence[Entity]], min_agreement: float) -> list[tuple[Entity, float]]:
    """Entities that at least ``min_agreement`` of the samples give (same span and type), each with
    its agreement; overlaps go to the higher agreement, then the longer span."""
    votes: Counter = Counter((e.start, e.end, e.type) for entities in samples for e in dict.fromkeys(entities))
    texts = {(e.start, e.end, e.type): e.text for entities in samples for e in entities}
    ranked = sorted(votes.items(), key=lambda kv: (-kv[1], -(kv[0][1] - kv[0][0]), kv[0]))
    kept: list[tuple[Entity, float]] = []
    for (start, end, kind), count in ranked:
        share = count / len(samples)
        if share + 1e-9 < min_agreement or any(start < e.end and e.start < end for e, _ in kept):
            continue
        kept.append((Entity(texts[(start, end, kind)], kind, start, end), share))
    return sorted(kept, key=lambda pair: pair[0].start)


class Annotator:
    """Annotates one sentence at a time; safe to run many concurrently on one event loop."""

    def __init__(
        self,
        client: TeacherClient,
        cache: ResponseCache,
        prompt: Prompt,
        labels: LabelSet,
        generation: Mapping[str, Any],
        samples: int = 1,
        temperature: float = 0.7,
        min_agreement: float = 0.5,
        reask: bool = True,
        parser: Mapping[str, Any] | None = None,
        logprobs: bool = False,
    ) -> None:
        self.client, self.cache, self.prompt, self.labels = client, cache, prompt, labels
        self.generation = dict(generation)
        self.samples, self.temperature, self.min_agreement = samples, temperature, min_agreement
        self.reask, self.logprobs = reask, logprobs
        self.structured = prompt.structured  # turned off for the rest of the job if the endpoint refuses it
        self.refusal: str | None = None
        self.parser = dict(parser or {})
        self.stats = Stats()
        # keys a batch answered this run (teacher.mode=batch): made, though read from the cache
        self.batched: set[str] = set()
        self._inflight: dict[str, asyncio.Task] = {}

    def params(self, sample: int, sentence: Sentence, verify: bool = False) -> dict[str, Any]:
        """Generation parameters; self-consistency samples differ by temperature and seed (a verification
        question is asked once, greedily as configured). ``logprobs`` and ``response_format`` are added
        only when asked for, so keys of plain requests stay as they were."""
        params = dict(self.generation)
        if self.samples > 1 and not verify:
            params.update(temperature=self.temperature, seed=int(self.generation.get("seed") or 0) + sample)
        if self.logprobs and not verify:
            params["logprobs"] = True
        if self.structured:
            params["response_format"] = self.prompt.verify_format() if verify else self.prompt.response_format(sentence)
        return params

    def key(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> str:
        return cache_key(self.client.endpoint, self.client.model, params, messages, self.prompt.key)

    async def fetch(self, messages: list[dict[str, str]], params: dict[str, Any]) -> tuple[str, CachedResponse, bool]:
        """``(key, response, cached)``: from the cache, or one API call committed to it on arrival."""
        key = self.key(messages, params)
        hit = self.cache.get(key)
        if hit is not None and key in self.batched:
            self.batched.discard(key)
            self.stats.made += 1
            self.stats.tokens_made.update(prompt=hit.prompt_tokens, completion=hit.completion_tokens)
            return key, hit, False
        if hit is not None:
            self.stats.cached += 1
            self.stats.tokens_cached.update(prompt=hit.prompt_tokens, completion=hit.completion_tokens)
            return key, hit, True
        if key in self._inflight:  # the same request already on its way (a repeated sentence)
            shared = await asyncio.shield(self._inflight[key])
            self.stats.cached += 1
            self.stats.tokens_cached.update(prompt=shared.prompt_tokens, completion=shared.completion_tokens)
            return key, shared, True
        task = asyncio.ensure_future(self.client.complete(messages, params))
        self._inflight[key] = task
        try:
            response = await asyncio.shield(task)
        except openai.APIError as err:
            if refused_structure(err, params):
                self.stats.refused += 1  # not a failure: :meth:`ask` sends it again without
            else:
                self.stats.failed += 1
            raise
        finally:
            self._inflight.pop(key, None)
        self.cache.put(key, self.client.model, self.prompt.key, response)
        self.stats.made += 1
        self.stats.tokens_made.update(prompt=response.prompt_tokens, completion=response.completion_tokens)
        return key, response, False

    async def ask(
        self, messages: list[dict[str, str]], sample: int, sentence: Sentence, verify: bool = False
    ) -> tuple[str, CachedResponse, bool]:
        """:meth:`fetch` with this sample's parameters; if the endpoint refuses structured output, once
        more without it, and without it for the rest of the job (warned once)."""
        params = self.params(sample, sentence, verify)
        try:
            return await self.fetch(messages, params)
        except openai.APIError as err:
            if not refused_structure(err, params):
                raise
            if self.structured:
                self.structured = False
                self.refusal = self.client.redact(str(err.message))
                log.warning(
                    "the teacher endpoint refused structured output (%s); "
                    "using the plain prompt for the rest of this job",
                    self.refusal,
                )
            return await self.fetch(messages, self.params(sample, sentence, verify))

    def parse(self, text: str, tokens: Sequence[str]) -> Parsed:
        return parse_response(text, tokens, self.labels, **self.parser)

    async def sample(self, sentence: Sentence, index: int, outcome: Outcome) -> Call | None:
        """One sample, re-asked once if unusable; None if it failed."""
        messages = self.prompt.messages(sentence)
        try:
            key, response, cached = await self.ask(messages, index, sentence)
            call = Call(key, cached, response, index, False, self.parse(response.text, sentence.tokens))
            outcome.calls.append(call)
            if not usable(call) and self.reask:
                self.stats.reasked += 1
                key, response, cached = await self.ask(
                    self.prompt.reask_messages(messages, response.text), index, sentence
                )
                call = Call(key, cached, response, index, True, self.parse(response.text, sentence.tokens))
                outcome.calls.append(call)
        except FATAL as err:
            raise TeacherError(
                f"teacher endpoint refused a call ({err.status_code}): {self.client.redact(str(err.message))}"
            ) from None
        except openai.APIError as err:
            outcome.errors.append(self.client.redact(f"{type(err).__name__}: {err}"))
            outcome.reasons.append(type(err).__name__)
            return None
        if not usable(call):
            truncated = call.response.finish_reason == "length"
            outcome.errors.append(
                f"sample {index}: answer {'cut off at the token limit' if truncated else 'unparseable'} "
                f"after {'a re-ask' if call.reask else 'one try'}"
            )
            outcome.reasons.append("truncated" if truncated else "unparseable")
            return None
        return call

    async def annotate(self, sentence: Sentence) -> Outcome:
        outcome = Outcome(sentence, None)
        results = await asyncio.gather(*(self.sample(sentence, i, outcome) for i in range(self.samples)))
        calls = [c for c in results if c is not None]
        outcome.samples_ok = len(calls)
        if calls:
            kept = vote([c.parsed.entities for c in calls], self.min_agreement)
            if self.prompt.verify and kept:
                outcome.verifications = list(
                    await asyncio.gather(*(self.check(sentence, entity) for entity, _ in kept))
                )
                kept = [pair for pair, row in zip(kept, outcome.verifications) if row["verdict"] != "no"]
            confidence, outcome.confidence_source = confidences(calls, kept)
            outcome.tags = to_tags(len(sentence.tokens), [e for e, _ in kept])
            outcome.entities = [
                {
                    "text": e.text,
                    "type": e.type,
                    "start": e.start,
                    "end": e.end,
                    "agreement": round(a, 4),
                    "confidence": round(c, 4),
                }
                for (e, a), c in zip(kept, confidence)
            ]
        return outcome

    async def check(self, sentence: Sentence, entity: Entity) -> dict[str, Any]:
        """Self-verification of one entity: its record, whose ``verdict`` is ``"yes"``, ``"no"`` (drop
        it) or None (an answer that says neither, or a call that failed: keep it)."""
        row: dict[str, Any] = {"text": entity.text, "type": entity.type, "start": entity.start, "end": entity.end}
        try:
            key, response, cached = await self.ask(
                self.prompt.verify_messages(sentence, entity.text, entity.type), 0, sentence, verify=True
            )
        except FATAL as err:
            raise TeacherError(
                f"teacher endpoint refused a call ({err.status_code}): {self.client.redact(str(err.message))}"
            ) from None
        except openai.APIError as err:
            return row | {"verdict": None, "error": self.client.redact(f"{type(err).__name__}: {err}")}
        tokens = {"prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens}
        return row | {
            "verdict": parse_verdict(response.text),
            "cache_key": key,
            "cached": cached,
            **tokens,
            "answer": response.text,
        }


def confidences(calls: Sequence[Call], kept: Sequence[tuple[Entity, float]]) -> tuple[list[float], str]:
    """Each kept entity's confidence and its source: from logprobs if every usable sample has them
    (the mean over samples of the entity's probability in each, 0 where a sample lacks it), else its
    self-consistency agreement (1.0 for a single sample: then it says nothing)."""
    maps = [entity_confidences(c.response.text, c.response.logprobs, c.parsed.entities) for c in calls]
    given = [m for m in maps if m is not None]
    if len(given) < len(maps):
        return [a for _, a in kept], "agreement"
    return [sum(m.get((e.start, e.end, e.type), 0.0) for m in given) / len(given) for e, _ in kept], "logprobs"


async def annotate_all(annotator: Annotator, sentences: Sequence[Sentence], progress: bool = True) -> list[Outcome]:
    """Preflight the endpoint, then annotate every sentence concurrently; results in input order."""
    await annotator.client.preflight()
    tasks = [asyncio.ensure_future(annotator.annotate(s)) for s in sentences]
    try:
        with tqdm(total=len(tasks), desc="annotate", unit="sent", disable=not progress) as bar:
            for done in asyncio.as_completed(tasks):
                await done
                bar.update()
                bar.set_postfix(made=annotator.stats.made, cached=annotator.stats.cached, refresh=False)
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await annotator.client.close()
