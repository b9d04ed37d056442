"""Each data type's primary metric: the test metric the report ranks its runs by, and its chance reference.

A dataset's task (its spec in the registry: a `tuninglab.tasks` record) picks them (its
`primary_metric`, `chance_metric`):

- classification: test accuracy, against always predicting the training split's majority class;
- regression: test R^2 (on the scale the model fits), against always predicting the training
  split's mean, whose R^2 on the test split is about 0.

Higher is better for both, and both are fractions whose best is 1, so a point is 0.01 of either:
spreads and differences are compared in each metric's own points. R^2 has no floor (a model worse
than the mean scores below 0), where accuracy stays near chance at worst.

Results of classifiers only read exactly as before: the words below name test accuracy alone
(`tuninglab.tasks.DEFAULT`'s words) unless a data type of another task is among those shown.

Everything here is looked up by a data type (`kind`): a results row carries its own (the `kind`
column that `study collect` writes: `image` for a dataset group `cifar`), so a group not named
after its type is read by its type's metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from tuninglab import tasks as task_records
from tuninglab.lab import datasets
from tuninglab.tasks import Task, Words


def ordered(names: Iterable[str], kinds: Mapping[str, str]) -> list[str]:
    """Dataset groups in the order of the report: by their data type's registration, then by name.

    `kinds` gives each group's data type (`results.kinds`).
    """
    order = list(datasets.dataset_names())
    return sorted(set(names), key=lambda name: (order.index(kinds[name]), kinds[name] != name, name))


def task_record(kind: str) -> Task:
    """The task of a data type, as its record."""
    return datasets.get(kind).task


def task(kind: str) -> str:
    """The name of the task of a data type."""
    return task_record(kind).name


def metric(kind: str) -> str:
    """The results column of a data type's primary metric: `test_accuracy`, or `test_r2`."""
    return task_record(kind).primary_metric


def chance_metric(kind: str) -> str:
    """The results column of a data type's chance reference: `chance_accuracy`, or `chance_r2`."""
    return task_record(kind).chance_metric


def words(kind: str) -> Words:
    """How the report names a data type's primary metric."""
    return task_record(kind).words


def score(run: pd.Series) -> float:
    """A results row's primary metric (its data type's: the row's `kind`)."""
    return run[metric(run["kind"])]


def chance(run: pd.Series) -> float:
    """A results row's chance reference (its data type's)."""
    return run[chance_metric(run["kind"])]


def scores(runs: pd.DataFrame) -> pd.Series:
    """Every row's primary metric, as a column (empty for none)."""
    return pd.Series([score(run) for _, run in runs.iterrows()], index=runs.index, dtype=float)


def tasks(kinds: Iterable[str]) -> set[str]:
    """The tasks of these data types."""
    return {task(kind) for kind in kinds}


def mixed(kinds: Iterable[str]) -> bool:
    """Whether a data type of a task other than the default (a regression) is among these: then the
    words name both metrics."""
    return bool(tasks(kinds) - {task_records.DEFAULT.name})


def metric_words(kinds: Iterable[str], capital: bool = False) -> str:
    """`test accuracy` for classifiers only; else the metric of each task. A noun without article."""
    words = task_records.DEFAULT.words.metric
    if mixed(kinds):
        words = "primary test metric (accuracy for classifiers, R^2 for regression)"
    return words[0].upper() + words[1:] if capital else words


def spread_note(kinds: Iterable[str]) -> str:
    """For results with a regression: how spreads of accuracy and of R^2 are set side by side; else ""."""
    if not mixed(kinds):
        return ""
    return (
        "Each dataset is scored by its own primary metric: test accuracy for classifiers, test R^2 for "
        "regression (higher is better for both, and 1 is the best of both). A spread is the best minus "
        "the worst value in that metric's own points (0.01 of accuracy, 0.01 of R^2), so datasets are "
        "compared on how far a hyperparameter moved their own metric. R^2 has no floor: a run worse "
        "than predicting the training mean scores below 0, and its spread can exceed 100 points."
    )
