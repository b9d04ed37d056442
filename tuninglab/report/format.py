"""How the lab writes values and labels, one function per purpose.

- `value`, `setting`: a param value, or `key=value`, as the report and `show` print it.
- `finite`, `number`, `metric`, `points`, `difference`, `against`: numbers as the report prints them.
- `dataset_header`: a dataset's accuracy (or R^2) column, with its chance rate.
- `text`, `code`, `codes`: any value as markdown text or an inline code span, escaped.
- `METRICS`: the label and decimals of each metric column the report shows.

Torch-free: `show` uses it as well as the report. How a param value is written into an
experiment's name or a DVC override is the studies' (`tuninglab.studies.spec`).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

# A metric column of the results table -> its label in the report's tables and the decimals shown.
METRICS: dict[str, tuple[str, int]] = {
    "test_accuracy": ("test accuracy", 3),
    "chance_accuracy": ("chance (majority class)", 3),
    "test_r2": ("test R^2", 3),
    "chance_r2": ("chance R^2 (training mean)", 3),
    "test_rmse": ("test RMSE", 4),
    "test_mae": ("test MAE", 4),
    "rmse_original": ("test RMSE, original scale", 0),
    "mae_original": ("test MAE, original scale", 0),
    "test_nll": ("test NLL", 3),
    "coverage_90": ("90 % interval coverage", 3),
    "test_loss": ("test loss", 3),
    "macro_f1": ("macro F1", 3),
    "balanced_accuracy": ("balanced accuracy", 3),
    "best_val_accuracy": ("best validation accuracy", 3),
    "best_epoch": ("best epoch", 0),
    "epochs_run": ("epochs run", 0),
    "cpu_time_s": ("CPU time of training (s)", 1),
    "train_time_s": ("wall time (s)", 1),
    "used_threads": ("CPU threads", 0),
}
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]|])")


def value(param: Any, missing: str = "") -> str:
    """A param value as the report prints it: `0.001`, `64`, `sgd`, `[128, 128]`, `true`; else `missing`.

    A float shows 4 significant digits (`0.004430375245218269`, as a search sampler draws it, reads
    `0.00443`), which every value a person writes in studies.yaml or params.yaml keeps whole.
    """
    if isinstance(param, bool | np.bool_):
        return str(bool(param)).lower()
    if isinstance(param, float | np.floating):
        if math.isnan(param):
            return missing
        return str(int(param)) if float(param).is_integer() else f"{float(param):.4g}"
    return missing if param is None else str(param)


def setting(key: str, param: Any) -> str:
    """One param as `key=value` (`train.lr=0.1`)."""
    return f"{key}={value(param)}"


def finite(amount: Any) -> float | None:
    """A finite number as a float; a missing, NaN or infinite one as None."""
    return float(amount) if pd.notna(amount) and math.isfinite(amount) else None


def number(amount: Any, decimals: int, missing: str = "") -> str:
    """A number with fixed decimals (`0.933`); `missing` for a missing, NaN or infinite one."""
    shown = finite(amount)
    return missing if shown is None else f"{shown:.{decimals}f}"


def points(fraction: float) -> str:
    """A fraction of accuracy in points, one decimal: 0.123 -> `12.3`."""
    return f"{100 * fraction:.1f}"


def difference(amount: Any, base: Any, decimals: int) -> str:
    """`amount - base` with a sign, `0.000` when it rounds to zero, empty when either is missing."""
    a, b = finite(amount), finite(base)
    if a is None or b is None:
        return ""
    shown = f"{a - b:+.{decimals}f}"
    return f"{0:.{decimals}f}" if float(shown) == 0 else shown


def mean_pm(score: float, half: float | None) -> str:
    """A score with the half-width of its 95 % interval when it has one: `0.800 ± 0.012`, or `0.800`."""
    return f"{score:.3f}" if half is None else f"{score:.3f} ± {half:.3f}"


def against(score: float, base: float, half: float | None = None) -> str:
    """A score (accuracy, or R^2; ± its 95 % half-width) with its difference to the baseline's in points.

    `0.800 (-10.0)`, or `0.800 ± 0.012 (-10.0)`.
    """
    return f"{mean_pm(score, half)} ({100 * (score - base):+.1f})"


def dataset_header(dataset: str, chance: Any) -> str:
    """A dataset's accuracy column, with its chance rate beside it: `image (chance 0.112)`."""
    rate = finite(chance)
    return dataset if rate is None else f"{dataset} (chance {rate:.3f})"


def text(shown: object) -> str:
    """Any value as markdown text that shows exactly its characters: HTML and markdown syntax escaped."""
    escaped = html.escape(" ".join(str(shown).splitlines()), quote=False).replace("~", "&#126;")
    return _MARKDOWN_SYNTAX.sub(r"\\\1", escaped)


def code(shown: object) -> str:
    """Any value as an inline code span (fenced with more backticks than it holds)."""
    content = " ".join(str(shown).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", content)), default=0) + 1)
    padding = " " if content.startswith("`") or content.endswith("`") else ""
    return f"{fence}{padding}{content}{padding}{fence}"


def codes(names: Iterable[object]) -> str:
    """Names as inline code spans, comma-separated."""
    return ", ".join(code(name) for name in names)


def metric(name: str, amount: Any, missing: str = "") -> str:
    """A metric column's value with its decimals in `METRICS` (`test_accuracy` 0.9333 -> `0.933`)."""
    return number(amount, METRICS[name][1], missing)
