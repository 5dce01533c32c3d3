"""The Batch API: requests sent as batches, polled, and their answers collected into the cache.

Each batch is a JSONL input file (``custom_id`` = the request's cache key, ``method``, ``url``,
``body``: the body an online call would send), written to the run dir, uploaded with
``files.create(purpose="batch")`` and batched with ``batches.create``; the cache records the
uploaded file and its requests before the batch is created, and the batch id once it is. Polling
(``batches.retrieve``) shows ``request_counts`` on a progress bar. A finished batch's output file
is parsed line by line as an online answer is (:func:`~nerdistill.teacher.client.to_response`)
into the cache; a request in its error file gets the ``openai`` error an online call would have
raised; requests a batch left unanswered (failed, expired, cancelled) get a :class:`BatchError`.
All of these stay uncached, so a later run submits them again. All calls go through the ``openai``
client, with its retries and timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
from openai.types import Batch
from openai.types.chat import ChatCompletion
from tqdm import tqdm

from nerdistill.files import write_text
from nerdistill.teacher.cache import BatchRecord, ResponseCache
from nerdistill.teacher.client import TeacherClient, to_response

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
log = logging.getLogger(__name__)


class BatchError(openai.APIError):
    """A request its batch did not answer; the class name is the reason a failed sentence reports."""


class BatchFailed(BatchError):
    pass


class BatchExpired(BatchError):
    pass


class BatchCancelled(BatchError):
    pass


class BatchRequestFailed(BatchError):
    pass


UNANSWERED = {
    "failed": BatchFailed,
    "expired": BatchExpired,
    "cancelled": BatchCancelled,
    "completed": BatchRequestFailed,
}


@dataclass(frozen=True)
class Pending:
    """A request to send: its chat-completions body, and the model and prompt its cache row names."""

    body: dict[str, Any]
    model: str
    prompt: str


@dataclass
class Collected:
    """One batch as this run saw it, for the report."""

    input_file_id: str
    batch_id: str | None
    status: str
    requests: int
    resumed: bool  # submitted by an earlier run
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # unanswered requests by reason
    reason: str | None = None


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BatchRunner:
    """Sends requests as batches to ``client``'s endpoint and collects them into ``cache``."""

    def __init__(
        self,
        client: TeacherClient,
        cache: ResponseCache,
        folder: str | Path,
        poll_interval: float = 30.0,
        max_requests: int = 50000,
        progress: bool = True,
    ) -> None:
        self.api, self.cache, self.endpoint = client.client, cache, client.endpoint
        self.redact = client.redact
        self.folder, self.poll_interval, self.max_requests, self.progress = (
            Path(folder),
            poll_interval,
            max_requests,
            progress,
        )
        self.seen: list[Collected] = []

    def error(self, message: str, kind: type[BatchError] = BatchError) -> BatchError:
        return kind(message, httpx2.Request("POST", f"{self.api.base_url}batches"), body=None)

    async def run(self, pending: Mapping[str, Pending]) -> tuple[set[str], dict[str, openai.APIError]]:
        """Answer every pending request (by cache key) into the cache, or give its error: batches in
        flight that hold some are waited for and collected, the rest are submitted."""
        waiting: list[tuple[BatchRecord, bool]] = []
        held: set[str] = set()
        for record in self.cache.open_batches(self.endpoint):
            keys = {key for key, _, _ in self.cache.batch_requests(record.input_file_id).values()}
            if keys & pending.keys() and (record := await self.recover(record)) is not None:
                waiting.append((record, True))
                held |= keys
        fresh = [key for key in pending if key not in held]
        for part in chunks(fresh, self.max_requests):
            waiting.append((await self.submit({key: pending[key] for key in part}), False))
        answered: set[str] = set()
        failed: dict[str, openai.APIError] = {}
        for record, resumed in waiting:
            got, errors = await self.collect(record, await self.wait(record), resumed)
            answered |= got
            failed.update(errors)
        return answered, failed

    async def submit(self, requests: Mapping[str, Pending]) -> BatchRecord:
        """Write, upload and batch ``requests``; recorded in the cache before the batch is created."""
        lines = [{"custom_id": key, "method": "POST", "url": ENDPOINT, "body": p.body} for key, p in requests.items()]
        path = self.folder / f"batch-input-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.seen)}.jsonl"
        write_text(path, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
        uploaded = await self.api.files.create(
            file=(path.name, path.read_bytes(), "application/jsonl"), purpose="batch"
        )
        self.cache.add_batch(uploaded.id, self.endpoint, {key: (key, p.model, p.prompt) for key, p in requests.items()})
        batch = await self.api.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"source": "nerdistill.annotate"},
        )
        self.cache.update_batch(uploaded.id, batch.status, batch_id=batch.id)
        log.info("submitted batch %s: %d requests (input %s)", batch.id, len(lines), path)
        return self.cache.batch(uploaded.id)

    async def recover(self, record: BatchRecord) -> BatchRecord | None:
        """A batch of an earlier run, still known to the endpoint; None (recorded as ``lost``) if it is not,
        so its requests are submitted again. One uploaded but not known to be created is looked for
        among the endpoint's batches, and created if it is not there."""
        try:
            if record.batch_id is None:
                found = None
                async for batch in self.api.batches.list(limit=100):
                    if batch.input_file_id == record.input_file_id:
                        found = batch
                        break
                found = found or await self.api.batches.create(
                    input_file_id=record.input_file_id, endpoint=ENDPOINT, completion_window="24h"
                )
                self.cache.update_batch(record.input_file_id, found.status, batch_id=found.id)
            else:
                await self.api.batches.retrieve(record.batch_id)
        except openai.NotFoundError as err:
            reason = f"unknown to the endpoint ({self.redact(str(err.message))}); its requests are submitted again"
            log.warning("batch %s (input %s) %s", record.batch_id, record.input_file_id, reason)
            self.cache.update_batch(record.input_file_id, "lost", reason=reason)
            return None
        log.info("resuming batch %s of an earlier run", self.cache.batch(record.input_file_id).batch_id)
        return self.cache.batch(record.input_file_id)

    async def wait(self, record: BatchRecord) -> Batch:
        """Poll until the batch ends, its status committed to the cache as it changes."""
        assert record.batch_id is not None
        status = record.status
        with tqdm(desc=f"batch {record.batch_id}", unit="req", disable=not self.progress) as bar:
            while True:
                batch = await self.api.batches.retrieve(record.batch_id)
                if batch.status != status:
                    status = batch.status
                    self.cache.update_batch(record.input_file_id, status)
                counts = batch.request_counts
                if counts is not None:
                    bar.total = counts.total
                    bar.n = counts.completed + counts.failed
                bar.set_postfix(status=status, refresh=False)
                bar.refresh()
                if status in TERMINAL:
                    return batch
                await asyncio.sleep(self.poll_interval)

    async def collect(
        self, record: BatchRecord, batch: Batch, resumed: bool
    ) -> tuple[set[str], dict[str, openai.APIError]]:
        """Answers of an ended batch into the cache; errors for the requests it did not answer."""
        requests = self.cache.batch_requests(record.input_file_id)
        answered: set[str] = set()
        errors: dict[str, openai.APIError] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.api.files.content(file_id)
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                if row.get("custom_id") not in requests:
                    continue
                key, model, prompt = requests[row["custom_id"]]
                response = row.get("response") or {}
                if response.get("status_code") == 200:
                    self.cache.put(key, model, prompt, to_response(ChatCompletion.construct(**response["body"])))
                    answered.add(key)
                else:
                    errors[key] = self.line_error(row, batch.id)
        reason = self.reason(batch)
        for key, _, _ in requests.values():
            if key not in answered and key not in errors:
                errors[key] = self.error(
                    f"batch {batch.id} {batch.status}: {reason or 'no answer'}",
                    UNANSWERED.get(batch.status, BatchError),
                )
        self.cache.update_batch(
            record.input_file_id, "collected" if batch.status == "completed" else batch.status, reason=reason
        )
        by_reason: dict[str, int] = {}
        for err in errors.values():
            by_reason[type(err).__name__] = by_reason.get(type(err).__name__, 0) + 1
        seen = Collected(
            record.input_file_id, batch.id, batch.status, len(requests), resumed, len(answered), by_reason, reason
        )
        self.seen.append(seen)
        log.info(
            "batch %s %s: %d answered into the cache, %d not%s",
            batch.id,
            batch.status,
            len(answered),
            len(errors),
            f" ({reason})" if reason else "",
        )
        return answered, errors

    def line_error(self, row: Mapping[str, Any], batch_id: str) -> openai.APIError:
        """The error of an output or error file line: an HTTP status as the online call's ``openai`` error,
        else a :class:`BatchError`."""
        response = row.get("response")
        if response and response.get("status_code"):
            reply = httpx2.Response(
                int(response["status_code"]),
                json=response.get("body"),
                request=httpx2.Request("POST", f"{self.api.base_url}chat/completions"),
            )
            return self.api._make_status_error_from_response(reply)
        error = row.get("error") or {}
        kind = BatchExpired if error.get("code") == "batch_expired" else BatchRequestFailed
        return self.error(self.redact(f"batch {batch_id}: {error.get('code')}: {error.get('message')}"), kind)

    def reason(self, batch: Batch) -> str | None:
        """Why a batch ended without answering everything (its errors, or its status), None if it completed."""
        if batch.status == "completed":
            return None
        messages = [f"{e.code}: {e.message}" for e in (batch.errors.data or [])] if batch.errors else []
        return self.redact("; ".join(messages)) if messages else batch.status

    def summary(self, price_factor: float) -> dict:
        """The report's ``batch`` section: each batch this run collected, and the totals."""
        return {
            "price_factor": price_factor,
            "batches": [asdict(b) for b in self.seen],
            "requests": {
                "submitted": sum(b.requests for b in self.seen if not b.resumed),
                "resumed": sum(b.requests for b in self.seen if b.resumed),
                "answered": sum(b.answered for b in self.seen),
                "unanswered": sum(sum(b.errors.values()) for b in self.seen),
            },
        }
