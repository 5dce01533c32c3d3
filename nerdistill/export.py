"""``python -m nerdistill.export source=<sentences> [llm_labels=<file>] [model_dir=<run>]``: the sentences
chosen for people as Label Studio tasks, with the LLM's spans and the student's as pre-annotations.

Writes ``tasks.json`` (import it into a Label Studio project), ``label_config.xml`` (the project's
labelling interface) and ``report.json`` into the run's output dir. The people's corrections come
back as gold CoNLL with ``python -m nerdistill.import_labels`` (docs/data.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nerdistill.checks import check_tagger_config, check_value, exit_on_input_error
from nerdistill.data.labels import LabelSet
from nerdistill.data.labelstudio import GRANULARITIES, label_config, task
from nerdistill.data.sources import check_source, read_source
from nerdistill.files import write_json, write_text
from nerdistill.provenance import teacher_version
from nerdistill.runtime import configure_process

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    """Every setting by its key, and the files' existence, before anything is read or loaded."""
    check_tagger_config(cfg)
    for key in ("source", "llm_labels", "model_dir", "llm_version", "student_version", "granularity"):
        check_value(key, cfg.get(key), (str,) if key == "source" else (str, type(None)))
    if cfg.granularity not in GRANULARITIES:
        raise ValueError(f"granularity={cfg.granularity!r}: expected word, symbol or null")
    check_source("source", cfg.source)
    if cfg.llm_labels:
        check_source("llm_labels", cfg.llm_labels)


def export(cfg: DictConfig) -> dict:
    """Read the sentences (and the LLM's labels), tag them with the student, write the tasks."""
    check_config(cfg)
    labels = LabelSet(tuple(cfg.labels))
    sentences = read_source(cfg.source, labels)
    llm = {}
    if cfg.llm_labels:
        for sentence in read_source(cfg.llm_labels, labels, labels_name="labels"):
            llm.setdefault(sentence.text_key, sentence.tags)
    student: list | None = None
    if cfg.model_dir:
        from nerdistill.student.inference import Tagger  # torch and the model only when a student pre-annotates

        tagger = Tagger(cfg.model_dir, cfg.batch_size, cfg.max_length, cfg.precision, quantize=cfg.get("quantize"))
        if tagger.labels.types != labels.types:
            raise ValueError(
                f"labels={list(labels.types)}: the model in {cfg.model_dir} predicts {list(tagger.labels.types)}"
            )
        student = tagger.tag([s.tokens for s in sentences])
    llm_version = cfg.llm_version or (teacher_version(cfg.llm_labels) if cfg.llm_labels else None)
    student_version = cfg.student_version or (f"student:{cfg.model_dir}" if cfg.model_dir else None)
    tasks = []
    for i, sentence in enumerate(sentences):
        predictions = {}
        if llm_version is not None:
            predictions[llm_version] = llm.get(sentence.text_key)
        if student is not None:
            predictions[student_version] = student[i]
        tasks.append(task(sentence, i, predictions))
    out = Path(cfg.paths.output_dir)
    report = {
        "source": str(cfg.source),
        "tasks": len(tasks),
        "labels": list(labels.types),
        "predictions": {
            "llm": {
                "model_version": llm_version,
                "labels": str(cfg.llm_labels),
                "tasks": sum(s.text_key in llm for s in sentences),
            }
            if cfg.llm_labels
            else None,
            "student": {"model_version": student_version, "model_dir": str(cfg.model_dir), "tasks": len(tasks)}
            if student is not None
            else None,
        },
        "format": (
            "Label Studio tasks: data.text (tokens joined by single spaces), data.tokens, data.sentence_id; "
            "predictions[].result[] type labels"
        ),
    }
    write_text(out / "label_config.xml", label_config(labels, cfg.granularity))
    write_json(out / "tasks.json", tasks)
    write_json(out / "report.json", report)  # last: a folder with it holds a finished export
    missing = len(tasks) - report["predictions"]["llm"]["tasks"] if cfg.llm_labels else 0
    if missing:
        log.warning(
            "%d of %d sentences have no LLM labels in %s (matched by tokens): their tasks carry no LLM prediction",
            missing,
            len(tasks),
            cfg.llm_labels,
        )
    log.info("%d tasks -> %s (labelling interface: %s)", len(tasks), out / "tasks.json", out / "label_config.xml")
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    configure_process(cfg.get("runtime"))
    with exit_on_input_error(log):
        export(cfg)


if __name__ == "__main__":
    main()
