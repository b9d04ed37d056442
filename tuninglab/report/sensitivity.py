"""How much each hyperparameter moved test accuracy, per dataset, and how much is just seed noise.

Only runs compared with the baseline count (`results.compared`: its data
source, its number of CPU threads).

- `noise`: the baseline re-run with other seeds (experiments that differ from
  it only in `seed`, e.g. the `noise` study). The range of their test
  accuracies is the noise level: a difference no larger than it is noise.
- `one_at_a_time`: for each dataset and hyperparameter, the runs of
  one-at-a-time studies that change only that hyperparameter, with the
  baseline as one more value: the spread of test accuracy across values, the
  best value, and whether the best sits at the edge of the tried range; the
  range is worth extending only where the param's allowed range goes further.
- `importance`: where grid or random studies changed several
  hyperparameters together, a random forest fitted to every run of a dataset
  splits the variance of test accuracy among the hyperparameters
  (impurity-based importances), interactions included.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

from tuninglab.lab.params import value_range
from tuninglab.report.results import compared

SEED = "seed"
MIN_RUNS_FOR_IMPORTANCE = 8
FOREST_TREES = 300


def label(value: Any) -> str:
    """A param value as the report prints it: `0.001`, `sgd`, `[128, 128]`, `true`; empty when missing."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _numeric(values: list[Any]) -> bool:
    return all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) for v in values
    )


def _list_key(value: Any) -> tuple[int, list[float]] | None:
    """`"[128, 64]"` -> (2, [128, 64]): layer lists sort by depth, then width; None for anything else."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        return None
    return (len(parsed), parsed) if isinstance(parsed, list) else None


def in_order(group: pd.DataFrame, name: str) -> list[pd.DataFrame]:
    """The rows of `group` split by their value of `name`, in a reading order.

    Numbers ascending, layer lists by depth then width, anything else as it comes.
    """
    parts = [rows for _, rows in group.groupby(group[name].map(label), sort=False)]
    firsts = [rows[name].iloc[0] for rows in parts]
    if _numeric(firsts):
        parts.sort(key=lambda rows: rows[name].iloc[0])
    elif all(_list_key(v) is not None for v in firsts):
        parts.sort(key=lambda rows: _list_key(rows[name].iloc[0]))
    return parts


def noise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: how many seed runs (the baseline included), their mean test accuracy and its range.

    Only datasets with at least two such runs are listed.
    """
    done = compared(runs)
    seeds = done[(done["experiment"] == "baseline") | (done["changed"] == SEED)]
    table = seeds.groupby("dataset", sort=False)["test_accuracy"].agg(
        runs="count", mean="mean", low="min", high="max"
    )
    table["range"] = table["high"] - table["low"]
    return table[table["runs"] >= 2].reset_index()


def noise_levels(runs: pd.DataFrame) -> dict[str, float]:
    """The seed range of test accuracy per dataset (a fraction), where it was measured."""
    return dict(zip(*noise(runs)[["dataset", "range"]].to_numpy().T, strict=True))


