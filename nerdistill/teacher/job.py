"""Annotate sentences with a teacher: cached calls, one re-ask, self-consistency voting."""

from __future__ import annotations

import asyncio
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
from nerdistill.teacher.parser import Entity, Parsed, parse_response, to_tags
from nerdistill.teacher.prompts import Prompt

FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


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
    ) -> None:
        self.client, self.cache, self.prompt, self.labels = client, cache, prompt, labels
        self.generation = dict(generation)
        self.samples, self.temperature, self.min_agreement = samples, temperature, min_agreement
        self.reask = reask
        self.parser = dict(parser or {})
        self.stats = Stats()
        self._inflight: dict[str, asyncio.Task] = {}

    def params(self, sample: int) -> dict[str, Any]:
        """Generation parameters; self-consistency samples differ by temperature and seed."""
        if self.samples == 1:
            return dict(self.generation)
        return {**self.generation, "temperature": self.temperature, "seed": int(self.generation.get("seed") or 0) + sample}

    def key(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> str:
        return cache_key(self.client.endpoint, self.client.model, params, messages, self.prompt.key)

    async def fetch(self, messages: list[dict[str, str]], params: dict[str, Any]) -> tuple[str, CachedResponse, bool]:
        """``(key, response, cached)``: from the cache, or one API call committed to it on arrival."""
        key = self.key(messages, params)
        hit = self.cache.get(key)
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
        except openai.APIError:
            self.stats.failed += 1
            raise
        finally:
            self._inflight.pop(key, None)
        self.cache.put(key, self.client.model, self.prompt.key, response)
        self.stats.made += 1
        self.stats.tokens_made.update(prompt=response.prompt_tokens, completion=response.completion_tokens)
        return key, response, False

    def parse(self, text: str, tokens: Sequence[str]) -> Parsed:
        return parse_response(text, tokens, self.labels, **self.parser)

    async def sample(self, sentence: Sentence, index: int, outcome: Outcome) -> Parsed | None:
        """One sample, re-asked once if unusable; None if it failed."""
        messages = self.prompt.messages(sentence.tokens)
        params = self.params(index)
        try:
            key, response, cached = await self.fetch(messages, params)
            call = Call(key, cached, response, index, False, self.parse(response.text, sentence.tokens))
            outcome.calls.append(call)
            if not usable(call) and self.reask:
                self.stats.reasked += 1
                key, response, cached = await self.fetch(self.prompt.reask_messages(messages, response.text), params)
                call = Call(key, cached, response, index, True, self.parse(response.text, sentence.tokens))
                outcome.calls.append(call)
        except FATAL as err:
            raise TeacherError(f"teacher endpoint refused a call ({err.status_code}): {self.client.redact(str(err.message))}") from None
        except openai.APIError as err:
            outcome.errors.append(self.client.redact(f"{type(err).__name__}: {err}"))
            outcome.reasons.append(type(err).__name__)
            return None
        if not usable(call):
            truncated = call.response.finish_reason == "length"
            outcome.errors.append(f"sample {index}: answer {'cut off at the token limit' if truncated else 'unparseable'} after {'a re-ask' if call.reask else 'one try'}")
            outcome.reasons.append("truncated" if truncated else "unparseable")
            return None
        return call.parsed

    async def annotate(self, sentence: Sentence) -> Outcome:
        outcome = Outcome(sentence, None)
        results = await asyncio.gather(*(self.sample(sentence, i, outcome) for i in range(self.samples)))
        parsed = [p for p in results if p is not None]
        outcome.samples_ok = len(parsed)
        if parsed:
            kept = vote([p.entities for p in parsed], self.min_agreement)
            outcome.tags = to_tags(len(sentence.tokens), [e for e, _ in kept])
            outcome.entities = [{"text": e.text, "type": e.type, "start": e.start, "end": e.end, "agreement": round(a, 4)} for e, a in kept]
        return outcome


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
