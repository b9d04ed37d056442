"""Grid studies of two hyperparameters: one `Interaction` per study and dataset, drawn as a table, bullets,
a figure, a conclusion and `reports/interactions.csv`.

The synthetic study's `optimizer_lr` grid (adam, sgd x 0.01, 0.1) varies two shared params on every
classifier; its `loss_lr` grid (`LOSS_LR`: mse, gaussian_nll x 0.001, 0.01) varies the regression's
own loss and the shared learning rate, so it is an interaction on the regression only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.synthetic_results import LOSS_LR, RUNS, write_results
from tuninglab.lab import params
from tuninglab.report import analysis, build, results, sensitivity, summary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def loss_lr_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic study with the regression and the loss_lr grid, and its report written once."""
    folder = tmp_path_factory.mktemp("loss_lr")
    write_results(folder / "results", params.load(ROOT / "params.yaml"), regression=True, loss_lr=True)
    build.write(folder / "results", folder / "reports")
    return folder


def found(folder: Path) -> dict[tuple[str, str], sensitivity.Interaction]:
    runs, _ = results.load(folder / "results")
    return {(i.study, i.dataset): i for i in sensitivity.interactions(runs)}


def test_a_grid_of_two_shared_params_is_an_interaction_on_every_dataset(loss_lr_study):
    interaction = found(loss_lr_study)["optimizer_lr", "image"]
    # the categorical param down (the baseline's adam first), the numeric one across, in order
    assert (interaction.rows, interaction.columns) == ("train.optimizer", "train.lr")
    assert list(interaction.score.index) == ["adam", "sgd"]
    assert list(interaction.score.columns) == ["0.01", "0.1"]
    for optimizer in ("adam", "sgd"):
        for lr in ("0.01", "0.1"):
            expected = RUNS[f"optimizer_lr-optimizer-{optimizer}-lr-{lr}"][1]["image"][0]
            assert interaction.score.at[optimizer, lr] == pytest.approx(expected)
    assert interaction.diverged.at["adam", "0.1"] and not interaction.diverged.at["sgd", "0.1"]
    assert interaction.best == ("sgd", "0.1")  # 0.97
    assert interaction.spreads.to_dict() == pytest.approx({"adam": 0.85, "sgd": 0.02})


def test_a_grid_over_a_datasets_own_param_is_an_interaction_there_only(loss_lr_study):
    interactions = found(loss_lr_study)
    assert [dataset for study, dataset in interactions if study == "loss_lr"] == ["regression"]
    interaction = interactions["loss_lr", "regression"]
    assert (interaction.rows, interaction.columns) == ("train.loss", "train.lr")
    assert list(interaction.score.index) == ["mse", "gaussian_nll"]  # the baseline's loss first
    for name, (settings, r2, coverage) in LOSS_LR.items():
        cell = settings["regression.train.loss"], str(settings["train.lr"])
        assert interaction.score.at[cell] == pytest.approx(r2)
        assert interaction.experiments.at[cell] == name
        if coverage is None:
            assert np.isnan(interaction.extra["coverage_90"].at[cell])
        else:
            assert interaction.extra["coverage_90"].at[cell] == pytest.approx(coverage)
    assert interaction.spreads.to_dict() == pytest.approx({"mse": 0.07, "gaussian_nll": 0.01})


def test_the_bullets_say_which_loss_the_learning_rate_matters_more_with(loss_lr_study):
    said = summary.interaction_sentences(found(loss_lr_study)["loss_lr", "regression"])
    assert said[0] == "- Best: train.loss=mse with train.lr=0.01 (0.920)."
    assert (
        "- train.lr matters more with train.loss=mse than with gaussian\\_nll: a spread of 7.0 against "
        "1.0 points."
    ) in said
    assert "- Best train.loss at each train.lr: 0.001: gaussian\\_nll (0.900); 0.01: mse (0.920)." in said
    assert (
        "- train.loss=mse scores higher than gaussian\\_nll at 1 of 2 train.lr values "
        "(mean difference -2.0 points)."
    ) in said


def test_the_report_answers_the_grid_question(loss_lr_study):
    report = loss_lr_study / "reports"
    text = (report / "summary.md").read_text()
    section = text.split("## Two hyperparameters together")[1].split("\n## ")[0]
    assert "### loss\\_lr" in section and "### optimizer\\_lr" in section
    assert "| train.loss | train.lr=0.001 | train.lr=0.01 |" in section
    assert "| gaussian\\_nll | 0.880 | 0.910 |" in section  # 90 % interval coverage, an mse row empty
    assert "![loss\\_lr: each grid, one line per value of its rows](figures/grid-loss_lr.png)" in section
    assert (report / "figures" / "grid-loss_lr.png").stat().st_size > 0
    conclusions = text.split("## Conclusions")[1]
    assert (
        "- **regression**, grid `loss_lr`: best train.loss=mse with train.lr=0.01 (0.920); train.lr"
        in conclusions
    )
    cells = pd.read_csv(report / "interactions.csv")
    assert len(cells[cells["study"] == "loss_lr"]) == 4
    assert set(cells[cells["study"] == "optimizer_lr"]["dataset"]) == {
        "tabular",
        "image",
        "text",
        "regression",
    }
    assert "interactions.csv" in (report / "manifest.json").read_text()


def test_results_without_a_grid_have_no_grid_section(tmp_path, default_params):
    write_results(tmp_path / "results", default_params)
    runs, curves = results.load(tmp_path / "results")
    without = analysis.analyse(runs[runs["study_kind"] != "grid"], curves)
    assert without.interactions == []
    assert summary.interaction_section(without, {}) == ""
    assert sensitivity.interaction_table([]).empty
