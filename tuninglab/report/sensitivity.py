"""How much each hyperparameter moved test accuracy, per dataset, with intervals against the baseline.

"Test accuracy" is each dataset's primary metric (`primary`): accuracy for
classifiers, test R^2 for a regression; the table keeps its column names
(`accuracies`, `best_accuracy`) for both.

Only runs compared with the baseline count (`results.compared`: its data
source, its number of CPU threads). A hyperparameter is named by its column
of the runs table, the dotted key of the dataset's effective setting
(`train.lr`, `train.augment`, `data.normalize`).

- `effects`: for each dataset and hyperparameter changed on its own by a
  one-at-a-time study, one `Effect`, computed once: each value's runs and
  mean test accuracy in reading order (the baseline's value included), the
  spread, the best value, and whether the best sits at the edge of the tried
  range (worth extending only where the param's allowed range goes further).
  Each value other than the baseline's is set against the baseline from
  their repeats (`stats.compare`: the difference of means with its 95 %
  interval, paired by seed where both ran the same seeds, Welch otherwise),
  and every such comparison of the study is one family for the
  multiplicity correction (`stats.adjust`), which gives each its verdict.
  The summary, the figures and the explorer draw from it; `table` is one row
  per effect (`reports/sensitivity.csv`).
- `interactions`: what two hyperparameters varied together by a grid study
  did. Which of several hyperparameters varied together mattered is the
  search studies' importance (`importance`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuninglab.lab.params import value_range
from tuninglab.report import format, primary, stats
from tuninglab.report.observations import at_chance
from tuninglab.report.results import SEED, baselines, compared, samples, single_repeats
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
    "difference",
    "ci_low",
    "ci_high",
    "test",
    "p_adjusted",
    "verdict",
    "detected",
]


@dataclass(frozen=True)
class Versus:
    """One value against the baseline's on one dataset: the comparison of their repeats and its verdict."""

    comparison: stats.Comparison  # this value's runs minus the baseline's (`stats.compare`)
    p_adjusted: float | None  # over every one-at-a-time comparison of the results (`stats.adjust`)
    verdict: str  # `stats.verdict`: improves, worsens, no detectable effect, one run: no interval


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
    versus: Versus | None  # against the baseline's value; None for the baseline's value itself


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
    at_edge: str  # "lowest" or "highest": the best is that end of 3+ numeric values, unless no effect
    extend: str  # "lower" or "higher" where the allowed range goes beyond that end, else ""
    detected: bool | None  # some value improves or worsens; False: none does; None: untested values

    @property
    def largest(self) -> Value | None:
        """The value that moved the metric furthest from the baseline's (by its difference of means)."""
        moved = [v for v in self.values if v.versus is not None and pd.notna(v.versus.comparison.difference)]
        return max(moved, key=lambda v: abs(v.versus.comparison.difference), default=None)  # type: ignore[union-attr]

    def row(self) -> dict[str, Any]:
        """The effect as one row of `table`: value lists as JSON, in reading order (null: the baseline's)."""

        def each(field: str) -> str:
            found = [None if v.versus is None else _field(v.versus, field) for v in self.values]
            return json.dumps(found)

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
            **{
                name: each(name)
                for name in ("difference", "ci_low", "ci_high", "test", "p_adjusted", "verdict")
            },
            "detected": self.detected,
        }


def _field(versus: Versus, name: str) -> Any:
    """One field of a comparison as `table` writes it: differences and bounds rounded, a fraction."""
    comparison = versus.comparison
    found = {
        "difference": comparison.difference,
        "ci_low": comparison.low,
        "ci_high": comparison.high,
        "test": comparison.test,
        "p_adjusted": versus.p_adjusted,
        "verdict": versus.verdict,
    }[name]
    if isinstance(found, float):
        return round(found, 6) if math.isfinite(found) else None
    return found


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


