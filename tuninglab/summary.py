"""The research-style summary: markdown written from the numbers, and the same as one HTML page.

Every sentence is generated from the runs table and the analysis tables, so
each claim can be traced to a number in `results/experiments.csv`.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import markdown
import pandas as pd

from tuninglab import observations, results, sensitivity
from tuninglab.params import DATASETS

MODEL_COLUMNS = ["data.source", "model", "hidden", "channels", "embedding_dim"]
TRUST_R2 = 0.5  # out-of-bag R^2 below which the forest's importances are only a rough guide
TRAINING_COLUMNS = [
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "patience",
    "dropout",
    "weight_decay",
    "activation",
]


def _pts(fraction: float) -> str:
    return f"{100 * fraction:.1f}"


def _table(frame: pd.DataFrame) -> str:
    """A markdown table; empty cells for missing values."""
    cells = frame.astype(object).where(frame.notna(), "")
    header = "| " + " | ".join(str(c) for c in cells.columns) + " |"
    rule = "|" + "---|" * len(cells.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def setup_section(runs: pd.DataFrame) -> str:
    """Where the numbers come from: baseline commit, studies, datasets and baseline settings."""
    baseline = results.baselines(runs)
    experiments = runs.drop_duplicates("experiment")
    studies = experiments[experiments["experiment"] != "baseline"]["study"].value_counts()
    failed = experiments[experiments["status"] == "failed"]["experiment"].tolist()
    lines = [
        "## Set-up",
        "",
        f"Baseline commit `{str(baseline['baseline_commit'].iloc[0])[:7]}`; "
        f"{len(experiments) - 1} experiments on it ("
        + ", ".join(f"{study}: {count}" for study, count in studies.items())
        + f"), each trained on all {len(baseline)} datasets."
        + (f" Failed (no metrics): {', '.join(failed)}." if failed else ""),
        "",
        _table(
            baseline[[c for c in [*MODEL_COLUMNS, "n_params"] if c in baseline]]
            .map(sensitivity.label)
            .reset_index()
        ),
        "",
        "Baseline training settings (shared by all datasets unless a dataset overrides them):",
        "",
        _table(baseline[[c for c in TRAINING_COLUMNS if c in baseline]].map(sensitivity.label).reset_index()),
    ]
    return "\n".join(lines)


def baselines_section(runs: pd.DataFrame, noise: pd.DataFrame, found: pd.DataFrame) -> str:
    """The baseline's test metrics per dataset, the seed noise, and what its curves show."""
    baseline = results.baselines(runs)
    table = pd.DataFrame(
        {
            "test accuracy": baseline["test_accuracy"].map("{:.3f}".format),
            "macro F1": baseline["macro_f1"].map("{:.3f}".format),
            "test loss": baseline["test_loss"].map("{:.3f}".format),
            "best epoch / run": [f"{int(r.best_epoch)} / {int(r.epochs_run)}" for r in baseline.itertuples()],
            "training time (s)": baseline["train_time_s"].map("{:.1f}".format),
        }
    )
    seeds = noise.set_index("dataset")
    table["seed noise (points)"] = [
        f"{_pts(seeds.at[d, 'range'])} over {int(seeds.at[d, 'runs'])} seeds"
        if d in seeds.index
        else "not measured"
        for d in table.index
    ]
    lines = ["## Baselines", "", _table(table.reset_index()), ""]
    if noise.empty:
        lines += [
            "No seed re-runs: differences cannot be told from noise. "
            "Run `python -m tuninglab study run noise -j 2` for a noise reference.",
            "",
        ]
    mine = found[(found["experiment"] == "baseline") & (found["kind"] != "vs baseline")]
    lines += [f"- **{row.dataset}**: {row.text}" for row in mine.itertuples()]
    return "\n".join(lines)


def _value_table(name: str, group_by_dataset: dict[str, pd.DataFrame], baseline: pd.DataFrame) -> str:
    """Value x dataset: test accuracy, its difference from the baseline, and divergence."""
    cells: dict[str, dict[str, str]] = {}
    for dataset, group in group_by_dataset.items():
        base = baseline.at[dataset, "test_accuracy"]
        for rows in sensitivity.in_order(group, name):
            accuracy = rows["test_accuracy"].mean()
            text = f"{accuracy:.3f}"
            if (rows["experiment"] != "baseline").all():
                text += f" ({100 * (accuracy - base):+.1f})"
            if rows["diverged"].astype(bool).any():
                text += " diverged"
            cells.setdefault(sensitivity.label(rows[name].iloc[0]), {})[dataset] = text
    frame = pd.DataFrame.from_dict(cells, orient="index")
    frame.index.name = name
    return _table(frame.reset_index())


