"""``hf:<folder or hub id>[:split]`` wherever a CoNLL file is accepted: the reader, its errors, and
the pools, evaluate, predict, select and annotate's input reading through it. Datasets are built on
disk here; nothing is downloaded."""

from __future__ import annotations

import pytest

from nerdistill.data.conll import Sentence, read_conll, write_conll
from nerdistill.data.hf import DatasetSourceError, HFSource, read_hf
from nerdistill.data.labels import LabelSet
from nerdistill.data.pools import build_pools
from nerdistill.data.sources import check_source, read_source
from nerdistill.selection.pool import read_pool
from nerdistill.teacher.inputs import ConllInput
from tests.conftest import compose_config
from tests.hf_data import TYPES, people_places, renamed, save_dataset

LABELS = LabelSet(TYPES)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, data_dir):
    return people_places(tmp_path_factory.mktemp("hf") / "people_places", data_dir)


def sentences(n: int, data_dir) -> list[Sentence]:
    return read_conll(data_dir / "conll2003" / "valid.txt")[:n]


def test_a_split_reads_as_the_sentences_saved(dataset, data_dir):
    read = read_hf(f"hf:{dataset}:validation", LABELS)
    expected = sentences(40, data_dir)
    assert [s.tokens for s in read] == [s.tokens for s in expected]
    assert [list(s.tags) for s in read] == [renamed(s) for s in expected]
    assert read[3].id == "people_places:validation:3" and read[3].source == "people_places:validation"


def test_iob1_class_label_names_become_iob2_and_strings_hold_the_names_themselves(tmp_path, data_dir):
    names = ["O", "I-person", "B-person", "I-location", "B-location", "I-organisation", "B-organisation"]
    iob1 = Sentence(
        ("John", "Smith", "met", "Ann", "in", "Paris"), ("B-PER", "I-PER", "O", "B-PER", "O", "B-LOC"), "x:0", "x"
    )
    from datasets import ClassLabel, Dataset, Features, List, Value

    ids = [[1, 1, 0, 1, 0, 3]]  # IOB1: I- starts an entity
    Dataset.from_dict(
        {"tokens": [list(iob1.tokens)], "ner_tags": ids},
        features=Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))}),
    ).save_to_disk(str(tmp_path / "iob1"))
    (read,) = read_hf(f"hf:{tmp_path / 'iob1'}", LABELS)
    assert read.tags == ("B-person", "I-person", "O", "B-person", "O", "B-location")
    save_dataset(tmp_path / "strings", {"": sentences(5, data_dir)}, strings=True, tags_column="labels")
    assert [list(s.tags) for s in read_hf(f"hf:{tmp_path / 'strings'}", LABELS)] == [
        renamed(s) for s in sentences(5, data_dir)
    ]


def test_source_strings_parse_and_read_source_dispatches(dataset, data_dir):
    assert HFSource.parse("hf:/data/wnut17:train") == HFSource("/data/wnut17", "train")
    assert HFSource.parse("hf:conll2003") == HFSource("conll2003", None)
    assert HFSource.parse("hf:org/name:validation").is_local is False
    assert HFSource.parse("hf:./not/here").is_local is True  # a path's shape: never looked up on the hub
    assert (
        read_source(f"hf:{dataset}:test", LABELS)[0].tokens == read_conll(data_dir / "conll2003" / "test.txt")[0].tokens
    )
    assert read_source(data_dir / "conll2003" / "valid.txt")[0].id == "valid.txt:1"


BAD = [
    ("missing-folder", lambda d, t: f"hf:{t / 'nowhere'}:train", "no dataset folder"),
    ("not-a-dataset", lambda d, t: f"hf:{t}:train", "is not a dataset written by save_to_disk"),
    (
        "missing-split",
        lambda d, t: f"hf:{d}:dev",
        "no split 'dev'; the dataset has splits ['train', 'validation', 'test']",
    ),
    ("no-split-named", lambda d, t: f"hf:{d}", "the dataset has splits ['train', 'validation', 'test']: name one"),
]


