"""The research-style summary: markdown written from the numbers (`page` makes it one HTML page).

Prose only: every sentence is written from the study's `analysis.Analysis`
(computed once, the same that the figures, the explorer and the notebooks
draw), so each claim can be traced to a number in `results/experiments.csv`;
no sentence is read back to write another. Every value that comes from
params, names, paths or error lines goes in through `format.text` (escaped
markdown and HTML) or `format.code` (an inline code span).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from tuninglab import schema
from tuninglab.lab.datasets import CONTRASTED
from tuninglab.lab.families import FAMILIES
from tuninglab.report import format, importance, observations, primary, results, sensitivity, stats
from tuninglab.report.analysis import Analysis
from tuninglab.report.format import code, codes, points, text
from tuninglab.report.importance import FullEpochs, Search
from tuninglab.report.sensitivity import Effect, Interaction, Value
from tuninglab.tasks import TASKS

# The baseline's settings in the set-up section: its model (with each family's `shown` settings), then
# its training.
MODEL_COLUMNS = [
    "data.source",
    "train.model",
    "train.hidden",
    *(f"train.{setting}" for family in FAMILIES.values() for setting in family.shown),
    "n_params",
    "used_device",
]
TRAINING_COLUMNS = [
    "train.optimizer",
    "train.lr",
    "train.batch_size",
    "train.epochs",
    "train.patience",
    "train.dropout",
    "train.weight_decay",
    "train.activation",
    "train.threads",
]
# The baseline's metrics in the baselines section, around its best epoch: the test metrics of each
# task among the datasets (`TASK_METRICS`), then these.
BASELINE_METRICS = (["test_loss"], ["cpu_time_s", "train_time_s"])
TASK_METRICS = {task.name: list(task.baseline_metrics) for task in TASKS.values()}
# Where runs of several tasks share a table: each task's primary metric and its chance reference.
PRIMARY_METRICS = {task.name: [task.primary_metric, task.chance_metric] for task in TASKS.values()}


def _table(frame: pd.DataFrame) -> str:
    """A markdown table of `frame` with every header and cell escaped; empty cells for missing values."""
    cells = frame.astype(object).where(frame.notna(), "")
    header = "| " + " | ".join(text(c) for c in cells.columns) + " |"
    rule = "|" + "---|" * len(cells.columns)
    body = ["| " + " | ".join(text(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _accuracy_header(dataset: str, kind: str, baseline: pd.DataFrame) -> str:
    """`image (chance 0.112)`: a dataset's accuracy (or R^2) column, with the baseline's chance beside it."""
    return format.dataset_header(dataset, baseline[primary.chance_metric(kind)].get(dataset))


def _by_task(kinds: Iterable[str], metrics: dict[str, list[str]]) -> list[str]:
    """The metrics (by task) of the tasks among these data types, in the order of `metrics`."""
    tasks = primary.tasks(kinds)
    return [name for task, names in metrics.items() if task in tasks for name in names]


def _listed(values: pd.Series) -> str:
    """The distinct values of a column, as text, in order (`unknown` for a missing one)."""
    return ", ".join(sorted({results.computed_value(value) for value in values}))


def _computed_sentence(runs: pd.DataFrame) -> str:
    """How the compared runs were computed (threads, kernels, numpy, versions, CPU); what is not compared."""
    compared = results.compared(runs)
    how = {
        dataset: f"{_listed(rows['used_threads'])} CPU thread(s) and {_listed(rows['cpu_capability'])} "
        "kernels"
        for dataset, rows in compared.groupby("dataset", sort=False)
    }
    if len(set(how.values())) == 1:
        where = next(iter(how.values()))
    else:
        where = "; ".join(f"{text(d)}: {n}" for d, n in how.items())
    sentence = (
        f"Runs compared here trained with {text(where)} (torch's CPU capability), as the baseline did; "
        f"numpy's SIMD level {text(_listed(compared['numpy_simd']))}, torch "
        f"{text(_listed(compared['torch_version']))}, numpy {text(_listed(compared['numpy_version']))}, "
        f"on {text(_listed(compared['cpu_model']))}. Results repeat only for the same thread count and CPU "
        "kernels, so a run computed otherwise is not compared with the baseline."
    )
    others = runs[runs["not_compared"] != ""]
    if not others.empty:
        listed = "; ".join(
            f"{code(e)} on {', '.join(rows['dataset'])} ({text(rows['not_compared'].iloc[0])})"
            for e, rows in others.groupby("experiment", sort=False)
        )
        sentence += f" Not compared: {listed}."
    return sentence


def setup_section(runs: pd.DataFrame) -> str:
    """Where the numbers come from: commit, studies, datasets, how runs were computed, baseline settings."""
    baseline = results.baselines(runs)
    experiments = runs.drop_duplicates("experiment")
    studies = experiments[experiments["experiment"] != "baseline"]["study"].value_counts()
    failed = experiments[experiments["status"] == "failed"]["experiment"].tolist()
    lines = [
        "## Set-up",
        "",
        f"Baseline commit {code(str(baseline['baseline_commit'].iloc[0])[:7])}; "
        f"{len(experiments) - 1} experiments on it ("
        + ", ".join(f"{text(study)}: {count}" for study, count in studies.items())
        + f"), each trained on all {len(baseline)} datasets."
        + (f" Failed (no metrics): {codes(failed)}." if failed else ""),
        "",
        _computed_sentence(runs),
        "",
        _table(baseline[[c for c in MODEL_COLUMNS if c in baseline]].map(format.value).reset_index()),
        "",
        "Baseline training settings (shared by all datasets unless a dataset overrides them):",
        "",
        _table(baseline[[c for c in TRAINING_COLUMNS if c in baseline]].map(format.value).reset_index()),
    ]
    return "\n".join(lines)


def one_at_a_time_intro(analysis: Analysis) -> str:
    """The heading of the one-at-a-time sections and how their verdicts were reached."""
    return "\n".join(
        [
            "## Hyperparameters, one at a time",
            "",
            "Each value is set against the baseline's value: the difference of mean "
            f"{primary.metric_words(analysis.kinds.values())} in points with its 95 % confidence interval "
            "(paired by seed where both ran the same seeds, Welch otherwise). The p-values of all "
            f"{analysis.comparisons} comparisons with an interval are adjusted together with "
            f"{stats.CORRECTION}; an effect is `{stats.IMPROVES}` or `{stats.WORSENS}` where the adjusted "
            f"p-value is below {stats.ALPHA}; `{stats.NOT_AFTER_CORRECTION}` where only the unadjusted one "
            f"is (its interval, which is not adjusted, excludes 0); else `{stats.NOT_DETECTED}`.",
        ]
    )


def expected_best_section(analysis: Analysis, figures: dict[str, str]) -> str:
    """Search studies: the expected test score of the validation-best of n trials, at a few n.

    `figures` maps each study to its figure's path.
    """
    table = analysis.expected_best
    if table.empty:
        return ""
    lines = [
        "## Expected best of n trials",
        "",
        "For a search study: the expected test score of the trial with the best validation score among n "
        "trials drawn at random from the N that finished (Tang et al. 2020, an unbiased estimator; its "
        "standard deviation over the draws in brackets). Where it still rises at n = N, more trials "
        "would likely find better settings. Table: `expected_best.csv`.",
    ]
    for study, rows in table.groupby("study", sort=False):
        lines += ["", f"### {text(study)}", ""]
        for dataset, mine in rows.groupby("dataset", sort=False):
            total = int(mine["trials"].iloc[0])
            shown = mine[mine["n"].isin(sorted({1, max(total // 2, 1), total}))]
            lines.append(
                f"- **{text(dataset)}** ({total} trials): "
                + ", ".join(f"n = {r.n}: {r.expected:.3f} ({r.std:.3f})" for r in shown.itertuples())
            )
        lines += ["", f"![{text(study)}: expected best of n]({figures[str(study)]})"]
    return "\n".join(lines)


def interval_text(interval: stats.Interval) -> str:
    """A mean's 95 % half-width in points and how many repeats: `± 1.2 over 5 repeats`, or `one run`."""
    if interval.half_width is None:
        return "one run: no interval"
    return f"± {points(interval.half_width)} over {interval.n} repeats"


