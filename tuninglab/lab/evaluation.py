"""Score a trained model on the held-out test split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from tuninglab.lab.params import TrainConfig
from tuninglab.lab.training import LOSSES, predict


def test_metrics(
    model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: TrainConfig, chance_accuracy: float
) -> tuple[dict[str, float], np.ndarray]:
    """Test accuracy, macro F1, the chance rate and the test loss of `model`, and the predicted classes.

    The chance rate (`chance_accuracy`, from the prepare stage) is the accuracy
    of always predicting the training split's majority class; the loss is the
    training loss function on the test split.
    """
    logits = predict(model, torch.from_numpy(x), cfg.batch_size)
    target = torch.from_numpy(y)
    predicted = logits.argmax(dim=1).numpy()
    metrics = {
        "test_accuracy": round(float(accuracy_score(y, predicted)), 6),
        "macro_f1": round(float(f1_score(y, predicted, average="macro")), 6),
        "chance_accuracy": chance_accuracy,
        "test_loss": round(LOSSES[cfg.loss](logits, target).item(), 6),
    }
    return metrics, predicted


def confusion_rows(y: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per test example with its actual and predicted class name.

    This is the layout DVC's confusion-matrix plot template reads.
    """
    names = np.asarray(classes)
    return pd.DataFrame({"actual": names[y], "predicted": names[predicted]})
