"""Studies end to end on DVC's queue in a temporary repo, and the results table from synthetic runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import commit_all, make_lab_repo, sh
from tuninglab import experiments, runner
from tuninglab.params import DATASETS
from tuninglab.studies import StudyError


def record(name, state="success", params=None, metrics=None, log=None):
    return {
        "name": name,
        "rev": f"{name}-rev",
        "state": state,
        "log": log,
        "params": params or {},
        "metrics": metrics or {},
    }


def lab_params(lr=0.005):
    return {
        "split": {"seed": 1, "val_size": 0.1, "test_size": 0.2},
        "train": {"lr": lr, "optimizer": "adam", "hidden": [8]},
        **{d: {"data": {"normalize": True}, "train": {}} for d in DATASETS},
    }


def lab_metrics(accuracy, diverged=False):
    metrics = {}
    for dataset in DATASETS:
        metrics[f"metrics/{dataset}/test.json"] = {
            "test_accuracy": accuracy,
            "test_loss": 0.3,
            "macro_f1": 0.8,
        }
        metrics[f"metrics/{dataset}/train.json"] = {
            "diverged": diverged,
            "best_epoch": 3,
            "train_time_s": 1.5,
        }
    return metrics


def test_rows_hold_every_experiment_and_dataset_with_status(tmp_path):
    log = tmp_path / "run.out"
    log.write_text(
        "> python -m stages.download text\nerror: text.data.source: x.csv does not exist\n"
        "ERROR: failed to reproduce 'download@text'\n"
    )
    baseline = record("main", params=lab_params(), metrics=lab_metrics(0.9))
    runs = [
        record("ofat-lr-0.1", params=lab_params(0.1), metrics=lab_metrics(0.3, diverged=True)),
        record("ofat-lr-0.01", params=lab_params(0.01), metrics=lab_metrics(0.92)),
        record("by-hand", state="failed", params=lab_params(0.2), metrics=lab_metrics(0.9), log=str(log)),
    ]
    table = experiments.rows(baseline, runs, studies=["ofat", "grid"])
    assert len(table) == 4 * len(DATASETS)
    by = table.set_index(["experiment", "dataset"])
    assert by.loc[("baseline", "image"), "study"] == "baseline"
    assert by.loc[("baseline", "image"), "test_accuracy"] == 0.9
    assert by.loc[("ofat-lr-0.1", "text"), "status"] == "diverged"
    assert by.loc[("ofat-lr-0.1", "text"), "hyperparameter"] == "train.lr"
    assert by.loc[("ofat-lr-0.1", "text"), "value"] == "0.1"
    assert by.loc[("ofat-lr-0.01", "tabular"), "status"] == "ok"
    assert by.loc[("ofat-lr-0.01", "tabular"), "lr"] == 0.01
    failed = by.loc[("by-hand", "tabular")]
    assert failed["study"] == "manual" and failed["status"] == "failed"
    assert failed["error"] == "error: text.data.source: x.csv does not exist"
    assert pd.isna(failed["test_accuracy"])  # a failed run's files are not its results
    assert table.columns[-len(experiments.TRAIN_METRICS) :].tolist() == experiments.TRAIN_METRICS
    assert by.loc[("ofat-lr-0.01", "image"), "hidden"] == "[8]"


def test_bad_study_is_refused_before_anything_is_queued(tmp_path, monkeypatch, default_params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    (tmp_path / "studies.yaml").write_text(
        yaml.safe_dump({"s": {"kind": "ofat", "params": {"train.lrr": [1]}}})
    )
    monkeypatch.setattr(experiments, "dvc", lambda *a, **k: pytest.fail("dvc must not be called"))
    with pytest.raises(StudyError, match=r"train\.lrr: unknown parameter"):
        runner.run("s", jobs=2, cwd=tmp_path)


@pytest.mark.slow
def test_study_runs_on_the_queue_collects_and_resumes(tmp_path):
    repo = make_lab_repo(tmp_path)
    (repo / "studies.yaml").write_text(
        yaml.safe_dump(
            {"tiny": {"kind": "ofat", "params": {"train.lr": [0.05], "text.data.source": ["missing.csv"]}}}
        )
    )
    sh(repo, "dvc", "repro")
    commit_all(repo, "baseline")
    sh(repo, "dvc", "exp", "run", "--queue", "-n", "by-hand", "-S", "train.lr=0.02")

    study = [sys.executable, "-m", "tuninglab", "study", "run", "tiny", "-j", "2"]
    first = sh(repo, *study)
    assert "2 experiments, 0 already on this commit, 2 queued" in first.stdout
    table = pd.read_csv(repo / "results" / "experiments.csv")
    assert sorted(table["experiment"].unique()) == [
        "baseline",
        "by-hand",
        "tiny-lr-0.05",
        "tiny-source-missing.csv",
    ]
    assert len(table) == 4 * len(DATASETS)
    by = table.set_index(["experiment", "dataset"])
    assert by.loc[("tiny-lr-0.05", "image"), "lr"] == 0.05
    assert by.loc[("tiny-lr-0.05", "image"), "status"] in {"ok", "diverged"}
    assert by.loc[("tiny-lr-0.05", "image"), "hyperparameter"] == "train.lr"
    assert by.loc[("by-hand", "tabular"), "study"] == "manual"  # queued by hand, run by the study's workers
    assert by.loc[("by-hand", "tabular"), "status"] == "ok"
    crashed = by.loc[("tiny-source-missing.csv", "text")]
    assert crashed["status"] == "failed" and "missing.csv does not exist" in crashed["error"]
    for column in [
        "baseline_commit",
        "epochs",
        "batch_size",
        "optimizer",
        "test_accuracy",
        "macro_f1",
        "best_val_accuracy",
        "best_epoch",
        "epochs_run",
        "train_time_s",
        "diverged",
    ]:
        assert column in table.columns
    assert table["baseline_commit"].nunique() == 1
    curves = pd.read_csv(repo / "results" / "curves.csv")
    finished = table[table["status"].isin(["ok", "diverged"])]
    ran = set(curves[["experiment", "dataset"]].itertuples(index=False, name=None))
    assert ran <= set(finished[["experiment", "dataset"]].itertuples(index=False, name=None))
    by_hand = curves[(curves["experiment"] == "by-hand") & (curves["dataset"] == "tabular")]
    assert list(by_hand["epoch"]) == [1, 2] and set(by_hand["lr"]) == {0.02}  # read from that run's commit

    written = sh(repo, sys.executable, "-m", "tuninglab", "report")
    assert "reports/summary.md" in written.stdout
    summary = (repo / "reports" / "summary.md").read_text()
    assert "### lr" in summary and "`tiny-lr-0.05` on tabular: with lr=0.05: test accuracy" in summary
    assert "`tiny-source-missing.csv` failed" in summary

    again = sh(repo, *study)
    assert "2 experiments, 2 already on this commit, 0 queued" in again.stdout
    assert sh(repo, "dvc", "exp", "ls", "--name-only").stdout.split().count("tiny-lr-0.05") == 1


def test_environment_for_workers_splits_the_cores(monkeypatch, tmp_path):
    calls = []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(experiments, "dvc", lambda *args, **kw: calls.append((args, kw["env"])))
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    runner.start_workers(2, Path(tmp_path))
    ((args, env),) = calls
    assert args == ("queue", "start", "-j", "2") and env["OMP_NUM_THREADS"] == "2"


def test_resume_refuses_an_experiment_whose_study_changed_since(monkeypatch, tmp_path, default_params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    (tmp_path / "studies.yaml").write_text(
        yaml.safe_dump(
            {"r": {"kind": "random", "trials": 1, "seed": 0, "params": {"train.lr": {"choice": [0.5]}}}}
        )
    )
    ran_before = record("r-1", params={**default_params, "train": {**default_params["train"], "lr": 0.2}})
    monkeypatch.setattr(experiments, "read", lambda cwd: (record("main"), [ran_before]))
    monkeypatch.setattr(experiments, "dvc", lambda *a, **k: pytest.fail("dvc must not be called"))
    with pytest.raises(StudyError, match="experiment r-1 exists on this commit with other settings"):
        runner.run("r", jobs=1, cwd=tmp_path)


def test_wait_survives_a_hung_or_failing_exp_show_and_follows_until_done(monkeypatch):
    answers = iter(
        [
            subprocess.TimeoutExpired("dvc exp show", 60),
            [record("s-1", state="running"), record("s-2", state="queued")],
            RuntimeError("dvc exp show --json failed: ERROR: directory '.dvc/tmp/exps/t/.dvc' is gone"),
            [record("s-1", state="success"), record("s-2", state="failed")],
        ]
    )

    def read(cwd, timeout):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return record("main"), answer

    monkeypatch.setattr(experiments, "read", read)
    counts = runner.wait({"s-1", "s-2"}, jobs=1, poll=0)
    assert counts["success"] == 1 and counts["failed"] == 1
    assert next(answers, None) is None


def test_wait_gives_up_when_exp_show_keeps_failing(monkeypatch):
    looks = []

    def read(cwd, timeout):
        looks.append(timeout)
        raise RuntimeError("dvc exp show --json failed: ERROR: not a git repository")

    monkeypatch.setattr(experiments, "read", read)
    with pytest.raises(RuntimeError, match=r"failed 5 times in a row; last: .*not a git repository"):
        runner.wait({"s-1"}, jobs=1, poll=0)
    assert len(looks) == runner.SHOW_TRIES
