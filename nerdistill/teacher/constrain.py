"""Constrained decoding for the local model: a ``response_format``'s JSON schema compiled by llguidance
(the grammar engine behind llama.cpp's ``--llguidance`` and one of vLLM's and SGLang's structured-output
backends) into a matcher that masks, at every step, the tokens that would leave the schema.

One :class:`Grammars` per tokenizer compiles schemas (kept by their text); each generated answer gets
its own matcher, so rows of one batch can follow different schemas or none.
"""

from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import LogitsProcessor

KEPT = 256  # compiled grammars kept, by schema text
# JSON as json.dumps writes it, as the prompts' worked examples show it: no free whitespace for a small model to
# wander in (a schema's own "x-guidance" options override these)
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(ValueError):
    """A schema llguidance cannot compile, or llguidance missing; its message on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def schema_of(response_format: Any) -> dict | None:
    """The JSON schema a ``response_format`` asks for: a ``json_schema``'s schema, any object for
    ``json_object``, None for text or none."""
    if not isinstance(response_format, Mapping):
        return None
    if response_format.get("type") == "json_schema":
        return dict((response_format.get("json_schema") or {}).get("schema") or {"type": "object"})
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


class Grammars:
    """Compiles JSON schemas for one Hugging Face tokenizer and makes a fresh matcher per answer."""

    def __init__(self, tokenizer: Any, eos_token: int) -> None:
        if importlib.util.find_spec("llguidance") is None:
            raise GrammarError("constrained decoding needs llguidance: pip install llguidance (or -e '.[local]')")
        import llguidance
        import llguidance.hf

        self.ll = llguidance
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, eos_token=eos_token)
        self.vocab_size, self.eos_token = self.tokenizer.vocab_size, eos_token
        self.grammars: OrderedDict[str, str] = OrderedDict()

    def matcher(self, schema: Mapping[str, Any]) -> Any:
        """A fresh ``LLMatcher`` for ``schema``; :class:`GrammarError` with llguidance's reason if it cannot compile."""
        text = json.dumps(schema, sort_keys=True)
        grammar = self.grammars.get(text)
        if grammar is None:
            try:
                grammar = self.ll.LLMatcher.grammar_from_json_schema(text, defaults=JSON_OPTIONS)
            except ValueError as err:
                raise GrammarError(str(err)) from None
        matcher = self.ll.LLMatcher(self.tokenizer, grammar)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        self.grammars[text] = grammar
        self.grammars.move_to_end(text)
        while len(self.grammars) > KEPT:
            self.grammars.popitem(last=False)
        return matcher


class MaskLogits(LogitsProcessor):
    """A ``generate`` logits processor: each row with a matcher may only take the tokens its grammar
    allows next, and only ``eos_token`` once its grammar is complete; rows without one (None) are left
    alone. ``start`` is the length of the prompt rows, so the tokens after it are the ones generated,
    fed to each matcher as they come."""

    def __init__(self, matchers: Sequence[Any | None], start: int, vocab_size: int, eos_token: int) -> None:
        self.matchers, self.start, self.words, self.eos_token = (
            list(matchers),
            start,
            (vocab_size + 31) // 32,
            eos_token,
        )

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids.shape[1] - self.start
        rows = []
        for row, matcher in enumerate(self.matchers):
            if matcher is None or matcher.is_error():
                continue
            if generated > 0 and not matcher.is_stopped():
                matcher.consume_token(int(input_ids[row, -1]))
            if not matcher.is_error():
                rows.append(row)
        if not rows:
            return scores
        bitmask = torch.zeros((len(rows), self.words), dtype=torch.int32)
        for i, row in enumerate(rows):
            # complete: the answer ends here (a row that has ended gets padding whatever this says)
            if self.matchers[row].is_stopped():
                bitmask[i, self.eos_token // 32] = 1 << (self.eos_token % 32)
            else:
                self.matchers[row].unsafe_compute_mask_ptr(bitmask[i].data_ptr(), self.words * 4)
        bits = ((bitmask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1).view(len(rows), -1).bool()
        # tokens past the grammar's vocabulary: never
        allowed = torch.zeros((len(rows), scores.shape[1]), dtype=torch.bool)
        width = min(bits.shape[1], scores.shape[1])
        allowed[:, :width] = bits[:, :width]
        # llguidance writes the masks in CPU memory; the logits are where the model runs
        index = torch.tensor(rows, device=scores.device)
        scores[index] = scores[index].masked_fill(~allowed.to(scores.device), float("-inf"))
        return scores
