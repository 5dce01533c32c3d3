"""Training from a ``datasets`` folder with a label set of its own, end to end (train, evaluate,
predict), and the model card every exported ``model/`` gets: front matter, labels, teacher (none,
or SIMULATED with its F1), gold budget, schedule, per-type test F1 and the command. Tiny models;
nothing is downloaded or pushed."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from huggingface_hub import ModelCard
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from nerdistill import card
from nerdistill.data.conll import read_conll, write_conll
from nerdistill.evaluate import evaluate
from nerdistill.metrics import ner_metrics
from nerdistill.predict import predict
from nerdistill.train import train
from tests.conftest import TINY_GOLD_RUN, TINY_TRAIN, compose_config
from tests.hf_data import TYPES, people_places

LABELS = "labels=[" + ",".join(TYPES) + "]"
RESULTS = ("metrics.json", "model", "checkpoints", "plan.json")


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory, data_dir):
    """A gold-only tiny model trained, validated and tested on an hf: dataset with its own types."""
    root = tmp_path_factory.mktemp("hfrun")
    folder = people_places(root / "people_places", data_dir)
    overrides = [
        *TINY_GOLD_RUN,
        LABELS,
        f"data.original=[hf:{folder}:train]",
        f"data.validation=hf:{folder}:validation",
        f"data.test=hf:{folder}:test",
    ]
    cfg = compose_config("train", overrides, root / "run")
    metrics = train(cfg)
    # what Hydra's command line writes beside a run, for python -m nerdistill.card
    (root / "run" / ".hydra").mkdir()
    saved = cfg.copy()
    saved.paths.output_dir = "${hydra:runtime.output_dir}"  # as Hydra saves it: resolvable only inside a Hydra job
    OmegaConf.save(saved, root / "run" / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(HydraConfig.get().overrides.task)), root / "run" / ".hydra" / "overrides.yaml")
    return folder, root / "run", metrics


def test_a_model_trains_from_a_datasets_folder_and_its_card_says_how(hf_run):
    folder, run, metrics = hf_run
    assert metrics["pools"] == {"original": 64, "distilled": 0} and set(metrics["test"]["per_type"]) <= set(TYPES)
    loaded = ModelCard.load(run / "model" / "README.md")
    data = loaded.data.to_dict()
    assert (
        data["language"] == "en"
        and data["pipeline_tag"] == "token-classification"
        and data["library_name"] == "transformers"
    )
    assert {"token-classification", "ner"} <= set(data["tags"]) and "distillation" not in data["tags"]
    # the tiny test model is random: no base, no license claimed
    assert "license" not in data and "base_model" not in data
    text = loaded.text
    assert (
        "**Teacher: none.**" in text and "`person`, `location`, `organisation`" in text and "`B-organisation`" in text
    )
    assert (
        "gold budget 64 drawn with budget_seed 0" in text
        and f"`hf:{folder}:train`" in text
        and "Schedule: `Original" in text
    )
    for kind, scores in metrics["test"]["per_type"].items():
        assert (
            f"| {kind} | {scores['precision']:.4f} | {scores['recall']:.4f} "
            f"| {scores['f1']:.4f} | {scores['support']} |" in text
        )
    assert "python -m nerdistill.train" in text and f"data.original=[hf:{folder}:train]" in text


def test_evaluate_and_predict_read_a_datasets_split(hf_run, tmp_path):
    folder, run, metrics = hf_run
    result = evaluate(compose_config("evaluate", [f"model_dir={run}", f"split=hf:{folder}:test"], tmp_path / "eval"))
    assert result["sentences"] == 40 and result["data"] == f"hf:{folder}:test"
    # limit_test_batches=1 of 256 holds all 40
    assert result["micro"]["f1"] == pytest.approx(metrics["test"]["micro"]["f1"], abs=1e-6)
    output = predict(
        compose_config(
            "predict",
            [f"model_dir={run}", f"input_file=hf:{folder}:validation", f"output={tmp_path / 'p.conll'}"],
            tmp_path / "pred",
        )
    )
    assert len(read_conll(output, list(TYPES))) == 40


def test_a_run_on_a_missing_split_fails_naming_it_and_leaves_nothing(hf_run, tmp_path):
    folder, _, _ = hf_run
    with pytest.raises(ValueError, match=rf"hf:{folder}:dev: no split 'dev'"):
        train(
            compose_config(
                "train",
                [
                    *TINY_GOLD_RUN,
                    LABELS,
                    f"data.original=[hf:{folder}:train]",
                    f"data.validation=hf:{folder}:dev",
                    f"data.test=hf:{folder}:test",
                ],
                tmp_path,
            )
        )
    assert not [name for name in RESULTS if (tmp_path / name).exists()]


def test_a_simulated_teachers_labels_are_named_with_their_f1_in_the_card(tmp_path, data_dir):
    gold = read_conll(data_dir / "conll2003" / "train.txt")[:200]
    annotate = tmp_path / "annotate"
    # the "teacher" drops every MISC: its labels, beside the report an annotate job writes
    write_conll(
        annotate / "distilled.conll",
        [replace(s, tags=tuple("O" if t.endswith("MISC") else t for t in s.tags)) for s in gold],
    )
    report = {
        "schema": "nerdistill.annotate.report/1",
        "simulated": True,
        "teacher": {"name": "sim", "model": "sim"},
        "prompt": {"id": "standard", "version": 1},
        "quality": {"micro": {"f1": 0.6512}},
    }
    (annotate / "report.json").write_text(json.dumps(report))
    train(
        compose_config(
            "train",
            [*TINY_TRAIN, f"data.distilled=[{annotate / 'distilled.conll'}]", "card.model_name=tiny-sim"],
            tmp_path / "run",
        )
    )
    loaded = ModelCard.load(tmp_path / "run" / "model" / "README.md")
    data = loaded.data.to_dict()
    assert data["datasets"] == ["conll2003"] and {"distillation", "simulated-teacher"} <= set(data["tags"])
    assert (
        data["model-index"][0]["name"] == "tiny-sim"
        and data["model-index"][0]["results"][0]["dataset"]["type"] == "conll2003"
    )
    text = loaded.text
    assert (
        "**The distilled labels are SIMULATED**" in text
        and "prompt `standard@1` — **SIMULATED**" in text
        and "its micro F1 against its input's gold: 0.6512" in text
    )
    expected = ner_metrics(
        [s.tags for s in gold], [tuple("O" if t.endswith("MISC") else t for t in s.tags) for s in gold]
    )["micro"]["f1"]
    assert f"the same 200 sentences (matched by tokens): micro F1 {expected:.4f}" in text


def test_the_card_command_rewrites_a_runs_card_and_pushes_only_when_asked(hf_run, monkeypatch, capsys):
    _, run, _ = hf_run
    written = (run / "model" / "README.md").read_text()
    (run / "model" / "README.md").unlink()
    assert card.main([str(run)]) == 0 and (run / "model" / "README.md").read_text() == written
    pushed = []

    class FakeApi:
        def create_repo(self, repo_id, repo_type, private, exist_ok):
            pushed.append(("create", repo_id, private))
            return f"https://hub.example/{repo_id}"

        def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
            pushed.append(("upload", folder_path, repo_id))

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    assert card.main([str(run)]) == 0 and pushed == []
    assert card.main([str(run), "--push", "me/people-places"]) == 0
    assert pushed == [("create", "me/people-places", True), ("upload", str(run / "model"), "me/people-places")]
    assert card.main([str(run.parent)]) == 1 and "not a finished training run" in capsys.readouterr().err


def test_the_base_models_license_is_named_where_known(tmp_path):
    minilm = compose_config("train", [], tmp_path)
    assert card.base_model(minilm)[:2] == ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")
    assert card.base_model(compose_config("train", ["model=bert_base_uncased"], tmp_path))[:2] == (
        "google-bert/bert-base-uncased",
        "apache-2.0",
    )
    assert card.base_model(compose_config("train", ["model=tiny"], tmp_path))[:2] == (None, None)
    assert card.base_model(compose_config("train", ["model.name_or_path=someone/their-bert"], tmp_path))[:2] == (
        "someone/their-bert",
        None,
    )
