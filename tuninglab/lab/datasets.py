"""The dataset registry: one spec per data type; every other module looks a dataset up here.

A spec holds all that differs between data types: where the raw rows come
from, how they are read and turned into arrays, which model families train on
them, the rules of the settings in its params.yaml group and what sizes its
memory estimate. The stages, the trainer and the checks are the same code for
every dataset. Each data type is a module of `tuninglab.lab.kinds` that
holds its sources, reader and featurizer and registers its spec; the registry
loads them on first use (`dataset_names`, `get`). Adding one: its module
there (using the shared mechanics of `sources` and `prepare`), its `<name>`
group in params.yaml and its name in dvc.yaml's `datasets` list and
`test_plots` map.

A spec names its task (`tuninglab.tasks`): `classification` (labels, accuracy)
or `regression` (a numeric target, R^2). The task picks how the target is
prepared (`prepare.PREPARERS`), the model's outputs, the losses it allows, its metrics
and its test plot; a task whose losses are not the shared `train.loss` choices
sets `loss` in its own `<name>.train` (`task_rules`).

A spec is a data type; a params.yaml group is one dataset of a type. A group
named after a type (`image`) is of that type; any other group names its type
in `<group>.data.kind` (`params.dataset_groups`), so that one run trains
several datasets of one type, e.g. `image` on the bundled digits and `cifar`
(`data.kind: image`) on CIFAR-10.

Torch-free: the report and the studies import `dataset_names` from here. Model
families are named here, described by `families.FAMILIES` and built by
`models.BUILDERS`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from tuninglab import tasks
from tuninglab.lab.rules import (
    Rule,
    choice,
)

LOCAL_DATA = PurePosixPath("data/local")  # data/local/<dataset>/: a dependency of that dataset's download
CLASSIFIER_LOSSES = ("cross_entropy", "mse")  # the shared `train.loss` choices

Fetch = Callable[[Path], dict[str, Any]]
ReadRaw = Callable[[Path], tuple[Any, np.ndarray]]
Featurize = Callable[[Any, dict[str, np.ndarray], dict[str, Any]], tuple[np.ndarray, dict[str, Any]]]


class LocalCsv(NamedTuple):
    """A user's own CSV inside data/local/<dataset>/ as a source."""

    columns: str  # the columns it needs, as the error message names them (`text,label`)
    fetch: Callable[[Path, Path], dict[str, Any]]  # (the CSV, the raw file to write) -> provenance


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the lab knows about one data type.

    Attributes:
        name: the params.yaml group and the folder name under data/, models/, metrics/ and plots/.
        sources: `<name>.data.source` value -> a function writing the raw file at the path it
            gets and returning its provenance (at least `source`, `rows` and `classes`).
        raw_file: the raw file's name in data/raw/<name>/.
        read_raw: raw file -> (features, labels): what `featurize` and the label encoding take.
        featurize: (features, split indices, `<name>.data`) -> (the input array, meta.json entries:
            `preprocessing`, and any other the dataset records, such as the text vocabulary).
        families: the model families (`families.FAMILIES`) it can train; with more than one,
            `<name>.train.model` picks.
        input_size: `<name>.data` -> rows and input values per row, known before download
            (the memory check).
        classes: the most classes its shipped sources have (the memory check's output layer); for a
            regression, the most outputs per row (2: the mean and the log-variance of gaussian_nll).
        data_settings: rules of `<name>.data` besides `source` (whose rule comes from `sources`).
        model_settings: rules of its families' own settings in `<name>.train` besides `model`.
        local_csv: accept a CSV inside data/local/<name>/ as `<name>.data.source`, besides `sources`.
        augments: training batches can get random transforms (`<name>.train.augment`, `augment_set`).
        value_bytes: bytes per input value (float32: 4).
        size_param: the `<name>.data` setting to lower when its arrays do not fit in memory.
        official_test: raw file -> the rows of its source's own test set (a boolean mask), or None
            when the source has none; those rows are then the test split (`prepare.prepare`).
        featurize_labels: `featurize` also takes the class ids of every row (keyword `labels`), to fit
            weights on the training rows' labels (the text n-grams' naive Bayes ratios).
        task: `tasks.CLASSIFICATION` or `tasks.REGRESSION` (see the module's docstring).
        input_shape: `<name>.data` -> the shape of one input, known before download, where a model
            family reads more than its number of values (a convolution: channels, height, width);
            None: one row of `input_size`'s values.
        empty_row: what a raw row the download drops lacked (`text or label`), as its log line says.
        losses: the `train.loss` values it trains with; other than `CLASSIFIER_LOSSES`, its own
            `<name>.train.loss` is required (`task_rules`).
    """

    name: str
    sources: Mapping[str, Fetch]
    raw_file: str
    read_raw: ReadRaw
    featurize: Featurize
    families: tuple[str, ...]
    input_size: Callable[[dict[str, Any]], tuple[int, int]]
    classes: int
    data_settings: Mapping[str, Rule] = field(default_factory=dict)
    model_settings: Mapping[str, Rule] = field(default_factory=dict)
    local_csv: LocalCsv | None = None
    augments: bool = False
    value_bytes: int = 4
    size_param: str = "source"
    official_test: Callable[[Path], np.ndarray | None] | None = None
    featurize_labels: bool = False
    task: tasks.Task = tasks.CLASSIFICATION
    losses: tuple[str, ...] = CLASSIFIER_LOSSES
    empty_row: str = "values"
    input_shape: Callable[[dict[str, Any]], tuple[int, ...]] | None = None


REGISTRY: dict[str, DatasetSpec] = {}
# Two data types the report's cross-dataset section contrasts, hyperparameter by hyperparameter,
# when both are among its results.
CONTRASTED = ("image", "tabular")


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a data type to the lab (a test may register a toy one)."""
    REGISTRY[spec.name] = spec
    return spec


def _load_kinds() -> None:
    """Register every data type's module (`tuninglab.lab.kinds`), in order; they import this module."""
    import tuninglab.lab.kinds

    tuninglab.lab.kinds.load(REGISTRY)


def dataset_names() -> tuple[str, ...]:
    """The registered data types, in the order they were registered (the order of reports and tables)."""
    _load_kinds()
    return tuple(REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec of a registered data type; KeyError for any other name."""
    _load_kinds()
    return REGISTRY[name]


def _is_local_csv(value: Any, folder: PurePosixPath) -> bool:
    """A relative path ending `.csv` that stays inside `folder` once `.` and `..` are resolved.

    The download stage depends on that folder, so DVC hashes the file's content
    and notices any change to it; a file anywhere else would go unnoticed.
    """
    if not isinstance(value, str) or not value.endswith(".csv"):
        return False
    path = PurePosixPath(posixpath.normpath(value))
    return not path.is_absolute() and path.parent.is_relative_to(folder)


def _source_rule(spec: DatasetSpec) -> Rule:
    """One of the spec's sources or, where it takes one, a CSV inside data/local/<name>/."""
    names = tuple(spec.sources)
    if spec.local_csv is None:
        return choice(*names)
    folder = LOCAL_DATA / spec.name
    return Rule(
        lambda v: any(v == name for name in names) or _is_local_csv(v, folder),
        f"{' | '.join(names)} or the path of a .csv file inside {folder}/ with {spec.local_csv.columns} "
        "columns, relative to the repository root: DVC tracks that folder's content, so copy your CSV "
        "there (or dvc add it there)",
        choices=names,
    )


def data_rules(spec: DatasetSpec) -> dict[str, Rule]:
    """The rules of every `<name>.data` setting, `source` first."""
    return {"source": _source_rule(spec), **spec.data_settings}


def model_rules(spec: DatasetSpec) -> dict[str, Rule]:
    """The rules of the settings only this dataset has in `<name>.train`; `model` first if it has a choice."""
    pick = {"model": choice(*spec.families)} if len(spec.families) > 1 else {}
    return {**pick, **spec.model_settings}


def task_rules(spec: DatasetSpec) -> dict[str, Rule]:
    """The rules of shared `train` settings that this dataset allows other values of: `loss`, when its
    losses are not the shared choices.

    The dataset must set these in its own `<name>.train`: a shared value means another task's loss.
    """
    return {} if spec.losses == CLASSIFIER_LOSSES else {"loss": choice(*spec.losses)}


def family(spec: DatasetSpec, model: str | None) -> str:
    """The model family a run trains: the dataset's only one, or the one `<name>.train.model` names.

    Raises:
        KeyError: when the dataset has several families and `model` is none of them.
    """
    if len(spec.families) == 1:
        return spec.families[0]
    if model not in spec.families:
        raise KeyError(model)
    return model
