"""Estimate a study's wall time before it runs, for `study plan`.

An experiment costs the training time of each dataset whose train stage it
re-runs (the baseline's own, measured: `train_time_s` in metrics/<d>/train.json,
scaled by the epochs and repeats it asks for), plus a fixed cost: `DVC_S` of DVC's own work
per experiment and `STAGE_S` per train stage it starts (the interpreter, the
imports, loading the data, evaluation and writing) and per prepare stage a
data setting re-runs (`split.*`, `<d>.data.*`; its preprocessing time is not
counted). Both constants were measured with `python -m benchmarks.speed
--parts stages,fixed` on the lab's 2-core machine (see the README's
Performance section). The experiments are then dealt
out, in order, to the first free of `jobs` workers. Workers running side by
side do not share the cores perfectly (DVC's own processes, the runner's
looks and memory compete too): each experiment is `SHARED` times slower with
more than one worker, and workers beyond the machine's cores slow down in
proportion on top. A study run adds `QUEUE_S` per experiment to queue it
before any worker starts, and `END_S` to notice the end and collect.

What a setting does to the time per epoch (a smaller batch, a wider model) is
not modelled: such an experiment is estimated at the baseline's pace.

While a study runs, `Eta` turns the same per-experiment estimates into the
time left: the estimate of what is not done yet, scaled by how much slower or
faster than estimated the study has gone so far.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuninglab.lab import params
from tuninglab.lab.files import read_json
from tuninglab.schema import ENDED_STATES, REPEATS, RUNNING, metrics_path
from tuninglab.studies import spec
from tuninglab.studies.spec import Experiment, StudyError

# Measured on the 2-core machine, quiet, by `python -m benchmarks.study ofat 1 2`: a train stage's wall time
# minus its training was 2.3 to 2.4 s; with one worker, the 23 experiments of ofat spent 13 s each outside
# their stage processes (DVC's temporary workspace, status, hashing, lock, commit and the worker's pick-up).
DVC_S = 13.0  # DVC's work per experiment: workspace copy, status, hashing, lock and commit
STAGE_S = 2.4  # one stage process besides its training: start-up, loading data, evaluation, writing
# Measured by the same benchmark: ofat's running phase took 1373 s with one worker and 807 s with two
# (two workers' time, 2 x 807 s, over one's: 1.18); queuing 30 s for 23 experiments; collecting 6 s, and
# the runner notices the end half a look (10 s) late on average.
SHARED = 1.18  # each experiment's slowdown when more than one worker runs
QUEUE_S = 1.4  # queuing one experiment, before any worker starts
END_S = 16.0  # noticing that the last experiment ended, and collecting
SHARED_GROUPS = ("split", "train")  # a change here re-runs every dataset's train stage


@dataclass(frozen=True)
class Baseline:
    """One dataset's baseline run: its training seconds (all repeats), the epochs it ran, its repeats."""

    train_time_s: float
    epochs_run: int
    repeats: int = 1


def baselines(datasets: tuple[str, ...], root: Path = Path()) -> dict[str, Baseline]:
    """The baseline's training time and epochs per dataset, from metrics/<d>/train.json under `root`.

    Raises:
        StudyError: naming the file that is missing or lacks them.
    """
    found = {}
    for dataset in datasets:
        path = root / metrics_path(dataset, "train")
        try:
            summary = read_json(path)[dataset]
            tested = root / metrics_path(dataset, "test")
            repeats = read_json(tested)[dataset].get(REPEATS, 1) if tested.is_file() else 1
            found[dataset] = Baseline(
                float(summary["train_time_s"]), int(summary["epochs_run"]), int(repeats)
            )
        except (FileNotFoundError, KeyError, TypeError, ValueError):
            raise StudyError(
                f"{path}: no train_time_s and epochs_run of {dataset}; run `dvc repro` for the baseline first"
            ) from None
    return found


def retrained(experiment: Experiment, datasets: tuple[str, ...]) -> tuple[str, ...]:
    """The datasets whose train stage an experiment re-runs: every one for a `train.` or `split.` key,
    else the datasets whose own group (`image.train.augment`) it sets."""
    groups = {key.split(".")[0] for key in experiment.settings}
    if groups & set(SHARED_GROUPS):
        return datasets
    return tuple(d for d in datasets if d in groups)


