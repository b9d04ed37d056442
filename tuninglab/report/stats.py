"""The report's statistics: intervals, comparisons against the baseline, multiplicity, expected best-of-n.

Every test and interval is `scipy.stats`'s; this module only chooses which and
handles the cases those functions cannot answer.

- `interval`: the mean of repeated runs and the half-width of its t-interval.
- `compare`: the difference of means of two configurations (b minus a) with its
  interval and p-value: a paired t-test (`ttest_rel`) on the seeds both ran when
  they share at least two, Welch's t-test (`ttest_ind(equal_var=False)`) otherwise.
- `adjust`: Benjamini-Hochberg adjusted p-values over a family of comparisons
  (`false_discovery_control`), which bounds the expected share of false
  "improves"/"worsens" verdicts among those made at `ALPHA`; `verdict` says
  which way a comparison went once adjusted.
- `expected_best`: the expected test score of the validation-best of n trials
  drawn without replacement from the N finished ones (Tang et al. 2020,
  "Showing Your Work Doesn't Always Work": unbiased, unlike Dodge et al.'s
  estimator, which draws with replacement).

Degenerate samples get a defined answer instead of NaN: with no spread at all
(every repeat of both sides gave the same difference, as a run whose seed
changes nothing does), the interval is that difference itself, of zero width,
and the p-value is the t-test's limit as the spread shrinks to zero: 1 for a
difference of exactly 0, 0 for any other. With fewer than two values on a side
(and fewer than two shared seeds), there is no interval and no p-value: the
test is `NO_TEST`, and the verdict says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
SAME = 1e-9  # values this close (relative to 1, or to their size) are the same: rounding apart
ALPHA = 0.05  # an adjusted p-value below this is a detected effect
CORRECTION = "Benjamini-Hochberg"
PAIRED = "paired"  # ttest_rel on the seeds both sides ran
WELCH = "welch"  # ttest_ind(equal_var=False)
NO_TEST = "none"  # fewer than two values on a side: no interval
IMPROVES = "improves"
WORSENS = "worsens"
NOT_DETECTED = "no detectable effect"  # the 95 % interval holds 0
# The 95 % interval excludes 0, but the adjusted p-value is not below ALPHA: with few repeats and
# many comparisons, a difference that one test alone would call real, but the study as a whole not.
NOT_AFTER_CORRECTION = "not detectable after correction"
ONE_RUN = "one run: no interval"


@dataclass(frozen=True)
class Interval:
    """The mean of some values and the half-width of its t-interval (None with fewer than two)."""

    mean: float
    half_width: float | None
    n: int


@dataclass(frozen=True)
class Comparison:
    """b against a: the difference of means (b - a), its interval and p-value, and the test that gave them.

    `low`, `high` and `p` are None when the test is `NO_TEST`.
    """

    difference: float
    low: float | None
    high: float | None
    p: float | None
    test: str  # PAIRED, WELCH or NO_TEST
    n_a: int  # values of a used (the shared seeds when paired)
    n_b: int


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of the finite `values` and the half-width of its t-interval at `confidence`.

    The half-width is t(confidence, n - 1) times the standard error (0 when
    every value is the same); None with fewer than two values; the mean is
    NaN with none.
    """
    array = _finite(values)
    if len(array) == 0:
        return Interval(float("nan"), None, 0)
    if len(array) < 2:
        return Interval(float(array[0]), None, 1)
    spread = float(np.std(array, ddof=1))
    t = float(stats.t.ppf(0.5 + confidence / 2, len(array) - 1))
    return Interval(float(array.mean()), t * spread / math.sqrt(len(array)), len(array))


def _by_seed(values: pd.Series) -> pd.Series:
    """Finite values indexed by seed, one per seed (the mean where a seed ran more than once)."""
    values = values.astype(float)
    values = values[np.isfinite(values)]
    return values.groupby(level=0).mean()


def _no_spread(values: np.ndarray) -> bool:
    """Whether the values are all the same, up to rounding (0.92 - 0.90 and 0.82 - 0.80 are)."""
    return bool(np.ptp(values) <= SAME * max(1.0, float(np.abs(values).max())))


def _degenerate(difference: float) -> tuple[float, float, float]:
    """(low, high, p) of a difference with no spread at all: the t-test's limit."""
    return difference, difference, 1.0 if abs(difference) <= SAME else 0.0


