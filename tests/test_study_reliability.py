"""A study run on DVC's queue in a temporary repo: a dead worker, Ctrl-C, a workspace that is not HEAD."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import commit_all, make_lab_repo, sh
from tuninglab.lab import params
from tuninglab.studies import collect, spec

pytestmark = pytest.mark.slow

POLL = 2.0  # seconds between the runner's looks, instead of POLL_SECONDS
QUEUE_DIR = Path(".dvc/tmp/exps")  # DVC's queue: process records of workers and started experiments
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def study_run(name: str, jobs: int) -> list[str]:
    """`python -m tuninglab study run NAME -j JOBS`, looking every POLL seconds."""
    code = (
        "import sys; from tuninglab.studies import runner; from tuninglab.__main__ import main; "
        f"runner.POLL_SECONDS = {POLL}; sys.exit(main(['study', 'run', {name!r}, '-j', '{jobs}']))"
    )
    return [sys.executable, "-c", code]


def lab_processes(repo: Path) -> list[psutil.Process]:
    """Live processes working in `repo`: queue workers, experiment executors, stage commands."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        text = " ".join(process.info["cmdline"] or []) + " " + (process.info["cwd"] or "")
        if str(repo) in text and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def executors(repo: Path) -> dict[str, psutil.Process]:
    """Experiment name -> its live `dvc exp exec-run` process, from DVC's records under .dvc/tmp/exps/run/."""
    found = {}
    for info in (repo / QUEUE_DIR / "run").glob("*/*.run"):
        try:
            name = json.loads(info.read_text())["name"]
            process = psutil.Process(json.loads(info.with_suffix(".json").read_text())["pid"])
            if process.status() != psutil.STATUS_ZOMBIE:
                found[name] = process
        except (OSError, ValueError, KeyError, psutil.Error):
            continue
    return found


def until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Wait for `condition()` to be true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.5)
    return result


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab repo with its baseline run and committed; early stopping off so long runs stay long."""
    repo = make_lab_repo(tmp_path_factory.mktemp("baseline"))
    settings = yaml.safe_load((repo / "params.yaml").read_text())
    settings["train"]["patience"] = 0
    (repo / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    sh(repo, "dvc", "repro")
    commit_all(repo, "baseline")
    return repo


@pytest.fixture
def lab(baseline: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the baseline repo; whatever still works in it afterwards is killed."""
    repo = tmp_path / "lab"
    shutil.copytree(baseline, repo, symlinks=True)
    yield repo
    for process in lab_processes(repo):
        with suppress(psutil.Error):
            process.kill()


def with_study(repo: Path, study: dict) -> None:
    (repo / "studies.yaml").write_text(yaml.safe_dump({"slow": study}))
    commit_all(repo, "study")


def test_a_dead_worker_ends_its_experiment_as_failed_and_the_study_finishes(lab, tmp_path):
    with_study(lab, {"kind": "ofat", "params": {"train.epochs": [400, 3]}})
    out, err = (tmp_path / "out.txt").open("w+"), (tmp_path / "err.txt").open("w+")
    study = subprocess.Popen(study_run("slow", 2), cwd=lab, env=ENV, stdout=out, stderr=err)
    try:
        victim = until(lambda: executors(lab).get("slow-epochs-400"), 90, "slow-epochs-400 to start")
        worker = victim.parent()
        os.killpg(os.getpgid(worker.pid), signal.SIGKILL)  # the worker, its executor, the stage command
        assert study.wait(timeout=120) == 0
    finally:
        study.kill()
    out.seek(0), err.seek(0)
    printed = out.read()
    assert "experiment slow-epochs-400: its queue worker died; marked failed" in printed, err.read()[-2000:]
    assert "study slow: 1 succeeded, 1 failed" in printed
    until(lambda: not lab_processes(lab), 30, "the other worker to stop on the empty queue")


def test_ctrl_c_stops_the_workers_and_their_experiments_and_says_how_to_resume(lab, tmp_path):
    with_study(lab, {"kind": "ofat", "params": {"train.epochs": [400, 401]}})
    err = (tmp_path / "err.txt").open("w+")
    command = [sys.executable, "-m", "tuninglab", "study", "run", "slow", "-j", "1"]
    study = subprocess.Popen(
        command, cwd=lab, env=ENV, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
    )
    try:
        until(lambda: executors(lab), 90, "the first experiment to start")
        os.killpg(study.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert study.wait(timeout=60) == 130
    finally:
        study.kill()
    err.seek(0)
    said = err.read()
    assert "Traceback" not in said
    (line,) = [line for line in said.splitlines() if line.startswith("interrupted: ")]
    assert "stopped 1 queue worker(s); stopped and taken off the queue to run again: slow-epochs-400" in line
    assert line.endswith("resume with `python -m tuninglab study run slow`")
    time.sleep(3)
    assert not lab_processes(lab)
    # the worker may have taken slow-epochs-401 before it stopped: then it was stopped too
    queue = sh(lab, "dvc", "queue", "status").stdout
    assert "slow-epochs-400" not in queue and "Running" not in queue and "Failed" not in queue


def test_a_changed_workspace_param_never_reaches_a_queued_study_run(lab):
    with_study(lab, {"kind": "ofat", "params": {"train.epochs": [3]}})
    head = params.load(lab / "params.yaml")
    leftover = yaml.safe_load((lab / "params.yaml").read_text())  # as `dvc exp run -S train.lr=0.1` leaves it
    leftover["train"]["lr"] = 0.1
    (lab / "params.yaml").write_text(yaml.safe_dump(leftover, sort_keys=False))

    refused = sh(lab, *study_run("slow", 1), check=False)
    assert refused.returncode == 2
    assert f"params.yaml (train.lr: 0.1 (HEAD: {head['train']['lr']}))" in refused.stderr
    assert "No experiment tasks in the queue" in sh(lab, "dvc", "queue", "status").stdout

    sh(lab, "git", "checkout", "params.yaml")
    sh(lab, *study_run("slow", 1))
    _, ran = collect.read(lab)
    (experiment,) = spec.plan("slow", lab / "studies.yaml", head)
    assert [(r["name"], r["state"]) for r in ran] == [("slow-epochs-3", "success")]
    assert ran[0]["params"] == experiment.applied_to(head)  # HEAD's params and the study's change only
