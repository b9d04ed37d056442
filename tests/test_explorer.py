"""The explorer page: self-contained, its embedded data is the CSV's, and a real browser can drive it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from tests.synthetic_results import write_results
from tuninglab import explorer, params, results

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
    explorer.write(runs, curves, page)
    return page, pd.read_csv(directory / "experiments.csv"), pd.read_csv(directory / "curves.csv")


def embedded(page: Path) -> dict:
    """The JSON data the page carries."""
    found = re.search(
        r'<script type="application/json" id="explorer-data">(.*?)</script>', page.read_text(), re.S
    )
    assert found, "no embedded data"
    return json.loads(found.group(1))


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
    assert list(data) == ["tabular", "image", "text"]
    for dataset, shown in data.items():
        finished = runs[(runs["dataset"] == dataset) & runs["status"].isin(["ok", "diverged"])]
        assert sorted(run["experiment"] for run in shown["runs"]) == sorted(finished["experiment"])
        assert shown["runs"][shown["baseline"]]["experiment"] == "baseline"
        for run in shown["runs"]:
            row = csv_row(runs, run["experiment"], dataset)
            assert run["test_accuracy"] == row["test_accuracy"]
            assert run["shown"]["test_accuracy"][0] == f"{row['test_accuracy']:.3f}"
            assert run["shown"]["train_time_s"][0] == f"{row['train_time_s']:.1f}"
            curve = curves[(curves["experiment"] == run["experiment"]) & (curves["dataset"] == dataset)]
            assert run["curve"]["epoch"] == curve["epoch"].tolist()
            assert run["curve"]["val_loss"] == curve["val_loss"].tolist()
    diverged = next(run for run in data["image"]["runs"] if run["experiment"] == "ofat-lr-0.1")
    assert diverged["status"] == "diverged at epoch 3"
    assert diverged["shown"]["test_accuracy"] == ["0.100", "-0.870"]
    assert data["image"]["unfinished"] == ["ofat-batch_size-16 (failed: failed (no log))"]


def test_controls_are_the_params_that_vary(study: tuple[Path, pd.DataFrame, pd.DataFrame]) -> None:
    data = embedded(study[0])
    # batch_size only changed in a failed run; seed (the noise reference) comes last
    assert [p["name"] for p in data["text"]["params"]] == ["lr", "optimizer", "hidden", "dropout", "seed"]
    lr, optimizer, hidden = data["text"]["params"][:3]
    assert lr == {"name": "lr", "id": "param-lr", "values": ["0.001", "0.005", "0.01", "0.1"]}
    assert optimizer["values"] == ["adam", "rmsprop", "sgd"]
    assert hidden["values"] == ["[128, 128]", "[128]"]


def test_nan_and_infinity_are_null(tmp_path: Path, default_params: dict) -> None:
    write_results(tmp_path, default_params)
    runs, curves = results.load(tmp_path)
    runs.loc[runs["experiment"] == "ofat-lr-0.1", "test_loss"] = float("inf")
    curves.loc[curves["experiment"] == "ofat-lr-0.1", "val_loss"] = float("nan")
    explorer.write(runs, curves, tmp_path / "explorer.html")
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
            page.select_option("#param-lr", "0.1")
            run, base = csv_row(runs, "ofat-lr-0.1", "image"), csv_row(runs, "baseline", "image")
            assert text(page, "#run-name") == "ofat-lr-0.1"
            assert text(page, "#run-status") == "diverged at epoch 3"
            assert text(page, "#metric-test_accuracy") == f"{run['test_accuracy']:.3f}"
            assert text(page, "#baseline-test_accuracy") == f"{base['test_accuracy']:.3f}"
            assert text(page, "#diff-test_accuracy") == f"{run['test_accuracy'] - base['test_accuracy']:+.3f}"
            assert text(page, "#metric-diverged") == "at epoch 3"
            assert "optimizer_lr-adam-0.1" in text(page, "#run-same")  # the same settings, run again
            # two epochs of this run, under the baseline's two curves of twenty
            loss = page.evaluate("document.getElementById('chart-loss').data.map(t => t.x.length)")
            assert loss == [20, 20, 2, 2]

            # sgd at lr 0.1 exists: lr stays; dropout 0.0 exists only at lr 0.005 with adam: both move
            page.select_option("#param-optimizer", "sgd")
            assert text(page, "#run-name") == "optimizer_lr-sgd-0.1"
            assert page.input_value("#param-lr") == "0.1"
            page.select_option("#param-dropout", "0")
            assert text(page, "#run-name") == "ofat-dropout-0.0"
            assert (page.input_value("#param-lr"), page.input_value("#param-optimizer")) == ("0.005", "adam")
            assert (
                text(page, "#metric-best_epoch")
                == f"{csv_row(runs, 'ofat-dropout-0.0', 'image')['best_epoch']:.0f}"
            )

            # failed runs cannot be picked; every chart drew its traces
            options = page.locator("#run option").all_inner_texts()
            assert "ofat-batch_size-16" not in options and len(options) == 14
            assert page.locator("#param-batch_size").count() == 0
            traces = page.evaluate(
                "[...document.querySelectorAll('.js-plotly-plot')].map(c => [c.id, c.data.length])"
            )
            assert dict(traces) == {
                "chart-loss": 4,
                "chart-accuracy": 2,
                "chart-parcoords": 1,
                "chart-scatter": 1,
            }
            assert page.locator("#chart-parcoords .parcoords").count() == 1
        finally:
            browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith("file://")] == []
