"""The search studies' static figures (matplotlib), and the coordinates the explorer shares with them.

Each search study (`importance.Search`, one per dataset) gets, as PNGs under
`reports/figures/`: the best-so-far curve of the objective against trials and
against compute (searches whose trials have an order), the importance bars
with their intervals, a parallel-coordinate view of every trial, and the
contour of the objective over its two most important hyperparameters.
`axis` and `contour_grid` place a param's values on an axis (log10 for a log
scale, a category's index) and interpolate the contour: the explorer draws
the same numbers. Names and values go into the figures as text, never as
matplotlib's math (`plain`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from optuna.distributions import BaseDistribution, CategoricalDistribution
from scipy.interpolate import griddata

from tuninglab.report import figures, format, primary
from tuninglab.report.importance import EVALUATORS, Search

CONTOUR_POINTS = 40  # per side of the contour's grid
OBJECTIVE_WORDS = "validation {quality} (the objective)"


def plain(shown: object) -> str:
    """Any name or value as matplotlib text: its `$` never opens math."""
    return str(shown).replace("$", r"\$")


def file_part(name: str) -> str:
    """A study's name as part of a file name: letters, digits, `_` and `-` kept, the rest `_`."""
    return re.sub(r"[^\w-]", "_", name)


def objective_words(kind: str) -> str:
    """The objective's axis label for a data type: `validation accuracy (the objective)`."""
    return OBJECTIVE_WORDS.format(quality=primary.words(kind).short)


@dataclass(frozen=True)
class Axis:
    """A param's values placed on an axis: positions, and the tick positions with their labels."""

    name: str
    positions: np.ndarray
    ticks: list[float]
    labels: list[str]
    log: bool  # positions are log10 of the values


def axis(search: Search, name: str) -> Axis:
    """Where each trial's value of `name` sits: log10 on a log scale, its category's index, else itself."""
    dist: BaseDistribution = search.distributions[name]
    values = search.trials[name]
    if isinstance(dist, CategoricalDistribution):
        choices = [str(choice) for choice in dist.choices]
        positions = np.array([choices.index(format.value(v, "n/a")) for v in values], dtype=float)
        return Axis(name, positions, list(range(len(choices))), choices, False)
    log = bool(getattr(dist, "log", False))
    numbers = values.astype(float).to_numpy()
    positions = np.log10(numbers) if log else numbers
    ticks = np.linspace(positions.min(), positions.max(), 4).tolist()
    labels = [f"{10**t if log else t:.3g}" for t in ticks]
    return Axis(name, positions, ticks, labels, log)


@dataclass(frozen=True)
class ContourGrid:
    """The objective interpolated over two params' axes (`axis`): `z[i][j]` at (`xs[j]`, `ys[i]`)."""

    x: Axis
    y: Axis
    xs: np.ndarray
    ys: np.ndarray
    z: np.ndarray


def contour_grid(search: Search) -> ContourGrid | None:
    """The objective over the two most important params (`Search.top_two`); None with fewer than two.

    Linear interpolation between the trials, nearest trial outside their hull.
    """
    names = search.top_two()
    if len(names) < 2 or len(search.trials) < 3:
        return None
    scored = search.trials["value"].notna().to_numpy()
    x, y = axis(search, names[0]), axis(search, names[1])
    points = np.column_stack([x.positions, y.positions])[scored]
    values = search.trials["value"].to_numpy(dtype=float)[scored]
    xs = np.linspace(x.positions.min(), x.positions.max(), CONTOUR_POINTS)
    ys = np.linspace(y.positions.min(), y.positions.max(), CONTOUR_POINTS)
    grid = tuple(np.meshgrid(xs, ys))
    nearest = griddata(points, values, grid, method="nearest")
    try:
        z = griddata(points, values, grid, method="linear")
        z = np.where(np.isnan(z), nearest, z)
    except ValueError:  # the trials lie on one line: no triangles to interpolate in
        z = nearest
    return ContourGrid(x, y, xs, ys, z)


def best_so_far(found: list[Search]) -> Figure:
    """One study: the best objective so far against trials and against compute, a line per dataset.

    Each trial's own objective is a faint dot under its dataset's line.
    """
    figure, (by_trial, by_time) = plt.subplots(1, 2, figsize=(11, 3.6))
    for search in found:
        trials = search.trials
        (line,) = by_trial.step(trials["position"], trials["best_so_far"], where="post", label=search.dataset)
        by_trial.plot(trials["position"], trials["value"], ".", color=line.get_color(), alpha=0.35)
        by_time.step(trials["compute"], trials["best_so_far"], where="post", color=line.get_color())
        by_time.plot(trials["compute"], trials["value"], ".", color=line.get_color(), alpha=0.35)
    label = objective_words(found[0].kind) if len({s.kind for s in found}) == 1 else "validation metric"
    by_trial.set(xlabel="trials", ylabel=f"best {label}", title="Best so far, by trials")
    by_time.set(
        xlabel="training time spent (s, summed)", ylabel="best so far", title="Best so far, by compute"
    )
    by_trial.legend(fontsize="small")
    figure.suptitle(plain(f"{found[0].study} ({found[0].study_kind})"))
    figure.tight_layout()
    return figure


