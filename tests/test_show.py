"""`python -m tuninglab show`: what each experiment changed and its accuracy against the baseline."""

from __future__ import annotations

import pytest

from tuninglab.__main__ import main
from tuninglab.report import show

KEYS = {"train.lr", "train.optimizer", "image.train.model"}


def record(rev, typ="branch_commit", name=None, state=None, lr=0.005, **metrics):
    params = {
        "train.lr": lr,
        "train.optimizer": "adam",
        "image.train.model": "cnn",
        "data/raw/text": "abc.dir",
    }
    return {"Experiment": name, "rev": rev, "typ": typ, "State": state, **params, **metrics}


def accuracies(tabular, image, text, regression=0.93):
    return {
        "tabular.test_accuracy": tabular,
        "tabular.chance_accuracy": 0.333,
        "image.test_accuracy": image,
        "image.chance_accuracy": 0.1,
        "text.test_accuracy": text,
        "text.chance_accuracy": 0.578,
        "regression.test_r2": regression,
        "regression.chance_r2": -0.009,
    }


def test_a_repeated_run_shows_its_mean_and_half_width():
    halves = {"tabular.test_accuracy_ci95": 0.012, "regression.test_r2_ci95": 0.004}
    records = [
        record("workspace", typ="baseline", **accuracies(0.9, 0.97, 0.75), **halves),
        record("main", typ="baseline", **accuracies(0.9, 0.97, 0.75), **halves),
        record("a1", name="fast", lr=0.1, **accuracies(0.8, 0.96, 0.75), **halves),
    ]
    frame = show.table(records, KEYS).set_index("experiment")
    assert frame.loc["baseline (main)", "tabular (chance 0.333)"] == "0.900 ± 0.012"
    assert frame.loc["fast", "tabular (chance 0.333)"] == "0.800 ± 0.012 (-10.0)"
    assert frame.loc["fast", "image (chance 0.100)"] == "0.960 (-1.0)"  # one run: no interval


def test_rows_give_changes_differences_in_points_and_states():
    records = [
        record("workspace", typ="baseline", **accuracies(0.9, 0.97, 0.75)),
        record("main", typ="baseline", **accuracies(0.9, 0.97, 0.75)),
        record("a1", name="fast", lr=0.1, **accuracies(0.8, 0.1, 0.58, -0.005), **{"image.diverged": True}),
        record("b2", name="waiting", state="Queued", lr=0.01),
    ]
    frame = show.table(records, KEYS).set_index("experiment")
    assert list(frame.index) == ["baseline (main)", "fast", "waiting"]  # the workspace equals main
    assert list(frame.columns) == [
        "tabular (chance 0.333)",
        "image (chance 0.100)",
        "text (chance 0.578)",
        "regression (chance -0.009)",  # its test R^2 and the R^2 of predicting the training mean
        "state",
        "changed",
    ]
    fast = frame.loc["fast"]
    assert fast["tabular (chance 0.333)"] == "0.800 (-10.0)"
    assert fast["regression (chance -0.009)"] == "-0.005 (-93.5)"
    assert fast["changed"] == "train.lr=0.1"  # deps and metrics are not params
    assert fast["state"] == "image diverged; text no better than chance; regression no better than chance"
    assert frame.loc["waiting", "state"] == "queued" and frame.loc["waiting", "text (chance 0.578)"] == "-"


def test_leftover_workspace_params_are_shown_and_unreadable_metrics_are_blank():
    records = [
        record("workspace", typ="baseline", lr=0.1, **{"image.test_accuracy": "!"}),
        record("main", typ="baseline", **accuracies(0.9, 0.97, 0.75)),
    ]
    frame = show.table(records, KEYS).set_index("experiment")
    workspace = frame.loc["workspace (not committed)"]
    assert workspace["changed"] == "train.lr=0.1" and workspace["image (chance 0.100)"] == "-"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "params.yaml: not found; run from the repository root"),
        ("- 1\n- 2\n", "params.yaml: [1, 2] is not allowed; expected a mapping of settings"),
        ("", "params.yaml: null is not allowed; expected a mapping of settings"),
    ],
    ids=["missing", "a list", "empty"],
)
def test_show_without_a_usable_params_file_says_so_in_one_line(tmp_path, monkeypatch, capsys, content, said):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "params.yaml").write_text(content)
    assert main(["show"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {said}"]


def test_diverged_is_read_as_dvc_api_gives_it_and_said_when_a_run_has_no_score():
    """`dvc.api.exp_show` gives a JSON true as the text 'True'; a run that diverged at its first epoch has
    no test metrics (null), and its cell says so instead of a silent '-'."""
    records = [
        record("workspace", typ="baseline", **accuracies(0.9, 0.97, 0.75)),
        record("main", typ="baseline", **accuracies(0.9, 0.97, 0.75), **{"text.diverged": "False"}),
        record(
            "a1",
            name="huge-lr",
            lr=1e9,
            **accuracies(0.5, 0.2, None, None),
            **{
                "tabular.diverged": "True",
                "image.diverged": "true",
                "text.diverged": 1.0,
                "regression.diverged": True,
            },
        ),
        record("b2", name="calm", lr=0.01, **accuracies(0.91, 0.96, 0.76), **{"text.diverged": "False"}),
    ]
    frame = show.table(records, KEYS).set_index("experiment")
    huge = frame.loc["huge-lr"]
    assert huge["state"] == "tabular diverged; image diverged; text diverged; regression diverged"
    assert huge["text (chance 0.578)"] == huge["regression (chance -0.009)"] == "diverged"
    assert huge["tabular (chance 0.333)"] == "0.500 (-40.0)"
    assert frame.loc["calm", "state"] == frame.loc["baseline (main)", "state"] == "ok"


def test_a_run_computed_with_other_cpu_kernels_is_shown_but_not_compared():
    records = [
        record("workspace", typ="baseline", **accuracies(0.9, 0.97, 0.75)),
        record("main", typ="baseline", **accuracies(0.9, 0.97, 0.75), **{"image.cpu_capability": "AVX512"}),
        record(
            "a1", name="elsewhere", lr=0.01, **accuracies(0.9, 0.95, 0.75), **{"image.cpu_capability": "AVX2"}
        ),
        record(
            "b2", name="here", lr=0.01, **accuracies(0.9, 0.95, 0.75), **{"image.cpu_capability": "AVX512"}
        ),
    ]
    frame = show.table(records, KEYS).set_index("experiment")
    image = next(column for column in frame if column.startswith("image"))
    assert frame.loc["elsewhere", image] == "0.950"  # no difference to a baseline computed otherwise
    assert frame.loc["elsewhere", "state"] == "image not compared (AVX2 kernels vs baseline's AVX512)"
    assert frame.loc["here", image] == "0.950 (-2.0)" and frame.loc["here", "state"] == "ok"
