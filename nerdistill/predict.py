"""``python -m nerdistill.predict``: tag raw text or a CoNLL file with a trained model."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nerdistill.data.conll import Sentence, read_conll, write_conll
from nerdistill.inference import Tagger
from nerdistill.runtime import configure_process

log = logging.getLogger(__name__)


def read_input(path: Path, fmt: str, tagger: Tagger) -> list[tuple[str, ...]]:
    if fmt == "conll":
        return [s.tokens for s in read_conll(path, tagger.labels)]
    if fmt == "text":
        from nerdistill.data.text import sentences_from_text

        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read as UTF-8 text ({err})") from err
        return [tuple(tokens) for tokens in sentences_from_text(text)]
    raise ValueError(f"format must be 'text' or 'conll', got {fmt!r}")


def predict(cfg: DictConfig) -> Path:
    tagger = Tagger(cfg.model_dir, cfg.batch_size, cfg.max_length, cfg.precision, quantize=cfg.get("quantize"))
    sentences = read_input(Path(cfg.input_file), cfg.format, tagger)
    tags = tagger.tag(sentences)
    output = Path(cfg.output)
    write_conll(output, [Sentence(tuple(tokens), tuple(t), f"input:{i}", "input") for i, (tokens, t) in enumerate(zip(sentences, tags))])
    log.info("tagged %d sentences -> %s", len(sentences), output)
    return output


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    configure_process(cfg.get("runtime"))
    predict(cfg)


if __name__ == "__main__":
    main()
