"""Per-entity confidence (token logprobs, else self-consistency agreement) and structured output
(a strict JSON schema as ``response_format``, the fallback when an endpoint refuses it)."""

import json
import logging
import math
import sqlite3
from pathlib import Path

import pytest

from nerdistill.annotate import annotate
from nerdistill.data import LabelSet, read_conll, spans
from nerdistill.data.weighted import read_weighted
from nerdistill.teacher import parse_response
from nerdistill.teacher.cache import CachedResponse, ResponseCache
from nerdistill.teacher.client import TeacherClient
from nerdistill.teacher.confidence import entity_confidences
from nerdistill.teacher.job import Call, confidences
from nerdistill.teacher.parser import Entity
from nerdistill.teacher.sim import SimServer, SimSettings, SimTeacher
from tests.conftest import compose_config

LABELS = LabelSet(("PER", "ORG", "LOC", "MISC"))
SURE = math.log(0.999)
KEY = "sk-nerdistill-test-structured-41d2"


def run(tmp_path: Path, name: str, overrides: list[str], cache: Path | None = None) -> dict:
    cfg = compose_config(
        "annotate",
        ["progress=false", "prompt.k=0", *overrides, *([f"cache={cache}"] if cache else [])],
        tmp_path / name,
    )
    return annotate(cfg)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "distilled.jsonl").read_text().splitlines()]


def tokens_with(pieces: list[tuple[str, float]]) -> tuple[str, tuple[tuple[int, float], ...]]:
    """An answer and its logprobs, as ``(UTF-8 byte length, logprob)`` per token."""
    return "".join(p for p, _ in pieces), tuple((len(p.encode()), lp) for p, lp in pieces)


def test_entity_confidence_is_the_probability_of_its_entry():
    text, logprobs = tokens_with(
        [
            ('{"entities": [{"text": "', SURE),
            ("EU", math.log(0.9)),
            ('", "type": "', SURE),
            ("ORG", math.log(0.8)),
            ('"}, {"text": "', SURE),
            ("Germ", math.log(0.5)),
            ("any", SURE),
            ('", "type": "', SURE),
            ("LOC", math.log(0.4)),
            ('"}]}', SURE),
        ]
    )
    tokens = ["EU", "rejects", "Germany", "call"]
    parsed = parse_response(text, tokens, LABELS)
    conf = entity_confidences(text, logprobs, parsed.entities)
    assert conf[(0, 1, "ORG")] == pytest.approx(0.9 * 0.8 * 0.999**2, rel=1e-6)  # from its text to its closing brace
    assert conf[(2, 3, "LOC")] == pytest.approx(0.5 * 0.4 * 0.999**3, rel=1e-6)
    # an entity without a mention in the answer gets the whole answer's probability, a lower bound
    lost = entity_confidences(text, logprobs, [Entity("Paris", "LOC", 0, 1)])
    assert lost[(0, 1, "LOC")] == pytest.approx(0.9 * 0.8 * 0.5 * 0.4 * 0.999**6, rel=1e-6)
    # logprobs that do not make up the text are not used
    assert entity_confidences(text + " ", logprobs, parsed.entities) is None
    assert entity_confidences(text, None, parsed.entities) is None


def test_lines_answer_after_reasoning_and_a_character_split_across_tokens():
    pieces = [("Step 1: ", SURE), ("Zürich", math.log(0.1)), (" is a city.\nAnswer:\n", SURE), ("Z", SURE)]
    text, logprobs = tokens_with(pieces)
    zu = "ü".encode()  # a byte-level tokenizer may split a character over two tokens, each with its bytes
    logprobs += ((1, SURE), (1, math.log(0.7)), (len("rich | "), SURE), (len("LOC"), math.log(0.6)))
    text += "ürich | LOC"
    assert len(zu) == 2 and sum(n for n, _ in logprobs) == len(text.encode())
    conf = entity_confidences(text, logprobs, parse_response(text, ["Zürich"], LABELS).entities)
    # only the final answer counts, not the low-probability mention in the reasoning
    assert conf[(0, 1, "LOC")] == pytest.approx(0.7 * 0.6 * 0.999**3, rel=1e-6)


