"""The tabular data type: a table of numeric and categorical features and a class label.

Sources: the HPC job table and iris (`sources`), or a user's CSV in data/local/tabular/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuninglab.lab import prepare, sources
from tuninglab.lab.datasets import DatasetSpec, LocalCsv, register
from tuninglab.lab.rules import BOOL, int_at_least

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
        sources={"hpc": sources.fetch_hpc, "iris": sources.fetch_iris},
        raw_file="table.csv",
        read_raw=prepare.read_table,
        featurize=prepare.prepare_tabular,
        families=("mlp",),
        input_size=table_input_size,
        classes=4,
        data_settings={"normalize": BOOL, "min_level_rows": int_at_least(1)},
        local_csv=LocalCsv("a label and feature", sources.fetch_csv_labelled),
        empty_row="label",
    )
)