@pytest.mark.parametrize(("case", "source", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_sources_name_the_source(case, source, message, dataset, tmp_path):
    where = source(dataset, tmp_path)
    with pytest.raises(DatasetSourceError, match="^" + where.replace("[", r"\[")) as err:
        read_source(where, LABELS)
    assert message in str(err.value)


def test_bad_columns_and_tags_name_the_column_or_row(tmp_path, data_dir):
    from datasets import Dataset, Features, List, Value

    few = sentences(4, data_dir)
    Dataset.from_dict({"words": [list(s.tokens) for s in few]}).save_to_disk(str(tmp_path / "no_tokens"))
    with pytest.raises(DatasetSourceError, match="no 'tokens' column"):
        read_hf(f"hf:{tmp_path / 'no_tokens'}", LABELS)
    ints = Features({"tokens": List(Value("string")), "ner_tags": List(Value("int64"))})
    Dataset.from_dict(
        {"tokens": [list(s.tokens) for s in few], "ner_tags": [[0] * len(s) for s in (s.tokens for s in few)]},
        features=ints,
    ).save_to_disk(str(tmp_path / "no_names"))
    with pytest.raises(DatasetSourceError, match="column 'ner_tags' has no tag names"):
        read_hf(f"hf:{tmp_path / 'no_names'}", LABELS)
    Dataset.from_dict(
        {"tokens": [list(s.tokens) for s in few]}, features=Features({"tokens": List(Value("string"))})
    ).save_to_disk(str(tmp_path / "no_tags"))
    with pytest.raises(DatasetSourceError, match="no tags column"):
        read_hf(f"hf:{tmp_path / 'no_tags'}", LABELS)
    # CoNLL's own types against the dataset's: the row, the tag and the types the dataset would need
    save_dataset(tmp_path / "people", {"train": sentences(40, data_dir)})
    with pytest.raises(
        DatasetSourceError,
        match=r"row \d+: tag 'B-\w+' is not in the label set .*give labels=\[person,location,organisation\]",
    ):
        read_hf(f"hf:{tmp_path / 'people'}:train", LabelSet())
    with pytest.raises(DatasetSourceError, match="hf:x/y/z: input_file: no dataset folder"):
        check_source("input_file", "hf:x/y/z")
    with pytest.raises(FileNotFoundError, match="input_file=nothing.conll: not a file"):
        check_source("input_file", "nothing.conll")


def test_a_hub_id_is_loaded_with_load_dataset_and_its_failure_is_one_message(monkeypatch):
    import datasets

    calls = []

    def offline(name, split=None):
        calls.append((name, split))
        raise ConnectionError("the hub cannot be reached")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        DatasetSourceError,
        match=(
            r"^hf:someone/ner:train: 'someone/ner' is not a folder here "
            r"and could not be loaded from the Hugging Face hub \(ConnectionError"
        ),
    ):
        read_hf("hf:someone/ner:train", LABELS)
    assert calls == [("someone/ner", "train")]


def test_pools_budgets_and_overlap_match_a_dataset_with_a_conll_file_by_tokens(dataset, tmp_path):
    gold = read_hf(f"hf:{dataset}:train", LABELS)
    write_conll(tmp_path / "teacher.conll", gold[100:130])
    keys = {s.text_key for s in gold[100:130]}
    same = build_pools(
        [f"hf:{dataset}:train"], [tmp_path / "teacher.conll"], LABELS, gold_budget=20, gold_overlap="same", seed=0
    )
    assert len(same.original) == 20 and {s.text_key for s in same.original} <= keys
    disjoint = build_pools([f"hf:{dataset}:train"], [tmp_path / "teacher.conll"], LABELS, gold_overlap="disjoint")
    assert [s.id for s in disjoint.original] == [s.id for s in gold if s.text_key not in keys]


def test_annotate_input_and_select_pool_read_a_dataset(dataset, tmp_path):
    source = ConllInput(f"hf:{dataset}:train", n=10, seed=0)
    chosen = source.load(LABELS)
    assert len(chosen) == 10 and source.describe()["kind"] == "hf" and source.describe()["split"] == "train"
    assert [int(s.id.rsplit(":", 1)[1]) for s in chosen] == sorted(int(s.id.rsplit(":", 1)[1]) for s in chosen)
    (tmp_path / "rows.index").write_text("5\n7\n", encoding="utf-8")
    indexed = ConllInput(f"hf:{dataset}:train", n=None, index=str(tmp_path / "rows.index")).load(LABELS)
    assert [s.id for s in indexed] == ["people_places:train:5", "people_places:train:7"]
    assert len(read_pool(f"hf:{dataset}:train", "conll", LABELS)) == 160


def test_annotate_reads_its_input_and_prompt_examples_from_a_dataset(dataset, tmp_path):
    from nerdistill.annotate import annotate

    write_conll(tmp_path / "oracle.conll", read_hf(f"hf:{dataset}:train", LABELS))  # the simulator's oracle is CoNLL
    overrides = [
        "progress=false",
        "labels=[" + ",".join(TYPES) + "]",
        f"teacher.sim.oracle=[{tmp_path / 'oracle.conll'}]",
        "teacher.sim.target_f1=1.0",
        f"input.path=hf:{dataset}:train",
        "input.n=30",
        f"prompt.examples_path=hf:{dataset}:train",
        *(f"+prompt.types.{t}=a {t}" for t in TYPES),
        f"cache={tmp_path / 'cache.sqlite'}",
    ]
    report = annotate(compose_config("annotate", overrides, tmp_path / "out"))
    assert (
        report["input"]["kind"] == "hf"
        and report["input"]["split"] == "train"
        and report["sentences"]["annotated"] == 30
    )
    # the simulator without noise (hallucinations aside) against the dataset's own gold
    assert report["quality"]["micro"]["f1"] > 0.9
    assert len(read_conll(tmp_path / "out" / "distilled.conll", LABELS)) == 30