def test_self_consistency_confidence_is_the_mean_over_samples_else_the_agreement():
    eu, de = Entity("EU", "ORG", 0, 1), Entity("Germany", "LOC", 2, 3)
    tokens = ["EU", "rejects", "Germany", "call"]

    def call(pieces, logprobs=True):
        text, lp = tokens_with(pieces)
        return Call(
            "k",
            False,
            CachedResponse(text, "stop", 1, 1, lp if logprobs else None),
            0,
            False,
            parse_response(text, tokens, LABELS),
        )

    a = call([("EU", math.log(0.8)), (" | ORG\n", 0.0), ("Germany", math.log(0.5)), (" | LOC", 0.0)])
    b = call([("EU", math.log(0.6)), (" | ORG", 0.0)])
    kept = [(eu, 1.0), (de, 0.5)]
    values, source = confidences([a, b], kept)
    assert source == "logprobs" and values == pytest.approx([0.7, 0.25])  # a sample without the entity adds 0
    values, source = confidences([a, call([("EU | ORG", 0.0)], logprobs=False)], kept)
    assert source == "agreement" and values == [1.0, 0.5]


def test_cache_keeps_logprobs_and_opens_files_made_before_them(tmp_path):
    path = tmp_path / "teacher.sqlite"
    db = sqlite3.connect(path)  # a cache as written before logprobs were stored
    db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema', 'nerdistill.teacher.cache/1')")
    db.execute(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, prompt TEXT NOT NULL,"
        " text TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER NOT NULL,"
        " completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
    )
    db.execute("INSERT INTO responses VALUES ('old', 'm', 'p@1', 'EU | ORG', 'stop', 5, 2, 0)")
    db.commit()
    db.close()
    with ResponseCache(path) as cache:
        assert cache.get("old") == CachedResponse("EU | ORG", "stop", 5, 2)
        cache.put("new", "m", "p@1", CachedResponse("EU | ORG", "stop", 5, 2, ((2, -0.1), (6, -0.5))))
    with ResponseCache(path) as cache:
        assert cache.get("new").logprobs == ((2, -0.1), (6, -0.5)) and cache.get("old").logprobs is None


def test_client_reads_the_simulators_logprobs_over_loopback(data_dir):
    import asyncio

    sentence = read_conll(data_dir / "conll2003" / "train.txt")[3]
    messages = [
        {"role": "system", "content": "Answer with JSON only."},
        {"role": "user", "content": "Sentence: " + " ".join(sentence.tokens)},
    ]

    async def ask(server, params):
        client = TeacherClient(server.url, "sim", max_retries=0)
        try:
            return await client.complete(messages, params)
        finally:
            await client.close()

    with SimServer(SimSettings(oracle=[str(data_dir / "conll2003" / "train.txt")], target_f1=1.0)) as server:
        plain = asyncio.run(ask(server, {"temperature": 0}))
        given = asyncio.run(ask(server, {"temperature": 0, "logprobs": True}))
    assert plain.logprobs is None and given.text == plain.text
    assert (
        given.logprobs
        and sum(n for n, _ in given.logprobs) == len(given.text.encode())
        and all(lp <= 0 for _, lp in given.logprobs)
    )


def test_simulated_confidence_is_higher_for_right_entities_and_feeds_a_weighted_pool(tmp_path):
    report = run(
        tmp_path,
        "run",
        ["input.n=200", "teacher.logprobs=true", "confidence_pool.write=true", "confidence_pool.outside=0.9"],
    )
    out = tmp_path / "run"
    right, wrong = [], []
    for row in rows(out):
        assert row["status"] == "annotated" and row["confidence_source"] == "logprobs"
        truth = set(spans(row["gold"]))
        for e in row["entities"]:
            assert 0.0 <= e["confidence"] <= 1.0
            (right if (e["start"], e["end"], e["type"]) in truth else wrong).append(e["confidence"])
    assert len(right) > 100 and len(wrong) > 30
    mean_right, mean_wrong = sum(right) / len(right), sum(wrong) / len(wrong)
    assert mean_right > mean_wrong + 0.15  # SIMULATED: the simulator's logprobs know its own errors
    c = report["confidence"]
    assert c["source"] == {"logprobs": len(right) + len(wrong)}
    assert c["mean_right"] == pytest.approx(mean_right, abs=1e-3) and c["mean_wrong"] == pytest.approx(
        mean_wrong, abs=1e-3
    )
    # the weighted pool: entity tokens weighted by their confidence, the rest by `outside`
    pool = {s.id: s for s in read_weighted(out / "distilled_weighted.jsonl", LABELS)}
    assert len(pool) == 200
    for row in rows(out):
        weights = [0.9] * len(row["tokens"])
        for e in row["entities"]:
            weights[e["start"] : e["end"]] = [e["confidence"]] * (e["end"] - e["start"])
        assert list(pool[row["id"]].weights) == pytest.approx(weights) and list(pool[row["id"]].tags) == row["tags"]


