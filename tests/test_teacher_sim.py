"""The simulated teacher: noise calibration, determinism, faults per attempt, the HTTP API."""

import os
import random
import subprocess
import sys
import time

import openai
import pytest

from nerdistill.data import LabelSet, read_conll, spans
from nerdistill.data.pools import take_budget
from nerdistill.metrics import ner_metrics
from nerdistill.teacher import parse_response
from nerdistill.teacher.noise import NoiseModel, intensity
from nerdistill.teacher.sim import SimServer, SimSettings, SimTeacher, find_sentence, prompt_style
from tests.conftest import ROOT

SYSTEM = {"role": "system", "content": "Annotate named entities. Answer with JSON only."}


@pytest.fixture(scope="module")
def train(data_dir):
    return read_conll(data_dir / "conll2003" / "train.txt")


def body(tokens, system=SYSTEM, **params):
    return {
        "model": "sim",
        "messages": [system, {"role": "user", "content": "Sentence: " + " ".join(tokens)}],
        "temperature": 0,
        **params,
    }


def settings(data_dir, **kw):
    return SimSettings(oracle=[str(data_dir / "conll2003" / "train.txt")], **kw)


def test_intensity_solves_the_f1_equation():
    mix = {"missed": 0.35, "type": 0.3, "boundary": 0.2, "spurious": 0.15}
    for target in (0.0, 0.5, 0.65, 0.73, 0.95, 1.0):
        lam = intensity(target, mix)
        tp, predicted = 1 - 0.85 * lam, 1 - 0.35 * lam + 0.15 * lam
        assert 2 * tp / (predicted + 1) == pytest.approx(target)
    assert NoiseModel(1.0, ("PER",)).rates == {"missed": 0.0, "type": 0.0, "boundary": 0.0, "spurious": 0.0}
    with pytest.raises(ValueError):
        intensity(1.2, mix)


def test_no_noise_returns_the_oracle(train):
    model = NoiseModel(1.0, LabelSet().types)
    for s in train[:200]:
        assert model.corrupt(s.tokens, spans(s.tags), random.Random(1))[0] == sorted(spans(s.tags))


@pytest.mark.parametrize("target", [0.65, 0.73])
def test_measured_f1_lands_on_target_over_1000_sentences(target, data_dir, train):
    teacher = SimTeacher(settings(data_dir, target_f1=target))
    sentences = take_budget(train, 1000, 0, "n")
    predicted = []
    for s in sentences:
        status, _, payload, _ = teacher.chat(body(s.tokens))
        assert status == 200
        predicted.append(parse_response(payload["choices"][0]["message"]["content"], s.tokens).tags)
    f1 = ner_metrics([s.tags for s in sentences], predicted)["micro"]["f1"]
    assert abs(f1 - target) < 0.02


def test_deterministic_per_request_and_seed(data_dir, train):
    s = train[5]
    a, b = SimTeacher(settings(data_dir, target_f1=0.3)), SimTeacher(settings(data_dir, target_f1=0.3))
    answers = [a.chat(body(s.tokens, seed=i))[2]["choices"][0]["message"]["content"] for i in range(6)]
    assert answers == [b.chat(body(s.tokens, seed=i))[2]["choices"][0]["message"]["content"] for i in range(6)]
    assert len(set(answers)) > 1  # a different request (here: sample seed) may get a different answer
    other = SimTeacher(settings(data_dir, target_f1=0.3, seed=7))
    assert answers != [other.chat(body(s.tokens, seed=i))[2]["choices"][0]["message"]["content"] for i in range(6)]


def test_faults_are_decided_per_attempt_so_retries_succeed(data_dir, train):
    teacher = SimTeacher(settings(data_dir, rate_429=0.4, rate_500=0.3, target_f1=1.0))
    request = body(train[1].tokens)
    statuses = [teacher.chat(request)[0] for _ in range(30)]
    assert {429, 500, 200} <= set(statuses)
    again = SimTeacher(settings(data_dir, rate_429=0.4, rate_500=0.3, target_f1=1.0))
    assert statuses == [again.chat(request)[0] for _ in range(30)]
    ok = [teacher.chat(request) for _ in range(40)]
    assert len({p["choices"][0]["message"]["content"] for st, _, p, _ in ok if st == 200}) == 1


def test_malformed_and_truncated_answers(data_dir, train):
    teacher = SimTeacher(settings(data_dir, rate_malformed=0.5, rate_truncated=0.5, target_f1=1.0))
    s = next(s for s in train if len(spans(s.tags)) >= 2)
    results = [teacher.chat(body(s.tokens))[2]["choices"][0] for _ in range(20)]
    assert any(r["finish_reason"] == "length" for r in results)
    assert any(
        parse_response(r["message"]["content"], s.tokens).status == "unparseable"
        for r in results
        if r["finish_reason"] == "stop"
    )


