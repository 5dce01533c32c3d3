"""``python -m nerdistill.predict``: tag raw text or a CoNLL file with a trained model."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nerdistill.checks import check_tagger_config, exit_on_input_error
from nerdistill.data.conll import Sentence, write_conll
from nerdistill.data.hf import is_hf
from nerdistill.data.sources import check_source, read_source
from nerdistill.runtime import configure_process
from nerdistill.student.inference import Tagger

log = logging.getLogger(__name__)


FORMATS = ("text", "conll")


def read_text(path: Path) -> list[tuple[str, ...]]:
    """A raw text file's sentences as tokens; a file with none is an error."""
    from nerdistill.data.text import sentences_from_text

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"input_file={path}: cannot read as UTF-8 text ({err})") from err
    sentences = [tuple(tokens) for tokens in sentences_from_text(text)]
    if not sentences:
        raise ValueError(f"input_file={path}: no text to tag (the file is empty or blank)")
    return sentences


def predict(cfg: DictConfig) -> Path:
    """Tag ``input_file`` (raw text, a CoNLL file or an ``hf:`` dataset, whose tokens are tagged whatever
    ``format`` says) and write the CoNLL output; bad settings and bad text fail before the model loads."""
    check_tagger_config(cfg)
    if cfg.format not in FORMATS:
        raise ValueError(f"format must be 'text' or 'conll', got {cfg.format!r}")
    path = str(cfg.input_file)
    check_source("input_file", path)
    text = read_text(Path(path)) if cfg.format == "text" and not is_hf(path) else None
    tagger = Tagger(cfg.model_dir, cfg.batch_size, cfg.max_length, cfg.precision, quantize=cfg.get("quantize"))
    # a CoNLL file's or a dataset's tags are checked against the model's label set
    sentences = (
        text
        if text is not None
        else [
            s.tokens
            for s in read_source(path, tagger.labels, labels_name=f"the label set of the model in {cfg.model_dir}")
        ]
    )
    tags = tagger.tag(sentences)
    output = Path(cfg.output)
    write_conll(
        output,
        [
            Sentence(tuple(tokens), tuple(t), f"input:{i}", "input")
            for i, (tokens, t) in enumerate(zip(sentences, tags))
        ],
    )
    log.info("tagged %d sentences -> %s", len(sentences), output)
    return output


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    configure_process(cfg.get("runtime"))
    with exit_on_input_error(log):
        predict(cfg)


if __name__ == "__main__":
    main()
