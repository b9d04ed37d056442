"""What one run's curves and metrics say, in sentences that carry the numbers behind them.

The rules, applied to each finished run (thresholds are the constants below):

- **diverged**: the trainer stopped the run because its loss became NaN,
  infinite or exploded; the epoch and the loss are quoted.
- **overfitting**: the validation loss reached its minimum at least
  `OVERFIT_EPOCHS` epochs before the last, ended at least `OVERFIT_RISE`
  above that minimum, and the training loss kept falling after it (by at
  least `OVERFIT_TRAIN_DROP`).
- **still improving**: the run was not stopped early, its best epoch is one
  of the last two, and the validation loss fell by at least `IMPROVING_DROP`
  over the last `IMPROVING_WINDOW` epochs: train longer.
- **underfitting**: the final training accuracy (a regression's training
  R^2) is at least `UNDERFIT_POINTS` points below the baseline's.
- **early best**: the best epoch is within the first `EARLY_FRACTION` of the
  configured epochs: fewer epochs would do.
- **unstable**: the validation loss peaked for a single epoch at least
  `SWING_RISE` above both neighbours, at least `SWINGS` times.
- **overconfident**: a later epoch's validation accuracy (a regression's R^2) is at
  least `OVERCONFIDENT_POINTS` points above the first epoch's while its validation
  loss is above the first epoch's: the model classifies better but pays for its
  confident mistakes, and `train.select_by: val_loss` keeps an early epoch.
- **no better than chance**: test accuracy at most `schema.CHANCE_MARGIN` above the
  chance rate (`chance_accuracy`: always predicting the training split's
  majority class, scored on the test split); for a regression, test R^2 at
  most that far above `chance_r2` (always predicting the training split's mean).

The loss rules compare shares of a loss; a negative loss (a Gaussian NLL)
moves by shares of its size (`_times`). Each run is read by its dataset's
primary metric (`primary`: test accuracy, or a regression's test R^2).
`versus_baseline` adds one sentence per run comparing it with the
baseline's, with the 95 % interval of the difference from their repeats
(`stats.compare`), and names the settings that changed; `not_compared` says instead why a run is not
set against the baseline. `status_text` is a run's status as the report shows
it: never a plain `ok` for a run at chance or one not compared.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from tuninglab import schema
from tuninglab.report import format, primary, stats

OVERFIT_EPOCHS = 3
OVERFIT_RISE = 0.10
OVERFIT_TRAIN_DROP = 0.05
IMPROVING_WINDOW = 3
IMPROVING_DROP = 0.02
UNDERFIT_POINTS = 5.0
EARLY_FRACTION = 0.2
SWING_RISE = 0.25
SWINGS = 2
OVERCONFIDENT_POINTS = 2.0
HEADLINE_RULES = (
    "diverged",
    "no better than chance",
    "overconfident",
    "overfitting",
    "still improving",
    "underfitting",
    "unstable",
)


class Observation(NamedTuple):
    """One finding about a run: the rule that made it, a short headline, and the sentence with its numbers."""

    rule: str
    headline: str
    text: str


def _points(accuracy: float) -> float:
    return 100.0 * accuracy


def _times(reference: float, factor: float) -> float:
    """`reference * factor` for a loss >= 0; a negative loss (a Gaussian NLL) moves as far, the same way.

    The loss rules compare losses by their share of the reference: 10 % above a minimum of -0.5 is -0.45.
    """
    return reference * factor if reference >= 0 else reference * (2 - factor)


def _change(value: float, reference: float) -> float:
    """`value` against `reference` as a share of it (+0.1: 10 % higher); a negative one by its size."""
    return value / reference - 1 if reference >= 0 else (value - reference) / -reference


def diverged(run: pd.Series, repeats: pd.DataFrame | None = None) -> Observation | None:
    """The run diverged: at which epoch and with which loss; of several repeats, which ones and where.

    `repeats` are the run's rows of the repeats table (`results.load_repeats`): a run whose first
    repeat trained while another diverged is said to diverge in that one (its `epochs_run` is the
    epoch it diverged at).
    """
    if not bool(run["diverged"]):
        return None
    if repeats is not None and len(repeats) > 1:
        gone = repeats[repeats["diverged"].astype(bool)]
        where = ", ".join(f"seed {int(r.seed)} at epoch {int(r.epochs_run)}" for r in gone.itertuples())
        share = f"{len(gone)} of {len(repeats)} repeats"
        return Observation(
            "diverged",
            f"the loss diverged in {share}",
            f"diverged in {share} ({where}); the means are over the repeats with a test score",
        )
    if pd.isna(run["diverged_epoch"]):
        return Observation("diverged", "the loss diverged", "diverged")
    loss = run["diverged_loss"]
    shown = "NaN" if pd.isna(loss) else f"{loss:.3g}"
    epoch = int(run["diverged_epoch"])
    kept = (
        "no epoch trained, so no test metric is claimed"
        if pd.isna(run["best_epoch"])
        else f"the weights of epoch {int(run['best_epoch'])} were kept"
    )
    return Observation(
        "diverged", f"the loss diverged at epoch {epoch}", f"diverged at epoch {epoch} (loss {shown}); {kept}"
    )


def within_chance(accuracy: float | None, chance: float | None) -> bool:
    """Test accuracy at most `schema.CHANCE_MARGIN` above the chance rate; False when either is missing.

    The one rule behind the report's flag and `python -m tuninglab show`'s state.
    """
    return bool(pd.notna(accuracy) and pd.notna(chance) and accuracy <= chance + schema.CHANCE_MARGIN)


def at_chance(run: pd.Series) -> bool:
    """The finished run is no better than chance (its dataset's primary metric and reference)."""
    return within_chance(primary.score(run), primary.chance(run))


def no_better_than_chance(run: pd.Series) -> Observation | None:
    """The run scores no better than always predicting the majority class (a regression: the mean)."""
    if not at_chance(run):
        return None
    chance, words = primary.chance(run), primary.words(run["kind"])
    return Observation(
        "no better than chance",
        f"no better than chance ({words.reference} {chance:.3f})",
        f"no better than chance: {words.metric} {primary.score(run):.3f}, while always predicting "
        f"{words.predicting} scores {chance:.3f} on the test split",
    )


def not_compared(run: pd.Series) -> Observation | None:
    """The run was computed otherwise than the baseline (threads, kernels), so it is not set against it."""
    if not run["not_compared"]:
        return None
    return Observation(
        "not compared",
        f"not compared: {run['not_compared']}",
        f"not compared with the baseline: {run['not_compared']} (results repeat only for the same thread "
        "count and CPU kernels)",
    )


def overfitting(history: pd.DataFrame) -> Observation | None:
    """Validation loss bottomed out well before the end while training loss kept falling."""
    if len(history) <= OVERFIT_EPOCHS:
        return None
    best = history["val_loss"].idxmin()
    low, end = history.at[best, "val_loss"], history["val_loss"].iloc[-1]
    train_at_best, train_end = history.at[best, "train_loss"], history["train_loss"].iloc[-1]
    epochs_after = len(history) - 1 - best
    if (
        epochs_after >= OVERFIT_EPOCHS
        and end >= _times(low, 1 + OVERFIT_RISE)
        and train_end <= _times(train_at_best, 1 - OVERFIT_TRAIN_DROP)
    ):
        epoch, last = int(history.at[best, "epoch"]), int(history["epoch"].iloc[-1])
        return Observation(
            "overfitting",
            f"overfitting from epoch {epoch}",
            f"overfitting from epoch {epoch}: validation loss rose {100 * _change(end, low):.0f}% "
            f"({low:.3f} to {end:.3f}) by epoch {last} while training loss fell "
            f"{train_at_best:.3f} to {train_end:.3f}; the gap at the end is {end - train_end:.3f}",
        )
    return None


def overconfident(history: pd.DataFrame, run: pd.Series) -> Observation | None:
    """A later epoch scores clearly better than the first, at a higher validation loss than the first's."""
    if len(history) < 2:
        return None
    first, most = history.iloc[0], history.loc[history["val_accuracy"].idxmax()]
    gain = _points(most["val_accuracy"] - first["val_accuracy"])
    if gain < OVERCONFIDENT_POINTS or most["val_loss"] <= first["val_loss"]:
        return None
    short, epoch = primary.words(run["kind"]).short, int(most["epoch"])
    kept = "" if pd.isna(run["best_epoch"]) else f"; epoch {int(run['best_epoch'])} was kept"
    return Observation(
        "overconfident",
        f"overconfident: best validation {short} at epoch {epoch}, at a higher loss",
        f"overconfident: validation {short} rose {gain:.1f} points from epoch 1 to epoch {epoch} "
        f"({first['val_accuracy']:.3f} to {most['val_accuracy']:.3f}) while validation loss rose above "
        f"epoch 1's ({first['val_loss']:.3f} to {most['val_loss']:.3f}): confident mistakes cost loss"
        f"{kept} (train.select_by: val_metric keeps the most accurate epoch)",
    )


def still_improving(history: pd.DataFrame, run: pd.Series) -> Observation | None:
    """Validation loss was still falling when the epochs ran out."""
    if len(history) <= IMPROVING_WINDOW or bool(run["stopped_early"]) or bool(run["diverged"]):
        return None
    val = history["val_loss"]
    before, end = val.iloc[-1 - IMPROVING_WINDOW], val.iloc[-1]
    if val.idxmin() >= len(history) - 2 and end <= _times(before, 1 - IMPROVING_DROP):
        return Observation(
            "still improving",
            "still improving at the end",
            f"still improving at the end: validation loss fell {-100 * _change(end, before):.0f}% "
            f"over the last {IMPROVING_WINDOW} epochs ({before:.3f} to {end:.3f}); train longer",
        )
    return None


def underfitting(history: pd.DataFrame, run: pd.Series, baseline_history: pd.DataFrame) -> Observation | None:
    """The model fits its own training data clearly worse than the baseline does (and did not diverge)."""
    if bool(run["diverged"]) or history.empty or baseline_history.empty:
        return None
    mine = _points(history["train_accuracy"].iloc[-1])
    theirs = _points(baseline_history["train_accuracy"].iloc[-1])
    if theirs - mine >= UNDERFIT_POINTS:
        return Observation(
            "underfitting",
            "underfitting",
            f"underfitting: training {primary.words(run['kind']).short} {mine:.1f}% at the end, "
            f"{theirs - mine:.1f} points below the baseline's {theirs:.1f}%",
        )
    return None


def early_best(run: pd.Series) -> Observation | None:
    """The best epoch came so early that most of the configured epochs were not needed."""
    if bool(run["diverged"]) or pd.isna(run["best_epoch"]):
        return None
    best, configured = int(run["best_epoch"]), int(run["train.epochs"])
    if configured > 1 and best <= EARLY_FRACTION * configured:
        return Observation(
            "early best",
            f"best epoch {best} of {configured}",
            f"best epoch {best} of {configured} configured: fewer epochs would do",
        )
    return None


def unstable(history: pd.DataFrame) -> Observation | None:
    """The validation loss swings: single-epoch peaks well above both neighbours."""
    val = history["val_loss"].to_numpy()
    peaks = [
        (int(history["epoch"].iloc[i]), _change(val[i], max(val[i - 1], val[i + 1])))
        for i in range(1, len(val) - 1)
        if val[i] >= _times(max(val[i - 1], val[i + 1]), 1 + SWING_RISE)
    ]
    if len(peaks) < SWINGS:
        return None
    epochs = ", ".join(str(epoch) for epoch, _ in peaks)
    largest = max(rise for _, rise in peaks)
    return Observation(
        "unstable",
        "unstable validation loss",
        f"unstable: validation loss jumped at least {100 * SWING_RISE:.0f}% above both neighbouring "
        f"epochs {len(peaks)} times (epochs {epochs}; largest +{100 * largest:.0f}%)",
    )


def observe(
    history: pd.DataFrame,
    run: pd.Series,
    baseline_history: pd.DataFrame,
    repeats: pd.DataFrame | None = None,
) -> list[Observation]:
    """Every rule that holds for one finished run (`run` is its row of the runs table).

    `baseline_history` is empty for a run not compared with the baseline: no underfitting rule then.
    `repeats` are the run's rows of the repeats table, when it has them.
    """
    found = [
        diverged(run, repeats),
        no_better_than_chance(run),
        overconfident(history, run),
        overfitting(history),
        still_improving(history, run),
        underfitting(history, run, baseline_history),
        early_best(run),
        unstable(history),
    ]
    return [observation for observation in found if observation is not None]


def settings(run: pd.Series) -> str:
    """The params a run changed from the baseline, as `train.lr=0.1, train.optimizer=sgd` (or empty)."""
    return ", ".join(format.setting(name, run[name]) for name in str(run["changed"]).split(",") if name)


def versus_baseline(
    run: pd.Series, baseline: pd.Series, comparison: stats.Comparison, observations: list[Observation]
) -> Observation:
    """One sentence: the run's primary metric against the baseline's, and the main thing that happened.

    `comparison` is the run's repeats against the baseline's (`stats.compare`):
    the sentence gives its 95 % interval, or says that one run has none. It is
    one run's interval, not corrected for the study's other comparisons: the
    verdicts are in the sensitivity sections.
    """
    changed = settings(run) or "the baseline's settings"
    name = primary.metric(run["kind"])
    mine, base, reference = run[name], baseline[name], primary.chance(run)
    if pd.isna(mine):  # diverged in its first epoch: nothing trained, nothing to compare
        text = f"with {changed}: no test {primary.words(run['kind']).short} (nothing trained)"
        headlines = [o.headline for o in observations if o.rule in HEADLINE_RULES]
        return Observation("vs baseline", "no trained epoch", "; ".join([text, *headlines[:1]]))
    delta = _points(mine - base)
    chance = f"; chance {reference:.3f}" if pd.notna(reference) else ""
    text = (
        f"with {changed}: {primary.words(run['kind']).metric} {delta:+.1f} points vs baseline "
        f"({mine:.3f} vs {base:.3f}{chance})"
    )
    text += f", {interval_words(comparison)}"
    headlines = [o.headline for o in observations if o.rule in HEADLINE_RULES]
    if headlines:
        text += "; " + headlines[0]
    return Observation("vs baseline", f"{delta:+.1f} points vs baseline", text)


def status_text(run: pd.Series) -> str:
    """A run's status as the report shows it: `ok`, `diverged at epoch 3`, `failed`, ...

    Flagged `no better than chance` at chance, and `not compared: ...` when it
    was computed otherwise than the baseline (threads, CPU kernels).
    """
    status = str(run["status"])
    if status == "diverged" and pd.notna(run["diverged_epoch"]):
        status += f" at epoch {int(run['diverged_epoch'])}"
    flags = ["no better than chance"] if at_chance(run) else []
    flags += [f"not compared: {run['not_compared']}"] if run["not_compared"] else []
    return ", ".join([status, *flags])


def interval_words(comparison: stats.Comparison) -> str:
    """`95 % CI -0.4 to +2.0 points, paired by seed` (or `Welch`), or `one run: no interval`."""
    if comparison.test == stats.NO_TEST or comparison.low is None or comparison.high is None:
        return stats.ONE_RUN
    how = "paired by seed" if comparison.test == stats.PAIRED else "Welch"
    return f"95 % CI {_points(comparison.low):+.1f} to {_points(comparison.high):+.1f} points, {how}"
