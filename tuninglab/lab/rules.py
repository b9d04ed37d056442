"""Param rules: a check per value, the words that say what it allows, and its bounds or choices.

`params` checks the shared groups with them and `datasets` declares each data
type's own settings with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple


class Rule(NamedTuple):
    """A check, the words that tell the user what it allows, its numeric bounds and its named choices."""

    check: Callable[[Any], bool]
    allowed: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()  # the named values allowed (a rule may accept more, e.g. a path)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def int_at_least(low: int) -> Rule:
    """An integer >= `low`."""
    return Rule(lambda v: _is_int(v) and v >= low, f"an integer >= {low}", low)


def int_in(low: int, high: int) -> Rule:
    """An integer from `low` to `high`."""
    return Rule(lambda v: _is_int(v) and low <= v <= high, f"an integer from {low} to {high}", low, high)


def number_in(low: float, high: float, *, high_open: bool = False) -> Rule:
    """A number in [low, high], or [low, high) with `high_open`."""
    bracket = ")" if high_open else "]"

    def check(v: Any) -> bool:
        return is_number(v) and low <= v and (v < high if high_open else v <= high)

    return Rule(check, f"a number in [{low}, {high}{bracket}", low, high)


def positive_number() -> Rule:
    """A number > 0."""
    return Rule(lambda v: is_number(v) and v > 0, "a number > 0", 0.0)


def choice(*options: Any) -> Rule:
    """One of `options`, of the same type (so `1` does not pass for `true`)."""
    shown = " | ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in options)
    return Rule(
        lambda v: type(v) in {type(o) for o in options} and v in options, f"one of {shown}", choices=options
    )


def auto_or_int_at_least(low: int) -> Rule:
    """`auto` or an integer >= `low`."""
    return Rule(lambda v: v == "auto" or (_is_int(v) and v >= low), f"auto or an integer >= {low}", low)


def int_list(min_len: int, max_len: int) -> Rule:
    """A list of `min_len` to `max_len` integers > 0."""

    def check(v: Any) -> bool:
        return isinstance(v, list) and min_len <= len(v) <= max_len and all(_is_int(x) and x > 0 for x in v)

    return Rule(check, f"a list of {min_len} to {max_len} integers > 0")


BOOL = choice(True, False)
