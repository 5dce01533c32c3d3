"""``trainer=ddp_cpu`` for real: two gloo ranks of ``python -m nerdistill.train`` against one process
with the same global batch (2 x 4 against 1 x 8)."""

import csv
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from nerdistill.data.conll import read_conll
from nerdistill.data.labels import LabelSet
from nerdistill.train import build, read_data, train
from tests.conftest import DATA_DIR, ROOT, TINY_TRAIN, compose_config

PROBE = ["+callbacks.probe._target_=tests.ddp_probe.DrawProbe", "+callbacks.probe.folder=${paths.output_dir}"]
# the whole dev and test sets, so that "every rank evaluated all of it" means something
OVERRIDES = [*TINY_TRAIN, "schedule=sigmoid", "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0", *PROBE]


def rows(path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_cpu_ranks_train_as_one_process_with_the_same_global_batch(tmp_path, data_dir):
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    single = train(compose_config("train", [*OVERRIDES, "data.batch_size=8"], single_dir))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the ranks Lightning starts import this checkout too
    command = [
        sys.executable,
        "-m",
        "nerdistill.train",
        *OVERRIDES,
        "trainer=ddp_cpu",
        "data.batch_size=4",
        f"paths.data_dir={DATA_DIR}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={ddp_dir}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads((ddp_dir / "metrics.json").read_text())

    # one plan: the same optimiser steps, epochs and examples per step
    plans = [json.loads((d / "plan.json").read_text()) for d in (single_dir, ddp_dir)]
    assert [(p["world_size"], p["batch_size"]) for p in plans] == [(1, 8), (2, 4)]
    for key in ("total_steps", "steps_per_epoch", "epochs", "schedule"):
        assert plans[0][key] == plans[1][key]
    assert single["global_step"] == ddp["global_step"] == plans[0]["total_steps"] == 16

    # the global batch's realised share per step (rank 0's shard alone differs: 0.875 is 3.5 of 4)
    assert rows(ddp_dir / "distilled_share.csv") == rows(single_dir / "distilled_share.csv")
    assert len(rows(ddp_dir / "distilled_share.csv")) == 16

    # the two ranks' shards of every step together are the single process's batch of that step
    one = json.loads((single_dir / "draws_rank0.json").read_text())
    ranks = [json.loads((ddp_dir / f"draws_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and one["mismatches"] == ranks[0]["mismatches"] == ranks[1][
        "mismatches"
    ] == 0
    assert all(len(b) == 4 for r in ranks for b in r["batches"]) and len(one["batches"]) == 16
    for step, batch in enumerate(one["batches"]):
        assert sorted(ranks[0]["batches"][step] + ranks[1]["batches"][step]) == sorted(batch)
    assert Counter(i for r in ranks for b in r["batches"] for i in b) == Counter(i for b in one["batches"] for i in b)
    drawn = Counter(i for b in one["batches"] for i in b)  # each pool a fresh permutation before any repeat
    for pool in (range(64), range(64, 128)):
        assert max(drawn[i] for i in pool) - min(drawn[i] for i in pool) <= 1

    # every rank evaluated the whole dev set each round and the whole test set
    labels = LabelSet(("PER", "ORG", "LOC", "MISC"))
    n_val, n_test = (len(read_conll(data_dir / "conll2003" / f"{s}.txt", labels)) for s in ("valid", "test"))
    for record in (one, *ranks):
        assert record["val_sentences"] == [n_val, n_val] and record["test_sentences"] == n_test
    assert ddp["test"]["micro"]["support"] == single["test"]["micro"]["support"] > 0

    # the DDP run's best weights, validated in this one process, score its val_f1_best
    check = compose_config(
        "train",
        [*TINY_TRAIN, "schedule=sigmoid", "trainer.limit_val_batches=1.0", "data.batch_size=8"],
        tmp_path / "check",
    )
    run = build(check, read_data(check), callbacks=[], logger=False)
    (validated,) = run.trainer.validate(
        run.module, datamodule=run.datamodule, ckpt_path=ddp["best_checkpoint"], verbose=False
    )
    assert validated["val/f1"] == pytest.approx(ddp["val_f1_best"], abs=1e-6)

    # rank 0 alone wrote the results: rank 1 ran the same function and returned before writing
    assert (ddp_dir / "model" / "model.safetensors").exists() and not list(ddp_dir.glob(".partial-*"))
    assert "outputs in" in (ddp_dir / "train.log").read_text()
    rank1_log = (ddp_dir / "train_ddp_process_1.log").read_text()
    assert "run plan: 16 optimiser steps" in rank1_log and "outputs in" not in rank1_log
