"""The tasks a data type's spec names: what a run of each is scored by, writes and is called in the report.

A task is `classification` (labels, accuracy) or `regression` (a numeric target,
R^2). Its record holds all that differs between the two outside the torch code:
the test metrics (`tuninglab.schema` names each), the primary metric the report
ranks runs by and its chance reference, the test plot file and its columns,
what the history's accuracy columns hold, and the words the report names the
metric with. The prepared data's meta.json names its task (`"task"`), so that no
code guesses it from the keys present.

The torch side of a task (its losses, the metric of its history, its test
evaluator, its model's outputs) is looked up by the task's name in the lab
modules that hold it (`tuninglab.lab.training.TASKS`, `evaluation.EVALUATORS`,
`models.OUTPUTS`), and so is the preparation of its target
(`tuninglab.lab.prepare.PREPARERS`).

Torch-free, beside the schema: the report and the study tools import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuninglab import schema


@dataclass(frozen=True)
class Words:
    """How the report names a task's primary metric and its chance reference."""

    metric: str  # `test accuracy`
    short: str  # `accuracy`: in "training accuracy", "validation accuracy"
    reference: str  # `majority class`: what chance predicts, in brackets after "chance"
    predicting: str  # `the training split's majority class`: in "always predicting ..."


@dataclass(frozen=True)
class Task:
    """What one task's runs are scored by, write and are called.

    Attributes:
        name: `classification` or `regression`: a data type spec's `task`, and meta.json's `"task"`.
        test_metrics: the keys of metrics/<d>/test.json, in order.
        primary_metric: the test metric the report ranks runs by (higher is better).
        chance_metric: its reference: the same metric of always predicting the training split's
            majority class, or its mean.
        test_plot: the name of its test plot file, plots/<d>/<test_plot>.csv.
        plot_columns: that file's columns.
        raw_target: the provenance.json key (the download stage's) that describes the raw file's
            target: its `classes` and their counts, or the `target` column.
        history_quality: what the history's `train_accuracy` and `val_accuracy` hold, as a
            training log line names it (`acc`, `R^2`).
        words: how the report names the primary metric.
        baseline_metrics: the test metrics the report's baselines table shows, in order.
        interaction_metrics: beside the primary metric, what a grid's interaction table shows.
        metric_labels: labels the report gives other metrics of this task (a regression's
            `best_val_accuracy` holds R^2).
    """

    name: str
    test_metrics: tuple[str, ...]
    primary_metric: str
    chance_metric: str
    test_plot: str
    plot_columns: tuple[str, ...]
    raw_target: str
    history_quality: str
    words: Words
    baseline_metrics: tuple[str, ...]
    interaction_metrics: tuple[str, ...] = ()
    metric_labels: tuple[tuple[str, str], ...] = ()

    @property
    def test_file_keys(self) -> tuple[str, ...]:
        """The keys of metrics/<d>/test.json: each test metric and its 95 % half-width, then the repeats.

        The chance reference has no half-width: it is one number per split.
        """
        keys = [
            key
            for name in self.test_metrics
            for key in ((name,) if name == self.chance_metric else (name, schema.ci_name(name)))
        ]
        return (*keys, schema.REPEATS)


CLASSIFICATION = Task(
    name="classification",
    test_metrics=schema.TEST_METRICS,
    primary_metric="test_accuracy",
    chance_metric="chance_accuracy",
    test_plot="confusion",
    plot_columns=schema.CONFUSION_COLUMNS,
    raw_target="classes",
    history_quality="acc",
    words=Words("test accuracy", "accuracy", "majority class", "the training split's majority class"),
    baseline_metrics=("test_accuracy", "chance_accuracy", "macro_f1", "balanced_accuracy"),
)
# On the scale the model fits (the log of the target with `<d>.data.log_target`); a regression's
# history holds the R^2 of each split (1 - squared error / variance of the split's targets).
REGRESSION = Task(
    name="regression",
    test_metrics=schema.REGRESSION_TEST_METRICS,
    primary_metric="test_r2",
    chance_metric="chance_r2",
    test_plot="predictions",
    plot_columns=schema.PREDICTION_COLUMNS,
    raw_target="target",
    history_quality="R^2",
    words=Words("test R^2", "R^2", "training mean", "the training split's mean"),
    baseline_metrics=("test_r2", "chance_r2", "test_rmse", "rmse_original", "test_nll", "coverage_90"),
    interaction_metrics=("rmse_original", "coverage_90"),
    metric_labels=(("best_val_accuracy", "best validation R^2"),),
)

TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, REGRESSION)}
# The task whose words the report uses alone while no dataset of another task is shown.
DEFAULT = CLASSIFICATION


def task(name: str) -> Task:
    """The task of this name; KeyError for any other."""
    return TASKS[name]
