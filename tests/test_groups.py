"""A dataset group not named after its data type (`cifar`, of kind image) through collect, show and the
report: its rows are collected, shown and read by its kind's primary metric, beside the `image` group."""

from __future__ import annotations

import copy

import pandas as pd

from tests.synthetic_results import write_results
from tests.test_show import KEYS, accuracies, record
from tuninglab.report import build, primary, results, show
from tuninglab.studies import collect


def with_cifar(params: dict) -> dict:
    """Params with a `cifar` group of kind image beside the registered groups."""
    tree = copy.deepcopy(params)
    tree["cifar"] = copy.deepcopy(tree["image"])
    tree["cifar"]["data"] |= {"kind": "image", "source": "cifar10"}
    return tree


def test_collect_keeps_a_group_named_by_its_kind(default_params):
    tree = with_cifar(default_params)
    metrics = {f"metrics/{group}/test.json": {} for group in ("tabular", "cifar", "image")}
    assert collect.trained_datasets({"params": tree, "metrics": metrics}) == ["tabular", "image", "cifar"]
    row = collect._dataset_params(tree, "cifar")
    assert (row["data.kind"], row["data.source"], row["train.model"]) == ("image", "cifar10", "cnn")


def test_show_has_a_column_for_the_group():
    cifar = {"cifar.test_accuracy": 0.9, "cifar.chance_accuracy": 0.1}
    records = [
        record("workspace", typ="baseline", **accuracies(0.9, 0.97, 0.75), **cifar),
        record("main", typ="baseline", **accuracies(0.9, 0.97, 0.75), **cifar),
        record("a1", name="fast", lr=0.1, **accuracies(0.8, 0.1, 0.58), **{"cifar.test_accuracy": 0.5}),
    ]
    shown = {"tabular": "tabular", "image": "image", "text": "text", "cifar": "image", "mnist": "image"}
    frame = show.table(records, KEYS, shown).set_index("experiment")
    assert "mnist" not in " ".join(frame.columns)  # a group the pipeline did not run has no column
    assert frame.loc["fast", "cifar (chance 0.100)"] == "0.500 (-40.0)"


def test_the_report_reads_a_group_by_its_kind(tmp_path, default_params):
    write_results(tmp_path / "results", default_params)
    table = pd.read_csv(tmp_path / "results" / "experiments.csv")
    cifar = table[table["dataset"] == "image"].assign(dataset="cifar", **{"data.kind": "image"})
    cifar["test_accuracy"] -= 0.2
    pd.concat([table, cifar]).to_csv(tmp_path / "results" / "experiments.csv", index=False)
    curves = pd.read_csv(tmp_path / "results" / "curves.csv")
    pd.concat([curves, curves[curves["dataset"] == "image"].assign(dataset="cifar")]).to_csv(
        tmp_path / "results" / "curves.csv", index=False
    )
    runs, _ = results.load(tmp_path / "results")
    kinds = results.kinds(runs)
    assert kinds["cifar"] == "image" and primary.metric(kinds["cifar"]) == "test_accuracy"
    assert primary.ordered(runs["dataset"], kinds) == ["tabular", "image", "cifar", "text"]
    build.write(tmp_path / "results", tmp_path / "reports")
    summary = (tmp_path / "reports" / "summary.md").read_text()
    baselines = summary.split("## Baselines")[1].split("\n## ")[0]
    assert "| cifar | 0.770 |" in baselines  # the image baseline's 0.97, 20 points lower


def test_collect_writes_each_rows_data_type(default_params):
    metrics = {f"metrics/{group}/test.json": {group: {"test_accuracy": 0.5}} for group in ("image", "cifar")}
    baseline = {"name": "main", "rev": "c0", "state": "success", "log": None}
    baseline |= {"params": with_cifar(default_params), "metrics": metrics}
    table = collect.rows(baseline, [], {})
    assert dict(zip(table["dataset"], table["kind"], strict=True)) == {"image": "image", "cifar": "image"}


def test_results_collected_before_the_kind_column_read_a_group_by_its_data_kind(tmp_path, default_params):
    write_results(tmp_path / "results", default_params)
    table = pd.read_csv(tmp_path / "results" / "experiments.csv").drop(columns="kind")
    cifar = table[table["dataset"] == "image"].assign(dataset="cifar", **{"data.kind": "image"})
    pd.concat([table, cifar]).to_csv(tmp_path / "results" / "experiments.csv", index=False)
    runs, _ = results.load(tmp_path / "results")
    assert results.kinds(runs) == {"tabular": "tabular", "image": "image", "text": "text", "cifar": "image"}
