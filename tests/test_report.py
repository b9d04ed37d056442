"""The report: sensitivity and noise from a known study, the written files, and refusals of bad results."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.synthetic_results import LOCAL_SOURCE, write_results
from tuninglab.__main__ import main
from tuninglab.lab import files, params
from tuninglab.report import analysis, build, figures, owned, results, sensitivity, stats

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
    build.write(folder / "results", folder / "reports")
    return folder / "reports"


def row(table: pd.DataFrame, dataset: str, hyperparameter: str) -> pd.Series:
    chosen = table[(table["dataset"] == dataset) & (table["hyperparameter"] == hyperparameter)]
    assert len(chosen) == 1
    return chosen.iloc[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_each_value_is_compared_with_the_baseline_from_their_repeats_and_judged_together(study):
    runs, _ = results.load(study)
    repeats = results.load_repeats(study, runs)
    assert set(repeats[repeats["experiment"] == "baseline"]["seed"]) == {42, 43, 44}
    effects = {(e.dataset, e.hyperparameter): e for e in sensitivity.effects(runs, repeats)}
    lr = {value.label: value for value in effects["tabular", "train.lr"].values}
    assert lr["0.005"].versus is None  # the baseline's value
    worse = lr["0.001"].versus
    assert worse.comparison.test == stats.PAIRED and worse.comparison.difference == pytest.approx(-0.13)
    assert worse.comparison.low < -0.13 < worse.comparison.high < 0 and worse.verdict == stats.WORSENS
    hidden = effects["tabular", "train.hidden"]  # +0.3 points, a half-width of about 0.9
    assert [v.versus.verdict for v in hidden.values if v.versus] == [stats.NOT_DETECTED]
    assert hidden.detected is False and effects["tabular", "train.lr"].detected is True
    # text's sgd: -1.0 points, an interval that misses 0 alone, but not once its family is adjusted
    sgd = next(v for v in effects["text", "train.optimizer"].values if v.label == "sgd").versus
    assert sgd.comparison.high < 0 and sgd.comparison.p < stats.ALPHA < sgd.p_adjusted
    assert sgd.verdict == stats.NOT_AFTER_CORRECTION


def test_results_without_repeats_are_one_run_each_with_no_interval(tmp_path, default_params):
    write_results(tmp_path / "results", default_params, repeats=0)
    study = analysis.load(tmp_path / "results")
    assert set(study.per_repeat["repeat"]) == {0} and study.comparisons == 0
    assert study.intervals["tabular"] == stats.Interval(0.93, None, 1)
    verdicts = {v.versus.verdict for e in study.effects for v in e.values if v.versus}
    assert verdicts == {stats.ONE_RUN} and {e.detected for e in study.effects} == {None}
    rmsprop = study.found[study.found["experiment"] == "ofat-optimizer-rmsprop"]
    assert rmsprop[rmsprop["rule"] == "vs baseline"]["text"].str.endswith(stats.ONE_RUN).all()


def test_one_at_a_time_orders_values_merges_repeats_and_flags_divergence(study):
    runs, _ = results.load(study)
    table = sensitivity.one_at_a_time(runs, results.load_repeats(study, runs))
    lr = row(table, "image", "train.lr")
    assert json.loads(lr["values"]) == ["0.001", "0.005", "0.01", "0.1"]
    assert json.loads(lr["accuracies"]) == [0.9, 0.97, 0.95, 0.1]
    assert (lr["best_value"], lr["worst_value"], lr["baseline_value"]) == ("0.005", "0.1", "0.005")
    assert lr["spread"] == pytest.approx(0.87)
    assert json.loads(lr["diverged_values"]) == ["0.1"]
    assert not lr["at_edge"] and lr["detected"]
    assert json.loads(lr["verdict"]) == ["worsens", None, "worsens", "worsens"]
    assert json.loads(lr["test"]) == ["paired", None, "paired", "paired"]
    # not seed, not the failed batch size, not the manual hidden=[64], not the other text source
    assert set(table["hyperparameter"]) == {
        "train.lr",
        "train.dropout",
        "train.optimizer",
        "train.hidden",
        "train.weight_decay",
    }
    assert json.loads(row(table, "text", "train.hidden")["values"]) == ["[128]", "[128, 128]"]


def test_one_effect_per_hyperparameter_and_dataset_feeds_the_table_and_the_sections(study):
    runs, _ = results.load(study)
    effects = sensitivity.effects(runs)
    assert sensitivity.table(effects).equals(sensitivity.one_at_a_time(runs))
    grouped = analysis.by_hyperparameter(effects)
    assert next(iter(grouped)) == "train.lr"  # the largest spread first
    lr = grouped["train.lr"]["image"]
    assert lr in effects and lr.row() == row(sensitivity.table(effects), "image", "train.lr").to_dict()
    by_value = {value.label: value for value in lr.values}
    assert [value.label for value in lr.values] == ["0.001", "0.005", "0.01", "0.1"]
    assert by_value["0.005"].is_baseline and by_value["0.005"].experiment == "baseline"
    assert by_value["0.01"].experiment == "ofat-lr-0.01"
    assert by_value["0.01"].repeats == ("optimizer_lr-optimizer-adam-lr-0.01",)
    assert by_value["0.1"].diverged and by_value["0.1"].at_chance
    assert (lr.best.label, lr.worst.label, lr.spread) == ("0.005", "0.1", pytest.approx(0.87))


def test_only_one_at_a_time_studies_feed_the_sections_and_repeats_are_merged(study):
    runs, _ = results.load(study)
    groups = sensitivity.varied_alone(runs)
    lr = groups["image", "train.lr"]
    # the grid's adam runs repeat ofat-lr-0.01 and ofat-lr-0.1: in, as repeats of those
    assert set(lr["experiment"]) == {
        "baseline",
        "ofat-lr-0.001",
        "ofat-lr-0.01",
        "ofat-lr-0.1",
        "optimizer_lr-optimizer-adam-lr-0.01",
        "optimizer_lr-optimizer-adam-lr-0.1",
    }
    assert lr.set_index("experiment").at["optimizer_lr-optimizer-adam-lr-0.1", "same_as"] == "ofat-lr-0.1"
    assert "hidden-by-hand" not in set(groups["image", "train.hidden"]["experiment"])  # a manual run
    assert ("text", "data.source") not in groups  # another data source is another dataset


def test_edge_rule_extends_only_where_the_allowed_range_goes_further(study):
    runs, _ = results.load(study)
    table = sensitivity.one_at_a_time(runs, results.load_repeats(study, runs))
    dropout = row(table, "text", "train.dropout")  # 0.5 best of 0 / 0.2 / 0.5; dropout < 1 allowed
    assert (dropout["at_edge"], dropout["extend"]) == ("highest", "higher")
    assert not row(table, "tabular", "train.dropout")["at_edge"]  # 0 and 0.2 tie for best
    decay = row(table, "tabular", "train.weight_decay")  # 0 best of 0 / 0.001 / 0.01; 0 is the lowest allowed
    assert (decay["at_edge"], decay["extend"]) == ("lowest", "")
    assert row(table, "tabular", "train.hidden")["detected"] == False  # noqa: E712 (+0.3 points: none detected)
    assert sensitivity.extension("train.lr", "image", 0.001, "lowest") == "lower"  # lr > 0: no lower bound
    assert sensitivity.param_key("train.lr", "image") == "image.train.lr"
    assert sensitivity.param_key("data.normalize", "image") == "image.data.normalize"


def test_report_writes_every_file_with_numbers_from_the_csv(written):
    out = written
    for name in ["summary.md", "summary.html", "explorer.html", "observations.csv", "sensitivity.csv"]:
        assert (out / name).stat().st_size > 0, name
    for name in ["curves-train_lr", "time-train_lr", "curves-train_dropout", "sensitivity"]:
        assert (out / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
    text = (out / "summary.md").read_text()
    assert (
        "`ofat-lr-0.1` (also run as `optimizer_lr-optimizer-adam-lr-0.1`) on image: with train.lr=0.1: "
        "test accuracy -87.0 points vs baseline (0.100 vs 0.970; chance 0.112), 95 % CI -87.9 to -86.1 "
        "points, paired by seed; the loss diverged in 3 of 3 repeats" in text
    )
    assert (
        "| train.lr | tabular (chance 0.333) | image (chance 0.112) | text (chance 0.578) | also run as |"
        in text
    )
    assert (
        "| 0.1 | 0.900 (-3.0) | 0.100 (-87.0) diverged no better than chance | "
        "0.580 (-17.0) no better than chance | optimizer\\_lr-optimizer-adam-lr-0.1 |" in text
    )
    assert (
        "- **image**: train.lr 87.0, train.optimizer 5.0, train.weight\\_decay 2.0, train.dropout ~1.5, "
        "train.hidden ~0.5" in text
    )
    assert "- **image** (chance 0.112): spread 87.0 points; best train.lr=0.005 (0.970), worst 0.1" in text
    assert (
        "train.lr=0.1 worsens image accuracy by 87.0 points (95 % CI -87.9 to -86.1)" in text
        and "train.hidden=\\[128, 128\\] no detectable effect on tabular (+0.3 points, 95 % CI -0.6 to 1.2)"
        in text
    )
    assert (
        "The p-values of all 30 comparisons with an interval are adjusted together with Benjamini-Hochberg"
        in text
    )
    assert (
        "- **image**, by the largest difference from the baseline: train.lr=0.1 worsens image accuracy by "
        "87.0 points (95 % CI -87.9 to -86.1); train.optimizer=sgd worsens" in text
    )
    assert "**train.hidden**: no detectable effect on tabular, image, text; spread" in text
    assert "**train.dropout**: a detectable effect on tabular, text; no detectable effect on image" in text
    assert "seed noise" not in text and not (out / "noise.csv").exists()
    sensitivity_csv = pd.read_csv(out / "sensitivity.csv").set_index(["dataset", "hyperparameter"])
    assert json.loads(sensitivity_csv.at[("image", "train.lr"), "ci_low"])[0] == pytest.approx(
        -0.0786, abs=1e-3
    )
    assert (
        "Extend the range of train.dropout on text to higher values: its best value 0.5 is the highest tried"
        in text
    )
    assert (
        "train.weight\\_decay on tabular: its best value 0 is the lowest allowed, so there is no range to "
        "extend" in text
    )
    assert "![train.lr: validation curves](figures/curves-train_lr.png)" in text
    assert "- `ofat-batch_size-16` failed" in text
    observed = pd.read_csv(out / "observations.csv")
    overfit = observed[(observed["experiment"] == "ofat-dropout-0.0") & (observed["kind"] == "overfitting")]
    assert set(overfit["dataset"]) == {"tabular", "image", "text"}
    assert "optimizer_lr-optimizer-adam-lr-0.1" not in set(observed["experiment"])  # merged into ofat-lr-0.1


def test_chance_is_beside_every_accuracy_and_flags_runs_at_chance(written):
    text = (written / "summary.md").read_text()
    baselines = text[text.index("## Baselines") : text.index("## Hyperparameters")]
    assert "| text | 0.750 | 0.578 |" in baselines  # test accuracy, then chance (majority class)
    assert "- Best run on text: `ofat-dropout-0.5` (0.760, chance 0.578;" in text
    assert (
        "- No better than chance (always predicting the majority class): `ofat-lr-0.1` on image, text."
        in text
    )
    observed = pd.read_csv(written / "observations.csv").set_index(["experiment", "dataset", "kind"])
    assert observed.at[("ofat-lr-0.1", "text", "no better than chance"), "headline"] == (
        "no better than chance (majority class 0.578)"
    )
    assert (
        "no better than chance (majority class 0.578)"
        in observed.at[("ofat-lr-0.1", "text", "vs baseline"), "text"]
    )
    assert ("ofat-lr-0.1", "tabular", "no better than chance") not in observed.index  # 0.900 vs 0.333


def test_manual_runs_other_data_and_thread_counts_are_reported_apart(written):
    text = (written / "summary.md").read_text()
    manual = text[text.index("## Manual runs") : text.index("## Other runs")]
    assert "| hidden-by-hand | manual | train.hidden=\\[64\\] | 0.920 | 0.960 | 0.745 | ok |" in manual
    assert "hidden-by-hand" not in text[: text.index("## Manual runs")]
    other_data = text[text.index("## Other data") :]
    assert (
        f"| text (source: {LOCAL_SOURCE}) | text-source-local | manual |  | 0.810 | 0.500 | ok |"
        in other_data
    )
    assert "text-source-local" not in text[: text.index("## Other data")]  # 0.810 is not the best text run
    assert (
        "Runs compared here trained with 1 CPU thread(s) and AVX2 kernels (torch's CPU capability), as the "
        "baseline did; numpy's SIMD level X86\\_V3, torch 2.14.1, numpy 2.4.6, on Synthetic CPU."
        in text
        and "Not compared: `noise-seed-3` on tabular, image, text (2 threads vs baseline's 1)." in text
    )
    seed_3 = "| noise-seed-3 | noise | train.seed=3 | 0.990 | 0.900 | 0.600 |"
    assert f"{seed_3} ok, not compared: 2 threads vs baseline's 1 |" in text


def test_runs_computed_with_other_kernels_or_threads_are_not_compared(study):
    runs, _ = results.load(study)
    other = runs.index[(runs["experiment"] == "ofat-lr-0.1") & (runs["dataset"] == "image")]
    runs.loc[other, "cpu_capability"] = "AVX512"
    runs.loc[other, "used_threads"] = 2
    notes = results.computed_differently(runs)
    assert notes[other].tolist() == ["2 threads vs baseline's 1; AVX512 kernels vs baseline's AVX2"]
    assert (notes[runs.index.difference(other)].isin(["", "2 threads vs baseline's 1"])).all()
    runs["not_compared"] = notes
    assert other[0] not in results.compared(runs).index


def test_a_run_with_no_trained_epoch_is_reported_without_a_score(study, tmp_path):
    """A run that diverged in its first epoch has no test metric: it is said to be diverged, never `nan`."""
    runs = pd.read_csv(study / "experiments.csv")
    mine = (runs["experiment"] == "ofat-optimizer-rmsprop") & (runs["dataset"] == "image")
    runs.loc[mine, ["test_accuracy", "macro_f1", "balanced_accuracy", "best_epoch", "best_val_loss"]] = None
    runs.loc[mine, ["diverged", "status", "diverged_epoch"]] = [True, "diverged", 1]
    runs.to_csv(study / "experiments.csv", index=False)
    build.write(study, tmp_path / "reports")
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert " nan" not in summary  # a missing loss reads NaN; a missing score is never a number
    assert "| rmsprop |" in summary and "diverged, nothing trained" in summary
    assert (
        "`ofat-optimizer-rmsprop` on image: with train.optimizer=rmsprop: no test accuracy (nothing trained)"
        in (summary)
    )


def test_time_charts_show_cpu_time_of_training(study):
    runs, _ = results.load(study)
    effects = analysis.by_hyperparameter(sensitivity.effects(runs))["train.lr"]
    figure = figures.cpu_time("train.lr", effects)
    axis = figure.axes[0]
    assert axis.get_ylabel() == "CPU seconds (training)" and "CPU time" in axis.get_title()
    tabular = effects["tabular"].runs
    by_value = tabular.groupby("train.lr")
    assert list(axis.lines[0].get_xdata()) == ["0.001", "0.005", "0.01", "0.1"]
    assert list(axis.lines[0].get_ydata()) == pytest.approx(list(by_value["cpu_time_s"].mean()))
    assert list(by_value["cpu_time_s"].mean()) != list(by_value["train_time_s"].mean())


def test_summary_html_is_self_contained(study, tmp_path):
    build.write(study, tmp_path / "reports")
    page = (tmp_path / "reports" / "summary.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(
        list((tmp_path / "reports" / "figures").glob("*.png"))
    )
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<table>" in page


def test_summary_escapes_names_values_paths_and_errors(tmp_path, default_params):
    write_results(tmp_path / "results", default_params, hostile=True)
    build.write(tmp_path / "results", tmp_path / "reports")
    page = (tmp_path / "reports" / "summary.html").read_text()
    tags = re.findall(r"<(\w+)[^>]*>", page)
    assert "svg" not in tags and tags.count("script") == 0
    assert all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'<img [^>]*src="([^"]*)"', page)
    )
    assert "<code>x&lt;svg&gt;</code>" in page
    assert "<td>&lt;script&gt;alert(1)&lt;</td>" in page
    assert "failed: error: train.lr: &lt;img src=x onerror=alert(1)&gt; is not allowed" in page
    assert "<td>text (source: /x/&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;b&lt;/b&gt;.csv)</td>" in page
    markdown = (tmp_path / "reports" / "summary.md").read_text()
    assert "| x&lt;svg&gt; | manual | train.lr=0.02 |" in markdown  # tables: every cell escaped
    outside_code = re.sub(r"(`+).*?\1", "", markdown)  # a code span shows its text as it is
    assert "<img" not in outside_code and "<svg" not in outside_code and "<script" not in outside_code


def test_missing_results_say_what_to_run(tmp_path):
    with pytest.raises(results.ReportError, match=r"experiments.csv not found: run a study first"):
        build.write(tmp_path / "nowhere", tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_empty_results_say_what_to_run(study, tmp_path):
    (study / "experiments.csv").write_text("")
    with pytest.raises(results.ReportError, match=r"experiments.csv is empty: run a study first"):
        build.write(study, tmp_path / "reports")


def test_results_from_an_older_version_name_the_missing_columns(study, tmp_path):
    old = pd.read_csv(study / "curves.csv").drop(columns=["val_accuracy", "lr"])
    old.to_csv(study / "curves.csv", index=False)
    with pytest.raises(results.ReportError, match=r"lacks the columns val_accuracy, lr .* study collect"):
        build.write(study, tmp_path / "reports")
    old = pd.read_csv(study / "experiments.csv").drop(columns=["chance_accuracy", "cpu_time_s"])
    old.to_csv(study / "experiments.csv", index=False)
    with pytest.raises(results.ReportError, match=r"lacks the columns chance_accuracy, cpu_time_s "):
        build.write(study, tmp_path / "reports")
    unprefixed = pd.read_csv(study / "experiments.csv")  # training params named `lr`, not `train.lr`
    unprefixed.columns = [c.removeprefix("train.") for c in unprefixed.columns]
    unprefixed.to_csv(study / "experiments.csv", index=False)
    with pytest.raises(results.ReportError, match=r"lacks the columns train.seed, chance_accuracy"):
        build.write(study, tmp_path / "reports")


def test_a_failed_report_leaves_the_previous_one_alone(written, tmp_path):
    before = snapshot(written)
    (tmp_path / "experiments.csv").write_text("experiment,dataset\n")
    with pytest.raises(results.ReportError):
        build.write(tmp_path, written)
    assert snapshot(written) == before
    assert [p.name for p in written.parent.iterdir() if p.name.startswith(".reports")] == []


def test_the_report_refuses_a_folder_holding_what_it_did_not_write(study, tmp_path):
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "figures" / "drawing.png").write_bytes(b"mine")
    with pytest.raises(results.ReportError) as refused:
        build.write(study, out)
    assert str(refused.value).startswith(
        f"{out} holds figures/, notes.txt and no manifest.json of what the lab"
    )
    assert snapshot(out) == {"notes.txt": b"mine", "figures/drawing.png": b"mine"}
    with pytest.raises(results.ReportError, match=r"notes.txt is a file, not a folder"):
        build.write(study, out / "notes.txt")


def test_report_out_a_repository_is_refused_with_one_line(study, tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "README.md").write_text("# mine\n")
    code = main(["report", "--results", str(study), "--out", str(repo)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(
        f"error: {repo} holds .git/, README.md and no manifest.json of what the lab wrote"
    )
    assert snapshot(repo) == {".git/HEAD": b"ref: refs/heads/main\n", "README.md": b"# mine\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "results"]  # no temporary folder left


def quick_files(
    runs: pd.DataFrame, curves: pd.DataFrame, per_repeat: pd.DataFrame, results_dir: Path, folder: Path
) -> None:
    """Two of the report's files, for the tests of what a report replaces (the real ones take seconds)."""
    (folder / "figures").mkdir()
    (folder / "figures" / "curves-train_lr.png").write_bytes(b"png")
    (folder / "summary.md").write_text(f"{runs['experiment'].nunique()} experiments\n")


