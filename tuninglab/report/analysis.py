"""The report's analysis of a study, computed once and drawn several ways.

`analyse` turns the loaded results (`results.load`, `results.load_repeats`)
into one `Analysis`: the data type of each dataset, the baseline's interval,
one `Effect` per hyperparameter and dataset varied alone (each value against
the baseline with its interval and verdict), the grid studies' interactions,
each search study's trials and Optuna importance (`importance.Search`), every
observation on every run, the runs that repeat others, each dataset's best
run and the search studies' expected best-of-n. The summary writes it as
prose (`summary`), `build` draws its
figures and tables and writes its files, the explorer draws it as one page,
and the notebooks (`notebook`) show it cell by cell. Nothing here writes a
sentence, and nothing that writes one computes the analysis again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tuninglab.report import importance, observations, primary, results, sensitivity, stats
from tuninglab.report.importance import FullEpochs, Search
from tuninglab.report.sensitivity import Effect, Interaction

BEST_RUN_COLUMNS = ["dataset", "experiment", "score", "chance", "gain", "ci_low", "ci_high", "test"]
# Studies that draw their trials (`study_kind`): the ones whose expected best-of-n is reported.
SEARCH_KINDS = ("random", "tpe")
VALIDATION_SCORE = "best_val_accuracy"  # what a search selects by (a regression's validation R^2)
EXPECTED_BEST_COLUMNS = ["study", "dataset", "n", "expected", "std", "trials"]


@dataclass(frozen=True)
class Contrast:
    """How far one hyperparameter moved each dataset's metric, and where that was a detectable effect."""

    hyperparameter: str
    spreads: list[tuple[str, float]]  # (dataset, spread) per dataset it varied on, the largest first
    detected: dict[str, bool | None]  # dataset -> `Effect.detected` there


@dataclass(frozen=True)
class Analysis:
    """Collected results and everything the report computes from them.

    Attributes:
        runs: results/experiments.csv, checked and marked by `results.load`.
        curves: results/curves.csv.
        kinds: dataset -> its data type (`cifar` -> `image`), by which its metrics are read.
        per_repeat: one row per run and repeat (`results.load_repeats`): what intervals are made of.
        intervals: dataset -> the baseline's primary metric, mean and 95 % interval over its repeats.
        effects: one `Effect` per dataset and hyperparameter varied alone, each value with its verdict.
        comparisons: how many comparisons with the baseline the multiplicity correction covered.
        table: the sensitivity table, one row per effect: reports/sensitivity.csv.
        groups: hyperparameter -> dataset -> its `Effect`, what mattered most first.
        interactions: one `Interaction` per grid study and dataset.
        searches: one `importance.Search` per search study and dataset: trials, best run, importance.
        importance: the searches' importances with their spread: reports/importance.csv.
        full_epochs: each halving search against the same configurations at full epochs.
        found: every observation on every finished run (`observe_all`): reports/observations.csv.
        repeats: experiment -> the experiments that repeat it on every dataset (`repeats`).
        best_runs: per dataset, its best run against the baseline (`best_runs`).
        contrasts: per hyperparameter varied alone on two or more datasets, its `Contrast`.
        expected_best: per search study and dataset, its expected best-of-n (`expected_best`).
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    kinds: dict[str, str]
    per_repeat: pd.DataFrame
    intervals: dict[str, stats.Interval]
    effects: list[Effect]
    comparisons: int
    table: pd.DataFrame
    groups: dict[str, dict[str, Effect]]
    interactions: list[Interaction]
    searches: list[Search]
    importance: pd.DataFrame
    full_epochs: list[FullEpochs]
    found: pd.DataFrame
    repeats: dict[str, list[str]]
    best_runs: pd.DataFrame
    contrasts: list[Contrast]
    expected_best: pd.DataFrame


def analyse(runs: pd.DataFrame, curves: pd.DataFrame, per_repeat: pd.DataFrame | None = None) -> Analysis:
    """The whole analysis of loaded results (`results.load`), each part computed once.

    `per_repeat` is `results.load_repeats`; without it, each run is one repeat.
    """
    per_repeat = results.single_repeats(runs) if per_repeat is None else per_repeat
    effects = sensitivity.effects(runs, per_repeat)
    table = sensitivity.table(effects)
    searches = importance.searches(runs)
    return Analysis(
        runs=runs,
        curves=curves,
        kinds=results.kinds(runs),
        per_repeat=per_repeat,
        intervals=intervals(runs, per_repeat),
        effects=effects,
        comparisons=sum(v.versus.p_adjusted is not None for e in effects for v in e.values if v.versus),
        table=table,
        groups=by_hyperparameter(effects),
        interactions=sensitivity.interactions(runs),
        searches=searches,
        importance=importance.table(searches),
        full_epochs=importance.against_full_epochs(searches),
        found=observe_all(runs, curves, per_repeat),
        repeats=repeats(runs),
        best_runs=best_runs(runs, per_repeat),
        contrasts=contrasts(effects),
        expected_best=expected_best(runs),
    )


def load(folder: Path) -> Analysis:
    """Read a results folder (`results.load`, `results.load_repeats`) and analyse it.

    Raises:
        ReportError: the results are missing, empty, damaged or from an older version.
    """
    runs, curves = results.load(folder)
    return analyse(runs, curves, results.load_repeats(folder, runs))


def intervals(runs: pd.DataFrame, per_repeat: pd.DataFrame) -> dict[str, stats.Interval]:
    """Per dataset, the baseline's primary metric over its repeats: mean and 95 % half-width."""
    return {
        dataset: stats.interval(results.samples(per_repeat, ["baseline"], dataset, primary.metric(kind)))
        for dataset, kind in results.baselines(runs)[results.KIND].items()
    }


