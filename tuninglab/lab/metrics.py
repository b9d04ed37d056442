"""Test metrics on numpy arrays, as `sklearn.metrics` computes them (the tests compare the two).

Torch-free: the evaluation of a trained model scores its predictions with these,
and the prepare stage scores a regression's chance reference (the training
mean) with the same `r2`.
"""

from __future__ import annotations

import math

import numpy as np


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (actual, predicted) class id pairs, ids 0..n_classes-1: row = actual, column = predicted."""
    pairs = np.asarray(actual, dtype=np.int64) * n_classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(actual: np.ndarray, predicted: np.ndarray) -> float:
    """The share of rows whose predicted class is the actual one."""
    return float(np.mean(np.asarray(actual) == np.asarray(predicted)))


def macro_f1(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """The unweighted mean of each class's F1 score, 2 TP / (2 TP + FP + FN).

    Over the classes that occur among the actual or the predicted ones, as
    `sklearn.metrics.f1_score(average="macro")` counts them.
    """
    matrix = confusion_matrix(actual, predicted, n_classes)
    hits = np.diag(matrix).astype(np.float64)
    either = matrix.sum(axis=1).astype(np.float64) + matrix.sum(axis=0)  # 2 TP + FP + FN
    present = either > 0
    return float(np.mean(2.0 * hits[present] / either[present]))


def balanced_accuracy(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """The unweighted mean of each class's recall, TP / (TP + FN): accuracy with every class weighing alike.

    Over the classes that occur among the actual ones, as
    `sklearn.metrics.balanced_accuracy_score` counts them; always predicting
    one class scores 1 / the number of classes.
    """
    matrix = confusion_matrix(actual, predicted, n_classes)
    rows = matrix.sum(axis=1).astype(np.float64)  # TP + FN of each class
    present = rows > 0
    return float(np.mean(np.diag(matrix)[present] / rows[present]))


def r2(actual: np.ndarray, predicted: np.ndarray) -> float:
    """The coefficient of determination: 1 - squared errors / squared deviations from the actual mean."""
    return float(1 - np.sum((actual - predicted) ** 2) / np.sum((actual - np.mean(actual)) ** 2))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """The root of the mean squared error."""
    return math.sqrt(float(np.mean((actual - predicted) ** 2)))


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """The mean absolute error."""
    return float(np.mean(np.abs(predicted - actual)))
