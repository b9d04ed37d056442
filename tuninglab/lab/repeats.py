"""One experiment's run on one dataset: its configuration trained `train.repeats` times.

Repeat r (0, 1, ...) trains with seed `train.seed + r` (weight init, shuffling,
dropout, augmentation) on the same prepared split, in the same process, so the
stage's start-up and DVC's work are paid once per experiment. `run` trains and
scores every repeat; `test_metrics`, `train_metrics`, `details` and
`mean_history` turn the repeats into what the train stage writes
(`tuninglab.schema` describes each file): the mean of each test metric with the
half-width of its 95 % t-interval, every repeat's own record, and the mean
curve. The saved model and the test plot are the first repeat's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import stdtrit
from torch import nn

from tuninglab import schema
from tuninglab.lab import evaluation, training
from tuninglab.lab.files import Columns
from tuninglab.lab.params import TrainConfig
from tuninglab.tasks import Task

CONFIDENCE = 0.95  # of the interval test.json gives each metric


@dataclass
class Repeat:
    """One training of the configuration: its seed, history, training summary and test results."""

    seed: int
    history: list[dict[str, float]]
    summary: dict[str, Any]
    test: dict[str, Any]  # the task's test metrics and the test loss (None where nothing trained)
    plot: Columns  # the columns of the task's test plot


def run(
    dataset: str,
    task: Task,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    cfg: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[int], training.EpochCallback] | None = None,
) -> tuple[nn.Module, list[Repeat]]:
    """Train and test `cfg.repeats` times with seeds `cfg.seed`, `cfg.seed + 1`, ...

    `on_epoch(r)` gives the per-epoch callback of repeat r. Only the first
    repeat's model is kept (and returned): the others are scored and dropped.
    """
    first: nn.Module | None = None
    done: list[Repeat] = []
    for r in range(cfg.repeats):
        seeded = dataclasses.replace(cfg, seed=cfg.seed + r)
        model, history, summary = training.train(
            dataset, arrays, meta, seeded, device, on_epoch=on_epoch(r) if on_epoch else None
        )
        if summary["best_epoch"] is None:  # diverged in its first epoch: no trained weights to score
            test, plot = evaluation.untrained_results(task, meta)
        else:
            test, plot = evaluation.EVALUATORS[task.name](
                model, arrays["x_test"], arrays["y_test"], seeded, meta
            )
        done.append(Repeat(seeded.seed, history, summary, test, plot))
        first = model if first is None else first
    assert first is not None  # repeats >= 1, checked with the params
    return first, done


def mean_interval(values: list[float | None]) -> tuple[float | None, float | None]:
    """The mean of the values that are not None and the half-width of its 95 % t-interval.

    Both are rounded to 6 digits; the mean is None without values, the
    half-width None with fewer than two (one run has no interval). The mean is
    summed exactly (`math.fsum`), so it does not depend on the order or the CPU.
    """
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    mean = math.fsum(present) / len(present)
    if len(present) < 2:
        return round(mean, 6), None
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (len(present) - 1))
    half = stdtrit(len(present) - 1, 0.5 + CONFIDENCE / 2) * spread / math.sqrt(len(present))
    return round(mean, 6), round(float(half), 6)


def test_metrics(task: Task, repeats: list[Repeat]) -> dict[str, Any]:
    """test.json's values: each test metric's mean and 95 % half-width, the chance reference, the repeats."""
    out: dict[str, Any] = {schema.REPEATS: len(repeats)}
    for name in task.test_metrics:
        if name == task.chance_metric:  # the same for every repeat: a property of the split
            out[name] = repeats[0].test[name]
        else:
            out[name], out[schema.ci_name(name)] = mean_interval([r.test[name] for r in repeats])
    return {key: out[key] for key in task.test_file_keys}


def train_metrics(repeats: list[Repeat]) -> dict[str, Any]:
    """train.json's values: the first repeat's kept and last epoch; time summed; whether any diverged."""
    first = repeats[0].summary
    return {
        "best_epoch": first["best_epoch"],
        "epochs_run": first["epochs_run"],
        "diverged": any(r.summary["diverged"] for r in repeats),
        "train_time_s": round(math.fsum(r.summary["train_time_s"] for r in repeats), 3),
        "cpu_capability": first["cpu_capability"],
    }


def details(task: Task, repeats: list[Repeat]) -> dict[str, Any]:
    """details.json: the diagnostics (`schema.DETAILS`) and every repeat's record (`schema.PER_REPEAT`).

    Validation scores and the test loss are means over the repeats; CPU time is
    summed; how the run stopped or diverged is the first repeat's; the rest
    (threads, device, kernels, versions) is the same for every repeat.
    """
    first = repeats[0].summary

    def mean(values: list[float | None]) -> float | None:
        return mean_interval(values)[0]

    merged = {
        **first,
        "test_loss": mean([r.test["test_loss"] for r in repeats]),
        "best_val_loss": mean([r.summary["best_val_loss"] for r in repeats]),
        "best_val_accuracy": mean([r.summary["best_val_accuracy"] for r in repeats]),
        "cpu_time_s": round(math.fsum(r.summary["cpu_time_s"] for r in repeats), 3),
    }
    records = [
        {
            "repeat": i,
            "seed": r.seed,
            **{k: r.summary[k] for k in schema.REPEAT_COLUMNS[2:]},
            **{k: r.test[k] for k in task.test_metrics},
        }
        for i, r in enumerate(repeats)
    ]
    return {**{k: merged[k] for k in schema.DETAILS}, schema.PER_REPEAT: records}


def mean_history(repeats: list[Repeat]) -> Columns:
    """history.csv's columns: per epoch, the mean of each column over the repeats that ran that epoch."""
    epochs = max(len(r.history) for r in repeats)
    columns: dict[str, list[float]] = {k: [] for k in schema.HISTORY_COLUMNS}
    for e in range(epochs):
        rows = [r.history[e] for r in repeats if len(r.history) > e]
        columns["epoch"].append(e + 1)
        for k in schema.HISTORY_COLUMNS[1:]:
            columns[k].append(math.fsum(row[k] for row in rows) / len(rows))
    return columns
