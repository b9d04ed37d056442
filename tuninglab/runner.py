"""Run a study on DVC's queue: queue what is missing, start workers, follow progress.

A study run is resumable: experiments of the study already queued, running or
finished on the current baseline commit are not queued again. To retry
failed ones, remove them first with `dvc queue remove --failed`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from tuninglab import experiments, studies

POLL_SECONDS = 20.0  # each look is a `dvc exp show`, which costs CPU the workers need
SHOW_TIMEOUT_SECONDS = 60.0
SHOW_TRIES = 5  # looks in a row that may hang or fail before a study run gives up
FINISHED = ("success", "failed")


def queue_missing(planned: list[studies.Experiment], cwd: Path = Path()) -> tuple[int, int]:
    """Queue the planned experiments not yet on the baseline commit; returns (already there, queued).

    Raises:
        StudyError: an experiment of the same name exists with other settings
            (a study edited after it ran); nothing has been queued then.
    """
    _, existing = experiments.read(cwd)
    known = {record["name"]: record["params"] for record in existing}
    for experiment in planned:
        done = known.get(experiment.name)
        if done is not None and not experiment.matches(done):
            raise studies.StudyError(
                f"experiment {experiment.name} exists on this commit with other settings; "
                f"remove it (dvc exp remove {experiment.name}) or rename the study"
            )
    missing = [experiment for experiment in planned if experiment.name not in known]
    for experiment in tqdm(missing, desc="queuing", unit="exp", disable=not missing):
        experiments.dvc("exp", "run", "--queue", "-q", "-n", experiment.name, *experiment.set_args(), cwd=cwd)
    return len(planned) - len(missing), len(missing)


def start_workers(jobs: int, cwd: Path = Path()) -> None:
    """Start `jobs` DVC queue workers, each using its share of the CPU cores.

    Workers get `OMP_NUM_THREADS` (unless it is set already) so that parallel
    runs do not fight over cores; DVC stops them once the queue is empty.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {"OMP_NUM_THREADS": str(threads), **os.environ}
    experiments.dvc("queue", "start", "-j", str(jobs), cwd=cwd, env=env)


def states(
    names: set[str], cwd: Path = Path(), tries: int = SHOW_TRIES, pause: float = POLL_SECONDS
) -> Counter:
    """How many of the named experiments are queued, running, succeeded or failed.

    `dvc exp show` is unreliable while queue workers create and remove their
    temporary workspaces: it can block indefinitely, or fail on a directory
    that just went away. A look that hangs (killed after
    `SHOW_TIMEOUT_SECONDS`) or fails is retried after `pause` seconds.

    Raises:
        RuntimeError: `tries` looks in a row failed; names the last error.
    """
    error: Exception | None = None
    for _ in range(tries):
        try:
            _, records = experiments.read(cwd, timeout=SHOW_TIMEOUT_SECONDS)
        except (subprocess.TimeoutExpired, RuntimeError) as failure:
            error = failure
            time.sleep(pause)
            continue
        return Counter(record["state"] for record in records if record["name"] in names)
    raise RuntimeError(f"dvc exp show failed {tries} times in a row; last: {error}")


def wait(names: set[str], jobs: int, cwd: Path = Path(), poll: float = POLL_SECONDS) -> Counter:
    """Follow the named experiments until none is queued or running; show a progress bar with ETA.

    Workers that stopped while experiments are still queued are started again.
    """
    counts = states(names, cwd, pause=poll)
    stalled = 0
    finished = sum(counts[s] for s in FINISHED)
    with tqdm(total=len(names), initial=finished, desc="experiments", unit="exp") as bar:
        while counts["queued"] + counts["running"]:
            time.sleep(poll)
            counts = states(names, cwd, pause=poll)
            finished = sum(counts[s] for s in FINISHED)
            bar.update(finished - bar.n)
            bar.set_postfix(
                done=counts["success"],
                failed=counts["failed"],
                running=counts["running"],
                remaining=counts["queued"],
            )
            stalled = stalled + 1 if counts["running"] == 0 else 0
            if stalled >= 2 and counts["queued"]:
                start_workers(jobs, cwd)
                stalled = 0
    return counts


def run(name: str, jobs: int, cwd: Path = Path()) -> Counter:
    """Queue the study's missing experiments, run them with `jobs` workers and wait for all.

    Raises:
        StudyError: the study is malformed or refused by the param rules;
            nothing has been queued then.
    """
    planned = studies.plan(name, cwd / studies.STUDIES_FILE, cwd / "params.yaml")
    already, queued = queue_missing(planned, cwd)
    print(f"study {name}: {len(planned)} experiments, {already} already on this commit, {queued} queued")
    if queued:
        start_workers(jobs, cwd)
    return wait({experiment.name for experiment in planned}, jobs, cwd)
