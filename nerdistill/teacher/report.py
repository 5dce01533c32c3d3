"""The annotate job's report: quality against gold, parse counts, calls, tokens, cost, time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from nerdistill.data.labels import spans
from nerdistill.metrics import ner_metrics
from nerdistill.teacher.job import Outcome, Stats
from nerdistill.teacher.parser import COUNT_KEYS

SCHEMA = "nerdistill.annotate.report/1"


def cost(tokens: Mapping[str, int], price: Mapping[str, float] | None, factor: float = 1.0) -> float | None:
    """USD for ``tokens`` at ``price`` (USD per 1M input/output tokens) times ``factor`` (the batch rate's
    share); None if unpriced."""
    if price is None:
        return None
    return round(
        (tokens.get("prompt", 0) * float(price["input"]) + tokens.get("completion", 0) * float(price["output"]))
        * factor
        / 1e6,
        6,
    )


def quality(outcomes: Sequence[Outcome], annotated_only: bool) -> dict | None:
    """Micro/macro/per-type P/R/F1 against gold (failed sentences count as no entities unless excluded)."""
    chosen = [o for o in outcomes if o.tags is not None or not annotated_only]
    if not chosen:
        return None
    return ner_metrics([o.sentence.tags for o in chosen], [o.tags or ["O"] * len(o.sentence.tokens) for o in chosen])


def confidence_summary(outcomes: Sequence[Outcome], has_gold: bool) -> dict:
    """Entities by confidence source, their mean confidence, and with gold the mean of the right
    entities (span and type in gold) and of the wrong ones."""
    right, wrong, sources = [], [], Counter()
    for o in outcomes:
        truth = set(spans(o.sentence.tags)) if has_gold else set()
        for e in o.entities:
            sources[o.confidence_source] += 1
            (right if (e["start"], e["end"], e["type"]) in truth else wrong).append(e["confidence"])
    every = right + wrong
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {
        "source": dict(sources),
        "mean": mean(every),
        "mean_right": mean(right) if has_gold else None,
        "mean_wrong": mean(wrong) if has_gold else None,
    }


def verification_summary(outcomes: Sequence[Outcome], has_gold: bool) -> dict:
    """Self-verification's questions: asked, the entities kept and dropped, answers that said neither
    yes nor no and calls that failed (both keep their entity), the tokens the questions took; with gold,
    how many of the kept and the dropped entities were right (span and type in gold)."""
    rows = [(o, row) for o in outcomes for row in o.verifications]
    verdicts = Counter("failed" if "error" in row else row["verdict"] or "unclear" for _, row in rows)
    summary: dict[str, Any] = {
        "asked": len(rows),
        "kept": len(rows) - verdicts["no"],
        "dropped": verdicts["no"],
        "unclear": verdicts["unclear"],
        "failed": verdicts["failed"],
        "tokens": {
            "prompt": sum(row.get("prompt_tokens", 0) for _, row in rows),
            "completion": sum(row.get("completion_tokens", 0) for _, row in rows),
        },
    }
    if has_gold:
        right = Counter(
            ((row["start"], row["end"], row["type"]) in set(spans(o.sentence.tags)), row["verdict"] == "no")
            for o, row in rows
        )
        summary |= {
            "kept_right": right[True, False],
            "kept_wrong": right[False, False],
            "dropped_right": right[True, True],
            "dropped_wrong": right[False, True],
        }
    return summary


def build_report(
    outcomes: Sequence[Outcome],
    stats: Stats,
    *,
    has_gold: bool,
    teacher: Mapping[str, Any],
    prompt: Mapping[str, Any],
    input: Mapping[str, Any],
    self_consistency: Mapping[str, Any],
    price: Mapping[str, float] | None,
    annotate_s: float,
    wall_s: float,
    simulator: Mapping[str, Any] | None,
    structured: Mapping[str, Any] | None = None,
    batch: Mapping[str, Any] | None = None,
    local: Mapping[str, Any] | None = None,
    annotate_cpu_s: float | None = None,
    examples: Mapping[str, Any] | None = None,
    verify: bool = False,
) -> dict:
    """The report; with ``batch`` (teacher.mode=batch: :meth:`BatchRunner.summary`) calls are priced at its
    ``price_factor``."""
    annotated = sum(o.tags is not None for o in outcomes)
    parse = Counter()
    statuses = Counter()
    unknown_types = Counter()
    for outcome in outcomes:
        for call in outcome.calls:
            parse.update(call.parsed.counts)
            unknown_types.update(call.parsed.unknown_types)
            statuses[call.parsed.status] += 1
            parse["truncated"] += call.response.finish_reason == "length"
    tokens_all = stats.tokens_made + stats.tokens_cached
    factor = float(batch["price_factor"]) if batch is not None else 1.0
    return {
        "schema": SCHEMA,
        "simulated": simulator is not None,
        "teacher": dict(teacher),
        "prompt": dict(prompt),
        "input": dict(input),
        "self_consistency": dict(self_consistency),
        "sentences": {
            "total": len(outcomes),
            "annotated": annotated,
            "failed": len(outcomes) - annotated,
            "failed_by_reason": dict(Counter(o.reason for o in outcomes if o.tags is None).most_common()),
            "entities": sum(len(o.entities) for o in outcomes),
        },
        "quality": quality(outcomes, annotated_only=False) if has_gold else None,
        "quality_annotated_only": quality(outcomes, annotated_only=True) if has_gold else None,
        "parse": {
            "responses": sum(statuses.values()),
            "status": dict(statuses),
            **{k: parse[k] for k in (*COUNT_KEYS, "truncated")},
            "unknown_types": dict(unknown_types.most_common()),
        },
        "confidence": confidence_summary(outcomes, has_gold),
        "examples": dict(examples) if examples is not None else None,
        "verification": verification_summary(outcomes, has_gold) if verify else None,
        "structured_output": dict(structured) if structured is not None else None,
        "calls": {"made": stats.made, "cached": stats.cached, "failed": stats.failed, "reasked": stats.reasked},
        "tokens": {
            "made": {"prompt": stats.tokens_made["prompt"], "completion": stats.tokens_made["completion"]},
            "cached": {"prompt": stats.tokens_cached["prompt"], "completion": stats.tokens_cached["completion"]},
        },
        "cost": {
            "currency": "USD",
            "price_per_1m_tokens": dict(price) if price is not None else None,
            "rate": "batch" if batch is not None else "online",
            "price_factor": factor,
            "this_run": cost(stats.tokens_made, price, factor),
            "all_responses": cost(tokens_all, price, factor),
        },
        "batch": dict(batch) if batch is not None else None,
        "time": {
            "wall_s": round(wall_s, 3),
            "annotate_s": round(annotate_s, 3),
            # the process's CPU seconds while annotating: every thread, a local model's server included
            "annotate_cpu_s": round(annotate_cpu_s, 3) if annotate_cpu_s is not None else None,
            "sentences_per_s": round(len(outcomes) / annotate_s, 2) if annotate_s > 0 else None,
        },
        "simulator": dict(simulator) if simulator is not None else None,
        "local_server": dict(local) if local is not None else None,
    }


def _pct(value: float) -> str:
    return f"{value:.3f}"


def _reasons(counts: Mapping[str, int]) -> str:
    return " (" + ", ".join(f"{reason}: {n}" for reason, n in counts.items()) + ")" if counts else ""


def markdown(report: Mapping[str, Any]) -> str:
    """A human-readable summary of :func:`build_report`'s dict."""
    t, s, c = report["teacher"], report["sentences"], report["calls"]
    title = "Teacher annotation report" + (" — SIMULATED TEACHER (not a real LLM)" if report["simulated"] else "")
    lines = [
        f"# {title}",
        "",
        f"- teacher: `{t['model']}` at `{t['endpoint']}`" + (" (simulated)" if report["simulated"] else ""),
        f"- prompt: `{report['prompt']['id']}@{report['prompt']['version']}`; input: `{report['input']}`",
        f"- sentences: {s['total']} total, {s['annotated']} annotated, "
        f"{s['failed']} failed{_reasons(s['failed_by_reason'])}; {s['entities']} entities",
        f"- calls: {c['made']} made, {c['cached']} from cache, {c['failed']} failed, {c['reasked']} re-asks",
        f"- tokens this run: {report['tokens']['made']}; from cache: {report['tokens']['cached']}",
        f"- cost this run: {report['cost']['this_run']} USD at the {report['cost']['rate']} rate "
        f"(all responses: {report['cost']['all_responses']})",
        f"- time: {report['time']['wall_s']} s wall, {report['time']['annotate_s']} s annotating "
        f"({report['time'].get('annotate_cpu_s')} CPU s), {report['time']['sentences_per_s']} sentences/s",
        f"- parse: {report['parse']}",
        f"- confidence: {report.get('confidence')}; structured output: {report.get('structured_output')}",
    ]
    if report.get("examples"):
        lines.append(f"- examples: `{report['examples']}`")
    if report.get("verification"):
        lines.append(f"- self-verification: `{report['verification']}`")
    if report.get("batch"):
        b = report["batch"]
        lines += [
            "",
            "## Batches",
            "",
            f"- requests: `{b['requests']}`; priced at {b['price_factor']} of the online rate",
            "",
            "| batch | status | requests | answered | unanswered | resumed | reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in b["batches"]:
            lines.append(
                f"| `{row['batch_id']}` | {row['status']} | {row['requests']} | {row['answered']} "
                f"| {row['errors'] or ''} | {row['resumed']} | {row['reason'] or ''} |"
            )
    if report["quality"]:
        q = report["quality"]
        lines += [
            "",
            "## Quality against gold (failed sentences count as no entities)",
            "",
            "| | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for name, row in [("micro", q["micro"]), ("macro", q["macro"]), *sorted(q["per_type"].items())]:
            lines.append(
                f"| {name} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} | {row['support']} |"
            )
    if report.get("local_server"):
        local = report["local_server"]
        lines += [
            "",
            "## Local model (a real LLM on this machine)",
            "",
            f"- {local['description']}",
            f"- file: `{local['gguf']}` (sha256 `{local['gguf_sha256'][:16]}…`); package: {local['package']}; "
            f"{local['torch_threads']} torch threads; loaded in {local['load_s']} s",
            f"- server: `{local['stats']}`",
        ]
    if report["simulator"]:
        lines += [
            "",
            "## Simulator",
            "",
            f"- target F1 for this prompt: {report['simulator']['target_f1']}",
            f"- settings: `{report['simulator']['settings']}`",
            f"- requests: `{report['simulator']['stats']}`",
        ]
    return "\n".join(lines) + "\n"
