"""``python -m nerdistill.evaluate``: score a trained model on a gold split (seqeval, strict IOB2)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nerdistill.checks import check_tagger_config, exit_on_input_error
from nerdistill.data.hf import is_hf
from nerdistill.data.sources import check_source, read_source
from nerdistill.files import write_json
from nerdistill.metrics import ner_metrics
from nerdistill.runtime import configure_process
from nerdistill.student.inference import Tagger

log = logging.getLogger(__name__)


def format_table(metrics: dict) -> str:
    """A Markdown table: per type, then micro and macro averages."""
    lines = ["| | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    rows = [*sorted(metrics["per_type"].items()), ("micro", metrics["micro"]), ("macro", metrics["macro"])]
    for name, m in rows:
        lines.append(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
    return "\n".join(lines)


def evaluate(cfg: DictConfig) -> dict:
    """Score ``model_dir`` on ``split`` and write metrics.json; bad settings fail before the model loads."""
    check_tagger_config(cfg)
    path = str(cfg.splits[cfg.split]) if cfg.split in cfg.splits else str(cfg.split)
    if is_hf(path):
        check_source("split", path)
    elif not Path(path).is_file():
        raise FileNotFoundError(
            f"split={cfg.split}: {path} is not a file "
            "(expected val, test, a CoNLL file or hf:<dataset folder or hub id>[:split])"
        )
    tagger = Tagger(cfg.model_dir, cfg.batch_size, cfg.max_length, cfg.precision, quantize=cfg.get("quantize"))
    sentences = read_source(path, tagger.labels, labels_name=f"the label set of the model in {cfg.model_dir}")
    predicted = tagger.tag([s.tokens for s in sentences])
    metrics = ner_metrics([s.tags for s in sentences], predicted)
    result = {
        "model_dir": str(cfg.model_dir),
        "data": path,
        "sentences": len(sentences),
        "precision": tagger.precision,
        **metrics,
    }
    out = Path(cfg.paths.output_dir)
    write_json(out / "metrics.json", result)
    print(f"{path} ({len(sentences)} sentences)\n{format_table(metrics)}")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    configure_process(cfg.get("runtime"))
    with exit_on_input_error(log):
        return evaluate(cfg)["micro"]["f1"]


if __name__ == "__main__":
    main()
