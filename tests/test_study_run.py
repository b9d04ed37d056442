"""Studies end to end on DVC's queue in a temporary repo, and the results table from synthetic runs."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from tests.conftest import commit_all, make_lab_repo, sh
from tuninglab.__main__ import main
from tuninglab.lab.datasets import dataset_names
from tuninglab.report import owned
from tuninglab.studies import collect, runner, spec
from tuninglab.studies.spec import StudyError


def record(name, state="success", params=None, metrics=None, log=None):
    return {
        "name": name,
        "rev": f"{name}-rev",
        "state": state,
        "log": log,
        "params": params or {},
        "metrics": metrics or {},
    }


def committed_lab(repo, params, studies):
    """A git repo holding only params.yaml and studies.yaml, committed."""
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "studies.yaml").write_text(yaml.safe_dump(studies))
    sh(repo, "git", "init", "-q", "-b", "main")
    commit_all(repo, "lab")
    return repo


def no_dvc(*args, **kwargs):
    pytest.fail("dvc must not be called")


def dvc_reached(*args, **kwargs):
    raise RuntimeError("dvc reached")


def test_bad_study_is_refused_before_anything_is_queued(tmp_path, monkeypatch, default_params):
    repo = committed_lab(tmp_path, default_params, {"s": {"kind": "ofat", "params": {"train.lrr": [1]}}})
    monkeypatch.setattr(collect, "dvc", no_dvc)
    with pytest.raises(StudyError, match=r"train\.lrr: unknown parameter"):
        runner.run("s", jobs=2, cwd=repo)


def test_a_study_above_its_limit_is_refused_before_anything_is_queued(tmp_path, monkeypatch, default_params):
    study = {"kind": "grid", "max_experiments": 3, "params": {"train.lr": [0.1, 0.2], "train.seed": [1, 2]}}
    repo = committed_lab(tmp_path, default_params, {"s": study})
    monkeypatch.setattr(collect, "dvc", no_dvc)
    monkeypatch.setattr(spec, "expand", lambda *args: pytest.fail("a study that large must not be listed"))
    with pytest.raises(
        StudyError, match=r"^study s: 4 experiments, more than its limit of 3 .*--allow-large"
    ):
        runner.run("s", jobs=2, cwd=repo)


def test_a_workspace_that_differs_from_head_is_refused_in_one_line(
    tmp_path, monkeypatch, capsys, default_params
):
    repo = committed_lab(tmp_path, default_params, {"s": {"kind": "ofat", "params": {"train.epochs": [3]}}})
    (repo / "tuninglab").mkdir()
    (repo / "tuninglab" / "train.py").write_text("EPOCHS = 1\n")
    commit_all(repo, "code")
    leftover = copy.deepcopy(default_params)  # what `dvc exp run -S train.lr=0.1` leaves in params.yaml
    leftover["train"]["lr"] = 0.1
    (repo / "params.yaml").write_text(yaml.safe_dump(leftover, sort_keys=False))
    (repo / "tuninglab" / "train.py").write_text("EPOCHS = 2\n")
    (repo / "tuninglab" / "scratch.py").write_text("untracked\n")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(collect, "dvc", no_dvc)

    assert main(["study", "run", "s"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "differs from HEAD in params.yaml (train.lr: 0.1 (HEAD: 0.005)), tuninglab/train.py" in line
    assert "git commit -am" in line and "git checkout -- params.yaml tuninglab/train.py" in line
    assert "scratch.py" not in line  # untracked files are not part of a queued run

    sh(repo, "git", "checkout", "--", "params.yaml", "tuninglab/train.py")
    monkeypatch.setattr(collect, "dvc", dvc_reached)
    assert main(["study", "run", "s"]) == 2
    assert capsys.readouterr().err == "error: dvc reached\n"  # the clean workspace passed every check


@pytest.mark.parametrize(
    ("auto_at", "study", "words"),
    [
        ("train", {"train.epochs": [3]}, "HEAD:params.yaml: train.threads is auto; runs of a study must"),
        ("image", {"train.epochs": [3]}, "HEAD:params.yaml: image.train.threads is auto; runs of a study"),
        (None, {"train.threads": ["auto"]}, "experiment s-threads-auto sets train.threads to auto; runs of"),
    ],
)
def test_threads_auto_is_refused(tmp_path, monkeypatch, default_params, auto_at, study, words):
    if auto_at == "train":
        default_params["train"]["threads"] = "auto"
    elif auto_at:
        default_params[auto_at]["train"]["threads"] = "auto"
    repo = committed_lab(tmp_path, default_params, {"s": {"kind": "ofat", "params": study}})
    monkeypatch.setattr(collect, "dvc", no_dvc)
    with pytest.raises(StudyError) as err:
        runner.run("s", jobs=1, cwd=repo)
    assert words in str(err.value)


def test_a_study_may_vary_the_thread_count(tmp_path, monkeypatch, default_params):
    study = {"s": {"kind": "ofat", "params": {"train.threads": [2, 4]}}}
    repo = committed_lab(tmp_path, default_params, study)
    monkeypatch.setattr(collect, "dvc", dvc_reached)
    with pytest.raises(RuntimeError, match="dvc reached"):
        runner.run("s", jobs=1, cwd=repo)


@pytest.mark.slow
def test_study_runs_on_the_queue_collects_and_resumes(tmp_path):
    repo = make_lab_repo(tmp_path)
    (repo / "studies.yaml").write_text(
        yaml.safe_dump(
            {
                "tiny": {
                    "kind": "ofat",
                    "params": {"train.lr": [0.05], "text.data.source": ["data/local/text/missing.csv"]},
                }
            }
        )
    )
    sh(repo, "dvc", "repro")
    commit_all(repo, "baseline")
    sh(repo, "dvc", "exp", "run", "--queue", "-n", "by-hand", "-S", "train.lr=0.02")

    study = [sys.executable, "-m", "tuninglab", "study", "run", "tiny", "-j", "2"]
    first = sh(repo, *study)
    assert "2 experiments, 0 already on this commit, 2 queued" in first.stdout
    table = pd.read_csv(repo / "results" / "experiments.csv")
    assert sorted(table["experiment"].unique()) == [
        "baseline",
        "by-hand",
        "tiny-lr-0.05",
        "tiny-source-data_local_text_missing.csv",
    ]
    assert len(table) == 4 * len(dataset_names())
    by = table.set_index(["experiment", "dataset"])
    assert by.loc[("tiny-lr-0.05", "image"), "train.lr"] == 0.05
    assert by.loc[("tiny-lr-0.05", "image"), "status"] in {"ok", "diverged"}
    assert by.loc[("tiny-lr-0.05", "image"), "hyperparameter"] == "train.lr"
    assert by.loc[("by-hand", "tabular"), "study"] == "manual"  # queued by hand, run by the study's workers
    assert by.loc[("by-hand", "tabular"), "status"] == "ok"
    crashed = by.loc[("tiny-source-data_local_text_missing.csv", "text")]
    assert crashed["status"] == "failed" and "missing.csv does not exist" in crashed["error"]
    for column in [
        "baseline_commit",
        "train.epochs",
        "train.batch_size",
        "train.optimizer",
        "data.source",
        "test_accuracy",
        "macro_f1",
        "best_val_accuracy",
        "best_epoch",
        "epochs_run",
        "train_time_s",
        "diverged",
    ]:
        assert column in table.columns
    assert table["baseline_commit"].nunique() == 1
    curves = pd.read_csv(repo / "results" / "curves.csv")
    finished = table[table["status"].isin(["ok", "diverged"])]
    ran = set(curves[["experiment", "dataset"]].itertuples(index=False, name=None))
    assert ran <= set(finished[["experiment", "dataset"]].itertuples(index=False, name=None))
    by_hand = curves[(curves["experiment"] == "by-hand") & (curves["dataset"] == "tabular")]
    assert list(by_hand["epoch"]) == [1, 2] and set(by_hand["lr"]) == {0.02}  # read from that run's commit

    written = sh(repo, sys.executable, "-m", "tuninglab", "report")
    assert written.stdout.startswith("reports: summary.md, summary.html, explorer.html")
    summary = (repo / "reports" / "summary.md").read_text()
    assert (
        "### train.lr" in summary
        and "`tiny-lr-0.05` on tabular: with train.lr=0.05: test accuracy" in summary
    )
    assert "`tiny-source-data_local_text_missing.csv` failed" in summary

    again = sh(repo, *study)
    assert "2 experiments, 2 already on this commit, 0 queued" in again.stdout
    assert sh(repo, "dvc", "exp", "ls", "--name-only").stdout.split().count("tiny-lr-0.05") == 1


def test_workers_leave_the_thread_count_to_the_param(monkeypatch, tmp_path):
    calls = []
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(collect, "dvc", lambda *args, **kw: calls.append((args, kw.get("env"))))
    runner.start_workers(2, tmp_path)
    ((args, env),) = calls
    assert args == ("queue", "start", "-j", "2")
    assert "OMP_NUM_THREADS" not in (env or {})  # train.threads sets each run's thread count


def test_resume_refuses_an_experiment_whose_study_changed_since(monkeypatch, tmp_path, default_params):
    repo = committed_lab(
        tmp_path,
        default_params,
        {"r": {"kind": "random", "trials": 1, "seed": 0, "params": {"train.lr": {"choice": [0.5]}}}},
    )
    ran_before = record("r-1", params={**default_params, "train": {**default_params["train"], "lr": 0.2}})
    monkeypatch.setattr(collect, "read", lambda cwd: (record("main"), [ran_before]))
    monkeypatch.setattr(collect, "dvc", no_dvc)
    with pytest.raises(StudyError, match="experiment r-1 exists on this commit with other settings"):
        runner.run("r", jobs=1, cwd=repo)


def test_wait_survives_a_hung_or_failing_exp_show_and_follows_until_done(monkeypatch, tmp_path):
    answers = iter(
        [
            subprocess.TimeoutExpired("dvc exp show", 60),
            [record("s-1", state="running"), record("s-2", state="queued")],
            RuntimeError("dvc exp show --json failed: ERROR: directory '.dvc/tmp/exps/t/.dvc' is gone"),
            [record("s-1", state="success"), record("s-2", state="failed")],
        ]
    )

    def read(cwd, timeout):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return record("main"), answer

    monkeypatch.setattr(collect, "read", read)
    monkeypatch.setattr(collect, "dvc", no_dvc)
    counts = runner.wait({"s-1", "s-2"}, jobs=1, cwd=tmp_path, poll=0)
    assert counts["success"] == 1 and counts["failed"] == 1
    assert next(answers, None) is None


def test_wait_goes_on_when_a_look_misses_queued_experiments(monkeypatch, tmp_path, capsys):
    """`dvc exp show` can list none of the queued experiments while a worker takes one."""
    answers = iter(
        [
            [record("s-1", state="queued"), record("s-2", state="queued")],
            [],
            [record("s-1", state="running"), record("s-2", state="queued")],
            [record("s-1", state="success"), record("s-2", state="success")],
        ]
    )
    monkeypatch.setattr(collect, "read", lambda cwd, timeout: (record("main"), next(answers)))
    monkeypatch.setattr(collect, "dvc", no_dvc)
    monkeypatch.setattr(runner, "orphans", lambda records, cwd: set())
    monkeypatch.setattr(runner, "workers", lambda cwd: ["a live worker"])
    counts = runner.wait({"s-1", "s-2"}, jobs=1, cwd=tmp_path, poll=0)
    assert counts["success"] == 2 and next(answers, None) is None


def test_wait_ends_when_an_experiment_stays_gone(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(
        collect, "read", lambda cwd, timeout: (record("main"), [record("s-1", state="success")])
    )
    counts = runner.wait({"s-1", "s-2"}, jobs=1, cwd=tmp_path, poll=0)
    assert counts["success"] == 1
    assert "not in DVC's experiments any more: s-2" in capsys.readouterr().out


def test_wait_gives_up_when_exp_show_keeps_failing(monkeypatch, tmp_path):
    looks = []

    def read(cwd, timeout):
        looks.append(timeout)
        raise RuntimeError("dvc exp show --json failed: ERROR: not a git repository")

    monkeypatch.setattr(collect, "read", read)
    with pytest.raises(RuntimeError, match=r"failed 5 times in a row; last: .*not a git repository"):
        runner.wait({"s-1"}, jobs=1, cwd=tmp_path, poll=0)
    assert len(looks) == runner.SHOW_TRIES


QUEUE_DIR = Path(".dvc/tmp/exps")  # DVC's queue: process records of workers and started experiments


def process_record(path, pid):
    """A DVC process record, as DVC writes one for each queue worker and each started experiment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "stdout": None, "returncode": None}))


