"""How much each hyperparameter moved test accuracy, per dataset, and how much is just seed noise.

"Test accuracy" is each dataset's primary metric (`primary`): accuracy for
classifiers, test R^2 for a regression; the table keeps its column names
(`accuracies`, `best_accuracy`) for both.

Only runs compared with the baseline count (`results.compared`: its data
source, its number of CPU threads). A hyperparameter is named by its column
of the runs table, the dotted key of the dataset's effective setting
(`train.lr`, `train.augment`, `data.normalize`).

- `noise`: the baseline re-run with other seeds (experiments that differ from
  it only in `train.seed`, e.g. the `noise` study). The range of their test
  accuracies is the noise level: a difference no larger than it is noise.
- `effects`: for each dataset and hyperparameter changed on its own by a
  one-at-a-time study, one `Effect`, computed once: each value's runs and
  mean test accuracy in reading order (the baseline's value included), the
  spread, the best value, and whether the best sits at the edge of the tried
  range (worth extending only where the param's allowed range goes further).
  The summary, the figures and the explorer draw from it; `table` is one row
  per effect (`reports/sensitivity.csv`).
- `interactions`: what two hyperparameters varied together by a grid study
  did. Which of several hyperparameters varied together mattered is the
  search studies' importance (`importance`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuninglab.lab.params import value_range
from tuninglab.report import format, primary
from tuninglab.report.observations import at_chance
from tuninglab.report.results import SEED, baselines, compared
from tuninglab.schema import is_param_column
from tuninglab.tasks import TASKS

TABLE_COLUMNS = [
    "dataset",
    "hyperparameter",
    "values",
    "accuracies",
    "baseline_value",
    "best_value",
    "best_accuracy",
    "worst_value",
    "spread",
    "diverged_values",
    "at_edge",
    "extend",
    "noise",
    "within_noise",
]


@dataclass(frozen=True, eq=False)
class Value:
    """One value of a hyperparameter on one dataset: its runs and what they scored."""

    raw: Any  # as in the runs table
    label: str  # as the report prints it (`format.value`)
    experiment: str  # the run shown for it: the first that repeats no other (`same_as` empty)
    repeats: tuple[str, ...]  # runs of other studies with exactly its settings, merged into it
    is_baseline: bool  # the baseline's value: the baseline is one of its runs
    score: float  # mean primary metric of its runs: test accuracy (a regression's test R^2)
    cpu_time: float  # mean CPU seconds of training of its runs
    diverged: bool  # one of its runs diverged
    at_chance: bool  # one of its runs is no better than chance


@dataclass(frozen=True, eq=False)
class Effect:
    """What changing one hyperparameter on its own did on one dataset."""

    dataset: str
    kind: str  # the dataset's data type, by which its metrics are read (`primary`)
    hyperparameter: str
    runs: pd.DataFrame  # the baseline's row and the runs that changed only this, repeats included
    values: tuple[Value, ...]  # in reading order (`reading_order`)
    baseline_value: str
    best: Value  # the first value with the highest mean test accuracy
    worst: Value  # the first value with the lowest
    spread: float  # best minus worst mean test accuracy, a fraction
    at_edge: str  # "lowest" or "highest": the best is that end of 3+ numeric values, beyond noise
    extend: str  # "lower" or "higher" where the allowed range goes beyond that end, else ""
    noise: float | None  # the dataset's seed range, where measured
    within_noise: bool  # the spread is no larger than that noise

    def row(self) -> dict[str, Any]:
        """The effect as one row of `table`: value lists as JSON, in reading order."""
        return {
            "dataset": self.dataset,
            "hyperparameter": self.hyperparameter,
            "values": json.dumps([v.label for v in self.values]),
            "accuracies": json.dumps([round(v.score, 4) for v in self.values]),
            "baseline_value": self.baseline_value,
            "best_value": self.best.label,
            "best_accuracy": self.best.score,
            "worst_value": self.worst.label,
            "spread": self.spread,
            "diverged_values": json.dumps([v.label for v in self.values if v.diverged]),
            "at_edge": self.at_edge,
            "extend": self.extend,
            "noise": self.noise,
            "within_noise": self.within_noise,
        }


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


def reading_order(values: Iterable[Any]) -> list[Any]:
    """The distinct values (told apart by `format.value`) in reading order.

    Numbers ascending, layer lists by depth then width, anything else as it first comes.
    """
    firsts: dict[str, Any] = {}
    for value in values:
        firsts.setdefault(format.value(value), value)
    ordered = list(firsts.values())
    if _numeric(ordered):
        return sorted(ordered)
    if all(_list_key(value) is not None for value in ordered):
        return sorted(ordered, key=_list_key)
    return ordered


def noise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: how many seed runs (the baseline included), their mean test accuracy and its range.

    Only datasets with at least two such runs are listed.
    """
    done = compared(runs)
    seeds = done[(done["experiment"] == "baseline") | (done["changed"] == SEED)]
    seeds = seeds.assign(score=primary.scores(seeds))
    seed_runs = seeds.groupby("dataset", sort=False)["score"].agg(
        runs="count", mean="mean", low="min", high="max"
    )
    seed_runs["range"] = seed_runs["high"] - seed_runs["low"]
    return seed_runs[seed_runs["runs"] >= 2].reset_index()


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
    """The params.yaml key of a dataset's param column: `train.lr` on image -> `image.train.lr`.

    The dataset's own key, which `params.value_range` resolves like the shared one.
    """
    return name if name.startswith("split.") else f"{dataset}.{name}"


