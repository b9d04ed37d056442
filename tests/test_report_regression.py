"""The report, show and the explorer with a regression among the datasets: each read by its primary metric.

The synthetic study with `regression=True` adds the regression dataset (test R^2 0.93 at the baseline,
chance R^2 -0.010) to every run; without it, the results are those of a lab before the regression data
type, and the report speaks of test accuracy alone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.synthetic_results import write_results
from tests.test_explorer import CHROMIUM, CHROMIUM_ARGS
from tuninglab.lab import params
from tuninglab.report import (
    analysis,
    build,
    explorer,
    figures,
    observations,
    primary,
    results,
    sensitivity,
    stats,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def regression_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic study with the regression dataset, and its report written once."""
    folder = tmp_path_factory.mktemp("regression")
    write_results(folder / "results", params.load(ROOT / "params.yaml"), regression=True)
    build.write(folder / "results", folder / "reports")
    return folder


def test_each_dataset_is_read_by_its_primary_metric():
    assert (primary.metric("image"), primary.chance_metric("image")) == ("test_accuracy", "chance_accuracy")
    assert (primary.metric("regression"), primary.chance_metric("regression")) == ("test_r2", "chance_r2")
    run = pd.Series(
        {
            "dataset": "regression",
            "kind": "regression",
            "test_r2": 0.9,
            "chance_r2": -0.01,
            "test_accuracy": np.nan,
        }
    )
    assert (primary.score(run), primary.chance(run)) == (0.9, -0.01)
    assert primary.metric_words(["tabular", "text"]) == "test accuracy"
    assert primary.metric_words(["tabular", "regression"], capital=True).startswith("Primary test metric")
    assert primary.spread_note(["image"]) == "" and "own points" in primary.spread_note(
        ["image", "regression"]
    )


def regression_run(**overrides) -> pd.Series:
    run = {
        "experiment": "ofat-lr-0.1",
        "dataset": "regression",
        "kind": "regression",
        "changed": "train.lr",
        "train.lr": 0.1,
        "diverged": False,
        "test_r2": 0.0,
        "chance_r2": -0.009,
        "test_accuracy": np.nan,
        "chance_accuracy": np.nan,
        "status": "ok",
        "not_compared": "",
    }
    return pd.Series(run | overrides)


def test_the_observations_speak_of_r_squared_and_the_training_mean():
    at_mean = regression_run(test_r2=-0.005)
    found = observations.no_better_than_chance(at_mean)
    assert found.headline == "no better than chance (training mean -0.009)"
    assert found.text == (
        "no better than chance: test R^2 -0.005, while always predicting the training split's mean "
        "scores -0.009 on the test split"
    )
    assert observations.no_better_than_chance(regression_run(test_r2=-0.003)) is None  # 0.6 points above
    assert observations.status_text(at_mean) == "ok, no better than chance"
    sentence = observations.versus_baseline(
        regression_run(test_r2=0.5),
        pd.Series({"test_r2": 0.93}),
        stats.Comparison(-0.43, None, None, None, stats.NO_TEST, 1, 1),
        [],
    )
    assert sentence.text == (
        "with train.lr=0.1: test R^2 -43.0 points vs baseline (0.500 vs 0.930; chance -0.009), "
        "one run: no interval"
    )
    history = pd.DataFrame({"train_accuracy": [0.5, 0.8]})  # a regression's training R^2
    underfit = observations.underfitting(history, regression_run(), pd.DataFrame({"train_accuracy": [0.95]}))
    assert (
        underfit.text == "underfitting: training R^2 80.0% at the end, 15.0 points below the baseline's 95.0%"
    )


def nll_history(val: list[float], train: list[float]) -> pd.DataFrame:
    """A gaussian_nll run's history: its losses below 0 once the predicted variance is small."""
    return pd.DataFrame(
        {"epoch": range(1, len(val) + 1), "val_loss": val, "train_loss": train, "train_accuracy": 0.9}
    )


