"""The observation rules on hand-made curves: each fires on its shape, with its numbers, and not on others."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuninglab.report import observations, stats


def make_history(val_loss: list[float], train_loss: list[float] | None = None, train_accuracy: float = 0.95):
    """A history table as the trainer writes it, from per-epoch losses."""
    train = train_loss if train_loss is not None else [v * 0.8 for v in val_loss]
    n = len(val_loss)
    return pd.DataFrame(
        {
            "epoch": np.arange(1, n + 1),
            "train_loss": train,
            "train_accuracy": [train_accuracy] * n,
            "val_loss": val_loss,
            "val_accuracy": [0.9] * n,
            "lr": [0.005] * n,
            "epoch_time_s": [0.1] * n,
        }
    )


def make_run(**overrides) -> pd.Series:
    run = {
        "experiment": "ofat-lr-0.1",
        "dataset": "image",
        "kind": "image",
        "changed": "train.lr",
        "train.lr": 0.1,
        "train.optimizer": "sgd",
        "train.epochs": 30,
        "diverged": False,
        "diverged_epoch": np.nan,
        "diverged_loss": np.nan,
        "stopped_early": False,
        "best_epoch": 10,
        "test_accuracy": 0.9,
        "chance_accuracy": 0.578,
        "status": "ok",
        "not_compared": "",
    }
    return pd.Series(run | overrides)


SMOOTH = [1.0, 0.6, 0.45, 0.4, 0.38, 0.37, 0.365, 0.362, 0.361, 0.3605]


def rules(history, run, baseline_history=None) -> list[str]:
    baseline_history = make_history(SMOOTH) if baseline_history is None else baseline_history
    return [o.rule for o in observations.observe(history, run, baseline_history)]


def test_a_smooth_converged_run_has_nothing_to_report():
    run = make_run(best_epoch=10, stopped_early=False, **{"train.epochs": 10})
    assert rules(make_history(SMOOTH), run) == []


def test_overfitting_names_the_epoch_the_rise_and_the_gap():
    val = [1.0, 0.6, 0.4, 0.35, 0.38, 0.45, 0.55, 0.65]
    train = [0.9, 0.5, 0.3, 0.2, 0.12, 0.08, 0.05, 0.03]
    found = observations.overfitting(make_history(val, train))
    assert found is not None
    assert found.headline == "overfitting from epoch 4"
    assert "rose 86% (0.350 to 0.650) by epoch 8" in found.text
    assert "0.200 to 0.030" in found.text and "gap at the end is 0.620" in found.text


@pytest.mark.parametrize(
    ("val", "train", "why"),
    [
        (
            [1.0, 0.6, 0.4, 0.35, 0.45, 0.6],
            [0.9, 0.5, 0.3, 0.2, 0.1, 0.05],
            "minimum only 2 epochs before the end",
        ),
        (
            [1.0, 0.6, 0.4, 0.35, 0.36, 0.37, 0.37, 0.37],
            [0.9, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02],
            "rise < 10%",
        ),
        (
            [1.0, 0.6, 0.4, 0.35, 0.38, 0.45, 0.55, 0.65],
            [0.9, 0.5, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2],
            "train flat",
        ),
    ],
)
def test_overfitting_needs_every_condition(val, train, why):
    assert observations.overfitting(make_history(val, train)) is None, why


def test_still_improving_says_train_longer_with_the_drop():
    val = [1.0, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4]
    found = observations.still_improving(make_history(val), make_run(stopped_early=False))
    assert (
        found is not None and "fell 33% over the last 3 epochs (0.600 to 0.400); train longer" in found.text
    )
    assert observations.still_improving(make_history(val), make_run(stopped_early=True)) is None
    assert observations.still_improving(make_history(SMOOTH), make_run()) is None  # flat at the end


def test_underfitting_compares_final_training_accuracy_with_the_baseline():
    mine, theirs = make_history(SMOOTH, train_accuracy=0.80), make_history(SMOOTH, train_accuracy=0.97)
    found = observations.underfitting(mine, make_run(), theirs)
    assert found is not None and "80.0% at the end, 17.0 points below the baseline's 97.0%" in found.text
    assert observations.underfitting(make_history(SMOOTH, train_accuracy=0.93), make_run(), theirs) is None
    assert observations.underfitting(mine, make_run(diverged=True), theirs) is None


def test_early_best_fires_within_the_first_fifth_of_the_epochs():
    assert observations.early_best(make_run(best_epoch=6)).text.startswith("best epoch 6 of 30")
    assert observations.early_best(make_run(best_epoch=7)) is None
    assert observations.early_best(make_run(best_epoch=1, diverged=True)) is None
    assert observations.early_best(make_run(best_epoch=2, **{"train.epochs": 5})) is None  # 2 > 20% of 5


def test_unstable_counts_single_epoch_peaks():
    val = [1.0, 0.5, 0.8, 0.45, 0.44, 0.7, 0.42, 0.41]
    found = observations.unstable(make_history(val))
    assert found is not None and "2 times (epochs 3, 6; largest +60%)" in found.text
    assert observations.unstable(make_history([1.0, 0.5, 0.8, 0.45, 0.44, 0.43])) is None  # one peak only
    assert observations.unstable(make_history([1.0, 0.6, 0.7, 0.8, 0.9, 1.0])) is None  # a steady rise


def test_diverged_quotes_epoch_and_loss_even_when_the_loss_is_missing():
    run = make_run(diverged=True, diverged_epoch=3.0, diverged_loss=np.inf, best_epoch=2)
    found = observations.diverged(run)
    assert found.headline == "the loss diverged at epoch 3"
    assert found.text == "diverged at epoch 3 (loss inf); the weights of epoch 2 were kept"
    assert "loss NaN" in observations.diverged(run.copy().replace({np.inf: np.nan})).text
    assert observations.diverged(make_run()) is None


ONE_RUN = stats.Comparison(-0.005, None, None, None, stats.NO_TEST, 1, 1)


def test_versus_baseline_gives_points_chance_settings_the_interval_and_the_headline():
    run = make_run(test_accuracy=0.812, changed="train.lr,train.optimizer")
    baseline = pd.Series({"test_accuracy": 0.935})
    diverged = observations.Observation("diverged", "the loss diverged at epoch 3", "...")
    paired = stats.Comparison(-0.123, -0.15, -0.096, 0.001, stats.PAIRED, 3, 3)
    sentence = observations.versus_baseline(run, baseline, paired, [diverged]).text
    assert sentence == (
        "with train.lr=0.1, train.optimizer=sgd: test accuracy -12.3 points vs baseline "
        "(0.812 vs 0.935; chance 0.578), 95 % CI -15.0 to -9.6 points, paired by seed; "
        "the loss diverged at epoch 3"
    )
    welch = stats.Comparison(-0.005, -0.02, 0.01, 0.4, stats.WELCH, 3, 2)
    close = observations.versus_baseline(make_run(test_accuracy=0.93), baseline, welch, []).text
    assert close.endswith(
        "-0.5 points vs baseline (0.930 vs 0.935; chance 0.578), 95 % CI -2.0 to +1.0 points, Welch"
    )
    once = observations.versus_baseline(make_run(test_accuracy=0.93), baseline, ONE_RUN, []).text
    assert once.endswith("(0.930 vs 0.935; chance 0.578), one run: no interval")


@pytest.mark.parametrize(("accuracy", "fires"), [(0.5, True), (0.578, True), (0.583, True), (0.584, False)])
def test_no_better_than_chance_within_half_a_point_of_the_majority_class(accuracy, fires):
    run = make_run(test_accuracy=accuracy)
    found = observations.no_better_than_chance(run)
    assert (found is not None) == fires
    assert ("no better than chance" in rules(make_history(SMOOTH), run)) == fires
    if fires:
        assert found.headline == "no better than chance (majority class 0.578)"
        assert found.text.startswith(f"no better than chance: test accuracy {accuracy:.3f}")
        assert observations.versus_baseline(
            run, pd.Series({"test_accuracy": 0.75}), ONE_RUN, [found]
        ).text.endswith("; no better than chance (majority class 0.578)")


def test_status_is_never_a_plain_ok_at_chance_or_when_not_compared():
    assert observations.status_text(make_run(test_accuracy=0.9)) == "ok"
    assert observations.status_text(make_run(test_accuracy=0.58)) == "ok, no better than chance"
    diverged = make_run(status="diverged", diverged_epoch=3.0, test_accuracy=0.1)
    assert observations.status_text(diverged) == "diverged at epoch 3, no better than chance"
    other = make_run(not_compared="2 threads vs baseline's 1")
    assert observations.status_text(other) == "ok, not compared: 2 threads vs baseline's 1"
    assert observations.not_compared(other).text.startswith(
        "not compared with the baseline: 2 threads vs baseline's 1"
    )
    assert observations.not_compared(make_run()) is None
    failed = make_run(status="failed", test_accuracy=np.nan)
    assert observations.status_text(failed) == "failed"


def test_a_run_more_accurate_later_at_a_higher_loss_is_overconfident():
    # Text with RMSprop: 0.776 after epoch 1 at the lowest validation loss, then more accurate and
    # more confident, so the loss rises while accuracy rises.
    history = make_history([0.725, 0.80, 0.95, 1.10])
    history["val_accuracy"] = [0.776, 0.790, 0.801, 0.799]
    found = observations.overconfident(history, make_run(dataset="text", kind="text", best_epoch=1))
    assert found is not None and found.rule == "overconfident"
    assert found.text.startswith(
        "overconfident: validation accuracy rose 2.5 points from epoch 1 to epoch 3 (0.776 to 0.801) while "
        "validation loss rose above epoch 1's (0.725 to 0.950)"
    )
    assert "epoch 1 was kept" in found.text and "train.select_by: val_metric" in found.text
    assert "overconfident" in rules(history, make_run(dataset="text", kind="text", best_epoch=1))


@pytest.mark.parametrize(
    ("val_loss", "val_accuracy"),
    [([0.725, 0.80, 0.95], [0.776, 0.785, 0.790]), ([0.725, 0.70, 0.65], [0.776, 0.80, 0.83])],
    ids=["less than 2 points more accurate", "loss fell too"],
)
def test_overconfident_needs_a_clear_gain_at_a_higher_loss(val_loss, val_accuracy):
    history = make_history(val_loss)
    history["val_accuracy"] = val_accuracy
    assert observations.overconfident(history, make_run(best_epoch=1)) is None
