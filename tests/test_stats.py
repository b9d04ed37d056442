"""The report's statistics on synthetic samples with known means and variances."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tuninglab.report import stats

SEEDS = [0, 1, 2, 3, 4]


def by_seed(values, seeds=SEEDS) -> pd.Series:
    return pd.Series(values, index=seeds[: len(values)], dtype=float)


def test_the_interval_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    truth, covered = 0.8, 0
    for _ in range(2000):
        found = stats.interval(rng.normal(truth, 0.02, size=5))
        covered += abs(found.mean - truth) <= found.half_width
    assert 0.93 <= covered / 2000 <= 0.97


@pytest.mark.parametrize("paired", [True, False])
def test_the_interval_of_a_difference_covers_the_true_difference_at_about_the_nominal_rate(paired):
    rng = np.random.default_rng(1)
    truth, covered = 0.01, 0
    for _ in range(2000):
        seed_effect = rng.normal(0, 0.03, size=4)  # shared by both sides when they ran the same seeds
        a = 0.8 + seed_effect + rng.normal(0, 0.01, size=4)
        b = 0.8 + truth + (seed_effect if paired else rng.normal(0, 0.03, size=4)) + rng.normal(0, 0.01, 4)
        found = stats.compare(by_seed(a), by_seed(b, SEEDS if paired else [10, 11, 12, 13]))
        assert found.test == (stats.PAIRED if paired else stats.WELCH)
        covered += found.low <= truth <= found.high
    assert 0.93 <= covered / 2000 <= 0.97


def test_pairing_by_seed_narrows_the_interval_when_the_seeds_move_both_sides_alike():
    rng = np.random.default_rng(2)
    ratios = []
    for _ in range(200):
        seed_effect = rng.normal(0, 0.03, size=5)
        a = by_seed(0.8 + seed_effect + rng.normal(0, 0.005, size=5))
        b = by_seed(0.81 + seed_effect + rng.normal(0, 0.005, size=5))
        paired = stats.compare(a, b)
        unpaired = stats.compare(a, b.set_axis([10, 11, 12, 13, 14]))
        assert (paired.test, unpaired.test) == (stats.PAIRED, stats.WELCH)
        assert paired.difference == pytest.approx(unpaired.difference)
        ratios.append((paired.high - paired.low) / (unpaired.high - unpaired.low))
    # pairing removes the seeds' shared share of the variance (its t has fewer degrees of freedom, so
    # an unlucky draw can still come out wider)
    assert np.median(ratios) < 0.5 and np.mean(np.array(ratios) < 1) >= 0.95


def test_pairs_only_the_shared_seeds_and_uses_welch_with_fewer_than_two():
    a, b = by_seed([0.80, 0.82, 0.81]), pd.Series([0.85, 0.86, 0.90], index=[1, 2, 7])
    paired = stats.compare(a, b)
    assert (paired.test, paired.n_a, paired.n_b) == (stats.PAIRED, 2, 2)
    assert paired.difference == pytest.approx(((0.85 - 0.82) + (0.86 - 0.81)) / 2)
    welch = stats.compare(a, pd.Series([0.85, 0.86, 0.90], index=[2, 7, 8]))
    assert (welch.test, welch.n_a, welch.n_b) == (stats.WELCH, 3, 3)


def test_degenerate_samples_get_a_defined_answer():
    same = stats.compare(by_seed([0.9, 0.9, 0.9]), by_seed([0.9, 0.9, 0.9]))
    assert (same.difference, same.low, same.high, same.p) == (0, 0, 0, 1.0)
    assert stats.verdict(same, stats.adjust([same.p])[0]) == stats.NOT_DETECTED
    shifted = stats.compare(by_seed([0.9, 0.8]), by_seed([0.92, 0.82]))  # every seed moved by 2 points
    assert (shifted.low, shifted.high, shifted.p) == (pytest.approx(0.02), pytest.approx(0.02), 0.0)
    flat = stats.compare(pd.Series([0.9, 0.9], index=[0, 1]), pd.Series([0.9, 0.9], index=[5, 6]))
    assert (flat.test, flat.p, flat.low) == (stats.WELCH, 1.0, 0.0)
    one = stats.compare(by_seed([0.9]), by_seed([0.95]))
    assert (one.test, one.low, one.high, one.p) == (stats.NO_TEST, None, None, None)
    assert one.difference == pytest.approx(0.05)
    assert stats.verdict(one, stats.adjust([one.p])[0]) == stats.ONE_RUN
    trained_nothing = stats.compare(by_seed([0.9, 0.91]), by_seed([float("nan"), 0.5]))
    assert trained_nothing.test == stats.NO_TEST and trained_nothing.n_b == 1
    assert stats.interval([0.5]) == stats.Interval(0.5, None, 1)
    assert stats.interval([0.5, 0.5, 0.5]) == stats.Interval(0.5, 0.0, 3)


def test_the_multiplicity_correction_turns_a_borderline_effect_into_one_not_detectable_after_correction():
    a = by_seed([0.80, 0.81, 0.79, 0.80, 0.82])
    b = by_seed([0.82, 0.82, 0.80, 0.83, 0.825])  # +1.5 points, p about 0.02
    borderline = stats.compare(a, b)
    assert 0.01 < borderline.p < stats.ALPHA
    alone = stats.adjust([borderline.p])[0]
    assert stats.verdict(borderline, alone) == stats.IMPROVES
    family = [borderline.p, 0.6, 0.7, 0.9]
    adjusted = stats.adjust([*family, None])
    assert adjusted[-1] is None and adjusted[0] > stats.ALPHA
    assert stats.verdict(borderline, adjusted[0]) == stats.NOT_AFTER_CORRECTION
    assert stats.verdict(stats.compare(b, a), alone) == stats.WORSENS
    # an interval that holds 0 is no detectable effect, adjusted or not
    noisy = stats.compare(a, by_seed([0.79, 0.83, 0.78, 0.81, 0.84]))
    assert noisy.p > stats.ALPHA and stats.verdict(noisy, stats.adjust([noisy.p])[0]) == stats.NOT_DETECTED


def brute_force(valid: list[float], test: list[float], n: int) -> float:
    """The mean, over every n-subset, of the test score of its validation-best (ties: their mean)."""
    found = []
    for subset in itertools.combinations(range(len(valid)), n):
        best = max(valid[i] for i in subset)
        found.append(np.mean([test[i] for i in subset if valid[i] == best]))
    return float(np.mean(found))


def test_expected_best_of_n_matches_a_brute_force_enumeration():
    valid = [0.71, 0.65, 0.80, 0.80, 0.60, 0.75, 0.90]
    test = [0.70, 0.66, 0.78, 0.74, 0.61, 0.80, 0.85]
    table = stats.expected_best(valid, test)
    assert list(table["n"]) == list(range(1, 8)) and set(table["trials"]) == {7}
    for n, expected in zip(table["n"], table["expected"], strict=True):
        assert expected == pytest.approx(brute_force(valid, test, n))
    assert table["expected"].iloc[0] == pytest.approx(np.mean(test))  # one trial: any of them
    assert table["expected"].iloc[-1] == pytest.approx(0.85)  # all of them: the validation-best
    assert table["std"].iloc[-1] == pytest.approx(0.0)


def test_expected_best_leaves_out_trials_without_scores():
    table = stats.expected_best([0.5, float("nan"), 0.7], [0.4, 0.9, float("nan")])
    assert list(table["trials"]) == [1] and table["expected"].iloc[0] == pytest.approx(0.4)