SLEEP = "import time; time.sleep(60)"
FAKE_WORKER = (  # reads an infofile path a line and starts a fake `dvc exp exec-run` for it; prints its PID
    "import subprocess, sys, psutil\n"
    "for line in sys.stdin:\n"
    f"    command = [sys.executable, '-c', {SLEEP!r}, 'exp', 'exec-run', '--infofile', line.strip()]\n"
    "    child = subprocess.Popen(command)\n"
    "    while not psutil.Process(child.pid).cmdline():  # the kernel shows it a moment after exec\n"
    "        pass\n"
    "    print(child.pid, flush=True)\n"
)


def worker_node(repo, number):
    """The node name DVC gives queue worker `number` of `repo` (from its celery/ folder's path)."""
    folder = str((repo / QUEUE_DIR / "celery").resolve())
    return f"dvc-exp-{hashlib.sha256(folder.encode()).hexdigest()[:6]}-{number}@localhost"


def fake_worker(repo, number, env=None, session=False):
    """A process whose command line is DVC's queue worker `number` of `repo`, recorded as DVC records it;
    with `session`, in its own session and process group, as DVC starts its workers."""
    worker = subprocess.Popen(
        [sys.executable, "-c", FAKE_WORKER, "exp", "queue-worker", worker_node(repo, number)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=session,
    )
    process_record(repo / QUEUE_DIR / "celery" / f"dvc-exp-worker-{number}.json", worker.pid)
    return worker


@pytest.fixture
def queue_processes(tmp_path):
    """Process records under tmp_path: worker 1 (a fake worker) runs s-a's executor, worker 2 is dead.

    Yields the pid of a process that has ended, and a started function: `started(rev)` records a live
    executor of worker 1 for the queue task `rev`.
    """
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    worker = fake_worker(tmp_path, 1)
    children = []

    def started(rev, name=None):
        info = tmp_path / QUEUE_DIR / "run" / rev / f"{rev}.run"
        info.parent.mkdir(parents=True, exist_ok=True)
        if rev == "workspace":  # `dvc exp run` in the workspace: the executor is that process itself
            child = subprocess.Popen([sys.executable, "-c", SLEEP, "exp", "run"])
            children.append(child)
            pid = child.pid
            while not psutil.Process(pid).cmdline():  # the kernel shows it a moment after exec
                pass
        else:
            worker.stdin.write(f"{info}\n")
            worker.stdin.flush()
            pid = int(worker.stdout.readline())
        process_record(info.with_suffix(".json"), pid)
        if name:
            info.write_text(json.dumps({"name": name}))

    process_record(tmp_path / QUEUE_DIR / "celery" / "dvc-exp-worker-2.json", ended.pid)
    yield ended.pid, started
    for child in [*psutil.Process(worker.pid).children(), *children]:
        child.kill()
    worker.kill()
    worker.wait()


def test_wait_marks_failed_an_experiment_whose_worker_died(monkeypatch, tmp_path, capsys, queue_processes):
    ended, started = queue_processes
    started("s-a-rev")
    process_record(tmp_path / QUEUE_DIR / "run" / "s-b-rev" / "s-b-rev.json", ended)
    running = [record("s-a", state="running"), record("s-b", state="running")]
    looks = [
        running,
        running,
        [running[0], record("s-b", state="failed")],
        [record("s-a"), record("s-b", state="failed")],
    ]
    answers = (copy.deepcopy(look) for look in looks)
    monkeypatch.setattr(collect, "read", lambda cwd, timeout: (record("main"), next(answers)))
    calls = []
    monkeypatch.setattr(collect, "dvc", lambda *args, **kw: calls.append(args))

    counts = runner.wait({"s-a", "s-b"}, jobs=2, cwd=tmp_path, poll=0)
    assert calls == [("queue", "kill", "s-b")]  # on the second look in a row that found it orphaned
    assert counts["success"] == 1 and counts["failed"] == 1
    assert "experiment s-b: its queue worker died; marked failed" in capsys.readouterr().out


def test_orphans_are_only_the_surplus_of_running_experiments_over_live_workers(tmp_path, queue_processes):
    ended, started = queue_processes
    a, b = record("s-a", state="running"), record("s-b", state="running")
    process_record(tmp_path / QUEUE_DIR / "run" / "s-b-rev" / "s-b-rev.json", ended)
    # worker 1 lives but has no executor yet (setting s-a up): s-a or s-b could be its experiment
    assert runner.orphans([a, b], tmp_path) == set()
    started("s-a-rev")
    assert runner.orphans([a, b], tmp_path) == {"s-b"}
    started("workspace", name="by-hand")  # `dvc exp run` in the workspace needs no queue worker
    assert runner.orphans([a, b, record("by-hand", state="running")], tmp_path) == {"s-b"}
    (tmp_path / QUEUE_DIR / "celery" / "dvc-exp-worker-1.json").unlink()
    assert runner.orphans([a, b], tmp_path) == {"s-a", "s-b"}


def test_wait_shows_the_time_left_and_does_not_count_what_ended_before(monkeypatch, tmp_path, capsys):
    """A resumed study: s-1 had ended before the wait, so it is neither done nor left."""
    looks = iter(
        [
            [record("s-1"), record("s-2", state="running"), record("s-3", state="queued")],
            [record("s-1"), record("s-2"), record("s-3", state="queued")],
            [record("s-1"), record("s-2"), record("s-3")],
        ]
    )
    monkeypatch.setattr(collect, "read", lambda cwd, timeout: (record("main"), next(looks)))
    monkeypatch.setattr(collect, "dvc", lambda *args, **kwargs: None)  # starts workers for s-3
    clock = [0.0, 3600.0, 7200.0]  # each look's time
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock.pop(0) if len(clock) > 1 else clock[0])
    eta = runner.estimate.Eta({"s-1": 60.0, "s-2": 60.0, "s-3": 60.0}, jobs=1, cores=1)
    runner.wait({"s-1", "s-2", "s-3"}, jobs=1, cwd=tmp_path, poll=0, eta=eta)
    shown = capsys.readouterr().err
    assert "eta=02:00" in shown  # the estimate: s-2 and s-3, a minute each
    # s-2 took half an hour (it ended between the looks) against 60 s estimated: s-3 will take as long
    assert "eta=30:00" in shown


