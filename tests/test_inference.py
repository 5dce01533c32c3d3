"""evaluate and predict on a model exported by a tiny training run."""

import json
import shutil

import pytest
from omegaconf import OmegaConf

from nerdistill.data import read_conll, write_conll
from nerdistill.evaluate import evaluate
from nerdistill.predict import predict
from nerdistill.student.inference import Tagger
from nerdistill.train import train
from tests.conftest import TINY_GOLD_RUN, compose_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("run")
    cfg = compose_config("train", TINY_GOLD_RUN, out)
    train(cfg)
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")  # as @hydra.main does for real runs
    return out


def test_sorted_and_unsorted_tagging_agree(run_dir, data_dir):
    tagger = Tagger(run_dir, batch_size=32, precision="32-true")
    sentences = [s.tokens for s in read_conll(data_dir / "conll2003" / "valid.txt")[:200]]
    assert tagger.tag(sentences) == tagger.tag(sentences, sort_by_length=False)
    assert [len(t) for t in tagger.tag(sentences)] == [len(s) for s in sentences]


def test_evaluate_scores_a_split_file(run_dir, data_dir, tmp_path):
    subset = tmp_path / "dev_subset.txt"
    write_conll(subset, read_conll(data_dir / "conll2003" / "valid.txt")[:100])
    cfg = compose_config("evaluate", [f"model_dir={run_dir}", f"split={subset}"], tmp_path)
    result = evaluate(cfg)
    assert result["sentences"] == 100
    assert json.loads((tmp_path / "metrics.json").read_text())["micro"]["f1"] == result["micro"]["f1"]


def test_a_checkpoint_scores_like_the_exported_model(run_dir, data_dir):
    [checkpoint] = (run_dir / "checkpoints").glob("epoch*.ckpt")
    sentences = [s.tokens for s in read_conll(data_dir / "conll2003" / "valid.txt")[:100]]
    exported = Tagger(run_dir, precision="32-true").tag(sentences)
    assert Tagger(checkpoint, precision="32-true").tag(sentences) == exported


def test_a_checkpoint_of_a_run_from_before_the_student_package_still_loads(run_dir, data_dir, tmp_path):
    """Run configs written before the modules moved into nerdistill/student/ name them at the top
    level (``nerdistill.module.TokenClassifier``); ``evaluate model_dir=<.ckpt>`` loads them."""
    old = tmp_path / "old_run"
    shutil.copytree(run_dir, old)
    config = old / ".hydra" / "config.yaml"
    text = config.read_text()
    assert "nerdistill.student.module.TokenClassifier" in text
    config.write_text(text.replace("nerdistill.student.", "nerdistill."))
    [checkpoint] = (old / "checkpoints").glob("epoch*.ckpt")
    sentences = [s.tokens for s in read_conll(data_dir / "conll2003" / "valid.txt")[:20]]
    assert Tagger(checkpoint, precision="32-true").tag(sentences) == Tagger(run_dir, precision="32-true").tag(sentences)


def test_evaluate_names_a_missing_model(tmp_path):
    cfg = compose_config("evaluate", [f"model_dir={tmp_path / 'nothing'}"], tmp_path)
    with pytest.raises(FileNotFoundError, match="no Hugging Face model"):
        evaluate(cfg)


def test_predict_tags_a_conll_file(run_dir, data_dir, tmp_path):
    source = tmp_path / "in.txt"
    write_conll(source, read_conll(data_dir / "conll2003" / "test.txt")[:20])
    cfg = compose_config(
        "predict",
        [f"model_dir={run_dir}", f"input_file={source}", "format=conll", f"output={tmp_path / 'out.conll'}"],
        tmp_path,
    )
    output = predict(cfg)
    tagged = read_conll(output)
    assert [s.tokens for s in tagged] == [s.tokens for s in read_conll(source)]


def test_predict_tags_raw_text(run_dir, tmp_path):
    source = tmp_path / "article.txt"
    source.write_text(
        "Peter Blackburn visited Paris on Monday. He met officials of the European Union.\n", encoding="utf-8"
    )
    cfg = compose_config(
        "predict", [f"model_dir={run_dir}", f"input_file={source}", f"output={tmp_path / 'out.conll'}"], tmp_path
    )
    tagged = read_conll(predict(cfg))
    assert [s.tokens[:3] for s in tagged] == [("Peter", "Blackburn", "visited"), ("He", "met", "officials")]
    assert tagged[0].tokens[-1] == "."