def extension(name: str, dataset: str, best: Any, end: str) -> str:
    """Where a best value at the `end` ("lowest" or "highest") of the tried values can go further.

    "lower" or "higher" when the param's allowed range (`params.value_range`)
    goes beyond `best` that way, "" when `best` is its allowed bound.
    """
    low, high = value_range(param_key(name, dataset)) or (None, None)
    if end == "lowest":
        return "lower" if low is None or best > low else ""
    return "higher" if high is None or best < high else ""


def _values(group: pd.DataFrame, name: str) -> tuple[Value, ...]:
    """Each value of `name` among the rows of `group`, in reading order; several runs of one averaged."""
    labels = group[name].map(format.value)
    found = []
    for raw in reading_order(group[name]):
        rows = group[labels == format.value(raw)]
        repeats = rows["same_as"] != ""
        found.append(
            Value(
                raw=raw,
                label=format.value(raw),
                experiment=rows[~repeats]["experiment"].iloc[0],
                repeats=tuple(rows[repeats]["experiment"]),
                is_baseline=bool((rows["experiment"] == "baseline").any()),
                score=primary.scores(rows).mean(),
                cpu_time=rows["cpu_time_s"].mean(),
                diverged=bool(rows["diverged"].astype(bool).any()),
                at_chance=any(at_chance(row) for _, row in rows.iterrows()),
            )
        )
    return tuple(found)


def _effect(dataset: str, name: str, group: pd.DataFrame, level: float | None) -> Effect:
    """The effect of `name` on `dataset` from its rows (`varied_alone`) and the dataset's seed noise."""
    values = _values(group, name)
    scores = [value.score for value in values]
    scored = [score for score in scores if pd.notna(score)]  # a run that trained nothing: none
    high, low = max(scored), min(scored)
    spread = high - low
    within_noise = level is not None and bool(spread <= level)
    tops = [value for value in values if value.score == high]
    at_edge = ""
    if _numeric([value.raw for value in values]) and len(values) >= 3 and not within_noise:
        at_edge = "lowest" if tops == [values[0]] else "highest" if tops == [values[-1]] else ""
    baseline = group[group["experiment"] == "baseline"]
    return Effect(
        dataset=dataset,
        kind=str(group["kind"].iloc[0]),
        hyperparameter=name,
        runs=group,
        values=values,
        baseline_value=format.value(baseline[name].iloc[0]),
        best=values[scores.index(high)],
        worst=values[scores.index(low)],
        spread=spread,
        at_edge=at_edge,
        extend=extension(name, dataset, tops[0].raw, at_edge) if at_edge else "",
        noise=level,
        within_noise=within_noise,
    )


def effects(runs: pd.DataFrame) -> list[Effect]:
    """One `Effect` per dataset and hyperparameter changed on its own (`varied_alone`), in that order."""
    levels = noise_levels(runs)
    return [
        _effect(dataset, name, group, levels.get(dataset))
        for (dataset, name), group in varied_alone(runs).items()
    ]


def table(found: list[Effect]) -> pd.DataFrame:
    """The effects as a table, one row each (`Effect.row`): `reports/sensitivity.csv`.

    Columns: dataset, hyperparameter, values and accuracies (JSON lists, in
    order), baseline_value, best_value, best_accuracy, worst_value, spread (a
    fraction), diverged_values (JSON list), at_edge, extend, noise (empty
    when not measured), within_noise.
    """
    return pd.DataFrame([effect.row() for effect in found], columns=TABLE_COLUMNS)


