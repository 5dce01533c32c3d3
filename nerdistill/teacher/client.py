"""Async client for any OpenAI-compatible chat-completions endpoint.

Retries with backoff on 429/5xx/timeouts and the timeouts themselves are the ``openai``
client's own (``max_retries``, ``timeout``); this adds a concurrency limit, a preflight
check and token accounting. The key is read from the environment variable named in config,
held only by the ``openai`` client, and scrubbed from any error text.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from nerdistill.teacher.cache import CachedResponse, Logprobs

NO_KEY = "no-key"  # for servers without authentication (vLLM, Ollama, llama.cpp, the simulator)


def token_logprobs(choice: Any) -> Logprobs | None:
    """The answer's tokens as ``(UTF-8 byte length, logprob)``, None if the endpoint gave none.
    Byte lengths come from a token's ``bytes`` where given (a token may hold part of a character)."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return tuple(
        (len(t.bytes) if t.bytes is not None else len(t.token.encode("utf-8")), float(t.logprob)) for t in content
    )


def to_response(completion: ChatCompletion) -> CachedResponse:
    """What the cache keeps of a chat completion (an online answer or a line of a batch's output)."""
    choice = completion.choices[0]
    usage = completion.usage
    return CachedResponse(
        choice.message.content or "",
        choice.finish_reason,
        int(usage.prompt_tokens) if usage else 0,
        int(usage.completion_tokens) if usage else 0,
        token_logprobs(choice),
    )


class TeacherError(RuntimeError):
    """The endpoint cannot be used: unreachable, wrong key, unknown model."""


class TeacherClient:
    """Chat completions against ``base_url`` with at most ``concurrency`` calls in flight."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        concurrency: int = 8,
        endpoint: str | None = None,
    ) -> None:
        self._key = self._read_key(api_key_env)
        self.api_key_env = api_key_env
        self.base_url, self.model = base_url.rstrip("/"), model
        self.endpoint = endpoint or self.base_url
        self.concurrency = concurrency
        self.client = openai.AsyncOpenAI(
            api_key=self._key, base_url=self.base_url, timeout=timeout, max_retries=max_retries
        )
        self._slots = asyncio.Semaphore(concurrency)

    @staticmethod
    def _read_key(name: str | None) -> str:
        if not name:
            return NO_KEY
        key = os.environ.get(name)
        if not key:
            raise TeacherError(f"the API key environment variable {name} is not set (teacher.api_key_env)")
        return key

    def redact(self, text: str) -> str:
        """``text`` with the key, if any, replaced by ``***``."""
        return text.replace(self._key, "***") if self._key != NO_KEY else text

    async def preflight(self) -> list[str]:
        """List the endpoint's models and check ours is there; raises :class:`TeacherError` before any spending."""
        where = f"teacher endpoint {self.base_url}"
        try:
            page = await self.client.models.list()
            models = [m.id async for m in page]
        except openai.AuthenticationError as err:
            raise TeacherError(
                f"{where} rejected the API key from ${self.api_key_env} (401: {self.redact(str(err.message))})"
            ) from None
        except openai.PermissionDeniedError as err:
            raise TeacherError(f"{where} denied access (403: {self.redact(str(err.message))})") from None
        except openai.APIConnectionError as err:
            raise TeacherError(
                f"{where} is unreachable ({type(err).__name__}: {self.redact(str(err.__cause__ or err))}); "
                "is the server running and teacher.base_url right?"
            ) from None
        except openai.APIStatusError as err:
            raise TeacherError(
                f"{where} failed the model check ({err.status_code}: {self.redact(str(err.message))})"
            ) from None
        if self.model not in models:
            shown = ", ".join(sorted(models)[:20]) + (" ..." if len(models) > 20 else "")
            raise TeacherError(
                f"{where} does not serve model {self.model!r} (teacher.model); it serves: {shown or 'nothing'}"
            )
        return models

    def body(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
        """The chat-completions request body; ``params`` are generation parameters (``None`` values are not sent)."""
        return {"model": self.model, "messages": list(messages), **{k: v for k, v in params.items() if v is not None}}

    async def complete(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> CachedResponse:
        """One chat completion of :meth:`body`."""
        body = self.body(messages, params)
        async with self._slots:
            # the client's own request path (retries, backoff, timeouts), minus the per-call
            # transform of `chat.completions.create`, which costs more CPU than a local server does
            response = await self.client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        return to_response(response)

    async def close(self) -> None:
        await self.client.close()
