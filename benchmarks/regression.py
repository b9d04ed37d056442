"""Measure the regression data type against its quality bar on this machine.

In a temporary folder it fetches the Ames houses the way the download stage
does (the pinned wheel, checked), prepares them with this checkout's
params.yaml (split shares and seed, `regression.data`), and scores on the test
split:

- ridge regression on the same features (the same train-fitted transform):
  its alpha picked on the validation split, fitted on the training split as
  the MLP is, and refitted on training and validation together;
- the lab's MLP with the regression's settings (`train` updated by
  `regression.train`: mse by default), and the same with gaussian_nll.

Run with `python -m benchmarks.regression`; prints one line per measurement,
with its target where there is one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score

from tuninglab.lab import datasets, evaluation, params, prepare, sources, training

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
TARGETS = {  # (metric, loss): (comparison, target)
    ("test_rmse", "mse"): ("<=", 0.13),
    ("test_r2", "mse"): (">=", 0.90),
    ("test_rmse", "gaussian_nll"): ("<=", 0.14),
    ("coverage_90", "gaussian_nll"): ("in", (0.85, 0.95)),
}


def ridge(arrays: dict[str, np.ndarray], meta: dict) -> list[tuple[str, float]]:
    """Ridge's test RMSE and R^2 (log price): alpha picked on validation; fit on train, then train+val."""
    scale, center = meta["target"]["std"], meta["target"]["mean"]

    def log_price(y: np.ndarray) -> np.ndarray:
        return y.astype(np.float64) * scale + center

    def val_rmse(alpha: float) -> float:
        fitted = Ridge(alpha=alpha).fit(arrays["x_train"], arrays["y_train"])
        return math.sqrt(
            mean_squared_error(log_price(arrays["y_val"]), log_price(fitted.predict(arrays["x_val"])))
        )

    alpha = min(ALPHAS, key=val_rmse)
    rows = [("ridge alpha (picked on validation)", alpha)]
    both = {name: np.concatenate([arrays[f"{name}_train"], arrays[f"{name}_val"]]) for name in ("x", "y")}
    for fitted_on, (x, y) in {
        "train": (arrays["x_train"], arrays["y_train"]),
        "train+val": (both["x"], both["y"]),
    }.items():
        predicted = log_price(Ridge(alpha=alpha).fit(x, y).predict(arrays["x_test"]))
        actual = log_price(arrays["y_test"])
        rows.append(
            (f"ridge on {fitted_on}: test RMSE (log price)", math.sqrt(mean_squared_error(actual, predicted)))
        )
        rows.append((f"ridge on {fitted_on}: test R^2", r2_score(actual, predicted)))
    return rows


def mlp(arrays: dict[str, np.ndarray], meta: dict, cfg: params.TrainConfig) -> dict[str, float]:
    """The lab's test metrics of the MLP trained with `cfg`, and its epochs and CPU time."""
    model, _, summary = training.train("regression", arrays, meta, cfg, torch.device("cpu"))
    metrics, _ = evaluation.regression_results(model, arrays["x_test"], arrays["y_test"], cfg, meta)
    return metrics | {key: summary[key] for key in ("best_epoch", "epochs_run", "cpu_time_s")}


def verdict(value: float, comparison: str, target: object) -> str:
    if comparison == "in":
        low, high = target
        return "ok" if low <= value <= high else "MISSED"
    met = value <= target if comparison == "<=" else value >= target
    return "ok" if met else "MISSED"


def main() -> None:
    settings = params.load(ROOT / "params.yaml")
    spec = datasets.get("regression")
    data = settings["regression"]["data"]
    if data["source"] != "ames":
        sys.exit("error: regression.data.source is not ames; the quality bar is Ames'")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        sources.fetch(spec, data["source"], raw)
        arrays, meta = prepare.prepare_regression(spec, raw, settings["split"], data)
    rows = {name: meta["splits"][name]["rows"] for name in prepare.SPLITS}
    print(
        f"Ames: {sum(rows.values())} houses split {rows}; {meta['preprocessing']['inputs']} inputs after the"
    )
    print(f"transform; chance R^2 (predicting the training mean) {meta['chance_r2']}")
    for name, value in ridge(arrays, meta):
        print(f"{name:<48} {value:10.4f}")
    cfg = params.train_config(settings, "regression")
    for loss in spec.losses:
        found = mlp(arrays, meta, dataclasses.replace(cfg, loss=loss))
        for key in (
            "test_rmse",
            "test_r2",
            "test_mae",
            "rmse_original",
            "mae_original",
            "test_nll",
            "coverage_90",
        ):
            if found[key] is None:
                continue
            line = f"{f'mlp {loss}: {key}':<48} {found[key]:10.4f}"
            if (key, loss) in TARGETS:
                comparison, target = TARGETS[key, loss]
                line += f"  target {comparison} {target}  {verdict(found[key], comparison, target)}"
            print(line)
        epochs = f"best epoch {found['best_epoch']} of {found['epochs_run']}"
        print(f"mlp {loss}: {epochs}, {found['cpu_time_s']} s CPU")


if __name__ == "__main__":
    main()
