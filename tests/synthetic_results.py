"""A small, hand-shaped study result: the report's input without running a study.

`write_results` writes `experiments.csv` and `curves.csv` as `study collect`
does (the table is built by the collector's own `rows`, from records shaped
like `dvc exp show --json` and the runs' `details.json`), for a baseline, a
one-at-a-time study, seed re-runs, a 2 x 2 grid, runs by hand and one crashed
experiment. Every run's curve has a known shape, so the report's observations
on it are known too:

- ofat-lr-0.001: still improving at the end on every dataset (underfitting, "train longer")
- ofat-lr-0.1: diverged at epoch 3 on image; unstable validation loss on tabular; at chance on
  text (0.580 vs 0.578) and image (0.100 vs 0.112)
- ofat-dropout-0.0: overfits from epoch 8 on every dataset
- ofat-optimizer-sgd: best epoch 2 of 30 on text ("fewer epochs would do")
- ofat-weight_decay-*: weight decay 0 (the baseline, the lowest allowed) is best everywhere
- optimizer_lr-optimizer-adam-lr-0.01 / -0.1: the same settings as ofat-lr-0.01 / ofat-lr-0.1
- noise-seed-3: trained with 2 CPU threads (the baseline with 1): not compared
- hidden-by-hand: a manual run; text-source-local: a manual run on another text source
- ofat-batch_size-16: crashed (status failed)

`hostile=True` adds runs whose names, data source and error line hold HTML (and a name with
matplotlib's math signs).

By default the study has the three classifiers only, like results collected before the regression
data type (no regression rows, no regression metric columns: the committed results/ are such).
`regression=True` adds the regression dataset to every run (`REGRESSION_RUNS`: its test R^2 and curve
shape), scored against a chance R^2 of -0.010:

- ofat-lr-0.1 (and its grid repeat): diverged at epoch 3, R^2 -0.050: no better than chance
- ofat-lr-0.001: still improving; ofat-dropout-0.0: overfits
- lr moves R^2 by 98 points, more than on any classifier

`repeats` (3 unless given; 0 writes no repeats.csv, as results collected before repeats) writes
`repeats.csv`: every finished run trained with seeds train.seed, train.seed + 1, ...; its primary metric
per repeat is its mean plus `SEED_SHIFT` (shared by every run that used that seed: the seed's luck) plus
its own `JITTER`, whose pattern turns with the run (none for the baseline), so that every mean is the
one above and a paired difference from the baseline has a 95 % half-width of about 0.9 points: the
+0.3 points of train.hidden=[128, 128] on tabular are no detectable effect, the -15 points of
train.lr=0.001 on tabular worsen it.

`loss_lr=True` (with `regression=True`) adds the grid `loss_lr` (`LOSS_LR`): the regression's loss
(mse, gaussian_nll) crossed with the learning rate (0.001, 0.01). On the classifiers only the learning
rate varies (their runs repeat ofat-lr-*); on the regression the learning rate moves R^2 by 7 points
with mse and by 1 with gaussian_nll, whose 90 % intervals cover 0.88 and 0.91 of the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuninglab import tasks
from tuninglab.lab import datasets
from tuninglab.lab.datasets import dataset_names
from tuninglab.schema import (
    DETAILS,
    REGRESSION_TEST_METRICS,
    REPEAT_COLUMNS,
    TEST_METRICS,
    TRAIN_METRICS,
    metrics_path,
)
from tuninglab.studies import collect
from tuninglab.studies.spec import Experiment

BASELINE_ACCURACY = {"tabular": 0.93, "image": 0.97, "text": 0.75, "regression": 0.93}
CHANCE = {"tabular": 0.333, "image": 0.112, "text": 0.578, "regression": -0.01}
LOCAL_SOURCE = "data/local/text/x.csv"
HOSTILE_SOURCE = "/x/<img src=x onerror=alert(1)><b>b</b>.csv"

# experiment -> (settings, {dataset: (test accuracy, curve shape)}); "good" unless named
RUNS: dict[str, tuple[dict[str, Any], dict[str, tuple[float, str]]]] = {
    "ofat-lr-0.001": (
        {"train.lr": 0.001},
        {"tabular": (0.80, "improving"), "image": (0.90, "improving"), "text": (0.70, "improving")},
    ),
    "ofat-lr-0.01": (
        {"train.lr": 0.01},
        {"tabular": (0.93, "good"), "image": (0.95, "good"), "text": (0.70, "good")},
    ),
    "ofat-lr-0.1": (
        {"train.lr": 0.1},
        {"tabular": (0.90, "unstable"), "image": (0.10, "diverged"), "text": (0.58, "good")},
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
    "ofat-weight_decay-0.001": (
        {"train.weight_decay": 0.001},
        {"tabular": (0.90, "good"), "image": (0.96, "good"), "text": (0.74, "good")},
    ),
    "ofat-weight_decay-0.01": (
        {"train.weight_decay": 0.01},
        {"tabular": (0.85, "good"), "image": (0.95, "good"), "text": (0.72, "good")},
    ),
    "noise-seed-1": (
        {"train.seed": 1},
        {"tabular": (0.92, "good"), "image": (0.968, "good"), "text": (0.752, "good")},
    ),
    "noise-seed-2": (
        {"train.seed": 2},
        {"tabular": (0.94, "good"), "image": (0.972, "good"), "text": (0.747, "good")},
    ),
    "noise-seed-3": (
        {"train.seed": 3},
        {"tabular": (0.99, "good"), "image": (0.90, "good"), "text": (0.60, "good")},
    ),
    "optimizer_lr-optimizer-sgd-lr-0.01": (
        {"train.optimizer": "sgd", "train.lr": 0.01},
        {"tabular": (0.85, "good"), "image": (0.95, "good"), "text": (0.72, "good")},
    ),
    "optimizer_lr-optimizer-sgd-lr-0.1": (
        {"train.optimizer": "sgd", "train.lr": 0.1},
        {"tabular": (0.93, "good"), "image": (0.97, "good"), "text": (0.74, "good")},
    ),
    "optimizer_lr-optimizer-adam-lr-0.01": (
        {"train.optimizer": "adam", "train.lr": 0.01},
        {"tabular": (0.93, "good"), "image": (0.95, "good"), "text": (0.70, "good")},
    ),
    "optimizer_lr-optimizer-adam-lr-0.1": (
        {"train.optimizer": "adam", "train.lr": 0.1},
        {"tabular": (0.90, "unstable"), "image": (0.10, "diverged"), "text": (0.58, "good")},
    ),
    "hidden-by-hand": (
        {"train.hidden": [64]},
        {"tabular": (0.92, "good"), "image": (0.96, "good"), "text": (0.745, "good")},
    ),
    "text-source-local": (
        {"text.data.source": LOCAL_SOURCE},
        {"tabular": (0.93, "good"), "image": (0.97, "good"), "text": (0.81, "good")},
    ),
}
# the regression dataset's (test R^2, curve shape) per experiment, with `regression=True`
REGRESSION_RUNS: dict[str, tuple[float, str]] = {
    "ofat-lr-0.001": (0.85, "improving"),
    "ofat-lr-0.01": (0.92, "good"),
    "ofat-lr-0.1": (-0.05, "diverged"),
    "ofat-dropout-0.0": (0.91, "overfit"),
    "ofat-dropout-0.5": (0.9, "good"),
    "ofat-optimizer-sgd": (0.88, "good"),
    "ofat-optimizer-rmsprop": (0.925, "good"),
    "ofat-hidden-128-128": (0.935, "good"),
    "ofat-weight_decay-0.001": (0.93, "good"),
    "ofat-weight_decay-0.01": (0.92, "good"),
    "noise-seed-1": (0.925, "good"),
    "noise-seed-2": (0.935, "good"),
    "noise-seed-3": (0.94, "good"),
    "optimizer_lr-optimizer-sgd-lr-0.01": (0.86, "good"),
    "optimizer_lr-optimizer-sgd-lr-0.1": (0.91, "good"),
    "optimizer_lr-optimizer-adam-lr-0.01": (0.92, "good"),
    "optimizer_lr-optimizer-adam-lr-0.1": (-0.05, "diverged"),
    "hidden-by-hand": (0.93, "good"),
    "text-source-local": (0.93, "good"),
    "x${$": (-0.05, "diverged"),
}
# the loss_lr grid: experiment -> (settings, the regression's test R^2, its 90 % interval coverage)
LOSS_LR: dict[str, tuple[dict[str, Any], float, float | None]] = {
    f"loss_lr-loss-{loss}-lr-{lr}": ({"regression.train.loss": loss, "train.lr": lr}, r2, coverage)
    for loss, lr, r2, coverage in [
        ("mse", 0.001, 0.85, None),
        ("mse", 0.01, 0.92, None),
        ("gaussian_nll", 0.001, 0.90, 0.88),
        ("gaussian_nll", 0.01, 0.91, 0.91),
    ]
}
# what differs from the defaults in a run's details.json, per experiment (all datasets)
OTHER_DETAILS = {"noise-seed-3": {"used_threads": 2}}
# a run's chance rate where its data differs from the baseline's: experiment -> dataset -> rate
OTHER_CHANCE = {"text-source-local": {"text": 0.5}}
FAILED = ("ofat-batch_size-16", {"train.batch_size": 16})
HOSTILE = {
    "x<svg>": ({"train.lr": 0.02}, {d: (0.9, "good") for d in dataset_names()}),
    "<!--<script>": ({"train.lr": 0.04}, {d: (0.85, "good") for d in dataset_names()}),
    "x${$": RUNS["ofat-lr-0.1"],  # a repeat: its name goes into the lr figure's legend
    "img-source": ({"text.data.source": HOSTILE_SOURCE}, {d: (0.8, "good") for d in dataset_names()}),
}
HOSTILE_FAILED = ("<script>alert(1)<", {"train.lr": 0.3})
HOSTILE_ERROR = "error: train.lr: <img src=x onerror=alert(1)> is not allowed"
SEED_SHIFT = (-0.01, 0.0, 0.01, 0.005)  # what each seed (train.seed + k) adds to every run's metric
JITTER = ((1, -2, 1, 0), (-2, 1, 1, 0), (1, 1, -2, 0))  # times 0.002: a run's own variation, by turns
STUDIES = {"ofat": "ofat", "noise": "ofat", "optimizer_lr": "grid", "loss_lr": "grid"}


# How every synthetic run was computed (`tuninglab.lab.compute.environment`); a test changes it per run.
COMPUTED = {
    "cpu_capability": "AVX2",
    "numpy_simd": "X86_V3",
    "torch_version": "2.14.1",
    "numpy_version": "2.4.6",
    "cpu_model": "Synthetic CPU",
}


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


def _metrics(
    dataset: str, accuracy: float, history: pd.DataFrame, shape: str, chance: float, details: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One dataset's DVC metrics (by file, nested under the dataset) and its details.json.

    Each value goes where `tuninglab.schema` puts it, as the train stage does; `accuracy` and
    `chance` are a regression's test R^2 and its chance R^2.
    """
    diverged = shape == "diverged"
    task = datasets.get(dataset).task
    tests = (
        {
            "test_accuracy": accuracy,
            "macro_f1": accuracy - 0.01,
            "balanced_accuracy": accuracy - 0.02,
            "chance_accuracy": chance,
        }
        if task is tasks.CLASSIFICATION
        else dict.fromkeys(REGRESSION_TEST_METRICS)
        | {"test_r2": accuracy, "test_rmse": 0.4 * (1 - accuracy), "test_mae": 0.3 * (1 - accuracy)}
        | {"rmse_original": 80_000 * (1 - accuracy), "mae_original": 60_000 * (1 - accuracy)}
        | {"chance_r2": chance}
    )
    values = (
        tests
        | {
            "test_loss": 1 - accuracy,
            "best_epoch": int(history.loc[history["val_loss"].idxmin(), "epoch"]),
            "epochs_run": 3 if diverged else len(history),
            "diverged": diverged,
            "train_time_s": round(0.1 * len(history), 3),
            "stopped_early": shape in ("good", "overfit", "early"),
            "diverged_epoch": 3 if diverged else None,
            "diverged_loss": float("inf") if diverged else None,
            "best_val_loss": float(history["val_loss"].min()),
            "best_val_accuracy": float(history["val_accuracy"].max()),
            "cpu_time_s": round(0.15 * len(history), 3),
            "used_threads": 1,
            "used_device": "cpu",
            "n_params": 1000,
        }
        | COMPUTED
        | details
    )
    names = task.test_metrics
    assert set(values) == {*names, *TRAIN_METRICS, *DETAILS}, "the synthetic study lags the schema"
    metrics = {
        metrics_path(dataset, "test").as_posix(): {dataset: {k: values[k] for k in names}},
        metrics_path(dataset, "train").as_posix(): {dataset: {k: values[k] for k in TRAIN_METRICS}},
    }
    return metrics, {k: values[k] for k in DETAILS}


