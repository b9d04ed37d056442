"""The collector: the results table from the nested metrics and details.json, and never a silent loss."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.conftest import commit_all
from tuninglab.__main__ import main
from tuninglab.lab import datasets
from tuninglab.lab.datasets import dataset_names
from tuninglab.schema import (
    DETAILS,
    PER_REPEAT,
    REGRESSION_TEST_METRICS,
    REPEAT_COLUMNS,
    RESULT_METRICS,
    TEST_METRICS,
    TRAIN_METRICS,
    metrics_path,
)
from tuninglab.studies import collect

STUDIES = {"ofat": "ofat", "grid": "grid"}


VALUES = {
    "test_accuracy": 0.9,
    "macro_f1": 0.8,
    "balanced_accuracy": 0.85,
    "chance_accuracy": 0.4,
    "test_loss": 0.3,
    "best_epoch": 3,
    "epochs_run": 8,
    "diverged": False,
    "train_time_s": 1.5,
    "stopped_early": True,
    "diverged_epoch": None,
    "diverged_loss": None,
    "best_val_loss": 0.2,
    "best_val_accuracy": 0.91,
    "cpu_time_s": 3.5,
    "used_threads": 1,
    "used_device": "cpu",
    "n_params": 1000,
    "cpu_capability": "AVX512",
    "numpy_simd": "AVX512_ICL",
    "torch_version": "2.14.1",
    "numpy_version": "2.4.6",
    "cpu_model": "AMD EPYC",
    "test_accuracy_ci95": 0.02,
    "repeats": 2,
}
REGRESSION_VALUES = dict.fromkeys(REGRESSION_TEST_METRICS) | {"test_r2": 0.88, "chance_r2": -0.01}


def details(threads: int = 1) -> dict[str, Any]:
    """A details.json."""
    return {k: VALUES[k] for k in DETAILS} | {"used_threads": threads}


def record(
    name: str,
    lr: float,
    accuracy: float | None,
    state: str = "success",
    commit: str = "",
    image_train: dict | None = None,
) -> dict:
    """A record as `collect.read` and `with_details` make it, metrics nested under each dataset.

    `image_train` is the image dataset's own training group (`image.train`), empty by default.
    """
    assert set(VALUES) >= {*TEST_METRICS, *TRAIN_METRICS, *DETAILS}, "this test lags the schema"
    values = VALUES | REGRESSION_VALUES | {"test_accuracy": accuracy}
    metrics = {}
    for dataset in dataset_names():
        tests = datasets.get(dataset).task.test_file_keys
        metrics[metrics_path(dataset, "test").as_posix()] = {dataset: {k: values.get(k) for k in tests}}
        metrics[metrics_path(dataset, "train").as_posix()] = {dataset: {k: values[k] for k in TRAIN_METRICS}}
    params = {
        "split": {"seed": 1},
        "train": {"lr": lr, "threads": 1, "hidden": [8], "device": "auto"},
        **{d: {"data": {"source": "x"}, "train": {}} for d in dataset_names()},
    }
    params["image"]["train"] = image_train or {}
    found = {d: details() for d in dataset_names()} if state == "success" else {}
    return {
        "name": name,
        "rev": commit or f"{name}-rev",
        "state": state,
        "log": None,
        "params": params,
        "metrics": metrics,
        "details": found,
    }


def test_rows_read_the_nested_metrics_the_details_and_the_study_kind():
    baseline = record("main", 0.005, 0.9)
    runs = [
        record("ofat-lr-0.1", 0.1, 0.95),
        record("grid-lr-0.2", 0.2, 0.85),
        record("by-hand", 0.3, 0.9, "failed"),
    ]
    table = collect.rows(baseline, runs, STUDIES)
    by = table.set_index(["experiment", "dataset"])
    assert by.loc[("ofat-lr-0.1", "image"), "test_accuracy"] == 0.95
    assert by.loc[("ofat-lr-0.1", "image"), "chance_accuracy"] == 0.4
    assert by.loc[("ofat-lr-0.1", "text"), "cpu_time_s"] == 3.5
    assert by.loc[("ofat-lr-0.1", "text"), "used_threads"] == 1
    assert by.loc[("ofat-lr-0.1", "text"), "train.threads"] == 1  # the setting, beside what ran
    assert by.loc[("ofat-lr-0.1", "text"), "train.device"] == "auto"
    assert by.loc[("ofat-lr-0.1", "text"), "used_device"] == "cpu"
    assert [
        by.loc[(e, "tabular"), "study_kind"] for e in ["baseline", "ofat-lr-0.1", "grid-lr-0.2", "by-hand"]
    ] == [
        "",
        "ofat",
        "grid",
        "",
    ]
    failed = by.loc[("by-hand", "text")]
    assert failed["status"] == "failed" and failed[[*TEST_METRICS, *DETAILS]].isna().all()
    assert list(table.columns[-len(RESULT_METRICS) :]) == list(RESULT_METRICS)
    assert by.loc[("ofat-lr-0.1", "image"), "test_accuracy_ci95"] == 0.02
    assert by.loc[("ofat-lr-0.1", "image"), "repeats"] == 2
    # each dataset has its task's test metrics; the other task's stay empty
    assert by.loc[("ofat-lr-0.1", "regression"), "test_r2"] == 0.88
    assert by.loc[("ofat-lr-0.1", "regression"), ["test_accuracy", "macro_f1"]].isna().all()
    assert by.loc[("ofat-lr-0.1", "text"), ["test_r2", "chance_r2"]].isna().all()


def test_a_commit_from_before_a_dataset_was_added_has_no_rows_of_it():
    old = record("main", 0.005, 0.9)
    old["metrics"] = {path: found for path, found in old["metrics"].items() if "regression" not in path}
    old["details"].pop("regression")
    assert collect.trained_datasets(old) == ["tabular", "image", "text"]
    table = collect.rows(old, [], STUDIES)
    assert list(table["dataset"]) == ["tabular", "image", "text"]


def test_params_are_the_datasets_effective_settings_with_their_group_prefix():
    image = {"lr": 0.05, "model": "cnn"}
    baseline = record("main", 0.005, 0.9, image_train=image)
    table = collect.rows(baseline, [record("ofat-lr-0.1", 0.1, 0.95, image_train=image)], STUDIES)
    params = list(table.columns[table.columns.get_loc("error") + 1 : table.columns.get_loc("test_accuracy")])
    assert params == [
        "split.seed",
        "train.lr",
        "train.threads",
        "train.hidden",
        "train.device",
        "train.model",
        "data.source",
    ]
    by = table.set_index(["experiment", "dataset"])
    assert by.loc[("baseline", "image"), "train.lr"] == 0.05  # `image.train` wins over the shared `train`
    assert by.loc[("baseline", "tabular"), "train.lr"] == 0.005
    assert by.loc[("ofat-lr-0.1", "image"), "train.lr"] == 0.05  # so `-S train.lr=0.1` leaves image alone
    assert by.loc[("ofat-lr-0.1", "tabular"), "train.hidden"] == "[8]"
    assert pd.isna(by.loc[("baseline", "text"), "train.model"])  # image's own setting only
    assert by.loc[("ofat-lr-0.1", "tabular"), "hyperparameter"] == "train.lr"  # the same dotted id


def test_details_come_from_each_finished_runs_commit(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    for dataset in dataset_names():
        path = repo / metrics_path(dataset, "details")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(details(threads=2)))
    commit_all(repo, "a run")
    rev = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    done = record("ofat-lr-0.1", 0.1, 0.95, commit=rev) | {"details": None}
    queued = record("ofat-lr-0.2", 0.2, None, state="queued") | {"details": None}
    found, waiting = collect.with_details([done, queued], cwd=repo)
    assert found["details"]["text"]["used_threads"] == 2
    assert waiting["details"] is None  # no results of its own: no git show
    (repo / metrics_path("image", "details")).unlink()
    commit_all(repo, "no details")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    old = record("ofat-lr-0.3", 0.3, 0.9, commit=head)
    with pytest.raises(RuntimeError) as missing:
        collect.with_details([old], cwd=repo)
    assert str(missing.value) == (
        f"ofat-lr-0.3 (commit {head[:7]}) has no metrics/image/details.json: it was run by an older version "
        "of the lab; run it again, or remove it (dvc exp remove ofat-lr-0.3)"
    )


def dvc_fails() -> None:
    raise RuntimeError("dvc exp show --rev: no such revision")


@pytest.fixture
def lab(tmp_path, monkeypatch) -> list[dict]:
    """A folder with studies.yaml where `study collect` sees the experiments of the returned list."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies.yaml").write_text(
        yaml.safe_dump({"ofat": {"kind": "ofat", "params": {"train.lr": [1]}}})
    )
    found = [record("main", 0.005, 0.9, commit="c" * 40)]
    found += [record(f"ofat-lr-{lr}", lr, 0.9) for lr in (0.1, 0.2, 0.3)]
    monkeypatch.setattr(
        collect, "read", lambda cwd, rev: (found[0], found[1:]) if rev == "HEAD" else dvc_fails()
    )
    monkeypatch.setattr(collect, "with_details", lambda records, cwd: records)
    monkeypatch.setattr(collect, "curves", lambda frame, cwd: pd.DataFrame(columns=["experiment"]))
    return found