def compare(a: pd.Series, b: pd.Series, confidence: float = CONFIDENCE) -> Comparison:
    """b against a, each a Series of one configuration's scores indexed by seed.

    Paired (`scipy.stats.ttest_rel` on the seeds both ran) when they share at
    least two seeds, else Welch (`ttest_ind(equal_var=False)`) on all values
    when each side has at least two; else the difference of means alone
    (`NO_TEST`). NaN scores (a run that trained nothing) are left out. With no
    spread, see the module's note on degenerate samples.
    """
    a, b = _by_seed(a), _by_seed(b)
    shared = a.index.intersection(b.index)
    if len(shared) >= 2:
        first, second, test = a[shared].to_numpy(), b[shared].to_numpy(), PAIRED
    else:
        first, second, test = a.to_numpy(), b.to_numpy(), WELCH
    difference = float(second.mean() - first.mean()) if len(first) and len(second) else float("nan")
    if len(first) < 2 or len(second) < 2:
        return Comparison(difference, None, None, None, NO_TEST, len(first), len(second))
    no_spread = _no_spread(second - first) if test == PAIRED else _no_spread(first) and _no_spread(second)
    if no_spread:
        low, high, p = _degenerate(difference)
    else:
        with warnings.catch_warnings():  # nearly identical values: scipy warns, and still answers
            warnings.simplefilter("ignore", RuntimeWarning)
            if test == PAIRED:
                result = stats.ttest_rel(second, first)
            else:
                result = stats.ttest_ind(second, first, equal_var=False)
            bounds = result.confidence_interval(confidence)
        low, high, p = float(bounds.low), float(bounds.high), float(result.pvalue)
    return Comparison(difference, low, high, p, test, len(first), len(second))


def adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (`scipy.stats.false_discovery_control`) over the given
    family; a None (no test) stays None and does not count as a comparison."""
    tested = [i for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    if tested:
        values = stats.false_discovery_control([p_values[i] for i in tested], method="bh")
        for i, value in zip(tested, np.atleast_1d(values), strict=True):
            adjusted[i] = float(value)
    return adjusted


def verdict(comparison: Comparison, p_adjusted: float | None) -> str:
    """`improves` or `worsens` (adjusted p below `ALPHA`); `not detectable after correction` (the
    unadjusted p below `ALPHA`, the adjusted one not); `no detectable effect`; or `one run: no
    interval` where there was no test."""
    if p_adjusted is None:
        return ONE_RUN
    if comparison.difference == 0 or comparison.p is None or comparison.p >= ALPHA:
        return NOT_DETECTED
    if p_adjusted >= ALPHA:
        return NOT_AFTER_CORRECTION
    return IMPROVES if comparison.difference > 0 else WORSENS


def expected_best(valid: Sequence[float], test: Sequence[float]) -> pd.DataFrame:
    """The expected test score of the validation-best of n trials, for n = 1 .. N (Tang et al. 2020).

    `valid` and `test` are the N finished trials' validation and test scores (a
    trial missing either is left out). n trials are drawn without replacement
    from the N; the one with the best validation score among them is chosen,
    and its test score is what is expected. With the trials sorted by
    validation score, the i-th of N (from 1) is the best of a random n-subset
    with probability C(i - 1, n - 1) / C(N, n), so the estimate is that
    weighted sum of their test scores: unbiased for the expected best of n
    fresh trials. Trials tied on validation score are chosen among at random:
    each gets the mean test score of its tie.

    Returns:
        One row per n: n, expected (the expected test score), std (its standard deviation over the
        n-subsets), trials (N).
    """
    frame = pd.DataFrame({"valid": np.asarray(valid, dtype=float), "test": np.asarray(test, dtype=float)})
    frame = frame[np.isfinite(frame["valid"]) & np.isfinite(frame["test"])]
    frame = frame.assign(test=frame.groupby("valid")["test"].transform("mean")).sort_values("valid")
    scores, total = frame["test"].to_numpy(), len(frame)
    found = []
    for n in range(1, total + 1):
        weights = np.array([math.comb(i - 1, n - 1) / math.comb(total, n) for i in range(1, total + 1)])
        expected = float(weights @ scores)
        variance = max(float(weights @ scores**2) - expected**2, 0.0)
        found.append({"n": n, "expected": expected, "std": math.sqrt(variance), "trials": total})
    return pd.DataFrame(found, columns=["n", "expected", "std", "trials"])
