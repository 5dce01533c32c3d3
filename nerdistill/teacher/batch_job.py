"""``teacher.mode=batch``: the annotation job in rounds of batches instead of online calls.

Each round runs the :class:`~nerdistill.teacher.job.Annotator` over every sentence with a client
that answers nothing: a request the cache lacks is noted and fails the pass. The noted requests
go to the Batch API (:class:`~nerdistill.teacher.batch.BatchRunner`), whose answers land in the
cache. Re-asks of unusable answers are noted in the next round; a round that notes nothing is
the last, and its outcomes are the job's: every answer from the cache, parsed, voted and counted
exactly as online (a call a batch answered in this run counts as made). A request a batch did not
answer fails its sentence with the batch's reason, as an online call's error would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx2
import openai

from nerdistill.data.conll import Sentence
from nerdistill.teacher.batch import BatchRunner, Pending
from nerdistill.teacher.cache import cache_key
from nerdistill.teacher.client import TeacherClient, TeacherError
from nerdistill.teacher.job import Annotator, Outcome, Stats

log = logging.getLogger(__name__)


class Deferred(openai.APIError):
    """A request noted for the next batch (it fails the pass it was asked in)."""


class DeferringClient:
    """Stands in for a :class:`TeacherClient` in an :class:`Annotator`: notes each request in
    :attr:`pending` and raises :class:`Deferred`, or the error a batch gave it in this run."""

    def __init__(self, client: TeacherClient, prompt_key: str) -> None:
        self.client, self.prompt_key = client, prompt_key
        self.endpoint, self.model, self.base_url = client.endpoint, client.model, client.base_url
        self.pending: dict[str, Pending] = {}
        self.failed: dict[str, openai.APIError] = {}

    def redact(self, text: str) -> str:
        return self.client.redact(text)

    async def complete(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> Any:
        key = cache_key(self.endpoint, self.model, params, messages, self.prompt_key)
        if key in self.failed:
            raise self.failed[key]
        self.pending[key] = Pending(self.client.body(messages, params), self.model, self.prompt_key)
        raise Deferred(
            "noted for the next batch", httpx2.Request("POST", f"{self.base_url}/chat/completions"), body=None
        )


async def annotate_in_batches(
    annotator: Annotator, sentences: Sequence[Sentence], runner: BatchRunner
) -> list[Outcome]:
    """Preflight the endpoint, then rounds of passes and batches until a pass needs no new answer; results in
    input order."""
    client = annotator.client
    await client.preflight()
    deferring = DeferringClient(client, annotator.prompt.key)
    annotator.client = deferring  # type: ignore[assignment]
    answered: set[str] = set()
    try:
        for round in itertools.count(1):
            annotator.stats, annotator.batched, deferring.pending = Stats(), set(answered), {}
            outcomes = list(await asyncio.gather(*(annotator.annotate(s) for s in sentences)))
            if not deferring.pending:
                return outcomes
            log.info("round %d: %d requests the cache lacks go to the Batch API", round, len(deferring.pending))
            try:
                got, failed = await runner.run(deferring.pending)
            except openai.APIError as err:  # after the client's retries: no Batch API there, or it is down
                what = client.redact(f"{type(err).__name__}: {err}")
                raise TeacherError(
                    f"the Batch API at {client.base_url} failed ({what}); batches already submitted are recorded "
                    "in the cache: run the same command again to resume"
                ) from None
            answered |= got
            deferring.failed.update(failed)
            if missing := deferring.pending.keys() - got - failed.keys():
                raise TeacherError(f"{len(missing)} batch requests came back neither answered nor failed")
        raise AssertionError("unreachable")
    finally:
        annotator.client = client
        await client.close()
