"""Read the repository's DVC experiments and turn them into one results table.

Everything comes from `dvc exp show --json`: the baseline commit, and every
experiment on it (run by hand, queued by hand, or queued by a study), with its
params, metrics and queue state. `collect` writes one row per experiment and
dataset, the baseline included, to `results/experiments.csv`, and each of
those runs' per-epoch history (`plots/<dataset>/history.csv`, committed with
every experiment) to `results/curves.csv`.
"""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from tuninglab.files import write_text
from tuninglab.params import DATASETS, train_config

RESULTS_FILE = Path("results/experiments.csv")
CURVES_FILE = Path("results/curves.csv")
TEST_METRICS = ["test_accuracy", "test_loss", "macro_f1"]
TRAIN_METRICS = [
    "best_val_accuracy",
    "best_val_loss",
    "best_epoch",
    "epochs_run",
    "stopped_early",
    "train_time_s",
    "diverged",
    "diverged_epoch",
    "diverged_loss",
    "n_params",
    "threads",
]


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


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat |= _flatten(value, f"{prefix}{key}.")
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


def read(cwd: Path = Path(), timeout: float | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The baseline commit and its experiments, from `dvc exp show --json`.

    Each record has the name, rev, state (`success`, `failed`, `queued`,
    `running`), the queue log path when there is one, the params tree and the
    metrics by file. `timeout` is passed to `dvc`.
    """
    revisions = json.loads(dvc("exp", "show", "--json", cwd=cwd, timeout=timeout))
    head = next(r for r in revisions if r["rev"] != "workspace")
    baseline = _record(head, "success", None)
    experiments = []
    for experiment in head.get("experiments") or []:
        executor = experiment.get("executor") or {}
        log = (executor.get("local") or {}).get("log")
        experiments.append(_record(experiment["revs"][0], executor.get("state") or "success", log))
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
    base = _flatten(baseline)
    return {key: value for key, value in _flatten(params).items() if base.get(key) != value}


def study_of(name: str, studies: list[str]) -> str:
    """`ofat-lr-0.1` belongs to study `ofat`; an experiment outside every study is `manual`."""
    prefix = name.split("-", 1)[0]
    return prefix if prefix in studies else "manual"


def _dataset_params(params: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Every param as one dataset used it: split, its data settings, its resolved training settings."""
    if not params:
        return {}
    return (
        {f"split.{k}": v for k, v in params["split"].items()}
        | {f"data.{k}": v for k, v in params[dataset]["data"].items()}
        | train_config(params, dataset)
    )


def _dataset_metrics(metrics: dict[str, Any], dataset: str) -> dict[str, Any]:
    test = metrics.get(f"metrics/{dataset}/test.json", {})
    train = metrics.get(f"metrics/{dataset}/train.json", {})
    return {k: test.get(k) for k in TEST_METRICS} | {k: train.get(k) for k in TRAIN_METRICS}


def rows(baseline: dict[str, Any], experiments: list[dict[str, Any]], studies: list[str]) -> pd.DataFrame:
    """One row per experiment and dataset, the baseline first: who, status, every param, every metric.

    A failed, queued or running experiment has no metrics of its own (its
    metric files are still the baseline's), so its metric cells stay empty.
    """
    table = []
    for record in [baseline, *experiments]:
        is_baseline = record is baseline
        changed = {} if is_baseline else changes(record["params"], baseline["params"])
        error = last_error(record["log"]) if record["state"] == "failed" else ""
        for dataset in DATASETS:
            metrics = _dataset_metrics(record["metrics"], dataset)
            if record["state"] != "success":
                status, metrics = record["state"], dict.fromkeys(metrics)
            else:
                status = "diverged" if metrics["diverged"] else "ok"
            table.append(
                {
                    "experiment": "baseline" if is_baseline else record["name"],
                    "study": "baseline" if is_baseline else study_of(record["name"], studies),
                    "hyperparameter": ",".join(changed),
                    "value": ",".join(
                        json.dumps(v) if isinstance(v, list) else str(v) for v in changed.values()
                    ),
                    "baseline_commit": baseline["rev"],
                    "rev": record["rev"],
                    "dataset": dataset,
                    "status": status,
                    "error": error,
                    **_dataset_params(record["params"], dataset),
                    **metrics,
                }
            )
    frame = pd.DataFrame(table)
    metric_columns = TEST_METRICS + TRAIN_METRICS
    frame = frame[[c for c in frame if c not in metric_columns] + metric_columns]  # params, then metrics
    for column in frame:
        if frame[column].map(lambda v: isinstance(v, list)).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    return frame


def curves(frame: pd.DataFrame, cwd: Path = Path()) -> pd.DataFrame:
    """The per-epoch history of every finished run of `frame`, read from its commit.

    One row per experiment, dataset and epoch, with the columns of the
    trainer's history (train/val loss and accuracy, learning rate, epoch time).
    """
    finished = frame[frame["status"].isin(["ok", "diverged"])]
    tables = []
    for run in finished.itertuples():
        shown = subprocess.run(
            ["git", "show", f"{run.rev}:plots/{run.dataset}/history.csv"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        history = pd.read_csv(io.StringIO(shown.stdout))
        tables.append(history.assign(experiment=run.experiment, dataset=run.dataset))
    columns = ["experiment", "dataset"]
    if not tables:
        return pd.DataFrame(columns=columns)
    joined = pd.concat(tables, ignore_index=True)
    return joined[columns + [c for c in joined if c not in columns]]


def collect(
    studies: list[str], out: Path = RESULTS_FILE, curves_out: Path = CURVES_FILE, cwd: Path = Path()
) -> pd.DataFrame:
    """Write every experiment of the current baseline commit to `out` and their curves to `curves_out`.

    Returns the experiments table.
    """
    baseline, experiments = read(cwd)
    frame = rows(baseline, experiments, studies)
    write_text(cwd / curves_out, curves(frame, cwd).to_csv(index=False))
    write_text(cwd / out, frame.to_csv(index=False))
    return frame
