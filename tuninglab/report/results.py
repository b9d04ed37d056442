"""Read a collected study back for the report: `results/experiments.csv`, `results/curves.csv` and
`results/repeats.csv`.

They are written by `python -m tuninglab study collect` (and at the end
of `study run`). `load` checks them before any analysis starts and says what
to run when one is missing, empty, damaged or from an older version. It also marks
which runs can be set against the baseline: a run on another data source is
another dataset, and a run computed otherwise than the baseline (another number
of CPU threads, other CPU kernels) is not compared with it: results repeat only
for the same thread count and kernels. `load_repeats` reads each run's repeats
(one row per seed), what the report's intervals and comparisons are made of.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.files import DamagedFileError, read_whole_csv
from tuninglab.schema import (
    COMPUTED_WITH,
    CURVES_FILE,
    HISTORY_COLUMNS,
    REGRESSION_TEST_METRICS,
    REPEAT_COLUMNS,
    REPEATS_FILE,
    RESULT_METRICS,
    RESULTS_FILE,
    TEST_METRICS,
    TRAINED_STATUSES,
    is_param_column,
)

RESULTS_DIR = RESULTS_FILE.parent
RUN_COLUMNS = ["experiment", "study", "study_kind", "hyperparameter", "value", "dataset", "status", "error"]
CURVE_COLUMNS = ["experiment", "dataset", *HISTORY_COLUMNS]
# Results collected before the regression data type (or before balanced accuracy) lack those metric
# columns; they load as empty.
LATER_METRICS = (*REGRESSION_TEST_METRICS, "balanced_accuracy")
REQUIRED_METRICS = [m for m in RESULT_METRICS if m not in LATER_METRICS]
SOURCE = "data.source"  # a run on another data source is another dataset
KIND = "kind"  # a run's data type (`image` for a group `cifar`), by which the report reads its metrics
KIND_PARAM = "data.kind"  # in results collected before the `kind` column, a group not named after its type
SEED = "train.seed"  # the seed is not a hyperparameter: runs that change only it are other repeats
# results/repeats.csv: what every file of it has; a test metric it lacks (no regression ran) loads as empty
REPEAT_KEY_COLUMNS = ["experiment", "dataset", "repeat", "seed"]
REPEAT_METRICS = [*TEST_METRICS, *REGRESSION_TEST_METRICS]
COLLECT = "python -m tuninglab study collect"
RUN_STUDY = "python -m tuninglab study run ofat -j 2"


class ReportError(ValueError):
    """Results the report cannot be made from; the message says what to run first."""


def _read(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise ReportError(f"{path} not found: run a study first ({RUN_STUDY}), or {COLLECT} after one")
    try:
        frame = read_whole_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except DamagedFileError as err:
        raise ReportError(
            f"{err}; restore it with git (git restore {path}), or run "
            f"{COLLECT} --force to write it again from DVC's experiments"
        ) from None
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

    The runs table gains four columns:

    - `changed`: the param columns (`train.lr`, `data.normalize`) that differ
      from the baseline's for that dataset, comma-separated (empty for the
      baseline, and for an experiment whose settings do not apply to that
      dataset);
    - `other_source`: the run's data source where it is not the baseline's
      (then it is another dataset), else empty;
    - `not_compared`: for a finished run computed otherwise than the baseline
      (another number of CPU threads, other CPU kernels: `computed_differently`),
      how, else empty;
    - `same_as`: for a finished run with exactly the settings of an earlier
      one on that dataset (the baseline first, then one-at-a-time studies),
      that run's name, else empty.

    Results collected before the regression data type have no regression
    metric columns, nor those before balanced accuracy its column: they are
    added, empty.

    Raises:
        ReportError: a file is missing, empty, lacks columns (one written before the params
            kept their group prefix lacks `train.seed`), has no baseline, or holds a dataset
            this lab does not know (a dataset group's type is its `data.kind`, else its name).
    """
    runs = _read(directory / RESULTS_FILE.name, [*RUN_COLUMNS, SOURCE, SEED, *REQUIRED_METRICS])
    if KIND not in runs:
        runs.insert(runs.columns.get_loc("dataset") + 1, KIND, kinds_of_older(runs))
    curves = _read(directory / CURVES_FILE.name, CURVE_COLUMNS)
    if not (runs["experiment"] == "baseline").any():
        raise ReportError(
            f"{directory / RESULTS_FILE.name} has no baseline rows: run {COLLECT} to write it again"
        )
    unknown = sorted(set(runs[KIND]) - set(dataset_names()))
    if unknown:
        raise ReportError(
            f"{directory / RESULTS_FILE.name} holds the dataset(s) {', '.join(map(str, unknown))}, which "
            f"this lab does not know (it knows {', '.join(dataset_names())}): report them with the lab "
            "that ran them"
        )
    for name in LATER_METRICS:
        if name not in runs:
            runs[name] = float("nan")
    runs[["error", "study_kind"]] = runs[["error", "study_kind"]].fillna("")
    runs["changed"] = changed_params(runs)
    runs["other_source"] = other_sources(runs)
    runs["not_compared"] = computed_differently(runs)
    runs["same_as"] = same_settings(runs)
    return runs, curves