def _metric_columns(rows: pd.DataFrame, names: list[str]) -> dict[str, pd.Series]:
    """Metric columns of `rows`, labelled and rounded as `format.METRICS` says."""
    return {format.METRICS[n][0]: rows[n].map(lambda v, n=n: format.metric(n, v)) for n in names}


def baselines_section(analysis: Analysis) -> str:
    """The baseline's test metrics per dataset beside its chance rate, its interval, its curves."""
    found = analysis.found
    baseline = results.baselines(analysis.runs)
    before, after = BASELINE_METRICS
    table = pd.DataFrame(
        _metric_columns(baseline, [*_by_task(baseline[results.KIND], TASK_METRICS), *before])
        | {"best epoch / run": [f"{int(r.best_epoch)} / {int(r.epochs_run)}" for r in baseline.itertuples()]}
        | _metric_columns(baseline, after)
    )
    table["95 % CI (points)"] = [interval_text(analysis.intervals[d]) for d in table.index]
    lines = ["## Baselines", "", _table(table.reset_index()), ""]
    again = analysis.repeats.get("baseline", [])
    if again:
        lines += [f"The baseline was also run as {codes(again)} (the same settings).", ""]
    if all(interval.n < 2 for interval in analysis.intervals.values()):
        lines += [
            "Each run trained once: no intervals, and no difference can be told from the variation "
            "between seeds. Set `train.repeats` to 2 or more for intervals.",
            "",
        ]
    mine = found[(found["experiment"] == "baseline") & (found["rule"] != "vs baseline")]
    lines += [f"- **{text(row.dataset)}**: {text(row.text)}" for row in mine.itertuples()]
    return "\n".join(lines)


def _value_table(name: str, effects: dict[str, Effect], baseline: pd.DataFrame) -> str:
    """Value x dataset: test accuracy, its difference from the baseline, flags; and the repeats."""
    cells: dict[str, dict[str, str]] = {}
    again: dict[str, set[str]] = {}
    for dataset, effect in effects.items():
        base = baseline.at[dataset, primary.metric(effect.kind)]
        for value in effect.values:
            if pd.isna(value.score):  # diverged in its first epoch: no trained weights, no score
                shown = "diverged, nothing trained"
            elif value.is_baseline:
                shown = f"{value.score:.3f}"
            else:
                shown = format.against(value.score, base)
            if value.diverged and pd.notna(value.score):
                shown += " diverged"
            if value.at_chance:
                shown += " no better than chance"
            cells.setdefault(value.label, {})[_accuracy_header(dataset, effect.kind, baseline)] = shown
            again.setdefault(value.label, set()).update(value.repeats)
    frame = pd.DataFrame.from_dict(cells, orient="index")
    if any(again.values()):
        frame["also run as"] = [", ".join(sorted(again[value])) for value in frame.index]
    frame.index.name = name
    return _table(frame.reset_index())


