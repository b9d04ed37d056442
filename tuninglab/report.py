"""The study report: `python -m tuninglab report` turns collected results into `reports/`.

Reads `results/experiments.csv` and `results/curves.csv` (written by `study
collect`) and writes, all at once or not at all:

    reports/summary.md         the research-style summary (and summary.html, self-contained)
    reports/explorer.html      the interactive explorer (self-contained)
    reports/observations.csv   every observation on every run, with its numbers
    reports/sensitivity.csv    per dataset and hyperparameter: spread, best value, edge, noise
    reports/importance.csv     random-forest importance, where grid or random studies ran
    reports/noise.csv          the baseline's test accuracy across seeds
    reports/figures/*.png      curves and training time per hyperparameter, the heatmap
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from tuninglab import explorer, figures, observations, results, sensitivity, summary
from tuninglab.files import atomic_dir

REPORTS_DIR = Path("reports")
TITLE = "Tuning Lab: what each hyperparameter did"


def observe_all(runs: pd.DataFrame, curves: pd.DataFrame, noise: dict[str, float]) -> pd.DataFrame:
    """Every observation on every finished run, plus one line per run against the baseline.

    Runs whose settings do not apply to a dataset (e.g. image augmentation on
    text) are copies of the baseline there and are left out.

    Columns: experiment, dataset, kind, headline, text.
    """
    baseline = results.baselines(runs)
    table = []
    for _, run in results.finished(runs).iterrows():
        if run["experiment"] != "baseline" and not run["changed"]:
            continue  # its settings do not apply to this dataset: a copy of the baseline's run
        dataset = run["dataset"]
        found = observations.observe(
            results.history(curves, run["experiment"], dataset),
            run,
            results.history(curves, "baseline", dataset),
        )
        if run["experiment"] != "baseline":
            found.append(observations.versus_baseline(run, baseline.loc[dataset], noise.get(dataset), found))
        table += [{"experiment": run["experiment"], "dataset": dataset, **o._asdict()} for o in found]
    return pd.DataFrame(table, columns=["experiment", "dataset", *observations.Observation._fields])


def by_hyperparameter(
    runs: pd.DataFrame, table: pd.DataFrame | None = None
) -> dict[str, dict[str, pd.DataFrame]]:
    """Hyperparameter -> dataset -> the baseline's row and the runs that changed only it.

    Hyperparameters come in order of the largest spread of test accuracy they
    caused on any dataset: what mattered most first. `table` is
    `sensitivity.one_at_a_time(runs)`, computed here when not given.
    """
    grouped: dict[str, dict[str, pd.DataFrame]] = defaultdict(dict)
    for (dataset, name), group in sensitivity.varied_alone(runs).items():
        grouped[name][dataset] = group
    table = sensitivity.one_at_a_time(runs) if table is None else table
    largest = table.groupby("hyperparameter")["spread"].max() if not table.empty else pd.Series()
    return dict(sorted(grouped.items(), key=lambda item: -largest.get(item[0], 0.0)))


def _file_name(name: str) -> str:
    return name.replace(".", "_")


def write(results_dir: Path = results.RESULTS_DIR, out: Path = REPORTS_DIR) -> Path:
    """Write the whole report to `out` from the results in `results_dir`; returns the summary's path.

    Raises:
        ReportError: the results are missing, empty or from an older version;
            nothing is written then.
    """
    runs, curves = results.load(results_dir)
    noise = sensitivity.noise(runs)
    levels = sensitivity.noise_levels(runs)
    table = sensitivity.one_at_a_time(runs)
    importance = sensitivity.importance(runs)
    found = observe_all(runs, curves, levels)
    groups = by_hyperparameter(runs, table)
    with atomic_dir(out) as tmp:
        sections = [
            f"# {TITLE}",
            f"Written by `python -m tuninglab report` from `{results_dir}`. Accuracies are on each "
            "dataset's held-out test split; a point is 0.01 of accuracy.",
            summary.setup_section(runs),
            summary.baselines_section(runs, noise, found),
            "## Hyperparameters, one at a time",
        ]
        for name, by_dataset in groups.items():
            curves_png, time_png = (f"figures/{kind}-{_file_name(name)}.png" for kind in ("curves", "time"))
            figures.save(figures.hyperparameter_curves(name, by_dataset, curves), tmp / curves_png)
            figures.save(figures.training_time(name, by_dataset), tmp / time_png)
            pictures = {f"{name}: validation curves": curves_png, f"training time vs {name}": time_png}
            sections.append(summary.hyperparameter_section(name, by_dataset, runs, table, found, pictures))
        overview = {}
        if not table.empty:
            overview["sensitivity heatmap"] = "figures/sensitivity.png"
            figures.save(figures.sensitivity_heatmap(table), tmp / overview["sensitivity heatmap"])
        if not importance.empty:
            overview["importance"] = "figures/importance.png"
            figures.save(figures.importance_bars(importance), tmp / overview["importance"])
        if not table.empty:
            sections.append(summary.comparison_section(table, importance, levels, overview))
            sections.append(summary.conclusions_section(runs, table, found, levels))
        grouped = {e for by_dataset in groups.values() for g in by_dataset.values() for e in g["experiment"]}
        sections += [summary.other_runs_section(runs, grouped), summary.rules_section()]
        text = "\n\n".join(s for s in sections if s) + "\n"
        (tmp / "summary.md").write_text(text)
        (tmp / "summary.html").write_text(summary.to_html(text, tmp, TITLE))
        explorer.write(runs, curves, tmp / "explorer.html")
        found.to_csv(tmp / "observations.csv", index=False)
        table.to_csv(tmp / "sensitivity.csv", index=False)
        importance.to_csv(tmp / "importance.csv", index=False)
        noise.to_csv(tmp / "noise.csv", index=False)
    return out / "summary.md"
