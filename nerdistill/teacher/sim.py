"""Simulated teacher: an OpenAI-compatible chat-completions server on localhost, for offline use.

It finds the sentence in the request (the last ``Sentence:`` of the last user message that
has one, else that message tokenised like CoNLL), looks its tags up in oracle sources (CoNLL
files or ``hf:`` datasets: gold, or real GPT-3.5 labels) or, for other text, tags it with a trained model directory
when one is configured, corrupts them with :class:`~nerdistill.teacher.noise.NoiseModel`,
and answers in the format the prompt asks for (JSON if the system message says "JSON",
else ``entity | TYPE`` lines; with reasoning if it says "step by step"). A ``json_schema``
``response_format`` is honoured (JSON of the schema's shape, types from its enum; no malformed,
empty or wrongly formatted answers, though truncation stays) or, with ``refuse_response_format``,
refused with a 400. ``logprobs: true`` gets token logprobs that carry information: each entity's
type token is likelier where the entity is right than where the noise corrupted it. A
self-verification question ("is X a TYPE here?") is answered from the oracle, right with
probability ``verify_accuracy``. Fault knobs: latency,
429s, 500s, timeouts, dropped connections, malformed, truncated, empty and wrongly formatted
answers, decided per (request, attempt) so the client's retries can succeed. Everything is
seeded: the same request gets the same answer. The Batch API (files and batches) is
:mod:`nerdistill.teacher.sim_batch`'s.

Run standalone: ``python -m nerdistill.teacher.sim teacher.sim.port=8000``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nerdistill.data.labels import DEFAULT_TYPES, LabelSet, spans
from nerdistill.data.sources import read_source
from nerdistill.data.text import tokenize
from nerdistill.runtime import choose_precision
from nerdistill.teacher.noise import DEFAULT_MIX, NoiseModel
from nerdistill.teacher.prompts import ANSWER, format_answer, reasoning
from nerdistill.teacher.server import NO_RESPONSE, BackgroundServer, Endpoint, completion, error
from nerdistill.teacher.sim_batch import SimBatches

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "PER": "the name of a person",
    "ORG": "the name of an organisation",
    "LOC": "the name of a place",
    "MISC": "a name of another kind (nationality, event, work, product)",
}
MALFORMED = (
    "I'm sorry, but I can't help with that request.",
    '{"entities": [{"text": "',
    "Here is the annotation you asked for:",
)
# knobs added after the others, with their defaults: in the identity only when set otherwise, so earlier settings
# keep theirs
LATER_KNOBS = {
    "rate_dropped": 0.0,
    "rate_empty": 0.0,
    "rate_wrong_format": 0.0,
    "refuse_response_format": False,
    "verify_accuracy": 0.9,
}
# a self-verification question as the prompts ask it (conf/prompt/standard.yaml verify_user)
VERIFY_QUESTION = re.compile(r'^Sentence: (?P<sentence>.*)\n+Candidate: "(?P<entity>.*)" as (?P<type>[^\s(]+)', re.M)
TOKEN = re.compile(r"\w+|\s+|[^\w\s]")  # the simulator's answer tokens: words, runs of space, single symbols
# an entity's type-token probability is drawn from Beta(a, b): right entities (mean 0.86) vs corrupted or
# hallucinated ones (mean 0.55)
RIGHT_BETA, WRONG_BETA = (9.0, 1.5), (3.0, 2.5)


@dataclass
class SimSettings:
    """Everything the simulator does; all of it but ``host``/``port`` is its identity in cache keys."""

    oracle: list[str] = field(default_factory=list)
    model_dir: str | None = None
    precision: str = "auto"
    target_f1: float | None = None
    target_f1_by_style: dict[str, float] = field(default_factory=lambda: {"standard": 0.65, "cot": 0.73})
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    hallucination_rate: float = 0.02
    correlation: float = 0.5
    labels: list[str] = field(default_factory=lambda: list(DEFAULT_TYPES))
    models: list[str] = field(default_factory=lambda: ["sim"])
    api_key_env: str | None = None
    latency: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_malformed: float = 0.0
    rate_truncated: float = 0.0
    rate_dropped: float = 0.0
    rate_empty: float = 0.0
    rate_wrong_format: float = 0.0
    refuse_response_format: bool = False
    # self-verification questions ("is X a TYPE here?") are answered rightly, by the oracle, this often
    verify_accuracy: float = 0.9
    # the Batch API (sim_batch.py): requests answered per poll of a batch (0: all at the first), and
    # shares of batches that fail or expire; they decide whether a batch is answered, never an answer
    batch_per_poll: int = 0
    batch_rate_failed: float = 0.0
    batch_rate_expired: float = 0.0
    hang: float = 5.0
    # chat answers given in all (0: no limit); every later request is held like a timeout. Not part of
    # the identity: it decides whether a request is answered, never what an answer says
    answers: int = 0
    retry_after_ms: int = 50
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 0

    def identity(self) -> str:
        """``sim:<sha256 of the settings without host, port, answers and the batch_* knobs>``: stable across
        ephemeral ports, and the same for online and batch calls. ``precision`` counts only where a
        ``model_dir`` tags in bf16 on this machine (fp32, the tagger's precision before the setting
        existed, keeps the earlier identity), and so do the :data:`LATER_KNOBS` only when not at their defaults."""
        settings = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("host", "port", "precision", "answers")
            and not k.startswith("batch_")
            and not (k in LATER_KNOBS and v == LATER_KNOBS[k])
        }
        chosen = choose_precision(self.precision, "cpu", "teacher.sim.precision")
        if self.model_dir and chosen.bf16:
            settings["precision"] = chosen.precision
        return "sim:" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def target_for(self, style: str) -> float:
        if self.target_f1 is not None:
            return float(self.target_f1)
        return float(self.target_f1_by_style.get(style, 1.0))


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def find_sentence(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Tokens of the sentence being annotated."""
    for message in reversed(messages):
        content = str(message.get("content") or "")
        if message.get("role") == "user" and "Sentence:" in content:
            return content.rsplit("Sentence:", 1)[1].split()
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    return tokenize(users[-1]) if users else []


