"""The study report's explorer: one self-contained HTML page to browse the runs of a study.

"One run" has a dataset selector and one menu per hyperparameter that varies
among that dataset's finished runs; together they pick a run, whose metrics
(beside the baseline's, with the chance rate) and curves (over the
baseline's, drawn faintly) are shown. "All runs" draws every finished run of
the dataset at once: a parallel coordinates chart of the varying
hyperparameters and test accuracy, and a scatter of one chosen hyperparameter
against test accuracy, with the chance rate as a dashed line and, where a
one-at-a-time study changed it alone, its `sensitivity.Effect`: the mean per
value as a line, and the summary's sentence on it.

Each dataset is shown by its primary metric (`primary`: test accuracy, or a
regression's test R^2) and its task's metrics; the history's accuracy curves
of a regression are its R^2.

Runs on another data source are another dataset (`text (source: my.csv)`),
with no baseline; a run computed otherwise than the baseline (threads, kernels) shows no
difference to it. The page, its style and its script are package data
(`explorer.html`, `explorer.css`, `explorer.js`), inlined into the one output
file. The page needs no network: Plotly's JavaScript is inlined, the data is
embedded as JSON (NaN and infinity as null; `<`, `>` and `&` as JSON
escapes), and every number is formatted here, in Python, so the page shows
exactly what the CSV holds. Names and values reach the page only as text
(`textContent`, options, escaped Plotly labels), never as markup.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd
from plotly.offline import get_plotlyjs

from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.files import write_text
from tuninglab.report import format, importance, observations, primary, results, search_figures, summary
from tuninglab.report.analysis import Analysis
from tuninglab.report.importance import Search
from tuninglab.report.sensitivity import Effect, reading_order
from tuninglab.schema import DIVERGED, HISTORY_COLUMNS
from tuninglab.tasks import TASKS

MISSING = "n/a"


def metrics(kind: str) -> list[tuple[str, str]]:
    """The metrics the page shows for a data type, with labels: `format.METRICS` less other tasks' tests."""
    task = primary.task_record(kind)
    others = {name for other in TASKS.values() if other != task for name in other.test_metrics}
    labels = dict(task.metric_labels)
    return [(key, labels.get(key, label)) for key, (label, _) in format.METRICS.items() if key not in others]


def asset(name: str) -> str:
    """One of the page's package data files, as text: `explorer.html`, `explorer.css` or `explorer.js`."""
    return resources.files("tuninglab.report").joinpath(name).read_text(encoding="utf-8")


def _run(
    row: pd.Series,
    baseline: pd.Series | None,
    names: list[str],
    curves: pd.DataFrame,
    shown_metrics: list[str],
) -> dict[str, Any]:
    """One finished run as the page uses it: settings as labels, metrics already formatted, its curve.

    No differences when `baseline` is None or the run is not compared with it (computed otherwise).
    `shown_metrics` are the metric columns shown (`metrics`).
    """
    epoch = format.finite(row["diverged_epoch"])
    against = None if row["not_compared"] else baseline
    shown = {
        key: [
            format.metric(key, row[key], MISSING),
            "" if against is None else format.difference(row[key], against[key], format.METRICS[key][1]),
        ]
        for key in shown_metrics
    }
    at = f"at epoch {epoch:.0f}" if epoch is not None else "yes"
    shown["diverged"] = [at if row["status"] == DIVERGED else "no", ""]
    curve = results.history(curves, row["experiment"], row["dataset"])
    return {
        "experiment": row["experiment"],
        "status": observations.status_text(row),
        "settings": {name: format.value(row[name], MISSING) for name in names},
        "score": format.finite(primary.score(row)),
        "shown": shown,
        "curve": {key: [format.finite(v) for v in curve[key]] for key in HISTORY_COLUMNS}
        | {"epoch": curve["epoch"].astype(int).tolist()},
    }


def _alone(effect: Effect | None) -> dict[str, Any] | None:
    """A hyperparameter's effect as the scatter draws it: mean test accuracy per value, the sentence."""
    if effect is None:
        return None
    return {
        "values": [value.label for value in effect.values],
        "accuracies": [format.finite(value.score) for value in effect.values],
        "sentence": f"Changed alone (one-at-a-time studies): {summary.effect_sentence(effect, str)}",
    }