def test_study_run_force_replaces_results_of_another_baseline(monkeypatch, tmp_path, capsys):
    """After a new baseline commit, `study run --force` collects over the old results instead of refusing."""
    monkeypatch.chdir(tmp_path)
    study = {"s": {"kind": "ofat", "params": {"train.lr": [0.1]}}}
    (tmp_path / "studies.yaml").write_text(yaml.safe_dump(study))
    monkeypatch.setattr(runner, "run", lambda name, jobs, **options: runner.Counter(success=1))
    forced = []
    frame = pd.DataFrame({"experiment": ["s-lr-0.1"], "study": ["s"]})
    monkeypatch.setattr(
        collect, "collect", lambda strategies, force, rev: forced.append(force) or (frame, "")
    )
    assert main(["study", "run", "s", "--force"]) == 0
    assert main(["study", "run", "s"]) == 0
    assert forced == [True, False]


@pytest.fixture
def stranger():
    """A `sleep` in its own session, not started by the lab: a reused PID in a stale DVC record."""
    sleep = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield sleep
    sleep.kill()
    sleep.wait()


def test_a_stale_worker_record_is_neither_waited_for_nor_signalled(monkeypatch, tmp_path, stranger):
    """A killed worker's record keeps returncode null; its PID now belongs to someone else's process."""
    record_path = tmp_path / QUEUE_DIR / "celery" / "dvc-exp-worker-7.json"
    process_record(record_path, stranger.pid)
    record_path.with_suffix(".out").write_text("the worker's log\n")
    record_path.with_suffix(".pid").write_text(str(stranger.pid))
    looks = iter([[record("s-1", state="queued")], [record("s-1")]])
    monkeypatch.setattr(collect, "read", lambda cwd, timeout: (record("main"), next(looks)))
    calls = []
    monkeypatch.setattr(collect, "dvc", lambda *args, **kw: calls.append(args))
    assert runner.workers(tmp_path) == []
    runner.wait({"s-1"}, jobs=1, cwd=tmp_path, poll=0)
    assert calls == [("queue", "start", "-j", "1")]  # the stale record did not count as a live worker
    assert runner._stop_workers(tmp_path) == 0
    assert stranger.poll() is None  # never signalled
    assert runner.clean_worker_records(tmp_path) == ["dvc-exp-worker-7"]
    assert not record_path.exists() and not record_path.with_suffix(".pid").exists()
    assert record_path.with_suffix(".out").read_text() == "the worker's log\n"  # the log stays