def test_without_logprobs_confidence_is_the_self_consistency_agreement(tmp_path):
    report = run(
        tmp_path,
        "run",
        ["input.n=12", "self_consistency.n=3", "self_consistency.min_agreement=0.3", "teacher.sim.target_f1=0.5"],
    )
    entities = [(r["confidence_source"], e) for r in rows(tmp_path / "run") for e in r["entities"]]
    assert entities and all(source == "agreement" and e["confidence"] == e["agreement"] for source, e in entities)
    assert {e["confidence"] for _, e in entities} == {round(1 / 3, 4), round(2 / 3, 4), 1.0}
    assert report["confidence"]["source"] == {"agreement": len(entities)}


def test_response_format_is_a_strict_schema_of_the_configured_labels(tmp_path):
    cfg = compose_config(
        "annotate", ["prompt.structured=true", "prompt=cot", "labels=[PER,ORG]", "prompt.k=0"], tmp_path
    )
    from hydra.utils import instantiate

    prompt = instantiate(cfg.prompt).setup(LabelSet(("PER", "ORG")))
    fmt = prompt.response_format()
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True and fmt["json_schema"]["name"]
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["reasoning", "entities"] and schema["additionalProperties"] is False
    item = schema["properties"]["entities"]["items"]
    assert item["properties"]["type"]["enum"] == ["PER", "ORG"] and item["required"] == ["text", "type"]
    with pytest.raises(Exception, match="format=json"):
        instantiate(cfg.prompt, format="lines")


@pytest.mark.parametrize("style", ["standard", "cot"])
def test_simulator_honours_the_schema_even_when_told_to_misbehave(style, data_dir):
    train = read_conll(data_dir / "conll2003" / "train.txt")[:60]
    teacher = SimTeacher(
        SimSettings(
            oracle=[str(data_dir / "conll2003" / "train.txt")],
            rate_malformed=0.3,
            rate_empty=0.3,
            rate_wrong_format=0.3,
            target_f1=0.5,
        )
    )
    system = "Think step by step. Answer with JSON." if style == "cot" else "Answer with JSON only."
    schema = {
        "type": "object",
        "properties": {
            **({"reasoning": {"type": "string"}} if style == "cot" else {}),
            "entities": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "type": {"type": "string", "enum": ["PER", "LOC"]}},
                },
            },
        },
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    plain_failures = 0
    for s in train:
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": "Sentence: " + " ".join(s.tokens)},
        ]
        answer = json.loads(
            teacher.chat({"model": "sim", "messages": messages, "response_format": fmt})[2]["choices"][0]["message"][
                "content"
            ]
        )
        assert list(answer) == [*(["reasoning"] if style == "cot" else []), "entities"]
        assert all(set(e) == {"text", "type"} and e["type"] in ("PER", "LOC") for e in answer["entities"])
        plain = teacher.chat({"model": "sim", "messages": messages})[2]["choices"][0]["message"]["content"]
        plain_failures += parse_response(plain, s.tokens).status == "unparseable"
    assert plain_failures > 10  # the same knobs do spoil plain answers


def test_structured_and_plain_requests_have_their_own_cache_keys(tmp_path):
    cache = tmp_path / "teacher.sqlite"
    plain = run(tmp_path, "plain", ["input.n=20"], cache)
    structured = run(tmp_path, "structured", ["input.n=20", "prompt.structured=true"], cache)
    again = run(tmp_path, "again", ["input.n=20"], cache)
    with_logprobs = run(tmp_path, "logprobs", ["input.n=20", "teacher.logprobs=true"], cache)
    assert (
        plain["calls"]["made"] > 0
        and structured["calls"]["made"] == plain["calls"]["made"]
        and structured["structured_output"]["used"] is True
    )
    assert again["calls"]["made"] == 0 and with_logprobs["calls"]["made"] == plain["calls"]["made"]
    sent = [r["responses"][0]["cache_key"] for r in rows(tmp_path / "structured")]
    assert not set(sent) & {r["responses"][0]["cache_key"] for r in rows(tmp_path / "plain")}


