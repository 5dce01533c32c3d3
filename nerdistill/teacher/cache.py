"""The response cache: one SQLite file shared by all runs, one row per finished call.

Keyed by :func:`cache_key`. Rows are committed as responses arrive, so a killed job loses
nothing it finished; failed calls are never stored. Token logprobs, where a response has them,
go in a table of their own (added to older cache files on opening, their rows untouched). A file
that is not this cache (not SQLite, corrupt, or another schema) is an error, never silently reset.
Batches submitted to a Batch API are recorded in two more tables (``batches``, ``batch_requests``:
which cache keys each holds), so a later run resumes or collects them instead of submitting their
requests again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA = "nerdistill.teacher.cache/1"


class CacheError(RuntimeError):
    """The cache file cannot be used as is."""


Logprobs = tuple[tuple[int, float], ...]  # per answer token: (its length in UTF-8 bytes, its log probability)


@dataclass(frozen=True)
class BatchRecord:
    """A batch as recorded: its input file, its id once created, and where it stands."""

    input_file_id: str
    batch_id: str | None
    endpoint: str
    status: str  # "uploaded" (not yet created), the Batch API's status, or a final one: see BATCH_CLOSED
    reason: str | None


# a batch in one of these is done with: collected, or its uncollected requests free to be submitted again
BATCH_CLOSED = ("collected", "failed", "expired", "cancelled", "lost")


@dataclass(frozen=True)
class CachedResponse:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    logprobs: Logprobs | None = None


def cache_key(endpoint: str, model: str, params: Mapping, messages: Sequence[Mapping], prompt: str) -> str:
    """sha256 over endpoint, model, generation parameters, rendered messages and prompt id@version."""
    blob = json.dumps(
        {"endpoint": endpoint, "model": model, "params": dict(params), "messages": list(messages), "prompt": prompt},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """``get``/``put`` finished responses by key; usable as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.db = sqlite3.connect(self.path, timeout=60)
            if fresh:
                self._create()
            self._check()
            with self.db:
                self.db.execute("CREATE TABLE IF NOT EXISTS logprobs (key TEXT PRIMARY KEY, tokens TEXT NOT NULL)")
                self.db.execute(
                    "CREATE TABLE IF NOT EXISTS batches (input_file_id TEXT PRIMARY KEY, batch_id TEXT,"
                    " endpoint TEXT NOT NULL, status TEXT NOT NULL,"
                    " reason TEXT, created REAL NOT NULL, updated REAL NOT NULL)"
                )
                self.db.execute(
                    "CREATE TABLE IF NOT EXISTS batch_requests (input_file_id TEXT NOT NULL, custom_id TEXT NOT NULL,"
                    " key TEXT NOT NULL, model TEXT NOT NULL, prompt TEXT NOT NULL,"
                    " PRIMARY KEY (input_file_id, custom_id))"
                )
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL: a commit survives a crash of this process, without an fsync per row
            self.db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as err:
            raise CacheError(
                f"{self.path}: not a usable nerdistill teacher cache ({err}); "
                "move it away or point paths.cache_dir elsewhere"
            ) from err

    def _create(self) -> None:
        with self.db:
            self.db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA,))
            self.db.execute(
                "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, prompt TEXT NOT NULL,"
                " text TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER NOT NULL,"
                " completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
            )

    def _check(self) -> None:
        status = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if status != "ok":
            raise CacheError(
                f"{self.path}: the cache file is corrupt ({status}); move it away or point paths.cache_dir elsewhere"
            )
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        schema = self.db.execute("SELECT value FROM meta WHERE name='schema'").fetchone() if "meta" in tables else None
        if schema is None or schema[0] != SCHEMA or "responses" not in tables:
            found = schema[0] if schema else f"tables {sorted(tables)}"
            raise CacheError(
                f"{self.path}: a SQLite file but not a nerdistill teacher cache "
                f"(expected schema {SCHEMA}, found {found}); refusing to touch it"
            )

    def get(self, key: str) -> CachedResponse | None:
        row = self.db.execute(
            "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM responses WHERE key=?", (key,)
        ).fetchone()
        if row is None:
            return None
        found = self.db.execute("SELECT tokens FROM logprobs WHERE key=?", (key,)).fetchone()
        logprobs = tuple((int(n), float(lp)) for n, lp in json.loads(found[0])) if found else None
        return CachedResponse(*row, logprobs=logprobs)

    def put(self, key: str, model: str, prompt: str, response: CachedResponse) -> None:
        """Store and commit one finished response."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    prompt,
                    response.text,
                    response.finish_reason,
                    response.prompt_tokens,
                    response.completion_tokens,
                    time.time(),
                ),
            )
            if response.logprobs is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO logprobs VALUES (?, ?)",
                    (key, json.dumps(response.logprobs, separators=(",", ":"))),
                )

    def add_batch(self, input_file_id: str, endpoint: str, requests: Mapping[str, tuple[str, str, str]]) -> None:
        """Record an uploaded batch input file and its requests (``custom_id -> (cache key, model, prompt)``),
        before the batch is created."""
        now = time.time()
        with self.db:
            self.db.execute(
                "INSERT INTO batches VALUES (?, NULL, ?, 'uploaded', NULL, ?, ?)", (input_file_id, endpoint, now, now)
            )
            self.db.executemany(
                "INSERT INTO batch_requests VALUES (?, ?, ?, ?, ?)",
                [(input_file_id, cid, *row) for cid, row in requests.items()],
            )

    def update_batch(
        self, input_file_id: str, status: str, batch_id: str | None = None, reason: str | None = None
    ) -> None:
        """Commit a batch's status (and its id once created, and why it closed uncollected)."""
        with self.db:
            self.db.execute(
                "UPDATE batches SET status=?, batch_id=COALESCE(?, batch_id), reason=COALESCE(?, reason), updated=?"
                " WHERE input_file_id=?",
                (status, batch_id, reason, time.time(), input_file_id),
            )

    def open_batches(self, endpoint: str) -> list[BatchRecord]:
        """Batches at ``endpoint`` not yet closed (see :data:`BATCH_CLOSED`), oldest first."""
        marks = ",".join("?" * len(BATCH_CLOSED))
        rows = self.db.execute(
            "SELECT input_file_id, batch_id, endpoint, status, reason FROM batches"
            f" WHERE endpoint=? AND status NOT IN ({marks}) ORDER BY created",
            (endpoint, *BATCH_CLOSED),
        ).fetchall()
        return [BatchRecord(*row) for row in rows]

    def batch(self, input_file_id: str) -> BatchRecord:
        return BatchRecord(
            *self.db.execute(
                "SELECT input_file_id, batch_id, endpoint, status, reason FROM batches WHERE input_file_id=?",
                (input_file_id,),
            ).fetchone()
        )

    def batch_requests(self, input_file_id: str) -> dict[str, tuple[str, str, str]]:
        """``custom_id -> (cache key, model, prompt)`` of a batch's requests."""
        rows = self.db.execute(
            "SELECT custom_id, key, model, prompt FROM batch_requests WHERE input_file_id=?", (input_file_id,)
        ).fetchall()
        return {cid: (key, model, prompt) for cid, key, model, prompt in rows}

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
