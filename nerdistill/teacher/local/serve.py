"""The local model as a teacher server: :class:`LocalTeacher` answers chat-completion requests with
the loaded model (:mod:`.model`) through the generator (:mod:`.generation`), behind the shared
OpenAI-compatible handler (:mod:`nerdistill.teacher.server`); ``python -m nerdistill.teacher.local``
(:mod:`.__main__`) serves it standalone."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from nerdistill.teacher.constrain import GrammarError, schema_of
from nerdistill.teacher.local.generation import Generation, Generator
from nerdistill.teacher.local.model import LoadedModel
from nerdistill.teacher.local.settings import PACKAGE, LocalSettings, identity, package_version
from nerdistill.teacher.server import BackgroundServer, Endpoint, completion, error

log = logging.getLogger(__name__)


class LocalTeacher(Endpoint):
    """The model and the answers, without HTTP: :meth:`chat` answers one request body; :meth:`info` says what ran."""

    def __init__(self, settings: LocalSettings) -> None:
        super().__init__(settings.models, settings.api_key_env, "teacher.local", "the local server", "nerdistill-local")
        self.settings = settings
        self.loaded = LoadedModel(settings)
        self.generator = Generator(self.loaded, settings.batch_size, settings.gather_s)
        self.stats: Counter = Counter()  # requests: answered, tokens, finish reasons, refusals
        self.stats_lock = threading.Lock()  # request threads add their counts
        self.latencies: list[float] = []  # wall seconds per answered request, queueing excluded
        # the process's CPU seconds while its batch generated (every torch thread; the job's own client work,
        # small, too), split over the batch's rows
        self.cpu_seconds: list[float] = []
        log.info(
            "local teacher: %s, loaded from %s in %.1f s (%d torch threads)",
            settings.description,
            self.loaded.path,
            self.loaded.load_s,
            self.generator.torch.get_num_threads(),
        )

    def identity(self) -> str:
        return identity(self.loaded.sha256, self.settings.models, self.settings.dtype, self.settings.device)

    def close(self) -> None:
        self.generator.close()

    def info(self) -> dict:
        """What ran and how it went, for the report: the model, its file, and the server's counts and times."""
        n = len(self.latencies)
        seconds = sum(self.latencies)
        stats = Counter(self.stats)
        stats.update(self.generator.stats)
        return {
            "description": self.settings.description,
            "gguf": str(self.loaded.path),
            "gguf_sha256": self.loaded.sha256,
            "package": {"name": PACKAGE, "version": package_version()} if not self.settings.gguf else None,
            "dtype": self.settings.dtype,
            "device": self.settings.device,
            "torch_threads": self.generator.torch.get_num_threads(),
            "load_s": round(self.loaded.load_s, 3),
            "tokenizer_from": self.loaded.tokenizer_from,
            "stats": {
                **dict(stats),
                "mean_latency_s": round(seconds / n, 3) if n else None,
                "max_latency_s": round(max(self.latencies), 3) if n else None,
                "mean_cpu_s": round(sum(self.cpu_seconds) / n, 3) if n else None,
                "generation_s": round(seconds, 3),
                "completion_tokens_per_s": round(stats["completion_tokens"] / seconds, 2) if seconds else None,
                "batch_size": self.settings.batch_size,
                "mean_batch_rows": round(stats["batch_rows"] / stats["batches"], 2) if stats["batches"] else None,
            },
        }

    def chat(self, body: Mapping[str, Any]) -> tuple[int, dict[str, str], dict, float]:
        """``(status, headers, payload, 0.0)`` for a chat-completions request body (the simulator's handler
        serves it)."""
        model = str(body.get("model"))
        if (unknown := self.unknown_model(model)) is not None:
            return unknown
        schema = schema_of(body.get("response_format"))
        if schema is not None:
            try:
                self.generator.grammars().matcher(schema)  # compiled now, so a bad schema is refused before it queues
            except GrammarError as err:
                with self.stats_lock:
                    self.stats["refused_response_format"] += 1
                return (
                    400,
                    {},
                    error(
                        "Invalid parameter: 'response_format': "
                        f"the JSON schema cannot be used for constrained decoding ({err})",
                        "invalid_parameter",
                    ),
                    0.0,
                )
        messages = body.get("messages") or []
        if not messages:
            return 400, {}, error("'messages' is empty", "invalid_request"), 0.0
        try:
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 512)
            temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
            top_p = float(body.get("top_p") if body.get("top_p") is not None else 1.0)
            n = int(body.get("n") or 1)
            seed = body.get("seed")
            seed = int(seed) if seed is not None else None
        except (TypeError, ValueError) as err:
            return 400, {}, error(f"bad generation parameter: {err}", "invalid_request"), 0.0
        if max_tokens < 1 or n < 1 or temperature < 0:
            return 400, {}, error("max_tokens and n must be >= 1 and temperature >= 0", "invalid_request"), 0.0
        want_logprobs = bool(body.get("logprobs"))
        ids, prefix, opening = self.loaded.render(messages)
        if len(ids) + max_tokens > self.loaded.context:
            with self.stats_lock:
                self.stats["refused_context"] += 1
            return (
                400,
                {},
                error(
                    f"This model's maximum context length is {self.loaded.context} tokens; "
                    f"the prompt has {len(ids)} and max_tokens is {max_tokens}.",
                    "context_length_exceeded",
                ),
                0.0,
            )
        choices, completion_tokens, seconds, cpu = [], 0, 0.0, 0.0
        for index in range(n):
            generation = Generation(
                ids,
                prefix,
                opening,
                max_tokens,
                temperature,
                top_p,
                None if seed is None else seed + index,
                want_logprobs,
                schema,
            )
            generated, chosen = self.generator.submit(generation)
            seconds, cpu = seconds + generation.seconds, cpu + generation.cpu
            stopped = bool(generated) and generated[-1] in self.loaded.eos
            answer = generated[:-1] if stopped else generated
            completion_tokens += len(generated)
            text = self.loaded.tokenizer.decode(answer, skip_special_tokens=True)
            content = None
            if chosen is not None:
                kept = [(t, lp) for t, lp in zip(answer, chosen) if t not in self.loaded.special]
                pieces = [self.loaded.token_bytes(t) for t, _ in kept]
                text = b"".join(pieces).decode("utf-8", errors="replace")  # the text the logprobs' bytes spell
                content = [
                    {"token": p.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(p), "top_logprobs": []}
                    for p, (_, lp) in zip(pieces, kept)
                ]
            finish = "stop" if stopped else "length"
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": {"content": content} if content is not None else None,
                }
            )
        with self.stats_lock:
            self.stats.update(f"finish_{c['finish_reason']}" for c in choices)
            self.latencies.append(seconds)
            self.cpu_seconds.append(cpu)
            self.stats["answered"] += 1
            self.stats["prompt_tokens"] += len(ids)
            self.stats["completion_tokens"] += completion_tokens
        request_id = "localcmpl-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        payload = completion(
            request_id, model, f"nerdistill-local:{self.loaded.sha256[:12]}", choices, len(ids), completion_tokens
        )
        return 200, {}, payload, 0.0


class LocalServer(BackgroundServer):
    """:class:`LocalTeacher` behind the shared OpenAI-compatible handler (no Batch API)."""

    name = "nerdistill-local"

    def __init__(self, settings: LocalSettings) -> None:
        super().__init__(settings)
        self.teacher = LocalTeacher(settings)

    def identity(self) -> str:
        return self.teacher.identity()

    def info(self) -> dict:
        return self.teacher.info()

    def stop(self) -> None:
        super().stop()
        self.teacher.close()