def style_for(reasoning: bool) -> str:
    """The name of a prompt style in ``target_f1_by_style``: ``cot`` for a prompt that reasons, else ``standard``."""
    return "cot" if reasoning else "standard"


def prompt_style(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(style, format)`` as a model would read them from the request: :func:`style_for` ``cot`` if asked to
    think step by step; ``json`` if JSON is asked for. The job itself takes both from the prompt's config."""
    instructions = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "system").lower()
    if not instructions:
        instructions = str(messages[-1].get("content") or "").lower() if messages else ""
    return style_for("step by step" in instructions), ("json" if "json" in instructions else "lines")


class SimTeacher(Endpoint):
    """The simulator's logic, without HTTP: :meth:`chat` answers one request body."""

    def __init__(self, settings: SimSettings) -> None:
        super().__init__(
            settings.models, settings.api_key_env, "teacher.sim", "simulated teacher", "nerdistill-simulated-teacher"
        )
        self.settings = settings
        self.labels = LabelSet(tuple(settings.labels))
        self.oracle: dict[tuple[str, ...], tuple[str, ...]] = {}
        for path in settings.oracle:
            for sentence in read_source(path, self.labels):
                self.oracle.setdefault(sentence.tokens, sentence.tags)
        self.tagger = None
        if settings.model_dir:
            from nerdistill.student.inference import Tagger

            self.tagger = Tagger(settings.model_dir, batch_size=1, precision=settings.precision, device="cpu")
        self.attempts: Counter = Counter()
        self.let_through = 0  # chat requests let through to an answer or a fault (see ``answers``)
        self.answered: Counter = Counter()  # 200 answers per request
        self.stats: Counter = Counter()
        self.lock = threading.Lock()
        self.tag_lock = threading.Lock()

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.stats[what] += n

    def oracle_tags(self, tokens: list[str]) -> list[str]:
        if tuple(tokens) in self.oracle:
            self.count("oracle")
            return list(self.oracle[tuple(tokens)])
        if self.tagger is not None and tokens:
            self.count("model")
            with self.tag_lock:
                return self.tagger.tag([tokens])[0]
        self.count("unknown_text")
        return ["O"] * len(tokens)

    def entities(self, tokens: list[str], style: str, request_hash: str) -> list[tuple[str, str]]:
        """``(text, type)`` of the oracle's entities after the noise, hallucinations included."""
        return [(text, kind) for text, kind, _ in self.judged(tokens, style, request_hash)]

    def judged(self, tokens: list[str], style: str, request_hash: str) -> list[tuple[str, str, bool]]:
        """:meth:`entities`, each with whether it is the oracle's (span and type) rather than an error."""
        noise = NoiseModel(
            self.settings.target_for(style), self.labels.types, self.settings.mix, self.settings.hallucination_rate
        )
        shared = random.Random(_hash("sentence", tokens, style, self.settings.seed))
        truth = spans(self.oracle_tags(tokens))
        corrupted, hallucinated = noise.corrupt(
            tokens, truth, random.Random(request_hash), shared, self.settings.correlation
        )
        rng = random.Random(request_hash + ":types")
        right = set(truth)
        return [(" ".join(tokens[s:e]), kind, (s, e, kind) in right) for s, e, kind in corrupted] + [
            (h, rng.choice(self.labels.types), False) for h in hallucinated
        ]

    def chat(self, body: Mapping[str, Any]) -> tuple[int, dict[str, str], dict, float]:
        """``(status, headers, payload, seconds to wait first)`` for a chat-completions request body;
        status :data:`NO_RESPONSE` (timeouts, dropped connections): close the connection without
        an answer once the client gives up, or after the seconds to wait at most."""
        s = self.settings
        model = str(body.get("model"))
        if (unknown := self.unknown_model(model)) is not None:
            return unknown
        schema = structured_schema(body)
        if schema is not None and s.refuse_response_format:
            self.count("refused_response_format")
            return (
                400,
                {},
                error(
                    "Invalid parameter: 'response_format' of type 'json_schema' "
                    "is not supported with this model (simulated).",
                    "invalid_parameter",
                ),
                0.0,
            )
        request_hash = _hash(body, s.seed)
        with self.lock:
            attempt = self.attempts[request_hash]
            self.attempts[request_hash] += 1
            held = bool(s.answers) and self.let_through >= s.answers
            self.let_through += not held
        if held:
            self.count("held")  # past `answers`: never answered, whatever the machine's speed
            return NO_RESPONSE, {}, {}, s.hang
        fault = random.Random(f"{request_hash}:{attempt}")
        u = fault.random()
        if u < s.rate_429:
            self.count("fault_429")
            return (
                429,
                {"retry-after-ms": str(s.retry_after_ms)},
                error("Rate limit reached (simulated).", "rate_limit_exceeded"),
                s.latency / 4,
            )
        if u < s.rate_429 + s.rate_500:
            self.count("fault_500")
            return 500, {}, error("The server had an error (simulated).", "server_error"), s.latency / 4
        if u < s.rate_429 + s.rate_500 + s.rate_timeout:
            # never answered: a timeout for any client timeout under `hang`, whatever the machine's speed
            self.count("fault_timeout")
            return NO_RESPONSE, {}, {}, s.hang
        if u < s.rate_429 + s.rate_500 + s.rate_timeout + s.rate_dropped:
            self.count("fault_dropped")
            return NO_RESPONSE, {}, {}, 0.0
        messages = body.get("messages") or []
        question = VERIFY_QUESTION.search(str(messages[-1].get("content") or "")) if messages else None
        if question is not None:
            return self.verify(question, body, model, request_hash)
        tokens = find_sentence(messages)
        style, fmt = prompt_style(messages)
        choices = []
        for index in range(int(body.get("n") or 1)):
            judged = self.judged(tokens, style, f"{request_hash}:{index}")
            if schema is not None:  # the schema's enums hold: types, and with structured_spans the entity texts
                fields = schema["properties"]["entities"]["items"]["properties"]
                types, texts = fields["type"].get("enum") or self.labels.types, fields["text"].get("enum")
                judged = [(t, k, ok) for t, k, ok in judged if k in types and (texts is None or t in texts)]
            entities = [(text, kind) for text, kind, _ in judged]
            if schema is not None:
                text = structured_answer(tokens, entities, "reasoning" in schema["properties"])
            else:
                text = format_answer(tokens, entities, fmt, style == "cot", DESCRIPTIONS)
            finish = "stop"
            v = fault.random()
            if schema is not None:  # constrained decoding: the answer fits the schema, short of being cut off
                if v < s.rate_truncated:
                    self.count("fault_truncated")
                    text, finish = text[: max(1, int(len(text) * fault.uniform(0.3, 0.8)))], "length"
            elif v < s.rate_malformed:
                self.count("fault_malformed")
                text = fault.choice(MALFORMED)
            elif v < s.rate_malformed + s.rate_truncated:
                self.count("fault_truncated")
                text, finish = text[: max(1, int(len(text) * fault.uniform(0.3, 0.8)))], "length"
            elif v < s.rate_malformed + s.rate_truncated + s.rate_empty:
                self.count("fault_empty")
                text = ""
            elif v < s.rate_malformed + s.rate_truncated + s.rate_empty + s.rate_wrong_format:
                self.count("fault_wrong_format")
                text = misformatted(tokens, entities, fmt, style == "cot", fault)
            logprobs = (
                {"content": token_logprobs(text, judged, random.Random(f"{request_hash}:{index}:logprobs"))}
                if body.get("logprobs")
                else None
            )
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": logprobs,
                }
            )
        self.count("answered")
        with self.lock:
            self.answered[request_hash] += 1
            again = self.answered[request_hash] > 1
        if again:  # the client asked again for an answer it had already been given
            self.count("answered_again")
        return 200, {}, simulated_completion(request_hash, model, body, choices), s.latency

    def verify(
        self, question: re.Match, body: Mapping[str, Any], model: str, request_hash: str
    ) -> tuple[int, dict[str, str], dict, float]:
        """A self-verification answer: whether the oracle has the candidate (its text and type) in the
        sentence, right with probability ``verify_accuracy``; ``{"answer": ...}`` under a ``json_schema``."""
        tokens = question["sentence"].split()
        truth = any(
            " ".join(tokens[s:e]) == question["entity"] and kind == question["type"]
            for s, e, kind in spans(self.oracle_tags(tokens))
        )
        right = random.Random(f"{request_hash}:verify").random() < self.settings.verify_accuracy
        verdict = "yes" if truth == right else "no"
        fmt = body.get("response_format")
        text = (
            json.dumps({"answer": verdict})
            if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema"
            else verdict.capitalize() + "."
        )
        self.count("verified")
        return (
            200,
            {},
            simulated_completion(
                request_hash,
                model,
                body,
                [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
            ),
            self.settings.latency,
        )


def simulated_completion(request_hash: str, model: str, body: Mapping[str, Any], choices: list[dict]) -> dict:
    """A chat completion's payload; usage estimated as characters / 4."""
    prompt_tokens = sum(len(str(m.get("content") or "")) for m in body.get("messages") or []) // 4 + 1
    completion_tokens = sum(len(c["message"]["content"]) for c in choices) // 4 + 1
    return completion(
        f"simcmpl-{request_hash[:16]}", model, "nerdistill-simulated-teacher", choices, prompt_tokens, completion_tokens
    )


def structured_schema(body: Mapping[str, Any]) -> dict | None:
    """The JSON schema of a ``json_schema`` ``response_format`` with an ``entities`` array, else None."""
    fmt = body.get("response_format")
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    return schema if "entities" in (schema.get("properties") or {}) else None


def structured_answer(tokens: Sequence[str], entities: Sequence[tuple[str, str]], with_reasoning: bool) -> str:
    """The answer as the structured-output schema has it: ``{["reasoning",] "entities"}``."""
    answer: dict[str, Any] = {"reasoning": reasoning(tokens, entities, DESCRIPTIONS)} if with_reasoning else {}
    answer["entities"] = [{"text": text, "type": kind} for text, kind in entities]
    return json.dumps(answer, ensure_ascii=False)


def token_logprobs(text: str, judged: Sequence[tuple[str, str, bool]], rng: random.Random) -> list[dict]:
    """OpenAI-style ``logprobs.content`` for ``text``: near-certain tokens (p in [0.995, 1)), except each
    entity's type token, whose probability is drawn from :data:`RIGHT_BETA` where the entity is right
    and :data:`WRONG_BETA` where it is an error. Entities are found in order from just inside the last
    :data:`~nerdistill.teacher.prompts.ANSWER` marker it wrote, or from a JSON answer's ``"entities"`` key."""
    pieces = [m.group() for m in TOKEN.finditer(text)]
    probs = [rng.uniform(0.995, 1.0) for _ in pieces]
    starts = [0]
    for piece in pieces:
        starts.append(starts[-1] + len(piece))
    cursor = text.rfind(ANSWER) + 1
    if text.lstrip().startswith("{"):
        cursor = max(cursor, text.find('"entities"'))
    for entity, kind, right in judged:
        at = text.find(entity, cursor)
        if at < 0:
            continue
        type_at = text.find(kind, at + len(entity))
        if type_at < 0:
            continue
        cursor = type_at + len(kind)
        first = next(i for i, start in enumerate(starts) if start <= type_at < starts[i + 1])
        probs[first] = max(1e-6, rng.betavariate(*(RIGHT_BETA if right else WRONG_BETA)))
    return [
        {"token": p, "logprob": math.log(q), "bytes": list(p.encode("utf-8")), "top_logprobs": []}
        for p, q in zip(pieces, probs)
    ]


def misformatted(
    tokens: Sequence[str], entities: Sequence[tuple[str, str]], fmt: str, cot: bool, rng: random.Random
) -> str:
    """The answer in a format the prompt did not ask for: the other structured format, or prose."""
    if rng.random() < 0.5:
        return format_answer(tokens, entities, "lines" if fmt == "json" else "json", cot, DESCRIPTIONS)
    named = [f"{text}, {DESCRIPTIONS.get(kind, kind)}" for text, kind in entities]
    return (
        "The sentence mentions " + "; and ".join(named) + "."
        if named
        else "I could not find anything to annotate in this sentence."
    )


class SimServer(BackgroundServer):
    """The simulator, with its Batch API (:mod:`nerdistill.teacher.sim_batch`)."""

    name = "nerdistill-sim"

    def __init__(self, settings: SimSettings) -> None:
        super().__init__(settings)
        self.teacher = SimTeacher(settings)
        self.batches = SimBatches(self.teacher)


def main() -> None:
    import hydra
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    @hydra.main(version_base="1.3", config_path="../../conf", config_name="sim")
    def serve(cfg: DictConfig) -> None:
        server = SimServer(instantiate(cfg.teacher.sim)).start()
        log.info(
            "simulated teacher (SIMULATED labels) at %s, models %s; Ctrl-C stops it", server.url, server.settings.models
        )
        print(f"serving {server.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("stopping; requests: %s", dict(server.teacher.stats))
        finally:
            server.stop()

    serve()


if __name__ == "__main__":
    main()
