"""What the experiment notebooks share: where the results are, one study analysed once, one setting shown.

The notebooks under `notebooks/` import this module (the package is installed
by `make install`), so none of them copies a helper or edits `sys.path`.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from tuninglab.report import analysis, figures, primary, results
from tuninglab.report.analysis import Analysis

RESULTS_VARIABLE = "TUNINGLAB_RESULTS"  # another results folder than the repository's results/


def results_folder(start: Path | None = None) -> Path:
    """The folder in `TUNINGLAB_RESULTS` if set, else `results/` of the repository holding `start`.

    The repository is the first folder from `start` (default: the working
    folder, `notebooks/` under Jupyter) upwards that holds `dvc.yaml`.
    """
    if os.environ.get(RESULTS_VARIABLE):
        return Path(os.environ[RESULTS_VARIABLE])
    here = (start or Path.cwd()).resolve()
    root = next((folder for folder in [here, *here.parents] if (folder / "dvc.yaml").is_file()), here)
    return root / results.RESULTS_DIR


def load(folder: Path) -> Analysis:
    """Read a results folder and compute the report's analysis of it, once for every cell of a notebook."""
    return analysis.load(folder)


def set_display_options() -> None:
    """Three decimals and full-width tables, as the notebooks print them."""
    pd.set_option("display.float_format", "{:.3f}".format)
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_columns", None)
    pd.set_option("display.width", 250)


def show(study: Analysis, name: str) -> None:
    """One hyperparameter varied alone: its sensitivity rows, two figures, the observations on its runs.

    `name` is the dotted id (`train.lr`). Without a finished run that changed
    only it, one line says so and lists the runs that tried.
    """
    if name not in study.groups:
        tried = study.runs[study.runs["changed"] == name].drop_duplicates("experiment")
        attempts = ", ".join(f"({run.experiment} {run.status})" for run in tried.itertuples())
        print(f"{name}: no finished run changed only {name} in these results {attempts}".rstrip())
        return
    by_dataset = study.groups[name]
    table = study.table
    metric = primary.metric_words(study.kinds[dataset] for dataset in table["dataset"])
    display(Markdown(f"**{name}: sensitivity per dataset** (spread = best minus worst mean {metric})"))
    display(table[table["hyperparameter"] == name].drop(columns="hyperparameter").set_index("dataset"))
    figures.hyperparameter_curves(name, by_dataset, study.curves)
    plt.show()
    figures.cpu_time(name, by_dataset)
    plt.show()
    tried = pd.concat(effect.runs for effect in by_dataset.values())[["experiment", "dataset"]]
    display(Markdown(f"**{name}: observations on its runs**"))
    mine = study.found.merge(tried[tried["experiment"] != "baseline"])
    display(mine[["experiment", "dataset", "rule", "text"]])
