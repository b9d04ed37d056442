"""Search studies (tpe, halving): their definitions, the promotion of successive halving, and a TPE study
end to end through DVC's queue on a fake training stage whose validation metric is a known function."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import commit_all, sh
from tuninglab.schema import FAILED, SUCCESS, journal_path
from tuninglab.studies import collect, runner, search, spec
from tuninglab.studies.spec import StudyError

SPACE = {
    "train.lr": {"log_uniform": [0.0001, 0.1]},
    "train.dropout": {"uniform": [0.0, 0.5]},
    "train.batch_size": {"choice": [32, 64]},
}


def tpe(**changes):
    return {"kind": "tpe", "trials": 4, "seed": 0, "objective": "mean_gain", "params": SPACE} | changes


def halving(**changes):
    study = {"kind": "halving", "trials": 9, "seed": 0, "eta": 3, "min_epochs": 3, "objective": "mean_gain"}
    return study | {"params": SPACE} | changes


@pytest.mark.parametrize(
    ("study", "words"),
    [
        (tpe(params={"train.lr": {"log_uniform": [0, 0.1]}}), "study s: train.lr: {'log_uniform': [0, 0.1]}"),
        (tpe(params={"train.lr": {"uniform": [0.2, 0.1]}}), "is not allowed; expected {log_uniform"),
        (tpe(params={"train.epochs": {"int": [1.5, 3]}}), "{int: [low, high]} with integers"),
        (tpe(objective="best"), "study s: objective 'best' is not allowed; expected mean_gain"),
        (tpe(objective={"data": "x"}), "or {dataset: <name>}"),
        (halving(eta=1), "study s: eta 1 is not allowed; expected an integer >= 2"),
        (halving(min_epochs=0), "study s: min_epochs 0 is not allowed; expected an integer >= 1"),
        (tpe(eta=3), "unknown setting(s) eta; allowed:"),
        (tpe(trials=0), "study s: trials 0 is not allowed; expected an integer >= 1"),
    ],
)
def test_a_bad_search_definition_names_the_study_the_key_the_value_and_what_is_allowed(study, words):
    with pytest.raises(StudyError) as err:
        spec.parse("s", study)
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("study", "words"),
    [
        (
            tpe(objective={"dataset": "imagenet"}),
            "objective dataset 'imagenet' is not allowed; expected one of",
        ),
        (halving(params={"train.epochs": {"int": [1, 3]}}), "train.epochs is not allowed in a halving study"),
        (
            tpe(params={"train.dropout": {"uniform": [0.0, 1.0]}}),
            "study s: train.dropout: uniform [0.0, 1.0]:",
        ),
    ],
)
def test_a_search_the_baseline_cannot_run_is_refused_before_any_work(default_params, study, words):
    with pytest.raises(StudyError) as err:
        spec.check_search(spec.parse("s", study), default_params)
    assert words in str(err.value)


def test_the_example_searches_are_valid_and_a_search_lists_no_experiments(default_params):
    studies = spec.load(Path(__file__).resolve().parents[1] / "studies.yaml")
    for name in ("tpe_example", "halving_example"):
        spec.check_search(spec.parse(name, studies[name]), default_params)
        with pytest.raises(StudyError, match="asked for as it runs"):
            spec.expand(name, studies[name], default_params)


def test_halving_rungs_multiply_the_epochs_by_eta_up_to_the_baselines():
    study = spec.parse("h", halving())
    assert spec.rungs(study, 30) == [(9, 3), (3, 9), (1, 30)]
    assert spec.rungs(study, 27) == [(9, 3), (3, 9), (1, 27)]
    assert spec.rungs(study, 9) == [(9, 3), (3, 9)]
    assert spec.rungs(study, 2) == [(9, 2)]  # the first rung's epochs already the baseline's: a random study
    assert spec.count("h", halving(), {"train": {"epochs": 30}}) == 13


def test_halving_draws_its_configurations_as_a_random_study_does(default_params):
    drawn = spec.parse("h", halving()).draws()
    random = spec.expand("h", {"kind": "random", "trials": 9, "seed": 0, "params": SPACE}, default_params)
    assert drawn == [experiment.settings for experiment in random]


def test_halving_promotes_the_best_third_and_never_a_failed_configuration():
    values = {1: 0.5, 2: 0.9, 3: None, 4: 0.1, 5: 0.7, 6: 0.9, 7: 0.2, 8: None, 9: 0.3}
    assert search.promote(values, 3) == [2, 5, 6]  # ceil(9 / 3) = 3 of the 7 that finished
    assert search.promote({1: 0.2, 2: 0.4}, 3) == [2]  # ceil(2 / 3) = 1
    assert search.promote({1: None, 2: None}, 2) == []


def test_halving_promotes_the_right_configurations_of_a_known_function(default_params):
    """Runs of an lr closer to 0.01 score higher: each rung keeps the configurations closest to it."""
    study = spec.parse("h", halving(trials=9))
    drawn = dict(enumerate(study.draws(), start=1))
    score = {c: -abs(math.log10(s["train.lr"]) + 2) for c, s in drawn.items()}
    best = sorted(drawn, key=lambda c: -score[c])
    assert search.promote(score, 3) == sorted(best[:3])
    assert search.promote({c: score[c] for c in best[:3]}, 3) == [best[0]]


def test_names_hold_the_trial_and_rung_that_collect_writes():
    assert spec.position(spec.trial_name("tpe_example", 7)) == (7, None)
    assert spec.position(spec.rung_name("halving_example", 3, 1)) == (3, 1)
    assert spec.position("ofat-lr-0.1") == (None, None)


def test_a_choice_among_lists_goes_through_optuna_as_json():
    study = spec.parse("s", tpe(params={"train.hidden": {"choice": [[32], [64, 64]]}}))
    distribution = search.distribution(study.space["train.hidden"])
    assert distribution.choices == ("[32]", "[64, 64]")
    assert search.settings_of(study, {"train.hidden": "[64, 64]"}) == {"train.hidden": [64, 64]}


def test_the_objective_is_a_validation_metric_measured_from_chance_to_the_baseline():
    def record(val, chance, key="chance_accuracy", dataset="tabular"):
        return {
            "name": "r",
            "params": {},
            "metrics": {f"metrics/{dataset}/test.json": {dataset: {key: chance, "test_accuracy": 0.99}}},
            "details": {dataset: {"best_val_accuracy": val}},
        }

    baseline = record(0.75, 0.25)
    scale = search.gains_scale("tabular", baseline)
    assert search.objective_value("tabular", record(0.6, 0.25), scale) == 0.6  # never the test metric
    run = record(0.5, 0.25)
    scale = {"tabular": (0.25, 0.5), "regression": (0.0, 0.8)}
    run["metrics"] |= record(0.4, 0.0, "chance_r2", "regression")["metrics"]
    run["details"] |= {"regression": {"best_val_accuracy": None}}  # diverged: chance
    assert search.objective_value("mean_gain", run, scale) == pytest.approx((0.5 + 0.0) / 2)


# --- a TPE study's resume, on a stand-in backend -----------------------------------------------------------


def known(settings: dict) -> float:
    """The validation metric the fake stage below writes for a configuration."""
    lr, dropout = float(settings["train.lr"]), float(settings["train.dropout"])
    return 1.0 - (math.log10(lr) + 2.0) ** 2 / 10 - dropout / 5


class Queue:
    """A backend whose experiments end at once, in the order submitted, scoring `known`; `ended` and
    `flying` stand for what DVC holds when a study run starts."""

    def __init__(self, ended: dict | None = None, flying: list | None = None) -> None:
        self.ended = dict(ended or {})
        self.running = list(flying or [])
        self.submitted: list[spec.Experiment] = []

    def present(self, study):
        return dict(self.ended), {experiment.name for experiment in self.running}

    def submit(self, experiments):
        self.submitted += experiments
        self.running += experiments

    def wait(self, names):
        experiment = next(e for e in self.running if e.name in names)
        self.running.remove(experiment)
        return [search.Ended(experiment.name, SUCCESS, {"value": known(experiment.settings)})]

    def stop(self, study, flying):
        return "stopped"


def test_a_resumed_tpe_study_tells_what_ended_while_stopped_waits_for_what_runs_and_asks_again_what_is_gone(
    tmp_path, default_params
):
    space = {key: space for key, space in SPACE.items() if key != "train.batch_size"}
    study = spec.parse("fake", tpe(trials=5, params=space))
    commit = "c" * 40

    class Stopped(Queue):
        def wait(self, names):
            raise Stop

    first = Stopped()
    with pytest.raises(Stop):
        search.Tpe(study, search.open_journal(study, commit, 3, tmp_path), first, 3).run(
            default_params, lambda record: record["value"]
        )
    asked = {experiment.name: experiment for experiment in first.submitted}
    done, running, gone = (spec.trial_name("fake", n) for n in range(3))
    assert sorted(asked) == [done, running, gone]  # three trials asked, none told, when the run stopped

    # meanwhile the first trial's experiment ended, the second still runs, the third was taken off the queue
    value = known(asked[done].settings)
    again = Queue({done: search.Ended(done, SUCCESS, {"value": value})}, [asked[running]])
    journal = search.open_journal(study, commit, 3, tmp_path)
    counts = search.Tpe(study, journal, again, 3).run(default_params, lambda record: record["value"])

    assert done not in {e.name for e in again.submitted} and running not in {e.name for e in again.submitted}
    trials = journal.get_trials()
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == value  # told from DVC, not run again
    assert trials[1].state == TrialState.COMPLETE and trials[1].value == known(asked[running].settings)
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs[search.LOST_ATTR]
    assert again.submitted[0].name == spec.trial_name("fake", 3)
    assert again.submitted[0].settings == asked[gone].settings  # asked again with the same params
    spent = [t for t in trials if not t.user_attrs.get(search.LOST_ATTR)]
    assert len(spent) == 5 and all(t.state == TrialState.COMPLETE for t in spent)
    assert all(t.value == pytest.approx(known(search.settings_of(study, t.params))) for t in spent)
    assert counts[SUCCESS] == 5 and not counts[FAILED]


def test_a_lost_journal_is_refused_before_a_trial_is_asked_again_under_a_name_dvc_holds(
    tmp_path, default_params
):
    study = spec.parse("fake", tpe(trials=5))
    ran = spec.trial_name("fake", 0)
    held = Queue(
        {ran: search.Ended(ran, SUCCESS, {"value": 0.5})}, [spec.Experiment(spec.trial_name("fake", 1), {})]
    )
    journal = search.open_journal(study, "c" * 40, 1, tmp_path)  # a new journal: the old one is gone
    with pytest.raises(StudyError) as err:
        search.Tpe(study, journal, held, 1).run(default_params, lambda record: record["value"])
    assert str(err.value) == (
        "results/optuna/fake.log does not hold 2 experiment(s) of study fake that DVC holds (fake-t000, "
        "fake-t001): the journal was lost or is older than they are; restore it (git checkout -- "
        "results/optuna/fake.log), or start the study anew without them (dvc exp remove fake-t000 fake-t001)"
    )
    assert not held.submitted and not journal.get_trials()


# --- a TPE study end to end on DVC's queue ---------------------------------------------------------------

FAKE_STAGE = """
import json, math, pathlib, sys
import yaml