def one_at_a_time(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and hyperparameter changed on its own: the spread of test accuracy across its values.

    `table(effects(runs))`.
    """
    return table(effects(runs))


def ranking(sensitivity: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's hyperparameters, the one that moved test accuracy most first."""
    rows = sensitivity[sensitivity["dataset"] == dataset]
    return rows.sort_values("spread", ascending=False).reset_index(drop=True)


# Beside the primary metric, what a grid's table also shows per task (its `interaction_metrics`): a
# regression's error in the target's own units and the calibration of its predictive interval (empty
# cells for an mse run).
INTERACTION_METRICS = {task.name: list(task.interaction_metrics) for task in TASKS.values()}
INTERACTION_COLUMNS = [
    "study",
    "dataset",
    "rows",
    "row_value",
    "columns",
    "column_value",
    "experiment",
    "accuracy",
    "diverged",
]


@dataclass(frozen=True, eq=False)
class Interaction:
    """What two hyperparameters varied together by one grid study did on one dataset.

    Cells are indexed by value labels (`format.value`) in reading order: the
    rows by the values of `rows`, the columns by those of `columns`. Reading
    along a row is the effect of `columns` with `rows` held at one value.
    """

    study: str
    dataset: str
    kind: str  # the dataset's data type, by which its metrics are read (`primary`)
    rows: str  # the categorical one of the two, or the one with fewer values
    columns: str  # the other: numeric where one of them is
    score: pd.DataFrame  # mean primary metric of each cell's runs (NaN: not run)
    diverged: pd.DataFrame  # True where one of the cell's runs diverged
    experiments: pd.DataFrame  # the run shown for each cell (its first)
    extra: dict[str, pd.DataFrame]  # metric column -> its cells (`INTERACTION_METRICS`), where measured
    spreads: pd.Series  # per row value: best minus worst along its row, a fraction
    best: tuple[str, str]  # the (row, column) labels of the best cell
    noise: float | None  # the dataset's seed range, where measured

    def rows_frame(self) -> pd.DataFrame:
        """The cells as rows of `reports/interactions.csv` (`INTERACTION_COLUMNS`)."""
        cells = self.score.stack().index
        return pd.DataFrame(
            [
                {
                    "study": self.study,
                    "dataset": self.dataset,
                    "rows": self.rows,
                    "row_value": row,
                    "columns": self.columns,
                    "column_value": column,
                    "experiment": self.experiments.at[row, column],
                    "accuracy": self.score.at[row, column],
                    "diverged": bool(self.diverged.at[row, column]),
                }
                for row, column in cells
            ],
            columns=INTERACTION_COLUMNS,
        )


def _axes(rows: pd.DataFrame, varied: list[str]) -> tuple[str, str]:
    """(rows, columns) of a grid's table: a numeric one goes across, else the one with more values."""
    numeric = [name for name in varied if _numeric(list(rows[name]))]
    if len(numeric) == 1:
        return next(name for name in varied if name not in numeric), numeric[0]
    first, second = sorted(varied, key=lambda name: (rows[name].map(format.value).nunique(), name))
    return first, second


def _interaction(
    study: str, dataset: str, rows: pd.DataFrame, baseline: pd.Series, level: float | None
) -> Interaction | None:
    """The interaction of the two params that vary among one dataset's runs of a grid study; else None.

    Numbers ascend; of other values, the baseline's comes first where the grid has it, then the rest
    in reading order.
    """
    varied = [
        name for name in rows.columns if is_param_column(name) and rows[name].map(format.value).nunique() > 1
    ]
    if len(varied) != 2 or SEED in varied:
        return None
    row_name, column_name = _axes(rows, varied)
    order = {}
    for name in varied:
        labels = [format.value(v) for v in reading_order(rows[name])]
        first = [] if _numeric(list(rows[name])) else [v for v in labels if v == format.value(baseline[name])]
        order[name] = first + [label for label in labels if label not in first]
    cells = rows.assign(
        _row=rows[row_name].map(format.value),
        _column=rows[column_name].map(format.value),
        _score=primary.scores(rows),
        _diverged=rows["diverged"].astype(bool),
    ).groupby(["_row", "_column"], sort=False)

    def grid(values: pd.Series) -> pd.DataFrame:
        table = values.unstack().reindex(index=order[row_name], columns=order[column_name])
        return table.rename_axis(index=row_name, columns=column_name)

    score = grid(cells["_score"].mean())
    extra = {}
    kind = str(rows["kind"].iloc[0])
    for metric in INTERACTION_METRICS[primary.task(kind)]:
        values = grid(cells[metric].mean())
        if values.notna().any().any():
            extra[metric] = values
    spreads = score.max(axis=1) - score.min(axis=1)
    best = score.stack().idxmax()
    return Interaction(
        study=study,
        dataset=dataset,
        kind=kind,
        rows=row_name,
        columns=column_name,
        score=score,
        diverged=grid(cells["_diverged"].any()).fillna(False).astype(bool),
        experiments=grid(cells["experiment"].first()),
        extra=extra,
        spreads=spreads,
        best=(str(best[0]), str(best[1])),
        noise=level,
    )


def interactions(runs: pd.DataFrame) -> list[Interaction]:
    """One `Interaction` per grid study and dataset where exactly two params varied, in table order.

    A grid over a dataset's own param (`regression.train.loss`) and a shared
    one (`train.lr`) is an interaction on that dataset only: on the others
    only the shared one varied, which is a one-at-a-time effect. Only runs
    compared with the baseline count, and only finished ones.
    """
    levels = noise_levels(runs)
    done = compared(runs)
    baseline = baselines(runs)
    found = []
    for (study, dataset), rows in done[done["study_kind"] == "grid"].groupby(
        ["study", "dataset"], sort=False
    ):
        interaction = _interaction(str(study), str(dataset), rows, baseline.loc[dataset], levels.get(dataset))
        if interaction is not None:
            found.append(interaction)
    return found


def interaction_table(found: list[Interaction]) -> pd.DataFrame:
    """Every cell of every interaction, one row each: `reports/interactions.csv`."""
    frames = [interaction.rows_frame() for interaction in found]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=INTERACTION_COLUMNS)
