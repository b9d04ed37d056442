"""Which hyperparameters mattered in a search study: Optuna's importance, with its spread.

A search study (`study_kind` grid, random, tpe or halving) varies several
hyperparameters together. Per study and dataset, `searches` turns its finished
runs that are compared with the baseline (`results.compared`) into one
`Search`, computed once and drawn by the summary, the figures and the explorer:

- its trials in order (the column `trial` where the results have it, else the
  table's order), each with the objective, its best so far, and the compute
  spent so far (cumulative `train_time_s`);
- the run that is best by the objective, with its test score;
- the importance of each varied hyperparameter by two of Optuna's evaluators,
  PED-ANOVA (Optuna 5's default) and fANOVA, as the mean over `BOOTSTRAPS`
  resamples of the runs (seeded) with the 2.5 and 97.5 percentiles of those
  resamples: two importances whose intervals overlap are not distinguishable.

The objective is the validation metric, `best_val_accuracy` (a regression's
validation R^2): what a search selects by, and what the tpe and halving
studies tell Optuna. The test metric is kept for the final number only;
ranking hyperparameters by it would let the report choose by the test split.

Importance needs `MIN_RUNS` runs and two hyperparameters that vary among them
(not the seed: a run's seeds are its repeats, not a hyperparameter). A halving
study's importance reads its first rung only (the smallest `rung`), where every
configuration trained for the same epochs; its curve reads every rung.
Each run goes into an in-memory Optuna study (`optuna.trial.create_trial`),
with distributions inferred from the values (`distribution`).

One-at-a-time studies are not searches: the sensitivity tables
(`sensitivity.effects`) answer what one hyperparameter does on its own.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuninglab.report import format, primary
from tuninglab.report.results import SEED, compared
from tuninglab.schema import RUNG, TRIAL, is_param_column

# Optuna's progress bar imports tqdm.auto, which warns in a notebook without widgets.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="IProgress not found")
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.importance import (
        BaseImportanceEvaluator,
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

OBJECTIVE = "best_val_accuracy"  # what a search selects by: validation accuracy (a regression's R^2)
SEARCH_KINDS = ("grid", "random", "tpe", "halving")  # studies that vary several hyperparameters together
ORDERED_KINDS = ("random", "tpe", "halving")  # searches whose trials have an order worth a curve
MIN_RUNS = 8
BOOTSTRAPS = 30
SEED_OF_RESAMPLES = 0
FANOVA_TREES = 16  # per resample: the bootstrap mean averages BOOTSTRAPS times as many
PED_ANOVA_TOP_RUNS = 5  # Optuna's advice: at least 5 runs in PED-ANOVA's top quantile
PED_ANOVA = "ped-anova"
FANOVA = "fanova"
EVALUATORS = (PED_ANOVA, FANOVA)
LOG_SPAN = 10.0  # positive numbers whose largest is over 10 times the smallest go on a log scale
INTERVAL = (2.5, 97.5)  # percentiles of the resamples
IMPORTANCE_COLUMNS = [
    "study",
    "study_kind",
    "dataset",
    "hyperparameter",
    "evaluator",
    "importance",
    "low",
    "high",
    "runs",
]
TRIAL_COLUMNS = ["position", "experiment", "value", "best_so_far", "score", "train_time_s", "compute"]


@dataclass(frozen=True, eq=False)
class Search:
    """One search study on one dataset: its trials, its best run, and what mattered.

    `trials` has one row per finished compared run in trial order: `TRIAL_COLUMNS`
    (position 1, 2, ...; value the objective; best_so_far its running best;
    score the primary test metric; compute the cumulative training seconds),
    `rung` for a halving study, then the varied params as in the runs table.
    `importances` has one row per evaluator and hyperparameter, the most
    important first per evaluator: hyperparameter, evaluator, importance (the
    mean over resamples), low and high (the resamples' 2.5 and 97.5
    percentiles); empty when too few runs or hyperparameters varied.
    """

    study: str
    study_kind: str
    dataset: str
    kind: str  # the dataset's data type, by which its metrics are read (`primary`)
    params: tuple[str, ...]  # the hyperparameters that vary among its runs, in column order
    distributions: dict[str, BaseDistribution]  # per param, as inferred from its values
    trials: pd.DataFrame
    best: pd.Series  # the row of `trials` with the highest objective
    importances: pd.DataFrame
    runs: int  # how many runs the importance read (a halving study: its first rung's)

    @property
    def ordered(self) -> bool:
        """Whether its trials have an order worth a best-so-far curve (not a grid's)."""
        return self.study_kind in ORDERED_KINDS

    @property
    def reported(self) -> bool:
        """Whether the report shows it: a grid without importance is left to the grid's own section."""
        return self.ordered or not self.importances.empty

    def ranked(self, evaluator: str) -> pd.DataFrame:
        """One evaluator's importances, the most important first."""
        return self.importances[self.importances["evaluator"] == evaluator].reset_index(drop=True)

    def top_two(self) -> list[str]:
        """The two most important hyperparameters by PED-ANOVA (the first two params without importance)."""
        ranked = self.ranked(PED_ANOVA)
        return list(ranked["hyperparameter"][:2]) if len(ranked) >= 2 else list(self.params[:2])

    def rows(self) -> pd.DataFrame:
        """Its importances as rows of `reports/importance.csv` (`IMPORTANCE_COLUMNS`)."""
        return self.importances.assign(
            study=self.study, study_kind=self.study_kind, dataset=self.dataset, runs=self.runs
        )[IMPORTANCE_COLUMNS]


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def distribution(values: Sequence[Any]) -> BaseDistribution:
    """The Optuna distribution of one param's values across runs.

    Numbers: an `IntDistribution` when all are whole, else a `FloatDistribution`,
    on a log scale when all are positive and the largest is over `LOG_SPAN` times
    the smallest. Anything else (strings, booleans, layer lists, a missing value
    among numbers) is categorical over the values as the report prints them
    (`format.value`).
    """
    if all(_number(v) and math.isfinite(v) for v in values):
        low, high = float(min(values)), float(max(values))
        log = low > 0 and high > LOG_SPAN * low
        if all(float(v).is_integer() for v in values):
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(low, high, log=log)
    return CategoricalDistribution(sorted({format.value(v, "n/a") for v in values}))


def as_param(value: Any, dist: BaseDistribution) -> Any:
    """A runs-table value as `dist` holds it: an int, a float, or the printed text of a category."""
    if isinstance(dist, IntDistribution):
        return int(value)
    if isinstance(dist, FloatDistribution):
        return float(value)
    return format.value(value, "n/a")


def optuna_study(
    trials: pd.DataFrame, distributions: dict[str, BaseDistribution], values: pd.Series
) -> optuna.Study:
    """An in-memory Optuna study (maximising) of the runs in `trials`, each finished with its `values`."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study made
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={name: as_param(row[name], dist) for name, dist in distributions.items()},
                distributions=distributions,
                value=float(value),
            )
            for (_, row), value in zip(trials.iterrows(), values, strict=True)
        ]
    )
    return study


def evaluator(name: str, runs: int, seed: int) -> BaseImportanceEvaluator:
    """One of `EVALUATORS`, set for a study of `runs` runs.

    PED-ANOVA compares the top quantile of runs with all of them; its top
    quantile is Optuna's default 0.1, raised so that it holds
    `PED_ANOVA_TOP_RUNS` runs (at most half of them) as Optuna advises.
    fANOVA fits `FANOVA_TREES` trees, seeded.
    """
    if name == PED_ANOVA:
        return PedAnovaImportanceEvaluator(target_quantile=min(0.5, max(0.1, PED_ANOVA_TOP_RUNS / runs)))
    return FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=seed)


def importances(
    trials: pd.DataFrame,
    distributions: dict[str, BaseDistribution],
    values: pd.Series,
    bootstraps: int | None = None,
    seed: int = SEED_OF_RESAMPLES,
) -> pd.DataFrame:
    """Each evaluator's importance of each param over `bootstraps` resamples of the runs, with its spread.

    `bootstraps` defaults to `BOOTSTRAPS`. Each resample draws as many runs
    as there are, with replacement (seeded by `seed`); importances are
    normalised to sum to 1 per resample. A resample
    whose objective does not vary has nothing to split and is left out.
    Columns: hyperparameter, evaluator, importance (the mean), low and high
    (the 2.5 and 97.5 percentiles, widened to hold the mean), the most
    important first per evaluator; empty when no resample varied.
    """
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(trials), len(trials)) for _ in range(bootstraps or BOOTSTRAPS)]
    draws = [draw for draw in draws if np.ptp(values.to_numpy()[draw]) > 0]
    frames = []
    for name in EVALUATORS:
        found = []
        for number, draw in enumerate(draws):
            study = optuna_study(trials.iloc[draw], distributions, values.iloc[draw])
            with warnings.catch_warnings():  # PED-ANOVA's advice on small studies: followed in `evaluator`
                warnings.simplefilter("ignore")
                found.append(
                    get_param_importances(study, evaluator=evaluator(name, len(draw), seed + number))
                )
        if not found:
            continue
        shares = pd.DataFrame(found, columns=list(distributions)).fillna(0.0).astype(float)
        mean = shares.mean()
        low, high = (shares.quantile(q / 100) for q in INTERVAL)
        frame = pd.DataFrame(
            {
                "hyperparameter": list(distributions),
                "evaluator": name,
                "importance": mean.to_numpy(),
                "low": np.minimum(low, mean).to_numpy(),
                "high": np.maximum(high, mean).to_numpy(),
            }
        )
        frames.append(frame.sort_values("importance", ascending=False, kind="stable"))
    columns = ["hyperparameter", "evaluator", "importance", "low", "high"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def varied(rows: pd.DataFrame) -> list[str]:
    """The param columns whose printed value differs among `rows`, the seed left out."""
    return [
        name
        for name in rows.columns
        if is_param_column(name) and name != SEED and rows[name].map(format.value).nunique() > 1
    ]


def _trials(rows: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """A study's runs on one dataset in trial order, with the objective, its running best and compute."""
    if TRIAL in rows and rows[TRIAL].notna().all():
        rows = rows.sort_values([TRIAL, *([RUNG] if RUNG in rows else [])], kind="stable")
    value = rows[OBJECTIVE].astype(float)
    trials = pd.DataFrame(
        {
            "position": range(1, len(rows) + 1),
            "experiment": rows["experiment"].to_numpy(),
            "value": value.to_numpy(),
            "best_so_far": value.fillna(-np.inf).cummax().replace(-np.inf, np.nan).to_numpy(),
            "score": primary.scores(rows).to_numpy(),
            "train_time_s": rows["train_time_s"].astype(float).to_numpy(),
        }
    )
    trials["compute"] = trials["train_time_s"].fillna(0).cumsum()
    if RUNG in rows and rows[RUNG].notna().any():
        trials[RUNG] = rows[RUNG].to_numpy()
    for name in params:
        trials[name] = rows[name].to_numpy()
    return trials


def search(study: str, dataset: str, rows: pd.DataFrame, bootstraps: int | None = None) -> Search | None:
    """The `Search` of one study on one dataset from its finished compared runs; None without a scored run.

    A run without a validation score (one that trained nothing) stays in the
    trials, spending compute, but is left out of the importance.
    """
    if rows[OBJECTIVE].isna().all():
        return None
    params = varied(rows)
    trials = _trials(rows, params)
    scored = trials[trials["value"].notna()]
    if RUNG in trials:
        scored = scored[scored[RUNG] == scored[RUNG].min()]
    distributions = {name: distribution(list(scored[name])) for name in params}
    distributions = {name: dist for name, dist in distributions.items() if not dist.single()}
    shares = pd.DataFrame(columns=["hyperparameter", "evaluator", "importance", "low", "high"])
    if len(scored) >= MIN_RUNS and len(distributions) >= 2:
        shares = importances(scored, distributions, scored["value"], bootstraps)
    full = {name: distribution(list(trials[name])) for name in params}
    return Search(
        study=study,
        study_kind=str(rows["study_kind"].iloc[0]),
        dataset=dataset,
        kind=str(rows["kind"].iloc[0]),
        params=tuple(params),
        distributions=full,
        trials=trials,
        best=trials.loc[trials["value"].idxmax()],
        importances=shares,
        runs=len(scored),
    )


def searches(runs: pd.DataFrame, bootstraps: int | None = None) -> list[Search]:
    """One `Search` per search study (`SEARCH_KINDS`) and dataset, in table order.

    Only the finished runs compared with the baseline count (`results.compared`),
    every one of the study's (a run that repeats another's settings is still one
    of its trials).
    """
    done = compared(runs)
    found = []
    chosen = done[done["study_kind"].isin(SEARCH_KINDS)]
    for (study, dataset), rows in chosen.groupby(["study", "dataset"], sort=False):
        one = search(str(study), str(dataset), rows, bootstraps)
        if one is not None:
            found.append(one)
    return found


@dataclass(frozen=True)
class FullEpochs:
    """A halving study's cost and pick on one dataset, against the same configurations at full epochs.

    The other study (a random one) trained every configuration of the halving study's first rung, with
    the same values of the params both vary, for all of its epochs. Each pick is the run with the best
    validation objective (the halving study's: among its last rung), scored by its test metric.
    """

    study: str
    dataset: str
    configurations: int
    train_time_s: float  # training summed over every rung of every configuration
    score: float
    other: str
    other_train_time_s: float  # training of those configurations in the other study
    other_score: float


def against_full_epochs(found: list[Search]) -> list[FullEpochs]:
    """Each halving search whose configurations a random search of the same dataset trained in full."""

    def key(row: pd.Series, params: list[str]) -> tuple[str, ...]:
        return tuple(format.value(row[name]) for name in params)

    compared = []
    for halving in (s for s in found if s.study_kind == "halving" and RUNG in s.trials):
        trials = halving.trials
        first = trials[trials[RUNG] == trials[RUNG].min()]
        last = trials[(trials[RUNG] == trials[RUNG].max()) & trials["value"].notna()]
        for other in (s for s in found if s.study_kind == "random" and s.dataset == halving.dataset):
            params = [name for name in halving.params if name in other.params]
            runs = {key(row, params): row for _, row in other.trials.iterrows()}
            matched = [runs.get(key(row, params)) for _, row in first.iterrows()]
            if not params or last.empty or any(run is None for run in matched):
                continue
            chosen = pd.DataFrame(matched)
            compared.append(
                FullEpochs(
                    study=halving.study,
                    dataset=halving.dataset,
                    configurations=len(first),
                    train_time_s=float(trials["train_time_s"].sum()),
                    score=float(last.loc[last["value"].idxmax(), "score"]),
                    other=other.study,
                    other_train_time_s=float(chosen["train_time_s"].sum()),
                    other_score=float(chosen.loc[chosen["value"].astype(float).idxmax(), "score"]),
                )
            )
            break
    return compared


def table(found: list[Search]) -> pd.DataFrame:
    """Every search's importances, one row per evaluator and hyperparameter: `reports/importance.csv`."""
    frames = [one.rows() for one in found if not one.importances.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=IMPORTANCE_COLUMNS)


def distinguishable(first: pd.Series, second: pd.Series) -> bool:
    """Whether two importance rows (`Search.importances`) are told apart: their intervals do not overlap."""
    return bool(first["low"] > second["high"] or second["low"] > first["high"])
