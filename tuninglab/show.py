"""`python -m tuninglab show`: the experiments of this commit as one short table.

`dvc exp show` lists every param and metric of every experiment; this table
keeps what a person compares: each experiment's name, the params it changed
against the commit it is based on, each dataset's test accuracy with its
difference to that baseline in points, and its state (queued, running, failed,
diverged, no better than chance). The column header gives each dataset's
chance rate (always predicting the majority class). Everything comes from
`dvc.api.exp_show`, i.e. from the same records `dvc exp show` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dvc.api
import pandas as pd

from tuninglab.params import DATASETS
from tuninglab.schema import TEST_METRICS, TRAIN_METRICS

# Columns of `dvc.api.exp_show` records that are not params.
_RECORD_FIELDS = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
_METRIC_KEYS = {f"{d}.{m}" for d in DATASETS for m in (*TEST_METRICS, *TRAIN_METRICS)}
CHANCE_MARGIN = 0.005  # within half a point of the chance rate counts as no better than chance


def _params(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _RECORD_FIELDS and k not in _METRIC_KEYS}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def changed(record: dict[str, Any], baseline: dict[str, Any]) -> str:
    """`key=value` for each param that differs from the baseline's, or `-`."""
    base = _params(baseline)
    diff = [f"{k}={_value(v)}" for k, v in _params(record).items() if base.get(k) != v]
    return ", ".join(diff) or "-"


def _number(record: dict[str, Any], key: str) -> float | None:
    """A metric's value; None when missing or not a number (DVC writes `!` for a metric it cannot read)."""
    value = record.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _accuracy(record: dict[str, Any], baseline: dict[str, Any], dataset: str) -> str:
    accuracy = _number(record, f"{dataset}.test_accuracy")
    if accuracy is None:
        return "-"
    base = _number(baseline, f"{dataset}.test_accuracy")
    if base is None or record is baseline:
        return f"{accuracy:.3f}"
    return f"{accuracy:.3f} ({100 * (accuracy - base):+.1f})"


def state(record: dict[str, Any]) -> str:
    """queued / running / failed from DVC's queue; else which datasets diverged or scored at chance."""
    if record.get("State") and record["State"].lower() != "success":
        return record["State"].lower()
    notes = []
    for dataset in DATASETS:
        accuracy = _number(record, f"{dataset}.test_accuracy")
        chance = _number(record, f"{dataset}.chance_accuracy")
        if record.get(f"{dataset}.diverged") is True:
            notes.append(f"{dataset} diverged")
        elif accuracy is not None and chance is not None and accuracy <= chance + CHANCE_MARGIN:
            notes.append(f"{dataset} no better than chance")
    return "; ".join(notes) or "ok"


def table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per experiment: the baseline commit first, then its experiments, newest first.

    The workspace is listed only when its params differ from the commit's (a
    finished `dvc exp run` leaves its params there), so that leftovers are seen.
    """
    workspace = next(r for r in records if r["rev"] == "workspace")
    baseline = next(r for r in records if r["typ"] == "baseline" and r["rev"] != "workspace")
    rows = [(f"baseline ({baseline['rev']})", baseline)]
    if _params(workspace) != _params(baseline):
        rows.append(("workspace (not committed)", workspace))
    rows += [(r["Experiment"] or r["rev"], r) for r in records if r["typ"] != "baseline"]
    headers = {}
    for dataset in DATASETS:
        chance = _number(baseline, f"{dataset}.chance_accuracy")
        headers[dataset] = f"{dataset} (chance {chance:.3f})" if chance is not None else dataset
    return pd.DataFrame(
        [
            {
                "experiment": name,
                **{headers[d]: _accuracy(record, baseline, d) for d in DATASETS},
                "state": state(record),
                "changed": "-" if record is baseline else changed(record, baseline),
            }
            for name, record in rows
        ]
    )


def render(repo: Path = Path()) -> str:
    """The table as text, with a line on what the numbers are."""
    frame = table(dvc.api.exp_show(repo=str(repo)))
    note = "test accuracy per dataset, (difference to the baseline in points)"
    return f"{note}\n{frame.to_string(index=False)}"
