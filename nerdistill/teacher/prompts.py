"""Prompts as versioned config: render chat messages for a sentence, with few-shot examples.

A prompt (``conf/prompt/*.yaml``) holds its id and version, a system template with
``{types}`` and ``{format}`` slots, the type definitions, the answer-format instructions,
how many gold sentences serve as worked examples and how they are chosen (the same few for every
sentence, or each sentence's nearest: :mod:`nerdistill.teacher.examples`), and the templates of
the self-verification question. :func:`format_answer` writes an answer in a prompt's format; the
few-shot examples and the simulated teacher both use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from nerdistill.data.conll import Sentence
from nerdistill.data.labels import LabelSet, spans
from nerdistill.data.pools import build_pools
from nerdistill.embeddings import SentenceEncoder
from nerdistill.student.models import MINILM
from nerdistill.teacher.examples import Examples, FixedExamples, NearestExamples

FORMATS = ("json", "lines")
ANSWER = "Answer:"  # written before a reasoning answer's structured answer; the parser's ANSWER_MARKERS read it


def format_entities(entities: Sequence[tuple[str, str]], fmt: str) -> str:
    """The structured answer: ``{"entities": [{"text", "type"}]}`` or ``entity | TYPE`` lines."""
    if fmt == "json":
        return json.dumps({"entities": [{"text": text, "type": kind} for text, kind in entities]}, ensure_ascii=False)
    if fmt == "lines":
        return "\n".join(f"{text} | {kind}" for text, kind in entities) if entities else "No entities."
    raise ValueError(f"prompt format must be one of {FORMATS}, got {fmt!r}")


def reasoning(tokens: Sequence[str], entities: Sequence[tuple[str, str]], descriptions: Mapping[str, str]) -> str:
    """Step-by-step reasoning for a worked example: context, candidates, type and justification."""
    # ordered: the prompt must render the same in every process
    names = list(dict.fromkeys(text for text, _ in entities))
    others = [
        t
        for i, t in enumerate(tokens)
        if i > 0 and t[:1].isupper() and not t.isupper() and t not in " ".join(names).split()
    ][:2]
    lines = [
        f"Step 1 - Context: the sentence has {len(tokens)} tokens; "
        + (
            "it names " + ", ".join(f'"{t}"' for t, _ in entities) + "."
            if entities
            else "it names no specific person, organisation, place or other proper name."
        ),
        "Step 2 - Candidate entities: "
        + (", ".join(f'"{c}"' for c in [*names, *others]) if names or others else "none")
        + ".",
        "Step 3 - Type of each candidate from its context, with a justification:",
    ]
    lines += [
        f'- "{text}": {kind}, because here it is {descriptions.get(kind, kind).rstrip(".")}.' for text, kind in entities
    ]
    lines += [f'- "{word}": not an entity, a capitalised common word rather than a name.' for word in others]
    if not entities and not others:
        lines.append("- nothing to type.")
    return "\n".join(lines)


def format_answer(
    tokens: Sequence[str],
    entities: Sequence[tuple[str, str]],
    fmt: str,
    with_reasoning: bool,
    descriptions: Mapping[str, str],
) -> str:
    """A complete answer: for chain of thought, the reasoning, then ``Answer:`` and the structured answer."""
    answer = format_entities(entities, fmt)
    if not with_reasoning:
        return answer
    return f"{reasoning(tokens, entities, descriptions)}\n{ANSWER}\n{answer}"


def gold_entities(sentence: Sentence) -> list[tuple[str, str]]:
    return [(" ".join(sentence.tokens[start:end]), kind) for start, end, kind in spans(sentence.tags)]


EXAMPLES = ("random", "knn")


class Prompt:
    """A versioned NER prompt; :meth:`setup` loads its gold pool and example strategy, :meth:`fit` shows
    it the job's sentences, :meth:`messages` renders one."""

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
        examples: str = "random",
        examples_path: str | None = None,
        examples_seed: int = 0,
        examples_budget: int | None = None,
        examples_budget_seed: int = 0,
        examples_same_document: bool = False,
        encoder: str = MINILM,
        embeddings_cache: str | None = None,
        structured: bool = False,
        structured_spans: bool = False,
        verify: bool = False,
        verify_examples: bool = False,
        verify_system: str = "",
        verify_user: str = "",
    ) -> None:
        if format not in formats:
            raise ValueError(f"prompt {id}: format {format!r} has no instructions (have {sorted(formats)})")
        if structured and format != "json":
            raise ValueError(f"prompt {id}: structured output answers in JSON; set prompt.format=json (got {format!r})")
        if structured_spans and not structured:
            raise ValueError(
                f"prompt {id}: structured_spans limits the entity texts of structured output; "
                "set prompt.structured=true too"
            )
        if examples not in EXAMPLES:
            raise ValueError(f"prompt.examples must be one of {list(EXAMPLES)}, got {examples!r}")
        if k > 0 and not examples_path:
            raise ValueError(f"prompt {id}: k={k} few-shot examples need examples_path (a gold CoNLL file)")
        if examples == "knn" and k < 1:
            raise ValueError(f"prompt.examples=knn needs prompt.k >= 1, got {k}")
        if verify and not (verify_system and verify_user):
            raise ValueError(f"prompt {id}: verify=true needs verify_system and verify_user templates")
        self.id, self.version = id, str(version)
        self.system, self.user, self.reask = system, user, reask
        self.types, self.formats, self.format = dict(types), dict(formats), format
        self.reasoning, self.k, self.structured, self.structured_spans = reasoning, k, structured, structured_spans
        self.strategy, self.examples_path, self.examples_seed = examples, examples_path, examples_seed
        self.examples_budget, self.examples_budget_seed, self.examples_same_document = (
            examples_budget,
            examples_budget_seed,
            examples_same_document,
        )
        self.encoder, self.embeddings_cache = encoder, embeddings_cache
        self.verify, self.verify_examples, self.verify_system, self.verify_user = (
            verify,
            verify_examples,
            verify_system,
            verify_user,
        )
        self.gold: list[Sentence] = []  # the pool examples come from
        self.examples: Examples | None = None
        self.labels: LabelSet | None = None

    @property
    def key(self) -> str:
        """``id@version``: goes into the cache key and every distilled sentence's provenance."""
        return f"{self.id}@{self.version}"

    def setup(self, labels: LabelSet) -> Prompt:
        """Check the types have definitions, read the gold pool (``examples_budget`` sentences of
        ``examples_path``, drawn as train draws ``data.gold_budget`` with ``data.budget_seed``) and set up
        the examples."""
        missing = [t for t in labels.types if t not in self.types]
        if missing:
            raise ValueError(f"prompt {self.id}: no definition for entity types {missing}; add them under prompt.types")
        self.labels = labels
        if self.k > 0:
            self.gold = build_pools(
                [self.examples_path], [], labels, gold_budget=self.examples_budget, seed=self.examples_budget_seed
            ).original
            if self.strategy == "knn":
                self.examples = NearestExamples(
                    self.gold,
                    self.k,
                    SentenceEncoder(self.encoder, cache_dir=self.embeddings_cache),
                    self.examples_same_document,
                )
            else:
                self.examples = FixedExamples(self.gold, self.k, self.examples_seed)
        return self

    def fit(self, sentences: Sequence[Sentence]) -> None:
        """Show the examples the sentences a job will annotate (nearest neighbours are found for all at once)."""
        if self.examples is not None:
            self.examples.fit(sentences)

    def response_format(self, sentence: Sentence | None = None) -> dict:
        """The ``response_format`` for structured output: a strict JSON schema of the answer the
        parser reads, ``{"entities": [{"text", "type"}]}`` with ``type`` one of the configured
        labels, led by a ``reasoning`` string for a reasoning prompt. With ``structured_spans``, each
        ``text`` is one of the sentence's own word spans (:func:`candidate_spans`): an entity that is not
        in the sentence cannot be written."""
        assert self.labels is not None, "call setup() first"
        text: dict = {"type": "string"}
        if self.structured_spans and sentence is not None:
            text["enum"] = candidate_spans(sentence.tokens)
        entity = {
            "type": "object",
            "properties": {"text": text, "type": {"type": "string", "enum": list(self.labels.types)}},
            "required": ["text", "type"],
            "additionalProperties": False,
        }
        properties: dict = {"reasoning": {"type": "string"}} if self.reasoning else {}
        properties["entities"] = {"type": "array", "items": entity}
        return json_schema("named_entities", properties)

    def examples_for(self, sentence: Sentence) -> list[Sentence]:
        """``k`` gold examples, never the sentence being annotated itself."""
        return self.examples.for_sentence(sentence) if self.examples is not None else []

    def render_types(self) -> str:
        assert self.labels is not None, "call setup() first"
        return "\n".join(f"- {t}: {self.types[t]}" for t in self.labels.types)

    def render_system(self) -> str:
        return self.system.format(types=self.render_types(), format=self.formats[self.format]).strip()

    def messages(self, sentence: Sentence) -> list[dict[str, str]]:
        """System message, one user/assistant turn per example, then the sentence."""
        messages = [{"role": "system", "content": self.render_system()}]
        for example in self.examples_for(sentence):
            answer = format_answer(example.tokens, gold_entities(example), self.format, self.reasoning, self.types)
            messages += [
                {"role": "user", "content": self.user.format(sentence=" ".join(example.tokens))},
                {"role": "assistant", "content": answer},
            ]
        messages.append({"role": "user", "content": self.user.format(sentence=" ".join(sentence.tokens))})
        return messages

    def reask_messages(self, messages: list[dict[str, str]], answer: str) -> list[dict[str, str]]:
        """The one follow-up after an unparseable answer."""
        return [*messages, {"role": "assistant", "content": answer}, {"role": "user", "content": self.reask}]

    def verify_messages(self, sentence: Sentence, text: str, kind: str) -> list[dict[str, str]]:
        """Self-verification: the question whether ``text`` in the sentence is a ``kind``, answered yes or
        no. With ``verify_examples``, worked questions come first, two from each of the sentence's
        examples: one of its gold entities as its type (yes) and one as another type (no)."""
        messages = [{"role": "system", "content": self.verify_system.format(types=self.render_types()).strip()}]
        if self.verify_examples:
            for i, example in enumerate(self.examples_for(sentence)):
                for entity, verdict in self.verify_demos(example, i):
                    answer = json.dumps({"answer": verdict}) if self.structured else verdict
                    messages += [
                        {"role": "user", "content": self.verify_question(example, *entity)},
                        {"role": "assistant", "content": answer},
                    ]
        return [*messages, {"role": "user", "content": self.verify_question(sentence, text, kind)}]

    def verify_question(self, sentence: Sentence, text: str, kind: str) -> str:
        return self.verify_user.format(
            sentence=" ".join(sentence.tokens), entity=text, type=kind, definition=self.types[kind]
        )

    def verify_demos(self, example: Sentence, index: int) -> list[tuple[tuple[str, str], str]]:
        """An example's two worked questions: its first gold entity as its type (yes) and its last as the
        next configured type (no), in alternating order; none for an example without entities."""
        assert self.labels is not None, "call setup() first"
        entities = gold_entities(example)
        if not entities:
            return []
        (first, first_kind), (last, last_kind) = entities[0], entities[-1]
        types = list(self.labels.types)
        demos = [((first, first_kind), "yes"), ((last, types[(types.index(last_kind) + 1) % len(types)]), "no")]
        return demos if index % 2 == 0 else demos[::-1]

    @staticmethod
    def verify_format() -> dict:
        """The ``response_format`` of a verification answer under structured output: ``{"answer": "yes" | "no"}``."""
        return json_schema("verification", {"answer": {"type": "string", "enum": list(VERDICTS)}})


VERDICTS = ("yes", "no")
SPAN_WORDS = 8  # the longest entity a span-limited answer can name, in words


def candidate_spans(tokens: Sequence[str], longest: int = SPAN_WORDS) -> list[str]:
    """The sentence's word spans that could be an entity: up to ``longest`` words, starting and ending
    with a word that has a letter or digit, each text once, in order of first appearance."""
    named = [any(c.isalnum() for c in t) for t in tokens]
    texts = (
        " ".join(tokens[i:j])
        for i in range(len(tokens))
        if named[i]
        for j in range(i + 1, min(len(tokens), i + longest) + 1)
        if named[j - 1]
    )
    return list(dict.fromkeys(texts))


def json_schema(name: str, properties: Mapping[str, dict]) -> dict:
    """A strict ``json_schema`` ``response_format``: an object with exactly ``properties``, all required."""
    schema = {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties),
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
