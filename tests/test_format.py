"""Values and labels: one writer per purpose, the same for `show` and the report."""

from __future__ import annotations

import numpy as np
import pytest

from tuninglab.report import format
from tuninglab.schema import RESULT_METRICS


@pytest.mark.parametrize(
    ("param", "shown"),
    [
        (np.bool_(False), "false"),
        (64.0, "64"),
        (np.float64(0.001), "0.001"),
        (1e-05, "1e-05"),
        (0.004430375245218269, "0.00443"),  # as a search sampler draws it: 4 significant digits
        (np.int64(3), "3"),
        ("[128, 128]", "[128, 128]"),
        ("sgd", "sgd"),
    ],
)
def test_a_param_value_as_the_report_prints_it(param, shown):
    assert format.value(param) == shown
    assert format.setting("train.x", param) == f"train.x={shown}"


def test_missing_values_are_blank_or_what_the_caller_says():
    assert format.value(float("nan")) == "" and format.value(None, "n/a") == "n/a"
    assert format.number(float("inf"), 3) == "" and format.number(None, 1, "n/a") == "n/a"
    assert format.finite(float("nan")) is None and format.finite(np.int64(2)) == 2.0
    assert format.difference(0.5, None, 3) == ""
    assert format.dataset_header("text", None) == "text"


def test_numbers_have_fixed_decimals_and_signs():
    assert format.number(0.93333, 3) == "0.933"
    assert format.metric("cpu_time_s", 31.19) == "31.2" and format.metric("best_epoch", 13.0) == "13"
    assert format.points(0.8700001) == "87.0"
    assert format.difference(0.1, 0.97, 3) == "-0.870" and format.difference(0.97, 0.9704, 3) == "0.000"
    assert format.against(0.8, 0.9) == "0.800 (-10.0)"
    assert format.dataset_header("image", 0.1124) == "image (chance 0.112)"


def test_metric_labels_name_columns_of_the_results_table():
    assert set(format.METRICS) <= set(RESULT_METRICS)


def test_text_and_code_show_markup_and_markdown_as_characters():
    assert format.text("a_b <script>|~") == "a\\_b &lt;script&gt;\\|&#126;"
    assert format.code("x`y") == "``x`y``" and format.code("`x") == "`` `x ``"
    assert format.codes(["a", "b"]) == "`a`, `b`"