def _dataset(
    runs: pd.DataFrame, names: list[str], curves: pd.DataFrame, effects: dict[str, Effect]
) -> dict[str, Any]:
    """The page's data for one dataset's rows, baseline first if any: controls, finished runs, the rest.

    `effects` maps each hyperparameter changed alone on this dataset to its effect.
    """
    done = results.finished(runs)
    changed = {name for text in done["changed"] for name in text.split(",") if name}
    varying = sorted((name for name in names if name in changed), key=lambda name: name == results.SEED)
    is_baseline = done["experiment"] == "baseline"
    baseline = done[is_baseline].iloc[0] if is_baseline.any() else None
    unfinished = runs.drop(done.index)
    kind = str(runs["kind"].iloc[0])
    shown = metrics(kind)
    reference = primary.chance_metric(kind)
    return {
        "metrics": [list(item) for item in shown] + [["diverged", "diverged"]],
        "metric": primary.words(kind).metric,
        "quality": primary.words(kind).short,
        "params": [
            {
                "name": name,
                "id": "param-" + re.sub(r"[^\w-]", "-", name),
                "values": [format.value(v, MISSING) for v in reading_order(done[name])],
                "alone": _alone(effects.get(name)),
            }
            for name in varying
        ],
        "runs": [
            _run(row, baseline, varying, curves, [key for key, _ in shown]) for _, row in done.iterrows()
        ],
        "baseline": 0 if baseline is not None else None,
        "chance": format.finite((done if baseline is None else done[is_baseline])[reference].iloc[0]),
        "unfinished": [
            f"{row.experiment} ({row.status}{': ' + row.error if row.error else ''})"
            for row in unfinished.itertuples()
        ],
    }


def _numbers(values: Any) -> list[float | None]:
    return [format.finite(value) for value in values]


def _placed(placed: search_figures.Axis) -> dict[str, Any]:
    """A param's axis (`search_figures.axis`) as the page draws it: positions, ticks and their labels."""
    return {
        "name": placed.name,
        "positions": _numbers(placed.positions),
        "ticks": _numbers(placed.ticks),
        "labels": placed.labels,
    }


def _search(search: Search) -> dict[str, Any]:
    """One search study on one dataset as the page draws it: trials, importances, contour, sentences."""
    trials = search.trials
    grid = search_figures.contour_grid(search)
    sentences = [f"{search.dataset}: {summary.best_search_sentence(search, str, str)}"]
    if not search.importances.empty:
        sentences += [summary.importance_sentence(search, e, str) for e in importance.EVALUATORS]
    return {
        "label": f"{search.study} ({search.study_kind}) on {search.dataset}",
        "ordered": search.ordered,
        "objective": search_figures.objective_words(search.kind),
        "trials": {
            "experiment": trials["experiment"].tolist(),
            **{key: _numbers(trials[key]) for key in ("position", "value", "best_so_far", "compute")},
        },
        "params": [_placed(search_figures.axis(search, name)) for name in search.params],
        "importance": [
            {
                "evaluator": summary.EVALUATOR_NAMES[evaluator],
                "names": rows["hyperparameter"].tolist(),
                **{key: _numbers(rows[key]) for key in ("importance", "low", "high")},
            }
            for evaluator in importance.EVALUATORS
            for rows in [search.ranked(evaluator)]
            if not rows.empty
        ],
        "contour": None
        if grid is None
        else {
            "x": _placed(grid.x),
            "y": _placed(grid.y),
            "xs": _numbers(grid.xs),
            "ys": _numbers(grid.ys),
            "z": [_numbers(row) for row in grid.z],
        },
        "sentences": sentences,
    }


def write(analysis: Analysis, path: Path) -> None:
    """Write the explorer page of a study to `path`, atomically: one HTML file that needs no network.

    One entry of the dataset selector per dataset, and one per other data
    source a run used (`text (source: my.csv)`), each with a finished run.

    Args:
        analysis: the study's analysis (`analysis.analyse`): its runs, curves and what each
            hyperparameter changed alone did.
        path: the HTML file to write; its folder is made if missing.
    """
    runs, curves = analysis.runs, analysis.curves
    names = results.param_columns(runs)
    ordered = runs.sort_values("experiment", key=lambda e: e != "baseline", kind="stable")
    shown = ordered.apply(results.dataset_name, axis=1)
    labels = [d for d in dataset_names() if d in set(shown)] + sorted(set(shown) - set(dataset_names()))
    by_dataset: dict[str, dict[str, Effect]] = defaultdict(dict)
    for effect in analysis.effects:
        by_dataset[effect.dataset][effect.hyperparameter] = effect
    data = {
        "datasets": {
            label: _dataset(ordered[shown == label], names, curves, by_dataset[label])
            for label in labels
            if not results.finished(ordered[shown == label]).empty
        },
        "searches": [_search(search) for search in analysis.searches if search.reported],
    }
    embedded = json.dumps(data, allow_nan=False)
    for character, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        embedded = embedded.replace(character, escape)  # nothing in the data can end or open a tag
    page = Template(asset("explorer.html")).substitute(
        style=asset("explorer.css"), plotly=get_plotlyjs(), data=embedded, script=asset("explorer.js")
    )
    write_text(path, page)
