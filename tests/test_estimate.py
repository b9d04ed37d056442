"""`study plan`'s wall-time estimate, from a fake baseline's measured training times."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_studies import MILLION
from tuninglab import schema
from tuninglab.__main__ import PLAN_HEAD, main
from tuninglab.lab import params
from tuninglab.studies import estimate, spec
from tuninglab.studies.spec import Experiment, StudyError

# A fake baseline: seconds of training and epochs run per dataset.
TIMES = {"tabular": (1.0, 10), "image": (60.0, 30), "text": (20.0, 10), "regression": (5.0, 20)}


def write_baseline(root, times=TIMES, repeats=None):
    """The baseline's train.json and test.json per dataset: it ran `repeats` (dataset -> count; by
    default each dataset's in params.yaml)."""
    defaults = params.load(ROOT / "params.yaml")
    for dataset, (seconds, epochs) in times.items():
        path = root / schema.metrics_path(dataset, "train")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({dataset: {"train_time_s": seconds, "epochs_run": epochs}}))
        count = repeats[dataset] if repeats else params.train_config(defaults, dataset).repeats
        tested = {dataset: {schema.REPEATS: count}}
        (root / schema.metrics_path(dataset, "test")).write_text(json.dumps(tested))


def test_more_repeats_than_the_baseline_ran_scale_its_time(tmp_path, default_params):
    write_baseline(tmp_path, repeats=dict.fromkeys(TIMES, 2))
    runs = estimate.baselines(params.dataset_groups(default_params), tmp_path)
    default_params["train"]["repeats"] = 2
    for dataset in TIMES:
        default_params[dataset]["train"].pop("repeats", None)
    more = Experiment("repeats", {"train.repeats": 4})
    assert estimate.experiment_seconds(more, default_params, runs) == pytest.approx(
        estimate.DVC_S + 4 * estimate.STAGE_S + 2 * 86.0
    )


def test_a_shared_key_retrains_every_dataset_and_a_dataset_key_only_its_own(tmp_path, default_params):
    write_baseline(tmp_path)
    runs = estimate.baselines(params.dataset_groups(default_params), tmp_path)
    fixed, stage = estimate.DVC_S, estimate.STAGE_S
    shared = Experiment("lr", {"train.lr": 0.1})
    assert estimate.experiment_seconds(shared, default_params, runs) == pytest.approx(
        fixed + 4 * stage + 86.0
    )
    own = Experiment("augment", {"image.train.augment": True})
    assert estimate.retrained(own, tuple(runs)) == ("image",)
    assert estimate.experiment_seconds(own, default_params, runs) == pytest.approx(fixed + stage + 60.0)
    data = Experiment("normalize", {"tabular.data.normalize": False, "image.data.normalize": False})
    assert estimate.reprepared(data, tuple(runs)) == ("tabular", "image")
    assert estimate.experiment_seconds(data, default_params, runs) == pytest.approx(fixed + 4 * stage + 61.0)


def test_fewer_epochs_than_the_baseline_ran_take_that_share_of_its_time(tmp_path, default_params):
    write_baseline(tmp_path)
    runs = estimate.baselines(params.dataset_groups(default_params), tmp_path)
    short = Experiment("epochs", {"train.epochs": 5})
    # tabular 5/10, image 5/30, text 5/10, regression 5/20 of their baseline times
    training = 1.0 / 2 + 60.0 / 6 + 20.0 / 2 + 5.0 / 4
    expected = estimate.DVC_S + 4 * estimate.STAGE_S + training
    assert estimate.experiment_seconds(short, default_params, runs) == pytest.approx(expected)
    longer = Experiment("epochs", {"train.epochs": 50})  # the baseline stopped early: no longer than it ran
    assert estimate.experiment_seconds(longer, default_params, runs) == pytest.approx(
        estimate.DVC_S + 4 * estimate.STAGE_S + 86.0
    )


def test_workers_take_the_next_experiment_when_free_and_share_the_cores():
    assert estimate.wall_seconds([10, 10, 10, 10], jobs=1, cores=2) == 40
    shared = estimate.SHARED  # workers side by side: each experiment this much slower
    assert estimate.wall_seconds([10, 10, 10, 10], jobs=2, cores=2) == pytest.approx(20 * shared)
    assert estimate.wall_seconds([30, 10, 10, 10], jobs=2, cores=2) == pytest.approx(30 * shared)
    # two cores: each twice as slow on top
    assert estimate.wall_seconds([10, 10, 10, 10], jobs=4, cores=2) == pytest.approx(20 * shared)


