"""``teacher.mode=batch`` against the simulated teacher's Batch API: the online run's output,
resume after a kill while polling, failed and expired batches, the batch rate."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from nerdistill.annotate import annotate
from nerdistill.teacher.report import cost
from nerdistill.teacher.sim import SimServer, SimSettings
from tests.conftest import DATA_DIR, ROOT, compose_config

KEY = "sk-nerdistill-batch-test-5e0d71"
BATCH = ["teacher.mode=batch", "teacher.batch.poll_interval=0.01"]
# re-asks: a second round of batches
ANSWER_FAULTS = ["teacher.sim.rate_malformed=0.1", "teacher.sim.rate_truncated=0.05"]


def run(out: Path, overrides: list[str], cache: Path) -> dict:
    return annotate(compose_config("annotate", ["progress=false", "prompt.k=0", *overrides, f"cache={cache}"], out))


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "distilled.jsonl").read_text().splitlines()]


def cache_keys(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT key FROM responses")}
    finally:
        db.close()


def batch_rows(path: Path) -> list[tuple]:
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=60)
    try:
        return db.execute("SELECT batch_id, status FROM batches").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def test_batch_run_gives_the_online_run_output_at_the_batch_rate(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("NERDISTILL_TEST_KEY", KEY)
    common = [
        "input.n=40",
        "teacher.api_key_env=NERDISTILL_TEST_KEY",
        "teacher.sim.api_key_env=NERDISTILL_TEST_KEY",
        "prices.sim.input=1.0",
        "prices.sim.output=2.0",
        *ANSWER_FAULTS,
    ]
    online = run(tmp_path / "online", common, tmp_path / "online.sqlite")
    batch = run(tmp_path / "batch", [*common, *BATCH, "teacher.sim.batch_per_poll=7"], tmp_path / "batch.sqlite")

    assert (tmp_path / "batch" / "distilled.conll").read_bytes() == (
        tmp_path / "online" / "distilled.conll"
    ).read_bytes()
    assert rows(tmp_path / "batch") == rows(tmp_path / "online")  # same answers, parses, cache keys, made/cached flags
    for part in ("sentences", "quality", "parse", "calls", "tokens", "confidence"):
        assert batch[part] == online[part], part
    assert cache_keys(tmp_path / "batch.sqlite") == cache_keys(tmp_path / "online.sqlite")
    assert online["calls"]["reasked"] > 0  # so the batch run needed a second round

    stats, summary = batch["simulator"]["stats"], batch["batch"]
    assert stats["batches_created"] == 2 and stats["batch_requests"] == batch["calls"]["made"] == stats["answered"]
    assert stats.get("answered_again", 0) == 0 and "batch_requests" not in online["simulator"]["stats"]
    assert [b["status"] for b in summary["batches"]] == ["completed", "completed"] and not any(
        b["resumed"] for b in summary["batches"]
    )
    assert summary["requests"] == {
        "submitted": batch["calls"]["made"],
        "resumed": 0,
        "answered": batch["calls"]["made"],
        "unanswered": 0,
    }

    # the batch rate: half the online price for the same tokens
    assert (
        online["cost"]["rate"] == "online" and batch["cost"]["rate"] == "batch" and batch["cost"]["price_factor"] == 0.5
    )
    assert online["cost"]["this_run"] > 0 and batch["cost"]["this_run"] == pytest.approx(
        online["cost"]["this_run"] / 2, abs=1e-6
    )
    assert batch["cost"]["this_run"] == cost(batch["tokens"]["made"], {"input": 1.0, "output": 2.0}, 0.5)
    assert "at the batch rate" in (tmp_path / "batch" / "report.md").read_text()

    # a re-run makes no calls and submits nothing
    again = run(tmp_path / "again", [*common, *BATCH], tmp_path / "batch.sqlite")
    assert (
        again["calls"]["made"] == 0
        and again["batch"]["batches"] == []
        and "batches_created" not in again["simulator"]["stats"]
    )
    assert (tmp_path / "again" / "distilled.conll").read_bytes() == (
        tmp_path / "online" / "distilled.conll"
    ).read_bytes()

    inputs = list((tmp_path / "batch" / "batches").glob("*.jsonl"))
    assert len(inputs) == 2 and all(
        json.loads(line)["url"] == "/v1/chat/completions" for line in inputs[0].read_text().splitlines()
    )
    assert all(KEY.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("fate", ["failed", "expired"])
def test_a_failed_or_expired_batch_leaves_its_requests_uncached_and_a_rerun_submits_them(fate, tmp_path, data_dir):
    cache = tmp_path / "teacher.sqlite"
    common = ["input.n=20", *BATCH, "teacher.sim.batch_per_poll=6"]
    first = run(tmp_path / "run1", [*common, f"teacher.sim.batch_rate_{fate}=1.0"], cache)
    answered = 6 if fate == "expired" else 0  # an expiring batch answers its first poll's requests
    reason = "BatchFailed" if fate == "failed" else "BatchExpired"

    assert first["sentences"]["annotated"] == answered and first["sentences"]["failed_by_reason"] == {
        reason: 20 - answered
    }
    assert first["calls"] == {"made": answered, "cached": 0, "failed": 20 - answered, "reasked": 0}
    (seen,) = first["batch"]["batches"]
    assert seen["status"] == fate and seen["answered"] == answered and seen["errors"] == {reason: 20 - answered}
    assert seen["reason"] == (
        "simulated_failure: The batch failed validation (simulated)." if fate == "failed" else "expired"
    )
    assert len(cache_keys(cache)) == answered
    failed = [r for r in rows(tmp_path / "run1") if r["status"] == "failed"]
    assert len(failed) == 20 - answered and all(r["reason"] == reason and "batch_sim" in r["errors"][0] for r in failed)

    second = run(tmp_path / "run2", common, cache)  # the batch knobs are not in the cache keys' identity
    assert second["simulator"]["stats"]["batch_requests"] == 20 - answered  # exactly the requests left uncached
    assert (
        second["sentences"]["annotated"] == 20
        and second["calls"]["made"] == 20 - answered
        and second["calls"]["cached"] == answered
    )
    assert len(cache_keys(cache)) == 20


def test_kill_while_polling_then_rerun_collects_the_batch_without_submitting_again(tmp_path, data_dir, monkeypatch):
    """The job is SIGKILLed while its batch is in flight (the simulator holds it at ``validating``);
    the same command then collects that batch: one batch created, no custom_id submitted twice."""
    monkeypatch.setenv("NERDISTILL_TEST_KEY", KEY)
    settings = SimSettings(
        oracle=[str(data_dir / "conll2003" / "train.txt")], api_key_env="NERDISTILL_TEST_KEY", batch_per_poll=5
    )
    cache, out = tmp_path / "cache" / "teacher.sqlite", tmp_path / "run"
    with SimServer(settings) as sim:
        overrides = [
            "teacher=openai",
            "teacher.model=sim",
            f"teacher.base_url={sim.url}",
            "teacher.api_key_env=NERDISTILL_TEST_KEY",
            "input.n=30",
            "prompt.k=0",
            *BATCH,
        ]
        command = [
            sys.executable,
            "-m",
            "nerdistill.annotate",
            *overrides,
            "progress=false",
            f"hydra.run.dir={out}",
            f"cache={cache}",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NERDISTILL_DATA_DIR": str(DATA_DIR)}
        advance = sim.batches.advance
        sim.batches.advance = lambda batch, work: None  # held: the batch stays `validating`
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 600  # a bound for a hung job, not a speed assumption
            # recorded, and being polled
            while not (batch_rows(cache) and batch_rows(cache)[0][0] and sim.teacher.stats["batch_polls"] >= 2):
                assert proc.poll() is None and time.monotonic() < deadline, (
                    proc.stderr.read().decode()[-4000:] if proc.poll() is not None else "timed out"
                )
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        assert batch_rows(cache) == [(next(iter(sim.batches.batches)), "validating")] and cache_keys(cache) == set()
        assert not (out / "report.json").exists()

        sim.batches.advance = advance
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-4000:]
        assert sim.teacher.stats["batches_created"] == 1 and max(sim.batches.custom_ids.values()) == 1
        assert sim.teacher.stats["answered"] == 30 and sim.teacher.stats.get("answered_again", 0) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["batch"]["requests"] == {"submitted": 0, "resumed": 30, "answered": 30, "unanswered": 0}
    assert report["sentences"]["annotated"] == 30 and report["calls"]["made"] == 30 == len(cache_keys(cache))
    assert batch_rows(cache)[0][1] == "collected"
    assert all(KEY.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_simulator_batch_api_through_the_openai_client(data_dir, tmp_path):
    train = data_dir / "conll2003" / "train.txt"
    tokens = train.read_text().split("\n\n")[1].split("\n")
    sentence = " ".join(line.split()[0] for line in tokens if line.strip())
    body = {
        "model": "sim",
        "messages": [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": f"Sentence: {sentence}"},
        ],
    }
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": {**body, "seed": i}}
        for i in range(5)
    ]
    with SimServer(SimSettings(oracle=[str(train)], batch_per_poll=2)) as sim:
        client = openai.OpenAI(base_url=sim.url, api_key="none", max_retries=0)
        uploaded = client.files.create(
            file=("in.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode(), "application/jsonl"),
            purpose="batch",
        )
        assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        statuses = [batch.status]
        while statuses[-1] != "completed":
            batch = client.batches.retrieve(batch.id)
            statuses.append(batch.status)
        assert statuses == ["validating", "in_progress", "in_progress", "in_progress", "completed"]
        assert batch.request_counts.completed == batch.request_counts.total == 5 and batch.error_file_id is None
        output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
        online = client.chat.completions.create(**lines[3]["body"])
        assert [o["custom_id"] for o in output] == [f"r{i}" for i in range(5)]
        assert output[3]["response"]["body"]["choices"][0]["message"]["content"] == online.choices[0].message.content
        assert [b.id for b in client.batches.list()] == [batch.id]

        other = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        client.batches.retrieve(other.id)
        client.batches.retrieve(other.id)  # 2 of 5 answered
        cancelled = client.batches.cancel(other.id)
        assert cancelled.status == "cancelled" and cancelled.request_counts.completed == 2
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")


def test_a_batch_the_endpoint_no_longer_knows_is_submitted_again(tmp_path, data_dir, monkeypatch):
    """``teacher=sim`` keeps its batches in memory: a job that crashed while polling leaves a batch
    its next simulator never saw. The next run records it as lost and submits its requests again."""
    from nerdistill.teacher.batch import BatchRunner

    cache, common = tmp_path / "teacher.sqlite", ["input.n=10", *BATCH]

    async def crash(self, record):
        raise RuntimeError("simulated crash while polling")

    with monkeypatch.context() as patch:
        patch.setattr(BatchRunner, "wait", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(tmp_path / "run1", common, cache)
    assert [status for _, status in batch_rows(cache)] == ["validating"] and cache_keys(cache) == set()
    report = run(tmp_path / "run2", common, cache)
    assert report["batch"]["requests"]["submitted"] == 10 and report["sentences"]["annotated"] == 10
    assert sorted(status for _, status in batch_rows(cache)) == ["collected", "lost"]


def test_a_batch_created_but_not_recorded_is_found_not_created_again(tmp_path, data_dir, monkeypatch):
    """A crash between ``batches.create`` and recording its id: the next run finds the batch by its
    input file among the endpoint's batches and collects it."""
    from nerdistill.teacher.cache import ResponseCache

    cache = tmp_path / "teacher.sqlite"
    update = ResponseCache.update_batch

    def crash_on_the_id(self, input_file_id, status, batch_id=None, reason=None):
        if batch_id is not None:
            raise RuntimeError("simulated crash after batches.create")
        update(self, input_file_id, status, batch_id, reason)

    with SimServer(SimSettings(oracle=[str(data_dir / "conll2003" / "train.txt")])) as sim:
        common = [
            "teacher=openai",
            "teacher.model=sim",
            f"teacher.base_url={sim.url}",
            "teacher.api_key_env=null",
            "input.n=10",
            *BATCH,
        ]
        with monkeypatch.context() as patch:
            patch.setattr(ResponseCache, "update_batch", crash_on_the_id)
            with pytest.raises(RuntimeError, match="simulated crash"):
                run(tmp_path / "run1", common, cache)
        assert batch_rows(cache) == [(None, "uploaded")]
        report = run(tmp_path / "run2", common, cache)
        assert sim.teacher.stats["batches_created"] == 1 and max(sim.batches.custom_ids.values()) == 1
    assert report["batch"]["requests"]["resumed"] == 10 and report["sentences"]["annotated"] == 10
    assert batch_rows(cache) == [(next(iter(sim.batches.batches)), "collected")]


def test_an_endpoint_without_a_batch_api_is_a_clear_error(tmp_path, data_dir):
    from nerdistill.teacher.client import TeacherError
    from nerdistill.teacher.server import error

    with SimServer(SimSettings(oracle=[str(data_dir / "conll2003" / "train.txt")])) as sim:
        sim.batches.upload = lambda content_type, raw: (404, error("no route /v1/files", "not_found"))
        overrides = [
            "teacher=openai",
            "teacher.model=sim",
            f"teacher.base_url={sim.url}",
            "teacher.api_key_env=null",
            "teacher.client.max_retries=0",
            "input.n=3",
            *BATCH,
        ]
        with pytest.raises(
            TeacherError, match=r"the Batch API at .* failed \(NotFoundError: .*run the same command again to resume"
        ):
            run(tmp_path / "run", overrides, tmp_path / "teacher.sqlite")