train = yaml.safe_load(open("params.yaml"))["train"]
if int(train["batch_size"]) == 32:
    sys.exit("error: this fake stage refuses batch_size 32")
lr, dropout = float(train["lr"]), float(train["dropout"])
val = 1.0 - (math.log10(lr) + 2.0) ** 2 / 10 - dropout / 5
out = pathlib.Path("metrics/tabular")
out.mkdir(parents=True, exist_ok=True)
pathlib.Path("plots/tabular").mkdir(parents=True, exist_ok=True)
(out / "test.json").write_text(json.dumps({"tabular": {"test_accuracy": val - 0.5, "chance_accuracy": 0.25}}))
(out / "train.json").write_text(json.dumps({"tabular": {"best_epoch": 1, "epochs_run": int(train["epochs"]),
    "diverged": False, "train_time_s": 0.1, "cpu_capability": "default"}}))
(out / "details.json").write_text(json.dumps({"best_val_accuracy": val, "best_val_loss": 1 - val}))
pathlib.Path("plots/tabular/history.csv").write_text("epoch,val_accuracy\\n1,%f\\n" % val)
"""

PIPELINE = {
    "stages": {
        "train": {
            "cmd": "python fake_train.py",
            "deps": ["fake_train.py"],
            "params": ["train"],
            "outs": [
                {"metrics/tabular/details.json": {"cache": False}},
                {"plots/tabular/history.csv": {"cache": False}},
            ],
            "metrics": [
                {"metrics/tabular/test.json": {"cache": False}},
                {"metrics/tabular/train.json": {"cache": False}},
            ],
        }
    }
}


def fake_lab(repo: Path, params: dict, studies: dict) -> Path:
    """A git and DVC repo whose one stage scores the params by a known function; its baseline committed."""
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "studies.yaml").write_text(yaml.safe_dump(studies))
    (repo / "fake_train.py").write_text(FAKE_STAGE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE))
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "repro", "-q")
    commit_all(repo, "baseline")
    return repo


class Stop(KeyboardInterrupt):
    """Ctrl-C in the middle of a study."""


@pytest.mark.slow
def test_a_tpe_study_runs_on_the_queue_fails_a_trial_resumes_and_collects(
    tmp_path, monkeypatch, default_params
):
    study = {
        "kind": "tpe",
        "trials": 6,
        "seed": 3,
        "objective": {"dataset": "tabular"},
        "params": SPACE,
    }
    repo = fake_lab(tmp_path, default_params, {"fake": study})
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(runner, "POLL_SECONDS", 1.0)
    monkeypatch.setattr(search, "START_SECONDS", 5.0)
    told = search.Tpe.tell

    def stopping_after_two(self, number, ended, score):
        told(self, number, ended, score)
        if sum(self.counts.values()) == 2:
            raise Stop

    monkeypatch.setattr(search.Tpe, "tell", stopping_after_two)
    with pytest.raises(KeyboardInterrupt):
        search.run_local("fake", 2, cwd=repo)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(repo / journal_path("fake")))
    )
    first = optuna.load_study(study_name="fake", storage=storage).get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in first) == 2

    monkeypatch.setattr(search.Tpe, "tell", told)
    counts = search.run_local("fake", 2, cwd=repo)
    trials = optuna.load_study(study_name="fake", storage=storage).get_trials()
    spent = [t for t in trials if not t.user_attrs.get(search.LOST_ATTR)]
    assert len(spent) == 6 and all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in spent)
    assert counts[SUCCESS] + counts[FAILED] == 6
    before = {t.number: (t.state, t.value) for t in first if t.state != TrialState.RUNNING}
    assert {t.number: (t.state, t.value) for t in trials if t.number in before} == before  # not run again
    failed = [t for t in spent if t.state == TrialState.FAIL]
    assert failed and all(t.params["train.batch_size"] == 32 for t in failed)
    assert all("refuses batch_size 32" in t.user_attrs[search.ERROR_ATTR] for t in failed)
    for trial in spent:
        if trial.state == TrialState.COMPLETE:
            lr, dropout = trial.params["train.lr"], trial.params["train.dropout"]
            assert trial.value == pytest.approx(1.0 - (math.log10(lr) + 2.0) ** 2 / 10 - dropout / 5)

    _, records = collect.read(repo)
    names = [r["name"] for r in records if r["state"] in (SUCCESS, FAILED)]
    assert sorted(set(names)) == sorted(spec.trial_name("fake", t.number) for t in spent)
    frame, _ = collect.collect({"fake": "tpe"}, cwd=repo)
    rows = frame[frame["study"] == "fake"].set_index("experiment")
    assert sorted(rows["trial"]) == sorted(t.number for t in spent)


@pytest.mark.slow
def test_a_halving_study_promotes_the_best_on_the_queue_and_collects_trial_and_rung(
    tmp_path, monkeypatch, default_params
):
    """4 configurations, eta 2, 1 epoch first, 4 in full: rungs of 4 x 1, 2 x 2 and 1 x 4 epochs. With seed 2
    (params in studies.yaml's order) the configurations score 0.95, 0.99, 0.64 and 0.97, the second with
    batch size 32, which the stage refuses: 1 and 4 go on, then 4."""
    study = {
        "kind": "halving",
        "trials": 4,
        "seed": 2,
        "eta": 2,
        "min_epochs": 1,
        "objective": {"dataset": "tabular"},
        "params": SPACE,
    }
    params = default_params | {"train": default_params["train"] | {"epochs": 4}}
    repo = fake_lab(tmp_path, params, {"fake": study})
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(runner, "POLL_SECONDS", 1.0)
    monkeypatch.setattr(search, "START_SECONDS", 5.0)
    drawn = dict(enumerate(spec.parse("fake", spec.definition("fake", repo / "studies.yaml")).draws(), 1))
    assert [round(known(drawn[c]), 2) for c in drawn] == [0.95, 0.99, 0.64, 0.97]
    assert [drawn[c]["train.batch_size"] for c in drawn] == [64, 32, 64, 64]

    counts = search.run_local("fake", 2, cwd=repo)

    assert (counts[SUCCESS], counts[FAILED]) == (6, 1)
    _, records = collect.read(repo)
    ran = {(1, 0), (2, 0), (3, 0), (4, 0), (1, 1), (4, 1), (4, 2)}
    assert {r["name"]: r["state"] for r in records} == {
        spec.rung_name("fake", c, rung): FAILED if c == 2 else SUCCESS for c, rung in ran
    }  # each rung of each configuration a named DVC experiment
    frame, _ = collect.collect({"fake": "halving"}, cwd=repo)
    rows = frame[frame["study"] == "fake"]
    assert sorted(zip(rows["trial"], rows["rung"], strict=True)) == sorted(ran)
    trained = rows[rows["trial"] != 2]  # the failed configuration's row has no metrics
    assert sorted(zip(trained["trial"], trained["rung"], trained["epochs_run"], strict=True)) == [
        (1, 0, 1),
        (1, 1, 2),
        (3, 0, 1),
        (4, 0, 1),
        (4, 1, 2),
        (4, 2, 4),
    ]
    assert search.run_local("fake", 2, cwd=repo) == counts  # run again: nothing is queued, nothing changes
