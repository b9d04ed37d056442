"""Optuna importance of search studies: the right ranking, its spread, and how the report draws it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tests.synthetic_results import SEARCH_STUDY, search_settings, write_results, write_search_study
from tests.test_explorer import CHROMIUM, CHROMIUM_ARGS
from tuninglab.lab import params
from tuninglab.report import analysis, build, explorer, importance, results, search_figures, summary

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_TRIAL = "x<svg onload=alert(1)>$x$"


def lr_alone(trials: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Random-search trials over lr, dropout, optimizer and hidden width where only lr moves the objective."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(search_settings(trials, seed))
    frame["train.hidden"] = frame["train.hidden"].map(str)
    value = 0.9 - 0.08 * (np.log10(frame["train.lr"]) + 2.3) ** 2 + rng.normal(0, 1e-4, trials)
    return frame, pd.Series(value)


def test_distributions_follow_the_values() -> None:
    assert importance.distribution([0.0001, 0.01]) == FloatDistribution(0.0001, 0.01, log=True)
    assert importance.distribution([0.1, 0.5]) == FloatDistribution(0.1, 0.5)
    assert importance.distribution([0.0, 0.001, 0.01]) == FloatDistribution(0.0, 0.01)  # 0: no log
    assert importance.distribution([16, 256]) == IntDistribution(16, 256, log=True)
    assert importance.distribution([32, 64]) == IntDistribution(32, 64)
    assert importance.distribution(["adam", "sgd"]) == CategoricalDistribution(["adam", "sgd"])
    assert importance.distribution([True, False]) == CategoricalDistribution(["false", "true"])
    assert importance.distribution(["[64]", "[128, 128]"]) == CategoricalDistribution(["[128, 128]", "[64]"])
    assert importance.distribution([1.0, float("nan")]) == CategoricalDistribution(["1", "n/a"])


@pytest.mark.parametrize("evaluator", importance.EVALUATORS)
def test_the_one_param_that_matters_ranks_first(evaluator: str) -> None:
    trials, values = lr_alone(24)
    dists = {name: importance.distribution(list(trials[name])) for name in trials}
    found = importance.importances(trials, dists, values, bootstraps=8)
    ranked = found[found["evaluator"] == evaluator].reset_index(drop=True)
    assert ranked.at[0, "hyperparameter"] == "train.lr"
    assert ranked["importance"].sum() == pytest.approx(1)  # normalised per resample, so the means too
    assert (ranked["low"] <= ranked["importance"]).all() and (ranked["importance"] <= ranked["high"]).all()
    assert (ranked["low"] < ranked["high"]).any()  # the resamples disagree somewhere: a spread exists


def test_the_spread_is_seeded_and_a_flat_objective_has_no_importance() -> None:
    trials, values = lr_alone(12)
    dists = {name: importance.distribution(list(trials[name])) for name in trials}
    first = importance.importances(trials, dists, values, bootstraps=4, seed=3)
    pd.testing.assert_frame_equal(first, importance.importances(trials, dists, values, bootstraps=4, seed=3))
    flat = importance.importances(trials, dists, values * 0 + 0.5, bootstraps=4)
    assert flat.empty


def test_distinguishable_means_intervals_that_do_not_overlap() -> None:
    def row(low: float, high: float) -> pd.Series:
        return pd.Series({"low": low, "high": high})

    assert importance.distinguishable(row(0.4, 0.8), row(0.0, 0.2))
    assert not importance.distinguishable(row(0.4, 0.8), row(0.1, 0.45))


@pytest.fixture(scope="module")
def search_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic study with a tpe study of 16 trials added, one of them with a hostile name."""
    folder = tmp_path_factory.mktemp("search") / "results"
    baseline = params.load(ROOT / "params.yaml")
    write_results(folder, baseline)
    names = [f"{SEARCH_STUDY}-{n}" for n in range(15)] + [f"{SEARCH_STUDY}-{HOSTILE_TRIAL}"]
    write_search_study(folder, params.load(ROOT / "params.yaml"), names=names)
    return folder