def _record(
    name: str,
    params: dict[str, Any],
    state: str,
    shapes: dict[str, tuple[float, str]],
    log: str | None = None,
) -> dict:
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for dataset, (accuracy, shape) in shapes.items():
        chance = OTHER_CHANCE.get(name, {}).get(dataset, CHANCE[dataset])
        other = OTHER_DETAILS.get(name, {})
        if dataset == "regression" and name in LOSS_LR:
            other = other | {"coverage_90": LOSS_LR[name][2]}
        found, details[dataset] = _metrics(dataset, accuracy, curve(shape, accuracy), shape, chance, other)
        metrics |= found
    return {
        "name": name,
        "rev": f"{name}-rev",
        "state": state,
        "log": log,
        "params": params,
        "metrics": metrics,
        "details": details,
    }


def _with_regression(name: str, shapes: dict[str, tuple[float, str]], regression: bool) -> dict:
    """A run's shapes by dataset: with the regression's (`REGRESSION_RUNS`, unless given), or without it."""
    if not regression:
        return {dataset: shape for dataset, shape in shapes.items() if dataset != "regression"}
    return {"regression": REGRESSION_RUNS.get(name), **shapes}


def repeat_rows(table: pd.DataFrame, repeats: int) -> pd.DataFrame:
    """repeats.csv of the finished runs of `table` (experiments.csv), `repeats` seeds each (at most 4)."""
    rows = []
    finished = table[table["status"].isin(["ok", "diverged"])]
    for turn, (_, run) in enumerate(finished.iterrows()):
        metric = datasets.get(run["kind"]).task.primary_metric
        jitter = (0,) * 4 if run["experiment"] == "baseline" else JITTER[turn % len(JITTER)]
        for k in range(repeats):
            row = {"experiment": run["experiment"], "dataset": run["dataset"], "repeat": k}
            row |= {c: run[c] for c in REPEAT_COLUMNS if c in run} | {"seed": int(run["train.seed"]) + k}
            row |= {c: run[c] for c in (*TEST_METRICS, *REGRESSION_TEST_METRICS) if c in table}
            shift = SEED_SHIFT[k] - np.mean(SEED_SHIFT[:repeats])
            row[metric] = run[metric] + shift + 0.002 * (jitter[k] - np.mean(jitter[:repeats]))
            rows.append(row)
    return pd.DataFrame(rows)


