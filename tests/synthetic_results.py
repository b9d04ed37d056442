"""A small, hand-shaped study result: the report's input without running a study.

`write_results` writes `experiments.csv` and `curves.csv` as `study collect`
does (the table is built by the collector's own `rows`), for a baseline, a
one-at-a-time study, seed re-runs, a 2 x 2 grid and one crashed experiment.
Every run's curve has a known shape, so the report's observations on it are
known too:

- ofat-lr-0.001: still improving at the end on every dataset (underfitting, "train longer")
- ofat-lr-0.1: diverged at epoch 3 on image; unstable validation loss on tabular
- ofat-dropout-0.0: overfits from epoch 8 on every dataset
- ofat-optimizer-sgd: best epoch 2 of 30 on text ("fewer epochs would do")
- ofat-batch_size-16: crashed (status failed)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuninglab import experiments
from tuninglab.params import DATASETS
from tuninglab.studies import Experiment

BASELINE_ACCURACY = {"tabular": 0.93, "image": 0.97, "text": 0.75}

# experiment -> (settings, {dataset: (test accuracy, curve shape)}); "good" unless named
RUNS: dict[str, tuple[dict[str, Any], dict[str, tuple[float, str]]]] = {
    "ofat-lr-0.001": (
        {"train.lr": 0.001},
        {"tabular": (0.80, "improving"), "image": (0.90, "improving"), "text": (0.70, "improving")},
    ),
    "ofat-lr-0.1": (
        {"train.lr": 0.1},
        {"tabular": (0.90, "unstable"), "image": (0.10, "diverged"), "text": (0.60, "good")},
    ),
    "ofat-dropout-0.0": (
        {"train.dropout": 0.0},
        {"tabular": (0.93, "overfit"), "image": (0.96, "overfit"), "text": (0.71, "overfit")},
    ),
    "ofat-dropout-0.5": (
        {"train.dropout": 0.5},
        {"tabular": (0.90, "good"), "image": (0.975, "good"), "text": (0.76, "good")},
    ),
    "ofat-optimizer-sgd": (
        {"train.optimizer": "sgd"},
        {"tabular": (0.70, "good"), "image": (0.92, "good"), "text": (0.74, "early")},
    ),
    "ofat-optimizer-rmsprop": (
        {"train.optimizer": "rmsprop"},
        {"tabular": (0.93, "good"), "image": (0.965, "good"), "text": (0.745, "good")},
    ),
    "ofat-hidden-128-128": (
        {"train.hidden": [128, 128]},
        {"tabular": (0.933, "good"), "image": (0.975, "good"), "text": (0.74, "good")},
    ),
    "noise-seed-1": (
        {"train.seed": 1},
        {"tabular": (0.92, "good"), "image": (0.968, "good"), "text": (0.752, "good")},
    ),
    "noise-seed-2": (
        {"train.seed": 2},
        {"tabular": (0.94, "good"), "image": (0.972, "good"), "text": (0.747, "good")},
    ),
    "optimizer_lr-sgd-0.01": (
        {"train.optimizer": "sgd", "train.lr": 0.01},
        {"tabular": (0.85, "good"), "image": (0.95, "good"), "text": (0.72, "good")},
    ),
    "optimizer_lr-sgd-0.1": (
        {"train.optimizer": "sgd", "train.lr": 0.1},
        {"tabular": (0.93, "good"), "image": (0.97, "good"), "text": (0.74, "good")},
    ),
    "optimizer_lr-adam-0.01": (
        {"train.optimizer": "adam", "train.lr": 0.01},
        {"tabular": (0.93, "good"), "image": (0.95, "good"), "text": (0.70, "good")},
    ),
    "optimizer_lr-adam-0.1": (
        {"train.optimizer": "adam", "train.lr": 0.1},
        {"tabular": (0.60, "unstable"), "image": (0.10, "diverged"), "text": (0.55, "unstable")},
    ),
}
FAILED = ("ofat-batch_size-16", {"train.batch_size": 16})
STUDIES = ["ofat", "noise", "optimizer_lr"]


def curve(shape: str, accuracy: float, epochs: int = 30) -> pd.DataFrame:
    """A per-epoch history of the given shape, ending near `accuracy`, as the trainer writes it."""
    e = np.arange(1, epochs + 1, dtype=float)
    floor = 1.0 - accuracy
    train_loss = floor + np.exp(-e / 3)
    val_loss = floor + 0.05 + np.exp(-e / 3)
    last = epochs
    if shape == "good":
        last = 20  # early stopping: best at 15, patience 5
        val_loss = val_loss + 0.001 * np.clip(e - 15, 0, None)
    elif shape == "improving":
        train_loss = floor + np.exp(-e / 40)
        val_loss = floor + 0.05 + np.exp(-e / 40)
    elif shape == "overfit":
        last = 14
        train_loss = floor * np.exp(-e / 5) + np.exp(-e / 3)
        val_loss = val_loss + 0.06 * np.clip(e - 8, 0, None)
    elif shape == "early":
        last = 7
        val_loss = floor + 0.05 + np.exp(-e / 0.5) + 0.01 * np.clip(e - 2, 0, None)
    elif shape == "unstable":
        val_loss = val_loss * np.where(e % 4 == 0, 1.6, 1.0)
    elif shape == "diverged":
        last = 2
    history = pd.DataFrame(
        {
            "epoch": e.astype(int),
            "train_loss": train_loss,
            "train_accuracy": 1 - train_loss / 2,
            "val_loss": val_loss,
            "val_accuracy": 1 - val_loss / 2,
            "lr": 0.005,
            "epoch_time_s": 0.1,
        }
    )
    return history.iloc[:last]


def _metrics(dataset: str, accuracy: float, history: pd.DataFrame, shape: str) -> dict[str, Any]:
    best = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    diverged = shape == "diverged"
    train = {
        "diverged": diverged,
        "diverged_epoch": 3 if diverged else None,
        "diverged_loss": float("inf") if diverged else None,
        "stopped_early": shape in ("good", "overfit", "early"),
        "best_epoch": best,
        "best_val_loss": float(history["val_loss"].min()),
        "best_val_accuracy": float(history["val_accuracy"].max()),
        "epochs_run": 3 if diverged else len(history),
        "train_time_s": round(0.1 * len(history), 3),
        "device": "cpu",
        "threads": 1,
        "n_params": 1000,
    }
    test = {"test_accuracy": accuracy, "test_loss": 1 - accuracy, "macro_f1": accuracy - 0.01}
    return {f"metrics/{dataset}/train.json": train, f"metrics/{dataset}/test.json": test}


def _record(name: str, params: dict[str, Any], state: str, shapes: dict[str, tuple[float, str]]) -> dict:
    metrics: dict[str, Any] = {}
    for dataset, (accuracy, shape) in shapes.items():
        metrics |= _metrics(dataset, accuracy, curve(shape, accuracy), shape)
    return {
        "name": name,
        "rev": f"{name}-rev",
        "state": state,
        "log": None,
        "params": params,
        "metrics": metrics,
    }


def write_results(directory: Path, baseline_params: dict[str, Any]) -> tuple[Path, Path]:
    """Write `experiments.csv` and `curves.csv` of the synthetic study into `directory`."""
    good = {d: (BASELINE_ACCURACY[d], "good") for d in DATASETS}
    baseline = _record("main", baseline_params, "success", good)
    records = [
        _record(name, Experiment(name, settings).applied_to(baseline_params), "success", shapes)
        for name, (settings, shapes) in RUNS.items()
    ]
    name, settings = FAILED
    records.append(_record(name, Experiment(name, settings).applied_to(baseline_params), "failed", {}))
    table = experiments.rows(baseline, records, STUDIES)
    shapes = {"baseline": good, **{name: shapes for name, (_, shapes) in RUNS.items()}}
    curves = [
        curve(shape, accuracy).assign(experiment=name, dataset=dataset)
        for name, by_dataset in shapes.items()
        for dataset, (accuracy, shape) in by_dataset.items()
    ]
    directory.mkdir(parents=True, exist_ok=True)
    table.to_csv(directory / "experiments.csv", index=False)
    frame = pd.concat(curves, ignore_index=True)
    frame[["experiment", "dataset", *[c for c in frame if c not in ("experiment", "dataset")]]].to_csv(
        directory / "curves.csv", index=False
    )
    return directory / "experiments.csv", directory / "curves.csv"
