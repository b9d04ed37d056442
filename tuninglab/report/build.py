"""The study report: `python -m tuninglab report` turns collected results into `reports/`.

Reads `results/experiments.csv`, `results/curves.csv` and `results/repeats.csv`
(written by `study collect`; without repeats.csv each run is one repeat) and
writes, all at once or not at all:

    reports/summary.md         the research-style summary (and summary.html, self-contained)
    reports/explorer.html      the interactive explorer (self-contained)
    reports/observations.csv   every observation on every run, with its numbers
    reports/sensitivity.csv    per dataset and hyperparameter: spread, best value, edge, each value's
                               difference from the baseline with its interval, adjusted p and verdict
    reports/importance.csv     Optuna importance with its spread, per search study and dataset
    reports/interactions.csv   every cell of each grid study of two hyperparameters, per dataset
    reports/expected_best.csv  per random or tpe study and dataset: the expected best test score of n trials
    reports/figures/*.png      curves and CPU time per hyperparameter, each grid, the heatmap, expected
                               best; each search study's best so far, importance, trials, contour
    reports/manifest.json      the files above and the experiments they were made from

The report replaces only what its manifest lists: it refuses a folder that
holds anything else, and one written from experiments these results lack
(unless forced).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tuninglab.report import (
    explorer,
    figures,
    format,
    owned,
    page,
    primary,
    results,
    search_figures,
    sensitivity,
    summary,
)
from tuninglab.report.analysis import analyse

REPORTS_DIR = Path("reports")
TITLE = "Tuning Lab: what each hyperparameter did"
# observations.csv names each observation's rule in its column `kind`
OBSERVATION_FILE_COLUMNS = {"rule": "kind"}


def _file_name(name: str) -> str:
    return name.replace(".", "_")


def _previous(out: Path) -> owned.Holding | None:
    """What the report in `out` was written from, as its manifest says; None when unknown."""
    manifest = owned.read_manifest(out)
    if not isinstance(manifest.get("experiments"), list):
        return None
    return owned.Holding(str(manifest.get("baseline_commit")), frozenset(manifest["experiments"]))


def write(results_dir: Path = results.RESULTS_DIR, out: Path = REPORTS_DIR, force: bool = False) -> str:
    """Write the whole report to `out` from the results in `results_dir`; returns what it replaced.

    `out` may be absent, empty, or an earlier report (only what its manifest
    lists). An earlier report made from experiments these results lack (or
    from another baseline commit) is replaced only with `force`.

    Returns:
        "" for a new report, else one sentence with the old and new experiment counts.

    Raises:
        ReportError: `out` cannot be made or written (checked first), the
            results are missing, empty, damaged or from an older version,
            `out` holds anything the report did not write, or it holds a
            report of experiments these results lack and not `force`;
            nothing is written then.
    """
    try:
        owned.check_writable(out)
        owned.check_owned(out)
    except (owned.NotWritableError, owned.ForeignEntriesError) as err:
        raise results.ReportError(str(err)) from None
    runs, curves = results.load(results_dir)
    per_repeat = results.load_repeats(results_dir, runs)
    written_from = owned.holding(runs)
    record = {"baseline_commit": written_from.commit, "experiments": sorted(written_from.experiments)}
    try:
        replaced = owned.replacing(out, _previous(out), written_from, force)
        with owned.owned_dir(out, record) as tmp:
            _write_files(runs, curves, per_repeat, results_dir, tmp)
    except (owned.NotWritableError, owned.ForeignEntriesError, owned.OverwriteError) as err:
        raise results.ReportError(str(err)) from None
    return replaced


def _write_files(
    runs: pd.DataFrame, curves: pd.DataFrame, per_repeat: pd.DataFrame, results_dir: Path, folder: Path
) -> None:
    """Every file of the report, from the loaded results, into `folder`.

    The analysis is computed once (`analysis.analyse`); the summary, the
    figures, the explorer and the tables draw from it.
    """
    analysis = analyse(runs, curves, per_repeat)
    scored = (
        "Each dataset is scored by its primary metric on its held-out test split: test accuracy for "
        "classifiers, test R^2 for regression; a point is 0.01 of either."
        if primary.mixed(runs["kind"])
        else "Accuracies are on each dataset's held-out test split; a point is 0.01 of accuracy."
    )
    sections = [
        f"# {TITLE}",
        f"Written by `python -m tuninglab report` from {format.code(results_dir)}. {scored}",
        summary.setup_section(runs),
        summary.baselines_section(analysis),
        summary.one_at_a_time_intro(analysis),
    ]
    for name, by_dataset in analysis.groups.items():
        curves_png, time_png = (f"figures/{figure}-{_file_name(name)}.png" for figure in ("curves", "time"))
        figures.save(figures.hyperparameter_curves(name, by_dataset, curves), folder / curves_png)
        figures.save(figures.cpu_time(name, by_dataset), folder / time_png)
        pictures = {f"{name}: validation curves": curves_png, f"CPU time of training vs {name}": time_png}
        sections.append(summary.hyperparameter_section(analysis, name, pictures))
    grids = {}
    for study in dict.fromkeys(interaction.study for interaction in analysis.interactions):
        grids[study] = f"figures/grid-{_file_name(study)}.png"
        chosen = [interaction for interaction in analysis.interactions if interaction.study == study]
        figures.save(figures.interaction_lines(chosen), folder / grids[study])
    sections.append(summary.interaction_section(analysis, grids))
    sections.append(summary.search_section(analysis, search_figures.save_all(analysis.searches, folder)))
    overview = {}
    if not analysis.table.empty:
        overview["sensitivity heatmap"] = "figures/sensitivity.png"
        figures.save(
            figures.sensitivity_heatmap(analysis.table, analysis.kinds),
            folder / overview["sensitivity heatmap"],
        )
    if not analysis.table.empty:
        sections.append(summary.comparison_section(analysis, overview))
        sections.append(summary.conclusions_section(analysis))
    searches = {}
    for study, rows in analysis.expected_best.groupby("study", sort=False):
        searches[str(study)] = f"figures/expected_best-{_file_name(str(study))}.png"
        figures.save(figures.expected_best(str(study), rows, analysis.kinds), folder / searches[str(study)])
    sections.append(summary.expected_best_section(analysis, searches))
    shown = {e for effect in analysis.effects for e in effect.runs["experiment"]}
    shown |= {e for again in analysis.repeats.values() for e in again}
    sections += [
        summary.manual_section(analysis, shown),
        summary.other_runs_section(analysis, shown),
        summary.other_data_section(analysis),
        summary.rules_section(runs["kind"]),
    ]
    text = "\n\n".join(s for s in sections if s) + "\n"
    (folder / "summary.md").write_text(text)
    (folder / "summary.html").write_text(page.to_html(text, folder, TITLE))
    explorer.write(analysis, folder / "explorer.html")
    analysis.found.rename(columns=OBSERVATION_FILE_COLUMNS).to_csv(folder / "observations.csv", index=False)
    analysis.table.to_csv(folder / "sensitivity.csv", index=False)
    analysis.importance.to_csv(folder / "importance.csv", index=False)
    sensitivity.interaction_table(analysis.interactions).to_csv(folder / "interactions.csv", index=False)
    analysis.expected_best.to_csv(folder / "expected_best.csv", index=False)
