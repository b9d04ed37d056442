"""End to end: the project copied into a temporary git repo, driven with dvc as a user would."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT, commit_all, make_lab_repo, sh
from tuninglab import schema, tasks
from tuninglab.lab import datasets
from tuninglab.lab.datasets import dataset_names

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The project with tiny training settings in a fresh git repo, after `dvc repro`, committed."""
    repo = make_lab_repo(tmp_path_factory.mktemp("lab"))
    sh(repo, "dvc", "repro")
    commit_all(repo, "baseline")
    return repo


def read(repo: Path, dataset: str, name: str) -> dict:
    return json.loads((repo / schema.metrics_path(dataset, name)).read_text())


def task(dataset: str) -> tasks.Task:
    return datasets.get(dataset).task


def test_repro_trains_evaluates_and_saves_every_dataset(repo):
    for dataset in dataset_names():
        assert (repo / "models" / dataset / "model.pt").is_file()
        assert json.loads((repo / "models" / dataset / "model.json").read_text())["train"]["epochs"] == 2
        test, train = read(repo, dataset, "test")[dataset], read(repo, dataset, "train")[dataset]
        assert train["epochs_run"] == 2 and train["diverged"] is False
        chance = test[task(dataset).chance_metric]
        assert 0 < chance < 1 if task(dataset) is tasks.CLASSIFICATION else abs(chance) < 0.2
        history = (repo / schema.plots_path(dataset, "history")).read_text().splitlines()
        assert history[0].split(",") == list(schema.HISTORY_COLUMNS) and len(history) == 3
        assert (repo / "data" / "raw" / dataset / "provenance.json").is_file()
    assert read(repo, "text", "test")["text"]["test_accuracy"] > 0.7


def test_stages_write_exactly_the_schema(repo):
    for dataset in dataset_names():
        assert list(read(repo, dataset, "test")) == [dataset]
        assert tuple(read(repo, dataset, "test")[dataset]) == task(dataset).test_file_keys
        assert tuple(read(repo, dataset, "train")[dataset]) == schema.TRAIN_METRICS
        assert tuple(read(repo, dataset, "details")) == (*schema.DETAILS, schema.PER_REPEAT)
        test_plot = task(dataset).test_plot
        header = (repo / schema.plots_path(dataset, test_plot)).read_text().splitlines()[0]
        columns = schema.CONFUSION_COLUMNS if test_plot == "confusion" else schema.PREDICTION_COLUMNS
        assert tuple(header.split(",")) == columns


def test_exp_show_puts_every_datasets_test_metrics_first(repo, monkeypatch):
    """The default table: each dataset's test metrics, before how training went (with one repeat, as
    here, the half-widths are null and DVC leaves them out; see the repeats test below)."""
    monkeypatch.setenv("COLUMNS", "2000")
    header = sh(repo, "dvc", "exp", "show", "--no-pager").stdout.splitlines()[1].split()
    first_trained = header.index(f"{dataset_names()[0]}.best_epoch")
    for dataset in dataset_names():
        keys = [f"{dataset}.{key}" for key in task(dataset).test_file_keys]
        at = [header.index(key) for key in keys if key in header]
        assert at == sorted(at) and at[-1] < first_trained, dataset
        assert f"{dataset}.{task(dataset).primary_metric}" in header
    assert not any(name in header for name in schema.DETAILS)  # diagnostics are not metrics


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


def test_one_param_experiment_covers_all_four_datasets(repo):
    out = sh(repo, "dvc", "exp", "run", "-S", "train.lr=0.1").stdout
    for dataset in dataset_names():
        assert f"Running stage 'train@{dataset}'" in out
    assert "Running stage 'prepare@" not in out
    experiment = next(r for r in exp_rows(repo) if r["params"].get("train", {}).get("lr") == 0.1)
    for dataset in dataset_names():
        test = experiment["metrics"][f"metrics/{dataset}/test.json"][dataset]
        train = experiment["metrics"][f"metrics/{dataset}/train.json"][dataset]
        names = task(dataset).test_file_keys
        assert list(test) == [name for name in names if name in test] and tuple(train) == schema.TRAIN_METRICS
        # null with mse, and every half-width with one repeat: DVC leaves them out
        assert set(names) - set(test) <= {"test_nll", "coverage_90", *map(schema.ci_name, names)}
    assert f"metrics/{dataset_names()[0]}/details.json" not in experiment["metrics"]


