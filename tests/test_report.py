"""The report: sensitivity and noise from a known study, the written files, and refusals of bad results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.synthetic_results import write_results
from tuninglab import params, report, results, sensitivity
from tuninglab.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def study(tmp_path: Path, default_params) -> Path:
    """The synthetic study's results folder."""
    write_results(tmp_path / "results", default_params)
    return tmp_path / "results"


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic study's report folder, written once for the tests that only read it."""
    folder = tmp_path_factory.mktemp("study")
    write_results(folder / "results", params.load(ROOT / "params.yaml"))
    report.write(folder / "results", folder / "reports")
    return folder / "reports"


def row(table: pd.DataFrame, dataset: str, hyperparameter: str) -> pd.Series:
    chosen = table[(table["dataset"] == dataset) & (table["hyperparameter"] == hyperparameter)]
    assert len(chosen) == 1
    return chosen.iloc[0]


def test_noise_is_the_range_of_the_baseline_across_seeds(study):
    runs, _ = results.load(study)
    noise = sensitivity.noise(runs).set_index("dataset")
    assert noise.at["tabular", "runs"] == 3
    assert noise.at["tabular", "range"] == pytest.approx(0.02)
    assert noise.at["image", "range"] == pytest.approx(0.004)


def test_one_at_a_time_orders_values_averages_repeats_and_flags_divergence(study):
    runs, _ = results.load(study)
    table = sensitivity.one_at_a_time(runs)
    lr = row(table, "image", "lr")
    assert json.loads(lr["values"]) == ["0.001", "0.005", "0.01", "0.1"]
    assert json.loads(lr["accuracies"]) == [0.9, 0.97, 0.95, 0.1]  # 0.1: two runs of lr=0.1, both 0.1
    assert (lr["best_value"], lr["worst_value"], lr["baseline_value"]) == ("0.005", "0.1", "0.005")
    assert lr["spread"] == pytest.approx(0.87)
    assert json.loads(lr["diverged_values"]) == ["0.1"]
    assert not lr["at_edge"] and not lr["within_noise"]
    assert set(table["hyperparameter"]) == {
        "lr",
        "dropout",
        "optimizer",
        "hidden",
    }  # not seed, not failed batch


def test_edge_and_noise_flags(study):
    runs, _ = results.load(study)
    table = sensitivity.one_at_a_time(runs)
    assert row(table, "text", "dropout")["at_edge"]  # 0.5 best of 0 / 0.2 / 0.5, 5 points > 0.5 noise
    assert not row(table, "tabular", "dropout")["at_edge"]  # 0 and 0.2 tie for best
    assert row(table, "tabular", "hidden")["within_noise"]  # 0.3 points < 2.0 noise
    assert not row(table, "image", "hidden")["within_noise"]  # 0.5 points > 0.4 noise


def test_importance_needs_runs_that_changed_several_hyperparameters(study):
    runs, _ = results.load(study)
    shares = sensitivity.importance(runs)
    assert set(shares["dataset"]) == {"tabular", "image", "text"}
    assert shares.groupby("dataset")["importance"].sum().to_numpy() == pytest.approx([1, 1, 1])
    image = shares[shares["dataset"] == "image"].set_index("hyperparameter")["importance"]
    assert image.idxmax() == "lr"
    single = runs[~runs["changed"].str.contains(",")]
    assert sensitivity.importance(single).empty


def test_report_writes_every_file_with_numbers_from_the_csv(written):
    out = written
    for name in ["summary.md", "summary.html", "explorer.html", "observations.csv", "sensitivity.csv"]:
        assert (out / name).stat().st_size > 0, name
    for name in ["curves-lr", "time-lr", "curves-dropout", "sensitivity", "importance"]:
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
    text = (out / "summary.md").read_text()
    assert (
        "`ofat-lr-0.1` on image: with lr=0.1: test accuracy -87.0 points vs baseline (0.100 vs 0.970); "
        "the loss diverged at epoch 3" in text
    )
    assert "| 0.1 | 0.750 (-18.0) | 0.100 (-87.0) diverged | 0.575 (-17.5) |" in text
    assert "- **image**: lr 87.0, optimizer 5.0, dropout 1.5, hidden 0.5" in text
    assert "**lr** matters more for image than for text" in text
    assert (
        "**image vs tabular** (spread in points, image first): matter more for image: lr (87.0 vs 18.0); "
        "more for tabular: optimizer (5.0 vs 23.0); about the same (gap within seed noise, 2.0 points): "
        "dropout (1.5 vs 3.0), hidden (0.5 vs 0.3)" in text
    )
    assert "Extend the range of dropout on text: its best value 0.5 is at the edge" in text
    assert "- `ofat-batch_size-16` failed" in text
    observed = pd.read_csv(out / "observations.csv")
    overfit = observed[(observed["experiment"] == "ofat-dropout-0.0") & (observed["kind"] == "overfitting")]
    assert set(overfit["dataset"]) == {"tabular", "image", "text"}


def test_summary_html_is_self_contained(study, tmp_path):
    report.write(study, tmp_path / "reports")
    page = (tmp_path / "reports" / "summary.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(
        list((tmp_path / "reports" / "figures").glob("*.png"))
    )
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<table>" in page


def test_missing_results_say_what_to_run(tmp_path):
    with pytest.raises(results.ReportError, match=r"experiments.csv not found: run a study first"):
        report.write(tmp_path / "nowhere", tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_empty_results_say_what_to_run(study, tmp_path):
    (study / "experiments.csv").write_text("")
    with pytest.raises(results.ReportError, match=r"experiments.csv is empty: run a study first"):
        report.write(study, tmp_path / "reports")


def test_results_from_an_older_version_name_the_missing_columns(study, tmp_path):
    old = pd.read_csv(study / "curves.csv").drop(columns=["val_accuracy", "lr"])
    old.to_csv(study / "curves.csv", index=False)
    with pytest.raises(results.ReportError, match=r"lacks the columns val_accuracy, lr .* study collect"):
        report.write(study, tmp_path / "reports")


def test_a_failed_report_leaves_the_previous_one_alone(written, tmp_path):
    before = {p.name: p.read_bytes() for p in written.iterdir() if p.is_file()}
    (tmp_path / "experiments.csv").write_text("experiment,dataset\n")
    with pytest.raises(results.ReportError):
        report.write(tmp_path, written)
    assert {p.name: p.read_bytes() for p in written.iterdir() if p.is_file()} == before
    assert [p.name for p in written.parent.iterdir() if p.name.startswith(".reports")] == []


def test_report_command_exits_2_with_one_line(tmp_path, capsys):
    code = main(["report", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "study run ofat" in err[0]
    assert not (tmp_path / "reports").exists()
