"""What `train.select_by: val_metric` would change on a collected study: `python -m benchmarks.select_by`.

For every run with a per-epoch curve in `results/curves.csv`, the epoch that
the lowest validation loss keeps (the default) against the one the highest
validation accuracy (a regression's R^2) keeps, and how much validation
accuracy the second gains, per dataset. The gain is measured on the split that
selects the epoch, so it is an upper bound of what the test split would see.
Also counts the runs of `results/experiments.csv` whose kept epoch is 0 (the
untrained weights, which the trainer no longer keeps) and those with no trained epoch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tuninglab.schema import CURVES_FILE, RESULTS_FILE


def kept_epochs(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: the epoch kept by validation loss, the one kept by validation accuracy, and the gain."""
    rows = []
    for (experiment, dataset), history in curves.groupby(["experiment", "dataset"], sort=False):
        by_loss = history.loc[history["val_loss"].idxmin()]
        by_metric = history.loc[history["val_accuracy"].idxmax()]
        rows.append(
            {
                "experiment": experiment,
                "dataset": dataset,
                "by_loss": int(by_loss["epoch"]),
                "by_metric": int(by_metric["epoch"]),
                "gain_points": 100 * (by_metric["val_accuracy"] - by_loss["val_accuracy"]),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    """Print the comparison for the results folder given (default `results/`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_FILE.parent)
    folder = parser.parse_args().results
    runs = pd.read_csv(folder / RESULTS_FILE.name)
    kept = kept_epochs(pd.read_csv(folder / CURVES_FILE.name))
    diverged = runs["diverged"].astype(bool)
    print(
        f"{len(runs)} runs: {int((runs['best_epoch'] == 0).sum())} kept epoch 0 (untrained weights), "
        f"{int(runs['best_epoch'].isna().sum())} have no trained epoch ({int(diverged.sum())} diverged)"
    )
    summary = kept.groupby("dataset", sort=False).agg(
        runs=("experiment", "size"),
        other_epoch=("gain_points", lambda gains: int((gains > 0).sum())),
        mean_gain_points=("gain_points", "mean"),
        max_gain_points=("gain_points", "max"),
    )
    print("select_by val_metric against val_loss (validation accuracy gained by the other epoch):")
    print(summary.round(2).to_string())


if __name__ == "__main__":
    main()