def load_repeats(directory: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and repeat: `experiment`, `dataset`, `repeat`, `seed`, then the test metrics.

    Read from `repeats.csv` in `directory`. Results collected before repeats
    have none: then every finished run of `runs` (`load`) is one repeat, its
    seed its `train.seed`, its metrics its row's.

    Raises:
        ReportError: repeats.csv is empty, damaged or lacks its key columns.
    """
    path = directory / REPEATS_FILE.name
    return _repeat_columns(_read(path, REPEAT_KEY_COLUMNS) if path.is_file() else single_repeats(runs))


def single_repeats(runs: pd.DataFrame) -> pd.DataFrame:
    """Each finished run as one repeat (`load_repeats`' rows): seed `train.seed`, the run's own metrics."""
    done = finished(runs)
    return _repeat_columns(done.assign(repeat=0, seed=done[SEED]))


def _repeat_columns(repeats: pd.DataFrame) -> pd.DataFrame:
    """`load_repeats`' columns, in order; a test metric the table lacks, empty."""
    repeats = repeats.copy()
    for name in REPEAT_METRICS:
        if name not in repeats:
            repeats[name] = float("nan")
    columns = [
        *REPEAT_KEY_COLUMNS,
        *(c for c in REPEAT_COLUMNS if c in repeats and c not in REPEAT_KEY_COLUMNS),
    ]
    return repeats[[*columns, *REPEAT_METRICS]].reset_index(drop=True)


def kinds_of_older(runs: pd.DataFrame) -> pd.Series:
    """The data type of each row of results collected before the `kind` column: the group's `data.kind`
    where it has one, else the group's own name (a group named after its type)."""
    declared = runs[KIND_PARAM] if KIND_PARAM in runs else pd.Series(index=runs.index, dtype=object)
    return declared.groupby(runs["dataset"]).transform("first").fillna(runs["dataset"])


def kinds(runs: pd.DataFrame) -> dict[str, str]:
    """Each dataset group of the runs table and its data type (`cifar` -> `image`)."""
    return dict(zip(runs["dataset"], runs[KIND], strict=True))


def param_columns(runs: pd.DataFrame) -> list[str]:
    """The param columns of the runs table (`split.*`, `train.*`, `data.*`: `schema.PARAM_GROUPS`)."""
    return [column for column in runs.columns if is_param_column(column)]


def _same(a: object, b: object) -> bool:
    return bool(pd.isna(a) and pd.isna(b)) or a == b


def changed_params(runs: pd.DataFrame) -> pd.Series:
    """Per row, the params that differ from the baseline row of the same dataset, comma-separated."""
    baseline = baselines(runs)
    names = param_columns(runs)
    return runs.apply(
        lambda row: ",".join(c for c in names if not _same(row[c], baseline.at[row["dataset"], c])), axis=1
    )


def other_sources(runs: pd.DataFrame) -> pd.Series:
    """Per row, its data source where it is not the baseline's for the dataset (another dataset), else ""."""
    base = runs["dataset"].map(baselines(runs)[SOURCE])
    differs = [not _same(a, b) for a, b in zip(runs[SOURCE], base, strict=True)]
    return runs[SOURCE].astype(str).where(differs, "")


def computed_value(value: object) -> str:
    """One value of `schema.COMPUTED_WITH` as text: `2` (a thread count), `AVX2`; `unknown` when missing."""
    if pd.isna(value):
        return "unknown"
    return f"{float(value):.0f}" if isinstance(value, int | float) else str(value)


def computed_differently(runs: pd.DataFrame) -> pd.Series:
    """Per finished row, how it was computed where that differs from the baseline, else "".

    Results repeat only for the same thread count and the same CPU kernels
    (`schema.COMPUTED_WITH`): `2 threads vs baseline's 1`, `AVX2 kernels vs baseline's AVX512`.
    """
    base = baselines(runs)
    done = runs["status"].isin(TRAINED_STATUSES)
    notes: dict[object, list[str]] = {index: [] for index in runs.index}
    for column, unit in COMPUTED_WITH.items():
        theirs = runs["dataset"].map(base[column])
        for index, mine, other, finished_run in zip(runs.index, runs[column], theirs, done, strict=True):
            if finished_run and not _same(mine, other):
                notes[index].append(f"{computed_value(mine)} {unit} vs baseline's {computed_value(other)}")
    return pd.Series({index: "; ".join(found) for index, found in notes.items()}, dtype=str)


def same_settings(runs: pd.DataFrame) -> pd.Series:
    """Per finished row: the first run with exactly its settings on its dataset, computed alike, else "".

    "First" puts the baseline first, then runs of one-at-a-time studies, then
    the rest in table order: `optimizer_lr-optimizer-adam-lr-0.01` is the same
    as `ofat-lr-0.01`, not the other way round.
    """
    names = [*param_columns(runs), *COMPUTED_WITH]
    rank = (runs["experiment"] != "baseline").astype(int) * (1 + (runs["study_kind"] != "ofat").astype(int))
    ordered = runs[runs["status"].isin(TRAINED_STATUSES)].assign(rank=rank).sort_values("rank", kind="stable")
    first: dict[tuple[str, ...], str] = {}
    same = pd.Series("", index=runs.index)
    for index, row in ordered.iterrows():
        key = (row["dataset"], *(str(row[name]) for name in names))
        same.at[index] = first.setdefault(key, row["experiment"])
    return same.where(same != runs["experiment"], "")


def baselines(runs: pd.DataFrame) -> pd.DataFrame:
    """The baseline's rows, indexed by dataset."""
    return runs[runs["experiment"] == "baseline"].set_index("dataset")


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained to the end or diverged (not failed, queued or running)."""
    return runs[runs["status"].isin(TRAINED_STATUSES)]


def compared(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs that can be set against the baseline: its data source, computed alike."""
    done = finished(runs)
    return done[(done["other_source"] == "") & (done["not_compared"] == "")]


def dataset_name(run: pd.Series) -> str:
    """The dataset a run trained on: `text`, or `text (source: my.csv)` on another data source."""
    return f"{run['dataset']} (source: {run['other_source']})" if run["other_source"] else run["dataset"]


def history(curves: pd.DataFrame, experiment: str, dataset: str) -> pd.DataFrame:
    """One run's per-epoch curve, in epoch order."""
    chosen = curves[(curves["experiment"] == experiment) & (curves["dataset"] == dataset)]
    return chosen.sort_values("epoch").reset_index(drop=True)


def samples(repeats: pd.DataFrame, experiments: Iterable[str], dataset: str, metric: str) -> pd.Series:
    """One metric of the repeats of some runs on one dataset, indexed by seed (`load_repeats`' rows)."""
    rows = repeats[repeats["experiment"].isin(list(experiments)) & (repeats["dataset"] == dataset)]
    return pd.Series(rows[metric].to_numpy(dtype=float), index=rows["seed"].to_numpy())
