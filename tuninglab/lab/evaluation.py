"""Score a trained model on the held-out test split.

`EVALUATORS`, keyed by the name of a dataset spec's task, gives its test
metrics (the task's `test_metrics`, and the test loss) and the columns of its
test plot: the confusion rows of a classifier, the predictions of a regression.

The metrics are computed with numpy (`tuninglab.lab.metrics`), as
scikit-learn's `sklearn.metrics` computes them (the tests compare the two):
importing scikit-learn would add seconds to every train stage's start-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import nn

from tuninglab import tasks
from tuninglab.lab.files import Columns
from tuninglab.lab.metrics import accuracy, balanced_accuracy, macro_f1, mae, r2, rmse
from tuninglab.lab.params import TrainConfig
from tuninglab.lab.training import LOSSES, REGRESSION_LOSSES, predict, predicted_variance
from tuninglab.tasks import Task

INTERVAL = 0.90  # the predictive interval whose coverage a gaussian_nll model reports
Z_INTERVAL = NormalDist().inv_cdf(0.5 + INTERVAL / 2)  # its half-width in standard deviations (1.645)


def test_metrics(
    model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, chance_accuracy: float
) -> tuple[dict[str, float], np.ndarray]:
    """Test accuracy, macro F1, balanced accuracy, chance rate and test loss of `model`; predicted classes.

    The chance rate (`chance_accuracy`, from the prepare stage) is the accuracy
    of always predicting the training split's majority class; the loss is the
    training loss function on the test split.
    """
    logits = predict(model, torch.from_numpy(x), cfg.batch_size)
    target = torch.from_numpy(y)
    predicted = logits.argmax(dim=1).numpy()
    metrics = {
        "test_accuracy": round(accuracy(y, predicted), 6),
        "macro_f1": round(macro_f1(y, predicted, logits.shape[1]), 6),
        "balanced_accuracy": round(balanced_accuracy(y, predicted, logits.shape[1]), 6),
        "chance_accuracy": chance_accuracy,
        "test_loss": round(LOSSES[cfg.loss](logits, target).item(), 6),
    }
    return metrics, predicted


def confusion_rows(y: np.ndarray, predicted: np.ndarray, classes: list[str]) -> Columns:
    """One row per test example with its actual and predicted class name, as columns.

    This is the layout DVC's confusion-matrix plot template reads.
    """
    names = np.asarray(classes)
    return {"actual": names[y], "predicted": names[predicted]}


def classification_results(
    model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, meta: dict[str, Any]
) -> tuple[dict[str, Any], Columns]:
    """A classifier's test metrics (`test_metrics`) and its confusion rows."""
    metrics, predicted = test_metrics(model, x, y, cfg, meta["chance_accuracy"])
    return metrics, confusion_rows(y, predicted, meta["classes"])


def gaussian_nll(actual: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """Mean negative log-likelihood of `actual` under normal distributions N(mean, std^2)."""
    return float(np.mean(0.5 * np.log(2 * math.pi * std**2) + (actual - mean) ** 2 / (2 * std**2)))


def regression_results(
    model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, meta: dict[str, Any]
) -> tuple[dict[str, Any], Columns]:
    """A regression's test metrics and its prediction rows, on the scale the model fits.

    The prepared targets are standardized (`meta["target"]`: the training
    mean and std, and whether it is a log); the metrics undo that. R^2, RMSE
    and MAE are on the fitted scale (the log of the target with `log_target`),
    `rmse_original` and `mae_original` on the target's own scale (exp of both
    sides). With gaussian_nll, `test_nll` is the mean negative log-likelihood on
    the fitted scale and `coverage_90` the share of test targets inside the
    predicted mean +- 1.645 predicted standard deviations; both are None with
    mse. `test_loss` is the training loss on the (standardized) test split.
    The rows: `actual`, `predicted`, `std` (NaN with mse) and `abs_error`.
    """
    outputs = predict(model, torch.from_numpy(x), cfg.batch_size)
    target = meta["target"]
    center, scale = target["mean"], target["std"]
    actual = y.astype(np.float64) * scale + center
    predicted = outputs[:, 0].double().numpy() * scale + center
    undo = np.exp if target["log"] else np.asarray
    metrics: dict[str, Any] = {
        "test_r2": round(r2(actual, predicted), 6),
        "test_rmse": round(rmse(actual, predicted), 6),
        "test_mae": round(mae(actual, predicted), 6),
        "rmse_original": round(rmse(undo(actual), undo(predicted)), 6),
        "mae_original": round(mae(undo(actual), undo(predicted)), 6),
        "chance_r2": meta["chance_r2"],
        "test_nll": None,
        "coverage_90": None,
        "test_loss": round(REGRESSION_LOSSES[cfg.loss](outputs, torch.from_numpy(y)).item(), 6),
    }
    error = np.abs(actual - predicted)
    std = np.full_like(actual, np.nan)
    if cfg.loss == "gaussian_nll":
        std = np.sqrt(predicted_variance(outputs).double().numpy()) * scale
        metrics["test_nll"] = round(gaussian_nll(actual, predicted, std), 6)
        metrics["coverage_90"] = round(float(np.mean(error <= Z_INTERVAL * std)), 6)
    return metrics, {"actual": actual, "predicted": predicted, "std": std, "abs_error": error}


def untrained_results(task: Task, meta: dict[str, Any]) -> tuple[dict[str, Any], Columns]:
    """The test metrics and plot of a run with no trained weights (it diverged in its first epoch).

    No test metric is claimed: every one is None except the chance reference,
    which does not depend on the model; the test plot has its columns and no rows.
    """
    metrics: dict[str, Any] = {name: None for name in (*task.test_metrics, "test_loss")}
    metrics[task.chance_metric] = meta[task.chance_metric]
    return metrics, {column: [] for column in task.plot_columns}


# By the name of a dataset spec's task: (model, test inputs, test targets, settings, prepared meta) ->
# (test metrics with the test loss, the columns of its test plot).
EVALUATORS: dict[str, Callable[..., tuple[dict[str, Any], Columns]]] = {
    tasks.CLASSIFICATION.name: classification_results,
    tasks.REGRESSION.name: regression_results,
}
