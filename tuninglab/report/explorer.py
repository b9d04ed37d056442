"""The study report's explorer: one self-contained HTML page to browse the runs of a study.

"One run" has a dataset selector and one menu per hyperparameter that varies
among that dataset's finished runs; together they pick a run, whose metrics
(beside the baseline's, with the chance rate) and curves (over the
baseline's, drawn faintly) are shown. "All runs" draws every finished run of
the dataset at once: a parallel coordinates chart of the varying
hyperparameters and test accuracy, and a scatter of one chosen hyperparameter
against test accuracy, with the chance rate as a dashed line.

Runs on another data source are another dataset (`text (source: my.csv)`),
with no baseline; a run on another thread count than the baseline shows no
difference to it. The page needs no network: Plotly's JavaScript is inlined,
the data is embedded as JSON (NaN and infinity as null; `<`, `>` and `&` as
JSON escapes), and every number is formatted here, in Python, so the page
shows exactly what the CSV holds. Names and values reach the page only as
text (`textContent`, options, escaped Plotly labels), never as markup.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs

from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.files import write_text
from tuninglab.report import observations, results
from tuninglab.report.sensitivity import label

# column, label in the metrics table, decimals shown
METRICS = [
    ("test_accuracy", "Test accuracy", 3),
    ("chance_accuracy", "Chance (majority class)", 3),
    ("test_loss", "Test loss", 4),
    ("macro_f1", "Macro F1", 3),
    ("best_val_accuracy", "Best validation accuracy", 3),
    ("best_epoch", "Best epoch", 0),
    ("epochs_run", "Epochs run", 0),
    ("cpu_time_s", "CPU time of training (s)", 1),
    ("train_time_s", "Wall time of training (s)", 1),
    ("used_threads", "CPU threads", 0),
]
CURVES = ["train_loss", "val_loss", "val_accuracy"]
MISSING = "n/a"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
label { margin-right: 1em; white-space: nowrap; }
#controls { margin: 0.8em 0; line-height: 2.2; }
table { border-collapse: collapse; margin: 0.8em 0; }
td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; }
.charts > div { width: 560px; height: 360px; }
.note { color: #666; }
"""

BODY = """
<h1>Tuning Lab: explorer</h1>
<label>Dataset <select id="dataset">{datasets}</select></label>
<h2>One run</h2>
<div id="controls"></div>
<label>Run <select id="run"></select></label>
<p class="note" id="unfinished"></p>
<h3><span id="run-name"></span>: <span id="run-status"></span></h3>
<p class="note" id="run-same"></p>
<table>
<tr><th>Metric</th><th>This run</th><th>Baseline</th><th>Difference</th></tr>
{rows}
</table>
<div class="charts"><div id="chart-loss"></div><div id="chart-accuracy"></div></div>
<h2>All runs</h2>
<div id="chart-parcoords" style="height: 420px"></div>
<label>Hyperparameter <select id="scatter-param"></select></label>
<div class="charts"><div id="chart-scatter"></div></div>
"""

