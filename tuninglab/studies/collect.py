"""Read the repository's DVC experiments and turn them into one results table.

`dvc exp show --json` gives the baseline commit and every experiment on it
(run by hand, queued by hand, or queued by a study), with its params, metrics
and queue state. What is not a DVC metric is read from each finished run's
commit with `git show`: its diagnostics (`metrics/<dataset>/details.json`) and
its per-epoch history (`plots/<dataset>/history.csv`). `collect` writes one
row per experiment and dataset, the baseline included, to
`results/experiments.csv`, and the histories to `results/curves.csv`; it never
replaces a results file holding experiments the new one lacks, or one that is
damaged, unless forced.
The experiments are those of HEAD by default, or of any baseline commit whose
experiments DVC still holds (`study collect --rev`).
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.files import DamagedFileError, read_whole_csv, write_text
from tuninglab.lab.params import dataset_groups, kind_of, train_settings
from tuninglab.report.owned import Holding, OverwriteError, holding, replacing
from tuninglab.schema import (
    CURVES_FILE,
    DIVERGED,
    FAILED,
    OK,
    PARAM_GROUPS,
    PER_REPEAT,
    REGRESSION_TEST_METRICS,
    REPEAT_COLUMNS,
    REPEATS_FILE,
    RESULT_METRICS,
    RESULTS_FILE,
    RUNG,
    SUCCESS,
    TEST_METRICS,
    TRAINED_STATUSES,
    TRIAL,
    is_param_column,
    metrics_path,
    plots_path,
)
from tuninglab.studies.spec import SEARCHES, position


def dvc(
    *args: str, cwd: Path = Path(), env: dict[str, str] | None = None, timeout: float | None = None
) -> str:
    """Run a dvc command and return its standard output; raise with its last error line.

    Output goes through temporary files, not pipes: `dvc queue start` leaves
    workers running that would hold a pipe open until they exit. With
    `timeout`, a command still running after that many seconds is killed and
    `subprocess.TimeoutExpired` raised.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        command = ["dvc", *args]
        code = subprocess.run(command, cwd=cwd, stdout=out, stderr=err, env=env, timeout=timeout).returncode
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        lines = (stderr or stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"dvc {' '.join(args)} failed: {lines[-1]}")
    return stdout


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested params tree as `{dotted key: value}`, the way `dvc exp show` names its columns."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _record(rev: dict[str, Any], state: str, log: str | None) -> dict[str, Any]:
    data = rev.get("data") or {}
    return {
        "name": rev.get("name") or rev["rev"][:7],
        "rev": rev["rev"],
        "state": state,
        "log": log,
        "params": data.get("params", {}).get("params.yaml", {}).get("data", {}),
        "metrics": {path: (entry or {}).get("data", {}) for path, entry in data.get("metrics", {}).items()},
    }