def hyperparameter_section(
    name: str,
    groups: dict[str, pd.DataFrame],
    runs: pd.DataFrame,
    table: pd.DataFrame,
    found: pd.DataFrame,
    figures: dict[str, str],
) -> str:
    """One hyperparameter: its table, its sensitivity per dataset, its figures and observations."""
    baseline = results.baselines(runs)
    lines = [
        f"### {name}",
        "",
        "Test accuracy per value (points vs baseline in brackets):",
        "",
        _value_table(name, groups, baseline),
        "",
    ]
    for row in table[table["hyperparameter"] == name].itertuples():
        if row.spread == 0:
            lines.append(f"- **{row.dataset}**: no effect: every value gave {row.best_accuracy:.3f}")
            continue
        sentence = (
            f"- **{row.dataset}**: spread {_pts(row.spread)} points; best {name}={row.best_value} "
            f"({row.best_accuracy:.3f}), worst {row.worst_value}"
        )
        if row.within_noise:
            sentence += " - within seed noise"
        if row.at_edge:
            sentence += f" - the best value is at the edge of the tried range: extend the range of {name}"
        diverged = json.loads(row.diverged_values)
        if diverged:
            sentence += f" - diverged at {name}={', '.join(diverged)}"
        lines.append(sentence)
    lines += ["", *(f"![{caption}]({path})" for caption, path in figures.items()), "", "Observations:", ""]
    for dataset, group in groups.items():  # in value order, dataset by dataset
        for value_rows in sensitivity.in_order(group, name):
            for experiment in value_rows["experiment"]:
                rows = found[(found["experiment"] == experiment) & (found["dataset"] == dataset)]
                if experiment != "baseline" and not rows.empty:
                    lines.append(_run_line(experiment, dataset, rows))
    return "\n".join(lines)


def _run_line(experiment: str, dataset: str, rows: pd.DataFrame) -> str:
    """One run's observations as a bullet: the line against the baseline, then the details."""
    versus = rows[rows["kind"] == "vs baseline"]["text"].iloc[0]
    details = "; ".join(rows[rows["kind"] != "vs baseline"]["text"])
    return f"- `{experiment}` on {dataset}: {versus}" + (f". Details: {details}" if details else "")


def comparison_section(
    table: pd.DataFrame, importance: pd.DataFrame, noise: dict[str, float], figures: dict[str, str]
) -> str:
    """The cross-dataset question: which hyperparameters matter where, ranked and side by side."""
    lines = ["## Across datasets", ""]
    lines += [f"![{caption}]({path})" for caption, path in figures.items() if "importance" not in caption]
    lines += ["", "Ranking per dataset (spread of test accuracy in points; `~` = within seed noise):", ""]
    for dataset in [d for d in DATASETS if d in set(table["dataset"])]:
        ranked = sensitivity.ranking(table, dataset)
        items = [
            f"{r.hyperparameter} {'~' if r.within_noise else ''}{_pts(r.spread)}" for r in ranked.itertuples()
        ]
        lines.append(f"- **{dataset}**: " + ", ".join(items))
    lines += ["", "Does a hyperparameter matter more for one data type than another?", ""]
    if {"image", "tabular"} <= set(table["dataset"]):
        lines += [f"- {pair_sentence(table, noise, 'image', 'tabular')}"]
    lines += [f"- {sentence}" for sentence in cross_dataset_sentences(table, noise)]
    if not importance.empty:
        lines += [
            "",
            "Importance with interactions (random forest over every run of a dataset, grid and random "
            "studies included; out-of-bag R^2 says how far to trust it):",
            "",
        ]
        shares = importance.pivot(index="hyperparameter", columns="dataset", values="importance")
        shares = shares[[d for d in DATASETS if d in shares]].map(lambda v: f"{v:.2f}" if pd.notna(v) else "")
        lines += [_table(shares.reset_index()), ""]
        fit = importance.drop_duplicates("dataset")
        lines.append(
            "Out-of-bag R^2: "
            + ", ".join(
                f"{r.dataset} {r.oob_r2:.2f} ({r.runs} runs)" for r in fit.itertuples() if pd.notna(r.oob_r2)
            )
            + f". Below {TRUST_R2}, read the shares as a rough guide only."
        )
        lines += [
            "",
            *(f"![{caption}]({path})" for caption, path in figures.items() if "importance" in caption),
        ]
    return "\n".join(lines)