def reprepared(experiment: Experiment, datasets: tuple[str, ...]) -> tuple[str, ...]:
    """The datasets whose prepare stage an experiment re-runs: every one for a `split.` key, else those
    whose `<d>.data.` settings it changes."""
    keys = [key.split(".") for key in experiment.settings]
    if any(parts[0] == "split" for parts in keys):
        return datasets
    return tuple(d for d in datasets if any(parts[:2] == [d, "data"] for parts in keys))


def experiment_seconds(
    experiment: Experiment, baseline_params: dict[str, Any], runs: dict[str, Baseline]
) -> float:
    """The estimated wall time of one experiment run alone (see the module's docstring)."""
    changed = experiment.applied_to(baseline_params)
    seconds = DVC_S + STAGE_S * len(reprepared(experiment, tuple(runs)))
    for dataset in retrained(experiment, tuple(runs)):
        run = runs[dataset]
        config = params.train_config(changed, dataset)
        share = min(config.epochs, run.epochs_run) / run.epochs_run if run.epochs_run else 1.0
        seconds += STAGE_S + run.train_time_s / run.repeats * config.repeats * share
    return seconds


def _slowdown(jobs: int, cores: int | None) -> float:
    """How much slower each experiment runs with `jobs` workers on `cores` (this machine's by default):
    `SHARED` with more than one worker, times jobs / cores with more workers than cores."""
    return (SHARED if jobs > 1 else 1.0) * max(1.0, jobs / (cores or os.cpu_count() or 1))


def wall_seconds(
    seconds: list[float], jobs: int, cores: int | None = None, busy: Sequence[float] = ()
) -> float:
    """The wall time of experiments of `seconds` each, handed in order to the first free of `jobs` workers.

    Each experiment is slower by `_slowdown` (more than one worker, more workers than `cores`).
    `busy`: the seconds until each worker still running an experiment is free; the others are free now.
    """
    free_at = [*busy, *[0.0] * max(0, jobs - len(busy))]
    heapq.heapify(free_at)
    for duration in seconds:
        heapq.heappush(free_at, heapq.heappop(free_at) + duration * _slowdown(jobs, cores))
    return max(free_at)


def study_seconds(seconds: list[float], jobs: int, cores: int | None = None) -> float:
    """The wall time of a whole `study run` of experiments of `seconds` each (alone) with `jobs` workers:
    queuing them, running them (`wall_seconds`) and ending."""
    return QUEUE_S * len(seconds) + wall_seconds(seconds, jobs, cores) + END_S


def experiment_estimates(
    experiments: list[Experiment], baseline_params: dict[str, Any], root: Path = Path()
) -> dict[str, float]:
    """Each experiment's estimated seconds run alone, by name (`experiment_seconds`).

    Raises:
        StudyError: when the baseline's metrics are missing (`baselines`).
    """
    runs = baselines(params.dataset_groups(baseline_params), root)
    return {e.name: experiment_seconds(e, baseline_params, runs) for e in experiments}


class Eta:
    """The time left of a running study, from its experiments' estimates and how long those that ended took.

    Fed each look at the experiments' states (`update`), it notes when each
    experiment was first seen running and when it ended (between two looks:
    their midpoint). The pace is the time the ended ones took over their
    estimates for this many workers (`wall_seconds`'s slowdown included; 1
    before any ended). The time left deals the queued experiments' estimates
    times the pace to the workers (`wall_seconds`), each free once its running
    experiment has had its own paced estimate. Experiments that had ended
    before the first look count neither as done nor as left.
    """

    def __init__(self, seconds: dict[str, float], jobs: int, cores: int | None = None) -> None:
        self.seconds = dict(seconds)  # each experiment's estimate, by name
        self.jobs = jobs
        self.cores = cores
        self.started: dict[str, float] = {}
        self.took: dict[str, float] = {}
        self.last: float | None = None

    def update(self, states: dict[str, str], now: float) -> float:
        """Note the states (by experiment name) one look found at `now` (seconds on any steady clock), and
        return the seconds left."""
        between = now if self.last is None else (self.last + now) / 2
        for name, state in states.items():
            if name not in self.seconds or name in self.took:
                continue
            if state in ENDED_STATES and self.last is None:
                del self.seconds[name]
            elif state in ENDED_STATES:
                self.took[name] = between - self.started.get(name, between)
            elif state == RUNNING:
                self.started.setdefault(name, between)
        self.last = now
        slowdown = _slowdown(self.jobs, self.cores)
        timed = [name for name, took in self.took.items() if took > 0]
        pace = (
            sum(self.took[n] for n in timed) / sum(self.seconds[n] * slowdown for n in timed)
            if timed
            else 1.0
        )
        running = [name for name in self.started if name not in self.took]
        busy = [max(self.seconds[n] * slowdown * pace - (now - self.started[n]), 0.0) for n in running]
        queued = [
            s * pace for name, s in self.seconds.items() if name not in self.took and name not in self.started
        ]
        return wall_seconds(queued, self.jobs, self.cores, busy)