def test_the_report_replaces_only_its_own_files(study, tmp_path, monkeypatch):
    out = tmp_path / "reports"
    out.mkdir()  # empty: fine
    build.write(study, out)
    manifest = owned.read_manifest(out)
    assert set(manifest["files"]) == set(snapshot(out)) - {owned.MANIFEST}
    monkeypatch.setattr(build, "_write_files", quick_files)
    (out / "figures" / "curves-old.png").write_bytes(b"from an earlier report")
    files.write_json(
        out / owned.MANIFEST, manifest | {"files": [*manifest["files"], "figures/curves-old.png"]}
    )
    build.write(study, out)
    assert not (out / "figures" / "curves-old.png").exists()  # listed by the earlier report: its own
    (out / "figures" / "mine.png").write_bytes(b"mine")
    with pytest.raises(
        results.ReportError, match=r"holds what the lab did not write there \(figures/mine.png\)"
    ):
        build.write(study, out)
    (out / "figures" / "mine.png").unlink()
    # a manifest cannot make the report delete outside its folder
    (tmp_path / "victim.txt").write_text("mine")
    manifest = owned.read_manifest(out)
    files.write_json(out / owned.MANIFEST, manifest | {"files": [*manifest["files"], "../victim.txt"]})
    build.write(study, out)
    assert (tmp_path / "victim.txt").read_text() == "mine"


