"""Names shared by the stages that write results and the code that reads them.

Torch-free, so the report and the study tools import it cheaply. Each stage
writes exactly these keys; a test checks it.

Per dataset `<d>`, the train stage writes:

    metrics/<d>/test.json     {"<d>": TEST_METRICS}   a DVC metric: what a person compares first
    metrics/<d>/train.json    {"<d>": TRAIN_METRICS}  a DVC metric: how the training went
    metrics/<d>/details.json  DETAILS                 not a DVC metric: diagnostics, read by `study collect`
    plots/<d>/history.csv     HISTORY_COLUMNS         one row per epoch
    plots/<d>/confusion.csv   CONFUSION_COLUMNS       one row per test example (classification)
    plots/<d>/predictions.csv PREDICTION_COLUMNS      one row per test example (regression)

A dataset's task (its spec's `task` in `tuninglab.lab.datasets`: a record of
`tuninglab.tasks`, classification or regression) picks its test metrics and its
test plot; everything else is the same file layout. A regression
history has the same columns: its `train_accuracy` and `val_accuracy` hold the
R^2 of that split (1 - squared error / variance of the split's targets), as
does `best_val_accuracy` in details.json.

The metrics are nested under the dataset's name so that `dvc exp show` can
label each column with a short unique name (`image.test_accuracy`) instead of
the file path; each test metric is followed by the half-width of its 95 %
interval over the repeats (`ci_name`). The test loss is a detail: it is not
comparable across experiments that change `train.loss`.
"""

from __future__ import annotations

from pathlib import Path

# A classifier's test metrics: accuracy (the primary metric), macro F1 and balanced accuracy (the mean
# recall per class: the ones to read for imbalanced classes), and the chance reference.
TEST_METRICS = ("test_accuracy", "macro_f1", "balanced_accuracy", "chance_accuracy")
# `best_epoch` is null, and every test metric but the chance reference, for a run that diverged in
# its first epoch: it has no trained weights to score. `cpu_capability` is the CPU kernels torch
# used (`avx512`, `avx2`, `default`): runs computed with other kernels are not compared silently.
TRAIN_METRICS = ("best_epoch", "epochs_run", "diverged", "train_time_s", "cpu_capability")
DETAILS = (
    "test_loss",
    "stopped_early",
    "diverged_epoch",
    "diverged_loss",
    "best_val_loss",
    "best_val_accuracy",
    "cpu_time_s",
    "used_threads",
    "used_device",
    "n_params",
    "numpy_simd",
    "torch_version",
    "numpy_version",
    "cpu_model",
)
# How a run was computed (`tuninglab.lab.compute`): what two runs must share to be compared, each with
# the word a sentence gives its value (`2 threads`, `AVX2 kernels`).
COMPUTED_WITH = {"used_threads": "threads", "cpu_capability": "kernels"}
# A test accuracy at most this far above the chance rate is "no better than chance".
CHANCE_MARGIN = 0.005
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time_s")
CONFUSION_COLUMNS = ("actual", "predicted")

