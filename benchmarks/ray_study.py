"""Time one study on the Ray backend and on the local DVC queue, in one run, and say where Ray's time goes.

On a temporary lab repo (the tests' tiny settings: two epochs, a one-block
CNN, a small review CSV), with its baseline reproduced and pushed to a bare
git repository and a folder DVC remote (not timed): the study (default
`optimizer_lr`: nine experiments) with two trials at a time,
first on the local queue of a second clone of the remote, then on a local Ray
instance of two CPUs started before the clock starts (as a running cluster
would be). Each side is timed from `study run` to its collected results,
as the command line runs them (the local runner looks at the queue every
`runner.POLL_SECONDS`). Ray's time per trial is split into clone, pull, run
(`dvc exp run`) and push.

Usage: python -m benchmarks.ray_study [study]   (from the repository root)
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import ray

from tests.conftest import commit_all, make_lab_repo, sh
from tuninglab.schema import FAILED, SUCCESS
from tuninglab.studies import cluster, collect, runner, spec

JOBS = 2
STEPS = ("clone", "pull", "run", "push")


def strategies() -> dict[str, str]:
    """Each study of the working directory's studies.yaml and its strategy."""
    return {name: spec.strategy_of(study) for name, study in spec.load().items()}


def lab(base: Path) -> Path:
    """A lab repo under `base`, its baseline reproduced and pushed to `base/remote.git` and `base/storage`."""
    repo = make_lab_repo(base / "lab")
    sh(repo, "dvc", "repro", "-q")
    sh(base, "git", "init", "-q", "--bare", "-b", "main", "remote.git")
    (base / "storage").mkdir()
    sh(repo, "dvc", "remote", "add", "-d", "storage", str(base / "storage"))
    commit_all(repo, "baseline")
    sh(repo, "git", "remote", "add", "origin", str(base / "remote.git"))
    sh(repo, "git", "push", "-q", "-u", "origin", "main")
    sh(repo, "dvc", "push", "-q")
    return repo


def on_queue(study: str, repo: Path) -> tuple[float, float]:
    """Seconds of the study on the local DVC queue in `repo`: running it, then collecting."""
    with contextlib.chdir(repo):
        start = time.perf_counter()
        counts = runner.run(study, JOBS)
        ran = time.perf_counter()
        collect.collect(strategies())
    print(f"local queue: {counts[SUCCESS]} succeeded, {counts[FAILED]} failed", flush=True)
    return ran - start, time.perf_counter() - ran


def on_ray(study: str, repo: Path) -> tuple[float, float, list[cluster.Outcome]]:
    """Seconds of the study on the running Ray instance from `repo`: running it, then pulling and
    collecting; and its trials."""
    with contextlib.chdir(repo):
        start = time.perf_counter()
        remotes, outcomes = cluster.run(study, JOBS)
        ran = time.perf_counter()
        cluster.pull_experiments(remotes.git)
        collect.collect(strategies())
    failed = sum(outcome.status == FAILED for outcome in outcomes)
    print(f"Ray: {len(outcomes) - failed} succeeded, {failed} failed", flush=True)
    return ran - start, time.perf_counter() - ran, outcomes


def main() -> None:
    study = sys.argv[1] if len(sys.argv) > 1 else "optimizer_lr"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        repo = lab(base)
        sh(base, "git", "clone", "-q", str(base / "remote.git"), "queue")
        sh(base / "queue", "dvc", "pull", "-q")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        queue_run, queue_collect = on_queue(study, base / "queue")
        ray.init(num_cpus=JOBS, include_dashboard=False, log_to_driver=False)
        try:
            ray_run, ray_collect, outcomes = on_ray(study, repo)
        finally:
            ray.shutdown()
    queue_wall, ray_wall = queue_run + queue_collect, ray_run + ray_collect
    print(f"\n{study}, {len(outcomes)} experiments, {JOBS} at a time: wall seconds (run + collect)")
    print(f"local DVC queue: {queue_wall:6.1f}  ({queue_run:.1f} + {queue_collect:.1f})")
    print(
        f"Ray backend:     {ray_wall:6.1f}  ({ray_run:.1f} + {ray_collect:.1f}, pulling the experiments in)"
    )
    print(f"Ray / queue:     {ray_wall / queue_wall:6.2f}")
    print("\nRay, per trial (s):  " + "".join(f"{step:>8}" for step in STEPS) + "   total")
    for outcome in sorted(outcomes, key=lambda o: o.name):
        seconds = [outcome.seconds.get(step, 0.0) for step in STEPS]
        print(f"  {outcome.name:<18}" + "".join(f"{s:8.1f}" for s in seconds) + f"{sum(seconds):8.1f}")
    means = [sum(o.seconds.get(step, 0.0) for o in outcomes) / len(outcomes) for step in STEPS]
    print("  mean              " + "".join(f"{s:8.1f}" for s in means) + f"{sum(means):8.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