def _sampled_wall(
    sample: list[Experiment], total: int, baseline_params: dict[str, Any], jobs: int, root: Path
) -> float:
    """The wall time of a study of `total` experiments each taking the mean estimate of `sample`'s, dealt
    to `jobs` workers: `study_seconds` of equal experiments, without a list of `total` of them."""
    estimates = list(experiment_estimates(sample, baseline_params, root).values())
    mean = sum(estimates) / len(estimates) if estimates else 0.0
    return QUEUE_S * total + math.ceil(total / jobs) * mean * _slowdown(jobs, None) + END_S


def _workers(jobs: int) -> str:
    return f"{jobs} worker" + ("s" if jobs > 1 else "")


def describe(
    experiments: list[Experiment],
    baseline_params: dict[str, Any],
    jobs: int,
    root: Path = Path(),
    total: int | None = None,
) -> str:
    """One line: the study's estimated wall time with `jobs` workers, and how it was estimated.

    `total`: the study's size when `experiments` are a `spec.sample` of a study
    too large to list; each of its experiments is then taken at the sample's
    mean estimate.

    Raises:
        StudyError: when the baseline's metrics are missing (`baselines`).
    """
    if total is None:
        total = len(experiments)
        wall = study_seconds(list(experiment_estimates(experiments, baseline_params, root).values()), jobs)
        sampled = ""
    else:
        wall = _sampled_wall(experiments, total, baseline_params, jobs, root)
        sampled = f"the mean of a sample of {len(experiments)}: "
    return (
        f"estimated wall time: {wall / 60:,.1f} min for {total:,} experiments with {_workers(jobs)} "
        f"({sampled}the baseline's training time of each dataset an experiment retrains, scaled by its "
        f"epochs, + {DVC_S:g} s of DVC per experiment + {STAGE_S:g} s per train stage, each {SHARED:g}x "
        f"slower when workers run side by side, + {QUEUE_S:g} s per experiment to queue it + {END_S:g} s "
        "to end, as measured here)"
    )


def check_size(
    name: str, baseline_params: dict[str, Any], jobs: int, allow_large: bool = False, root: Path = Path()
) -> int:
    """Refuse a study of more experiments than its limit (`spec.limit`) unless `allow_large`; its size.

    The study is counted, not listed (`spec.count`), and so is estimated from a
    sample of its experiments (`spec.sample`). `root`: the repository.

    Raises:
        StudyError: one line with the study's size, its limit, its estimated
            wall time with `jobs` workers and the option that allows it.
    """
    study = spec.definition(name, root / spec.STUDIES_FILE)
    total, most = spec.count(name, study, baseline_params), spec.limit(name, study)
    if total <= most or allow_large:
        return total
    try:
        sample = spec.sample(name, study, baseline_params)
        wall = _sampled_wall(sample, total, baseline_params, jobs, root)
        time = f"estimated {wall / 60:,.0f} min with {_workers(jobs)}"
    except StudyError as err:
        time = f"no time estimate ({err})"
    raise StudyError(
        f"study {name}: {total:,} experiments, more than its limit of {most:,} "
        f"(max_experiments in {spec.STUDIES_FILE}); {time}; pass --allow-large to go ahead"
    )
