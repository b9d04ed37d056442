"""Measure the lab against its targets on this machine.

In a fresh clone of the current commit (a temporary folder, using this
environment's packages) it times `dvc repro` (real downloads included) and one
`dvc exp run -S train.lr=0.1`, reads the baseline test accuracy per dataset,
and runs one more experiment with the image MLP instead of the CNN.

Run with `make bench`; prints one line per measurement with its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tuninglab import schema

ROOT = Path(__file__).resolve().parents[1]

ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def timed(repo: Path, *args: str) -> float:
    """Seconds one command takes in `repo`."""
    start = time.perf_counter()
    subprocess.run(args, cwd=repo, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def test_accuracy(repo: Path, dataset: str) -> float:
    return json.loads((repo / schema.metrics_path(dataset, "test")).read_text())[dataset]["test_accuracy"]


def main() -> None:
    rows = []  # (measurement, value, comparison, target)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "lab"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        baseline_lr = yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr"]

        rows.append(("dvc repro from a clean clone (s)", timed(repo, "dvc", "repro"), "<=", 180))
        rows.append(("tabular test accuracy, mlp", test_accuracy(repo, "tabular"), ">=", 0.93))
        rows.append(("image test accuracy, cnn", test_accuracy(repo, "image"), ">=", 0.96))
        rows.append(("text test accuracy, embedding bag", test_accuracy(repo, "text"), ">=", 0.72))
        rows.append(
            (
                "dvc exp run -S train.lr=0.1 (s)",
                timed(repo, "dvc", "exp", "run", "-S", "train.lr=0.1"),
                "<=",
                60,
            )
        )
        timed(repo, "dvc", "exp", "run", "-S", f"train.lr={baseline_lr}", "-S", "image.train.model=mlp")
        rows.append(("image test accuracy, mlp", test_accuracy(repo, "image"), ">=", 0.93))

    width = max(len(name) for name, *_ in rows)
    for name, value, comparison, target in rows:
        met = value <= target if comparison == "<=" else value >= target
        print(f"{name:<{width}}  {value:8.3f}  target {comparison} {target:<6}  {'ok' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