def _edge_sentence(effect: Effect, escape: Callable[[object], str]) -> str:
    """What the edge rule says of one effect: extend the range, or the best is the allowed bound."""
    if not effect.at_edge:
        return ""
    name = escape(effect.hyperparameter)
    if effect.extend:
        return (
            f" - the best value is the {effect.at_edge} tried: extend the range of {name} "
            f"to {effect.extend} values"
        )
    bound = "lower" if effect.at_edge == "lowest" else "upper"
    return f"; the best value is the {effect.at_edge} allowed: {name} is at its {bound} bound"


def verdict_text(value: Value, effect: Effect) -> str:
    """What one value did against the baseline's, with its interval in points (`Value.versus`):
    `improves image accuracy by 1.2 points (95 % CI 0.4 to 2.0)`, `no detectable effect on text (95 %
    CI -0.8 to 0.5)`, `-3.3 points on tabular (one run: no interval)`."""
    if value.versus is None:
        return "the baseline's value"
    comparison, verdict = value.versus.comparison, value.versus.verdict
    dataset, metric = effect.dataset, primary.words(effect.kind).short
    if comparison.low is None or comparison.high is None:
        amount = (
            "nothing trained" if pd.isna(comparison.difference) else f"{100 * comparison.difference:+.1f}"
        )
        return f"{amount} points on {dataset} ({stats.ONE_RUN})"
    interval = f"95 % CI {points(comparison.low)} to {points(comparison.high)}"
    if verdict == stats.NOT_DETECTED:
        return f"{verdict} on {dataset} ({100 * comparison.difference:+.1f} points, {interval})"
    if verdict == stats.NOT_AFTER_CORRECTION:
        return (
            f"{100 * comparison.difference:+.1f} points on {dataset} ({interval}), {verdict} "
            f"(adjusted p {value.versus.p_adjusted:.2f})"
        )
    return f"{verdict} {dataset} {metric} by {points(abs(comparison.difference))} points ({interval})"


def effect_sentence(effect: Effect, escape: Callable[[object], str] = text) -> str:
    """What one hyperparameter did on one dataset: spread, best and worst value, each value's verdict
    against the baseline, edge, divergence.

    `escape` writes names and values: markdown text by default, `str` for plain text.
    """
    name = escape(effect.hyperparameter)
    verdicts = "; ".join(
        f"{name}={escape(value.label)} {escape(verdict_text(value, effect))}"
        for value in effect.values
        if value.versus is not None
    )
    against = f". Against the baseline: {verdicts}" if verdicts else ""
    if effect.spread == 0:
        return f"no effect: every value gave {effect.best.score:.3f}{against}"
    sentence = (
        f"spread {points(effect.spread)} points; best {name}={escape(effect.best.label)} "
        f"({effect.best.score:.3f}), worst {escape(effect.worst.label)}{against}"
    )
    sentence += _edge_sentence(effect, escape)
    diverged = [value.label for value in effect.values if value.diverged]
    if diverged:
        sentence += f"; diverged at {name}={escape(', '.join(diverged))}"
    return sentence


def hyperparameter_section(analysis: Analysis, name: str, figures: dict[str, str]) -> str:
    """One hyperparameter: its table, its effect per dataset, its figures and observations."""
    effects, found = analysis.groups[name], analysis.found
    baseline = results.baselines(analysis.runs)
    kinds = [effect.kind for effect in effects.values()]
    chance_is = (
        "always predicting the majority class, or the training mean for regression"
        if primary.mixed(kinds)
        else "always predicting the majority class"
    )
    lines = [
        f"### {text(name)}",
        "",
        f"{primary.metric_words(kinds, capital=True)} per value (points vs baseline in brackets; "
        f"chance = {chance_is}):",
        "",
        _value_table(name, effects, baseline),
        "",
    ]
    for dataset, effect in effects.items():
        chance = baseline.at[dataset, primary.chance_metric(effect.kind)]
        lines.append(f"- **{text(dataset)}** (chance {chance:.3f}): {effect_sentence(effect)}")
    lines += [
        "",
        *(f"![{text(caption)}]({path})" for caption, path in figures.items()),
        "",
        "Observations:",
        "",
    ]
    for dataset, effect in effects.items():  # in value order, dataset by dataset
        for value in effect.values:
            rows = found[(found["experiment"] == value.experiment) & (found["dataset"] == dataset)]
            if value.experiment != "baseline" and not rows.empty:
                lines.append(_run_line(value.experiment, dataset, rows, list(value.repeats)))
    return "\n".join(lines)


def _run_line(experiment: str, dataset: str, rows: pd.DataFrame, again: list[str] | None = None) -> str:
    """One run's observations as a bullet: the line against the baseline (or why not), then the details."""
    leading = rows[rows["rule"].isin(["vs baseline", "not compared"])]
    main = (
        leading["text"].iloc[0] if not leading.empty else "not compared with the baseline (another dataset)"
    )
    details = "; ".join(rows[~rows.index.isin(leading.index)]["text"])
    also = f" (also run as {codes(again)})" if again else ""
    return f"- {code(experiment)}{also} on {text(dataset)}: {text(main)}" + (
        f". Details: {text(details)}" if details else ""
    )


