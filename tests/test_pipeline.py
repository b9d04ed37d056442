"""End to end: the project copied into a temporary git repo, driven with dvc as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tuninglab.params import DATASETS

pytestmark = pytest.mark.slow


def sh(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def reviews_csv(path: Path) -> None:
    """A small, learnable review set: the text dataset without the package index."""
    good = ["a warm funny delight", "sharp moving and wise", "great fun", "a joy to watch"]
    bad = ["a dull mess", "boring and flat", "awful plot", "tedious and long"]
    rows = ["text,label"]
    for i in range(60):
        rows += [f"{good[i % 4]} {i},fresh", f"{bad[i % 4]} {i},rotten"]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The tracked project files in a fresh git repo, with tiny training settings."""
    repo = tmp_path_factory.mktemp("lab")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.split():
        if name.startswith(("metrics/", "plots/")) or name == "dvc.lock":
            continue  # the repo's own results; this repo makes its own
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 2
    params["image"]["train"]["channels"] = [4]
    params["text"]["data"]["source"] = "reviews.csv"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    reviews_csv(repo / "reviews.csv")
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "git", "-c", "user.name=lab", "-c", "user.email=lab@example.com", "add", "-A")
    sh(repo, "git", "-c", "user.name=lab", "-c", "user.email=lab@example.com", "commit", "-qm", "lab")
    sh(repo, "dvc", "repro")
    return repo


def test_repro_trains_evaluates_and_saves_every_dataset(repo):
    for dataset in DATASETS:
        assert (repo / "models" / dataset / "model.pt").is_file()
        assert json.loads((repo / "models" / dataset / "model.json").read_text())["train"]["epochs"] == 2
        test = json.loads((repo / "metrics" / dataset / "test.json").read_text())
        train = json.loads((repo / "metrics" / dataset / "train.json").read_text())
        assert set(test) == {"test_accuracy", "test_loss", "macro_f1"}
        assert train["epochs_run"] == 2 and train["diverged"] is False
        assert (repo / "plots" / dataset / "history.csv").read_text().count("\n") == 3
        assert (repo / "data" / "raw" / dataset / "provenance.json").is_file()
    assert json.loads((repo / "metrics/text/test.json").read_text())["test_accuracy"] > 0.7


def test_second_repro_trains_nothing(repo):
    out = sh(repo, "dvc", "repro").stdout
    assert "Data and pipelines are up to date." in out
    assert "Running stage" not in out


def exp_rows(repo: Path) -> list[dict]:
    """Each experiment of `dvc exp show --json` as {name, params, metrics}, metrics flattened by file."""
    rows = []

    def visit(rev: dict) -> None:
        data = rev.get("data") or {}
        params = data.get("params", {}).get("params.yaml", {}).get("data", {})
        metrics = {path: entry.get("data", {}) for path, entry in data.get("metrics", {}).items()}
        rows.append({"name": rev.get("name"), "params": params, "metrics": metrics})
        for exp in rev.get("experiments") or []:
            for sub in exp.get("revs", []):
                visit(sub)

    for rev in json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout):
        visit(rev)
    return rows


def test_one_param_experiment_covers_all_three_datasets(repo):
    out = sh(repo, "dvc", "exp", "run", "-S", "train.lr=0.1").stdout
    for dataset in DATASETS:
        assert f"Running stage 'train@{dataset}'" in out
    assert "Running stage 'prepare@" not in out
    experiment = next(r for r in exp_rows(repo) if r["params"].get("train", {}).get("lr") == 0.1)
    for dataset in DATASETS:
        test = experiment["metrics"][f"metrics/{dataset}/test.json"]
        train = experiment["metrics"][f"metrics/{dataset}/train.json"]
        assert {"test_accuracy", "test_loss", "macro_f1"} <= set(test)
        assert {"best_val_accuracy", "best_epoch", "epochs_run", "train_time_s", "diverged"} <= set(train)


def test_one_datasets_setting_retrains_only_that_dataset(repo):
    out = sh(repo, "dvc", "exp", "run", "-S", "text.train.pooling=max").stdout
    assert "Running stage 'train@text'" in out
    assert "Running stage 'train@tabular'" not in out and "Running stage 'train@image'" not in out


def test_plots_diff_draws_curves_and_confusion_per_dataset(repo):
    names = sh(repo, "dvc", "exp", "ls", "--name-only").stdout.split()
    assert len(names) >= 2
    plots = json.loads(sh(repo, "dvc", "plots", "diff", "--json", *names[:2]).stdout)
    assert "errors" not in plots
    expected = {f"{d} {t}" for d in DATASETS for t in ("loss", "validation accuracy", "test confusion")}
    assert set(plots["data"]) == expected
    for title, renders in plots["data"].items():
        assert sorted(renders[0]["revisions"]) == sorted(names[:2]), title


def test_bad_param_fails_the_experiment_with_one_clear_line(repo):
    result = sh(repo, "dvc", "exp", "run", "-S", "train.batch_size=0", check=False)
    assert result.returncode != 0
    assert (
        "error: train.batch_size: 0 is not allowed; expected an integer >= 1" in result.stdout + result.stderr
    )