def importance_bars(found: list[Search]) -> Figure:
    """One study: each hyperparameter's importance by each evaluator, with its interval, a panel per dataset.

    Bars are the mean over bootstrap resamples, whiskers the 2.5 and 97.5
    percentiles: bars whose whiskers overlap are not distinguishable.
    """
    shown = [search for search in found if not search.importances.empty]
    figure, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 3.6), squeeze=False)
    for panel, search in zip(axes[0], shown, strict=True):
        order = list(search.ranked(EVALUATORS[0])["hyperparameter"])
        height = 0.8 / len(EVALUATORS)
        for number, evaluator in enumerate(EVALUATORS):
            rows = search.ranked(evaluator).set_index("hyperparameter").reindex(order)
            where = np.arange(len(order)) + number * height
            panel.barh(
                where,
                rows["importance"],
                height=height,
                xerr=[rows["importance"] - rows["low"], rows["high"] - rows["importance"]],
                capsize=3,
                label=evaluator,
            )
        panel.set_yticks(np.arange(len(order)) + height / 2, [plain(name) for name in order])
        panel.invert_yaxis()
        panel.set(
            xlim=(0, 1), xlabel="importance (share)", title=plain(f"{search.dataset} ({search.runs} runs)")
        )
        panel.legend(fontsize="small")
    figure.suptitle(plain(f"{shown[0].study}: importance, bootstrap 95 % intervals"))
    figure.tight_layout()
    return figure


def parallel(found: list[Search]) -> Figure:
    """One study: every trial as a line across its params and the objective, coloured by the objective.

    Each axis is scaled to its own range (log10 for a log scale); ticks give the values. A panel per dataset.
    """
    figure, axes = plt.subplots(len(found), 1, figsize=(9, 3.2 * len(found)), squeeze=False)
    for panel, search in zip(axes[:, 0], found, strict=True):
        value = search.trials["value"].to_numpy(dtype=float)
        ticks = np.linspace(np.nanmin(value), np.nanmax(value), 4).tolist()
        objective = Axis("objective", value, ticks, [f"{t:.3f}" for t in ticks], False)
        placed = [*(axis(search, name) for name in search.params), objective]
        columns = [a.positions for a in placed]

        def scaled(column: np.ndarray) -> np.ndarray:
            low, high = np.nanmin(column), np.nanmax(column)
            return (column - low) / (high - low) if high > low else np.full_like(column, 0.5)

        lines = np.column_stack([scaled(column) for column in columns])
        colours = plt.get_cmap("viridis")(scaled(value))
        for row, colour in zip(lines, colours, strict=True):
            panel.plot(range(len(columns)), row, color=colour, alpha=0.7)
        for position, placed_axis in enumerate(placed):
            panel.axvline(position, color="grey", linewidth=0.8)
            tick = scaled(np.array([*placed_axis.positions, *placed_axis.ticks]))[
                len(placed_axis.positions) :
            ]
            for where, label in zip(tick, placed_axis.labels, strict=True):
                panel.text(position + 0.03, where, plain(label), fontsize=7, va="center")
        panel.set_xticks(range(len(columns)), [plain(a.name) for a in placed], rotation=20)
        panel.set_yticks([])
        panel.set_title(plain(f"{search.dataset}: {objective_words(search.kind)}, yellow best"))
    figure.suptitle(plain(f"{found[0].study}: every trial"))
    figure.tight_layout()
    return figure


def contour(found: list[Search]) -> Figure | None:
    """One study: the objective over its two most important params, a panel per dataset.

    None when no dataset has two params.
    """
    grids = [(search, contour_grid(search)) for search in found]
    grids = [(search, grid) for search, grid in grids if grid is not None]
    if not grids:
        return None
    figure, axes = plt.subplots(1, len(grids), figsize=(4.8 * len(grids), 3.8), squeeze=False)
    for panel, (search, grid) in zip(axes[0], grids, strict=True):
        filled = panel.contourf(grid.xs, grid.ys, grid.z, levels=12, cmap="viridis")
        panel.scatter(grid.x.positions, grid.y.positions, c="white", edgecolors="black", s=18)
        panel.set_xticks(grid.x.ticks, [plain(label) for label in grid.x.labels])
        panel.set_yticks(grid.y.ticks, [plain(label) for label in grid.y.labels])
        panel.set(xlabel=plain(grid.x.name), ylabel=plain(grid.y.name), title=plain(search.dataset))
        figure.colorbar(filled, ax=panel, label=objective_words(search.kind))
    figure.suptitle(plain(f"{found[0].study}: the two most important hyperparameters"))
    figure.tight_layout()
    return figure


def save_all(found: list[Search], folder: Path) -> dict[str, dict[str, str]]:
    """Every search study's figures as PNGs under `folder/figures`; study -> caption -> relative path.

    The best-so-far curve, the parallel coordinates and the contour for searches
    whose trials have an order (`Search.ordered`; a grid's own table shows its
    cells), the importance bars where importance was computed.
    """
    pictures: dict[str, dict[str, str]] = {}
    for study in dict.fromkeys(search.study for search in found):
        mine = [search for search in found if search.study == study]
        drawn: dict[str, Figure | None] = {}
        if mine[0].ordered:
            drawn["best so far, by trials and by compute"] = best_so_far(mine)
        if any(not search.importances.empty for search in mine):
            drawn["importance with 95 % intervals"] = importance_bars(mine)
        if mine[0].ordered:
            drawn["every trial, parallel coordinates"] = parallel(mine)
            drawn["the two most important hyperparameters"] = contour(mine)
        pictures[study] = {}
        for number, (caption, figure) in enumerate(drawn.items()):
            if figure is None:
                continue
            path = f"figures/search-{file_part(study)}-{number}.png"
            figures.save(figure, folder / path)
            pictures[study][caption] = path
    return pictures