def versus_baseline(run: pd.Series, per_repeat: pd.DataFrame) -> stats.Comparison:
    """A run's primary metric against the baseline's on its dataset, from their repeats (`stats.compare`)."""
    metric = primary.metric(run["kind"])
    return stats.compare(
        results.samples(per_repeat, ["baseline"], run["dataset"], metric),
        results.samples(per_repeat, [run["experiment"]], run["dataset"], metric),
    )


def observe_all(runs: pd.DataFrame, curves: pd.DataFrame, per_repeat: pd.DataFrame) -> pd.DataFrame:
    """Every observation on every finished run, plus one line per run against the baseline (or why not).

    A run with exactly the settings of an earlier one (`same_as`: e.g. image
    augmentation on text is the baseline's run again) is left out: it is
    merged into that run. A run on another data source, thread count or CPU kernels gets
    no line against the baseline and no underfitting rule (it compares with
    the baseline's curve); one computed otherwise says so. The line against
    the baseline carries the difference's interval, from the repeats (`per_repeat`).

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
            per_repeat[(per_repeat["experiment"] == run["experiment"]) & (per_repeat["dataset"] == dataset)],
        )
        if run["experiment"] != "baseline" and is_compared:
            comparison = versus_baseline(run, per_repeat)
            found.append(observations.versus_baseline(run, baseline.loc[dataset], comparison, found))
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


def best_runs(runs: pd.DataFrame, per_repeat: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, in table order, its best run against the baseline: `BEST_RUN_COLUMNS`.

    The candidates are the compared runs that changed something other than
    the seed and repeat no earlier run; `gain` is the run's score minus the
    baseline's, a fraction; `chance` its chance reference; `ci_low` and
    `ci_high` the 95 % interval of the difference from their repeats (empty
    without one), `test` how it was computed (`stats.compare`). The best of
    many is picked for its score: its interval is not corrected for that choice.
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
    best = pd.DataFrame([rows.loc[rows["gain"].idxmax()] for _, rows in gains.groupby("dataset", sort=False)])
    compared = [versus_baseline(run, per_repeat) for _, run in best.iterrows()]
    best = best.assign(
        ci_low=[c.low for c in compared], ci_high=[c.high for c in compared], test=[c.test for c in compared]
    )
    return best[BEST_RUN_COLUMNS].reset_index(drop=True)


def contrasts(effects: list[Effect]) -> list[Contrast]:
    """Per hyperparameter varied alone on two or more datasets, in the order of `effects`: its spread on
    each dataset (the largest first) and whether it had a detectable effect there."""
    grouped: dict[str, list[Effect]] = defaultdict(list)
    for effect in effects:
        grouped[effect.hyperparameter].append(effect)
    return [
        Contrast(
            hyperparameter=name,
            spreads=[(e.dataset, e.spread) for e in sorted(found, key=lambda e: -e.spread)],
            detected={e.dataset: e.detected for e in found},
        )
        for name, found in grouped.items()
        if len(found) >= 2
    ]


def expected_best(runs: pd.DataFrame) -> pd.DataFrame:
    """Per search study (`SEARCH_KINDS`) and dataset: the expected test score of the validation-best of
    n of its trials, n = 1 .. N (`stats.expected_best`): `EXPECTED_BEST_COLUMNS`.

    The trials are the study's finished runs compared with the baseline; each
    is scored by its mean best validation accuracy (a regression's R^2,
    `VALIDATION_SCORE`) and its primary test metric, both means over its repeats.
    """
    done = results.compared(runs)
    tables = [
        stats.expected_best(rows[VALIDATION_SCORE], primary.scores(rows)).assign(study=study, dataset=dataset)
        for (study, dataset), rows in done[done["study_kind"].isin(SEARCH_KINDS)].groupby(
            ["study", "dataset"], sort=False
        )
    ]
    found = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=EXPECTED_BEST_COLUMNS)
    return found[EXPECTED_BEST_COLUMNS]
