"""The report's static figures (matplotlib): curves per hyperparameter, CPU time, the heatmap, the
expected best of n trials of a search study.

Each function returns a figure; `save` writes it as PNG and closes it. The
figures of one hyperparameter draw its `sensitivity.Effect` on each dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from tuninglab.report import primary
from tuninglab.report.results import history
from tuninglab.report.sensitivity import Effect, Interaction


def save(figure: Figure, path: Path) -> None:
    """Write a figure as PNG and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def hyperparameter_curves(name: str, effects: dict[str, Effect], curves: pd.DataFrame) -> Figure:
    """Validation loss and accuracy (a regression's R^2) per epoch for every value of one hyperparameter.

    `effects` maps each dataset to the effect of `name` on it. One line per
    value, its shown run's: runs with the same settings are one legend entry,
    "also run as" the others. The baseline is drawn dashed; a diverged run
    ends in a cross.
    """
    figure, axes = plt.subplots(len(effects), 2, figsize=(11, 3.2 * len(effects)), squeeze=False)
    for row, (dataset, effect) in enumerate(effects.items()):
        loss_axis, accuracy_axis = axes[row]
        for value in effect.values:
            text = value.label
            style: dict = {}
            if value.experiment == "baseline":
                style, text = {"linestyle": "--", "color": "black"}, f"{text} (baseline)"
            if value.repeats:
                text += f" (also run as {', '.join(value.repeats)})"
            text = text.replace("$", r"\$")  # a name or value as text, never matplotlib's math
            curve = history(curves, value.experiment, dataset)
            marker = {"marker": "x", "markevery": [len(curve) - 1]} if value.diverged and len(curve) else {}
            loss_axis.plot(curve["epoch"], curve["val_loss"], label=text, **style, **marker)
            accuracy_axis.plot(curve["epoch"], curve["val_accuracy"], label=text, **style, **marker)
        loss_axis.set(title=f"{dataset}: validation loss", xlabel="epoch", ylabel="loss")
        quality = primary.words(effect.kind).short
        accuracy_axis.set(title=f"{dataset}: validation {quality}", xlabel="epoch", ylabel=quality)
        accuracy_axis.legend(title=name, fontsize="small")
    figure.tight_layout()
    return figure


def cpu_time(name: str, effects: dict[str, Effect]) -> Figure:
    """Mean CPU time of training (seconds) per value of one hyperparameter, one panel per dataset.

    `effects` maps each dataset to the effect of `name` on it. CPU time, not
    wall time: it does not depend on what else the machine was running. Each
    panel has its own scale: the datasets train in tenths of a second to tens
    of seconds.
    """
    figure, axes = plt.subplots(1, len(effects), figsize=(3.6 * len(effects), 3.2), squeeze=False)
    for axis, (dataset, effect) in zip(axes[0], effects.items(), strict=True):
        axis.plot([v.label for v in effect.values], [v.cpu_time for v in effect.values], marker="o")
        axis.set(title=f"{dataset}: CPU time of training", xlabel=name, ylabel="CPU seconds (training)")
        axis.set_ylim(bottom=0)
        axis.tick_params(axis="x", labelrotation=30)
    figure.tight_layout()
    return figure


def sensitivity_heatmap(sensitivity: pd.DataFrame, kinds: Mapping[str, str]) -> Figure:
    """Dataset x hyperparameter: the spread of test accuracy in points; `~` marks one where no value had
    a detectable effect against the baseline (`Effect.detected` False).

    With a regression among the datasets, each row is the spread of its own primary metric (R^2).
    `kinds` gives each dataset's data type (`results.kinds`).
    """
    spread = sensitivity.pivot(index="dataset", columns="hyperparameter", values="spread") * 100
    quiet = sensitivity.assign(quiet=sensitivity["detected"].map(lambda found: found is False))
    quiet = quiet.pivot(index="dataset", columns="hyperparameter", values="quiet").fillna(False).astype(bool)
    order = spread.max().sort_values(ascending=False).index
    datasets = primary.ordered(spread.index, kinds)
    spread, quiet = spread.loc[datasets, order], quiet.loc[datasets, order]
    figure, axis = plt.subplots(figsize=(1.1 * len(order) + 2, 0.7 * len(spread) + 1.8))
    image = axis.imshow(spread.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(order)), order, rotation=35, ha="right")
    axis.set_yticks(range(len(spread)), spread.index)
    for i, dataset in enumerate(spread.index):
        for j, name in enumerate(order):
            value = spread.at[dataset, name]
            if pd.notna(value):
                mark = "~" if quiet.at[dataset, name] else ""
                color = "black" if value > 0.6 * spread.max().max() else "white"
                axis.text(j, i, f"{mark}{value:.1f}", ha="center", va="center", color=color, fontsize=9)
    if primary.mixed(kinds[dataset] for dataset in datasets):
        label, title = (
            "spread of its own metric (points)",
            "How much each hyperparameter moved accuracy or R^2",
        )
    else:
        label, title = "spread of test accuracy (points)", "How much each hyperparameter moved test accuracy"
    figure.colorbar(image, ax=axis, label=label)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def interaction_lines(found: list[Interaction]) -> Figure:
    """One grid study: the primary metric per value of its `columns`, one line per value of its `rows`.

    One panel per dataset where both varied. Parallel lines mean the two
    hyperparameters act independently; crossing or fanning lines, that they
    interact. A diverged cell is a cross.
    """
    figure, axes = plt.subplots(1, len(found), figsize=(4.6 * len(found), 3.4), squeeze=False)
    for axis, interaction in zip(axes[0], found, strict=True):
        positions = range(len(interaction.score.columns))
        for row, values in interaction.score.iterrows():
            label = f"{interaction.rows}={row}".replace("$", r"\$")
            (line,) = axis.plot(positions, values.to_numpy(dtype=float), marker="o", label=label)
            diverged = interaction.diverged.loc[row].to_numpy(dtype=bool)
            axis.plot(
                [p for p, d in zip(positions, diverged, strict=True) if d],
                values.to_numpy(dtype=float)[diverged],
                "x",
                color=line.get_color(),
                markersize=10,
            )
        axis.set_xticks(list(positions), [str(c).replace("$", r"\$") for c in interaction.score.columns])
        quality = primary.words(interaction.kind).metric
        axis.set(title=f"{interaction.dataset}", xlabel=interaction.columns, ylabel=quality)
        axis.legend(fontsize="small")
    figure.suptitle(f"{found[0].study}: {found[0].rows} x {found[0].columns}".replace("$", r"\$"))
    figure.tight_layout()
    return figure


def expected_best(study: str, table: pd.DataFrame, kinds: Mapping[str, str]) -> Figure:
    """One search study: the expected test score of the validation-best of n trials against n, one panel
    per dataset, its standard deviation over the draws shaded.

    `table` is the study's rows of `analysis.expected_best`; `kinds` each dataset's data type.
    """
    datasets = primary.ordered(table["dataset"].unique(), kinds)
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.2), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        rows = table[table["dataset"] == dataset]
        axis.plot(rows["n"], rows["expected"], marker="o")
        axis.fill_between(
            rows["n"], rows["expected"] - rows["std"], rows["expected"] + rows["std"], alpha=0.2
        )
        quality = primary.words(kinds[dataset]).metric
        axis.set(title=dataset, xlabel="trials (n)", ylabel=f"expected {quality} of the best")
    figure.suptitle(f"{study}: expected best of n trials".replace("$", r"\$"))
    figure.tight_layout()
    return figure