def pair_sentence(table: pd.DataFrame, noise: dict[str, float], first: str, second: str) -> str:
    """Which hyperparameters moved test accuracy more on `first` than on `second`, beyond seed noise."""
    spreads = table.pivot(index="hyperparameter", columns="dataset", values="spread")[
        [first, second]
    ].dropna()
    margin = max(noise.get(first, 0.0), noise.get(second, 0.0))
    gap = spreads[first] - spreads[second]

    def listed(names: pd.Index) -> str:
        items = [f"{n} ({_pts(spreads.at[n, first])} vs {_pts(spreads.at[n, second])})" for n in names]
        return ", ".join(items) or "none"

    order = gap.abs().sort_values(ascending=False).index
    more, less, same = (
        order[gap[order] > margin],
        order[gap[order] < -margin],
        order[gap[order].abs() <= margin],
    )
    text = (
        f"**{first} vs {second}** (spread in points, {first} first): matter more for {first}: "
        f"{listed(more)}; more for {second}: {listed(less)}"
    )
    if first not in noise or second not in noise:
        return text + " (seed noise not measured: small gaps may be noise)"
    return text + f"; about the same (gap within seed noise, {_pts(margin)} points): {listed(same)}"


def cross_dataset_sentences(table: pd.DataFrame, noise: dict[str, float]) -> list[str]:
    """Per hyperparameter: where it moved test accuracy most and least; does the gap beat the noise."""
    sentences = []
    for name, rows in table.groupby("hyperparameter", sort=False):
        if len(rows) < 2:
            continue
        rows = rows.sort_values("spread", ascending=False)
        top, bottom = rows.iloc[0], rows.iloc[-1]
        gap = top["spread"] - bottom["spread"]
        margin = max(noise.get(top["dataset"], 0.0), noise.get(bottom["dataset"], 0.0))
        spreads = ", ".join(f"{r.dataset} {_pts(r.spread)}" for r in rows.itertuples())
        verdict = (
            f"matters more for {top['dataset']} than for {bottom['dataset']}"
            if gap > margin
            else f"matters about as much everywhere (the gap is within seed noise, {_pts(margin)} points)"
        )
        if top["dataset"] not in noise or bottom["dataset"] not in noise:
            verdict += " (seed noise not measured)"
        sentences.append(f"**{name}** {verdict}: spread {spreads} points")
    return sentences


def conclusions_section(
    runs: pd.DataFrame, table: pd.DataFrame, found: pd.DataFrame, noise: dict[str, float]
) -> str:
    """Conclusions, each from a number above: what mattered most, what was noise, what to try next."""
    lines = ["## Conclusions", ""]
    for dataset in [d for d in DATASETS if d in set(table["dataset"])]:
        ranked = sensitivity.ranking(table, dataset)
        top = ranked.iloc[0]
        quiet = ranked[ranked["within_noise"]]["hyperparameter"].tolist()
        sentence = (
            f"- **{dataset}**: {top['hyperparameter']} mattered most (spread {_pts(top['spread'])} points; "
            f"best {top['best_value']}, worst {top['worst_value']})"
        )
        if quiet:
            sentence += f"; within seed noise: {', '.join(quiet)}"
        lines.append(sentence + ".")
    finished = runs[
        runs["status"].isin(["ok", "diverged"])
        & (runs["experiment"] != "baseline")
        & (runs["changed"] != sensitivity.SEED)
    ]
    baseline = results.baselines(runs)
    if not finished.empty:
        gains = finished.assign(
            gain=finished["test_accuracy"] - finished["dataset"].map(baseline["test_accuracy"])
        )
        for dataset, rows in gains.groupby("dataset", sort=False):
            best = rows.loc[rows["gain"].idxmax()]
            level = noise.get(dataset)
            verdict = "" if level is None or best["gain"] > level else ", within seed noise: no real gain"
            lines.append(
                f"- Best run on {dataset}: `{best['experiment']}` ({best['test_accuracy']:.3f}, "
                f"{100 * best['gain']:+.1f} points vs baseline{verdict})."
            )
    diverged = runs[runs["status"] == "diverged"]
    if not diverged.empty:
        where = diverged.groupby("experiment", sort=False)["dataset"].agg(", ".join)
        lines.append("- Diverged: " + "; ".join(f"`{e}` on {d}" for e, d in where.items()) + ".")
    for row in table[table["at_edge"]].itertuples():
        lines.append(
            f"- Extend the range of {row.hyperparameter} on {row.dataset}: "
            f"its best value {row.best_value} is at the edge of the tried values."
        )
    counts = found[found["kind"].isin((*observations.HEADLINE_KINDS, "early best"))]
    counts = counts.groupby("kind")["experiment"].count()
    total = len(found.drop_duplicates(["experiment", "dataset"]))
    if not counts.empty:
        lines.append(
            f"- Across {total} finished runs: "
            + ", ".join(f"{kind} in {n}" for kind, n in counts.sort_values(ascending=False).items())
            + "."
        )
    return "\n".join(lines)


