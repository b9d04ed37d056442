"""Names shared by the stages that write results and the code that reads them.

Torch-free, so the report and the study tools import it cheaply. Each stage
writes exactly these keys; a test checks it.

Per dataset `<d>`, the train stage writes:

    metrics/<d>/test.json     {"<d>": TEST_METRICS}   a DVC metric: what a person compares first
    metrics/<d>/train.json    {"<d>": TRAIN_METRICS}  a DVC metric: how the training went
    metrics/<d>/details.json  DETAILS                 not a DVC metric: diagnostics, read by `study collect`
    plots/<d>/history.csv     HISTORY_COLUMNS         one row per epoch
    plots/<d>/confusion.csv   CONFUSION_COLUMNS       one row per test example

The metrics are nested under the dataset's name so that `dvc exp show` can
label each column with a short unique name (`image.test_accuracy`) instead of
the file path, and they are few, so that every dataset's test accuracy and F1
fit in its first 200 characters. The test loss is a detail: it is not
comparable across experiments that change `train.loss`.
"""

from __future__ import annotations

from pathlib import Path

TEST_METRICS = ("test_accuracy", "macro_f1", "chance_accuracy")
TRAIN_METRICS = ("best_epoch", "epochs_run", "diverged", "train_time_s")
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
)
# A test accuracy at most this far above the chance rate is "no better than chance".
CHANCE_MARGIN = 0.005
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time_s")
CONFUSION_COLUMNS = ("actual", "predicted")


def metrics_path(dataset: str, name: str) -> Path:
    """`metrics/<dataset>/<name>.json`, for `name` in test, train, details."""
    return Path("metrics") / dataset / f"{name}.json"


def plots_path(dataset: str, name: str) -> Path:
    """`plots/<dataset>/<name>.csv`, for `name` in history, confusion."""
    return Path("plots") / dataset / f"{name}.csv"