def test_the_loss_rules_read_a_negative_loss_by_its_size():
    rising = nll_history([-0.2, -0.5, -0.6, -0.55, -0.45, -0.4], [-0.1, -0.4, -0.6, -0.8, -0.9, -1.0])
    found = observations.overfitting(rising)
    assert found.text.startswith("overfitting from epoch 3: validation loss rose 33% (-0.600 to -0.400)")
    flat = nll_history([-0.2, -0.5, -0.6, -0.59, -0.58, -0.58], [-0.1, -0.4, -0.6, -0.8, -0.9, -1.0])
    assert observations.overfitting(flat) is None  # 0.02 above the minimum: 3 %, not 10 %
    falling = nll_history([-0.1, -0.2, -0.3, -0.4, -0.5], [0.0] * 5)
    run = pd.Series({"stopped_early": False, "diverged": False})
    assert "validation loss fell 150% over the last 3 epochs (-0.200 to -0.500)" in (
        observations.still_improving(falling, run).text
    )
    assert observations.still_improving(nll_history([-0.5, -0.6, -0.6, -0.6, -0.601], [0.0] * 5), run) is None
    swinging = nll_history([-0.5, -0.2, -0.5, -0.5, -0.1, -0.5], [0.0] * 6)
    assert observations.unstable(swinging).text.endswith("2 times (epochs 2, 5; largest +80%)")


def test_results_from_before_the_regression_type_load_with_empty_regression_columns(tmp_path, default_params):
    write_results(tmp_path, default_params)
    assert "test_r2" not in pd.read_csv(tmp_path / "experiments.csv")
    runs, _ = results.load(tmp_path)
    assert runs["test_r2"].isna().all() and set(runs["dataset"]) == {"tabular", "image", "text"}


def test_a_dataset_this_lab_does_not_know_is_refused(tmp_path, default_params):
    write_results(tmp_path, default_params)
    table = pd.read_csv(tmp_path / "experiments.csv")
    table.loc[table["dataset"] == "text", ["dataset", "kind"]] = "audio"
    table.to_csv(tmp_path / "experiments.csv", index=False)
    with pytest.raises(
        results.ReportError, match=r"holds the dataset\(s\) audio, which this lab does not know"
    ):
        results.load(tmp_path)


def test_sensitivity_and_intervals_use_r_squared(regression_study):
    runs, _ = results.load(regression_study / "results")
    repeats = results.load_repeats(regression_study / "results", runs)
    table = sensitivity.one_at_a_time(runs, repeats).set_index(["dataset", "hyperparameter"])
    lr = table.loc[("regression", "train.lr")]
    assert json.loads(lr["accuracies"]) == [0.85, 0.93, 0.92, -0.05]  # the column keeps its name
    assert lr["spread"] == pytest.approx(0.98) and json.loads(lr["diverged_values"]) == ["0.1"]
    assert json.loads(lr["difference"]) == pytest.approx([-0.08, None, -0.01, -0.98])
    assert json.loads(lr["verdict"])[-1] == "worsens" and json.loads(lr["test"])[0] == "paired"


def test_the_summary_reads_regression_by_r_squared_on_a_fair_scale(regression_study):
    text = (regression_study / "reports" / "summary.md").read_text()
    assert "test accuracy for classifiers, test R^2 for regression; a point is 0.01 of either." in text
    baselines = text[text.index("## Baselines") : text.index("## Hyperparameters")]
    assert "| test R^2 | chance R^2 (training mean) |" in baselines
    assert "| regression |  |  |  |  | 0.930 | -0.010 |" in baselines
    assert (
        "| train.lr | tabular (chance 0.333) | image (chance 0.112) | text (chance 0.578) "
        "| regression (chance -0.010) |" in text
    )
    assert "| 0.1 | 0.900 (-3.0) |" in text and "| -0.050 (-98.0) diverged no better than chance |" in text
    assert (
        "`ofat-lr-0.1` (also run as `optimizer_lr-optimizer-adam-lr-0.1`) on regression: with train.lr=0.1: "
        "test R^2 -98.0 points vs baseline (-0.050 vs 0.930; chance -0.010), 95 % CI -98.9 to -97.1 points, "
        "paired by seed; the loss diverged in 3 of 3 repeats" in text
    )
    assert "underfitting: training R^2 " in text
    assert "in that metric's own points (0.01 of accuracy, 0.01 of R^2)" in text
    assert "Ranking per dataset (spread of each dataset's primary metric in its own points;" in text
    assert "- **regression**: train.lr 98.0, train.optimizer 5.0" in text
    assert "train.lr=0.1 worsens regression R^2 by 98.0 points (95 % CI -98.4 to -97.6)" in text
    assert (
        "**train.lr**: a detectable effect on tabular, image, text, regression; spread regression 98.0"
        in text
    )
    assert "- Best run on regression: `ofat-hidden-128-128` (0.935, chance -0.010;" in text
    assert "- Diverged: `ofat-lr-0.1` on image, regression." in text
    assert "for regression, test R^2 at most as far above the R^2 of always predicting the training" in text
    observed = pd.read_csv(regression_study / "reports" / "observations.csv")
    mine = observed[(observed["experiment"] == "ofat-lr-0.1") & (observed["dataset"] == "regression")]
    assert set(mine["kind"]) == {"diverged", "no better than chance", "vs baseline"}