def _grid_table(interaction: Interaction, cells: pd.DataFrame, metric: str | None = None) -> str:
    """One of an interaction's grids as a markdown table: `rows` down, `columns` across; `diverged` marked."""
    shown = cells.astype(object).copy()
    for row in cells.index:
        for column in cells.columns:
            amount = cells.at[row, column]
            label = format.metric(metric, amount) if metric else format.number(amount, 3)
            if interaction.diverged.at[row, column]:
                label = f"{label} diverged".strip()
            shown.at[row, column] = label
    shown.columns = [f"{interaction.columns}={column}" for column in cells.columns]
    shown.index.name = interaction.rows
    return _table(shown.reset_index())


def _best_cell(interaction: Interaction) -> str:
    """The best cell of a grid: `train.optimizer=adam with train.lr=0.01 (0.912)`."""
    best_row, best_column = interaction.best
    return (
        f"{text(interaction.rows)}={text(best_row)} with {text(interaction.columns)}={text(best_column)} "
        f"({interaction.score.at[best_row, best_column]:.3f})"
    )


def _matters_more(interaction: Interaction) -> str:
    """With which value of `rows` the grid's `columns` moved the metric most; "" when fewer than two rows
    were measured. Each cell is one configuration's mean: the gap has no interval."""
    rows, columns = text(interaction.rows), text(interaction.columns)
    spreads = interaction.spreads.dropna()
    if len(spreads) < 2:
        return ""
    most, least = spreads.idxmax(), spreads.idxmin()
    return (
        f"{columns} matters more with {rows}={text(most)} than with {text(least)}: a spread of "
        f"{points(spreads[most])} against {points(spreads[least])} points"
    )


def interaction_sentences(interaction: Interaction) -> list[str]:
    """What a grid study's two hyperparameters did on one dataset, as bullets drawn from the interaction.

    The best cell; how far `columns` moved the metric at each value of
    `rows` (and with which it moved it most); and
    which value of `rows` wins at each value of `columns`.
    """
    rows, columns, accuracy = text(interaction.rows), text(interaction.columns), interaction.score
    lines = [f"- Best: {_best_cell(interaction)}."]
    for row, values in accuracy.iterrows():
        measured = values.dropna()
        if len(measured) < 2:
            continue
        diverged = [c for c in measured.index if interaction.diverged.at[row, c]]
        lines.append(
            f"- With {rows}={text(row)}: {columns} spread {points(interaction.spreads[row])} points "
            f"(best {text(measured.idxmax())}, {measured.max():.3f}; worst {text(measured.idxmin())}, "
            f"{measured.min():.3f})"
            + (f"; diverged at {columns}={text(', '.join(diverged))}" if diverged else "")
            + "."
        )
    more = _matters_more(interaction)
    if more:
        lines.append(f"- {more}.")
    winners = accuracy.idxmax(axis=0, skipna=True)
    measured = accuracy.notna().all(axis=0)
    if measured.any():
        lines.append(
            f"- Best {rows} at each {columns}: "
            + "; ".join(
                f"{text(column)}: {text(winners[column])} ({accuracy.at[winners[column], column]:.3f})"
                for column in accuracy.columns[measured]
            )
            + "."
        )
    if len(accuracy.index) == 2 and measured.sum() >= 2:
        first, second = accuracy.index
        differences = (accuracy.loc[first] - accuracy.loc[second])[measured]
        lines.append(
            f"- {rows}={text(first)} scores higher than {text(second)} at {int((differences > 0).sum())} of "
            f"{len(differences)} {columns} values (mean difference {100 * differences.mean():+.1f} points)."
        )
    return lines


def interaction_section(analysis: Analysis, figures: dict[str, str]) -> str:
    """Grid studies of two hyperparameters: per study and dataset, the grid, what it says, its figure.

    `figures` maps each study to its figure's path.
    """
    found = analysis.interactions
    if not found:
        return ""
    baseline = results.baselines(analysis.runs)
    lines = [
        "## Two hyperparameters together",
        "",
        "Grid studies vary two hyperparameters at once: reading along a row is the effect of the second "
        "with the first held at one value, so a row whose spread differs from another's shows that the "
        "two interact. A dataset appears where both varied; where a grid changed only a shared "
        "hyperparameter (a dataset's own param belongs to another dataset), its runs are one-at-a-time "
        "runs of that hyperparameter, above.",
    ]
    for study in dict.fromkeys(interaction.study for interaction in found):
        lines += ["", f"### {text(study)}"]
        for interaction in (i for i in found if i.study == study):
            dataset = interaction.dataset
            lines += [
                "",
                f"**{text(dataset)}**: {primary.words(interaction.kind).metric} "
                f"(chance {baseline.at[dataset, primary.chance_metric(interaction.kind)]:.3f}):",
                "",
                _grid_table(interaction, interaction.score),
            ]
            for metric, cells in interaction.extra.items():
                lines += [
                    "",
                    f"{text(format.METRICS[metric][0])}:",
                    "",
                    _grid_table(interaction, cells, metric),
                ]
            lines += ["", *interaction_sentences(interaction)]
        lines += ["", f"![{text(study)}: each grid, one line per value of its rows]({figures[study]})"]
    return "\n".join(lines)


