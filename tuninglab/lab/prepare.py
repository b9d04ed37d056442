"""Split raw data into train/validation/test and turn it into model-ready arrays.

Every preprocessing step is fitted on the training split only (feature
scaling, pixel statistics, the text vocabulary, the one-hot levels and the
target's scaling of a regression), then applied to all three splits, so no
validation or test row influences training.

Classification splits are stratified by class; a regression's numeric target
is split at random (`prepare_regression`) with the same shares and seed.

Each data type's reader and featurizer live in its module of
`tuninglab.lab.kinds`; shared here are the splits, the class-size checks, the
label encoding, each task's preparer (`PREPARERS`) and the mixed-table
featurizer of the tabular and regression types (`prepare_mixed_table`).
The dataset registry names this module's functions, so pandas and
scikit-learn are imported where they are used: the check_params and train
stages read the registry and need neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuninglab import tasks
from tuninglab.lab.metrics import r2
from tuninglab.lab.sources import DataSourceError

if TYPE_CHECKING:
    import pandas as pd

    from tuninglab.lab.datasets import DatasetSpec

SPLITS = ("train", "val", "test")


def _split_shares(val_size: float, test_size: float) -> tuple[float, float]:
    """The two cuts `split_indices` makes: test out of all rows, then validation out of the rest."""
    return test_size, val_size / (1 - test_size)


def split_indices(
    labels: np.ndarray, val_size: float, test_size: float, seed: int, *, stratify: bool = True
) -> dict[str, np.ndarray]:
    """Stratified train/validation/test row indices, the same for the same seed.

    `val_size` and `test_size` are shares of all rows. Without `stratify`
    (a numeric target) the rows are cut at random, with the same shares.
    """
    from sklearn.model_selection import train_test_split

    test_share, val_share = _split_shares(val_size, test_size)
    rows = np.arange(len(labels))
    rest, test = train_test_split(
        rows, test_size=test_share, stratify=labels if stratify else None, random_state=seed
    )
    train, val = train_test_split(
        rest, test_size=val_share, stratify=labels[rest] if stratify else None, random_state=seed
    )
    return {"train": train, "val": val, "test": test}


def official_split_indices(
    labels: np.ndarray, official_test: np.ndarray, val_size: float, seed: int
) -> dict[str, np.ndarray]:
    """The source's own test rows as the test split; validation a stratified `val_size` share of the others.

    For sources that come with a test set (`official_test` is True on its rows):
    `val_size` is then a share of the training set, and `split.test_size` is not used.
    """
    from sklearn.model_selection import train_test_split

    rest = np.flatnonzero(~official_test)
    train, val = train_test_split(rest, test_size=val_size, stratify=labels[rest], random_state=seed)
    return {"train": train, "val": val, "test": np.flatnonzero(official_test)}


def _cut_range(rows: int, total: int, taken: int) -> tuple[int, int]:
    """The fewest and most of a class's `rows` that a stratified cut of `taken` out of `total` rows takes.

    scikit-learn gives each class its share `rows / total * taken` rounded down,
    plus one for some of the classes with the largest remainders: which ones
    depends on the other classes, so both ends are possible.
    """
    share = rows / total * taken
    low = math.floor(share)
    return low, low + (share > low)


def _sure_in_every_split(rows: int, total: int, val_size: float, test_size: float) -> bool:
    """Whether a class of `rows` rows, out of `total`, surely gets a row in each of train, val and test.

    Follows the two stratified cuts of `split_indices` with scikit-learn's
    rounding (`ceil` of each cut's size; `_cut_range` per class), with the
    rounding going against this class at every step, whatever the other classes.
    """
    test_share, val_share = _split_shares(val_size, test_size)
    n_rest = total - math.ceil(test_share * total)
    n_train = n_rest - math.ceil(val_share * n_rest)
    if n_train < 1:
        return False
    rest_low, rest_high = _cut_range(rows, total, n_rest)
    if rows - rest_high < 1:  # test
        return False
    for rest in (rest_low, rest_high):
        train_low, train_high = _cut_range(rest, n_rest, n_train)
        if train_low < 1 or rest - train_high < 1:  # train, validation
            return False
    return True


def min_class_rows(other_rows: int, val_size: float, test_size: float) -> int:
    """The fewest rows a class needs to be sure of a row in each of train, validation and test.

    `other_rows` is the number of rows of all other classes. Every larger count
    is sure of it too: with test share t and validation share v' of the rest
    (see `_split_shares`), a class of k rows surely gets floor(k t) >= 1 test
    rows once k >= 1/t, and keeps r >= k (1 - t) - 2 rows for the second cut,
    which surely leave it floor(r v') >= 1 validation rows and at least
    r (1 - v') - 2 >= 1 training rows once r >= 1/v' and r >= 3 / (1 - v').
    Below that bound each count is checked with `_sure_in_every_split`. Being a
    guarantee, it can ask one row more than the worst actual split needs (8
    where 7 always did in a search, with the default shares).
    """
    test_share, val_share = _split_shares(val_size, test_size)
    rest_needed = max(1 / val_share, 3 / (1 - val_share))
    safe = math.ceil(max(1 / test_share, (rest_needed + 2) / (1 - test_share))) + 1
    short = [k for k in range(1, safe) if not _sure_in_every_split(k, other_rows + k, val_size, test_size)]
    return short[-1] + 1 if short else 1


def check_class_sizes(
    labels: np.ndarray, classes: list[str], split: dict[str, Any], param: str, source: str
) -> None:
    """Refuse, before splitting, data with a class too small for the split shares.

    Every class needs at least one row in each of train, validation and test:
    at least `min_class_rows` rows. The error names the smallest class that
    falls short, its row count and that minimum; `param` and `source` name
    the data (`text.data.source`, `data/local/text/reviews.csv`).

    Raises:
        DataSourceError: when a class is too small.
    """
    counts = np.bincount(labels, minlength=len(classes))
    total, val_size, test_size = int(counts.sum()), split["val_size"], split["test_size"]
    for label in np.argsort(counts, kind="stable"):
        rows = int(counts[label])
        needed = min_class_rows(total - rows, val_size, test_size)
        if rows < needed:
            raise DataSourceError(
                f"{param}: class '{classes[label]}' of {source} has {rows} rows, too few for "
                f"split.val_size {val_size} and split.test_size {test_size}: a class needs at least "
                f"{needed} rows so that train, validation and test are sure to get one each (add rows of "
                "that class, remove the class, or change the split shares)"
            )


def check_official_class_sizes(
    labels: np.ndarray,
    official_test: np.ndarray,
    classes: list[str],
    split: dict[str, Any],
    param: str,
    source: str,
) -> None:
    """Refuse, before splitting, a class that the source's own test set lacks or that validation cannot share.

    With an official test set (`official_split_indices`), every class needs a
    test row, and enough training rows that the stratified validation cut of
    `split.val_size` surely leaves it one row in validation and one in training.

    Raises:
        DataSourceError: naming the class, its row count and the source.
    """
    val_size = split["val_size"]
    rest = labels[~official_test]
    counts = np.bincount(rest, minlength=len(classes))
    tested = np.bincount(labels[official_test], minlength=len(classes))
    taken = math.ceil(val_size * len(rest))
    for label in np.argsort(counts, kind="stable"):
        rows = int(counts[label])
        low, high = _cut_range(rows, len(rest), taken)
        if not tested[label]:
            raise DataSourceError(f"{param}: class '{classes[label]}' of {source} has no row in its test set")
        if low < 1 or rows - high < 1:
            raise DataSourceError(
                f"{param}: class '{classes[label]}' of {source} has {rows} training rows, too few for "
                f"split.val_size {val_size} (a share of the training rows here): validation and training "
                "need one row each (change split.val_size, or use a source with more rows of that class)"
            )


def chance_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy on the test labels of always predicting the training labels' most frequent class.

    A tie between classes goes to the lowest class id. Rounded to 6 digits.
    """
    majority = np.bincount(y_train).argmax()
    return round(float((y_test == majority).mean()), 6)


def encode_labels(labels: pd.Series | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class ids 0..C-1 in sorted order of the class names, and the names."""
    names, ids = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return ids.astype(np.int64), [str(n) for n in names]


MIN_SPLIT_ROWS = 2  # a regression split needs two rows for its R^2


def split_sizes(rows: int, val_size: float, test_size: float) -> dict[str, int]:
    """The rows of train, validation and test that `split_indices` cuts from `rows` rows (unstratified)."""
    test_share, val_share = _split_shares(val_size, test_size)
    test = math.ceil(test_share * rows)
    val = math.ceil(val_share * (rows - test))
    return {"train": rows - test - val, "val": val, "test": test}


def prepare_mixed_table(
    frame: pd.DataFrame, splits: dict[str, np.ndarray], data: dict[str, Any], *, scale: bool = True
) -> tuple[np.ndarray, dict[str, Any]]:
    """Numeric columns standardized, the others one-hot encoded: a transform fitted on the training rows only.

    Numeric columns are standardized with the training rows' mean and standard
    deviation (unless `scale` is false); a missing number takes the training
    median, and each numeric column with a missing value in the training rows
    gains an indicator column (1 where the value was missing, scikit-learn's
    `SimpleImputer(add_indicator=True)`). Missing levels are a level of their
    own. A level with fewer than `data["min_level_rows"]` training rows joins
    its column's one "rare" column; a level never seen in training (in
    validation or test only) counts as rare too, or as no level at all where
    the column has no rare levels. Returns the matrix and its meta.json
    entries (`preprocessing`: the columns, those with an indicator, how many
    inputs they became, and each categorical column's kept levels).
    """
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [str(c) for c in frame.columns if str(c) not in numeric]
    levels = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(
            handle_unknown="infrequent_if_exist", min_frequency=data["min_level_rows"], sparse_output=False
        ),
    )
    # Scaled first (the scaler skips missing values), then imputed: the indicators stay 0 or 1.
    numbers = make_pipeline(
        *([StandardScaler()] if scale else []),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
    )
    transform = ColumnTransformer([("numeric", numbers, numeric), ("categorical", levels, categorical)])
    types = {column: float for column in numeric} | {column: str for column in categorical}
    table = frame.astype(types).where(frame.notna())
    transform.fit(table.iloc[splits["train"]])
    features = transform.transform(table).astype(np.float32)
    indicator = transform.named_transformers_["numeric"][-1].indicator_ if numeric else None
    kept: dict[str, list[str]] = {}
    if categorical:
        encoder = transform.named_transformers_["categorical"][-1]
        for column, found, rare in zip(
            categorical, encoder.categories_, encoder.infrequent_categories_, strict=True
        ):
            grouped = set() if rare is None else set(rare)
            kept[column] = [str(level) for level in found if level not in grouped]
    info = {
        "numeric": numeric,
        "categorical": categorical,
        "missing_indicators": [] if indicator is None else [numeric[i] for i in indicator.features_],
        "min_level_rows": data["min_level_rows"],
        "inputs": int(features.shape[1]),
        "levels": kept,
    }
    return features, {"preprocessing": info}


def prepare_regression(
    spec: DatasetSpec, raw_dir: Path, split: dict[str, Any], data: dict[str, Any], group: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`prepare` for a regression spec: random splits, train-fitted features, the target standardized.

    `group` is the dataset's params.yaml group, which errors name; the spec's
    name when None (a group named after its data type).

    The target is the log of the raw one with `data["log_target"]`. The
    model learns it standardized with the training split's mean and standard
    deviation (`meta["target"]`, which evaluation undoes). The reference
    `chance_r2` is the R^2 on the test split of always predicting the
    training split's mean (about 0, below it when the splits' means differ).

    Raises:
        DataSourceError: too few rows for the split shares, a target that is not
            positive under `log_target`, or one that is the same in every training row.
    """
    features, raw = spec.read_raw(raw_dir / spec.raw_file)
    group = group or spec.name
    where, source = f"{group}.data.source", data["source"]
    sizes = split_sizes(len(raw), split["val_size"], split["test_size"])
    if min(sizes.values()) < MIN_SPLIT_ROWS:
        raise DataSourceError(
            f"{where}: {source} has {len(raw)} rows, too few for split.val_size {split['val_size']} and "
            f"split.test_size {split['test_size']}: train, validation and test need {MIN_SPLIT_ROWS} rows "
            f"each (they would get {sizes['train']}, {sizes['val']} and {sizes['test']})"
        )
    if data["log_target"] and (raw <= 0).any():
        raise DataSourceError(
            f"{group}.data.log_target: true needs a target above 0, and {source} has "
            f"{int((raw <= 0).sum())} rows at or below 0 (the smallest {raw.min():g}); "
            f"set {group}.data.log_target: false"
        )
    target = np.log(raw) if data["log_target"] else raw
    splits = split_indices(target, split["val_size"], split["test_size"], split["seed"], stratify=False)
    train = target[splits["train"]]
    mean, std = float(train.mean()), float(train.std())
    if std == 0:
        raise DataSourceError(
            f"{where}: {source} has one target value in all training rows; nothing to learn"
        )
    test = target[splits["test"]]
    meta: dict[str, Any] = {
        "kind": spec.name,
        "task": spec.task.name,
        "target": {"log": data["log_target"], "mean": mean, "std": std},
        "chance_r2": round(r2(test, np.full_like(test, mean)), 6),
    }
    x, entries = spec.featurize(features, splits, data)
    meta.update(entries)
    meta["input_shape"] = list(x.shape[1:])
    meta["splits"] = {name: {"rows": len(idx)} for name, idx in splits.items()}
    y = ((target - mean) / std).astype(np.float32)
    arrays = {}
    for name, idx in splits.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[idx], y[idx]
    return arrays, meta


def prepare(
    spec: DatasetSpec, raw_dir: Path, split: dict[str, Any], data: dict[str, Any], group: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split and preprocess one dataset's raw file, the way its spec reads and featurizes it.

    `group` is the dataset's params.yaml group, which errors name; the spec's
    name when None (a group named after its data type).

    Returns:
        The arrays `x_<split>` and `y_<split>` for train, val and test, and a
        metadata record (the data type `kind` and its `task`, class names,
        the chance rate `chance_accuracy`, input shape, preprocessing, split
        sizes, and what else the spec records: text datasets carry their
        vocabulary under `meta["vocabulary"]`).

    A source with its own test set (the spec's `official_test`) keeps it as
    the test split (`official_split_indices`); any other is split three ways
    (`split_indices`).

    Raises:
        DataSourceError: when a class has too few rows for the split shares
            (checked before splitting).
    """
    raw_file = raw_dir / spec.raw_file
    features, labels = spec.read_raw(raw_file)
    y, classes = encode_labels(labels)
    official = spec.official_test(raw_file) if spec.official_test is not None else None
    param = f"{group or spec.name}.data.source"
    if official is None:
        check_class_sizes(y, classes, split, param, data["source"])
        splits = split_indices(y, split["val_size"], split["test_size"], split["seed"])
    else:
        check_official_class_sizes(y, official, classes, split, param, data["source"])
        splits = official_split_indices(y, official, split["val_size"], split["seed"])

    meta: dict[str, Any] = {
        "kind": spec.name,
        "task": spec.task.name,
        "classes": classes,
        "chance_accuracy": chance_accuracy(y[splits["train"]], y[splits["test"]]),
        "official_test": official is not None,
    }
    labelled = {"labels": y} if spec.featurize_labels else {}
    x, entries = spec.featurize(features, splits, data, **labelled)
    meta.update(entries)
    meta["input_shape"] = list(x.shape[1:])
    meta["splits"] = {
        name: {"rows": len(idx), "classes": np.bincount(y[idx], minlength=len(classes)).tolist()}
        for name, idx in splits.items()
    }
    arrays = {}
    for name, idx in splits.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[idx], y[idx]
    return arrays, meta


# By task name: how a raw file becomes split arrays and their metadata (classes are stratified).
PREPARERS: dict[str, Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]] = {
    tasks.CLASSIFICATION.name: prepare,
    tasks.REGRESSION.name: prepare_regression,
}
