"""Prompts as versioned config: render chat messages for a sentence, with few-shot examples.

A prompt (``conf/prompt/*.yaml``) holds its id and version, a system template with
``{types}`` and ``{format}`` slots, the type definitions, the answer-format instructions and
how many training sentences serve as worked examples. :func:`format_answer` writes an
answer in a prompt's format; the few-shot examples and the simulated teacher both use it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from nerdistill.data.conll import Sentence, read_conll
from nerdistill.data.labels import LabelSet, spans

FORMATS = ("json", "lines")


def format_entities(entities: Sequence[tuple[str, str]], fmt: str) -> str:
    """The structured answer: ``{"entities": [{"text", "type"}]}`` or ``entity | TYPE`` lines."""
    if fmt == "json":
        return json.dumps({"entities": [{"text": text, "type": kind} for text, kind in entities]}, ensure_ascii=False)
    if fmt == "lines":
        return "\n".join(f"{text} | {kind}" for text, kind in entities) if entities else "No entities."
    raise ValueError(f"prompt format must be one of {FORMATS}, got {fmt!r}")


def reasoning(tokens: Sequence[str], entities: Sequence[tuple[str, str]], descriptions: Mapping[str, str]) -> str:
    """Step-by-step reasoning for a worked example: context, candidates, type and justification."""
    names = list(dict.fromkeys(text for text, _ in entities))  # ordered: the prompt must render the same in every process
    others = [t for i, t in enumerate(tokens) if i > 0 and t[:1].isupper() and not t.isupper() and t not in " ".join(names).split()][:2]
    lines = [
        f"Step 1 - Context: the sentence has {len(tokens)} tokens; "
        + ("it names " + ", ".join(f'"{t}"' for t, _ in entities) + "." if entities else "it names no specific person, organisation, place or other proper name."),
        "Step 2 - Candidate entities: " + (", ".join(f'"{c}"' for c in [*names, *others]) if names or others else "none") + ".",
        "Step 3 - Type of each candidate from its context, with a justification:",
    ]
    lines += [f'- "{text}": {kind}, because here it is {descriptions.get(kind, kind).rstrip(".")}.' for text, kind in entities]
    lines += [f'- "{word}": not an entity, a capitalised common word rather than a name.' for word in others]
    if not entities and not others:
        lines.append("- nothing to type.")
    return "\n".join(lines)


def format_answer(tokens: Sequence[str], entities: Sequence[tuple[str, str]], fmt: str, with_reasoning: bool, descriptions: Mapping[str, str]) -> str:
    """A complete answer: for chain of thought, the reasoning, then ``Answer:`` and the structured answer."""
    answer = format_entities(entities, fmt)
    if not with_reasoning:
        return answer
    return f"{reasoning(tokens, entities, descriptions)}\nAnswer:\n{answer}"


def gold_entities(sentence: Sentence) -> list[tuple[str, str]]:
    return [(" ".join(sentence.tokens[start:end]), kind) for start, end, kind in spans(sentence.tags)]


class Prompt:
    """A versioned NER prompt; :meth:`setup` loads its few-shot pool, :meth:`messages` renders."""

    def __init__(
        self,
        id: str,
        version: str | int,
        system: str,
        user: str,
        reask: str,
        types: Mapping[str, str],
        formats: Mapping[str, str],
        format: str = "json",
        reasoning: bool = False,
        k: int = 3,
        examples_path: str | None = None,
        examples_seed: int = 0,
        structured: bool = False,
    ) -> None:
        if format not in formats:
            raise ValueError(f"prompt {id}: format {format!r} has no instructions (have {sorted(formats)})")
        if structured and format != "json":
            raise ValueError(f"prompt {id}: structured output answers in JSON; set prompt.format=json (got {format!r})")
        if k > 0 and not examples_path:
            raise ValueError(f"prompt {id}: k={k} few-shot examples need examples_path (a training split)")
        self.id, self.version = id, str(version)
        self.system, self.user, self.reask = system, user, reask
        self.types, self.formats, self.format = dict(types), dict(formats), format
        self.reasoning, self.k, self.structured = reasoning, k, structured
        self.examples_path, self.examples_seed = examples_path, examples_seed
        self.pool: list[Sentence] = []
        self.labels: LabelSet | None = None

    @property
    def key(self) -> str:
        """``id@version``: goes into the cache key and every distilled sentence's provenance."""
        return f"{self.id}@{self.version}"

    def setup(self, labels: LabelSet) -> Prompt:
        """Check the types have definitions and draw ``k + 1`` example candidates from the training split."""
        missing = [t for t in labels.types if t not in self.types]
        if missing:
            raise ValueError(f"prompt {self.id}: no definition for entity types {missing}; add them under prompt.types")
        self.labels = labels
        if self.k > 0:
            self.pool = self.choose_examples(read_conll(Path(self.examples_path), labels))
        return self

    def choose_examples(self, sentences: list[Sentence]) -> list[Sentence]:
        """Seeded: mid-length sentences with entities, not all-caps headlines; each pick the one
        (of the first 200 in a seeded shuffle) that adds the most types not yet shown."""
        candidates = [s for s in sentences if 8 <= len(s.tokens) <= 30 and spans(s.tags) and not all(t.isupper() or not t.isalpha() for t in s.tokens)]
        random.Random(self.examples_seed).shuffle(candidates)
        window = candidates[:200]
        chosen: list[Sentence] = []
        covered: set[str] = set()
        while window and len(chosen) < self.k + 1:
            best = max(window, key=lambda s: len({kind for _, _, kind in spans(s.tags)} - covered))
            window.remove(best)
            chosen.append(best)
            covered |= {kind for _, _, kind in spans(best.tags)}
        return chosen

    def response_format(self) -> dict:
        """The ``response_format`` for structured output: a strict JSON schema of the answer the
        parser reads, ``{"entities": [{"text", "type"}]}`` with ``type`` one of the configured
        labels, led by a ``reasoning`` string for a reasoning prompt."""
        assert self.labels is not None, "call setup() first"
        entity = {
            "type": "object",
            "properties": {"text": {"type": "string"}, "type": {"type": "string", "enum": list(self.labels.types)}},
            "required": ["text", "type"],
            "additionalProperties": False,
        }
        properties: dict = {"reasoning": {"type": "string"}} if self.reasoning else {}
        properties["entities"] = {"type": "array", "items": entity}
        schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
        return {"type": "json_schema", "json_schema": {"name": "named_entities", "schema": schema, "strict": True}}

    def examples_for(self, tokens: Sequence[str]) -> list[Sentence]:
        """``k`` examples, never the sentence being annotated itself."""
        return [s for s in self.pool if s.tokens != tuple(tokens)][: self.k]

    def render_system(self) -> str:
        assert self.labels is not None, "call setup() first"
        types = "\n".join(f"- {t}: {self.types[t]}" for t in self.labels.types)
        return self.system.format(types=types, format=self.formats[self.format]).strip()

    def messages(self, tokens: Sequence[str]) -> list[dict[str, str]]:
        """System message, one user/assistant turn per example, then the sentence."""
        messages = [{"role": "system", "content": self.render_system()}]
        for example in self.examples_for(tokens):
            answer = format_answer(example.tokens, gold_entities(example), self.format, self.reasoning, self.types)
            messages += [{"role": "user", "content": self.user.format(sentence=" ".join(example.tokens))}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": self.user.format(sentence=" ".join(tokens))})
        return messages

    def reask_messages(self, messages: list[dict[str, str]], answer: str) -> list[dict[str, str]]:
        """The one follow-up after an unparseable answer."""
        return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": self.reask}]