def comparison_section(analysis: Analysis, figures: dict[str, str]) -> str:
    """The cross-dataset question: which hyperparameters matter where, ranked and side by side."""
    table, kinds = analysis.table, analysis.kinds
    lines = ["## Across datasets", ""]
    note = primary.spread_note(kinds[dataset] for dataset in table["dataset"])
    lines += [note, ""] if note else []
    lines += [f"![{caption}]({path})" for caption, path in figures.items()]
    spread = (
        "spread of each dataset's primary metric in its own points"
        if note
        else "spread of test accuracy in points"
    )
    lines += ["", f"Ranking per dataset ({spread}; `~` = no value had a detectable effect):", ""]
    for dataset in primary.ordered(table["dataset"], kinds):
        ranked = sensitivity.ranking(table, dataset)
        items = [
            f"{text(r.hyperparameter)} {'~' if r.detected is False else ''}{points(r.spread)}"
            for r in ranked.itertuples()
        ]
        lines.append(f"- **{dataset}**: " + ", ".join(items))
    lines += ["", "Does a hyperparameter matter more for one data type than another?", ""]
    if set(CONTRASTED) <= set(table["dataset"]):
        lines += [f"- {pair_sentence(table, *CONTRASTED)}"]
    lines += [f"- {sentence}" for sentence in cross_dataset_sentences(analysis)]
    return "\n".join(lines)


def pair_sentence(table: pd.DataFrame, first: str, second: str) -> str:
    """Which hyperparameters had a detectable effect on `first`, on `second`, on both, on neither.

    `table` is `sensitivity.table` (one row per effect; `detected` from its verdicts). A
    hyperparameter untested on one of them (one run: no interval) is listed apart.
    """
    rows = table[table["dataset"].isin([first, second])]
    spreads = rows.pivot(index="hyperparameter", columns="dataset", values="spread")[[first, second]].dropna()
    detected = rows.pivot(index="hyperparameter", columns="dataset", values="detected").loc[spreads.index]

    def listed(chosen: list[str]) -> str:
        items = [
            f"{text(n)} ({points(spreads.at[n, first])} vs {points(spreads.at[n, second])})" for n in chosen
        ]
        return ", ".join(items) or "none"

    order = (spreads[first] - spreads[second]).abs().sort_values(ascending=False).index
    found = {
        (a, b): [n for n in order if (detected.at[n, first], detected.at[n, second]) == (a, b)]
        for a in (True, False)
        for b in (True, False)
    }
    untested = [n for n in order if pd.isna(detected.at[n, first]) or pd.isna(detected.at[n, second])]
    sentence = (
        f"**{first} vs {second}** (spread in points, {first} first): a detectable effect on {first} only: "
        f"{listed(found[True, False])}; on {second} only: {listed(found[False, True])}; on both: "
        f"{listed(found[True, True])}; on neither: {listed(found[False, False])}"
    )
    return sentence + (f"; without intervals (one run): {listed(untested)}" if untested else "")


def cross_dataset_sentences(analysis: Analysis) -> list[str]:
    """Per hyperparameter: its spread on each dataset, and where some value had a detectable effect."""
    sentences = []
    for contrast in analysis.contrasts:
        spreads = ", ".join(f"{dataset} {points(spread)}" for dataset, spread in contrast.spreads)
        where = {
            "a detectable effect on": [d for d, found in contrast.detected.items() if found],
            "no detectable effect on": [d for d, found in contrast.detected.items() if found is False],
            "one run, no interval on": [d for d, found in contrast.detected.items() if found is None],
        }
        verdict = "; ".join(f"{words} {', '.join(names)}" for words, names in where.items() if names)
        sentences.append(f"**{text(contrast.hyperparameter)}**: {verdict}; spread {spreads} points")
    return sentences


def ranked_effects(effects: Iterable[Effect], dataset: str) -> list[Effect]:
    """One dataset's effects, the largest difference of means from the baseline first (`Effect.largest`)."""
    mine = [effect for effect in effects if effect.dataset == dataset and effect.largest is not None]
    return sorted(mine, key=lambda e: -abs(e.largest.versus.comparison.difference))  # type: ignore[union-attr]


def conclusions_section(analysis: Analysis) -> str:
    """Conclusions, each from a number above: what moved the metric most (with intervals), what had no
    detectable effect, what to try next.

    Each grid study's interaction gets its best cell and which row value its second hyperparameter
    mattered more with.
    """
    runs, table, found = analysis.runs, analysis.table, analysis.found
    lines = ["## Conclusions", ""]
    for dataset in primary.ordered(table["dataset"], analysis.kinds):
        ranked = ranked_effects(analysis.effects, dataset)
        detected = [e for e in ranked if e.detected]
        quiet = [e.hyperparameter for e in ranked if e.detected is False]
        untested = [e.hyperparameter for e in ranked if e.detected is None]
        items = [
            f"{text(e.hyperparameter)}={text(e.largest.label)} {verdict_text(e.largest, e)}"  # type: ignore[union-attr]
            for e in (detected or ranked[:1])
        ]
        sentence = f"- **{dataset}**, by the largest difference from the baseline: " + "; ".join(items)
        if quiet:
            sentence += f"; no detectable effect: {text(', '.join(quiet))}"
        if untested:
            sentence += f"; one run, no interval: {text(', '.join(untested))}"
        lines.append(sentence + ".")
    for interaction in analysis.interactions:
        best, more = _best_cell(interaction), _matters_more(interaction)
        lines.append(
            f"- **{text(interaction.dataset)}**, grid {code(interaction.study)}: best {best}"
            + (f"; {more[0].lower()}{more[1:]}" if more else "")
            + "."
        )
    for _, best in analysis.best_runs.iterrows():
        interval = (
            stats.ONE_RUN
            if pd.isna(best["ci_low"])
            else f"95 % CI {points(best['ci_low'])} to {points(best['ci_high'])}, not corrected for "
            "being the best of several"
        )
        lines.append(
            f"- Best run on {text(best['dataset'])}: {code(best['experiment'])} ({best['score']:.3f}, "
            f"chance {best['chance']:.3f}; {100 * best['gain']:+.1f} points vs baseline, {interval})."
        )
    finished = results.finished(runs)
    finished = finished[finished["same_as"] == ""].assign(
        shown=lambda f: f.apply(results.dataset_name, axis=1)
    )
    diverged = finished[finished["status"] == "diverged"]
    if not diverged.empty:
        where = diverged.groupby("experiment", sort=False)["shown"].agg(", ".join)
        lines.append("- Diverged: " + "; ".join(f"{code(e)} on {text(d)}" for e, d in where.items()) + ".")
    chance = finished[finished.apply(observations.at_chance, axis=1)]
    if not chance.empty:
        where = chance.groupby("experiment", sort=False)["shown"].agg(", ".join)
        predicting = "the majority class" + (", or the mean" if primary.mixed(chance[results.KIND]) else "")
        lines.append(
            f"- No better than chance (always predicting {predicting}): "
            + "; ".join(f"{code(e)} on {text(d)}" for e, d in where.items())
            + "."
        )
    for _, row in table[table["at_edge"] != ""].iterrows():
        if row["extend"]:
            lines.append(
                f"- Extend the range of {text(row['hyperparameter'])} on {row['dataset']} to {row['extend']} "
                f"values: its best value {text(row['best_value'])} is the {row['at_edge']} tried."
            )
        else:
            lines.append(
                f"- {text(row['hyperparameter'])} on {row['dataset']}: its best value "
                f"{text(row['best_value'])} is the {row['at_edge']} allowed, so there is no range to extend."
            )
    counts = found[found["rule"].isin((*observations.HEADLINE_RULES, "early best"))]
    counts = counts.groupby("rule")["experiment"].count()
    total = len(found.drop_duplicates(["experiment", "dataset"]))
    if not counts.empty:
        lines.append(
            f"- Across {total} finished runs: "
            + ", ".join(f"{rule} in {n}" for rule, n in counts.sort_values(ascending=False).items())
            + "."
        )
    return "\n".join(lines)