def other_runs_section(runs: pd.DataFrame, grouped: set[str]) -> str:
    """Runs outside the one-at-a-time sections (grid and random studies, manual runs) and failed runs."""
    others = runs[~runs["experiment"].isin(grouped | {"baseline"})]
    if others.empty:
        return ""
    order = list(dict.fromkeys(others["experiment"]))
    wide = others.pivot(index="experiment", columns="dataset", values="test_accuracy").reindex(order)
    wide = wide[[d for d in DATASETS if d in wide]].map(lambda v: f"{v:.3f}" if pd.notna(v) else "")
    first = others.drop_duplicates("experiment").set_index("experiment").loc[order]
    wide.insert(0, "study", first["study"])
    changes = others.assign(text=others.apply(observations.settings, axis=1)).groupby("experiment")["text"]
    wide.insert(1, "changes", changes.agg(lambda texts: max(texts, key=len)))
    wide["status"] = others.groupby("experiment")["status"].agg(lambda s: ",".join(sorted(set(s))))
    lines = [
        "## Other runs",
        "",
        "Test accuracy of the runs that changed several hyperparameters, the seed re-runs, and failed runs:",
        "",
    ]
    lines.append(_table(wide.reset_index()))
    failed = others[others["status"] == "failed"].drop_duplicates("experiment")
    if not failed.empty:
        lines += ["", *(f"- `{r.experiment}` failed: {r.error}" for r in failed.itertuples())]
    return "\n".join(lines)


def rules_section() -> str:
    """How the observations were made: each rule and its thresholds."""
    o = observations
    return "\n".join(
        [
            "## How the observations are made",
            "",
            "- diverged: the trainer stopped the run on a NaN, infinite or exploding loss.",
            f"- overfitting: validation loss at its minimum at least {o.OVERFIT_EPOCHS} epochs before "
            f"the end, at least {100 * o.OVERFIT_RISE:.0f}% higher at the end, while training loss fell "
            f"at least {100 * o.OVERFIT_TRAIN_DROP:.0f}% more.",
            f"- still improving: not stopped early, best epoch among the last two, validation loss "
            f"down at least {100 * o.IMPROVING_DROP:.0f}% over the last {o.IMPROVING_WINDOW} epochs.",
            f"- underfitting: final training accuracy at least {o.UNDERFIT_POINTS:.0f} points below "
            "the baseline's.",
            f"- early best: best epoch within the first {100 * o.EARLY_FRACTION:.0f}% of the configured "
            "epochs.",
            f"- unstable: validation loss at least {100 * o.SWING_RISE:.0f}% above both neighbouring "
            f"epochs, {o.SWINGS} times or more.",
            "- noise: the range of the baseline's test accuracy across seeds; a spread or difference "
            "no larger is called noise.",
            "- edge: the best of three or more numeric values is the lowest or the highest tried.",
        ]
    )


def to_html(text: str, base: Path, title: str) -> str:
    """The markdown as one self-contained HTML page: images inlined, no network needed."""

    def inline(match: re.Match) -> str:
        data = base64.b64encode((base / match.group(2)).read_bytes()).decode()
        return f"{match.group(1)}data:image/png;base64,{data}{match.group(3)}"

    body = markdown.markdown(text, extensions=["tables"])
    body = re.sub(r'(<img alt="[^"]*" src=")([^"]+\.png)(")', inline, body)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>\n{body}\n</body></html>\n"
    )
