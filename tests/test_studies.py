"""Study definitions expand into named, checked experiments before anything is queued."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.conftest import ROOT
from tuninglab.__main__ import main
from tuninglab.studies import spec
from tuninglab.studies.spec import StudyError


def test_shipped_studies_expand_and_pass_the_param_rules(default_params):
    shipped = spec.load(ROOT / "studies.yaml")
    assert {study["kind"] for study in shipped.values()} == set(spec.STRATEGIES)
    for name, study in shipped.items():
        if study["kind"] in spec.SEARCHES:  # asked for as they run: tests/test_search.py
            continue
        experiments = spec.expand(name, study, default_params)
        names = [e.name for e in experiments]
        assert len(names) == len(set(names)) > 0
        assert all(n.startswith(f"{name}-") for n in names)


def test_ofat_changes_one_hyperparameter_and_skips_the_baseline_value(default_params):
    study = {"kind": "ofat", "params": {"train.lr": [0.001, 0.005, 0.1], "train.optimizer": ["sgd", "adam"]}}
    experiments = spec.expand("ofat", study, default_params)
    assert [(e.name, e.settings) for e in experiments] == [
        ("ofat-lr-0.001", {"train.lr": 0.001}),
        ("ofat-lr-0.1", {"train.lr": 0.1}),
        ("ofat-optimizer-sgd", {"train.optimizer": "sgd"}),
    ]


def test_a_key_naming_several_params_sets_them_together(default_params):
    study = {"kind": "ofat", "params": {"tabular.data.normalize,image.data.normalize": [False]}}
    (experiment,) = spec.expand("s", study, default_params)
    assert experiment.name == "s-normalize-false"
    assert experiment.set_args() == ["-S", "tabular.data.normalize=false", "-S", "image.data.normalize=false"]


def test_list_values_are_named_and_passed_to_dvc(default_params):
    study = {"kind": "ofat", "params": {"train.hidden": [[], [64, 32]]}}
    experiments = spec.expand("ofat", study, default_params)
    assert [e.name for e in experiments] == ["ofat-hidden-none", "ofat-hidden-64-32"]
    assert experiments[1].set_args() == ["-S", "train.hidden=[64,32]"]


def test_grid_is_every_combination(default_params):
    study = {"kind": "grid", "params": {"train.optimizer": ["sgd", "adam"], "train.lr": [0.01, 0.1]}}
    experiments = spec.expand("g", study, default_params)
    assert [e.name for e in experiments] == [
        "g-optimizer-sgd-lr-0.01",
        "g-optimizer-sgd-lr-0.1",
        "g-optimizer-adam-lr-0.01",
        "g-optimizer-adam-lr-0.1",
    ]
    assert experiments[1].settings == {"train.optimizer": "sgd", "train.lr": 0.1}


def test_random_search_draws_the_same_configurations_from_the_same_seed(default_params):
    study = {
        "kind": "random",
        "trials": 12,
        "seed": 3,
        "params": {
            "train.lr": {"log_uniform": [0.0001, 0.1]},
            "train.dropout": {"uniform": [0.0, 0.5]},
            "train.optimizer": {"choice": ["sgd", "adam", "rmsprop"]},
        },
    }
    first = spec.expand("r", study, default_params)
    again = spec.expand("r", study, default_params)
    other = spec.expand("r", {**study, "seed": 4}, default_params)
    assert first == again and first != other
    assert [e.name for e in first][:2] == ["r-01", "r-02"]
    rates = [e.settings["train.lr"] for e in first]
    assert all(0.0001 <= r <= 0.1 for r in rates)
    assert min(rates) < 0.001 < max(rates)  # log-uniform reaches every decade
    assert {e.settings["train.optimizer"] for e in first} <= {"sgd", "adam", "rmsprop"}


@pytest.mark.parametrize(
    ("study", "words"),
    [
        (
            {"kind": "ofat", "params": {"train.lrr": [0.1]}},
            "train.lrr: unknown parameter (did you mean 'lr'?)",
        ),
        ({"kind": "ofat", "params": {"train.lr": []}}, "train.lr has no values; expected a non-empty list"),
        (
            {"kind": "grid", "params": {"train.lr": [-1]}},
            "train.lr: -1 is not allowed; expected a number > 0",
        ),
        ({"kind": "ofat", "params": {}}, "params is empty"),
        (
            {"kind": "sweep", "params": {"train.lr": [0.1]}},
            "kind 'sweep' is not allowed; expected one of ofat",
        ),
        ({"kind": "random", "trials": 2, "seed": 0, "params": {"train.lr": [0.1]}}, "expected {log_uniform"),
        (
            {"kind": "random", "seed": 0, "params": {"train.lr": {"uniform": [0.1, 0.2]}}},
            "trials None is not",
        ),
        ({"kind": "ofat", "trials": 3, "params": {"train.lr": [0.1]}}, "unknown setting(s) trials"),
        (
            {"kind": "grid", "max_experiments": 0, "params": {"train.lr": [0.1]}},
            "max_experiments 0 is not allowed; expected an integer >= 1",
        ),
    ],
)
def test_bad_study_is_refused_with_a_clear_message(default_params, study, words):
    with pytest.raises(StudyError) as err:
        spec.expand("s", study, default_params)
    assert words in str(err.value) and "study s" in str(err.value)


def test_plan_command_prints_queue_commands(tmp_path, monkeypatch, capsys, default_params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    (tmp_path / "studies.yaml").write_text(
        yaml.safe_dump({"lrs": {"kind": "ofat", "params": {"train.lr": [0.1]}}})
    )
    monkeypatch.chdir(tmp_path)
    assert main(["study", "plan", "lrs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "dvc exp run --queue -n lrs-lr-0.1 -S train.lr=0.1"
    assert out[1].startswith("no wall-time estimate: metrics/") and "run `dvc repro`" in out[1]
    assert main(["study", "plan", "nope"]) == 2
    assert "no study named 'nope'; studies: lrs" in capsys.readouterr().err


def test_plan_starts_from_the_given_baseline_not_the_workspace_params(tmp_path, monkeypatch, default_params):
    (tmp_path / "studies.yaml").write_text(
        yaml.safe_dump({"lrs": {"kind": "ofat", "params": {"train.lr": [0.005, 0.1]}}})
    )
    workspace = copy.deepcopy(default_params)
    workspace["train"]["lr"] = 0.1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(workspace))
    monkeypatch.chdir(tmp_path)
    default_params["train"]["lr"] = 0.005  # HEAD's, say
    assert [e.name for e in spec.plan("lrs", baseline=default_params)] == ["lrs-lr-0.1"]
    assert [e.name for e in spec.plan("lrs")] == ["lrs-lr-0.005"]  # study plan: the workspace's


MILLION = {  # six hyperparameters of ten values each: 10^6 combinations
    "kind": "grid",
    "params": {
        "train.lr": [round(0.001 * (i + 1), 3) for i in range(10)],
        "train.dropout": [round(0.05 * i, 2) for i in range(10)],
        "train.weight_decay": [round(0.0001 * i, 4) for i in range(10)],
        "train.seed": list(range(10)),
        "train.batch_size": [16 + 8 * i for i in range(10)],
        "train.hidden": [[16 * (i + 1)] for i in range(10)],
    },
}


def test_a_study_is_counted_without_listing_it(default_params):
    assert spec.count("big", MILLION) == 10**6
    assert spec.limit("big", MILLION) == spec.MAX_EXPERIMENTS == 1000
    assert spec.limit("big", MILLION | {"max_experiments": 2 * 10**6}) == 2 * 10**6
    ofat = {"kind": "ofat", "params": {"train.lr": [0.005, 0.1], "train.seed": [1, 2, 3]}}
    assert spec.count("o", ofat) == 5  # at most: the baseline's lr 0.005 is skipped when listed
    draws = {"kind": "random", "trials": 10**9, "seed": 0, "params": {"train.lr": {"uniform": [0.1, 0.2]}}}
    assert spec.count("r", draws) == 10**9
    with pytest.raises(StudyError, match="kind 'sweep' is not allowed"):
        spec.count("s", {"kind": "sweep", "params": {}})


@pytest.mark.parametrize(
    "study",
    [
        {"kind": "grid", "params": {"train.optimizer": ["sgd", "adam"], "train.lr": [0.01, 0.1, 0.2]}},
        {"kind": "ofat", "params": {"train.lr": [0.005, 0.1, 0.2], "train.seed": [1, 2, 3, 4]}},
    ],
)
def test_a_sample_and_a_head_are_experiments_of_the_study(default_params, study):
    listed = spec.expand("s", study, default_params)
    assert spec.head("s", study, default_params, 3) == listed[:3]
    assert spec.sample("s", study, default_params, size=100) == listed  # all of a study that small
    picked = spec.sample("s", study, default_params, size=3)
    assert picked and len(picked) <= 3 and all(experiment in listed for experiment in picked)


def test_a_sample_of_a_million_combinations_is_drawn_over_all_of_them(default_params):
    picked = spec.sample("big", MILLION, default_params)
    assert len(picked) == spec.SAMPLE
    for hyperparameter in MILLION["params"]:
        seen = {str(experiment.settings[hyperparameter]) for experiment in picked}
        assert len(seen) >= 8, hyperparameter  # every hyperparameter's values, not the first combinations'
    first = spec.head("big", MILLION, default_params, 1)[0]
    assert first.name == "big-lr-0.001-dropout-0.0-weight_decay-0.0-seed-0-batch_size-16-hidden-16"


@pytest.mark.parametrize(
    ("param", "override", "name_part"),
    [
        (True, "true", "true"),
        (0.1, "0.1", "0.1"),
        ([64, 32], "[64,32]", "64-32"),
        ([], "[]", "none"),
        ("data/local/text/x.csv", "data/local/text/x.csv", "data_local_text_x.csv"),
    ],
)
def test_a_param_value_for_dvc_and_for_an_experiment_name(param, override, name_part):
    assert spec.override(param) == override
    assert spec.name_part(param) == name_part
