"""The active-learning loop on a tiny model: rounds grow the gold set by the selection, students
train each round, and a re-run after an interruption resumes where it stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from nerdistill.data import read_conll
from nerdistill.selection.loop import run_loop
from nerdistill.selection.pick import planned_selections
from nerdistill.train import train
from tests.conftest import DATA_DIR, ROOT, compose_config

TINY_STUDENT = [
    "model=tiny",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "data.passes.original=1",
    "data.passes.distilled=1",
    "data.batch_size=8",
    "data.eval_batch_size=256",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.max_steps=2",
]


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory) -> Path:
    """The start of CoNLL train (199 distinct sentences, 60 of them labelled by GPT-3.5)."""
    lines = (DATA_DIR / "conll2003" / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:3000]
    while lines[-1].strip():
        lines.pop()
    path = tmp_path_factory.mktemp("pool") / "train_head.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def loop_config(out: Path, pool_file: Path, *overrides: str):
    cfg = compose_config(
        "select_loop",
        [
            f"pool.path={pool_file}",
            "loop.seed_size=20",
            "budget.size=15",
            "loop.total=35",
            "strategy=expected_errors",
            "progress=false",
            "precision=32-true",
            *overrides,
        ],
        out,
    )
    with open_dict(cfg):
        cfg.loop.train = TINY_STUDENT
    return cfg


class Counting:
    """``train``, counting its calls by output folder; ``fail_at`` raises on that call after leaving a
    half-written run behind."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at

    def __call__(self, cfg):
        self.calls.append(str(Path(cfg.paths.output_dir).relative_to(Path(cfg.paths.output_dir).parents[1])))
        if len(self.calls) == self.fail_at:
            (Path(cfg.paths.output_dir) / "checkpoints").mkdir(parents=True)
            (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").write_text("killed while writing")
            raise KeyboardInterrupt
        return train(cfg)


def without_timing(value):
    """``value`` without its wall times (``seconds``, ``*_s``), which differ from run to run."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k != "seconds" and not k.endswith("_s")}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


@pytest.fixture(scope="module")
def finished(tmp_path_factory, pool_file):
    out = tmp_path_factory.mktemp("loop")
    counting = Counting()
    report = run_loop(loop_config(out, pool_file), counting)
    return out, report, counting.calls


def test_rounds_grow_the_gold_set_by_the_selection_to_the_budget(finished, pool_file):
    out, report, calls = finished
    assert calls == ["round_0/original", "round_0/sequential", "round_1/original", "round_1/sequential"]
    assert [r["gold"]["sentences"] for r in report["rounds"]] == [20, 35]  # 20 random, then 15 chosen: loop.total
    assert not (out / "round_2").exists() and report["rounds"][1]["selection"] is None
    first, second = (read_conll(out / f"round_{r}" / "gold.conll") for r in (0, 1))
    chosen = read_conll(out / "round_0" / "selection" / "selected.conll")
    assert {s.text_key for s in second} == {s.text_key for s in first} | {s.text_key for s in chosen} and len(
        chosen
    ) == 15
    # the revealed tags are the pool's gold
    pool = {s.text_key: s.tags for s in read_conll(pool_file)}
    assert all(pool[s.text_key] == s.tags for s in second)
    # the sequential student's LLM labels: pool sentences the LLM labelled, none of them in gold
    for r, gold in ((0, first), (1, second)):
        distilled = read_conll(out / f"round_{r}" / "distilled.conll")
        assert (
            distilled
            and not {s.text_key for s in distilled} & {s.text_key for s in gold}
            and {s.text_key for s in distilled} <= set(pool)
        )
    for record in report["rounds"]:
        assert set(record["students"]) == {"original", "sequential"} and all(
            0 <= s["test_f1"] <= 1 for s in record["students"].values()
        )
    # each student is a run record: its config trains on the round's gold file, all of it
    saved = OmegaConf.load(out / "round_1" / "original" / ".hydra" / "config.yaml")
    assert list(saved.data.original) == [str(out / "round_1" / "gold.conll")] and saved.data.gold_budget is None
    assert (
        not (out / "round_0" / "original" / "checkpoints").exists()
        and (out / "round_0" / "original" / "model").is_dir()
    )
    assert (
        "play the human annotator" in (out / "report.md").read_text() and "play the human annotator" in report["note"]
    )


def test_a_rerun_skips_finished_rounds(finished, pool_file):
    out, report, _ = finished
    counting = Counting()
    assert run_loop(loop_config(out, pool_file), counting) == report
    assert counting.calls == []


def test_an_interrupted_loop_resumes_where_it_stopped_and_ends_as_the_uninterrupted_one(tmp_path, finished, pool_file):
    _, uninterrupted, _ = finished
    killed = Counting(fail_at=3)  # while training round 1's gold-only student
    with pytest.raises(KeyboardInterrupt):
        run_loop(loop_config(tmp_path, pool_file), killed)
    assert (tmp_path / "round_0" / "round.json").exists() and not (tmp_path / "round_1" / "round.json").exists()
    resumed = Counting()
    report = run_loop(loop_config(tmp_path, pool_file), resumed)
    assert resumed.calls == ["round_1/original", "round_1/sequential"]  # round 0 skipped, the killed run trained again
    assert without_timing(report) == without_timing(uninterrupted)


def test_a_folder_of_another_loop_is_refused(finished, pool_file):
    out, _, _ = finished
    with pytest.raises(ValueError, match="holds another gold set"):
        run_loop(loop_config(out, pool_file, "seed=2"), Counting())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loop.selector=teacher"], "loop.selector='teacher'"),
        (["loop.selector=sequential", "loop.sequential=false"], "loop.selector=sequential needs loop.sequential=true"),
        (["loop.selector=sequential", "loop.sequential=last"], "loop.selector=sequential needs loop.sequential=true"),
        (["loop.sequential=sometimes"], "loop.sequential='sometimes': expected true, false or last"),
        (["llm_labels=null"], "set llm_labels="),
        (["strategy=coreset"], "strategy='coreset'"),
        (["loop.seed_size=0"], "loop.seed_size and loop.total must be >= 1"),
    ],
)
def test_bad_loop_settings_fail_before_any_training(tmp_path, pool_file, overrides, message):
    counting = Counting()
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        run_loop(loop_config(tmp_path, pool_file, *overrides), counting)
    assert counting.calls == [] and not list(tmp_path.glob("round_*"))


def test_a_bad_train_override_fails_before_any_training(tmp_path, pool_file):
    cfg = loop_config(tmp_path, pool_file)
    with open_dict(cfg):
        cfg.loop.train = [*TINY_STUDENT, "schedul=original"]
    counting = Counting()
    with pytest.raises(Exception, match="schedul"):
        run_loop(cfg, counting)
    assert counting.calls == [] and not list(tmp_path.glob("round_*"))


def test_the_report_has_a_row_per_round(finished):
    out, report, _ = finished
    table = [
        line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ") and line[2].isdigit()
    ]
    assert len(table) == len(report["rounds"]) == 2
    assert json.loads((out / "round_0" / "round.json").read_text()) == report["rounds"][0]


def test_the_command_line_runs_a_round(tmp_path, pool_file):
    """``python -m nerdistill.select_loop``: under Hydra's app the students' configs compose too."""
    out = tmp_path / "run"
    train = ",".join(f'"{o}"' for o in TINY_STUDENT)
    command = [
        sys.executable,
        "-m",
        "nerdistill.select_loop",
        f"pool.path={pool_file}",
        "loop.seed_size=20",
        "loop.total=20",
        "loop.sequential=false",
        "progress=false",
        "precision=32-true",
        f"loop.train=[{train}]",
        f"paths.data_dir={DATA_DIR}",
        f"hydra.run.dir={out}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert [r["gold"]["sentences"] for r in report["rounds"]] == [20]
    assert 0 <= report["rounds"][0]["students"]["original"]["test_f1"] <= 1


def test_a_token_budget_ends_with_the_round_that_chose_the_rest(tmp_path, pool_file):
    """The pick under-spends a token budget by less than a sentence: that remainder buys no round of its own."""
    counting = Counting()
    cfg = loop_config(tmp_path, pool_file, "budget.unit=tokens", "budget.size=1000", "loop.total=500")
    with open_dict(cfg):
        cfg.loop.sequential = False
    report = run_loop(cfg, counting)
    assert counting.calls == ["round_0/original", "round_1/original"]
    first, last = report["rounds"]
    assert first["selection"]["tokens"] + first["gold"]["tokens"] == last["gold"]["tokens"] <= 500
    assert last["selection"] is None


def test_sequential_last_trains_the_sequential_student_in_the_final_round_only(tmp_path, pool_file):
    counting = Counting()
    report = run_loop(loop_config(tmp_path, pool_file, "loop.sequential=last"), counting)
    assert counting.calls == ["round_0/original", "round_1/original", "round_1/sequential"]
    assert [set(r["students"]) for r in report["rounds"]] == [{"original"}, {"original", "sequential"}]
    assert not (tmp_path / "round_0" / "distilled.conll").exists()
    assert (tmp_path / "round_1" / "distilled.conll").exists()


def test_a_loop_of_several_rounds_gives_its_last_selection_the_rest_of_the_budget(tmp_path, pool_file):
    """Each pick under-spends a token budget a little: the planned last selection makes it up, and no extra
    round is spent on the few tokens left over."""
    counting = Counting()
    cfg = loop_config(tmp_path, pool_file, "budget.unit=tokens", "budget.size=150", "loop.total=700")
    with open_dict(cfg):
        cfg.loop.sequential = False
    report = run_loop(cfg, counting)
    rounds = report["rounds"]
    planned = planned_selections(rounds[0]["gold"]["tokens"], 150, 700)
    assert planned >= 2 and len(rounds) == planned + 1 and rounds[-1]["selection"] is None
    requested = [
        json.loads((tmp_path / f"round_{r}" / "selection" / "report.json").read_text())["budget"]["size"]
        for r in range(planned)
    ]
    assert requested[:-1] == [150] * (planned - 1)
    assert requested[-1] == 700 - rounds[-2]["gold"]["tokens"]  # the rest, what earlier picks under-spent included
    assert rounds[-1]["gold"]["tokens"] <= 700