def varied_alone(runs: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(dataset, hyperparameter) -> the baseline's row and the compared runs that changed only it.

    Only runs of one-at-a-time studies (`study_kind` ofat), plus the runs of
    any study with exactly their settings (`same_as` one of them: one value,
    run twice). The seed is left out: it is not a hyperparameter.
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


def _values(group: pd.DataFrame, name: str, repeats: pd.DataFrame) -> tuple[Value, ...]:
    """Each value of `name` among the rows of `group`, in reading order; several runs of one averaged.

    Each value but the baseline's is compared with the baseline's from their `repeats`; its
    adjusted p-value and verdict wait for the whole family (`effects`).
    """
    labels = group[name].map(format.value)
    dataset, metric = str(group["dataset"].iloc[0]), primary.metric(str(group["kind"].iloc[0]))
    base = group[labels == format.value(group[group["experiment"] == "baseline"][name].iloc[0])]
    baseline = samples(repeats, base["experiment"], dataset, metric)
    found = []
    for raw in reading_order(group[name]):
        rows = group[labels == format.value(raw)]
        again = rows["same_as"] != ""
        is_baseline = bool((rows["experiment"] == "baseline").any())
        found.append(
            Value(
                raw=raw,
                label=format.value(raw),
                experiment=rows[~again]["experiment"].iloc[0],
                repeats=tuple(rows[again]["experiment"]),
                is_baseline=is_baseline,
                score=primary.scores(rows).mean(),
                cpu_time=rows["cpu_time_s"].mean(),
                diverged=bool(rows["diverged"].astype(bool).any()),
                at_chance=any(at_chance(row) for _, row in rows.iterrows()),
                versus=None
                if is_baseline
                else Versus(
                    stats.compare(baseline, samples(repeats, rows["experiment"], dataset, metric)), None, ""
                ),
            )
        )
    return tuple(found)


def _detected(values: Iterable[Value]) -> bool | None:
    """Whether some value improves or worsens; False when every one was tested and none does; else None."""
    verdicts = [value.versus.verdict for value in values if value.versus is not None]
    if any(verdict in (stats.IMPROVES, stats.WORSENS) for verdict in verdicts):
        return True
    return False if verdicts and stats.ONE_RUN not in verdicts else None


def _effect(dataset: str, name: str, group: pd.DataFrame, values: tuple[Value, ...]) -> Effect:
    """The effect of `name` on `dataset` from its rows (`varied_alone`) and its values, verdicts given.

    The edge rule holds back where no value had a detectable effect: the best is then no better.
    """
    scores = [value.score for value in values]
    scored = [score for score in scores if pd.notna(score)]  # a run that trained nothing: none
    high, low = max(scored), min(scored)
    detected = _detected(values)
    tops = [value for value in values if value.score == high]
    at_edge = ""
    if _numeric([value.raw for value in values]) and len(values) >= 3 and detected is not False:
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
        spread=high - low,
        at_edge=at_edge,
        extend=extension(name, dataset, tops[0].raw, at_edge) if at_edge else "",
        detected=detected,
    )


def effects(runs: pd.DataFrame, repeats: pd.DataFrame | None = None) -> list[Effect]:
    """One `Effect` per dataset and hyperparameter changed on its own (`varied_alone`), in that order.

    `repeats` are the runs' repeats (`results.load_repeats`); without them,
    each run is one repeat. Every value's comparison with the baseline, on
    every dataset, is one family: its p-values are adjusted together
    (`stats.adjust`) and each gets its verdict.
    """
    repeats = single_repeats(runs) if repeats is None else repeats
    groups = varied_alone(runs)
    found = {key: _values(group, key[1], repeats) for key, group in groups.items()}
    tested = [value for values in found.values() for value in values if value.versus is not None]
    adjusted = dict(zip(tested, stats.adjust([v.versus.comparison.p for v in tested]), strict=True))  # type: ignore[union-attr]

    def judged(value: Value) -> Value:
        if value.versus is None:
            return value
        p = adjusted[value]
        versus = Versus(value.versus.comparison, p, stats.verdict(value.versus.comparison, p))
        return dataclasses.replace(value, versus=versus)

    return [
        _effect(dataset, name, groups[dataset, name], tuple(judged(v) for v in values))
        for (dataset, name), values in found.items()
    ]


def table(found: list[Effect]) -> pd.DataFrame:
    """The effects as a table, one row each (`Effect.row`): `reports/sensitivity.csv`.

    Columns: dataset, hyperparameter, values and accuracies (JSON lists, in
    order), baseline_value, best_value, best_accuracy, worst_value, spread (a
    fraction), diverged_values (JSON list), at_edge, extend; then per value,
    against the baseline's (JSON lists in the same order, null for the
    baseline's value and where there is no interval): difference (of means, a
    fraction), ci_low and ci_high (its 95 % interval), test (paired, welch or
    none), p_adjusted (Benjamini-Hochberg) and verdict; and detected (some
    value improves or worsens; empty where some value had no interval).
    """
    return pd.DataFrame([effect.row() for effect in found], columns=TABLE_COLUMNS)


def one_at_a_time(runs: pd.DataFrame, repeats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset and hyperparameter changed on its own: the spread of test accuracy across its values.

    `table(effects(runs, repeats))`.
    """
    return table(effects(runs, repeats))


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


def _interaction(study: str, dataset: str, rows: pd.DataFrame, baseline: pd.Series) -> Interaction | None:
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
    )


def interactions(runs: pd.DataFrame) -> list[Interaction]:
    """One `Interaction` per grid study and dataset where exactly two params varied, in table order.

    A grid over a dataset's own param (`regression.train.loss`) and a shared
    one (`train.lr`) is an interaction on that dataset only: on the others
    only the shared one varied, which is a one-at-a-time effect. Only runs
    compared with the baseline count, and only finished ones.
    """
    done = compared(runs)
    baseline = baselines(runs)
    found = []
    for (study, dataset), rows in done[done["study_kind"] == "grid"].groupby(
        ["study", "dataset"], sort=False
    ):
        interaction = _interaction(str(study), str(dataset), rows, baseline.loc[dataset])
        if interaction is not None:
            found.append(interaction)
    return found


def interaction_table(found: list[Interaction]) -> pd.DataFrame:
    """Every cell of every interaction, one row each: `reports/interactions.csv`."""
    frames = [interaction.rows_frame() for interaction in found]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=INTERACTION_COLUMNS)