def _status(rows: pd.DataFrame) -> str:
    """One experiment's status as shown: the same on every dataset, or dataset by dataset."""
    shown = {row["dataset"]: observations.status_text(row) for _, row in rows.iterrows()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{dataset}: {status}" for dataset, status in shown.items())


def _runs_table(chosen: pd.DataFrame, analysis: Analysis) -> str:
    """One row per experiment: study, changes, test accuracy per dataset (with chance), status, repeats."""
    runs, kinds, again = analysis.runs, analysis.kinds, analysis.repeats
    baseline = results.baselines(runs)
    table = []
    for experiment, rows in chosen.groupby("experiment", sort=False):
        row: dict[str, str] = {
            "experiment": str(experiment),
            "study": rows["study"].iloc[0],
            "changes": max(rows.apply(observations.settings, axis=1), key=len),
        }
        for dataset in primary.ordered(runs["dataset"], kinds):
            mine = rows[rows["dataset"] == dataset]
            cell = (
                "other data"
                if (mine["other_source"] != "").any()
                else format.number(mine[primary.metric(kinds[dataset])].max(), 3)
            )
            row[_accuracy_header(dataset, kinds[dataset], baseline)] = cell
        row["status"] = _status(rows)
        if again.get(str(experiment)):
            row["also run as"] = ", ".join(again[str(experiment)])
        table.append(row)
    return _table(pd.DataFrame(table))


def _rest(runs: pd.DataFrame, shown: set[str]) -> pd.DataFrame:
    """The rows of experiments no other section shows that changed something on the baseline's data.

    An experiment that only changed a data source is in the other-data section alone.
    """
    rows = runs[~runs["experiment"].isin(shown | {"baseline"})]
    own = (rows["other_source"] == "") & ((rows["changed"] != "") | (rows["not_compared"] != ""))
    return rows[rows["experiment"].isin(rows[own]["experiment"])]


def manual_section(analysis: Analysis, shown: set[str]) -> str:
    """Runs made by hand (study `manual`) that no other section shows: their table and observations."""
    rest = _rest(analysis.runs, shown)
    chosen = rest[rest["study"] == "manual"]
    if chosen.empty:
        return ""
    lines = [
        "## Manual runs",
        "",
        "Experiments run or queued by hand (not part of any study), against the baseline:",
        "",
        _runs_table(chosen, analysis),
        "",
    ]
    mine = analysis.found.merge(chosen[chosen["other_source"] == ""][["experiment", "dataset"]])
    for (experiment, dataset), rows in mine.groupby(["experiment", "dataset"], sort=False):
        lines.append(_run_line(str(experiment), str(dataset), rows))
    failed = chosen[chosen["status"] == "failed"].drop_duplicates("experiment")
    lines += [f"- {code(r.experiment)} failed: {text(r.error)}" for r in failed.itertuples()]
    return "\n".join(lines)


def other_runs_section(analysis: Analysis, shown: set[str]) -> str:
    """Runs of studies that no other section shows: several changes at once, seeds, failed, not compared."""
    runs = analysis.runs
    rest = _rest(runs, shown)
    others = rest[rest["study"] != "manual"]
    if others.empty:
        return ""
    lines = [
        "## Other runs",
        "",
        f"{primary.metric_words(runs[results.KIND], capital=True)} of the runs that changed several "
        "hyperparameters, the seed re-runs, runs not compared with the baseline, and failed runs:",
        "",
        _runs_table(others, analysis),
    ]
    failed = others[others["status"] == "failed"].drop_duplicates("experiment")
    if not failed.empty:
        lines += ["", *(f"- {code(r.experiment)} failed: {text(r.error)}" for r in failed.itertuples())]
    return "\n".join(lines)


def other_data_section(analysis: Analysis) -> str:
    """Runs on another data source than the baseline's: other datasets, never set against the baseline."""
    found = analysis.found
    chosen = analysis.runs[analysis.runs["other_source"] != ""]
    if chosen.empty:
        return ""
    table = pd.DataFrame(
        {
            "dataset": chosen.apply(results.dataset_name, axis=1),
            "experiment": chosen["experiment"],
            "study": chosen["study"],
            "other changes": chosen.assign(changed=chosen["changed"].map(_without_source)).apply(
                observations.settings, axis=1
            ),
            **_metric_columns(chosen, _by_task(chosen[results.KIND], PRIMARY_METRICS)),
            "status": chosen.apply(observations.status_text, axis=1),
        }
    )
    lines = [
        "## Other data",
        "",
        "Runs on another data source than the baseline's are other datasets: they are not compared with "
        "the baseline, nor counted as a hyperparameter value or a best run.",
        "",
        _table(table),
        "",
    ]
    for _, run in chosen.iterrows():
        rows = found[(found["experiment"] == run["experiment"]) & (found["dataset"] == run["dataset"])]
        if not rows.empty:
            lines.append(_run_line(run["experiment"], results.dataset_name(run), rows))
    failed = chosen[chosen["status"] == "failed"].drop_duplicates("experiment")
    lines += [f"- {code(r.experiment)} failed: {text(r.error)}" for r in failed.itertuples()]
    return "\n".join(lines)


def _without_source(changed: str) -> str:
    return ",".join(name for name in changed.split(",") if name != results.SOURCE)


def rules_section(kinds: Iterable[str] = ()) -> str:
    """How the observations were made: each rule and its thresholds (and a regression's, among `kinds`)."""
    o = observations
    kinds = list(kinds)
    regression = primary.mixed(kinds)
    training = "training accuracy (training R^2 for regression)" if regression else "training accuracy"
    return "\n".join(
        [
            "## How the observations are made",
            "",
            "- ranking: runs of a classifier are ranked by test accuracy, for every data type "
            "alike, so that data types and data sources compare on one scale, each beside its chance rate "
            "(always predicting the majority class). Where classes are imbalanced (as in the tabular "
            "default, four classes of run time), accuracy mostly counts the large classes: read macro F1 and "
            "balanced accuracy (the mean recall per class; chance scores 1 / the number of classes) in "
            "the baselines table for the small ones.",
            "- diverged: the trainer stopped the run on a NaN, infinite or exploding loss.",
            "- no better than chance: test accuracy at most "
            f"{100 * schema.CHANCE_MARGIN:.1f} points above the chance rate, the accuracy of always "
            "predicting the training split's majority class, measured on the test split"
            + (
                "; for regression, test R^2 at most as far above the R^2 of always predicting the "
                "training split's mean (about 0)."
                if regression
                else "."
            ),
            f"- overfitting: validation loss at its minimum at least {o.OVERFIT_EPOCHS} epochs before "
            f"the end, at least {100 * o.OVERFIT_RISE:.0f}% higher at the end, while training loss fell "
            f"at least {100 * o.OVERFIT_TRAIN_DROP:.0f}% more.",
            f"- still improving: not stopped early, best epoch among the last two, validation loss "
            f"down at least {100 * o.IMPROVING_DROP:.0f}% over the last {o.IMPROVING_WINDOW} epochs.",
            f"- underfitting: final {training} at least {o.UNDERFIT_POINTS:.0f} points below the baseline's.",
            f"- early best: best epoch within the first {100 * o.EARLY_FRACTION:.0f}% of the configured "
            "epochs.",
            f"- unstable: validation loss at least {100 * o.SWING_RISE:.0f}% above both neighbouring "
            f"epochs, {o.SWINGS} times or more.",
            f"- intervals: a run's {primary.metric_words(kinds)} is the mean over its repeats (seeds "
            "`train.seed`, `train.seed + 1`, ... on the same split: they cover the variation of weight "
            "initialisation, shuffling, dropout and augmentation, not of the split). A value's effect is its "
            "difference of means from the baseline with the 95 % confidence interval of that difference: "
            "a paired t-test by seed where both ran the same seeds, Welch's t-test otherwise; with one run "
            "on a side there is no interval. The p-values of every one-at-a-time comparison are adjusted "
            f"together with {stats.CORRECTION} (false discovery rate {100 * stats.ALPHA:.0f} %): "
            f"`{stats.IMPROVES}` or `{stats.WORSENS}` below {stats.ALPHA}; "
            f"`{stats.NOT_AFTER_CORRECTION}` where only the unadjusted p-value is (the interval shown is "
            f"not adjusted); else `{stats.NOT_DETECTED}`. With 3 to 5 repeats a paired t-test has 2 to 4 "
            "degrees of freedom, so only large or very steady differences survive the correction.",
            "- edge: the best of three or more numeric values is the lowest or the highest tried; the "
            "range is worth extending only where the param's allowed values go further that way.",
            "- one at a time: only runs of one-at-a-time studies; a run of any study with exactly the "
            'settings of another is merged into it ("also run as").',
            "- not compared: a run on another data source is another dataset; a run computed otherwise "
            "than the baseline (another number of CPU threads, other CPU kernels) is not set against it, "
            "nor counted in sensitivity.",
            "- time: CPU time of training (the process's CPU seconds), which does not depend on what "
            "else the machine ran; wall time is in the results table.",
        ]
    )


# The search studies (`importance.Search`): their best run and what their importance says, with its spread.
EVALUATOR_NAMES = {importance.PED_ANOVA: "PED-ANOVA", importance.FANOVA: "fANOVA"}


def importance_table(search: Search) -> pd.DataFrame:
    """One search's importances as shown: `hyperparameter`, then per evaluator `mean (low-high)`."""
    order = list(search.ranked(importance.PED_ANOVA)["hyperparameter"])
    shown = {}
    for evaluator in importance.EVALUATORS:
        rows = search.ranked(evaluator).set_index("hyperparameter").reindex(order)
        shown[EVALUATOR_NAMES[evaluator]] = [
            f"{r.importance:.2f} ({r.low:.2f}-{r.high:.2f})" for r in rows.itertuples()
        ]
    return pd.DataFrame({"hyperparameter": order, **shown})


def importance_sentence(search: Search, evaluator: str, quote: Callable[[object], str] = text) -> str:
    """What one evaluator says: its two most important hyperparameters, told apart or not by their intervals.

    `train.lr 0.62 (0.41-0.80) vs train.dropout 0.05 (0.00-0.20): train.lr matters more`; "not
    distinguishable" where the intervals overlap. Names go in through `quote` (`str` for plain text).
    """
    ranked = search.ranked(evaluator)
    first, second = ranked.iloc[0], ranked.iloc[1]

    def shown(row: pd.Series) -> str:
        return f"{quote(row['hyperparameter'])} {row['importance']:.2f} ({row['low']:.2f}-{row['high']:.2f})"

    verdict = (
        f"{quote(first['hyperparameter'])} matters more"
        if importance.distinguishable(first, second)
        else "not distinguishable (the intervals overlap)"
    )
    return f"{EVALUATOR_NAMES[evaluator]}: {shown(first)} vs {shown(second)}: {verdict}"


def best_search_sentence(
    search: Search, quote: Callable[[object], str] = text, run: Callable[[object], str] = code
) -> str:
    """A search's best run by the objective: its settings, its validation and test scores, when it came.

    Settings go in through `quote`, the run's name through `run` (`str` for both: plain text).
    """
    best, trials = search.best, search.trials
    words = primary.words(search.kind)
    settings = ", ".join(quote(format.setting(name, best[name])) for name in search.params)
    return (
        f"best run {run(best['experiment'])} (trial {best['position']:.0f} of {len(trials)}, after "
        f"{best['compute']:.1f} s of the {trials['compute'].iloc[-1]:.1f} s of training): validation "
        f"{words.short} {best['value']:.3f}, {words.metric} {best['score']:.3f}; {settings}"
    )


def full_epochs_sentence(budget: FullEpochs, kind: str) -> str:
    """A halving study's training time and pick against the same configurations trained in full."""
    metric = primary.words(kind).metric
    return (
        f"Compute: {budget.train_time_s:.0f} s of training for its {budget.configurations} configurations "
        f"over all rungs, against {budget.other_train_time_s:.0f} s for the same configurations at full "
        f"epochs in {code(budget.other)} ({budget.other_train_time_s / budget.train_time_s:.1f}x); picked "
        f"by validation, {metric} {budget.score:.3f} here and {budget.other_score:.3f} there."
    )


def search_section(analysis: Analysis, pictures: dict[str, dict[str, str]]) -> str:
    """Per search study (`analysis.searches`): per dataset its best run and what its importance says.

    A grid without importance is left to the grid's own section (`interaction_section`). `pictures`
    maps each study to its figures (caption -> path, `search_figures.save_all`).
    """
    shown = [search for search in analysis.searches if search.reported]
    if not shown:
        return ""
    regression = ": a regression's validation R^2" if primary.mixed(s.kind for s in shown) else ""
    lines = [
        "## Search studies",
        "",
        "A search study varies several hyperparameters together and selects by the validation metric (the "
        f"objective, `{importance.OBJECTIVE}`{regression}); the test metric is its final number only. "
        "Importance is Optuna's, over every finished compared run of the study on a "
        "dataset (a halving study: its first rung): PED-ANOVA (Optuna's default) and fANOVA, each the mean "
        f"over {importance.BOOTSTRAPS} bootstrap resamples of the runs with the 2.5 and 97.5 percentiles. "
        "Two importances whose intervals overlap are not distinguishable. One-at-a-time sensitivity, above, "
        "answers another question: what one hyperparameter does on its own around the baseline.",
    ]
    for study in dict.fromkeys(search.study for search in shown):
        mine = [search for search in shown if search.study == study]
        lines += ["", f"### {text(study)} ({text(mine[0].study_kind)})"]
        for search in mine:
            lines += ["", f"**{text(search.dataset)}**: {best_search_sentence(search)}."]
            budget = next(
                (b for b in analysis.full_epochs if (b.study, b.dataset) == (study, search.dataset)), None
            )
            if budget is not None:
                lines += ["", full_epochs_sentence(budget, search.kind)]
            if search.importances.empty:
                lines += [
                    "",
                    f"No importance: {search.runs} runs and {len(search.params)} varied hyperparameter(s); "
                    f"it needs {importance.MIN_RUNS} runs and two.",
                ]
                continue
            lines += ["", _table(importance_table(search)), ""]
            lines += [f"- {importance_sentence(search, evaluator)}" for evaluator in importance.EVALUATORS]
        lines += ["", *(f"![{text(caption)}]({path})" for caption, path in pictures.get(study, {}).items())]
    return "\n".join(lines)
