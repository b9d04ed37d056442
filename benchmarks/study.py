"""Time a whole study with one worker and with two, in a fresh clone each; check what the user is shown.

For each worker count: a fresh clone of the current commit, `dvc repro` for
the baseline (not timed), then `python -m tuninglab study run <study> -j N`
timed end to end (queuing, workers, collecting). It prints, per run:

- the wall time in its phases: queuing, running (from the progress bar's
  first update to its last) and collecting;
- where the workers' time went while running: training (the summed
  `train_time_s` the stages report), the train stages' start-up and writing
  (each train stage run's wall time minus its training, measured once in the
  same clone on the regression stage and counted for every train stage the
  study ran), and the rest: DVC's work per experiment and idle workers;
- the time left the progress bar showed (`eta=` of `study run`), against the
  truth: for every update after the first quarter of the running phase, the
  finish it predicts against the real one, as a share of that phase;

then whether the runs' test metrics are equal, and the speed-up of two
workers over one.

Usage: python -m benchmarks.study [study [workers ...]]   (default: ofat 1 2; or `make bench-study`)
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from tuninglab import schema
from tuninglab.lab import params
from tuninglab.studies import estimate, spec

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
ETA = re.compile(r"eta=(?:(\d+):)?(\d+):(\d+)")
TARGETS = {"speed-up": 1.7, "eta error": 0.25, "ofat minutes": 8.0}  # issue 12


def eta_seconds(update: str) -> float | None:
    """The time left a progress-bar update shows (`eta=H:MM:SS` or `eta=MM:SS`), in seconds."""
    found = ETA.search(update)
    if not found:
        return None
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def follow(stream, updates: list[tuple[float, str]]) -> None:
    """Append each progress-bar update of `stream` (split on carriage returns) with the time it came."""
    buffer = ""
    while chunk := stream.read(1):
        if chunk in "\r\n":
            if buffer:
                updates.append((time.perf_counter(), buffer))
            buffer = ""
        else:
            buffer += chunk


def stage_overhead(repo: Path) -> float:
    """Median wall time minus training of the regression train stage, run three times in `repo` (whose
    study has ended: the stage rewrites the workspace's regression outputs)."""
    rest = []
    for _ in range(3):
        start = time.perf_counter()
        args = ["stages.train", "regression", "data/prepared/regression", "models/regression"]
        subprocess.run([sys.executable, "-m", *args], cwd=repo, env=ENV, check=True, capture_output=True)
        wall = time.perf_counter() - start
        train = json.loads((repo / schema.metrics_path("regression", "train")).read_text())
        rest.append(wall - train["regression"]["train_time_s"])
    return statistics.median(rest)


def retrained(study: str, repo: Path) -> set[tuple[str, str]]:
    """The (experiment, dataset) pairs whose train stage the study's experiments re-run."""
    baseline = params.load(repo / "params.yaml")
    datasets = params.dataset_groups(baseline)
    planned = spec.plan(study, repo / spec.STUDIES_FILE, baseline)
    return {(e.name, dataset) for e in planned for dataset in estimate.retrained(e, datasets)}


def run_study(study: str, jobs: int) -> dict:
    """One study run with `jobs` workers in a fresh clone: wall seconds, the collected table, the bar's
    updates (seconds since the start, text), the stage overhead in that clone and the train stages re-run."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "lab"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        subprocess.run(["dvc", "repro", "-q"], cwd=repo, env=ENV, check=True, capture_output=True)
        updates: list[tuple[float, str]] = []
        start = time.perf_counter()
        # --force: the clone's committed results are of an older baseline commit
        command = [sys.executable, "-m", "tuninglab", "study", "run", study, "-j", str(jobs), "--force"]
        process = subprocess.Popen(
            command, cwd=repo, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        reader = threading.Thread(target=follow, args=(process.stderr, updates))
        reader.start()
        if process.wait() != 0:
            raise SystemExit(f"{' '.join(command)} failed: {updates[-1][1] if updates else 'no output'}")
        reader.join()
        wall = time.perf_counter() - start
        table = pd.read_csv(repo / "results" / "experiments.csv")
        return {
            "wall": wall,
            "table": table[table["study"] == study],
            "updates": [(at - start, text) for at, text in updates],
            "overhead": stage_overhead(repo),
            "retrained": retrained(study, repo),
        }


def bar_span(updates: list[tuple[float, str]], wall: float) -> tuple[float, float]:
    """When the progress bar of experiments first and last updated (0 and `wall` when it never did)."""
    bar = [at for at, text in updates if text.startswith("experiments:")] or [0.0, wall]
    return bar[0], bar[-1]


def eta_trace(updates: list[tuple[float, str]], start: float) -> list[tuple[float, float]]:
    """(seconds since `start`, the finish it predicts, in the same seconds) per update that shows an ETA."""
    shown = [(at, left) for at, text in updates if (left := eta_seconds(text)) is not None]
    return [(at - start, at - start + left) for at, left in shown]


def eta_error(trace: list[tuple[float, float]], end: float) -> float | None:
    """The largest gap between a predicted finish and the real one `end`, over the updates after the first
    quarter, as a share of `end` (the bar's duration); None when no such update showed an ETA."""
    errors = [abs(finish - end) / end for at, finish in trace if at >= end / 4]
    return max(errors) if errors else None


def report(study: str, jobs: int, run: dict) -> None:
    """Print one run's wall time, its phases, where the workers' time went and the accuracy of its ETA."""
    table, wall = run["table"], run["wall"]
    pairs = zip(table["experiment"], table["dataset"], strict=True)
    ran = table[[pair in run["retrained"] for pair in pairs]]  # the others keep the baseline's models
    training = ran["train_time_s"].sum()
    startup = run["overhead"] * len(ran)
    first, last = bar_span(run["updates"], wall)
    queuing, following, collecting = first, last - first, wall - last
    worker_time = following * jobs
    rest = worker_time - training - startup
    failed = table.loc[table["status"] == "failed", "experiment"].nunique()
    print(
        f"{study}, {jobs} worker(s): {table['experiment'].nunique()} experiments ({failed} failed), "
        f"wall {wall / 60:.1f} min (target <= {TARGETS['ofat minutes']:g} min for ofat with 2): "
        f"queuing {queuing:.0f} s, running {following:.0f} s, collecting {collecting:.0f} s",
        flush=True,
    )
    print(
        f"  worker time while running {worker_time:.0f} s: training {training:.0f} s "
        f"({training / worker_time:.0%}), {len(ran)} train stages' start-up and writing {startup:.0f} s "
        f"({startup / worker_time:.0%}, {run['overhead']:.1f} s each), "
        f"DVC and idle workers {rest:.0f} s ({rest / worker_time:.0%})"
    )
    trace = eta_trace(run["updates"], first)
    error = eta_error(trace, following)
    shown = "no ETA shown" if error is None else f"{error:.0%} (target <= {TARGETS['eta error']:.0%})"
    print(f"  ETA after the first quarter, largest error on the finish: {shown}")
    print(
        "  ETA trace (s since start: predicted finish): " + ", ".join(f"{a:.0f}: {f:.0f}" for a, f in trace)
    )


def same_metrics(first: pd.DataFrame, second: pd.DataFrame) -> str:
    """Whether two runs of a study gave the same test metrics, per experiment and dataset."""
    names = [name for name in schema.TEST_METRICS + schema.REGRESSION_TEST_METRICS if name in first]
    keys = ["experiment", "dataset"]
    merged = first[keys + names].merge(second[keys + names], on=keys, suffixes=("_a", "_b"))
    differ = [
        name for name in names if not merged[f"{name}_a"].fillna(-1).equals(merged[f"{name}_b"].fillna(-1))
    ]
    return f"equal on {len(merged)} rows" if not differ else f"DIFFER in {', '.join(differ)}"


def main() -> None:
    study = sys.argv[1] if len(sys.argv) > 1 else "ofat"
    workers = [int(n) for n in sys.argv[2:]] or [1, 2]
    runs = {}
    for jobs in workers:
        runs[jobs] = run_study(study, jobs)
        report(study, jobs, runs[jobs])
    if {1, 2} <= set(runs):
        print(f"test metrics of one worker vs two: {same_metrics(runs[1]['table'], runs[2]['table'])}")
        speedup = runs[1]["wall"] / runs[2]["wall"]
        print(f"two workers vs one: {speedup:.2f}x faster (target >= {TARGETS['speed-up']}x)")


if __name__ == "__main__":
    main()