def write_results(
    directory: Path,
    baseline_params: dict[str, Any],
    hostile: bool = False,
    regression: bool = False,
    loss_lr: bool = False,
    repeats: int = 3,
) -> tuple[Path, Path]:
    """Write `experiments.csv`, `curves.csv` and (with `repeats`) `repeats.csv` of the synthetic study
    into `directory`.

    With `hostile`, add the runs whose names, data source and error line hold HTML. Without
    `regression`, the files are those of a lab before the regression data type: no regression rows
    and no regression metric columns. With `loss_lr` (and `regression`), add the grid `LOSS_LR`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    good = _with_regression(
        "baseline", {d: (BASELINE_ACCURACY[d], "good") for d in dataset_names()}, regression
    )
    baseline = _record("main", baseline_params, "success", good)
    grid = {
        name: (settings, {**RUNS[f"ofat-lr-{settings['train.lr']}"][1], "regression": (r2, "good")})
        for name, (settings, r2, _) in (LOSS_LR if loss_lr else {}).items()
    }
    runs = {
        name: (settings, _with_regression(name, shapes, regression))
        for name, (settings, shapes) in (RUNS | (HOSTILE if hostile else {}) | grid).items()
    }
    records = [
        _record(name, Experiment(name, settings).applied_to(baseline_params), "success", shapes)
        for name, (settings, shapes) in runs.items()
    ]
    failed = [FAILED]
    if hostile:
        (directory / "hostile.log").write_text(f"> python -m stages.train text\n{HOSTILE_ERROR}\n")
        failed.append(HOSTILE_FAILED)
    for name, settings in failed:
        log = str(directory / "hostile.log") if name == HOSTILE_FAILED[0] else None
        records.append(
            _record(name, Experiment(name, settings).applied_to(baseline_params), "failed", {}, log)
        )
    table = collect.rows(baseline, records, STUDIES)
    if not regression:
        table = table[table["dataset"] != "regression"].drop(columns=list(REGRESSION_TEST_METRICS))
    shapes = {"baseline": good, **{name: shapes for name, (_, shapes) in runs.items()}}
    curves = [
        curve(shape, accuracy).assign(experiment=name, dataset=dataset)
        for name, by_dataset in shapes.items()
        for dataset, (accuracy, shape) in by_dataset.items()
    ]
    table.to_csv(directory / "experiments.csv", index=False)
    if repeats:
        repeat_rows(table, repeats).to_csv(directory / "repeats.csv", index=False)
    frame = pd.concat(curves, ignore_index=True)
    frame[["experiment", "dataset", *[c for c in frame if c not in ("experiment", "dataset")]]].to_csv(
        directory / "curves.csv", index=False
    )
    return directory / "experiments.csv", directory / "curves.csv"


# A search study where the learning rate alone matters (`write_search_study`): experiment -> settings;
# the validation and test accuracy fall with the distance of log10(lr) from SEARCH_BEST_LOG_LR.
SEARCH_BEST_LOG_LR = -2.3
SEARCH_STUDY = "tpe_synthetic"


def search_accuracy(lr: float, dataset: str) -> float:
    """A search run's test accuracy on `dataset`: the baseline's at the best lr, lower away from it."""
    return BASELINE_ACCURACY[dataset] - 0.08 * (np.log10(lr) - SEARCH_BEST_LOG_LR) ** 2


def search_settings(trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """Each trial's settings, drawn as a random search would: lr (log), dropout, optimizer, hidden."""
    rng = np.random.default_rng(seed)
    return [
        {
            "train.lr": float(round(10 ** rng.uniform(-4, -1), 6)),
            "train.dropout": float(round(rng.uniform(0, 0.5), 3)),
            "train.optimizer": str(rng.choice(["adam", "sgd"])),
            "train.hidden": [int(rng.choice([64, 128]))],
        }
        for _ in range(trials)
    ]


