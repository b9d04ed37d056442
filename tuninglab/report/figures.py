"""The report's static figures (matplotlib): curves per hyperparameter, CPU time, the heatmap.

Each function returns a figure; `save` writes it as PNG and closes it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from tuninglab.lab.datasets import dataset_names
from tuninglab.report.results import history
from tuninglab.report.sensitivity import in_order, label


def save(figure: Figure, path: Path) -> None:
    """Write a figure as PNG and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def hyperparameter_curves(name: str, groups: dict[str, pd.DataFrame], curves: pd.DataFrame) -> Figure:
    """Validation loss and accuracy per epoch for every value of one hyperparameter, one row per dataset.

    `groups` maps each dataset to its baseline row and the runs that changed
    only `name`. One line per value: runs with the same settings (`same_as`)
    are one legend entry, "also run as" the others. The baseline is drawn
    dashed; a diverged run ends in a cross.
    """
    figure, axes = plt.subplots(len(groups), 2, figsize=(11, 3.2 * len(groups)), squeeze=False)
    for row, (dataset, group) in enumerate(groups.items()):
        loss_axis, accuracy_axis = axes[row]
        for rows in in_order(group, name):
            run = rows[rows["same_as"] == ""].iloc[0]
            text = label(run[name])
            style: dict = {}
            if run["experiment"] == "baseline":
                style, text = {"linestyle": "--", "color": "black"}, f"{text} (baseline)"
            repeats = rows[rows["same_as"] != ""]["experiment"]
            if not repeats.empty:
                text += f" (also run as {', '.join(repeats)})"
            text = text.replace("$", r"\$")  # a name or value as text, never matplotlib's math
            curve = history(curves, run["experiment"], dataset)
            marker = {"marker": "x", "markevery": [len(curve) - 1]} if run["diverged"] and len(curve) else {}
            loss_axis.plot(curve["epoch"], curve["val_loss"], label=text, **style, **marker)
            accuracy_axis.plot(curve["epoch"], curve["val_accuracy"], label=text, **style, **marker)
        loss_axis.set(title=f"{dataset}: validation loss", xlabel="epoch", ylabel="loss")
        accuracy_axis.set(title=f"{dataset}: validation accuracy", xlabel="epoch", ylabel="accuracy")
        accuracy_axis.legend(title=name, fontsize="small")
    figure.tight_layout()
    return figure


def cpu_time(name: str, groups: dict[str, pd.DataFrame]) -> Figure:
    """CPU time of training (seconds) against the values of one hyperparameter, one panel per dataset.

    CPU time, not wall time: it does not depend on what else the machine was
    running. Each panel has its own scale: the datasets train in tenths of a
    second to tens of seconds.
    """
    figure, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.2), squeeze=False)
    for axis, (dataset, group) in zip(axes[0], groups.items(), strict=True):
        parts = in_order(group, name)
        values = [label(rows[name].iloc[0]) for rows in parts]
        axis.plot(values, [rows["cpu_time_s"].mean() for rows in parts], marker="o")
        axis.set(title=f"{dataset}: CPU time of training", xlabel=name, ylabel="CPU seconds (training)")
        axis.set_ylim(bottom=0)
        axis.tick_params(axis="x", labelrotation=30)
    figure.tight_layout()
    return figure


def sensitivity_heatmap(sensitivity: pd.DataFrame) -> Figure:
    """Dataset x hyperparameter: the spread of test accuracy in points; `~` marks one within seed noise."""
    spread = sensitivity.pivot(index="dataset", columns="hyperparameter", values="spread") * 100
    noise = sensitivity.pivot(index="dataset", columns="hyperparameter", values="within_noise")
    order = spread.max().sort_values(ascending=False).index
    datasets = [d for d in dataset_names() if d in spread.index]
    spread, noise = spread.loc[datasets, order], noise.loc[datasets, order]
    figure, axis = plt.subplots(figsize=(1.1 * len(order) + 2, 0.7 * len(spread) + 1.8))
    image = axis.imshow(spread.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(order)), order, rotation=35, ha="right")
    axis.set_yticks(range(len(spread)), spread.index)
    for i, dataset in enumerate(spread.index):
        for j, name in enumerate(order):
            value = spread.at[dataset, name]
            if pd.notna(value):
                mark = "~" if noise.at[dataset, name] else ""
                color = "black" if value > 0.6 * spread.max().max() else "white"
                axis.text(j, i, f"{mark}{value:.1f}", ha="center", va="center", color=color, fontsize=9)
    figure.colorbar(image, ax=axis, label="spread of test accuracy (points)")
    axis.set_title("How much each hyperparameter moved test accuracy")
    figure.tight_layout()
    return figure


def importance_bars(importance: pd.DataFrame) -> Figure:
    """Random-forest importance shares, one group of bars per hyperparameter, one bar per dataset."""
    shares = importance.pivot(index="hyperparameter", columns="dataset", values="importance")
    shares = shares.loc[shares.max(axis=1).sort_values(ascending=False).index]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    shares.plot.bar(ax=axis, rot=30)
    axis.set(title="Share of test-accuracy variance (random forest)", xlabel="", ylabel="share")
    figure.tight_layout()
    return figure