def test_a_search_study_becomes_one_search_per_dataset(search_results: Path) -> None:
    runs, _ = results.load(search_results)
    found = [s for s in importance.searches(runs, bootstraps=6) if s.study == SEARCH_STUDY]
    assert [s.dataset for s in found] == ["tabular", "image", "text"]
    image = found[1]
    assert image.study_kind == "tpe" and image.ordered and image.reported and image.runs == 16
    assert image.params == ("train.lr", "train.optimizer", "train.hidden", "train.dropout")
    assert image.trials["position"].tolist() == list(range(1, 17))
    assert (image.trials["best_so_far"].diff().dropna() >= 0).all()  # never falls
    assert image.trials["compute"].iloc[-1] == pytest.approx(image.trials["train_time_s"].sum())
    assert image.best["value"] == image.trials["value"].max()
    assert image.top_two()[0] == "train.lr"
    table = importance.table(found)
    assert list(table.columns) == importance.IMPORTANCE_COLUMNS
    assert set(table["evaluator"]) == set(importance.EVALUATORS) and set(table["runs"]) == {16}


def test_a_halving_study_reads_its_first_rung_for_importance(tmp_path: Path) -> None:
    write_results(tmp_path, params.load(ROOT / "params.yaml"))
    write_search_study(tmp_path, params.load(ROOT / "params.yaml"), kind="halving", trials=12)
    runs, _ = results.load(tmp_path)
    found = importance.searches(runs, bootstraps=3)
    text = next(s for s in found if s.study == SEARCH_STUDY and s.dataset == "text")
    assert len(text.trials) == 16 and text.runs == 12  # 12 first-rung runs, 4 promoted
    assert "train.epochs" in text.params  # the rungs differ in epochs: shown, not an importance
    assert "train.epochs" not in set(text.importances["hyperparameter"])
    assert text.trials["rung"].tolist()[:2] in ([1, 1], [1, 2])


def test_a_halving_study_is_set_against_the_same_configurations_at_full_epochs(tmp_path: Path) -> None:
    baseline = params.load(ROOT / "params.yaml")
    write_results(tmp_path, baseline)
    write_search_study(tmp_path, baseline, kind="halving", trials=9, study="halving")
    write_search_study(tmp_path, baseline, kind="random", trials=9, study="random")  # the same draws
    runs, _ = results.load(tmp_path)
    found = importance.against_full_epochs(importance.searches(runs, bootstraps=2))
    image = next(budget for budget in found if budget.dataset == "image")
    assert (image.study, image.other, image.configurations) == ("halving", "random", 9)
    rows = runs[runs["dataset"] == "image"]
    assert image.train_time_s == pytest.approx(rows[rows["study"] == "halving"]["train_time_s"].sum())
    assert image.other_train_time_s == pytest.approx(rows[rows["study"] == "random"]["train_time_s"].sum())
    assert image.score == image.other_score  # the best configuration went on to the last rung
    sentence = summary.full_epochs_sentence(image, "image")
    assert "its 9 configurations over all rungs" in sentence and "at full epochs in `random` (" in sentence
    alone = importance.against_full_epochs([s for s in importance.searches(runs, 2) if s.study != "random"])
    assert alone == []  # nothing trained those configurations in full


def test_the_report_draws_each_search_study(
    search_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importance, "BOOTSTRAPS", 6)  # the report's own 30 take longer
    build.write(search_results, tmp_path / "reports")
    out = tmp_path / "reports"
    text = (out / "summary.md").read_text()
    section = text[text.index("## Search studies") : text.index("## Across datasets")]
    assert "### tpe\\_synthetic (tpe)" in section
    assert "### optimizer\\_lr" not in section  # a 2 x 2 grid: too few runs, its own section shows it
    assert re.search(r"- PED-ANOVA: train\.lr 0\.\d\d \(0\.\d\d-[01]\.\d\d\) vs train\.\w+ ", section)
    assert "| hyperparameter | PED-ANOVA | fANOVA |" in section
    assert HOSTILE_TRIAL not in text and "<svg" not in text  # names escaped
    pictures = re.findall(r"\]\((figures/search-[^)]+)\)", section)
    assert len(pictures) == 4
    for picture in pictures:
        assert (out / picture).read_bytes().startswith(b"\x89PNG")
    table = pd.read_csv(out / "importance.csv")
    assert list(table.columns) == importance.IMPORTANCE_COLUMNS
    assert (table["low"] <= table["importance"]).all() and (table["importance"] <= table["high"]).all()
    page = (out / "explorer.html").read_text()
    data = json.loads(re.search(r'id="explorer-data">(.*?)</script>', page, re.S).group(1))
    assert [s["label"] for s in data["searches"]] == [
        f"{SEARCH_STUDY} (tpe) on {d}" for d in ("tabular", "image", "text")
    ]
    assert (
        f"{SEARCH_STUDY}-{HOSTILE_TRIAL}" in data["searches"][0]["trials"]["experiment"]
    )  # as data, escaped in JSON
    assert "<svg onload" not in page


