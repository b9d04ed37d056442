"""Read a collected study back for the report: `results/experiments.csv` and `results/curves.csv`.

Both files are written by `python -m tuninglab study collect` (and at the end
of `study run`). `load` checks them before any analysis starts and says what
to run when one is missing, empty or from an older version.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tuninglab.experiments import CURVES_FILE, RESULTS_FILE, TEST_METRICS, TRAIN_METRICS
from tuninglab.files import HISTORY_COLUMNS

RESULTS_DIR = RESULTS_FILE.parent
RUN_COLUMNS = ["experiment", "study", "hyperparameter", "value", "dataset", "status", "error"]
CURVE_COLUMNS = ["experiment", "dataset", *HISTORY_COLUMNS]
FINISHED = ("ok", "diverged")
COLLECT = "python -m tuninglab study collect"
RUN_STUDY = "python -m tuninglab study run ofat -j 2"


class ReportError(ValueError):
    """Results the report cannot be made from; the message says what to run first."""


def _read(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise ReportError(f"{path} not found: run a study first ({RUN_STUDY}), or {COLLECT} after one")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    if frame.empty:
        raise ReportError(f"{path} is empty: run a study first ({RUN_STUDY}), or {COLLECT} after one")
    missing = [column for column in required if column not in frame]
    if missing:
        raise ReportError(
            f"{path} lacks the columns {', '.join(missing)} (written by an older version?): "
            f"run {COLLECT} to write it again"
        )
    return frame


def load(directory: Path = RESULTS_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs table (one row per experiment and dataset) and the per-epoch curves, checked.

    The runs table gains a column `changed`: the params that differ from the
    baseline's for that dataset, comma-separated (empty for the baseline, and
    for an experiment whose settings do not apply to that dataset).

    Raises:
        ReportError: a file is missing, empty, lacks columns, or has no baseline.
    """
    runs = _read(directory / RESULTS_FILE.name, RUN_COLUMNS + TEST_METRICS + TRAIN_METRICS)
    curves = _read(directory / CURVES_FILE.name, CURVE_COLUMNS)
    if not (runs["experiment"] == "baseline").any():
        raise ReportError(
            f"{directory / RESULTS_FILE.name} has no baseline rows: run {COLLECT} to write it again"
        )
    runs["error"] = runs["error"].fillna("")
    runs["changed"] = changed_params(runs)
    return runs, curves


def param_columns(runs: pd.DataFrame) -> list[str]:
    """The resolved param columns of the runs table (between `error` and the metrics)."""
    columns = list(runs.columns)
    return columns[columns.index("error") + 1 : columns.index(TEST_METRICS[0])]


def _same(a: object, b: object) -> bool:
    return (pd.isna(a) and pd.isna(b)) or a == b


def changed_params(runs: pd.DataFrame) -> pd.Series:
    """Per row, the params that differ from the baseline row of the same dataset, comma-separated."""
    baseline = baselines(runs)
    names = param_columns(runs)
    return runs.apply(
        lambda row: ",".join(c for c in names if not _same(row[c], baseline.at[row["dataset"], c])), axis=1
    )


def baselines(runs: pd.DataFrame) -> pd.DataFrame:
    """The baseline's rows, indexed by dataset."""
    return runs[runs["experiment"] == "baseline"].set_index("dataset")


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained to the end or diverged (not failed, queued or running)."""
    return runs[runs["status"].isin(FINISHED)]


def history(curves: pd.DataFrame, experiment: str, dataset: str) -> pd.DataFrame:
    """One run's per-epoch curve, in epoch order."""
    chosen = curves[(curves["experiment"] == experiment) & (curves["dataset"] == dataset)]
    return chosen.sort_values("epoch").reset_index(drop=True)
