"""Experiment overlays and launcher configs compose; a real tiny sweep survives a failing job."""

import csv
import itertools
import json
import os
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from nerdistill.reporting.tables import build_report
from nerdistill.reporting.tables import main as report_main
from nerdistill.runtime import set_torch_threads
from nerdistill.student.schedules import Schedule, SimpleMix
from tests.conftest import CONF, DATA_DIR, ROOT, TINY_TRAIN, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
ANNOTATE_EXPERIMENTS = sorted(p.stem for p in (CONF / "annotate_experiment").glob("*.yaml"))
TINY = [*(o for o in TINY_TRAIN if not o.startswith("logger=")), "logger=csv"]


def compose_job(config_name: str, overrides: list[str]) -> DictConfig:
    """A config with its ``hydra`` node, as a job of ``python -m nerdistill.<config_name>`` sees it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name=config_name, overrides=[f"paths.data_dir={DATA_DIR}", *overrides], return_hydra_config=True
        )


def compose_train(overrides: list[str]) -> DictConfig:
    return compose_job("train", overrides)


def sweep_grid(params: dict) -> list[list[str]]:
    """Every job's overrides for a sweeper ``params`` node, seed left out (as BasicSweeper expands them)."""
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items() if k != "seed"])
    axes = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
        for o in parsed
    ]
    return [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_every_experiment_composes_and_builds_its_schedule(name):
    cfg = compose_train([f"experiment={name}"])
    assert cfg.task_name == name and cfg.tags
    params = cfg.hydra.sweeper.params
    assert params.seed == "1,2,3" and "schedule" in params
    jobs = sweep_grid(dict(params))
    assert len(jobs) >= 4
    for job in jobs:
        cfg = compose_train([f"experiment={name}", *job])
        assert isinstance(instantiate(cfg.schedule), Schedule)
        assert all(str(path) for path in cfg.data.distilled)  # every interpolation resolves
        assert min(cfg.data.passes.values()) > 0 and cfg.model.module.lr > 0


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_experiment_gets_its_own_sweep_folder_and_wandb_group(name):
    cfg = compose_train(
        [f"experiment={name}", "logger=[csv,wandb]", "logger.wandb.job_type=${hydra:job.override_dirname}"]
    )
    assert f"multirun/{name}/" in cfg.hydra.sweep.dir
    assert cfg.logger.wandb.group == name and list(cfg.logger.wandb.tags) == list(cfg.tags)
    assert set(cfg.logger) == {"csv", "wandb"}  # the dashboard recipe in docs/experiments.md


def test_phase2_distilled_sets():
    conll = compose_train(["experiment=phase2_regimens"]).data.distilled
    both = compose_train(
        ["experiment=phase2_regimens", "distilled_set=conll_bbc", "bbc_distilled=/x/bbc.conll"]
    ).data.distilled
    assert list(both) == [*conll, "/x/bbc.conll"] and conll[0].endswith("noisebench_gpt35/train_gpt35.txt")


@pytest.mark.parametrize(
    ("budget", "passes", "lr"), [("100", 100, 2e-4), ("1000", 20, 2e-4), ("null", 3, 1e-4), ("3000", 20, 2e-4)]
)
def test_gold_budget_recipe(budget, passes, lr):
    cfg = compose_train(["experiment=gold_budget", f"data.gold_budget={budget}"])
    assert (cfg.data.passes.original, cfg.data.passes.distilled, cfg.model.module.lr) == (passes, 3, lr)


def test_teacher_quality_reads_the_file_for_its_target_f1():
    cfg = compose_train(["experiment=teacher_quality", "teacher_f1=0.5"])
    assert list(cfg.data.distilled) == ["outputs/distilled/sim/f1_0.5/distilled.conll"]


def test_all_draws_every_sentence_equally_often_at_the_blends_budget():
    cfg = compose_train(["schedule=all"])
    gold, distilled, passes = 1000, 4887, cfg.data.passes  # the default pools
    schedule = instantiate(cfg.schedule).resolve(gold, distilled, passes.original, passes.distilled)
    assert isinstance(schedule, SimpleMix)
    budget = passes.original * gold + passes.distilled * distilled
    gold_passes, distilled_passes = (1 - schedule.mix) * budget / gold, schedule.mix * budget / distilled
    assert gold_passes == pytest.approx(distilled_passes, rel=1e-3)


@pytest.mark.parametrize(
    ("launcher", "target", "settings"),
    [
        ("local_parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", {"n_jobs": 2}),
        (
            "slurm",
            "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
            {"gpus_per_node": 1, "timeout_min": 240, "tasks_per_node": 1},
        ),
    ],
)
def test_launchers_compose_over_the_plugins(launcher, target, settings):
    cfg = compose_train(["experiment=phase3_blends", f"hydra/launcher={launcher}"])
    assert cfg.hydra.launcher._target_ == target and get_class(target)
    assert {k: cfg.hydra.launcher[k] for k in settings} == settings


def test_tiny_sweep_keeps_finished_jobs_when_one_fails(tmp_path):
    """The real ``-m`` path: the BBC cells fail (no BBC file), the others finish and are reported."""
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "nerdistill.train",
        "-m",
        "experiment=phase2_regimens",
        "schedule=original,sequential",
        "distilled_set=conll,conll_bbc",
        "seed=1",
        f"bbc_distilled={tmp_path / 'missing.conll'}",
        f"paths.data_dir={DATA_DIR}",
        f"hydra.sweep.dir={sweep}",
        *TINY,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "missing.conll" in done.stderr  # the basic launcher runs every job, then raises
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    finished = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    # the conll cells, and original x conll_bbc (1), which never reads the distilled file;
    # sequential x conll_bbc (3) failed on it
    assert finished == ["0", "1", "2"]
    assert json.loads((sweep / "2" / "metrics.json").read_text())["pools"] == {"original": 64, "distilled": 64}

    report = build_report([sweep])
    labels = [
        "schedule=original, distilled_set=conll",
        "schedule=original, distilled_set=conll_bbc",
        "schedule=sequential, distilled_set=conll",
    ]
    assert [g.label for g in report.groups] == labels
    assert [s.path.name for s in report.skipped] == ["3"]
    report.write(tmp_path / "report")
    assert (tmp_path / "report" / "val_f1.png").exists()
    assert report.groups[2].runs[0].share_curve()[0] == (0.0, 1.0)


def test_phase1_annotation_composes_for_both_prompts_on_the_same_sentences():
    cfg = compose_job("annotate", ["annotate_experiment=phase1"])
    assert cfg.task_name == "phase1_annotation" and cfg.tags and "multirun/phase1_annotation/" in cfg.hydra.sweep.dir
    jobs = sweep_grid(dict(cfg.hydra.sweeper.params))
    assert jobs == [["prompt=standard"], ["prompt=cot"]]
    configs = [compose_job("annotate", ["annotate_experiment=phase1", *job]) for job in jobs]
    assert [instantiate(c.prompt).id for c in configs] == ["standard", "cot"]
    for c in configs:
        assert c.teacher.name == "sim" and c.input == configs[0].input and c.cache == configs[0].cache
    assert instantiate(configs[0].input).describe() == {
        "kind": "conll",
        "path": f"{DATA_DIR}/conll2003/train.txt",
        "split": "train",
        "n": 1000,
        "seed": 0,
    }


@pytest.mark.parametrize("name", ANNOTATE_EXPERIMENTS)
def test_train_refuses_an_annotate_experiment(name):
    with pytest.raises(ConfigCompositionException, match="annotate_experiment"):
        compose_train([f"annotate_experiment={name}"])
    with pytest.raises(ConfigCompositionException):  # not among train's experiments either
        compose_train([f"experiment={name}"])


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_annotate_refuses_a_train_experiment(name):
    with pytest.raises(ConfigCompositionException, match="experiment"):
        compose_job("annotate", [f"experiment={name}"])


def test_phase1_annotation_sweep_reports_the_prompts_side_by_side(tmp_path, data_dir):
    """The real ``-m`` path on 20 sentences: two jobs on the same sentences, then their reports as columns."""
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "nerdistill.annotate",
        "-m",
        "annotate_experiment=phase1",
        "input.n=20",
        "progress=false",
        f"paths.data_dir={data_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reports = [json.loads((sweep / job / "report.json").read_text()) for job in ("0", "1")]
    assert [r["prompt"]["id"] for r in reports] == ["standard", "cot"]
    assert [r["simulator"]["target_f1"] for r in reports] == [0.65, 0.73]
    ids = [[json.loads(line)["id"] for line in (sweep / job / "distilled.jsonl").open()] for job in ("0", "1")]
    assert len(ids[0]) == 20 and ids[0] == ids[1]

    assert report_main([str(sweep)]) == 0
    md = (sweep / "report" / "report.md").read_text()
    assert "SIMULATED TEACHER" in md and "| | prompt=standard | prompt=cot |" in md
    f1s = [f"{r['quality']['micro']['f1']:.3f}" for r in reports]
    assert f"| micro F1 | {f1s[0]} | {f1s[1]} |" in md
    assert "| teacher | SIMULATED (target F1 0.65) | SIMULATED (target F1 0.73) |" in md
    with (sweep / "report" / "comparison.csv").open(newline="") as handle:
        rows = {row[0]: row[1:] for row in csv.reader(handle)}
    assert rows["metric"] == ["prompt=standard", "prompt=cot"]
    assert [float(v) for v in rows["micro F1"]] == [r["quality"]["micro"]["f1"] for r in reports]


@pytest.mark.parametrize(("launcher", "expected"), [("local_parallel", 4), ("basic", None)])
def test_parallel_jobs_share_the_cores(tmp_path, monkeypatch, launcher, expected):
    """``torch_threads: auto`` gives each of joblib's n_jobs an equal share of the cores."""
    before = torch.get_num_threads()
    cfg = compose_config("train", [f"hydra/launcher={launcher}"], tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    try:
        set_torch_threads(cfg.runtime.torch_threads)
        assert torch.get_num_threads() == (expected or before)
    finally:
        torch.set_num_threads(before)