def test_only_workers_a_study_run_started_are_stopped(tmp_path):
    by_hand = fake_worker(tmp_path, 1, env={k: v for k, v in os.environ.items() if k != runner.STARTED_BY})
    by_lab = fake_worker(tmp_path, 2, env={**os.environ, runner.STARTED_BY: "s:1"}, session=True)
    try:
        assert {p.pid for p in runner.workers(tmp_path)} == {by_hand.pid, by_lab.pid}
        assert runner._stop_workers(tmp_path) == 1
        assert by_lab.wait(timeout=10) is not None
        assert by_hand.poll() is None
        assert runner.clean_worker_records(tmp_path) == ["dvc-exp-worker-2"]  # its record: proven dead
    finally:
        by_hand.kill()
        by_hand.wait()


def test_a_record_written_before_its_process_started_is_not_its_process(tmp_path):
    """A PID reused by a process that started after the record was written (a dead worker's record)."""
    record_path = tmp_path / QUEUE_DIR / "celery" / "dvc-exp-worker-1.json"
    worker = fake_worker(tmp_path, 1)
    try:
        assert runner.workers(tmp_path)
        old = psutil.Process(worker.pid).create_time() - runner.CLOCK_SLACK - 5
        os.utime(record_path, (old, old))
        assert runner.workers(tmp_path) == []
    finally:
        worker.kill()
        worker.wait()


