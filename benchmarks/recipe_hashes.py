"""Fingerprints of three tiny training runs, to show a refactoring left training unchanged: the same
seed and config must give byte-identical weights and the same metrics.json.

Each recipe runs ``python -m nerdistill.train`` (the documented command) with the tiny model and
budget of the tests (``tests/conftest.py`` ``TINY_TRAIN``) into a fresh folder: gold only
(``schedule=original``), ``schedule=sequential``, and ``denoise=agree`` (its gold model trained
in the same folder). Printed per recipe: the sha256 of ``model/model.safetensors``, of
``metrics.json`` without timings and with the run's folder written ``<run>``, of
``distilled_share.csv`` and ``plan.json``, and the scores. Run it before and after a change and
compare: ``python -m benchmarks.recipe_hashes [--out hashes.json]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import DATA_DIR, ROOT
from tests.conftest import TINY_TRAIN

RECIPES = {
    "gold_only": ["schedule=original"],
    "sequential": ["schedule=sequential"],
    "denoise_agree": ["schedule=sequential", "denoise=agree"],
}
# metrics.json fields that differ between identical runs: wall times
TIMINGS = ("timing", "seconds", "gold_model_seconds")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def run(name: str, overrides: list[str], folder: Path) -> dict:
    """Train one recipe into ``folder`` and fingerprint what it wrote."""
    run_dir = folder / name
    command = [
        sys.executable,
        "-m",
        "nerdistill.train",
        *TINY_TRAIN,
        *overrides,
        f"paths.data_dir={DATA_DIR}",
        f"paths.cache_dir={folder / 'cache'}",
        f"denoise.gold_dir={run_dir / 'gold_models'}",
        f"hydra.run.dir={run_dir}",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    text = (run_dir / "metrics.json").read_text().replace(str(run_dir), "<run>")
    metrics = without_timings(json.loads(text))
    return {
        "weights": sha256((run_dir / "model" / "model.safetensors").read_bytes()),
        "metrics": sha256(json.dumps(metrics, sort_keys=True).encode()),
        "distilled_share": sha256((run_dir / "distilled_share.csv").read_bytes()),
        "plan": sha256((run_dir / "plan.json").read_bytes()),
        "val_f1_best": metrics["val_f1_best"],
        "test_f1": metrics["test"]["micro"]["f1"],
        "global_step": metrics["global_step"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the fingerprints here (JSON)")
    parser.add_argument("recipes", nargs="*", help=f"some of {list(RECIPES)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.recipes) - set(RECIPES)
    if unknown:
        parser.error(f"unknown recipes {sorted(unknown)}: choose from {list(RECIPES)}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run(name, RECIPES[name], Path(tmp)) for name in args.recipes or RECIPES}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