SCRIPT = """
const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const $ = (id) => document.getElementById(id);
// Plotly reads a few HTML tags in its SVG text (not in parcoords): names and values go in as plain text
const plain = (text) => String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
let ds, current; // the chosen dataset's data, and the index of the run shown

function fill(select, values, labels) {
  select.replaceChildren(...values.map((value, i) => new Option(labels[i], value)));
}

function chooseDataset() {
  ds = DATA[$("dataset").value];
  $("controls").replaceChildren(...ds.params.map((p) => {
    const label = document.createElement("label"), select = document.createElement("select");
    select.id = p.id;
    fill(select, p.values, p.values);
    select.onchange = () => pick(p.name, select.value);
    label.append(p.name + " ", select);
    return label;
  }));
  fill($("run"), ds.runs.map((run, i) => i), ds.runs.map((run) => run.experiment));
  const names = ds.params.map((p) => p.name);
  fill($("scatter-param"), names, names);
  $("unfinished").textContent = ds.unfinished.length ? "Not selectable: " + ds.unfinished.join("; ") : "";
  drawParcoords();
  show(ds.baseline ?? 0);
}

// the run with this value that differs least from the run shown (the first such run on a tie)
function pick(name, value) {
  const now = ds.runs[current].settings;
  const distance = (i) => ds.params.filter((p) => ds.runs[i].settings[p.name] !== now[p.name]).length;
  const matches = ds.runs.map((run, i) => i).filter((i) => ds.runs[i].settings[name] === value);
  show(matches.reduce((best, i) => (distance(i) < distance(best) ? i : best)));
}

function show(i) {
  current = i;
  const run = ds.runs[i], base = ds.baseline === null ? null : ds.runs[ds.baseline];
  ds.params.forEach((p) => { $(p.id).value = run.settings[p.name]; });
  $("run").value = i;
  $("run-name").textContent = run.experiment;
  $("run-status").textContent = run.status;
  const same = ds.runs.filter((other) => other !== run &&
    ds.params.every((p) => other.settings[p.name] === run.settings[p.name]));
  $("run-same").textContent = same.length ?
    "Same settings: " + same.map((other) => other.experiment).join(", ") + " (pick it under Run)" : "";
  for (const [key, [value, difference]] of Object.entries(run.shown)) {
    $("metric-" + key).textContent = value;
    $("baseline-" + key).textContent = base ? base.shown[key][0] : "n/a";
    $("diff-" + key).textContent = difference;
  }
  const faint = base && base !== run ? base : null;
  const losses = [["train_loss", "train loss", "#1f77b4"], ["val_loss", "val loss", "#d62728"]];
  drawCurves("chart-loss", "Loss", losses, run, faint);
  drawCurves("chart-accuracy", "Validation accuracy", [["val_accuracy", "val accuracy", "#2ca02c"]], run,
    faint);
  drawScatter();
}

function drawCurves(id, title, series, run, base) {
  const lines = (curve, who, width, opacity) => series.map(([key, name, color]) =>
    ({x: curve.epoch, y: curve[key], name: who + name, mode: "lines", opacity, line: {color, width}}));
  const traces = (base ? lines(base.curve, "baseline ", 1, 0.35) : []).concat(lines(run.curve, "", 2, 1));
  Plotly.react(id, traces, {title: {text: title}, xaxis: {title: {text: "epoch"}}, margin: {t: 40}});
}

function drawParcoords() {
  const accuracy = ds.runs.map((run) => run.test_accuracy);
  const dimensions = ds.params.map((p) => ({
    label: p.name, values: ds.runs.map((run) => p.values.indexOf(run.settings[p.name])),
    tickvals: p.values.map((value, i) => i), ticktext: p.values,
  }));
  dimensions.push({label: "test accuracy", values: accuracy});
  Plotly.react("chart-parcoords",
    [{type: "parcoords", dimensions, line: {color: accuracy, colorscale: "Viridis", showscale: true}}],
    {title: {text: "Every finished run"}, margin: {l: 60, r: 60}});
}

function drawScatter() {
  const p = ds.params.find((q) => q.name === $("scatter-param").value);
  const trace = {
    type: "scatter", mode: "markers", x: ds.runs.map((run) => plain(run.settings[p.name])),
    y: ds.runs.map((run) => run.test_accuracy), text: ds.runs.map((run) => plain(run.experiment)),
    customdata: ds.runs.map((run, i) => i), hovertemplate: "%{text}: %{y:.3f}<extra></extra>",
    marker: {size: ds.runs.map((run, i) => (i === current ? 15 : 9)),
             color: ds.runs.map((run) => (run.status === "ok" ? "#1f77b4" : "#d62728"))},
  };
  const chance = ds.chance === null ? [] : [{type: "line", xref: "paper", x0: 0, x1: 1,
    y0: ds.chance, y1: ds.chance, line: {dash: "dash", color: "grey"}}];
  Plotly.react("chart-scatter", [trace], {
    title: {text: "Test accuracy by " + plain(p.name) + " (click a point to show its run)"},
    xaxis: {title: {text: plain(p.name)}, type: "category", categoryorder: "array",
            categoryarray: p.values.map(plain)},
    yaxis: {title: {text: "test accuracy (dashed: chance)"}}, margin: {t: 40}, shapes: chance,
  });
}

$("dataset").onchange = chooseDataset;
$("run").onchange = () => show(Number($("run").value));
$("scatter-param").onchange = drawScatter;
chooseDataset();
$("chart-scatter").on("plotly_click", (event) => show(event.points[0].customdata));
"""


def _number(value: Any) -> float | None:
    """A finite number as a float; missing, NaN and infinite values as None (null in JSON)."""
    return float(value) if pd.notna(value) and math.isfinite(value) else None


def _label(value: Any) -> str:
    """How a param value is shown and matched: `0.001`, `64`, `adam`, `[128, 128]`, `true`, `n/a`."""
    return MISSING if pd.isna(value) else label(value)


def _order(value: Any) -> tuple[int, float, str]:
    """Sort key of a param value: numbers by size first, then text, then missing values."""
    if pd.isna(value):
        return 2, 0.0, ""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        return 0, float(value), ""
    return 1, 0.0, _label(value)


def _text(value: Any, decimals: int) -> str:
    """A metric with fixed decimals, or `n/a`."""
    number = _number(value)
    return MISSING if number is None else f"{number:.{decimals}f}"


