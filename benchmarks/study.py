"""Time a whole study with one worker and with two, in a fresh clone.

For each worker count: a fresh clone of the current commit, `dvc repro` for
the baseline (not timed), then `python -m tuninglab study run <study> -j N`
timed end to end (queuing, workers, collecting). The share of worker time
spent outside training (process start, imports, DVC) is
1 - (sum of the experiments' training times) / (wall time x workers).

Usage: python benchmarks/study.py [study [workers ...]]   (default: ofat 1 2; or `make bench-study`)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_study(study: str, jobs: int) -> tuple[float, pd.DataFrame]:
    """Wall seconds of one study run with `jobs` workers, and the collected table."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "lab"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        subprocess.run(["dvc", "repro", "-q"], cwd=repo, env=ENV, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tuninglab", "study", "run", study, "-j", str(jobs)],
            cwd=repo,
            env=ENV,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        return wall, pd.read_csv(repo / "results" / "experiments.csv")


def main() -> None:
    study = sys.argv[1] if len(sys.argv) > 1 else "ofat"
    workers = [int(n) for n in sys.argv[2:]] or [1, 2]
    walls = {}
    for jobs in workers:
        wall, table = run_study(study, jobs)
        runs = table[table["study"] == study]
        training = runs["train_time_s"].sum()
        walls[jobs] = wall
        print(
            f"{study}, {jobs} worker(s): {runs['experiment'].nunique()} experiments, "
            f"{(runs['status'] == 'failed').sum() // 3} failed, wall {wall / 60:.1f} min, "
            f"training {training / 60:.1f} min, outside training {1 - training / (wall * jobs):.0%}",
            flush=True,
        )
    if {1, 2} <= set(walls):
        print(f"two workers vs one: {walls[1] / walls[2]:.2f}x faster (target >= 1.6x)")
    print(f"whole study: {min(walls.values()) / 60:.1f} min at best (target < 15 min)")


if __name__ == "__main__":
    main()
