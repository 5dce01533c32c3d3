"""``kill -9`` in the middle of an annotation job or a training run, then resume: the result is
the uninterrupted run's.

No sleeping and hoping: the test holds the simulated teacher's answers after a fixed number of
requests, and the training run after some steps past its first checkpoint, so the killed job
cannot finish before the kill. Every wait has a generous overall deadline.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nerdistill.annotate import annotate
from nerdistill.teacher.server import NO_RESPONSE
from nerdistill.teacher.sim import SimServer, SimSettings
from tests.conftest import ROOT, TINY_TRAIN, compose_config

KEY = "sk-nerdistill-kill-test-2c81"
DEADLINE_S = (
    600  # for any one wait or job: far above what each takes, even on a loaded 2-core machine (a job there took 4 min)
)


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail (with the process's stderr) if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"the process ended (rc {proc.returncode}) before {what}:\n"
                f"{proc.stderr.read().decode()[-4000:] if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and everything it started (it runs in its own session)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def env() -> dict[str, str]:
    from tests.conftest import DATA_DIR

    return {**os.environ, "PYTHONPATH": str(ROOT), "NERDISTILL_DATA_DIR": str(DATA_DIR), "NERDISTILL_TEST_KEY": KEY}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_rows(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=60)
    try:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # the job has not created the table yet
        return 0
    finally:
        db.close()


class GatedSim(SimServer):
    """The simulated teacher, in this process so that its request counts outlive the killed job.
    With ``gate`` set, it serves the first ``gate`` requests and holds every later one unanswered
    until :meth:`stop` (then hangs up on it without answering): a job against it cannot finish."""

    def __init__(self, settings: SimSettings, gate: int | None = None) -> None:
        super().__init__(settings)
        self.gate, self.started, self.served = gate, 0, 0
        self.lock, self.release = threading.Lock(), threading.Event()
        chat = self.teacher.chat

        def gated_chat(body):
            with self.lock:
                held = self.gate is not None and self.started >= self.gate
                self.started += not held
            if held:
                self.release.wait(DEADLINE_S)
                return NO_RESPONSE, {}, {}, 0.0
            try:
                return chat(body)
            finally:
                with self.lock:
                    self.served += 1

        self.teacher.chat = gated_chat

    @property
    def answered(self) -> set[str]:
        """Hashes of the requests given a 200 answer (each at most once: see ``answered_again``)."""
        return set(self.teacher.answered)

    def stop(self) -> None:
        self.release.set()
        super().stop()


def strip_run_history(jsonl: Path) -> list[dict]:
    """distilled.jsonl without what says which run made a call: ``cached`` (true for the calls the
    killed run finished). There are no timing fields in it."""
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        for response in row["responses"]:
            response.pop("cached")
    return rows


@pytest.mark.slow
def test_kill_9_midway_through_annotation_then_resume_gives_the_uninterrupted_result(tmp_path, data_dir, monkeypatch):
    """A few hundred sentences against the simulated teacher with faults (429, 500, malformed
    answers and their re-asks). The job is killed with SIGKILL once the teacher has served
    ``GATE`` requests and every answer it gave is in the cache; the same command then resumes.
    The simulator runs in this process on one fixed port (a fresh one per job, as with
    ``teacher=sim``, so each job sees the same faults), so that cache keys, and so the outputs,
    are the same in every run, and so that its counts survive the kill."""
    n, gate = 200, 60
    monkeypatch.setenv("NERDISTILL_TEST_KEY", KEY)
    settings = SimSettings(
        oracle=[str(data_dir / "conll2003" / "train.txt")],
        api_key_env="NERDISTILL_TEST_KEY",
        latency=0.01,
        rate_429=0.1,
        rate_500=0.05,
        rate_malformed=0.05,
        retry_after_ms=10,
        port=free_port(),
    )
    overrides = [
        "teacher=openai",
        "teacher.model=sim",
        f"teacher.base_url=http://127.0.0.1:{settings.port}/v1",
        "teacher.api_key_env=NERDISTILL_TEST_KEY",
        "teacher.client.concurrency=8",
        f"input.n={n}",
        "prompt.k=0",
        "progress=false",
    ]

    # the uninterrupted run, with its own cache
    with GatedSim(settings) as sim:
        reference = annotate(compose_config("annotate", overrides, tmp_path / "reference"))
        assert sim.teacher.stats["fault_429"] > 0 and sim.teacher.stats["fault_malformed"] > 0
    assert reference["calls"]["made"] == cache_rows(tmp_path / "reference" / "cache" / "teacher.sqlite") > n
    assert reference["sentences"]["annotated"] + reference["sentences"]["failed"] == n

    run_dir, cache = tmp_path / "killed", tmp_path / "cache" / "teacher.sqlite"
    command = [sys.executable, "-m", "nerdistill.annotate", *overrides, f"hydra.run.dir={run_dir}", f"cache={cache}"]
    with GatedSim(settings, gate=gate) as killed:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            # every request it will get served, served, and every answer given received and committed
            wait_for(
                lambda: killed.served == gate and cache_rows(cache) == killed.teacher.stats["answered"],
                f"{gate} requests served and cached",
                proc,
            )
        finally:
            kill_group(proc)
    before = cache_rows(cache)
    assert 0 < before == len(killed.answered) < reference["calls"]["made"]
    for name in ("distilled.conll", "distilled.jsonl", "report.json", "report.md"):
        assert not (run_dir / name).exists(), f"{name} exists after the kill"

    with GatedSim(settings) as resumed:
        done = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, timeout=DEADLINE_S)
        assert done.returncode == 0, done.stderr.decode()[-4000:]
    report = json.loads((run_dir / "report.json").read_text())

    # no call the killed run finished was made again: the teacher never answered a request twice
    # across the two jobs, and the resumed job made exactly the calls the cache lacked
    assert not resumed.answered & killed.answered
    assert report["calls"]["made"] == resumed.teacher.stats["answered"] == cache_rows(cache) - before
    assert cache_rows(cache) == cache_rows(tmp_path / "reference" / "cache" / "teacher.sqlite")
    # ... and the distilled set is the uninterrupted run's
    ref_dir = tmp_path / "reference"
    assert (run_dir / "distilled.conll").read_bytes() == (ref_dir / "distilled.conll").read_bytes()
    assert strip_run_history(run_dir / "distilled.jsonl") == strip_run_history(ref_dir / "distilled.jsonl")
    assert report["sentences"] == reference["sentences"] and report["quality"] == reference["quality"]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_kill_9_midway_through_training_then_resume_gives_the_uninterrupted_run(tmp_path, data_dir):
    """Three jobs of one command on the CPU: the uninterrupted run; a run killed with SIGKILL three
    steps into its second epoch (the steps after its first checkpoint are lost); that run resumed
    from its ``last.ckpt`` into a new output dir. The resumed run redoes the lost steps on the same
    batches, dropout masks and learning rates: the same per-step losses and learning rates, the
    same validation scores, the same best checkpoint tested, the same metrics.json (timings and
    the best checkpoint's folder aside) and byte-identical exported weights."""
    overrides = [
        *(o for o in TINY_TRAIN if o != "logger=none"),
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "schedule=linear",
        "trainer.max_epochs=3",
        f"paths.data_dir={data_dir}",
    ]
    command = [sys.executable, "-m", "nerdistill.train", *overrides]

    def run(name: str, *extra: str) -> None:
        done = subprocess.run(
            [*command, f"hydra.run.dir={tmp_path / name}", *extra],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            timeout=DEADLINE_S,
        )
        assert done.returncode == 0, done.stderr.decode()[-4000:]

    run("reference")
    killed, marker = tmp_path / "killed", tmp_path / "paused"
    pause = ["+callbacks.pause._target_=tests.kill_pause.PauseMidSecondEpoch", f"+callbacks.pause.marker={marker}"]
    proc = subprocess.Popen(
        [*command, f"hydra.run.dir={killed}", *pause],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(marker.exists, "three steps into the second epoch", proc)
    finally:
        kill_group(proc)
    last = killed / "checkpoints" / "last.ckpt"
    assert last.exists() and not (killed / "metrics.json").exists() and not (killed / "model").exists()
    run("resumed", f"ckpt_path={last}")

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    plan = json.loads((reference / "plan.json").read_text())
    assert plan["epochs"] == 3 and json.loads((resumed / "plan.json").read_text()) == plan
    expected, got = (json.loads((run_dir / "metrics.json").read_text()) for run_dir in (reference, resumed))
    assert expected["global_step"] == plan["total_steps"] == got["global_step"]
    # the same epoch's checkpoint tested: in the killed run's folder when it came before the kill
    assert Path(got["best_checkpoint"]).name == Path(expected["best_checkpoint"]).name
    assert {k: v for k, v in got.items() if k not in ("timing", "best_checkpoint")} == {
        k: v for k, v in expected.items() if k not in ("timing", "best_checkpoint")
    }
    assert (resumed / "model" / "model.safetensors").read_bytes() == (
        reference / "model" / "model.safetensors"
    ).read_bytes()

    # step by step: the resumed run logs the uninterrupted run's rows from the step it resumed at
    # (train loss and LR every step, every validation score, the test scores)
    logged, relogged = read_csv(reference / "csv" / "metrics.csv"), read_csv(resumed / "csv" / "metrics.csv")
    first = int(relogged[0]["step"])
    assert 0 < first < plan["steps_per_epoch"] * 2  # resumed from the first epoch's checkpoint, before the steps lost
    assert [row for row in logged if int(row["step"]) >= first] == relogged
    assert (
        sum(bool(row["train/loss"]) for row in relogged) == plan["total_steps"] - first
        and sum(bool(row["val/f1"]) for row in relogged) == 2
    )
    # the share log: the killed run's rows before the resume, then the resumed run's
    share = read_csv(reference / "distilled_share.csv")
    assert [row for row in read_csv(killed / "distilled_share.csv") if int(row["step"]) < first] + read_csv(
        resumed / "distilled_share.csv"
    ) == share