def test_a_report_of_classifiers_only_speaks_of_test_accuracy_alone(tmp_path, default_params):
    write_results(tmp_path / "results", default_params)
    build.write(tmp_path / "results", tmp_path / "reports")
    text = (tmp_path / "reports" / "summary.md").read_text()
    assert "regression" not in text and "primary" not in text
    assert re.findall(r"R\^2", text) == []
    assert "Accuracies are on each dataset's held-out test split; a point is 0.01 of accuracy." in text


def test_the_curves_of_a_regression_are_labelled_r_squared(regression_study):
    runs, curves = results.load(regression_study / "results")
    effects = analysis.by_hyperparameter(sensitivity.effects(runs))["train.lr"]
    figure = figures.hyperparameter_curves("train.lr", effects, curves)
    titles = [axis.get_title() for axis in figure.axes]
    assert "regression: validation R^2" in titles and "image: validation accuracy" in titles


def test_the_explorer_shows_a_regression_with_its_own_metrics(regression_study):
    page = (regression_study / "reports" / "explorer.html").read_text()
    data = json.loads(re.search(r'id="explorer-data">(.*?)</script>', page, re.S).group(1))["datasets"]
    shown = data["regression"]
    assert (shown["metric"], shown["quality"], shown["chance"]) == ("test R^2", "R^2", -0.01)
    keys = [key for key, _ in shown["metrics"]]
    assert keys[:3] == ["test_r2", "chance_r2", "test_rmse"] and "test_accuracy" not in keys
    assert ["best_val_accuracy", "best validation R^2"] in shown["metrics"]
    baseline = shown["runs"][shown["baseline"]]
    assert baseline["score"] == 0.93 and baseline["shown"]["test_r2"] == ["0.930", "0.000"]
    assert [key for key, _ in explorer.metrics("image")][:2] == ["test_accuracy", "chance_accuracy"]
    assert "test_r2" not in data["image"]["runs"][0]["shown"]


def test_a_browser_shows_the_regression_runs(regression_study):
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: apt-get install chromium"
        if os.environ.get("TUNINGLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((regression_study / "reports" / "explorer.html").as_uri())
            page.select_option("#dataset", "regression")
            page.select_option("#param-train-lr", "0.1")
            assert page.locator("#run-name").inner_text() == "ofat-lr-0.1"
            assert page.locator("#metric-test_r2").inner_text() == "-0.050"
            assert page.locator("#diff-test_r2").inner_text() == "-0.980"
            assert page.locator("#metric-test_accuracy").count() == 0
            title = "document.getElementById('chart-accuracy').layout.title.text"
            assert page.evaluate(title) == "Validation R^2"
            scatter = "document.getElementById('chart-scatter').layout.yaxis.title.text"
            assert page.evaluate(scatter) == "test R^2 (dashed: chance)"
            page.select_option("#dataset", "image")
            assert page.locator("#metric-test_accuracy").count() == 1
            assert page.evaluate(title) == "Validation accuracy"
        finally:
            browser.close()
    assert errors == []
