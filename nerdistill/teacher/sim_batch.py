"""The simulated teacher's Batch API: files and batches over :meth:`SimTeacher.chat`, in memory.

``POST /v1/files`` (multipart, as ``files.create`` sends it), ``GET /v1/files/{id}[/content]``,
``POST /v1/batches``, ``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}/cancel``. A batch
advances when it is polled: ``validating`` → ``in_progress`` (``batch_per_poll`` requests answered
per poll, each as :meth:`SimTeacher.chat` answers it online, its faults included) → ``completed``,
with an output file (200 answers) and an error file (the rest). Faults per batch, drawn from the
batch's ordinal and the seed: ``batch_rate_failed`` (``failed`` at validation, no output) and
``batch_rate_expired`` (``expired`` after its first poll's requests: partial output, the rest in the
error file as ``batch_expired``). Batches live as long as the server.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nerdistill.teacher.server import NO_RESPONSE, error

if TYPE_CHECKING:
    from nerdistill.teacher.sim import SimTeacher

TERMINAL = ("completed", "failed", "expired", "cancelled")
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


def multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a ``multipart/form-data`` body: ``name -> (filename, data)``."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    return {
        part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
        for part in message.iter_parts()
    }


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


class SimBatches:
    """Files and batches of one simulator; every method returns ``(status, JSON payload or file bytes)``."""

    def __init__(self, teacher: SimTeacher) -> None:
        self.teacher = teacher
        self.files: dict[str, dict] = {}
        self.data: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.work: dict[str, dict] = {}  # per batch: its requests, how many are done, outputs, errors, fate
        self.custom_ids: Counter = Counter()  # requests submitted, by custom_id, over all batches
        self.lock = threading.Lock()

    def add_file(self, name: str, data: bytes, purpose: str) -> dict:
        file_id = f"file-sim{uuid.uuid4().hex[:20]}"
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self.data[file_id] = data
        return self.files[file_id]

    def upload(self, content_type: str, raw: bytes) -> tuple[int, Any]:
        fields = multipart(content_type, raw)
        if "file" not in fields or "purpose" not in fields:
            return 400, error("a file upload needs the fields `file` and `purpose`", "invalid_request")
        name, data = fields["file"]
        self.teacher.count("files_uploaded")
        return 200, self.add_file(name or "upload.jsonl", data, fields["purpose"][1].decode())

    def file(self, file_id: str, content: bool) -> tuple[int, Any]:
        if file_id not in self.files:
            return 404, error(f"No such File object: {file_id}", "not_found")
        return 200, self.data[file_id] if content else self.files[file_id]

    def create(self, body: Mapping[str, Any]) -> tuple[int, Any]:
        file_id = str(body.get("input_file_id"))
        if file_id not in self.files:
            return 404, error(f"No such File object: {file_id}", "not_found")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return 400, error(
                "the simulated teacher batches /v1/chat/completions in a 24h window only", "invalid_request"
            )
        try:
            requests = [json.loads(line) for line in self.data[file_id].decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError):
            return 400, error("the batch input file is not JSONL", "invalid_request")
        s = self.teacher.settings
        with self.lock:
            ordinal = len(self.batches)
            u = random.Random(f"batch:{ordinal}:{s.seed}").random()
            fate = (
                "failed"
                if u < s.batch_rate_failed
                else "expired"
                if u < s.batch_rate_failed + s.batch_rate_expired
                else "completed"
            )
            batch_id = f"batch_sim{uuid.uuid4().hex[:20]}"
            now = int(time.time())
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": "/v1/chat/completions",
                "input_file_id": file_id,
                "completion_window": "24h",
                "status": "validating",
                "created_at": now,
                "expires_at": now + 86400,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
            }
            self.work[batch_id] = {"requests": requests, "done": 0, "outputs": [], "errors": [], "fate": fate}
            self.custom_ids.update(str(r.get("custom_id")) for r in requests)
        self.teacher.count("batches_created")
        self.teacher.count("batch_requests", len(requests))
        return 200, self.batches[batch_id]

    def retrieve(self, batch_id: str) -> tuple[int, Any]:
        """The batch, one step further on."""
        if batch_id not in self.batches:
            return 404, error(f"No such Batch object: {batch_id}", "not_found")
        self.teacher.count("batch_polls")
        with self.lock:
            self.advance(self.batches[batch_id], self.work[batch_id])
            return 200, dict(self.batches[batch_id])

    def list(self) -> tuple[int, Any]:
        with self.lock:
            data = sorted(self.batches.values(), key=lambda b: b["created_at"], reverse=True)
        return 200, {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }

    def cancel(self, batch_id: str) -> tuple[int, Any]:
        if batch_id not in self.batches:
            return 404, error(f"No such Batch object: {batch_id}", "not_found")
        with self.lock:
            batch = self.batches[batch_id]
            if batch["status"] not in TERMINAL:
                self.finish(batch, self.work[batch_id], "cancelled")
            return 200, dict(batch)

    def advance(self, batch: dict, work: dict) -> None:
        now = int(time.time())
        if batch["status"] == "validating":
            if work["fate"] == "failed":
                batch.update(
                    status="failed",
                    failed_at=now,
                    errors={
                        "object": "list",
                        "data": [
                            {
                                "code": "simulated_failure",
                                "message": "The batch failed validation (simulated).",
                                "param": None,
                                "line": None,
                            }
                        ],
                    },
                )
                self.teacher.count("batches_failed")
                return
            batch.update(status="in_progress", in_progress_at=now)
            batch["request_counts"]["total"] = len(work["requests"])
            return
        if batch["status"] != "in_progress":
            return
        step = self.teacher.settings.batch_per_poll or len(work["requests"])
        for request in work["requests"][work["done"] : work["done"] + step]:
            self.answer(request, work)
        work["done"] = min(len(work["requests"]), work["done"] + step)
        batch["request_counts"].update(completed=len(work["outputs"]), failed=len(work["errors"]))
        if work["fate"] == "expired":
            self.finish(batch, work, "expired")
        elif work["done"] == len(work["requests"]):
            self.finish(batch, work, "completed")

    def answer(self, request: Mapping[str, Any], work: dict) -> None:
        """One request of a batch, answered as :meth:`SimTeacher.chat` answers it online."""
        status, _, payload, _ = self.teacher.chat(request.get("body") or {})
        if status == NO_RESPONSE:  # a timeout or dropped connection online: a server error in a batch
            status, payload = (
                500,
                error("The server had an error while processing your request (simulated).", "server_error"),
            )
        line = {
            "id": f"batch_req_{uuid.uuid4().hex[:20]}",
            "custom_id": request.get("custom_id"),
            "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": payload},
            "error": None,
        }
        (work["outputs"] if status == 200 else work["errors"]).append(line)

    def finish(self, batch: dict, work: dict, status: str) -> None:
        """Close the batch: unanswered requests go to the error file if it expired; output and error files written."""
        now = int(time.time())
        if status == "expired":
            for request in work["requests"][work["done"] :]:
                work["errors"].append(
                    {
                        "id": f"batch_req_{uuid.uuid4().hex[:20]}",
                        "custom_id": request.get("custom_id"),
                        "response": None,
                        "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE},
                    }
                )
        if work["outputs"]:
            batch["output_file_id"] = self.add_file(
                f"{batch['id']}_output.jsonl", jsonl(work["outputs"]), "batch_output"
            )["id"]
        if work["errors"]:
            batch["error_file_id"] = self.add_file(f"{batch['id']}_error.jsonl", jsonl(work["errors"]), "batch_output")[
                "id"
            ]
        batch.update(status=status, **{f"{status}_at": now})
        batch["request_counts"].update(
            completed=len(work["outputs"]),
            failed=len(work["errors"]) if status != "expired" else batch["request_counts"]["failed"],
        )
        self.teacher.count(f"batches_{status}")