def test_collect_refuses_to_lose_experiments_unless_forced(lab, capsys):
    assert main(["study", "collect"]) == 0
    assert "replaced" not in capsys.readouterr().out  # nothing was there
    before = Path("results/experiments.csv").read_bytes()
    del lab[2]  # ofat-lr-0.2 removed from DVC
    assert main(["study", "collect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: results/experiments.csv was written from 3 experiments; the new one has 2 and would lose 1: "
        "ofat-lr-0.2; pass --force to replace it"
    ]
    assert Path("results/experiments.csv").read_bytes() == before
    assert main(["study", "collect", "--force"]) == 0
    out = capsys.readouterr().out
    assert "results/experiments.csv: replaced 3 experiments with 2 (1 dropped: ofat-lr-0.2)" in out
    assert sorted(set(pd.read_csv("results/experiments.csv")["experiment"])) == [
        "baseline",
        "ofat-lr-0.1",
        "ofat-lr-0.3",
    ]
    lab.append(record("ofat-lr-0.4", 0.4, 0.9))
    assert main(["study", "collect"]) == 0  # nothing lost: one more
    assert "results/experiments.csv: replaced 2 experiments with 3\n" in capsys.readouterr().out


def test_collect_on_another_baseline_commit_counts_the_old_experiments_as_lost(lab, capsys):
    assert main(["study", "collect"]) == 0
    lab[0]["rev"] = "d" * 40  # a new commit: the same names are other runs
    assert main(["study", "collect"]) == 2
    err = capsys.readouterr().err
    assert "was written from 3 experiments of commit ccccccc; the new one has 3 of commit ddddddd " in err
    assert "would lose 3: ofat-lr-0.1, ofat-lr-0.2, ofat-lr-0.3" in err
    assert main(["study", "collect", "--force"]) == 0
    assert "replaced 3 experiments of commit ccccccc with 3 of commit ddddddd" in capsys.readouterr().out


def test_collect_rev_reads_the_experiments_of_another_baseline_commit(lab, monkeypatch, capsys):
    older = [record("main", 0.005, 0.9, commit="e" * 40), record("ofat-lr-0.5", 0.5, 0.9)]
    asked = []

    def read(cwd, rev):
        asked.append(rev)
        return (older[0], older[1:]) if rev == "e" * 7 else (lab[0], lab[1:])

    monkeypatch.setattr(collect, "read", read)
    assert main(["study", "collect", "--rev", "e" * 7]) == 0
    table = pd.read_csv("results/experiments.csv")
    assert asked == ["e" * 7]
    assert set(table["experiment"]) == {"baseline", "ofat-lr-0.5"} and set(table["baseline_commit"]) == {
        "e" * 40
    }
    assert main(["study", "collect"]) == 2  # HEAD's experiments would lose those of the other commit
    assert "of commit eeeeeee" in capsys.readouterr().err and asked[-1] == "HEAD"


def test_collect_reads_dvc_exp_show_of_the_given_revision(monkeypatch):
    called = []

    def dvc(*args, **kwargs):
        called.append(args)
        return json.dumps([{"rev": "workspace"}, {"rev": "f" * 40, "name": "main", "data": {}}])

    monkeypatch.setattr(collect, "dvc", dvc)
    baseline, experiments = collect.read(rev="5f83345")
    assert called == [("exp", "show", "--json", "--rev", "5f83345")]
    assert (baseline["rev"], experiments) == ("f" * 40, [])


def test_collect_refuses_an_unreadable_results_file_unless_forced(lab, capsys):
    Path("results").mkdir()
    Path("results/experiments.csv").write_text("not,a\nresults,file\n")
    assert main(["study", "collect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results/experiments.csv cannot be read" in err[0] and "--force" in err[0]
    assert Path("results/experiments.csv").read_text() == "not,a\nresults,file\n"
    assert main(["study", "collect", "--force"]) == 0


def test_collect_says_a_results_file_cut_short_is_damaged_and_force_keeps_nothing_of_it(lab, capsys):
    assert main(["study", "collect"]) == 0
    capsys.readouterr()
    whole = Path("results/experiments.csv").read_bytes()
    cut = whole[: whole.rindex(b"\nofat-lr-0.3") + len(b"\nofat-lr-0.")]  # the last line stops in its name
    Path("results/experiments.csv").write_bytes(cut)
    last = len(cut.splitlines())
    assert main(["study", "collect"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: results/experiments.csv is damaged: its last line (line {last}) stops "
        "without a line end: the file was cut short; restore it with git (git restore "
        "results/experiments.csv), or pass --force to rebuild it from DVC's experiments"
    ]
    assert Path("results/experiments.csv").read_bytes() == cut
    assert main(["study", "collect", "--force"]) == 0
    out = capsys.readouterr().out
    assert "results/experiments.csv is damaged: its last line" in out
    assert "; replaced it with the 3 experiments DVC holds" in out and "ofat-lr-0." not in out
    assert Path("results/experiments.csv").read_bytes() == whole


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (
            lambda text: text.replace(b",ofat,", b",", 1),
            "line {line} has {short} fields where the header has {all}",
        ),
        (lambda text: b"\x89PNG\r\n\x1a\n\x00\xff" + text, "byte 0x89 on line 1 is not UTF-8 text"),
    ],
    ids=["a record short of fields", "binary garbage"],
)
def test_collect_refuses_a_damaged_results_file_naming_its_line(lab, capsys, damage, said):
    assert main(["study", "collect"]) == 0
    whole = Path("results/experiments.csv").read_bytes()
    columns = len(pd.read_csv("results/experiments.csv").columns)
    Path("results/experiments.csv").write_bytes(damage(whole))
    capsys.readouterr()
    assert main(["study", "collect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: results/experiments.csv is damaged: ")
    first_ofat = len(dataset_names()) + 2  # the header, then the baseline's row of each dataset
    assert said.format(line=first_ofat, short=columns - 1, all=columns) in err[0]
    assert "git restore results/experiments.csv" in err[0] and "--force" in err[0]
    assert Path("results/experiments.csv").read_bytes() == damage(whole)


def test_repeat_rows_list_every_repeat_and_one_for_a_run_without_them():
    baseline = record("baseline", 0.005, 0.9)
    run = record("ofat-lr-0.1", 0.1, 0.95)
    seeds = [
        {"repeat": r, "seed": 42 + r, "test_accuracy": 0.9 + r / 100, "best_val_accuracy": 0.8}
        for r in range(3)
    ]
    run["details"]["image"] = details() | {PER_REPEAT: seeds}
    run["params"]["train"]["seed"] = 42
    baseline["params"]["train"]["seed"] = 7
    table = collect.rows(baseline, [run], STUDIES)
    repeats = (
        collect.repeat_rows(table, [baseline, run])
        .set_index(["experiment", "dataset", "repeat"])
        .sort_index()
    )
    assert list(repeats.loc[("ofat-lr-0.1", "image"), "seed"]) == [42, 43, 44]
    assert list(repeats.loc[("ofat-lr-0.1", "image"), "test_accuracy"]) == [0.9, 0.91, 0.92]
    # a run whose details have no repeats (an older commit) is one repeat with its train.seed and metrics
    old = repeats.loc[("baseline", "text")]
    assert len(old) == 1 and old["seed"].iloc[0] == 7 and old["test_accuracy"].iloc[0] == 0.9
    assert list(repeats.columns[:2]) == list(REPEAT_COLUMNS[1:3])