def test_an_experiment_with_repeats_writes_the_mean_its_half_width_and_each_repeat(repo, monkeypatch):
    out = sh(
        repo, "dvc", "exp", "run", "-n", "two-repeats", "-S", "train.repeats=2", "-S", "train.lr=0.02"
    ).stdout
    assert "Running stage 'prepare@" not in out
    for dataset in dataset_names():
        primary = task(dataset).primary_metric
        test = read(repo, dataset, "test")[dataset]
        per_repeat = read(repo, dataset, "details")[schema.PER_REPEAT]
        assert test[schema.REPEATS] == 2 and [r["seed"] for r in per_repeat] == [42, 43]
        values = [r[primary] for r in per_repeat]
        assert test[primary] == pytest.approx(sum(values) / 2, abs=1e-6)
        # t(1) = 12.706: two repeats give a wide interval around their mean
        assert test[schema.ci_name(primary)] == pytest.approx(
            12.706 * abs(values[0] - values[1]) / 2, abs=1e-5
        )
    assert any(r["params"].get("train", {}).get("repeats") == 2 for r in exp_rows(repo))
    monkeypatch.setenv("COLUMNS", "2000")
    header = sh(repo, "dvc", "exp", "show", "--no-pager").stdout.splitlines()[1]
    for dataset in dataset_names():
        primary = f"{dataset}.{task(dataset).primary_metric}"
        assert header.split()[header.split().index(primary) + 1] == schema.ci_name(primary)
    # back to the baseline, as the tests after this one expect
    sh(repo, "dvc", "exp", "remove", "two-repeats")
    sh(repo, "git", "checkout", "--", ".")
    sh(repo, "dvc", "checkout", "-q")


def test_show_lists_what_each_experiment_changed_and_its_accuracy(repo):
    out = sh(repo, "python", "-m", "tuninglab", "show").stdout
    rows = [line for line in out.splitlines() if "train.lr=0.1" in line and "workspace" not in line]
    # one value per dataset, three decimals: an accuracy, or an R^2 (which can be below -1)
    assert rows and len(re.findall(r"(?<![\d.])-?\d+\.\d{3}\b", rows[0])) == len(dataset_names())
    assert all(f"{d} (chance" in out for d in dataset_names())


def readme_comparison() -> list[str]:
    """The README's `dvc exp show` command: each dataset's primary metric and the changed params."""
    readme = (ROOT / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("dvc exp show --only-changed --keep")]
    return shlex.split(line)


def test_the_readmes_comparison_fits_every_primary_metric_and_the_changed_param_in_160_columns(
    repo, monkeypatch
):
    """After the `train.lr=0.1` experiment, in a 160-column terminal, with train.json carrying more keys
    (a thread count and a CPU capability string) than it does today."""
    monkeypatch.setenv("COLUMNS", "160")
    saved = {d: (repo / schema.metrics_path(d, "train")).read_text() for d in dataset_names()}
    try:
        for dataset, text in saved.items():
            summary = json.loads(text)
            summary[dataset] |= {"used_threads": 1, "cpu_capability": "AVX512"}
            (repo / schema.metrics_path(dataset, "train")).write_text(json.dumps(summary))
        table = sh(repo, *readme_comparison(), "--no-pager").stdout.splitlines()
    finally:
        for dataset, text in saved.items():
            (repo / schema.metrics_path(dataset, "train")).write_text(text)
    header = table[1].split()
    primaries = [f"{d}.{task(d).primary_metric}" for d in dataset_names()]
    assert header == ["Experiment", *primaries, "train.lr"]
    assert max(len(line) for line in table) <= 160
    (row,) = [line.split() for line in table if line.split()[-1:] == ["0.1"] and "workspace" not in line]
    assert len(row) == 3 + len(primaries) + 1  # the tree mark, rev and name, one score per dataset, lr


def test_one_datasets_setting_retrains_only_that_dataset(repo):
    out = sh(repo, "dvc", "exp", "run", "-S", "text.train.pooling=max").stdout
    assert "Running stage 'train@text'" in out
    assert "Running stage 'train@tabular'" not in out and "Running stage 'train@image'" not in out


def test_plots_diff_draws_curves_and_confusion_per_dataset(repo):
    names = sh(repo, "dvc", "exp", "ls", "--name-only").stdout.split()
    assert len(names) >= 2
    plots = json.loads(sh(repo, "dvc", "plots", "diff", "--json", *names[:2]).stdout)
    assert "errors" not in plots
    titles = {
        "classification": ("loss", "validation accuracy", "test confusion"),
        "regression": ("loss", "validation R^2", "test predictions", "predicted std vs absolute error"),
    }
    expected = {f"{d} {t}" for d in dataset_names() for t in titles[task(d).name]}
    assert set(plots["data"]) == expected
    for title, renders in plots["data"].items():
        assert sorted(renders[0]["revisions"]) == sorted(names[:2]), title


def test_bad_param_fails_the_experiment_with_one_clear_line(repo):
    result = sh(repo, "dvc", "exp", "run", "-S", "train.batch_size=0", check=False)
    assert result.returncode != 0
    assert (
        "error: train.batch_size: 0 is not allowed; expected an integer >= 1" in result.stdout + result.stderr
    )
