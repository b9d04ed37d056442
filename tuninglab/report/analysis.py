"""The report's analysis of a study, computed once and drawn several ways.

`analyse` turns the loaded results (`results.load`) into one `Analysis`: the
data type of each dataset, the seed noise, one `Effect` per hyperparameter
and dataset varied alone, the grid studies' interactions, each search
study's trials and Optuna importance (`importance.Search`), every
observation on every run, the repeats and each dataset's best run.
The summary writes it as prose (`summary`), `build` draws its
figures and tables and writes its files, the explorer draws it as one page,
and the notebooks (`notebook`) show it cell by cell. Nothing here writes a
sentence, and nothing that writes one computes the analysis again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tuninglab.report import importance, observations, primary, results, sensitivity
from tuninglab.report.importance import Search
from tuninglab.report.sensitivity import Effect, Interaction

BEST_RUN_COLUMNS = ["dataset", "experiment", "score", "chance", "gain"]


@dataclass(frozen=True)
class Contrast:
    """How far one hyperparameter moved each dataset's metric, against the seed noise of the extremes."""

    hyperparameter: str
    spreads: list[tuple[str, float]]  # (dataset, spread) per dataset it varied on, the largest first
    gap: float  # the largest spread minus the smallest, a fraction
    margin: float  # the larger seed noise of those two datasets (0 where not measured)
    measured: bool  # both of those datasets have a seed-noise reference

    @property
    def top(self) -> str:
        """The dataset it moved most."""
        return self.spreads[0][0]

    @property
    def bottom(self) -> str:
        """The dataset it moved least."""
        return self.spreads[-1][0]


