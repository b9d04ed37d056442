"""The regression data type: a table of features and a numeric target (house prices).

Sources: the Ames housing table (`sources`), or a user's CSV in data/local/regression/.
"""

from __future__ import annotations

from tuninglab import tasks
from tuninglab.lab import prepare, sources
from tuninglab.lab.datasets import DatasetSpec, LocalCsv, register
from tuninglab.lab.kinds.tabular import table_input_size
from tuninglab.lab.rules import BOOL, int_at_least

register(
    DatasetSpec(
        name="regression",
        sources={"ames": sources.fetch_ames},
        raw_file="houses.csv",
        read_raw=prepare.read_target_table,
        featurize=prepare.prepare_mixed_table,
        families=("mlp",),
        input_size=table_input_size,
        classes=2,
        data_settings={"log_target": BOOL, "min_level_rows": int_at_least(1)},
        local_csv=LocalCsv("a numeric target and feature", sources.fetch_csv_houses),
        task=tasks.REGRESSION,
        losses=("mse", "gaussian_nll"),
        empty_row="target",
    )
)
