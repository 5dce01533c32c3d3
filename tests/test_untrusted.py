"""Secrets and untrusted files: the API key is written nowhere (annotation and training, on the
command line, W&B offline included); checkpoints load with ``weights_only=True``; the response
cache holds text and numbers, no pickles; nothing from an LLM answer is evaluated."""

from __future__ import annotations

import builtins
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nerdistill.student.inference import load_model
from nerdistill.teacher.parser import parse_response
from nerdistill.train import check_resume
from tests.conftest import DATA_DIR, ROOT, TINY_TRAIN
from tests.test_teacher_annotate import KEY, assert_key_nowhere


def run_cli(verb: str, arguments: list[str], env: dict[str, str]) -> None:
    command = [sys.executable, "-m", f"nerdistill.{verb}", f"paths.data_dir={DATA_DIR}", *arguments]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stdout + done.stderr


def test_api_key_is_in_no_file_of_annotation_or_training(tmp_path):
    """The key in the environment the teacher config reads ($OPENAI_API_KEY, and the variable a
    run names in teacher.api_key_env): not in the run dirs (.hydra/config.yaml, the logs,
    outputs), the response cache, the W&B offline folder, stdout or stderr."""
    env = {
        "OPENAI_API_KEY": KEY,
        "NERDISTILL_TEST_KEY": KEY,
        "NERDISTILL_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_MODE": "offline",
    }
    auth = ["teacher.api_key_env=NERDISTILL_TEST_KEY", "teacher.sim.api_key_env=NERDISTILL_TEST_KEY"]
    run_cli("annotate", ["input.n=5", "progress=false", *auth, f"hydra.run.dir={tmp_path / 'annotate'}"], env)
    assert (tmp_path / "annotate" / "distilled.jsonl").exists() and (tmp_path / "cache" / "teacher.sqlite").exists()

    tiny = [o for o in TINY_TRAIN if o != "logger=none"]
    run_cli("train", [*tiny, "logger=wandb", "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'train'}"], env)
    assert (tmp_path / "train" / "metrics.json").exists()
    assert list((tmp_path / "train" / "wandb").glob("offline-run-*")), "no W&B offline run written"
    assert (tmp_path / "train" / ".hydra" / "config.yaml").exists() and list((tmp_path / "train").glob("*.log"))
    assert_key_nowhere(tmp_path)


class Boom:
    """Pickled, it calls ``os.system`` on load: what a hostile checkpoint would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_load_weights_only_and_never_run_code(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        "labels: [PER]\nmodel: {module: {_target_: builtins.dict}, tokenizer: x}\n"
    )
    (run / "checkpoints").mkdir()
    hostile = run / "checkpoints" / "best.ckpt"
    with hostile.open("wb") as handle:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"labels": ["PER"]}, "x": Boom(marker)}, handle)
    with pytest.raises(
        ValueError, match="best.ckpt: not a checkpoint that loads with weights_only=True .*Weights only load failed"
    ):
        load_model(hostile)  # evaluate/predict model_dir=<.ckpt>
    with pytest.raises(ValueError, match="not a nerdistill training checkpoint .*Weights only load failed"):
        check_resume(str(hostile), ["PER"])  # train ckpt_path=..., before Lightning's own weights_only=True load
    assert not marker.exists()


def test_lightning_resume_and_test_load_weights_only():
    """train (its fit) passes weights_only=True to Trainer.fit and Trainer.test (Lightning 2.6 would pass
    None on to torch.load, whose default may change)."""
    import inspect

    from nerdistill import train

    source = inspect.getsource(train.fit)
    assert (
        'ckpt_path=cfg.get("ckpt_path"), weights_only=True' in source
        and "ckpt_path=best or None, weights_only=True" in source
    )


def test_response_cache_holds_text_and_numbers_only(tmp_path, data_dir):
    from tests.test_teacher_annotate import run

    run(tmp_path, "run", ["input.n=5", "prompt=cot"], tmp_path / "teacher.sqlite")
    # rows in the batch tables too
    run(
        tmp_path,
        "batch",
        ["input.n=5", "teacher.mode=batch", "teacher.batch.poll_interval=0.01"],
        tmp_path / "teacher.sqlite",
    )
    db = sqlite3.connect(tmp_path / "teacher.sqlite")
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert set(tables) == {"meta", "responses", "logprobs", "batches", "batch_requests"}
        rows = 0
        for table in tables:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            for column in columns:
                kinds = {row[0] for row in db.execute(f"SELECT typeof({column}) FROM {table}")}
                assert kinds <= {"text", "integer", "real", "null"}, f"{table}.{column} holds {kinds}"
            for row in db.execute(f"SELECT * FROM {table}"):
                rows += 1
                for value in row:
                    assert not isinstance(value, bytes)
                    assert not (isinstance(value, str) and value.startswith(("\x80", "(dp", "cos\n"))), (
                        "pickle-like value"
                    )
        assert rows > 5
    finally:
        db.close()


def test_parser_never_evaluates_an_answer(tmp_path, monkeypatch):
    import ast

    marker = tmp_path / "pwned"

    def refuse(*args, **kwargs):
        raise AssertionError("an LLM answer reached eval/exec/literal_eval/pickle")

    for name in ("eval", "exec"):
        monkeypatch.setattr(builtins, name, refuse)
    monkeypatch.setattr(ast, "literal_eval", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    payload = f"__import__('os').system('touch {marker}')"
    tokens = ("Peter", "met", "__import__('os').system", "in", "Paris")
    answers = {
        f"Peter | PER\n{payload} | ORG\nParis | LOC": ["Peter", "Paris"],
        f'[{{"text": "{payload}", "type": "ORG"}}, {{"text": "Paris", "type": "LOC"}}]': ["Paris"],
        f"{{'entities': [{payload}]}}": [],  # not JSON: unparseable, not evaluated
        f"```python\n{payload}\n```": [],
    }
    for answer, entities in answers.items():
        parsed = parse_response(answer, tokens)
        assert len(parsed.tags) == len(tokens) and [e.text for e in parsed.entities] == entities, answer
    assert not marker.exists()
