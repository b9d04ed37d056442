"""The explorer page: self-contained, its embedded data is the CSV's, and a real browser can drive it."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from tests.synthetic_results import HOSTILE_SOURCE, LOCAL_SOURCE, write_results
from tuninglab.lab import params
from tuninglab.report import analysis, build, explorer, results
from tuninglab.schema import TRAINED_STATUSES

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """The synthetic study's explorer page, with the CSV tables it was made from (read back raw)."""
    directory = tmp_path_factory.mktemp("results")
    write_results(directory, params.load(ROOT / "params.yaml"))
    runs, curves = results.load(directory)
    page = directory / "report" / "explorer.html"
    explorer.write(analysis.analyse(runs, curves), page)
    return page, pd.read_csv(directory / "experiments.csv"), pd.read_csv(directory / "curves.csv")


def embedded(page: Path) -> dict:
    """The JSON data the page carries, dataset by dataset."""
    found = re.search(
        r'<script type="application/json" id="explorer-data">(.*?)</script>', page.read_text(), re.S
    )
    assert found, "no embedded data"
    return json.loads(found.group(1))["datasets"]


class Balance(HTMLParser):
    """Every element of a page, checked to close in order: `problems` lists what does not."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"</{tag}> at line {self.getpos()[0]}")


def test_the_page_template_is_balanced_html() -> None:
    balance = Balance()
    balance.feed(explorer.asset("explorer.html"))
    balance.close()
    assert balance.problems == [] and balance.open == []
    for name in ("style", "plotly", "data", "script"):  # what `explorer.write` fills in
        assert "${" + name + "}" in explorer.asset("explorer.html")


def test_the_page_script_parses(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node not found: the explorer's script is checked with `node --check` (apt-get install nodejs)"
        )
    script = tmp_path / "explorer.js"
    script.write_text(explorer.asset("explorer.js"))
    checked = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_page_inlines_its_style_and_script(study: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    html = study[0].read_text()
    assert f"<style>{explorer.asset('explorer.css')}</style>" in html
    assert f"<script>{explorer.asset('explorer.js')}</script>" in html
    assert "${" not in html.replace(get_plotlyjs(), "")  # every placeholder filled


def csv_row(runs: pd.DataFrame, experiment: str, dataset: str) -> pd.Series:
    chosen = runs[(runs["experiment"] == experiment) & (runs["dataset"] == dataset)]
    assert len(chosen) == 1
    return chosen.iloc[0]


def test_page_is_self_contained(study: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    page, _, _ = study
    html = page.read_text()
    plotly_js = get_plotlyjs()
    assert f"<script>{plotly_js}</script>" in html  # the library itself, inlined
    ours = html.replace(plotly_js, "")  # (its code holds link texts such as its logo's, not fetched)
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:)?//""", ours, re.I), (
        "the page fetches something"
    )
    assert "<link" not in ours
    assert "<script src" not in ours
    assert not list(page.parent.glob("*.tmp"))