def _difference(value: Any, base: Any, decimals: int) -> str:
    """`value - base` with a sign, `0.000` when it rounds to zero, empty when either is missing."""
    a, b = _number(value), _number(base)
    if a is None or b is None:
        return ""
    text = f"{a - b:+.{decimals}f}"
    return f"{0:.{decimals}f}" if float(text) == 0 else text


def _run(
    row: pd.Series, baseline: pd.Series | None, names: list[str], curves: pd.DataFrame
) -> dict[str, Any]:
    """One finished run as the page uses it: settings as labels, numbers already formatted, its curve.

    No differences when `baseline` is None or the run is not compared with it (another thread count).
    """
    epoch = _number(row["diverged_epoch"])
    against = None if row["not_compared"] else baseline
    shown = {
        key: [
            _text(row[key], decimals),
            "" if against is None else _difference(row[key], against[key], decimals),
        ]
        for key, _, decimals in METRICS
    }
    at = f"at epoch {epoch:.0f}" if epoch is not None else "yes"
    shown["diverged"] = [at if row["status"] == "diverged" else "no", ""]
    curve = results.history(curves, row["experiment"], row["dataset"])
    return {
        "experiment": row["experiment"],
        "status": observations.status_text(row),
        "settings": {name: _label(row[name]) for name in names},
        "test_accuracy": _number(row["test_accuracy"]),
        "shown": shown,
        "curve": {"epoch": curve["epoch"].astype(int).tolist()}
        | {key: [_number(v) for v in curve[key]] for key in CURVES},
    }


def _dataset(runs: pd.DataFrame, names: list[str], curves: pd.DataFrame) -> dict[str, Any]:
    """The page's data for one dataset's rows, baseline first if any: controls, finished runs, the rest."""
    done = results.finished(runs)
    changed = {name for text in done["changed"] for name in text.split(",") if name}
    varying = sorted((name for name in names if name in changed), key=lambda name: name == "seed")
    is_baseline = done["experiment"] == "baseline"
    baseline = done[is_baseline].iloc[0] if is_baseline.any() else None
    values = {name: {_label(v): _order(v) for v in done[name]} for name in varying}
    unfinished = runs.drop(done.index)
    return {
        "params": [
            {
                "name": name,
                "id": "param-" + re.sub(r"[^\w-]", "-", name),
                "values": sorted(values[name], key=values[name].get),
            }
            for name in varying
        ],
        "runs": [_run(row, baseline, varying, curves) for _, row in done.iterrows()],
        "baseline": 0 if baseline is not None else None,
        "chance": _number((done if baseline is None else done[is_baseline])["chance_accuracy"].iloc[0]),
        "unfinished": [
            f"{row.experiment} ({row.status}{': ' + row.error if row.error else ''})"
            for row in unfinished.itertuples()
        ],
    }


def write(runs: pd.DataFrame, curves: pd.DataFrame, path: Path) -> None:
    """Write the explorer page of a study to `path`, atomically: one HTML file that needs no network.

    One entry of the dataset selector per dataset, and one per other data
    source a run used (`text (source: my.csv)`), each with a finished run.

    Args:
        runs: the runs table from `tuninglab.results.load` (with its derived columns).
        curves: the per-epoch curves from `tuninglab.results.load`.
        path: the HTML file to write; its folder is made if missing.
    """
    names = results.param_columns(runs)
    ordered = runs.sort_values("experiment", key=lambda e: e != "baseline", kind="stable")
    shown = ordered.apply(results.dataset_name, axis=1)
    labels = [d for d in dataset_names() if d in set(shown)] + sorted(set(shown) - set(dataset_names()))
    data = {
        label: _dataset(ordered[shown == label], names, curves)
        for label in labels
        if not results.finished(ordered[shown == label]).empty
    }
    rows = "\n".join(
        f'<tr><td>{label}</td><td id="metric-{key}"></td><td id="baseline-{key}"></td>'
        f'<td id="diff-{key}"></td></tr>'
        for key, label, _ in [*METRICS, ("diverged", "Diverged", 0)]
    )
    options = "".join(f'<option value="{html.escape(label)}">{html.escape(label)}</option>' for label in data)
    body = BODY.format(datasets=options, rows=rows)
    embedded = json.dumps(data, allow_nan=False)
    for character, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        embedded = embedded.replace(character, escape)  # nothing in the data can end or open a tag
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Tuning Lab: explorer</title>\n<style>{STYLE}</style>\n<script>{get_plotlyjs()}</script>\n"
        f'</head>\n<body>{body}<script type="application/json" id="explorer-data">{embedded}</script>\n'
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
    write_text(path, page)