@dataclass(frozen=True)
class Analysis:
    """Collected results and everything the report computes from them.

    Attributes:
        runs: results/experiments.csv, checked and marked by `results.load`.
        curves: results/curves.csv.
        kinds: dataset -> its data type (`cifar` -> `image`), by which its metrics are read.
        noise: the seed runs per dataset (`sensitivity.noise`): reports/noise.csv.
        levels: dataset -> seed noise (range of the baseline's test accuracy, or R^2, across seeds).
        effects: one `Effect` per dataset and hyperparameter varied alone.
        table: the sensitivity table, one row per effect: reports/sensitivity.csv.
        groups: hyperparameter -> dataset -> its `Effect`, what mattered most first.
        interactions: one `Interaction` per grid study and dataset.
        searches: one `importance.Search` per search study and dataset: trials, best run, importance.
        importance: the searches' importances with their spread: reports/importance.csv.
        found: every observation on every finished run (`observe_all`): reports/observations.csv.
        repeats: experiment -> the experiments that repeat it on every dataset (`repeats`).
        best_runs: per dataset, its best run against the baseline (`best_runs`).
        contrasts: per hyperparameter varied alone on two or more datasets, its `Contrast`.
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    kinds: dict[str, str]
    noise: pd.DataFrame
    levels: dict[str, float]
    effects: list[Effect]
    table: pd.DataFrame
    groups: dict[str, dict[str, Effect]]
    interactions: list[Interaction]
    searches: list[Search]
    importance: pd.DataFrame
    found: pd.DataFrame
    repeats: dict[str, list[str]]
    best_runs: pd.DataFrame
    contrasts: list[Contrast]


def analyse(runs: pd.DataFrame, curves: pd.DataFrame) -> Analysis:
    """The whole analysis of loaded results (`results.load`), each part computed once."""
    levels = sensitivity.noise_levels(runs)
    effects = sensitivity.effects(runs)
    table = sensitivity.table(effects)
    searches = importance.searches(runs)
    return Analysis(
        runs=runs,
        curves=curves,
        kinds=results.kinds(runs),
        noise=sensitivity.noise(runs),
        levels=levels,
        effects=effects,
        table=table,
        groups=by_hyperparameter(effects),
        interactions=sensitivity.interactions(runs),
        searches=searches,
        importance=importance.table(searches),
        found=observe_all(runs, curves, levels),
        repeats=repeats(runs),
        best_runs=best_runs(runs),
        contrasts=contrasts(table, levels),
    )


def load(folder: Path) -> Analysis:
    """Read a results folder (`results.load`) and analyse it.

    Raises:
        ReportError: the results are missing, empty, damaged or from an older version.
    """
    return analyse(*results.load(folder))


def observe_all(runs: pd.DataFrame, curves: pd.DataFrame, levels: dict[str, float]) -> pd.DataFrame:
    """Every observation on every finished run, plus one line per run against the baseline (or why not).

    A run with exactly the settings of an earlier one (`same_as`: e.g. image
    augmentation on text is the baseline's run again) is left out: it is
    merged into that run. A run on another data source, thread count or CPU kernels gets
    no line against the baseline and no underfitting rule (it compares with
    the baseline's curve); one computed otherwise says so. `levels` is
    the seed noise per dataset (`sensitivity.noise_levels`).

    Columns: experiment, dataset, rule, headline, text.
    """
    baseline = results.baselines(runs)
    table = []
    for _, run in results.finished(runs).iterrows():
        if run["same_as"]:
            continue
        dataset = run["dataset"]
        is_compared = not run["other_source"] and not run["not_compared"]
        found = observations.observe(
            results.history(curves, run["experiment"], dataset),
            run,
            results.history(curves, "baseline", dataset) if is_compared else pd.DataFrame(),
        )
        if run["experiment"] != "baseline" and is_compared:
            found.append(observations.versus_baseline(run, baseline.loc[dataset], levels.get(dataset), found))
        elif run["not_compared"]:
            found.insert(0, observations.not_compared(run))
        table += [{"experiment": run["experiment"], "dataset": dataset, **o._asdict()} for o in found]
    return pd.DataFrame(table, columns=["experiment", "dataset", *observations.Observation._fields])


def by_hyperparameter(effects: list[Effect]) -> dict[str, dict[str, Effect]]:
    """Hyperparameter -> dataset -> its effect there (the runs that changed only it, and what they did).

    Hyperparameters come in order of the largest spread of test accuracy they
    caused on any dataset: what mattered most first. `effects` is
    `sensitivity.effects(runs)`.
    """
    grouped: dict[str, dict[str, Effect]] = defaultdict(dict)
    for effect in effects:
        grouped[effect.hyperparameter][effect.dataset] = effect
    largest = {name: max(e.spread for e in by_dataset.values()) for name, by_dataset in grouped.items()}
    return dict(sorted(grouped.items(), key=lambda item: -largest[item[0]]))


def repeats(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Experiment -> the experiments that repeat it with exactly its settings on every dataset.

    A repeat is merged into the run it repeats: one row, one line, one legend
    entry, "also run as" the repeats.
    """
    found: dict[str, list[str]] = {}
    for experiment, rows in runs[runs["experiment"] != "baseline"].groupby("experiment", sort=False):
        targets = set(rows["same_as"])
        if results.finished(rows).shape[0] == len(rows) and len(targets) == 1 and "" not in targets:
            found.setdefault(targets.pop(), []).append(str(experiment))
    return found


def best_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, in table order, its best run against the baseline: `BEST_RUN_COLUMNS`.

    The candidates are the compared runs that changed something other than
    the seed and repeat no earlier run; `gain` is the run's score minus the
    baseline's, a fraction; `chance` its chance reference.
    """
    done = results.compared(runs)
    candidates = done[
        (done["experiment"] != "baseline")
        & ~done["changed"].isin(["", results.SEED])
        & (done["same_as"] == "")
    ]
    if candidates.empty:
        return pd.DataFrame(columns=BEST_RUN_COLUMNS)
    baseline = results.baselines(runs)
    base = {
        dataset: baseline.at[dataset, primary.metric(kind)]
        for dataset, kind in baseline[results.KIND].items()
    }
    gains = candidates.assign(
        score=primary.scores(candidates),
        chance=[primary.chance(run) for _, run in candidates.iterrows()],
    )
    gains["gain"] = gains["score"] - gains["dataset"].map(base)
    best = [rows.loc[rows["gain"].idxmax()] for _, rows in gains.groupby("dataset", sort=False)]
    return pd.DataFrame(best)[BEST_RUN_COLUMNS].reset_index(drop=True)


def contrasts(table: pd.DataFrame, levels: dict[str, float]) -> list[Contrast]:
    """Per hyperparameter of the sensitivity `table` varied on two or more datasets, in table order:
    its spread on each dataset, the gap between the largest and the smallest, and the seed noise
    (`levels`) that gap must beat."""
    found = []
    for name, rows in table.groupby("hyperparameter", sort=False):
        if len(rows) < 2:
            continue
        rows = rows.sort_values("spread", ascending=False)
        top, bottom = rows.iloc[0], rows.iloc[-1]
        found.append(
            Contrast(
                hyperparameter=str(name),
                spreads=[(r.dataset, r.spread) for r in rows.itertuples()],
                gap=top["spread"] - bottom["spread"],
                margin=max(levels.get(top["dataset"], 0.0), levels.get(bottom["dataset"], 0.0)),
                measured=top["dataset"] in levels and bottom["dataset"] in levels,
            )
        )
    return found
