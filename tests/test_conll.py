from pathlib import Path

import pytest

from nerdistill.data import CoNLLFormatError, LabelSet, Sentence, read_conll, spans, to_iob2, write_conll


def write(tmp_path: Path, text: str | bytes, name: str = "f.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_reads_four_columns_with_docstart_and_gives_block_ids(tmp_path):
    path = write(
        tmp_path,
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n",
    )
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [("EU", "rejects"), ("Peter", "Blackburn")]
    assert [s.tags for s in sentences] == [("B-ORG", "O"), ("B-PER", "I-PER")]
    assert [s.id for s in sentences] == ["f.txt:1", "f.txt:2"]


def test_iob1_is_converted_to_iob2():
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "B-LOC",
        "B-ORG",
    ]
    assert to_iob2(["B-PER", "I-PER"]) == ["B-PER", "I-PER"]


def test_real_iob1_and_iob2_files_agree(data_dir):
    iob2 = read_conll(data_dir / "conll2003" / "valid.txt")
    iob1 = read_conll(data_dir / "conll2003" / "iob1" / "eng.testa")
    assert len(iob2) == len(iob1) == 3250
    assert [s.tags for s in iob2] == [s.tags for s in iob1]
    assert sum(len(spans(s.tags)) for s in iob2) == 5942


def test_two_column_files_and_tabs(tmp_path):
    sentences = read_conll(write(tmp_path, "Paris\tB-LOC\nis\tO\n"))
    assert sentences[0].tags == ("B-LOC", "O")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a O\nb X Y O\n", 2, "expected 2 columns"),
        ("a O\nb\n", 2, "at least 2 columns"),
        ("a O\nb B-DATE\n", 2, "not in the label set"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(CoNLLFormatError, match=message) as err:
        read_conll(path)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}:")


def test_empty_file_and_docstart_only_file_are_errors(tmp_path):
    with pytest.raises(CoNLLFormatError, match="no sentences"):
        read_conll(write(tmp_path, ""))
    with pytest.raises(CoNLLFormatError, match="no sentences"):
        read_conll(write(tmp_path, "-DOCSTART- -X- -X- O\n\n", "d.txt"))


def test_undecodable_bytes_name_the_line(tmp_path):
    with pytest.raises(CoNLLFormatError, match="not valid UTF-8") as err:
        read_conll(write(tmp_path, b"a O\n\nb O\nc\xff O\n"))
    assert err.value.line == 4


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(CoNLLFormatError, match="cannot read"):
        read_conll(tmp_path / "nope.txt")


def test_configured_label_set_accepts_its_types_only(tmp_path):
    path = write(tmp_path, "Monday B-DATE\n")
    assert read_conll(path, LabelSet(("DATE",)))[0].tags == ("B-DATE",)
    with pytest.raises(CoNLLFormatError):
        read_conll(path)


def test_label_set_rejects_bad_types():
    with pytest.raises(ValueError):
        LabelSet(("PER", "PER"))
    for bad in ("B-PER", "-x", "x-", "O", " PER"):
        with pytest.raises(ValueError, match="labels: entity types"):
            LabelSet(("ORG", bad))
    assert LabelSet().tags == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def test_hyphenated_types_as_in_wnut17_read_write_and_score(tmp_path):
    from nerdistill.metrics import ner_metrics

    labels = LabelSet(("person", "creative-work"))
    assert labels.tags == ("O", "B-person", "I-person", "B-creative-work", "I-creative-work")
    path = write(tmp_path, "Alice B-person\nread O\nWar B-creative-work\nand I-creative-work\nPeace I-creative-work\n")
    sentence = read_conll(path, labels)[0]
    assert spans(sentence.tags) == [(0, 1, "person"), (2, 5, "creative-work")]
    assert to_iob2(["I-creative-work", "I-creative-work"]) == ["B-creative-work", "I-creative-work"]
    write_conll(tmp_path / "out.txt", [sentence])
    assert read_conll(tmp_path / "out.txt", labels)[0].tags == sentence.tags
    scores = ner_metrics([sentence.tags], [("B-person", "O", "B-creative-work", "I-creative-work", "O")])
    assert scores["per_type"]["creative-work"]["f1"] == 0.0 and scores["per_type"]["person"]["f1"] == 1.0


def test_write_then_read_round_trips(tmp_path):
    sentences = [Sentence(("New", "York", "rises"), ("B-LOC", "I-LOC", "O"), "x:0", "x")]
    write_conll(tmp_path / "out.txt", sentences)
    back = read_conll(tmp_path / "out.txt")
    assert back[0].tokens == sentences[0].tokens and back[0].tags == sentences[0].tags


def test_gpt35_ids_follow_the_index_convention(data_dir):
    gold = {s.id: s for s in read_conll(data_dir / "conll2003" / "train.txt")}
    llm = read_conll(data_dir / "noisebench_gpt35" / "train_gpt35.txt")
    index = [int(line) for line in (data_dir / "noisebench_gpt35" / "train_gpt35.index").read_text().split()]
    assert len(llm) == len(index) == 4887
    assert all(gold[f"train.txt:{i}"].tokens == s.tokens for i, s in zip(index, llm))


def test_sentences_know_their_document(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU B-ORG\n\nPeter B-PER\n\n-DOCSTART- -X- -X- O\n\nRome B-LOC\n")
    assert [s.document for s in read_conll(path)] == ["docs.txt:0", "docs.txt:0", "docs.txt:3"]
    (tmp_path / "plain.txt").write_text("EU B-ORG\n\nRome B-LOC\n")
    assert [s.document for s in read_conll(tmp_path / "plain.txt")] == [None, None]
