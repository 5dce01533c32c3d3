"""Output files are written whole or not at all."""

import json

import pytest

from nerdistill.data.conll import Sentence, read_conll, write_conll
from nerdistill.files import atomic_path, write_json


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"f1": 0.8})
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        partial.write_text('{"f1": 0.')  # half written, then the writer dies
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"f1": 0.8}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    sentences = [Sentence(("Paris",), ("B-LOC",), "s:0", "s")]

    def dying():
        yield from sentences
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_conll(tmp_path / "distilled.conll", dying())
    assert list(tmp_path.iterdir()) == []
    write_conll(tmp_path / "distilled.conll", sentences)
    assert [s.tokens for s in read_conll(tmp_path / "distilled.conll")] == [("Paris",)]


def test_a_folder_replaces_the_old_folder_whole(tmp_path):
    model = tmp_path / "model"
    with atomic_path(model) as partial:
        partial.mkdir()
        (partial / "config.json").write_text("old")
        (partial / "stale.bin").write_text("x")
    with atomic_path(model) as partial:
        partial.mkdir()
        (partial / "config.json").write_text("new")
    assert sorted(p.name for p in model.iterdir()) == ["config.json"] and (model / "config.json").read_text() == "new"
    with pytest.raises(OSError), atomic_path(model) as partial:
        partial.mkdir()
        raise OSError("disk full")
    assert (model / "config.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
