"""Raw text -> CoNLL-style sentences, checked by hand on a real BBC article; the inputs."""

import pytest

from nerdistill.data import LabelSet, read_conll
from nerdistill.data.text import sentences_from_text, split_sentences, tokenize
from nerdistill.teacher.inputs import BbcInput, ConllInput, InputFormatError, read_bbc


def test_first_bbc_article_by_hand(data_dir):
    row, text = read_bbc(data_dir / "bbc" / "bbc-text.csv")[0]
    assert row == 2  # the article's first line in the CSV (header is line 1)
    sentences = [" ".join(s) for s in sentences_from_text(text)]
    # counted by reading the article: a title line, then 20 sentences in 5 paragraphs
    assert len(sentences) == 21
    assert sentences[0] == "Ad sales boost Time Warner profit"
    assert sentences[1] == (
        "Quarterly profits at US media giant TimeWarner jumped 76 % to $ 1.13bn ( £ 600m ) "
        "for the three months to December , from $ 639m year-earlier ."
    )
    assert sentences[4] == (
        "Its profits were buoyed by one-off gains which offset a profit dip at Warner Bros , and less users for AOL ."
    )
    assert sentences[8] == (
        "However , the company said AOL 's underlying profit before exceptional items rose 8 % "
        "on the back of stronger internet advertising revenues ."
    )
    assert sentences[11] == "Time Warner 's fourth quarter profits were slightly better than analysts ' expectations ."
    assert sentences[14] == (
        '" Our financial performance was strong , meeting or exceeding all of our full-year objectives '
        'and greatly enhancing our flexibility , " chairman and chief executive Richard Parsons said .'
    )
    assert (
        sentences[-1] == "It will now book the sale of its stake in AOL Europe as a loss on the value of that stake ."
    )


def test_sentence_splitting_keeps_abbreviations_and_initials():
    text = (
        'Mr. Smith met J. K. Rowling in the U.S. on Monday. She said: "Hello!" Then they left.\n'
        "A new line is a new sentence"
    )
    assert split_sentences(text) == [
        "Mr. Smith met J. K. Rowling in the U.S. on Monday.",
        'She said: "Hello!"',
        "Then they left.",
        "A new line is a new sentence",
    ]


def test_tokenisation_follows_conll_conventions():
    assert tokenize("Germany's Urdu-speaking minority didn't (really) pay $5.5m, or 12%...") == [
        "Germany",
        "'s",
        "Urdu-speaking",
        "minority",
        "did",
        "n't",
        "(",
        "really",
        ")",
        "pay",
        "$",
        "5.5m",
        ",",
        "or",
        "12",
        "%",
        "...",
    ]
    assert tokenize("Calif. and St. Louis, 1,000 a.m. 'quoted'") == [
        "Calif.",
        "and",
        "St.",
        "Louis",
        ",",
        "1,000",
        "a.m.",
        "'",
        "quoted",
        "'",
    ]


def test_whole_bbc_corpus_reads_and_repeats_are_kept_once(data_dir):
    path = data_dir / "bbc" / "bbc-text.csv"
    assert len(read_bbc(path)) == 2225
    every = BbcInput(str(path), limit=None, dedup=False).all_sentences()
    unique = {s.tokens for s in every}
    assert 40_000 < len(unique) < len(every)  # the corpus repeats 98 articles
    assert all(s.id.startswith("bbc-text.csv:") and set(s.tags) == {"O"} for s in every)


def test_bbc_input_limit_seed_and_dedup(tmp_path):
    path = tmp_path / "mini.csv"
    articles = [f"Title {i}\n\nMr. Smith went to Rome on day {i}. He met Ann there." for i in range(30)]
    path.write_text("category,text\n" + "".join(f'news,"{a}"\n' for a in articles + articles[:5]), encoding="utf-8")
    every = BbcInput(str(path), limit=None).load(LabelSet())
    assert len(every) == 30 + 30 + 1  # a title and a first sentence per article, "He met Ann there ." once
    assert [" ".join(s.tokens) for s in every[:3]] == [
        "Title 0",
        "Mr. Smith went to Rome on day 0 .",
        "He met Ann there .",
    ]
    assert len(BbcInput(str(path), limit=None, dedup=False).load(LabelSet())) == 35 * 3
    sample = BbcInput(str(path), limit=10, seed=0).load(LabelSet())
    assert len(sample) == 10 and sample == BbcInput(str(path), limit=10, seed=0).load(LabelSet())
    assert sample != BbcInput(str(path), limit=10, seed=1).load(LabelSet())
    assert [s.id for s in BbcInput(str(path), limit=3, seed=None).load(LabelSet())] == [
        "mini.csv:0:0",
        "mini.csv:0:1",
        "mini.csv:0:2",
    ]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('category,text\nbusiness,"fine"\nsport,"unclosed\n', 3, "malformed CSV"),
        ('category,text\nbusiness,"a"\ntech,"b",extra\n', 3, "expected 2 fields"),
        ("category,body\nbusiness,x\n", 1, "'text' column"),
        ('category,text\nbusiness,"a "b" c"\n', 2, "malformed CSV"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFormatError, match=message) as err:
        read_bbc(path)
    assert err.value.line == line and str(err.value).startswith(f"{path}:{line}:")


def test_non_utf8_csv_is_an_error(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b'category,text\nsport,"ok"\nsport,"\xa3 5"\n')
    with pytest.raises(InputFormatError, match="UTF-8"):
        read_bbc(path)


def test_conll_input_is_a_seeded_subset_in_file_order(data_dir):
    source = ConllInput(str(data_dir / "conll2003" / "train.txt"), n=100, seed=0)
    sentences = source.load(LabelSet())
    blocks = [int(s.id.split(":")[1]) for s in sentences]
    assert len(sentences) == 100 and blocks == sorted(blocks)
    assert sentences == source.load(LabelSet())
    assert sentences != ConllInput(str(data_dir / "conll2003" / "train.txt"), n=100, seed=1).load(LabelSet())


def test_conll_input_with_an_index_gives_the_gold_of_the_indexed_sentences(data_dir, tmp_path):
    llm = read_conll(data_dir / "noisebench_gpt35" / "train_gpt35.txt")
    source = ConllInput(
        str(data_dir / "conll2003" / "train.txt"),
        n=None,
        index=str(data_dir / "noisebench_gpt35" / "train_gpt35.index"),
    )
    gold = source.load(LabelSet())
    assert [s.tokens for s in gold] == [s.tokens for s in llm]  # the same 4,887 sentences, in the index's order
    assert sum(g.tags != s.tags for g, s in zip(gold, llm)) > len(llm) / 2  # with CoNLL's tags, not the LLM's
    assert source.describe()["index"].endswith("train_gpt35.index")


@pytest.mark.parametrize(
    ("lines", "message"), [("3\nx\n", ":2: expected a block number"), ("0\n", ":1: .* has no sentence in block 0")]
)
def test_conll_input_names_the_bad_line_of_its_index(data_dir, tmp_path, lines, message):
    index = tmp_path / "bad.index"
    index.write_text(lines)
    with pytest.raises(InputFormatError, match=message):
        ConllInput(str(data_dir / "conll2003" / "train.txt"), n=None, index=str(index)).load(LabelSet())