def varied_alone(runs: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(dataset, hyperparameter) -> the baseline's row and the compared runs that changed only it.

    Only runs of one-at-a-time studies (`study_kind` ofat), plus the runs of
    any study with exactly their settings (`same_as` one of them: one value,
    run twice). The seed is left out: seed re-runs are the noise reference,
    not a hyperparameter.
    """
    groups = {}
    for dataset, rows in compared(runs).groupby("dataset", sort=False):
        baseline = rows[rows["experiment"] == "baseline"]
        alone = (
            (rows["study_kind"] == "ofat")
            & (rows["same_as"] == "")
            & ~rows["changed"].str.contains(",")
            & ~rows["changed"].isin(["", SEED])
        )
        for name, changed in rows[alone].groupby("changed", sort=False):
            repeats = rows[rows["same_as"].isin(changed["experiment"])]
            groups[dataset, name] = pd.concat([baseline, changed, repeats])
    return groups


def param_key(name: str, dataset: str) -> str:
    """The dotted params.yaml key of a runs-table column: `lr` on image -> `image.train.lr`.

    The dataset's own key, which `params.value_range` resolves like the shared one.
    """
    if name.startswith("split."):
        return name
    if name.startswith("data."):
        return f"{dataset}.{name}"
    return f"{dataset}.train.{name}"


def extension(name: str, dataset: str, best: Any, end: str) -> str:
    """Where a best value at the `end` ("lowest" or "highest") of the tried values can go further.

    "lower" or "higher" when the param's allowed range (`params.value_range`)
    goes beyond `best` that way, "" when `best` is its allowed bound.
    """
    low, high = value_range(param_key(name, dataset)) or (None, None)
    if end == "lowest":
        return "lower" if low is None or best > low else ""
    return "higher" if high is None or best < high else ""


def one_at_a_time(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and hyperparameter changed on its own: the spread of test accuracy across its values.

    Several runs of one value (e.g. from two studies) are averaged. Columns:
    dataset, hyperparameter, values and accuracies (JSON lists, in order),
    baseline_value, best_value, best_accuracy, worst_value, spread (a
    fraction), diverged_values (JSON list), at_edge ("lowest" or "highest"
    when the best value is that end of three or more numeric values and the
    spread is not noise, else ""), extend ("lower" or "higher" when the
    param's allowed range goes beyond that end, "" when the best value is the
    allowed bound), noise (the dataset's seed range; empty when not
    measured), within_noise (the spread is no larger than that noise).
    """
    levels = noise_levels(runs)
    table = []
    for (dataset, name), group in varied_alone(runs).items():
        baseline = group[group["experiment"] == "baseline"]
        parts = in_order(group, name)
        by_value = pd.DataFrame(
            {
                "raw": [rows[name].iloc[0] for rows in parts],
                "accuracy": [rows["test_accuracy"].mean() for rows in parts],
                "diverged": [rows["diverged"].astype(bool).any() for rows in parts],
            },
            index=[label(rows[name].iloc[0]) for rows in parts],
        )
        best, worst = by_value["accuracy"].idxmax(), by_value["accuracy"].idxmin()
        spread = by_value["accuracy"].max() - by_value["accuracy"].min()
        ordered = list(by_value.index)
        level = levels.get(dataset)
        within_noise = level is not None and bool(spread <= level)
        tops = [v for v in ordered if by_value.at[v, "accuracy"] == by_value["accuracy"].max()]
        at_edge = ""
        if _numeric(list(by_value["raw"])) and len(ordered) >= 3 and not within_noise:
            at_edge = "lowest" if tops == [ordered[0]] else "highest" if tops == [ordered[-1]] else ""
        table.append(
            {
                "dataset": dataset,
                "hyperparameter": name,
                "values": json.dumps(ordered),
                "accuracies": json.dumps([round(a, 4) for a in by_value["accuracy"]]),
                "baseline_value": label(baseline[name].iloc[0]),
                "best_value": best,
                "best_accuracy": by_value.at[best, "accuracy"],
                "worst_value": worst,
                "spread": spread,
                "diverged_values": json.dumps([v for v in ordered if by_value.at[v, "diverged"]]),
                "at_edge": at_edge,
                "extend": extension(name, dataset, by_value.at[tops[0], "raw"], at_edge) if at_edge else "",
                "noise": level,
                "within_noise": within_noise,
            }
        )
    return pd.DataFrame(table)


def ranking(sensitivity: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's hyperparameters, the one that moved test accuracy most first."""
    rows = sensitivity[sensitivity["dataset"] == dataset]
    return rows.sort_values("spread", ascending=False).reset_index(drop=True)


def _features(rows: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Hyperparameters as numbers a tree can split: log10 for wide positive ranges, codes for categories."""
    columns = {}
    for name in names:
        values = rows[name]
        if _numeric(list(values)):
            numbers = values.astype(float)
            wide = (numbers > 0).all() and numbers.max() >= 100 * numbers.min()
            columns[name] = np.log10(numbers) if wide else numbers
        else:
            columns[name] = values.map(label).astype("category").cat.codes
    return pd.DataFrame(columns, index=rows.index)


def importance(runs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per dataset, each hyperparameter's share of the variance in test accuracy, from a random forest.

    Fitted on every compared run of the dataset, each setting once (seed
    re-runs count as replicates of the baseline), when some run changed
    several hyperparameters together and there are at least
    `MIN_RUNS_FOR_IMPORTANCE` runs. Columns: dataset, hyperparameter,
    importance (shares summing to 1 per dataset), runs, oob_r2 (the forest's
    out-of-bag R^2: how far to trust the shares).
    """
    done = compared(runs)
    done = done[done["same_as"] == ""]
    if not done["changed"].str.contains(",").any():
        return pd.DataFrame(columns=["dataset", "hyperparameter", "importance", "runs", "oob_r2"])
    table = []
    for dataset, rows in done.groupby("dataset", sort=False):
        names = sorted({n for changed in rows["changed"] for n in changed.split(",") if n and n != SEED})
        if len(rows) < MIN_RUNS_FOR_IMPORTANCE or len(names) < 2:
            continue
        forest = RandomForestRegressor(n_estimators=FOREST_TREES, oob_score=True, random_state=seed)
        forest.fit(_features(rows, names), rows["test_accuracy"])
        oob = float(forest.oob_score_)
        for name, share in zip(names, forest.feature_importances_, strict=True):
            table.append(
                {
                    "dataset": dataset,
                    "hyperparameter": name,
                    "importance": float(share),
                    "runs": len(rows),
                    "oob_r2": oob if math.isfinite(oob) else None,
                }
            )
    return pd.DataFrame(table, columns=["dataset", "hyperparameter", "importance", "runs", "oob_r2"])
