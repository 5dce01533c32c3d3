"""The OpenAI-compatible HTTP plumbing every teacher server here shares (the simulator, the local
model): the routes and their handler, a server in a background thread, the models listing, the API
key check and the response payloads.

A teacher behind it is an :class:`Endpoint` with ``chat(body) -> (status, headers, payload, delay)``;
a server with a Batch API (the simulator's) sets ``batches``, others answer its routes with a 404.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

log = logging.getLogger(__name__)

NO_RESPONSE = 0  # the status a teacher's ``chat`` gives for a request to leave unanswered (a fault)


def error(message: str, code: str) -> dict:
    """An OpenAI-style error payload."""
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error" if code.startswith(("model", "invalid")) else code,
            "param": None,
            "code": code,
        }
    }


class Endpoint:
    """What every teacher server answers besides chat: the model names it serves (``GET /v1/models``),
    the API key it demands (from the environment variable ``api_key_env`` names, if set; ``config`` is
    that setting's config node, for the message) and the 404 for a model it does not serve. ``who``
    names it in messages; ``owner`` is its models' ``owned_by``."""

    def __init__(self, models: Sequence[str], api_key_env: str | None, config: str, who: str, owner: str) -> None:
        self.served, self.who, self.owner = list(models), who, owner
        self.key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.key:
            raise ValueError(f"{who}: {config}.api_key_env={api_key_env} is not set in the environment")

    def authorised(self, header: str | None) -> bool:
        return self.key is None or hmac.compare_digest((header or "").encode(), f"Bearer {self.key}".encode())

    def card(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": 0, "owned_by": self.owner}

    def models(self) -> dict:
        return {"object": "list", "data": [self.card(m) for m in self.served]}

    def unknown_model(self, model: str) -> tuple[int, dict, dict, float] | None:
        """The 404 for a model this server does not serve, else None."""
        if model in self.served:
            return None
        return (
            404,
            {},
            error(f"The model `{model}` does not exist ({self.who} serves {self.served}).", "model_not_found"),
            0.0,
        )

    def chat(self, body: Mapping[str, Any]) -> tuple[int, dict[str, str], dict, float]:
        raise NotImplementedError


def completion(
    id: str, model: str, fingerprint: str, choices: list[dict], prompt_tokens: int, completion_tokens: int
) -> dict:
    """A chat completion's payload."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = (
        True  # else the body, written after the headers, waits ~40 ms for the client's delayed ACK
    )
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("teacher server: " + format, *args)

    def _send(self, status: int, payload: dict | bytes, headers: Mapping[str, str] | None = None) -> None:
        """A JSON payload, or the bytes of a file."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting

    def _hang_up(self, wait: float) -> None:
        """Close the connection without a response, after waiting up to ``wait`` s for the client to close it first."""
        self.close_connection = True
        if wait > 0:
            self.connection.settimeout(wait)
            try:
                self.connection.recv(1)  # b"" when the client gives up: it sends nothing more while it waits
            except OSError:  # `wait` passed (TimeoutError), or the connection broke
                pass

    def _route(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def do_GET(self) -> None:
        teacher = self.server.teacher
        if not teacher.authorised(self.headers.get("Authorization")):
            return self._send(401, error("Incorrect API key provided (simulated teacher).", "invalid_api_key"))
        route = self._route()
        if route == "/models":
            return self._send(200, teacher.models())
        if route.startswith("/models/"):
            name = route[len("/models/") :]
            if name in teacher.served:
                return self._send(200, teacher.card(name))
            return self._send(404, error(f"The model `{name}` does not exist.", "model_not_found"))
        batches, parts = self.server.batches, route.strip("/").split("/")
        if batches is None and parts[0] in ("files", "batches"):
            return self._send(404, error(f"no Batch API here ({teacher.who})", "not_found"))
        if parts[0] == "files" and len(parts) in (2, 3) and parts[2:] in ([], ["content"]):
            return self._send(*batches.file(parts[1], content=len(parts) == 3))
        if route == "/batches":
            return self._send(*batches.list())
        if parts[0] == "batches" and len(parts) == 2:
            return self._send(*batches.retrieve(parts[1]))
        self._send(404, error(f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:
        teacher = self.server.teacher
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not teacher.authorised(self.headers.get("Authorization")):
            return self._send(401, error("Incorrect API key provided (simulated teacher).", "invalid_api_key"))
        route = self._route()
        if self.server.batches is None and route.startswith(("/files", "/batches")):
            return self._send(404, error(f"no Batch API here ({teacher.who})", "not_found"))
        if route == "/files":
            return self._send(*self.server.batches.upload(self.headers.get("Content-Type") or "", raw))
        if route.startswith("/batches/") and route.endswith("/cancel"):
            return self._send(*self.server.batches.cancel(route.split("/")[2]))
        if route not in ("/chat/completions", "/batches"):
            return self._send(404, error(f"no route {self.path}", "not_found"))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._send(400, error("request body is not JSON", "invalid_request"))
        if route == "/batches":
            return self._send(*self.server.batches.create(body))
        status, headers, payload, delay = teacher.chat(body)
        if status == NO_RESPONSE:
            return self._hang_up(delay)
        if delay > 0:
            time.sleep(delay)
        self._send(status, payload, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = (
        1024  # a client opening `concurrency` connections at once overflows the default 5 (1 s SYN retries)
    )
    teacher: Endpoint
    batches: Any  # the Batch API (the simulator's SimBatches), or None


class BackgroundServer:
    """A teacher's HTTP server on ``settings.host:settings.port`` (0: a free port) in a background
    thread; subclasses set ``teacher`` (an :class:`Endpoint`) and, with a Batch API, ``batches``."""

    name = "nerdistill-server"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.teacher: Endpoint | None = None
        self.batches: Any = None
        self.httpd: _Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None, "server not started"
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> Self:
        self.httpd = _Server((self.settings.host, self.settings.port), _Handler)
        self.httpd.teacher = self.teacher
        self.httpd.batches = self.batches
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=self.name, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