def test_sentences_tell_apart_or_not() -> None:
    trials, values = lr_alone(20)
    frame = trials.assign(
        position=range(1, 21),
        experiment=[f"t{n}" for n in range(20)],
        value=values,
        best_so_far=values.cummax(),
    )
    frame = frame.assign(score=values, train_time_s=1.0, compute=np.arange(1.0, 21.0))
    shares = pd.DataFrame(
        {
            "hyperparameter": ["train.lr", "train.dropout", "train.lr", "train.dropout"],
            "evaluator": [importance.PED_ANOVA] * 2 + [importance.FANOVA] * 2,
            "importance": [0.62, 0.05, 0.5, 0.4],
            "low": [0.41, 0.0, 0.2, 0.1],
            "high": [0.8, 0.2, 0.8, 0.7],
        }
    )
    search = importance.Search(
        study="s",
        study_kind="random",
        dataset="image",
        kind="image",
        params=tuple(trials.columns),
        distributions={name: importance.distribution(list(trials[name])) for name in trials},
        trials=frame,
        best=frame.loc[frame["value"].idxmax()],
        importances=shares,
        runs=20,
    )
    assert summary.importance_sentence(search, importance.PED_ANOVA, str) == (
        "PED-ANOVA: train.lr 0.62 (0.41-0.80) vs train.dropout 0.05 (0.00-0.20): train.lr matters more"
    )
    assert summary.importance_sentence(search, importance.FANOVA, str).endswith(
        "not distinguishable (the intervals overlap)"
    )
    grid = search_figures.contour_grid(search)
    assert grid is not None and grid.x.name == "train.lr" and grid.x.log
    assert grid.z.shape == (search_figures.CONTOUR_POINTS, search_figures.CONTOUR_POINTS)
    assert not np.isnan(grid.z).any()


def test_browser_draws_the_search_studies_with_names_as_text(
    search_results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: apt-get install chromium"
        if os.environ.get("TUNINGLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    monkeypatch.setattr(importance, "BOOTSTRAPS", 4)
    runs, curves = results.load(search_results)
    page_file = tmp_path / "explorer.html"
    explorer.write(analysis.analyse(runs, curves), page_file)
    dialogs: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri())
            assert page.locator("#searches").is_visible()
            page.select_option("#search", label=f"{SEARCH_STUDY} (tpe) on image")
            traces = page.evaluate(
                "[...document.querySelectorAll('#searches .js-plotly-plot')].map(c => [c.id, c.data.length])"
            )
            assert dict(traces) == {
                "chart-progress": 2,  # best so far, each trial
                "chart-compute": 2,
                "chart-importance": 2,  # PED-ANOVA, fANOVA
                "chart-contour": 2,  # the interpolated objective, the trials
                "chart-search-parcoords": 1,
            }
            notes = page.locator("#search-notes li").all_inner_texts()
            assert notes[0].startswith("image: best run ") and notes[1].startswith("PED-ANOVA: train.lr ")
            hover = page.evaluate("document.getElementById('chart-progress').data[1].text")
            assert f"{SEARCH_STUDY}-x&lt;svg onload=alert(1)&gt;$x$" in hover  # Plotly shows it as text
            assert page.locator("svg script, svg image, svg foreignObject, img, iframe").count() == 0
        finally:
            browser.close()
    assert dialogs == [] and errors == []
