"""``python -m nerdistill.report`` on synthetic sweeps with known numbers."""

import csv
import json
import math
import subprocess
import sys

import pytest
from matplotlib.colors import to_hex

from nerdistill.reporting import plots
from nerdistill.reporting.annotation import build_annotation_report
from nerdistill.reporting.plots import short_floats
from nerdistill.reporting.selection import SelectionReport, load_loops
from nerdistill.reporting.sweep import GOLD_ONLY, NOISEBENCH, describe_teacher
from nerdistill.reporting.tables import build_report, gold_equivalent, main
from tests.conftest import ROOT
from tests.fake_sweep import TYPES, gold_budget_sweep, regimen_sweep, write_annotate_run, write_run

PNG = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tables_hold_mean_and_std_over_seeds_and_plots_are_written(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    regimen_sweep(sweep)
    assert main([str(sweep), "--out", str(out)]) == 0

    rows = {r["group"]: r for r in read_csv(out / "summary.csv")}
    assert list(rows) == ["schedule=original", "schedule=sequential"]
    original, sequential = rows["schedule=original"], rows["schedule=sequential"]
    assert (original["n_seeds"], original["seeds"], sequential["seeds"]) == ("3", "1 2 3", "1 2")
    assert float(original["micro_f1_mean"]) == pytest.approx(0.82)
    assert float(original["micro_f1_std"]) == pytest.approx(0.02)
    assert float(original["macro_f1_mean"]) == pytest.approx(0.72)
    assert float(sequential["micro_f1_mean"]) == pytest.approx(0.86)
    assert float(sequential["micro_f1_std"]) == pytest.approx(math.sqrt(2) * 0.01)
    for i, entity in enumerate(TYPES):
        assert float(original[f"{entity}_f1_mean"]) == pytest.approx(0.82 + 0.01 * i)
    assert (original["teacher"], sequential["teacher"]) == (GOLD_ONLY, NOISEBENCH)
    assert len(read_csv(out / "runs.csv")) == 5

    md = (out / "report.md").read_text()
    assert "| schedule=original | 3 (1, 2, 3) | 0.820 ± 0.020 | 0.720 ± 0.020 |" in md
    assert "| schedule=sequential | 2 (1, 2) | **0.860 ± 0.014** |" in md
    assert f"- {NOISEBENCH}: schedule=sequential" in md
    for name in ("test_f1", "distilled_share", "val_f1"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG)
        assert f"({name}.png)" in md
    assert not (out / "gold_budget.png").exists()


def test_skipped_runs_are_named_with_the_reason_and_the_rest_is_reported(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    regimen_sweep(sweep)
    assert main([str(sweep)]) == 0  # default output: <sweep>/report
    err = capsys.readouterr().err
    assert f"skipped {sweep / '5'}: no metrics.json: the job crashed or is still running" in err
    assert f"skipped {sweep / '6'}: unreadable metrics.json" in err
    md = (sweep / "report" / "report.md").read_text()
    assert "## Skipped" in md and f"`{sweep / '5'}`: no metrics.json" in md


def test_a_folder_without_runs_says_so(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no runs" in err and "nothing to report" in err
    assert not (tmp_path / "report").exists()


def test_gold_budget_sweep_reports_gold_saved(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "out"
    gold_budget_sweep(sweep)
    report = build_report([sweep])
    assert [g.label for g in report.groups] == [
        "schedule=original, gold_budget=100",
        "schedule=original, gold_budget=1000",
        "schedule=sequential, gold_budget=100",
    ]
    assert report.gold_series() == {
        "schedule=original": [(100, 0.6, None), (1000, 0.8, None)],
        "schedule=sequential": [(100, 0.7, None)],
    }
    sequential = next(p for p in report.gold_points() if p.series == "schedule=sequential")
    assert sequential.gold_equivalent == pytest.approx(math.sqrt(100 * 1000))  # halfway in log(gold)
    assert sequential.saved == pytest.approx(math.sqrt(100 * 1000) - 100)
    report.write(out)
    assert (out / "gold_budget.png").read_bytes().startswith(PNG)
    rows = read_csv(out / "gold_budget.csv")
    assert [(r["series"], r["gold"], r["gold_saved"][:5]) for r in rows][-1] == ("schedule=sequential", "100", "216.2")
    assert "| schedule=sequential | 100 | 0.700 | 316 | 216 |" in (out / "report.md").read_text()


def test_gold_equivalent_outside_the_baseline_is_unknown():
    baseline = [(100, 0.6, None), (1000, 0.8, None)]
    assert gold_equivalent(baseline, 0.9) is None and gold_equivalent(baseline, 0.5) is None
    assert gold_equivalent(baseline, 0.8) == pytest.approx(1000)


def test_teacher_comes_from_the_path_or_the_annotate_report(tmp_path):
    assert describe_teacher(tmp_path / "noisebench_gpt35" / "train_gpt35.txt") == NOISEBENCH
    assert describe_teacher(tmp_path / "x.conll").startswith("unknown teacher")
    job = tmp_path / "f1_0.5"
    job.mkdir()
    report = {
        "simulated": True,
        "teacher": {"model": "sim"},
        "prompt": {"id": "cot"},
        "quality": {"micro": {"f1": 0.512}},
        "simulator": {"settings": {"target_f1": 0.5, "oracle": ["/d/conll2003/train.txt"]}},
    }
    (job / "report.json").write_text(json.dumps(report))
    assert describe_teacher(job / "distilled.conll") == "SIMULATED teacher (target F1 0.50, measured F1 0.512)"
    report.update(simulated=False, teacher={"model": "gpt-4o"}, quality=None, simulator=None)
    (job / "report.json").write_text(json.dumps(report))
    assert describe_teacher(job / "distilled.conll") == "LLM teacher gpt-4o (prompt cot, no gold to measure)"


def test_teacher_of_a_sweep_run_without_report_json(tmp_path):
    write_run(tmp_path / "sweep" / "0", schedule="sequential", seed=1, f1=0.8, distilled="distilled/bbc.conll")
    report = build_report([tmp_path / "sweep"])
    assert report.groups[0].teacher == f"unknown teacher ({tmp_path / 'sweep' / 'distilled' / 'bbc.conll'})"


def test_positional_command_line(tmp_path):
    regimen_sweep(tmp_path / "sweep")
    done = subprocess.run(
        [sys.executable, "-m", "nerdistill.report", str(tmp_path / "sweep"), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "5 runs in 2 groups (2 skipped)" in done.stdout
    assert (tmp_path / "out" / "report.md").exists()


def test_an_annotate_sweep_is_reported_side_by_side(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_annotate_run(sweep / "0", prompt="standard", f1=0.71)
    write_annotate_run(sweep / "1", prompt="cot", f1=0.78)
    write_annotate_run(sweep / "2", prompt="fancy", f1=None, report=False)
    assert main([str(sweep)]) == 0
    assert f"skipped {sweep / '2'}: no report.json" in capsys.readouterr().err

    md = (sweep / "report" / "report.md").read_text()
    assert "SIMULATED" not in md
    assert "| | prompt=standard | prompt=cot |" in md  # teacher.model does not vary: not in the labels
    assert "| teacher | gpt-4o (https://api.openai.com/v1) | gpt-4o (https://api.openai.com/v1) |" in md
    assert "| micro F1 | 0.710 | 0.780 |" in md and "| MISC F1 | 0.710 | 0.780 |" in md
    assert "| re-asks | 40 | 40 |" in md and "| prompt tokens | 401,000 | 401,000 |" in md
    assert "| cost USD (all responses) | 1.3035 | 1.3035 |" in md and "| wall s | 312.5 | 312.5 |" in md
    assert "| CPU s annotating | 150.0 | 150.0 |" in md
    rows = {r["metric"]: r for r in read_csv(sweep / "report" / "comparison.csv")}
    assert rows["micro F1"] == {"metric": "micro F1", "prompt=standard": "0.71", "prompt=cot": "0.78"}
    assert rows["unparseable responses"]["prompt=cot"] == "40"


def test_an_annotate_job_without_gold_has_no_quality(tmp_path):
    write_annotate_run(tmp_path / "sweep" / "0", prompt="cot", f1=None)
    md = build_annotation_report([tmp_path / "sweep"]).markdown()
    assert "| micro F1 | – |" in md and "LOC F1" not in md


def test_schedule_legends_round_long_floats():
    assert (
        short_floats("Sequential(order='distilled_first', switch=0.4229826029254782)")
        == "Sequential(order='distilled_first', switch=0.423)"
    )
    assert short_floats("Sigmoid(steepness=10.0, midpoint=0.5)") == "Sigmoid(steepness=10.0, midpoint=0.5)"


def test_group_by_joins_a_baseline_launched_from_another_sweep(tmp_path):
    # seed 1's sequential run came from another sweep without a denoise override; seeds 2 and 3 set it
    write_run(
        tmp_path / "baseline" / "0",
        schedule="sequential",
        seed=1,
        f1=0.80,
        distilled="/elsewhere/noisebench_gpt35/train_gpt35.txt",
    )
    for job, seed in enumerate((2, 3)):
        write_run(
            tmp_path / "sweep" / str(job), schedule="sequential", seed=seed, f1=0.82, extra_overrides=("denoise=none",)
        )
        write_run(
            tmp_path / "sweep" / str(job + 2),
            schedule="sequential",
            seed=seed,
            f1=0.83,
            extra_overrides=("denoise=agree",),
        )
    roots = [tmp_path / "baseline", tmp_path / "sweep"]
    assert len(build_report(roots).groups) == 3  # by the overrides that differ: the baseline stands apart
    groups = {g.label: sorted(r.seed for r in g.runs) for g in build_report(roots, ["schedule", "denoise=none"]).groups}
    assert groups == {"schedule=sequential, denoise=none": [1, 2, 3], "schedule=sequential, denoise=agree": [2, 3]}
    # the same teacher's file at two paths is named once
    assert {g.teacher for g in build_report(roots, ["schedule", "denoise=none"]).groups} == {NOISEBENCH}


def test_group_by_the_distilled_data_names_none_for_gold_only_runs(tmp_path):
    # gold-only runs inherit the experiment's default teacher_labels=gpt35 but use no distilled data
    for seed in (1, 2):
        write_run(
            tmp_path / "sweep" / str(seed), schedule="original", seed=seed, f1=0.80, extra_overrides=("denoise=none",)
        )
        write_run(
            tmp_path / "sweep" / str(seed + 2),
            schedule="sequential",
            seed=seed,
            f1=0.82,
            extra_overrides=("teacher_labels=gpt35",),
        )
    labels = {
        g.label: g.teacher for g in build_report([tmp_path / "sweep"], ["schedule", "teacher_labels=gpt35"]).groups
    }
    assert labels == {
        "schedule=original, teacher_labels=none": GOLD_ONLY,
        "schedule=sequential, teacher_labels=gpt35": NOISEBENCH,
    }


def test_test_f1_plot_gives_long_group_labels_room_and_spans_the_scores(tmp_path):
    # four grouping keys make labels of ~90 characters (docs/results/noise_aware_amx); the bars must not be squeezed
    for job, (denoise, f1) in enumerate([("none", 0.82), ("trust", 0.827), ("none", 0.821), ("trust", 0.826)]):
        write_run(
            tmp_path / "sweep" / str(job),
            schedule="sequential",
            seed=job // 2 + 1,
            f1=f1,
            extra_overrides=(f"denoise={denoise}",),
        )
    report = build_report([tmp_path / "sweep"], ["data.gold_budget", "schedule", "teacher_labels", "denoise=none"])
    longest = max(len(g.label) for g in report.groups)
    fig = plots.test_f1(report.groups)
    width = fig.get_size_inches()[0]
    assert width > 7.0 and width >= 0.08 * longest
    low, high = fig.axes[0].get_xlim()
    assert low < 0.82 and 0.827 < high < 0.9  # not stretched to 1.0, where half-point differences vanish


def write_loop(folder, strategy, unit, seed, rounds, size, total, per_word=False, timing=None, name=None):
    """A select_loop run's report.json: ``rounds`` as (sentences, tokens, {student: (dev, test)}), each
    student trained in 100 s, ``size`` chosen a round up to ``total``; ``timing``: round 0's selection
    report's timing; ``name``: its ``loop.name``."""
    records = [
        {
            "round": r,
            "gold": {"sentences": sentences, "tokens": tokens, "entities": 0},
            "students": {
                name: {"val_f1_best": dev, "test_f1": test, "seconds": 100.0} for name, (dev, test) in students.items()
            },
            "selection": None,
        }
        for r, (sentences, tokens, students) in enumerate(rounds)
    ]
    settings = {
        "seed_size": rounds[0][0],
        "total": total,
        "strategy": strategy,
        "per_word": per_word,
        "budget": {"unit": unit, "size": size},
        "clusters": None,
        "seed": seed,
        "name": name,
    }
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(
        json.dumps({"note": "gold plays the human", "settings": settings, "rounds": records})
    )
    # a selection's report beside it is not a loop
    (folder / "round_0" / "selection").mkdir(parents=True)
    (folder / "round_0" / "selection" / "report.json").write_text(
        json.dumps({"selected": {}} | ({"timing": timing} if timing else {}))
    )


def markdown_tables(path):
    """The report's tables, each as its lines (header first, the separator left out)."""
    return [
        [line for line in block.splitlines() if line.startswith("| ") and "---" not in line]
        for block in path.read_text().split("\n\n")
        if block.startswith("| ")
    ]


def rows_by_series_and_round(table):
    """A selection table's rows by their first two cells (series, round)."""
    return {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line for line in table[1:]}


def test_select_loops_are_reported_against_random_at_the_same_seed_and_budget(tmp_path, capsys):
    loops, out = tmp_path / "loops", tmp_path / "out"
    start = (200, 3000, {"original": (0.70, 0.60)})
    for seed, (random_f1, mnlp_f1) in {1: (0.80, 0.83), 2: (0.82, 0.84)}.items():
        write_loop(
            loops / f"random_{seed}",
            "random",
            "sentences",
            seed,
            [start, (1000, 15000, {"original": (0.9, random_f1)})],
            800,
            1000,
        )
        write_loop(
            loops / f"mnlp_{seed}",
            "mnlp",
            "tokens",
            seed,
            [start, (1400, 15000, {"original": (0.89 + seed / 100, mnlp_f1)})],
            12000,
            15000,
            timing={"score_s": 40.0 + seed, "model_passes": 1, "ms_per_sentence_and_pass": 3.0 + seed},
        )
    # four rounds of 3,000 tokens to random's 15,000, each under-spent a little: only the last is at random's budget
    grown = [(200 + 300 * r, 3000 * (r + 1) - 10, {"original": (0.9, 0.8 + r / 100)}) for r in range(1, 5)]
    write_loop(loops / "mnlp_rounds_1", "mnlp", "tokens", 1, [start, *grown], 3000, 15000)
    write_loop(loops / "ee_3", "expected_errors", "tokens", 3, [start], 12000, 15000, per_word=True)  # no random

    assert main([str(loops), "--out", str(out)]) == 0
    f1_table, timing_table = markdown_tables(out / "report.md")
    rows = rows_by_series_and_round(f1_table)
    assert set(rows) == {(s, r) for s in ("random (sentences)", "mnlp (tokens)") for r in ("0", "1")} | {
        ("expected_errors per word (tokens)", "0")
    } | {("mnlp (tokens, 4 rounds)", str(r)) for r in range(5)}
    mnlp = rows[("mnlp (tokens)", "1")]
    assert "1, 2" in mnlp and "1,400" in mnlp and "15,000" in mnlp
    assert "0.8350 ± 0.0071" in mnlp  # test: mean and sample std of 0.83 and 0.84
    assert "+0.0250 ± 0.0071" in mnlp  # test paired with random: +0.03 and +0.02
    assert "+0.0050 ± 0.0071" in mnlp  # dev paired with random: +0.01 and 0.00
    assert rows[("expected_errors per word (tokens)", "0")].count("–") == 6  # no sequential, no random to pair
    # four rounds: the seed set and the last round pair with random's (0.84 - 0.80), the rounds between do not
    assert "+0.0000" in rows[("mnlp (tokens, 4 rounds)", "0")]
    assert "+0.0400" in rows[("mnlp (tokens, 4 rounds)", "4")]
    assert rows[("mnlp (tokens, 4 rounds)", "2")].count("–") == 6
    timing = next(line for line in timing_table if line.startswith("| mnlp (tokens) | 2 |"))
    assert "| 42 (41-42) | 1 | 4.50 (4.00-5.00) | 100 | – |" in timing  # two selections; no sequential student
    assert "gold plays the human" in (out / "report.md").read_text()
    assert (out / "budget.png").read_bytes().startswith(PNG)
    csv_rows = read_csv(out / "rounds.csv")
    assert len(csv_rows) == 14 and {r["student"] for r in csv_rows} == {"original"}
    assert "6 loops" in capsys.readouterr().out


def test_select_plot_draws_random_black_and_every_other_series_in_its_own_colour(tmp_path):
    start = (200, 3000, {"original": (0.70, 0.60)})
    strategies = ["random", "mnlp", "least_confidence", "entropy", "bald", "expected_errors"]
    strategies += ["disagreement", "s7", "s8", "s9", "s10", "s11"]  # more series than tab10 has colours
    for name in strategies:
        write_loop(tmp_path / name, name, "sentences", 1, [start, (1000, 15000, {"original": (0.9, 0.8)})], 800, 1000)
    fig = SelectionReport(load_loops([tmp_path])).figure()
    legend = fig.legends[0]
    colours = {
        text.get_text(): to_hex(line.get_color()) for text, line in zip(legend.get_texts(), legend.legend_handles)
    }
    assert len(colours) == len(strategies)  # once per series, not once per panel
    assert colours["random, original"] == "#000000"
    assert len(set(colours.values())) == len(strategies)


def test_select_loops_are_paired_with_random_at_equal_cost_in_the_other_unit_too(tmp_path):
    loops, out = tmp_path / "loops", tmp_path / "out"
    start = (200, 3000, {"original": (0.70, 0.60)})
    for seed in (1, 2):
        write_loop(
            loops / f"random_{seed}",
            "random",
            "sentences",
            seed,
            [start, (1000, 15000, {"original": (0.80, 0.78)})],
            800,
            1000,
        )
        # random at the tokens least_confidence's 1,000 sentences spent, and at the sentences mnlp's tokens bought
        write_loop(
            loops / f"random_tok_{seed}",
            "random",
            "tokens",
            seed,
            [start, (1560, 23990 + seed, {"original": (0.84, 0.81)})],
            21000 + seed,
            24000 + seed,
            name="random (tokens of least_confidence)",
        )
        write_loop(
            loops / f"random_sent_{seed}",
            "random",
            "sentences",
            seed,
            [start, (1400, 21000, {"original": (0.83, 0.80)})],
            1200,
            1400,
            name="random (sentences of mnlp)",
        )
        write_loop(
            loops / f"lc_{seed}",
            "least_confidence",
            "sentences",
            seed,
            [start, (1000, 24000 + seed, {"original": (0.86, 0.82 + seed / 100)})],
            800,
            1000,
        )
        write_loop(
            loops / f"mnlp_{seed}",
            "mnlp",
            "tokens",
            seed,
            [start, (1400, 14990, {"original": (0.85, 0.83)})],
            12000,
            15000,
        )
    write_loop(
        loops / "ee_3", "expected_errors", "sentences", 3, [start, (1000, 24003, {"original": (0.9, 0.9)})], 800, 1000
    )

    assert main([str(loops), "--out", str(out)]) == 0
    f1_table, cross_table, _ = markdown_tables(out / "report.md")
    rows = rows_by_series_and_round(f1_table)
    # in the loop's own unit: least_confidence against random's 1,000 sentences, mnlp against their 15,000 tokens
    assert "+0.0550 ± 0.0071" in rows[("least_confidence (sentences)", "1")]  # 0.83, 0.84 against 0.78
    assert "+0.0500" in rows[("mnlp (tokens)", "1")]
    # loops named by loop.name are series of their own: random at 1,400 sentences is not averaged with 1,000's
    assert (
        rows[("random (sentences)", "1")].count("1,000") == 1 and "0.7800 ± 0.0000" in rows[("random (sentences)", "1")]
    )
    assert "1,400" in rows[("random (sentences of mnlp)", "1")]
    assert rows[("random (tokens of least_confidence)", "1")].count("–") == 6  # random is not paired with itself
    cross = rows_by_series_and_round(cross_table)
    assert set(cross) == {("least_confidence (sentences)", "1"), ("mnlp (tokens)", "1")}  # no seed 3 random
    lc = cross[("least_confidence (sentences)", "1")]
    assert "24,002 tokens" in lc and "+0.0200 ± 0.0000" in lc and "+0.0250 ± 0.0071" in lc  # 0.83, 0.84 - 0.81
    mnlp = cross[("mnlp (tokens)", "1")]
    assert "1,400 sentences" in mnlp and "+0.0200 ± 0.0000" in mnlp and "+0.0300 ± 0.0000" in mnlp

    fig = SelectionReport(load_loops([loops])).figure()
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels.count("random, original") == 1  # every random loop on one line
    random_line = fig.axes[0].lines[0]
    assert list(random_line.get_xdata()) == [200, 1000, 1400, 1560]  # the seed set drawn once, by budget