def test_a_study_run_adds_queuing_and_its_end_and_two_workers_do_not_halve_the_running():
    """ofat as measured (benchmarks/study.py): 1373 s running with one worker, 807 s with two; 14.0 min in all
    with two. Its 23 experiments, at one worker's pace, estimated with each worker's share of the machine."""
    seconds = [1373 / 23] * 23
    assert estimate.wall_seconds(seconds, jobs=2, cores=2) == pytest.approx(807, rel=0.05)  # 23: 12 rounds
    whole = estimate.study_seconds(seconds, jobs=2, cores=2)
    assert whole == pytest.approx(23 * estimate.QUEUE_S + 12 * 1373 / 23 * estimate.SHARED + estimate.END_S)
    assert whole / 60 == pytest.approx(14.0, rel=0.1)


def test_plan_prints_the_estimate_for_the_workers_asked(tmp_path, monkeypatch, capsys, default_params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    study = {"kind": "ofat", "params": {"train.lr": [0.1, 0.2], "image.train.augment": [True]}}
    (tmp_path / "studies.yaml").write_text(yaml.safe_dump({"s": study}))
    write_baseline(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(estimate.os, "cpu_count", lambda: 2)
    per_lr = estimate.DVC_S + 4 * estimate.STAGE_S + 86.0
    augment = estimate.DVC_S + estimate.STAGE_S + 60.0
    ends = 3 * estimate.QUEUE_S + estimate.END_S
    assert main(["study", "plan", "s"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(
        f"estimated wall time: {(ends + 2 * per_lr + augment) / 60:.1f} min for 3 experiments with 1 worker"
    )
    assert main(["study", "plan", "s", "-j", "2"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(
        f"estimated wall time: {(ends + (per_lr + augment) * estimate.SHARED) / 60:.1f} min for 3 experiments"
    )
    assert "with 2 workers" in line and "measured" in line


def test_a_missing_or_broken_baseline_names_its_file(tmp_path, default_params):
    write_baseline(tmp_path, {k: v for k, v in TIMES.items() if k != "text"})
    with pytest.raises(StudyError, match=r"metrics/text/train\.json: no train_time_s .* run `dvc repro`"):
        estimate.baselines(params.dataset_groups(default_params), tmp_path)
    write_baseline(tmp_path, {"text": (1.0, 3)})
    (tmp_path / schema.metrics_path("text", "train")).write_text(json.dumps({"text": {"epochs_run": 3}}))
    with pytest.raises(StudyError, match=r"metrics/text/train\.json"):
        estimate.baselines(params.dataset_groups(default_params), tmp_path)


def test_plan_refuses_no_workers(capsys):
    assert main(["study", "plan", "ofat", "-j", "0"]) == 2
    assert "--jobs: 0 is not allowed; expected an integer >= 1" in capsys.readouterr().err


def big_lab(root, default_params, **settings):
    """params.yaml, a fake baseline and the study `big` of 10^6 combinations (`settings` added)."""
    (root / "params.yaml").write_text(yaml.safe_dump(default_params))
    (root / "studies.yaml").write_text(yaml.safe_dump({"big": MILLION | settings}, sort_keys=False))
    write_baseline(root)


def test_a_study_above_its_limit_is_refused_in_one_line_without_being_listed(
    tmp_path, monkeypatch, capsys, default_params
):
    big_lab(tmp_path, default_params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(estimate.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(spec, "expand", lambda *args: pytest.fail("a study that large must not be listed"))
    # every combination changes shared train settings at the baseline's epochs: each retrains every dataset
    each = estimate.DVC_S + 4 * estimate.STAGE_S + 86.0
    start = time.monotonic()
    assert main(["study", "plan", "big", "-j", "2"]) == 2
    assert time.monotonic() - start < 10
    study_s = estimate.QUEUE_S * 10**6 + 10**6 / 2 * each * estimate.SHARED + estimate.END_S
    assert capsys.readouterr().err == (
        "error: study big: 1,000,000 experiments, more than its limit of 1,000 (max_experiments in "
        f"studies.yaml); estimated {study_s / 60:,.0f} min with 2 workers; "
        "pass --allow-large to go ahead\n"
    )
    with pytest.raises(StudyError, match=r"^study big: 1,000,000 experiments, more than .* --allow-large"):
        estimate.check_size("big", default_params, 1, root=tmp_path)
    assert estimate.check_size("big", default_params, 1, allow_large=True, root=tmp_path) == 10**6


def test_a_large_study_allowed_is_planned_from_its_head_and_a_sample(
    tmp_path, monkeypatch, capsys, default_params
):
    big_lab(tmp_path, default_params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(estimate.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(spec, "expand", lambda *args: pytest.fail("a study that large must not be listed"))
    each = estimate.DVC_S + 4 * estimate.STAGE_S + 86.0
    assert main(["study", "plan", "big", "--allow-large"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == PLAN_HEAD + 2
    assert out[0].startswith("dvc exp run --queue -n big-lr-0.001-dropout-0.0-")
    assert out[-2] == f"... and up to {10**6 - PLAN_HEAD:,} more: 1,000,000 experiments in all"
    assert out[-1].startswith(
        f"estimated wall time: {(10**6 * (each + estimate.QUEUE_S) + estimate.END_S) / 60:,.1f} min for "
        "1,000,000 experiments with 1 worker "
        f"(the mean of a sample of {spec.SAMPLE}: "
    )


def test_a_study_may_raise_its_own_limit(tmp_path, monkeypatch, capsys, default_params):
    study = {"kind": "grid", "params": {"train.lr": [0.1, 0.2, 0.3], "train.seed": [1, 2, 3]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    (tmp_path / "studies.yaml").write_text(
        yaml.safe_dump({"nine": study | {"max_experiments": 8}, "ok": study | {"max_experiments": 9}})
    )
    monkeypatch.chdir(tmp_path)
    assert main(["study", "plan", "nine"]) == 2
    assert capsys.readouterr().err.startswith("error: study nine: 9 experiments, more than its limit of 8 ")
    assert main(["study", "plan", "ok"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 9 + 1  # every experiment, then the estimate


ETA_SECONDS = {"a": 100.0, "b": 100.0, "c": 100.0, "d": 100.0}
QUEUED = dict.fromkeys(ETA_SECONDS, "queued")


@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_the_time_left_before_anything_ended_is_the_plain_estimate(jobs):
    eta = estimate.Eta(ETA_SECONDS, jobs=jobs, cores=2)
    assert eta.update(QUEUED, now=0.0) == estimate.wall_seconds(list(ETA_SECONDS.values()), jobs, cores=2)


def test_the_time_left_scales_by_how_long_the_ended_experiments_took():
    eta = estimate.Eta(ETA_SECONDS, jobs=1, cores=2)
    assert eta.update(QUEUED | {"a": "running"}, now=0.0) == 400.0
    # a ended between the looks at 0 and 400 s: it took 200 s against 100 estimated, so b (running since
    # 200 s) is due now and c and d take 200 s each
    assert eta.update(QUEUED | {"a": "success", "b": "running"}, now=400.0) == pytest.approx(400.0)
    ended = {"a": "success", "b": "failed", "c": "success", "d": "success"}
    assert eta.update(ended, now=900.0) == 0.0


def test_a_running_experiment_leaves_its_worker_once_its_paced_estimate_is_spent(monkeypatch):
    monkeypatch.setattr(estimate, "SHARED", 1.0)  # workers side by side as fast as alone, for round numbers
    eta = estimate.Eta(ETA_SECONDS, jobs=2, cores=2)
    eta.update(QUEUED | {"a": "running", "b": "running"}, now=0.0)
    # after 30 s, a and b have 70 s left each; c and d follow on the two workers
    assert eta.update(QUEUED | {"a": "running", "b": "running"}, now=30.0) == pytest.approx(170.0)


def test_what_ended_before_the_first_look_is_neither_done_nor_left():
    eta = estimate.Eta(ETA_SECONDS, jobs=1, cores=2)
    assert eta.update(QUEUED | {"a": "success", "b": "running"}, now=0.0) == 300.0