# Regression (task "regression"): the test metrics, on the scale the model fits (the log of the target
# with `<d>.data.log_target`): R^2, root mean squared and mean absolute error; the same two errors on
# the target's own scale (dollars for house prices); the reference, the R^2 of predicting the
# training split's mean (about 0); and, with `train.loss: gaussian_nll`, the mean negative
# log-likelihood of the test targets and the share inside the 90 % predictive interval (null with mse).
REGRESSION_TEST_METRICS = (
    "test_r2",
    "test_rmse",
    "test_mae",
    "rmse_original",
    "mae_original",
    "chance_r2",
    "test_nll",
    "coverage_90",
)
# plots/<d>/predictions.csv, on the fitted scale: the target, the predicted mean, the predicted
# standard deviation (gaussian_nll; empty with mse) and the absolute error. The std column is there,
# empty, with mse too: `dvc plots` refuses a plot whose field a file lacks.
PREDICTION_COLUMNS = ("actual", "predicted", "std", "abs_error")
# Repeats: with `train.repeats` N, one train stage trains its configuration N times, with seeds
# `train.seed`, `train.seed + 1`, ... (weight init, shuffling, dropout, augmentation) on the same split.
# test.json then holds each test metric's mean over the repeats that trained, next to the
# half-width of its 95 % t-interval (`ci_name`: `test_accuracy_ci95`, null with fewer than two
# values), and the number of repeats (REPEATS); the chance reference is one number. details.json
# holds one record per repeat under PER_REPEAT: REPEAT_COLUMNS and the task's test metrics.
# The saved model, the test plot and train.json's `best_epoch` are the first repeat's (seed
# `train.seed`); history.csv is the mean curve over the repeats that ran each epoch;
# `train_time_s` sums the repeats and `diverged` says whether any repeat diverged.
REPEATS = "repeats"
PER_REPEAT = "per_repeat"
CI_SUFFIX = "_ci95"
REPEAT_COLUMNS = (
    "repeat",
    "seed",
    "best_epoch",
    "epochs_run",
    "diverged",
    "train_time_s",
    "best_val_loss",
    "best_val_accuracy",
)
# `study collect` writes the study's results, which the report reads.
RESULTS_FILE = Path("results/experiments.csv")
# One row per experiment, dataset and repeat: `experiment`, `dataset`, REPEAT_COLUMNS, then every
# test metric (TEST_METRICS, REGRESSION_TEST_METRICS). What paired comparisons are made of.
REPEATS_FILE = Path("results/repeats.csv")
CURVES_FILE = Path("results/curves.csv")  # every trained run's per-epoch history (HISTORY_COLUMNS)
# A search study's experiments (`kind: tpe`, `kind: halving`): results/experiments.csv names each one's
# trial (a tpe study's Optuna trial number, a halving study's configuration) and rung (halving: 0 for
# the first, fewest epochs; empty otherwise). A tpe study's Optuna storage is a journal file,
# OPTUNA_DIR/<study>.log, which a stopped study resumes from.
TRIAL = "trial"
RUNG = "rung"
SEARCH_COLUMNS = (TRIAL, RUNG)
OPTUNA_DIR = Path("results/optuna")

# `study collect` writes results/experiments.csv: one row per experiment and dataset. Its params
# are the dataset's effective settings, one column per `<group>.<key>`: `split.*`, `train.*` (the
# shared `train` updated by `<dataset>.train`) and `data.*` (`<dataset>.data`). Its metric columns
# follow, in this order.
PARAM_GROUPS = ("split", "train", "data")
# A metric's 95 % half-width column (`ci_name`) follows its task's test metrics, the chance
# references excepted (one number per split), with the number of repeats.
CHANCE_METRICS = ("chance_accuracy", "chance_r2")
RESULT_METRICS = (
    *TEST_METRICS,
    *(m + CI_SUFFIX for m in TEST_METRICS if m not in CHANCE_METRICS),
    REPEATS,
    *TRAIN_METRICS,
    *DETAILS,
    *REGRESSION_TEST_METRICS,
    *(m + CI_SUFFIX for m in REGRESSION_TEST_METRICS if m not in CHANCE_METRICS),
)

# An experiment's state in DVC's queue (`dvc exp show`): waiting, training, ended with its
# outputs, ended by an error.
QUEUED = "queued"
RUNNING = "running"
SUCCESS = "success"
FAILED = "failed"
ENDED_STATES = (SUCCESS, FAILED)  # an experiment in these states changes no more
# A run's `status` in the results table (one experiment on one dataset): the runs of an experiment
# that succeeded trained to the end (`ok`) or diverged; any other run has its experiment's state.
OK = "ok"
DIVERGED = "diverged"
TRAINED_STATUSES = (OK, DIVERGED)  # a run with metrics and a per-epoch curve of its own


def is_param_column(column: str) -> bool:
    """Whether a column of the results table is a param (`train.lr`, `data.normalize`), by its group."""
    group, dot, _ = column.partition(".")
    return bool(dot) and group in PARAM_GROUPS


def ci_name(metric: str) -> str:
    """The test.json key of the half-width of `metric`'s 95 % interval: `test_accuracy_ci95`."""
    return metric + CI_SUFFIX


def journal_path(study: str) -> Path:
    """`results/optuna/<study>.log`: a tpe study's Optuna journal."""
    return OPTUNA_DIR / f"{study}.log"


def metrics_path(dataset: str, name: str) -> Path:
    """`metrics/<dataset>/<name>.json`, for `name` in test, train, details."""
    return Path("metrics") / dataset / f"{name}.json"


def plots_path(dataset: str, name: str) -> Path:
    """`plots/<dataset>/<name>.csv`, for `name` in history, confusion, predictions."""
    return Path("plots") / dataset / f"{name}.csv"