def test_a_second_study_run_in_the_same_repo_is_refused_in_one_line(tmp_path, monkeypatch, default_params):
    repo = committed_lab(tmp_path, default_params, {"s": {"kind": "ofat", "params": {"train.epochs": [3]}}})
    monkeypatch.setattr(collect, "dvc", no_dvc)
    monkeypatch.setattr(collect, "read", no_dvc)
    with runner.study_lock("other", repo), pytest.raises(StudyError) as refused:
        runner.run("s", jobs=1, cwd=repo)
    assert str(refused.value).startswith(
        f"study other (PID {os.getpid()}) is already running in this repository"
    )
    monkeypatch.setattr(collect, "read", dvc_reached)
    with pytest.raises(RuntimeError, match="dvc reached"):  # released: the next study run goes on
        runner.run("s", jobs=1, cwd=repo)


def test_study_run_refuses_before_queuing_when_it_would_drop_collected_results(
    tmp_path, monkeypatch, default_params
):
    repo = committed_lab(tmp_path, default_params, {"s": {"kind": "ofat", "params": {"train.epochs": [3]}}})
    (repo / "results").mkdir()
    old = pd.DataFrame({"experiment": ["baseline", "s-epochs-3"], "baseline_commit": ["0ldc0mmit"] * 2})
    old.to_csv(repo / "results" / "experiments.csv", index=False)
    monkeypatch.setattr(collect, "read", lambda cwd, **kw: (record("main") | {"rev": "n3wc0mmit"}, []))
    queued = []
    monkeypatch.setattr(runner, "_queue", lambda experiments, cwd: queued.append(experiments))
    monkeypatch.setattr(runner, "wait", lambda *args, **kw: runner.Counter())
    with pytest.raises(owned.OverwriteError, match=r"of commit 0ldc0mm.*pass --force"):
        runner.run("s", jobs=1, cwd=repo)
    assert queued == []
    runner.run("s", jobs=1, cwd=repo, force=True)
    assert [e.name for e in queued[0]] == ["s-epochs-3"]