def write_search_study(
    directory: Path,
    baseline_params: dict[str, Any],
    kind: str = "tpe",
    trials: int = 16,
    study: str = SEARCH_STUDY,
    names: list[str] | None = None,
) -> None:
    """Add a search study of `kind` to the results `write_results` wrote into `directory`.

    Its `trials` runs (named `<study>-<n>`, or by `names`) vary lr, dropout,
    optimizer and hidden width; only lr moves accuracy (`search_accuracy`), on
    the classifiers. Each row has its trial number (`trial`); a halving study's
    runs are its first rung (`rung` 1), and the best third of them is run
    again at rung 2 with twice the epochs.
    """
    settings = search_settings(trials)
    names = names or [f"{study}-{number}" for number in range(trials)]
    runs = {name: (one, 1) for name, one in zip(names, settings, strict=True)}
    if kind == "halving":
        best = sorted(runs, key=lambda name: -search_accuracy(runs[name][0]["train.lr"], "image"))
        epochs = 2 * baseline_params["train"]["epochs"]
        runs |= {f"{name}r2": ({**runs[name][0], "train.epochs": epochs}, 2) for name in best[: trials // 3]}
    classifiers = [d for d in dataset_names() if d != "regression"]
    good = {d: (BASELINE_ACCURACY[d], "good") for d in classifiers}
    baseline = _record("main", baseline_params, "success", good)
    records = [
        _record(
            name,
            Experiment(name, one).applied_to(baseline_params),
            "success",
            {d: (search_accuracy(one["train.lr"], d), "good") for d in classifiers},
        )
        for name, (one, _) in runs.items()
    ]
    table = collect.rows(baseline, records, {study: kind})
    table = table[(table["experiment"] != "baseline") & table["dataset"].isin(classifiers)].copy()
    order = {name: number for number, name in enumerate(names)}
    table["trial"] = [order[name.removesuffix("r2")] for name in table["experiment"]]
    if kind == "halving":
        table["rung"] = [runs[name][1] for name in table["experiment"]]
    old = pd.read_csv(directory / "experiments.csv")
    pd.concat([old, table[[c for c in table if c in old or c in ("trial", "rung")]]]).to_csv(
        directory / "experiments.csv", index=False
    )
    curves = pd.concat(
        [
            curve("good", search_accuracy(one["train.lr"], d)).assign(experiment=name, dataset=d)
            for name, (one, _) in runs.items()
            for d in classifiers
        ]
    )
    old_curves = pd.read_csv(directory / "curves.csv")
    pd.concat([old_curves, curves[old_curves.columns]]).to_csv(directory / "curves.csv", index=False)
