"""`python -m tuninglab show`: the experiments of this commit as one short table.

`dvc exp show` lists every param and metric of every experiment; this table
keeps what a person compares: each experiment's name, the params it changed
against the commit it is based on, each dataset's test accuracy (a
regression's test R^2: its primary metric), the mean over the experiment's
repeats ± the half-width of its 95 % interval, with its difference to that
baseline in points, and its state (queued, running, failed, diverged, no
better than chance). The column header gives each dataset's chance rate
(always predicting the majority class; a regression's R^2 of predicting the
training mean). Everything comes from `dvc.api.exp_show`, i.e. from the same
records `dvc exp show` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dvc.api
import pandas as pd
from dvc.utils.flatten import flatten

from tuninglab.lab import params
from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.params import PARAMS_FILE, dataset_groups, kind_of
from tuninglab.report import format, primary
from tuninglab.report.observations import within_chance
from tuninglab.schema import DIVERGED, OK, SUCCESS, ci_name


def param_keys(tree: dict[str, Any]) -> set[str]:
    """The dotted keys of a params tree, as `dvc exp show` names its param columns (DVC's own `flatten`)."""
    return set(flatten(tree))


def _params(record: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in keys}


def changed(record: dict[str, Any], baseline: dict[str, Any], keys: set[str]) -> str:
    """`key=value` for each param (of `keys`) that differs from the baseline's, or `-`."""
    base = _params(baseline, keys)
    diff = [format.setting(k, v) for k, v in _params(record, keys).items() if base.get(k) != v]
    return ", ".join(diff) or "-"


def _number(record: dict[str, Any], key: str) -> float | None:
    """A metric's value; None when missing or not a number (DVC writes `!` for a metric it cannot read)."""
    value = record.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def diverged(record: dict[str, Any], dataset: str) -> bool:
    """Whether a dataset's run diverged: its `diverged` metric is true.

    `dvc.api.exp_show` hands a JSON true over as the text `True` (`dvc exp show
    --json` as true); 1 counts too.
    """
    return str(record.get(f"{dataset}.diverged")).strip().lower() in {"true", "1", "1.0"}


def other_kernels(record: dict[str, Any], baseline: dict[str, Any], dataset: str) -> str | None:
    """`AVX2 kernels vs baseline's AVX512` when the run used other CPU kernels than the baseline, else None.

    Results repeat only with the same kernels (`cpu_capability` in train.json), so such a run is not
    compared with the baseline.
    """
    key = f"{dataset}.cpu_capability"
    mine, theirs = record.get(key), baseline.get(key)
    if isinstance(mine, str) and isinstance(theirs, str) and mine != theirs:
        return f"{mine} kernels vs baseline's {theirs}"
    return None


REGISTERED = {name: name for name in dataset_names()}  # each registered type's group, named after it


def _score(record: dict[str, Any], baseline: dict[str, Any], dataset: str, kind: str) -> str:
    """The primary metric's cell (of `dataset`, a group of data type `kind`): its mean over the repeats
    ± its 95 % half-width (and the difference to the baseline, for a run computed alike), `diverged` for
    a run that diverged before it had a score, else `-`."""
    key = f"{dataset}.{primary.metric(kind)}"
    score = _number(record, key)
    if score is None:
        return DIVERGED if diverged(record, dataset) else "-"
    half = _number(record, ci_name(key))
    base = _number(baseline, key)
    if base is None or record is baseline or other_kernels(record, baseline, dataset):
        return format.mean_pm(score, half)
    return format.against(score, base, half)


def state(
    record: dict[str, Any],
    datasets: Mapping[str, str] = REGISTERED,
    baseline: dict[str, Any] | None = None,
) -> str:
    """queued / running / failed from DVC's queue; else which datasets diverged, scored at chance, or
    were computed with other CPU kernels than the `baseline` (not compared).

    `datasets` maps each dataset group to its data type.
    """
    if record.get("State") and record["State"].lower() != SUCCESS:
        return record["State"].lower()
    notes = []
    for dataset, kind in datasets.items():
        score = _number(record, f"{dataset}.{primary.metric(kind)}")
        chance = _number(record, f"{dataset}.{primary.chance_metric(kind)}")
        if diverged(record, dataset):
            notes.append(f"{dataset} diverged")
        elif within_chance(score, chance):
            notes.append(f"{dataset} no better than chance")
        kernels = other_kernels(record, baseline, dataset) if baseline is not None else None
        if kernels:
            notes.append(f"{dataset} not compared ({kernels})")
    return "; ".join(notes) or OK


def table(
    records: list[dict[str, Any]], keys: set[str], datasets: Mapping[str, str] = REGISTERED
) -> pd.DataFrame:
    """One row per experiment: the baseline commit first, then its experiments, newest first.

    `keys` are the param columns (dotted keys of params.yaml), `datasets` the
    dataset groups whose columns are shown (`cifar` beside `image`), each with
    its data type (`cifar`: `image`), whose metrics it is read by. The workspace
    is listed only when its params differ from the commit's (a finished
    `dvc exp run` leaves its params there), so that leftovers are seen.
    """
    workspace = next(r for r in records if r["rev"] == "workspace")
    baseline = next(r for r in records if r["typ"] == "baseline" and r["rev"] != "workspace")
    datasets = {d: k for d, k in datasets.items() if f"{d}.{primary.metric(k)}" in baseline}  # dvc.yaml's
    rows = [(f"baseline ({baseline['rev']})", baseline)]
    if _params(workspace, keys) != _params(baseline, keys):
        rows.append(("workspace (not committed)", workspace))
    rows += [(r["Experiment"] or r["rev"], r) for r in records if r["typ"] != "baseline"]
    headers = {
        d: format.dataset_header(d, _number(baseline, f"{d}.{primary.chance_metric(k)}"))
        for d, k in datasets.items()
    }
    return pd.DataFrame(
        [
            {
                "experiment": name,
                **{headers[d]: _score(record, baseline, d, k) for d, k in datasets.items()},
                "state": state(record, datasets, baseline),
                "changed": "-" if record is baseline else changed(record, baseline, keys),
            }
            for name, record in rows
        ]
    )


def render(repo: Path = Path()) -> str:
    """The table as text, with a line on what the numbers are.

    Raises:
        ParamError: the repository's params.yaml is missing or not valid (`params.load`).
    """
    tree = params.load(repo / PARAMS_FILE)
    groups = {group: kind_of(tree, group) for group in dataset_groups(tree)}
    frame = table(dvc.api.exp_show(repo=str(repo)), param_keys(tree), groups)
    note = (
        f"{primary.metric_words(groups.values())} per dataset: mean over the repeats ± 95 % half-width "
        "(difference to the baseline in points)"
    )
    return f"{note}\n{frame.to_string(index=False)}"