def test_a_report_of_more_experiments_is_replaced_only_with_force(study, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(build, "_write_files", quick_files)
    out = tmp_path / "reports"
    build.write(study, out)
    fewer = pd.read_csv(study / "experiments.csv")
    fewer = fewer[~fewer["experiment"].isin(["noise-seed-1", "hidden-by-hand"])]
    fewer.to_csv(study / "experiments.csv", index=False)
    before = snapshot(out)
    args = ["report", "--results", str(study), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == (
        f"error: {out} was written from 20 experiments; the new one has 18 and would lose 2: "
        "hidden-by-hand, noise-seed-1; pass --force to replace it"
    )
    assert snapshot(out) == before
    assert main([*args, "--force"]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: replaced 20 experiments with 18 (2 dropped: hidden-by-hand, noise-seed-1)" in printed
    assert len(owned.read_manifest(out)["experiments"]) == 18
    assert main(args) == 0  # the same experiments again: nothing lost
    assert f"{out}: replaced 18 experiments with 18" in capsys.readouterr().out


def test_report_command_exits_2_with_one_line(tmp_path, capsys):
    code = main(["report", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "study run ofat" in err[0]
    assert not (tmp_path / "reports").exists()


DAMAGED_RESULTS = [
    # (id, how experiments.csv is damaged, what the error says of it)
    ("binary garbage", lambda text: b"\x00\xff\xfe" + text[3:], "byte 0xff on line 1 is not UTF-8 text"),
    ("cut mid-line", lambda text: text[:-20], "stops without a line end: the file was cut short"),
    ("a record short", lambda text: text.replace(b",ofat,", b",", 1), "fields where the header has"),
]


@pytest.mark.parametrize(
    ("damage", "said"), [d[1:] for d in DAMAGED_RESULTS], ids=[d[0] for d in DAMAGED_RESULTS]
)
def test_damaged_results_are_refused_with_one_line_saying_how_to_restore_them(
    study, tmp_path, capsys, damage, said
):
    csv = study / "experiments.csv"
    csv.write_bytes(damage(csv.read_bytes()))
    code = main(["report", "--results", str(study), "--out", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {csv} is damaged: ") and said in err[0]
    assert err[0].endswith(
        f"restore it with git (git restore {csv}), or run python -m tuninglab study collect --force to "
        "write it again from DVC's experiments"
    )
    assert not (tmp_path / "reports").exists()


def test_report_out_under_a_file_is_refused_with_one_line(study, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("README.md").write_text("# mine\n")
    code = main(["report", "--results", str(study), "--out", "README.md/sub"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        f"error: README.md/sub cannot be made: {tmp_path / 'README.md'} is a file, not a folder; "
        "name a new or empty folder"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "results"]


# Root writes into read-only folders; without the capability to override permissions it cannot.
WITHOUT_OVERRIDE = (
    ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
    if os.geteuid() == 0 and shutil.which("setpriv")
    else []
)


def report_command(*args: str) -> subprocess.CompletedProcess:
    """`python -m tuninglab report ARGS`, where it can, in a process that cannot override permissions."""
    command = [*WITHOUT_OVERRIDE, sys.executable, "-m", "tuninglab", "report", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


def permissions_enforced(folder: Path) -> bool:
    """Whether a process like `report_command`'s is refused writing into the read-only `folder`."""
    probe = [*WITHOUT_OVERRIDE, sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"]
    return subprocess.run(probe, capture_output=True).returncode != 0


@pytest.mark.parametrize(
    "locked", [["above"], ["above/reports", "above/reports/figures"]], ids=["the folder above", "the report"]
)
def test_a_read_only_out_is_refused_before_any_work_and_nothing_is_left(study, tmp_path, monkeypatch, locked):
    monkeypatch.setattr(build, "_write_files", quick_files)
    out = tmp_path / "above" / "reports"
    build.write(study, out)
    before = sorted((tmp_path / "above").rglob("*")), snapshot(tmp_path / "above")
    folders = [tmp_path / name for name in locked]
    for folder in folders:
        folder.chmod(0o555)
    try:
        if not permissions_enforced(folders[0]):
            pytest.skip("this user writes into read-only folders: permissions are not enforced")
        done = report_command("--results", str(study), "--out", str(out))
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: {out} cannot be written: permission denied on {', '.join(map(str, folders))} (the lab must "
        "list, make and delete files there); make it writable, or name another folder"
    ]
    # the report as it was, and no .reports-new-* or .reports-old-* folder beside it
    assert (sorted((tmp_path / "above").rglob("*")), snapshot(tmp_path / "above")) == before


def test_results_from_before_balanced_accuracy_load_with_it_empty(study, tmp_path):
    old = pd.read_csv(study / "experiments.csv").drop(columns=["balanced_accuracy"])
    old.to_csv(study / "experiments.csv", index=False)
    runs, _ = results.load(study)
    assert runs["balanced_accuracy"].isna().all() and runs["macro_f1"].notna().any()
    build.write(study, tmp_path / "reports")
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert (
        "balanced accuracy" in summary
        and "- ranking: runs of a classifier are ranked by test accuracy" in summary
    )


def test_a_random_study_gets_its_expected_best_of_n_table_and_figure(study):
    runs, _ = results.load(study)
    runs.loc[runs["study"] == "optimizer_lr", "study_kind"] = "random"  # its 4 trials, as if drawn
    table = analysis.expected_best(runs)
    image = table[(table["study"] == "optimizer_lr") & (table["dataset"] == "image")]
    assert list(image["n"]) == [1, 2, 3, 4] and set(image["trials"]) == {4}
    trials = results.compared(runs)
    trials = trials[(trials["study"] == "optimizer_lr") & (trials["dataset"] == "image")]
    assert image["expected"].iloc[0] == pytest.approx(trials["test_accuracy"].mean())
    best = trials.loc[trials["best_val_accuracy"].idxmax(), "test_accuracy"]
    assert image["expected"].iloc[-1] == pytest.approx(best)
    figure = figures.expected_best(
        "optimizer_lr", table[table["study"] == "optimizer_lr"], results.kinds(runs)
    )
    assert [axis.get_title() for axis in figure.axes] == ["tabular", "image", "text"]
    assert analysis.expected_best(runs[runs["study_kind"] != "random"]).empty