def test_the_bar_counts_each_ended_experiment_once(monkeypatch, tmp_path, capsys):
    """An experiment DVC lists twice (failed, then queued again) is not ended while one entry is queued."""
    looks = iter(
        [
            [record("s-1", state="failed"), record("s-1", state="queued"), record("s-2", state="failed")],
            [record("s-1", state="failed"), record("s-1"), record("s-2", state="failed")],
        ]
    )
    monkeypatch.setattr(collect, "read", lambda cwd, timeout: (record("main"), next(looks)))
    monkeypatch.setattr(runner, "orphans", lambda records, cwd: set())
    monkeypatch.setattr(runner, "workers", lambda cwd: ["a live worker"])
    counts = runner.wait({"s-1", "s-2"}, jobs=1, cwd=tmp_path, poll=0)
    assert counts == {"success": 1, "failed": 1}
    shown = capsys.readouterr().err
    assert "1/2 [00:00, done=0, failed=1, running=0, remaining=1]" in shown
    assert "2/2 [00:00, done=1, failed=1, running=0, remaining=0]" in shown


FAKE_STUDY_RUN = """
import json, subprocess, sys, time
from tuninglab.__main__ import main
from tuninglab.studies import collect, runner

runner.POLL_SECONDS = 0.2
queued = [{"name": "s-epochs-3", "rev": "r", "state": "queued", "log": None, "params": {}, "metrics": {}}]
looks = iter([[]])  # nothing on the commit before queuing; queued after
collect.read = lambda cwd=None, timeout=None: ({"rev": "c0mmit", "name": "main"}, next(looks, queued))
collect.dvc = lambda *args, **kwargs: ""
runner._queue = lambda experiments, cwd: None

def start_workers(jobs, cwd, study):  # a fake worker with the lab's mark, in its own session as DVC's
    env = {**__import__("os").environ, runner.STARTED_BY: study}
    code = "import time; print('started', flush=True); time.sleep(60)"
    node = sys.argv[1]
    worker = subprocess.Popen([sys.executable, "-c", code, "exp", "queue-worker", node], env=env,
                              start_new_session=True, stdout=sys.stdout)
    path = cwd / runner.QUEUE_DIR / "celery" / "dvc-exp-worker-1.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": worker.pid, "returncode": None}))

runner.start_workers = start_workers
sys.exit(main(["study", "run", "s"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_sighup_and_sigterm_stop_a_study_run_as_ctrl_c_does(tmp_path, default_params, sig):
    repo = committed_lab(tmp_path, default_params, {"s": {"kind": "ofat", "params": {"train.epochs": [3]}}})
    out, err = (tmp_path / "out.txt").open("w+"), (tmp_path / "err.txt").open("w+")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    study = subprocess.Popen(
        [sys.executable, "-c", FAKE_STUDY_RUN, worker_node(repo, 1)],
        cwd=repo,
        env=env,
        stdout=out,
        stderr=err,
    )
    try:
        deadline = time.monotonic() + 30
        while "started" not in (tmp_path / "out.txt").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        (worker,) = runner.workers(repo)
        study.send_signal(sig)
        assert study.wait(timeout=30) == 128 + sig
    finally:
        study.kill()
    err.seek(0)
    said = err.read()
    assert "Traceback" not in said
    (line,) = [line for line in said.splitlines() if line.startswith("interrupted: ")]
    assert line.startswith(
        "interrupted: stopped 1 queue worker(s); 1 experiment(s) of the study still queued"
    )
    with contextlib.suppress(psutil.NoSuchProcess):
        assert worker.status() == psutil.STATUS_ZOMBIE  # ended: its parent, the study run, is gone
    assert not (repo / QUEUE_DIR / "celery" / "dvc-exp-worker-1.json").exists()  # its record: cleaned