def test_refused_structured_output_warns_once_and_falls_back(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="nerdistill.teacher.job")
    monkeypatch.setenv("NERDISTILL_TEST_KEY", KEY)
    auth = ["teacher.api_key_env=NERDISTILL_TEST_KEY", "teacher.sim.api_key_env=NERDISTILL_TEST_KEY"]
    report = run(
        tmp_path, "run", ["input.n=30", "prompt.structured=true", "teacher.sim.refuse_response_format=true", *auth]
    )
    assert KEY not in caplog.text and all(
        KEY.encode() not in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()
    )
    warnings = [r for r in caplog.records if "refused structured output" in r.getMessage()]
    assert len(warnings) == 1 and "not supported" in warnings[0].getMessage()
    assert report["sentences"]["annotated"] == 30 and report["calls"]["failed"] == 0
    s = report["structured_output"]
    assert (
        s["requested"] is True and s["used"] is False and "response_format" in s["refusal"] and s["calls_refused"] >= 1
    )
    assert report["simulator"]["stats"]["refused_response_format"] == s["calls_refused"]
    # the answers came from plain requests: the same keys as a job that never asked for structure
    plain = run(
        tmp_path,
        "plain",
        ["input.n=30", "teacher.sim.refuse_response_format=true", *auth],
        tmp_path / "run" / "cache" / "teacher.sqlite",
    )
    assert plain["calls"]["made"] == 0


def test_refusal_knob_keeps_earlier_simulator_identities():
    assert (
        SimSettings(refuse_response_format=False).identity()
        == SimSettings().identity()
        != SimSettings(refuse_response_format=True).identity()
    )


def test_only_the_final_answer_counts_after_a_think_block():
    text, logprobs = tokens_with(
        [
            ("<think>", SURE),
            ("EU", math.log(0.05)),
            (" is an ORG</think>", SURE),
            ("EU", math.log(0.9)),
            (" | ORG", SURE),
        ]
    )
    assert entity_confidences(text, logprobs, parse_response(text, ["EU"], LABELS).entities)[
        (0, 1, "ORG")
    ] == pytest.approx(0.9 * 0.999, rel=1e-6)
    # without its mention, the whole final answer's probability: after the thinking
    assert entity_confidences(text, logprobs, [Entity("EU", "ORG", 0, 1)])[(0, 1, "ORG")] == pytest.approx(
        0.9 * 0.999, rel=1e-6
    )


def test_each_entity_is_scored_at_the_mention_it_was_read_from():
    """The entry starts where the parser read the mention, not at the first place its text occurs."""
    tokens = "York and New York Times".split()
    text, logprobs = tokens_with(
        [
            ("New York Times", math.log(0.9)),
            (" | ", SURE),
            ("ORG", math.log(0.8)),
            ("\n", SURE),
            ("York", math.log(0.5)),
            (" | LOC", SURE),
        ]
    )
    conf = entity_confidences(text, logprobs, parse_response(text, tokens, LABELS).entities)
    # "York" on its own line
    assert conf == pytest.approx({(2, 5, "ORG"): 0.9 * 0.8 * 0.999, (0, 1, "LOC"): 0.5 * 0.999})
    # a punctuation-only entity: its JSON string, not a comma of the list
    text, logprobs = tokens_with(
        [
            ('{"entities": [{"text": "KANSAS CITY", "type": "LOC"}', SURE),
            (", ", math.log(0.1)),
            ('{"text": "', SURE),
            (",", math.log(0.6)),
            ('", "type": "MISC"}]}', SURE),
        ]
    )
    conf = entity_confidences(text, logprobs, parse_response(text, "KANSAS CITY , Mo".split(), LABELS).entities)
    assert conf[(2, 3, "MISC")] == pytest.approx(0.6 * 0.999, rel=1e-6)
    # a mention not written verbatim (a JSON escape) gets the whole answer's probability, from its "entities" key on
    text, logprobs = tokens_with(
        [
            ("{", math.log(0.5)),
            ('"entities": [{"text": "Z\\u00fcrich", "type": "', SURE),
            ("LOC", math.log(0.6)),
            ('"}]}', SURE),
        ]
    )
    conf = entity_confidences(text, logprobs, parse_response(text, ["Zürich"], LABELS).entities)
    assert conf[(0, 1, "LOC")] == pytest.approx(0.6 * 0.999**2, rel=1e-6)
