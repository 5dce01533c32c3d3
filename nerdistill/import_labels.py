"""``python -m nerdistill.import_labels export_file=<Label Studio JSON export>``: people's labels back as gold CoNLL.

Reads Label Studio's JSON export of the tasks ``python -m nerdistill.export`` wrote, maps each
annotation's character spans to the task's tokens, and writes ``gold.conll`` (IOB2) and
``report.json`` into the run's output dir. A span off the token edges, overlapping another or of
a type outside ``labels`` stops the command naming the task (``bad_spans=error``) before anything
is written, or (``bad_spans=skip``) leaves its task out, counted and named in the report and the log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nerdistill.checks import check_value, exit_on_input_error
from nerdistill.data.conll import write_conll
from nerdistill.data.labels import LabelSet
from nerdistill.data.labelstudio import read_export
from nerdistill.files import write_json
from nerdistill.runtime import configure_process

log = logging.getLogger(__name__)


def import_labels(cfg: DictConfig) -> dict:
    """Read the export, write the gold CoNLL and the report; returns the report."""
    for key, allowed in (("export_file", (str,)), ("bad_spans", (str,)), ("output", (str,))):
        check_value(key, cfg.get(key), allowed)
    path = Path(cfg.export_file)
    if not path.is_file():
        raise FileNotFoundError(f"export_file={path}: not a file")
    sentences, found = read_export(path, LabelSet(tuple(cfg.labels)), cfg.bad_spans)
    report = {"export_file": str(path), "output": str(cfg.output), **found.as_dict()}
    for reason, entry in report["left_out"].items():
        if entry["count"]:
            log.warning("%d task(s) left out (%s): %s", entry["count"], reason.replace("_", " "), entry["tasks"][:20])
    for line in found.bad_spans[:20]:
        log.warning("%s", line)
    if found.several_annotations:
        log.warning(
            "%d task(s) have several annotations: the latest was used (%s)",
            len(found.several_annotations),
            found.several_annotations[:20],
        )
    if not sentences:
        raise ValueError(
            f"export_file={path}: no task has a usable annotation ({found.tasks} tasks; left out: {report['left_out']})"
        )
    write_conll(cfg.output, sentences)
    write_json(Path(cfg.paths.output_dir) / "report.json", report)
    log.info("%d of %d tasks -> %s (%d entities)", len(sentences), found.tasks, cfg.output, found.entities)
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="import_labels")
def main(cfg: DictConfig) -> None:
    configure_process(cfg.get("runtime"))
    with exit_on_input_error(log):
        import_labels(cfg)


if __name__ == "__main__":
    main()
