"""Generating the local model's answers: one generator thread takes the queued requests and
generates together those that can share a batch, from the kept KV cache of their common prompt prefix,
each row held to its JSON schema where it has one."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nerdistill.teacher.client import TeacherError
from nerdistill.teacher.constrain import Grammars, MaskLogits

if TYPE_CHECKING:
    from nerdistill.teacher.local.model import LoadedModel

log = logging.getLogger(__name__)

PREFIXES = 3  # prompt-prefix KV caches kept (standard and CoT prompts, one more)


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
    # tokens of its first message: other calls of its job share at least these (their prefixes may differ after,
    # as nearest-neighbour examples make them)
    opening: int
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
        """Whether it can generate in one batch with ``other`` (if their prompts share a prefix): both greedy,
        the same length limit."""
        return self.greedy and other.greedy and self.max_tokens == other.max_tokens


class Generator:
    """One model, so one generation at a time: a thread takes the oldest queued :class:`Generation`,
    waits ``gather_s`` for others, and generates together those that can batch with it (up to
    ``batch_size``), from the kept KV cache of their shared prompt prefix. Its counts are in :attr:`stats`."""

    def __init__(self, loaded: LoadedModel, batch_size: int, gather_s: float) -> None:
        import torch

        self.loaded, self.batch_size, self.gather_s = loaded, batch_size, gather_s
        self.torch = torch
        self.prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # touched by the generator thread only
        self.stats: Counter = Counter()  # batches, rows, prefixes computed and reused
        self.stats_lock = threading.Lock()
        self._grammars: Grammars | None = None  # made at the first request with a schema
        self.grammars_lock = threading.Lock()
        self.requests: queue.Queue[Generation | None] = queue.Queue()
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self.serve, name="nerdistill-local-generator", daemon=True)
        self.thread.start()

    def grammars(self) -> Grammars:
        """The schema compiler for the model's tokenizer, made once (about 0.5 s)."""
        with self.grammars_lock:
            if self._grammars is None:
                self._grammars = Grammars(self.loaded.tokenizer, int(self.loaded.tokenizer.eos_token_id))
            return self._grammars

    def submit(self, generation: Generation) -> tuple[list[int], list[float] | None]:
        """Queue a generation for the generator thread and wait for its ``(token ids, logprobs)``."""
        self.requests.put(generation)
        return generation.result.result()

    def close(self) -> None:
        """Stop the generator thread: a generation under way stops at its next token, the queued ones fail."""
        self.closing.set()
        self.requests.put(None)
        self.thread.join(timeout=60)

    def prefix_cache(self, prefix: Sequence[int]) -> tuple[Any, int]:
        """``(cache, length)``: the KV cache of the longest kept prefix of ``prefix``, made for ``prefix``
        itself if none; ``(None, 0)`` for an empty one."""
        from transformers import DynamicCache

        best = self.kept_prefix(prefix)
        if best is None and prefix:
            cache = DynamicCache(config=self.loaded.model.config)
            with self.torch.inference_mode():
                self.loaded.model(
                    input_ids=self.torch.tensor([list(prefix)], device=self.loaded.device),
                    use_cache=True,
                    **{self.loaded.cache_kwarg: cache},
                )
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
        return max(
            (key for key in self.prefixes if len(key) <= len(prefix) and tuple(prefix[: len(key)]) == key),
            key=len,
            default=None,
        )

    def batch(self, waiting: Sequence[Generation]) -> tuple[list[Generation], tuple[int, ...]]:
        """The oldest waiting generation and those that can batch with it, and the token prefix they all
        start from: the greedy calls (with its ``max_tokens``) that share with its prompt at least half of
        its prefix, or its first message, those sharing most first; the prefix is the longest they all
        share. For the first calls of a job that is the system message and few-shot turns (or, where each
        call has examples of its own, the system message alone); a re-ask (the prompt, the answer, then the
        re-ask) shares its prompt's with them. :meth:`prefix_cache` reuses the longest kept part of it."""
        head, limit = waiting[0], self.batch_size
        own = tuple(head.prefix or ())
        if not head.greedy:
            return [head], own
        others = [g for g in waiting if g.joins(head)]
        if not own:
            return [g for g in others if not g.prefix][:limit], ()
        floor = min(len(own) // 2, head.opening or len(own))
        shared = [(min(common_length(own, g.ids), len(g.ids) - 1), g) for g in others]
        # stable: the head stays first
        group = sorted([(n, g) for n, g in shared if n >= floor], key=lambda pair: -pair[0])[:limit]
        return [g for _, g in group], own[: min(n for n, _ in group)]

    def serve(self) -> None:
        """The generator thread: one model, so one generation at a time. It takes the oldest queued
        request, waits ``gather_s`` for others, and generates together those that can batch with it."""
        waiting: list[Generation] = []
        while True:
            if not waiting:
                first = self.requests.get()
                if first is None:
                    return
                waiting.append(first)
            deadline = time.monotonic() + self.gather_s
            stop = False
            while len(waiting) < 4 * self.batch_size and (left := deadline - time.monotonic()) > 0:
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

    def generate(
        self, group: Sequence[Generation], prefix: Sequence[int]
    ) -> list[tuple[list[int], list[float] | None]]:
        """Generate for requests whose prompts start with ``prefix``, with the same parameters: each row is
        the prefix's KV cache (kept, or made and kept now), padding (masked, so positions run on), then
        the rest of its prompt. Returns each row's
        generated token ids (EOS included if reached) and, if asked, each one's log-probability."""
        from transformers import GenerationConfig, LogitsProcessorList, StaticCache

        torch, head = self.torch, group[0]
        started, cpu = time.perf_counter(), time.process_time()
        pad, eos = self.loaded.pad, self.loaded.eos
        config = GenerationConfig(
            max_new_tokens=head.max_tokens,
            do_sample=not head.greedy,
            temperature=None if head.greedy else head.temperature,
            top_p=None if head.greedy else head.top_p,
            top_k=None,
            eos_token_id=sorted(eos),
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
        cache = StaticCache(config=self.loaded.model.config, max_cache_len=reused + width + head.max_tokens)
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
            constrained["logits_processor"] = LogitsProcessorList(
                [MaskLogits(matchers, reused + width, grammars.vocab_size, grammars.eos_token)]
            )
        with torch.inference_mode():
            out = self.loaded.model.generate(
                input_ids=torch.tensor(rows, device=self.loaded.device),
                attention_mask=torch.tensor(mask, device=self.loaded.device),
                generation_config=config,
                stopping_criteria=[Closing(self.closing)],
                **constrained,
                **{self.loaded.cache_kwarg: cache},
            )
        if self.closing.is_set():
            raise TeacherError("local teacher stopped")
        results = []
        for row, (g, sequence) in enumerate(zip(group, out.sequences[:, reused + width :].tolist())):
            end = next((i + 1 for i, token in enumerate(sequence) if token in eos), len(sequence))
            generated = sequence[:end]
            chosen = (
                [
                    float(torch.log_softmax(step[row].float(), dim=-1)[token])
                    for step, token in zip(out.logits, generated)
                ]
                if g.logprobs
                else None
            )
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