def read(
    cwd: Path = Path(), timeout: float | None = None, rev: str = "HEAD"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The baseline commit `rev` and its experiments, from `dvc exp show --json --rev REV`.

    Each record has the name, rev, state (`schema.SUCCESS`, `FAILED`, `QUEUED`,
    `RUNNING`), the queue log path when there is one, the params tree and the
    metrics by file. `timeout` is passed to `dvc`.
    """
    revisions = json.loads(dvc("exp", "show", "--json", "--rev", rev, cwd=cwd, timeout=timeout))
    head = next(r for r in revisions if r["rev"] != "workspace")
    baseline = _record(head, SUCCESS, None)
    experiments = []
    for experiment in head.get("experiments") or []:
        executor = experiment.get("executor") or {}
        log = (executor.get("local") or {}).get("log")
        experiments.append(_record(experiment["revs"][0], executor.get("state") or SUCCESS, log))
    return baseline, experiments


def last_error(log: str | None) -> str:
    """The line of a failed run's log that says why: the stage's own `error:` line when there is one."""
    if not log or not Path(log).is_file():
        return "failed (no log)"
    lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("error:")]
    return (ours or lines or ["failed"])[-1]


def changes(params: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The params whose values differ from the baseline's, by dotted key."""
    base = flatten(baseline)
    return {key: value for key, value in flatten(params).items() if base.get(key) != value}


def study_of(name: str, studies: dict[str, str]) -> str:
    """`ofat-lr-0.1` belongs to study `ofat`; an experiment outside every study is `manual`."""
    prefix = name.split("-", 1)[0]
    return prefix if prefix in studies else "manual"


def _dataset_params(params: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Every param as one dataset used it, by `schema.PARAM_GROUPS`: `split.*`, `train.*`, `data.*`.

    `train.*` are its training settings, the shared `train` updated by `<dataset>.train`; `data.*`
    its `<dataset>.data`.
    """
    if not params:
        return {}
    groups = {
        "split": params["split"],
        "train": train_settings(params, dataset),
        "data": params[dataset]["data"],
    }
    return {f"{group}.{key}": value for group in PARAM_GROUPS for key, value in groups[group].items()}


def trained_datasets(record: dict[str, Any]) -> list[str]:
    """The dataset groups of the record's params (`cifar` beside `image`) whose test metrics it has.

    A commit from before a dataset was added (`study collect --rev`) has none of its files, and
    gets no rows for it; a record without params is read against the registered data types.
    """
    groups = dataset_groups(record["params"]) if record.get("params") else dataset_names()
    return [d for d in groups if metrics_path(d, "test").as_posix() in record["metrics"]]


def _dataset_metrics(record: dict[str, Any], dataset: str) -> dict[str, Any]:
    """One dataset's metrics (nested under its name in each metrics file) and its details.

    In `schema.RESULT_METRICS` order: a classifier's test metrics and their half-widths, the
    repeats, how training went, the details, then a regression's test metrics and half-widths.
    Those of the other task stay empty.
    """
    metrics = record["metrics"]
    test = metrics.get(metrics_path(dataset, "test").as_posix(), {}).get(dataset, {})
    train = metrics.get(metrics_path(dataset, "train").as_posix(), {}).get(dataset, {})
    details = (record.get("details") or {}).get(dataset, {})
    found = test | train | details
    return {k: found.get(k) for k in RESULT_METRICS}


def rows(
    baseline: dict[str, Any], experiments: list[dict[str, Any]], studies: dict[str, str]
) -> pd.DataFrame:
    """One row per experiment and dataset, the baseline first: who, status, every param, every metric.

    The params are in `schema.PARAM_GROUPS` order, the metrics in `schema.RESULT_METRICS` order.

    `studies` maps each study of `studies.yaml` to its strategy (`ofat`, `grid`,
    `random`): the column `study_kind`, empty for the baseline and manual runs.
    A search study's experiments (`spec.SEARCHES`) name their `trial` (a tpe
    study's Optuna trial number, a halving study's configuration) and `rung`
    (halving); both columns are empty for other experiments.
    The column `kind` is the dataset's data type (`image` for a group `cifar`
    whose `data.kind` is image), by which the report reads its metrics.
    A record's `details` (dataset -> its `details.json`, added by
    `with_details`) fill the diagnostic columns. The datasets are those the
    baseline commit trained (`trained_datasets`). A failed, queued or running
    experiment has no metrics of its own (its metric files are still the
    baseline's), so its metric cells stay empty.
    """
    table = []
    for record in [baseline, *experiments]:
        is_baseline = record is baseline
        study = "baseline" if is_baseline else study_of(record["name"], studies)
        changed = {} if is_baseline else changes(record["params"], baseline["params"])
        error = last_error(record["log"]) if record["state"] == FAILED else ""
        trial, rung = position(record["name"]) if studies.get(study) in SEARCHES else (None, None)
        for dataset in trained_datasets(baseline):
            metrics = _dataset_metrics(record, dataset)
            if record["state"] != SUCCESS:
                status, metrics = record["state"], dict.fromkeys(metrics)
            else:
                status = DIVERGED if metrics["diverged"] else OK
            table.append(
                {
                    "experiment": "baseline" if is_baseline else record["name"],
                    "study": study,
                    "study_kind": studies.get(study, ""),
                    TRIAL: trial,
                    RUNG: rung,
                    "hyperparameter": ",".join(changed),
                    "value": ",".join(
                        json.dumps(v) if isinstance(v, list) else str(v) for v in changed.values()
                    ),
                    "baseline_commit": baseline["rev"],
                    "rev": record["rev"],
                    "dataset": dataset,
                    "kind": kind_of(baseline["params"], dataset) if baseline.get("params") else dataset,
                    "status": status,
                    "error": error,
                    **_dataset_params(record["params"], dataset),
                    **metrics,
                }
            )
    frame = pd.DataFrame(table)
    frame[[TRIAL, RUNG]] = frame[[TRIAL, RUNG]].astype("Int64")
    params = sorted(filter(is_param_column, frame), key=lambda c: PARAM_GROUPS.index(c.split(".")[0]))
    who = [c for c in frame if c not in params and c not in RESULT_METRICS]
    frame = frame[[*who, *params, *RESULT_METRICS]]
    for column in frame:
        if frame[column].map(lambda v: isinstance(v, list)).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    return frame


def _show(record_name: str, rev: str, path: Path, cwd: Path) -> str:
    """A file of a run's commit (`git show <rev>:<path>`); raise with one line when it is not there."""
    shown = subprocess.run(
        ["git", "show", f"{rev}:{path.as_posix()}"], cwd=cwd, capture_output=True, text=True
    )
    if shown.returncode != 0:
        raise RuntimeError(
            f"{record_name} (commit {rev[:7]}) has no {path.as_posix()}: it was run by an older version "
            f"of the lab; run it again, or remove it (dvc exp remove {record_name})"
        )
    return shown.stdout


def with_details(records: list[dict[str, Any]], cwd: Path = Path()) -> list[dict[str, Any]]:
    """The records, each finished one with `details`: dataset -> its `details.json`, from its commit.

    `details.json` is not a DVC metric, so `dvc exp show` does not carry it.

    Raises:
        RuntimeError: a finished run's commit lacks a details file.
    """

    def details(record: dict[str, Any]) -> dict[str, Any]:
        shown = {
            d: _show(record["name"], record["rev"], metrics_path(d, "details"), cwd)
            for d in trained_datasets(record)
        }
        return {dataset: json.loads(text) for dataset, text in shown.items()}

    return [
        record | {"details": details(record)} if record["state"] == SUCCESS else record for record in records
    ]


def curves(frame: pd.DataFrame, cwd: Path = Path()) -> pd.DataFrame:
    """The per-epoch history of every finished run of `frame`, read from its commit.

    One row per experiment, dataset and epoch, with the columns of the
    trainer's history (train/val loss and accuracy, learning rate, epoch time).

    Raises:
        RuntimeError: a finished run's commit lacks a history file.
    """
    finished = frame[frame["status"].isin(TRAINED_STATUSES)]
    tables = []
    for run in finished.itertuples():
        shown = _show(run.experiment, run.rev, plots_path(run.dataset, "history"), cwd)
        history = pd.read_csv(io.StringIO(shown))
        tables.append(history.assign(experiment=run.experiment, dataset=run.dataset))
    columns = ["experiment", "dataset"]
    if not tables:
        return pd.DataFrame(columns=columns)
    joined = pd.concat(tables, ignore_index=True)
    return joined[columns + [c for c in joined if c not in columns]]


def repeat_rows(frame: pd.DataFrame, records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per repeat of every finished run of `frame` (`schema.REPEATS_FILE`'s columns).

    The repeats are those of each run's `details.json` (`schema.PER_REPEAT`). A run from before
    repeats were recorded is one repeat, with its metrics and its `train.seed`.
    """
    details = {record["name"]: record.get("details") or {} for record in records}
    metrics = (*TEST_METRICS, *REGRESSION_TEST_METRICS)
    table = []
    for run in frame[frame["status"].isin(TRAINED_STATUSES)].to_dict("records"):
        found = details.get(run["experiment"], {}).get(run["dataset"], {})
        single = {"repeat": 0, "seed": run.get("train.seed"), **run}
        for repeat in found.get(PER_REPEAT) or [single]:
            table.append(
                {"experiment": run["experiment"], "dataset": run["dataset"]}
                | {k: repeat.get(k) for k in (*REPEAT_COLUMNS, *metrics)}
            )
    return pd.DataFrame(table, columns=["experiment", "dataset", *REPEAT_COLUMNS, *metrics])


def previous(path: Path, force: bool) -> tuple[Holding | None, str]:
    """What the results file at `path` holds, and why it was set aside when it cannot be trusted.

    Returns (None, "") when there is no file or it is empty. A file that is
    damaged (cut short, corrupted: `files.read_whole_csv`) or cannot be read as
    a results table is set aside whole with `force`: (None, what is wrong with it).

    Raises:
        OverwriteError: the file is damaged or cannot be read, and not `force`; the message says
            what is wrong (naming the line) and how to go on.
    """
    if not path.is_file():
        return None, ""
    try:
        frame = read_whole_csv(path, usecols=["experiment", "baseline_commit"])
    except pd.errors.EmptyDataError:
        return None, ""
    except DamagedFileError as err:
        what = str(err)
        advice = (
            f"restore it with git (git restore {path}), or pass --force to rebuild it from DVC's experiments"
        )
    except ValueError as err:  # without the columns of a results table
        what = f"{path} cannot be read ({str(err).splitlines()[0]})"
        advice = "so what it holds is unknown; pass --force to replace it"
    else:
        return (holding(frame) if not frame.empty else None), ""
    if not force:
        raise OverwriteError(f"{what}; {advice}")
    return None, what


def collect(
    studies: dict[str, str],
    out: Path = RESULTS_FILE,
    curves_out: Path = CURVES_FILE,
    repeats_out: Path = REPEATS_FILE,
    cwd: Path = Path(),
    force: bool = False,
    rev: str = "HEAD",
) -> tuple[pd.DataFrame, str]:
    """Write every experiment of the baseline commit `rev` to `out`, their curves to `curves_out`.

    Every repeat of every finished run goes to `repeats_out`.

    `studies` maps each study to its strategy. An existing `out` is replaced only
    when the new table keeps all of its experiments (those of another baseline
    commit count as lost), or with `force`. `rev` is any git revision with
    experiments (default HEAD): an earlier commit's study is collected again
    by the current code.

    Returns:
        The experiments table, and what it replaced ("" when `out` did not exist).

    Raises:
        OverwriteError: experiments of the existing `out` would be lost, or it is damaged or cannot
            be read; nothing is written then.
        RuntimeError: dvc failed, or a finished run's commit lacks one of its files.
    """
    old, set_aside = previous(cwd / out, force)  # a damaged file is refused before DVC is asked
    baseline, experiments = read(cwd, rev=rev)
    baseline, *experiments = with_details([baseline, *experiments], cwd)
    frame = rows(baseline, experiments, studies)
    new = holding(frame)
    note = (
        f"{set_aside}; replaced it with the {len(new.experiments)} experiments DVC holds"
        if set_aside
        else replacing(out, old, new, force)
    )
    named = [
        {**record, "name": "baseline"} if record is baseline else record
        for record in [baseline, *experiments]
    ]
    write_text(cwd / repeats_out, repeat_rows(frame, named).to_csv(index=False))
    write_text(cwd / curves_out, curves(frame, cwd).to_csv(index=False))
    write_text(cwd / out, frame.to_csv(index=False))
    return frame, note