def test_empty_and_wrongly_formatted_answers(data_dir, train):
    teacher = SimTeacher(settings(data_dir, rate_empty=0.5, rate_wrong_format=0.5, target_f1=1.0))
    s = next(s for s in train if len(spans(s.tags)) >= 2)
    texts = [teacher.chat(body(s.tokens))[2]["choices"][0]["message"]["content"] for _ in range(30)]
    assert teacher.stats["fault_empty"] + teacher.stats["fault_wrong_format"] == 30 and "" in texts
    wrong = [parse_response(t, s.tokens) for t in texts if t]
    assert any(p.status == "unparseable" for p in wrong)  # prose
    assert any(p.tags == list(s.tags) for p in wrong)  # the lines format, though the prompt asked for JSON
    assert not any(t.startswith("{") for t in texts)


def test_timeouts_are_never_answered_and_dropped_connections_close():
    request = body(["Peter", "Blackburn"])
    with SimServer(SimSettings(oracle=[], rate_timeout=1.0, hang=60)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=1, timeout=0.2)
        with pytest.raises(openai.APITimeoutError):  # held for up to 60 s: a timeout at any client speed
            client.chat.completions.create(model="sim", messages=request["messages"])
        assert server.teacher.stats["fault_timeout"] == 2 and "answered" not in server.teacher.stats
    with SimServer(SimSettings(oracle=[], rate_dropped=1.0)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=1, timeout=30)
        with pytest.raises(openai.APIConnectionError) as err:
            client.chat.completions.create(model="sim", messages=request["messages"])
        assert type(err.value) is openai.APIConnectionError  # not its subclass APITimeoutError
        assert server.teacher.stats["fault_dropped"] == 2 and "answered" not in server.teacher.stats


def test_answered_again_counts_a_request_repeated_after_its_answer(data_dir):
    teacher = SimTeacher(settings(data_dir, target_f1=1.0))
    teacher.chat(body(["Peter"]))
    teacher.chat(body(["Blackburn"]))
    assert "answered_again" not in teacher.stats
    teacher.chat(body(["Peter"]))
    assert teacher.stats["answered"] == 3 and teacher.stats["answered_again"] == 1


def test_later_fault_knobs_keep_earlier_identities():
    assert SimSettings(oracle=["train.txt"]).identity() == "sim:81e1fd478acef6cd"  # as before they existed
    assert SimSettings(oracle=["train.txt"], rate_empty=0.1).identity() != "sim:81e1fd478acef6cd"


def test_answers_in_the_format_and_style_asked_for(data_dir, train):
    teacher = SimTeacher(settings(data_dir, target_f1=1.0))
    s = train[0]  # EU rejects German call to boycott British lamb .
    lines = teacher.chat(body(s.tokens, {"role": "system", "content": "One entity per line as <entity> | <TYPE>."}))[2]
    assert lines["choices"][0]["message"]["content"] == "EU | ORG\nGerman | MISC\nBritish | MISC"
    cot = teacher.chat(body(s.tokens, {"role": "system", "content": "Think step by step. Answer with JSON."}))[2][
        "choices"
    ][0]["message"]["content"]
    assert cot.startswith("Step 1 - Context") and "\nAnswer:\n{" in cot
    assert parse_response(cot, s.tokens).tags == list(s.tags)
    assert prompt_style([{"role": "system", "content": "think STEP BY STEP, json"}]) == ("cot", "json")
    assert find_sentence(
        [
            {"role": "user", "content": "Sentence: a b"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "again"},
        ]
    ) == ["a", "b"]


def test_http_api_with_the_openai_client_and_key_check(data_dir, monkeypatch):
    monkeypatch.setenv("NERDISTILL_SIM_TEST_KEY", "sim-secret-123")
    with SimServer(settings(data_dir, target_f1=1.0, api_key_env="NERDISTILL_SIM_TEST_KEY")) as server:
        client = openai.OpenAI(base_url=server.url, api_key="sim-secret-123", max_retries=0)
        assert [m.id for m in client.models.list()] == ["sim"]
        assert client.models.retrieve("sim").id == "sim"
        reply = client.chat.completions.create(model="sim", messages=body(["Peter", "Blackburn"])["messages"])
        assert reply.choices[0].message.content == '{"entities": [{"text": "Peter Blackburn", "type": "PER"}]}'
        assert reply.usage.total_tokens > 0 and reply.system_fingerprint == "nerdistill-simulated-teacher"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-9", messages=body(["x"])["messages"])


def test_standalone_server_runs_for_other_clients(data_dir, tmp_path):
    env = {**os.environ, "NERDISTILL_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nerdistill.teacher.sim", f"hydra.run.dir={tmp_path}", "teacher.sim.oracle=[]"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        deadline = time.time() + 60
        while not line.startswith("serving") and time.time() < deadline:
            line = proc.stdout.readline()
        url = line.split()[1]
        assert [m.id for m in openai.OpenAI(base_url=url, api_key="x", max_retries=0).models.list()] == ["sim"]
    finally:
        proc.terminate()
        proc.wait(10)