def test_embedded_data_is_the_csvs(study: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    page, runs, curves = study
    data = embedded(page)
    other = f"text (source: {LOCAL_SOURCE})"  # another data source is another dataset
    assert list(data) == ["tabular", "image", "text", other]
    assert data["text"]["metrics"][0] == ["test_accuracy", "test accuracy"]
    assert (data["text"]["metric"], data["text"]["quality"]) == ("test accuracy", "accuracy")
    for name, shown in data.items():
        dataset, on_other_source = name.split(" ")[0], name == other
        mine = runs[(runs["dataset"] == dataset) & ((runs["data.source"] == LOCAL_SOURCE) == on_other_source)]
        finished = mine[mine["status"].isin(TRAINED_STATUSES)]
        assert sorted(run["experiment"] for run in shown["runs"]) == sorted(finished["experiment"])
        for run in shown["runs"]:
            row = csv_row(runs, run["experiment"], dataset)
            assert run["score"] == row["test_accuracy"]
            assert run["shown"]["test_accuracy"][0] == f"{row['test_accuracy']:.3f}"
            assert run["shown"]["chance_accuracy"][0] == f"{row['chance_accuracy']:.3f}"
            assert run["shown"]["cpu_time_s"][0] == f"{row['cpu_time_s']:.1f}"
            assert run["shown"]["train_time_s"][0] == f"{row['train_time_s']:.1f}"
            curve = curves[(curves["experiment"] == run["experiment"]) & (curves["dataset"] == dataset)]
            assert run["curve"]["epoch"] == curve["epoch"].tolist()
            assert run["curve"]["val_loss"] == curve["val_loss"].tolist()
    assert data["image"]["runs"][data["image"]["baseline"]]["experiment"] == "baseline"
    assert (data[other]["baseline"], data[other]["chance"]) == (None, 0.5)
    assert data["text"]["chance"] == 0.578
    diverged = next(run for run in data["image"]["runs"] if run["experiment"] == "ofat-lr-0.1")
    assert diverged["status"] == "diverged at epoch 3, no better than chance"
    assert diverged["shown"]["test_accuracy"] == ["0.100", "-0.870"]
    at_chance = next(run for run in data["text"]["runs"] if run["experiment"] == "ofat-lr-0.1")
    assert at_chance["status"] == "ok, no better than chance"  # never a plain ok
    seed_3 = next(run for run in data["tabular"]["runs"] if run["experiment"] == "noise-seed-3")
    assert seed_3["status"] == "ok, not compared: 2 threads vs baseline's 1"
    assert seed_3["shown"]["test_accuracy"] == ["0.990", ""]  # no difference to a baseline of 1 thread
    assert data["image"]["unfinished"] == ["ofat-batch_size-16 (failed: failed (no log))"]


def test_controls_are_the_params_that_vary(study: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    data = embedded(study[0])
    # batch_size only changed in a failed run; seed (the noise reference) comes last
    assert [p["name"] for p in data["text"]["params"]] == [
        "train.lr",
        "train.optimizer",
        "train.hidden",
        "train.dropout",
        "train.weight_decay",
        "train.seed",
    ]
    lr, optimizer, hidden = data["text"]["params"][:3]
    assert (lr["id"], lr["values"]) == ("param-train-lr", ["0.001", "0.005", "0.01", "0.1"])
    assert optimizer["values"] == ["adam", "sgd", "rmsprop"]  # as they come, the baseline's first
    assert hidden["values"] == ["[64]", "[128]", "[128, 128]"]  # layer lists by depth, then width


def test_each_hyperparameter_changed_alone_carries_its_effect(
    study: tuple[Path, pd.DataFrame, pd.DataFrame],
) -> None:
    data = embedded(study[0])
    lr = next(p for p in data["image"]["params"] if p["name"] == "train.lr")
    assert lr["alone"]["values"] == ["0.001", "0.005", "0.01", "0.1"]
    assert lr["alone"]["accuracies"] == pytest.approx([0.9, 0.97, 0.95, 0.1])
    assert lr["alone"]["sentence"].startswith(
        "Changed alone (one-at-a-time studies): spread 87.0 points; best train.lr=0.005 (0.970), worst 0.1"
    )
    seed = next(p for p in data["image"]["params"] if p["name"] == "train.seed")
    assert seed["alone"] is None  # the noise reference, not a hyperparameter
    other = data[f"text (source: {LOCAL_SOURCE})"]
    assert all(p["alone"] is None for p in other["params"])  # another dataset: no effects


def test_nan_and_infinity_are_null(tmp_path: Path, default_params: dict) -> None:
    write_results(tmp_path, default_params)
    study = analysis.load(tmp_path)
    runs, curves = study.runs.copy(), study.curves.copy()
    runs.loc[runs["experiment"] == "ofat-lr-0.1", "test_loss"] = float("inf")
    curves.loc[curves["experiment"] == "ofat-lr-0.1", "val_loss"] = float("nan")
    explorer.write(dataclasses.replace(study, runs=runs, curves=curves), tmp_path / "explorer.html")
    run = next(
        r for r in embedded(tmp_path / "explorer.html")["image"]["runs"] if r["experiment"] == "ofat-lr-0.1"
    )
    assert run["curve"]["val_loss"] == [None, None]
    assert run["shown"]["test_loss"] == ["n/a", ""]


def text(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_browser_drives_the_page(study: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: apt-get install chromium"
        if os.environ.get("TUNINGLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    page_file, runs, _ = study
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri())
            assert text(page, "#run-name") == "baseline"

            page.select_option("#dataset", "image")
            page.select_option("#param-train-lr", "0.1")
            run, base = csv_row(runs, "ofat-lr-0.1", "image"), csv_row(runs, "baseline", "image")
            assert text(page, "#run-name") == "ofat-lr-0.1"
            assert text(page, "#run-status") == "diverged at epoch 3, no better than chance"
            assert text(page, "#metric-chance_accuracy") == f"{run['chance_accuracy']:.3f}"
            assert text(page, "#metric-test_accuracy") == f"{run['test_accuracy']:.3f}"
            assert text(page, "#baseline-test_accuracy") == f"{base['test_accuracy']:.3f}"
            assert text(page, "#diff-test_accuracy") == f"{run['test_accuracy'] - base['test_accuracy']:+.3f}"
            assert text(page, "#metric-diverged") == "at epoch 3"
            assert "optimizer_lr-optimizer-adam-lr-0.1" in text(
                page, "#run-same"
            )  # the same settings, run again
            # two epochs of this run, under the baseline's two curves of twenty
            loss = page.evaluate("document.getElementById('chart-loss').data.map(t => t.x.length)")
            assert loss == [20, 20, 2, 2]

            # sgd at lr 0.1 exists: lr stays; dropout 0.0 exists only at lr 0.005 with adam: both move
            page.select_option("#param-train-optimizer", "sgd")
            assert text(page, "#run-name") == "optimizer_lr-optimizer-sgd-lr-0.1"
            assert page.input_value("#param-train-lr") == "0.1"
            page.select_option("#param-train-dropout", "0")
            assert text(page, "#run-name") == "ofat-dropout-0.0"
            selected = (page.input_value("#param-train-lr"), page.input_value("#param-train-optimizer"))
            assert selected == ("0.005", "adam")
            assert (
                text(page, "#metric-best_epoch")
                == f"{csv_row(runs, 'ofat-dropout-0.0', 'image')['best_epoch']:.0f}"
            )

            # failed runs cannot be picked; every chart drew its traces
            options = page.locator("#run option").all_inner_texts()
            finished = runs[(runs["dataset"] == "image") & runs["status"].isin(TRAINED_STATUSES)]
            assert "ofat-batch_size-16" not in options and len(options) == len(finished) == 20
            assert page.locator("#param-train-batch_size").count() == 0
            traces = page.evaluate(
                "[...document.querySelectorAll('.js-plotly-plot')].map(c => [c.id, c.data.length])"
            )
            assert dict(traces) == {
                "chart-loss": 4,
                "chart-accuracy": 2,
                "chart-parcoords": 1,
                "chart-scatter": 2,  # every run, and the mean per value of the runs that changed only lr
            }
            assert page.locator("#chart-parcoords .parcoords").count() == 1
            assert text(page, "#scatter-note").startswith(
                "Changed alone (one-at-a-time studies): spread 87.0 points; best train.lr=0.005"
            )
            page.select_option("#scatter-param", "train.seed")
            assert text(page, "#scatter-note") == ""
            assert page.evaluate("document.getElementById('chart-scatter').data.length") == 1
        finally:
            browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith("file://")] == []


def test_browser_runs_no_markup_from_names_values_paths_or_errors(
    tmp_path: Path, default_params: dict
) -> None:
    """Both HTML pages of a report on hostile results: no dialog, no element made from a name or value."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: apt-get install chromium"
        if os.environ.get("TUNINGLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    write_results(tmp_path / "results", default_params, hostile=True)
    build.write(tmp_path / "results", tmp_path / "reports")
    dialogs: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((tmp_path / "reports" / "summary.html").as_uri())
            assert page.locator("svg, script, iframe, object").count() == 0
            sources = page.evaluate("[...document.images].map(i => i.src.slice(0, 22))")
            assert sources and set(sources) == {"data:image/png;base64,"}  # the report's own figures only
            assert page.get_by_text("x<svg>", exact=True).count() >= 1  # shown as text
            assert HOSTILE_SOURCE in page.locator("body").inner_text()

            page.goto((tmp_path / "reports" / "explorer.html").as_uri())
            assert page.locator("script").count() == 3  # Plotly, the data, the page's own
            assert page.locator("img, iframe, object").count() == 0
            labels = page.locator("#dataset option").all_inner_texts()
            assert f"text (source: {HOSTILE_SOURCE})" in labels
            page.select_option("#dataset", index=labels.index(f"text (source: {HOSTILE_SOURCE})"))
            assert text(page, "#run-name") == "img-source"
            for chart in ("chart-parcoords", "chart-scatter"):  # Plotly shows it as text, not a tag
                shown = page.evaluate(f"document.getElementById('{chart}').textContent")
                assert HOSTILE_SOURCE in shown, chart
            page.select_option("#dataset", "text")
            page.select_option("#run", label="x<svg>")
            assert text(page, "#run-name") == "x<svg>"
            assert "<script>alert(1)< (failed: error: train.lr: <img" in text(page, "#unfinished")
            assert page.locator("img, iframe, object").count() == 0
            assert page.locator("svg script, svg image, svg foreignObject").count() == 0
        finally:
            browser.close()
    assert dialogs == [] and errors == []
