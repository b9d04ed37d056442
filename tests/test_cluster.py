"""Studies on a Ray cluster: bad input, the preconditions, the trials' pieces, and one study end to end.

Most tests need no Ray, or run the stand-in trials of tests/cluster_fakes.py
on the module's one local Ray instance (two CPUs, started in this process):
what they test is the driver's handling of a lost worker and of Ctrl-C, not
training. The one end-to-end test runs a two-experiment study (one succeeds,
one crashes) through the Ray backend on a temporary lab repository trimmed to
its text data, with a bare git repository as its git remote and a folder as
its DVC remote.
"""

from __future__ import annotations

import _thread
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest
import ray
import yaml
from dvc.repo import Repo
from optuna.trial import TrialState

from tests import cluster_fakes
from tests.conftest import commit_all, make_lab_repo, sh
from tuninglab.__main__ import main
from tuninglab.schema import FAILED, RESULT_METRICS, SUCCESS
from tuninglab.studies import cluster, collect, runner, search, spec
from tuninglab.studies.spec import Experiment, StudyError

VENV_BIN = str(Path(sys.executable).parent)
CRASHING_SOURCE = "data/local/text/missing.csv"  # passes the param rules; the text download stage fails
CRASHED = f"pair-source-{CRASHING_SOURCE.replace('/', '_')}"
STUDIES = {
    "pair": {"kind": "ofat", "params": {"train.seed": [1], "text.data.source": [CRASHING_SOURCE]}},
    "stop": {"kind": "ofat", "params": {"train.seed": [5, 6]}},
}
PIPELINE = {
    "stages": {
        "make": {"cmd": "echo made > made.txt", "outs": ["made.txt"]},
        "use": {"cmd": "cat made.txt > used.txt", "deps": ["made.txt"], "outs": ["used.txt"]},
    }
}


@pytest.fixture
def venv_path(monkeypatch):
    """This environment's `dvc` and `python` first on PATH, as `make` has them."""
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")


def small_lab(repo: Path, default_params: dict, pipeline: bool = True) -> Path:
    """A committed repository with the project's params and the studies above; a DVC one with `pipeline`.

    The pipeline has two stages, the second reading the first's output, and is reproduced.
    """
    repo.mkdir()
    (repo / "params.yaml").write_text(yaml.safe_dump(default_params, sort_keys=False))
    (repo / "studies.yaml").write_text(yaml.safe_dump(STUDIES))
    sh(repo, "git", "init", "-q", "-b", "main")
    if pipeline:
        (repo / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE))
        sh(repo, "dvc", "init", "-q")
        sh(repo, "dvc", "repro", "-q")
    commit_all(repo, "baseline")
    return repo


def refused(capsys, repo: Path, monkeypatch) -> list[str]:
    """The error lines of `study run stop --backend ray` in `repo`, which must start nothing."""
    monkeypatch.chdir(repo)
    assert main(["study", "run", "stop", "--backend", "ray"]) == 2
    return capsys.readouterr().err.splitlines()


def test_each_missing_precondition_is_one_line_naming_its_fix(
    tmp_path, monkeypatch, capsys, default_params, venv_path
):
    repo = small_lab(tmp_path / "lab", default_params)
    monkeypatch.setattr(cluster.ray, "init", lambda **kw: pytest.fail("Ray must not be started"))

    assert refused(capsys, repo, monkeypatch) == [
        "error: no git remote for the cluster to clone the baseline from: "
        "git remote add origin <url>, then git push -u origin HEAD",
        "error: no default DVC remote for the baseline's outputs and the experiments': "
        "dvc remote add -d <name> <url> (S3, GCS, SSH or a shared folder), then dvc push",
    ]

    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", "remote.git")
    sh(repo, "git", "remote", "add", "origin", str(tmp_path / "remote.git"))
    (tmp_path / "storage").mkdir()
    sh(repo, "dvc", "remote", "add", "-d", "--local", "storage", str(tmp_path / "storage"))
    head = sh(repo, "git", "rev-parse", "--short", "HEAD").stdout.strip()
    assert refused(capsys, repo, monkeypatch) == [
        f"error: the baseline commit {head} is not on git remote origin: git push origin HEAD",
        "error: 1 output(s) of the baseline are not on DVC remote storage (made.txt): dvc push",
    ]

    sh(repo, "git", "push", "-q", "origin", "main")
    shutil.move(repo / ".dvc" / "cache", tmp_path / "cache")
    assert refused(capsys, repo, monkeypatch) == [
        "error: 1 output(s) of the baseline are neither in the cache nor on DVC remote storage "
        "(made.txt): dvc repro, then dvc push",
    ]

    shutil.move(tmp_path / "cache", repo / ".dvc" / "cache")
    sh(repo, "dvc", "push", "-q")
    with (repo / "dvc.lock").open("a") as lock:
        lock.write("# edited\n")
    assert refused(capsys, repo, monkeypatch) == [
        "error: dvc.lock differs from HEAD, and the cluster runs from HEAD's: "
        "git commit dvc.lock -m '<message>', then git push",
    ]

    sh(repo, "git", "checkout", "--", "dvc.lock")
    assert cluster.remotes(repo) == cluster.Remotes(
        "origin", str(tmp_path / "remote.git"), "storage", str(tmp_path / "storage")
    )


def test_the_study_is_checked_as_by_the_local_runner_before_the_remotes(
    tmp_path, monkeypatch, capsys, default_params, venv_path
):
    repo = small_lab(tmp_path / "lab", default_params, pipeline=False)
    edited = default_params | {"train": default_params["train"] | {"lr": 0.1}}
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    monkeypatch.setattr(cluster, "remotes", lambda cwd: pytest.fail("the remotes must not be checked"))
    (line,) = refused(capsys, repo, monkeypatch)
    assert line.startswith("error: the workspace differs from HEAD in params.yaml (train.lr: 0.1")


def test_a_study_above_its_limit_is_refused_before_the_remotes(
    tmp_path, monkeypatch, capsys, default_params, venv_path
):
    repo = small_lab(tmp_path / "lab", default_params, pipeline=False)
    monkeypatch.setattr(spec, "MAX_EXPERIMENTS", 1)
    monkeypatch.setattr(cluster, "remotes", lambda cwd: pytest.fail("the remotes must not be checked"))
    (line,) = refused(capsys, repo, monkeypatch)
    assert line.startswith("error: study stop: 2 experiments, more than its limit of 1 (max_experiments")


def test_an_experiment_on_the_remote_with_other_settings_is_refused(tmp_path, default_params, venv_path):
    repo = small_lab(tmp_path / "lab", default_params, pipeline=False)
    remote = str(tmp_path / "remote.git")
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", remote)
    sh(repo, "git", "remote", "add", "origin", remote)
    baseline = sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    for name, seed in (("stop-seed-5", 9), ("stop-seed-6", 6)):  # stop-seed-5 ran before the study changed
        ran = default_params | {"train": default_params["train"] | {"seed": seed}}
        (repo / "params.yaml").write_text(yaml.safe_dump(ran, sort_keys=False))
        commit_all(repo, name)
        sh(repo, "git", "push", "-q", "origin", f"HEAD:refs/exps/{baseline[:2]}/{baseline[2:]}/{name}")
        sh(repo, "git", "reset", "-q", "--hard", baseline)

    found = cluster.on_remote(remote, baseline, repo)
    assert sorted(found) == ["stop-seed-5", "stop-seed-6"]
    planned = [Experiment("stop-seed-5", {"train.seed": 5}), Experiment("stop-seed-6", {"train.seed": 6})]
    cluster.check_settings(planned[1:], found, baseline, "origin", repo)
    with pytest.raises(StudyError) as err:
        cluster.check_settings(planned, found, baseline, "origin", repo)
    assert str(err.value) == (
        "experiment stop-seed-5 is on git remote origin with other settings; "
        "remove it (dvc exp remove -g origin stop-seed-5) or rename the study"
    )


def test_training_inputs_are_the_stages_other_stages_read(tmp_path, monkeypatch):
    repo = tmp_path / "lab"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE))
    Repo.init(str(repo), no_scm=True).close()
    monkeypatch.chdir(tmp_path)
    assert cluster.training_inputs(repo) == ["make"]  # named as in the clone, whatever the working directory


def test_trial_commands_get_the_threads_of_their_param_and_only_their_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray sets for a task of one CPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # what Ray sets for a task given GPU 1, and only then
    log = tmp_path / "env.log"
    shown = ["sh", "-c", "echo ${OMP_NUM_THREADS:-unset} ${CUDA_VISIBLE_DEVICES:-none}; command -v dvc"]
    assert cluster._command(shown, tmp_path, log, cluster.environment(["1"])) == 0
    assert log.read_text().splitlines() == ["unset 1", f"{VENV_BIN}/dvc"]
    assert cluster._command(shown, tmp_path, log, cluster.environment([])) == 0
    assert log.read_text().splitlines()[0] == "unset none"


def test_cuda_needs_gpus_per_trial(default_params):
    cuda = default_params | {"train": default_params["train"] | {"device": "cuda"}}
    with pytest.raises(StudyError, match=r"HEAD:params.yaml trains tabular on cuda, .* --gpus-per-trial 1"):
        cluster.check_devices(cuda, [], gpus=0)
    cluster.check_devices(cuda, [], gpus=0.5)
    on_image = Experiment("s-device-cuda", {"image.train.device": "cuda"})
    with pytest.raises(StudyError, match=r"^experiment s-device-cuda trains image on cuda"):
        cluster.check_devices(default_params, [on_image], gpus=0)


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt here, as in a terminal.

    A shell that starts pytest as a background job (`cmd &` in a script, as CI runners may) leaves
    SIGINT ignored, and `_thread.interrupt_main` then does nothing.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupted_trial_command_is_killed_with_all_it_started(tmp_path, ctrl_c):
    """Ray cancels a running task by raising KeyboardInterrupt in it; the run's process group goes with it."""
    log = tmp_path / "run.log"
    threading.Timer(1.0, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        cluster._command(["sh", "-c", "sleep 60 & echo $!; sleep 60"], tmp_path, log, dict(os.environ))
    assert gone(int(log.read_text().split()[0]))


def gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether the process `pid` ends (or is a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while cluster._running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not cluster._running(pid)


def test_sweep_removes_what_dead_workers_left_and_kills_what_runs_there(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left, ours = tmp_path / f"{dead.pid}-abc", tmp_path / f"{os.getpid()}-def"
    (left / "repo").mkdir(parents=True)
    ours.mkdir()
    orphan = subprocess.Popen(["sleep", "60"], cwd=left / "repo")
    try:
        assert cluster.sweep(tmp_path) == [left]
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert not left.exists() and ours.exists()
    finally:
        orphan.kill()


# --- bad input: one line naming the option, its value and what is allowed, before anything is checked ----


@pytest.mark.parametrize(
    "option, value, allowed",
    [
        ("--cpus-per-trial", "0", "> 0"),
        ("--cpus-per-trial", "1.5", "> 0"),
        ("--cpus-per-trial", "nan", "> 0"),
        ("--gpus-per-trial", "-1", ">= 0"),
        ("--gpus-per-trial", "2.5", ">= 0"),
    ],
)
def test_trial_resources_ray_cannot_reserve_are_refused_first(monkeypatch, capsys, option, value, allowed):
    monkeypatch.setattr(runner, "check_workspace", lambda cwd: pytest.fail("nothing may be checked"))
    assert main(["study", "run", "stop", "--backend", "ray", option, value]) == 2
    assert capsys.readouterr().err == (
        f"error: {option}: {float(value):g} is not allowed; expected a number {allowed}, "
        "either a share below 1 (such as 0.5) or a whole number\n"
    )


def test_shares_and_whole_numbers_of_cpus_and_gpus_are_allowed():
    for cpus, gpus in ((0.5, 0.0), (1.0, 0.25), (4.0, 2.0)):
        cluster.check_trial_resources(cpus, gpus)


def test_ray_options_are_refused_on_the_local_backend(monkeypatch, capsys):
    monkeypatch.setattr(runner, "run", lambda *args: pytest.fail("nothing may run"))
    assert main(["study", "run", "stop", "--address", "auto", "--gpus-per-trial", "1"]) == 2
    assert capsys.readouterr().err == (
        "error: --address, --gpus-per-trial: only for --backend ray, not local\n"
    )
    assert main(["study", "run", "stop", "--backend", "ray", "-j", "0"]) == 2
    assert capsys.readouterr().err == "error: --jobs: 0 is not allowed; expected an integer >= 1\n"


def test_collect_remote_must_be_a_git_remote_and_pulls_the_baselines_experiments(
    tmp_path, monkeypatch, capsys
):
    sh(tmp_path, "git", "init", "-q", "-b", "main")
    monkeypatch.chdir(tmp_path)
    assert main(["study", "collect", "--remote", "origin"]) == 2
    assert capsys.readouterr().err == (
        "error: --remote: 'origin' is not a git remote of this repository; "
        "expected one of: none (git remote add origin <url>)\n"
    )
    sh(tmp_path, "git", "remote", "add", "upstream", "../elsewhere.git")
    with pytest.raises(StudyError, match=r"^--remote: 'origin' is not .*; expected one of: upstream$"):
        cluster.pull_experiments("origin", cwd=tmp_path)
    calls = []
    monkeypatch.setattr(collect, "dvc", lambda *args, cwd: calls.append((args, cwd)))
    cluster.pull_experiments("upstream", "abc123", cwd=tmp_path)
    assert calls == [(("exp", "pull", "--no-cache", "--rev", "abc123", "upstream"), tmp_path)]


def test_a_trial_no_node_can_hold_is_refused(monkeypatch):
    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0}},
        {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 16.0, "GPU": 4.0}},
    ]
    monkeypatch.setattr(cluster.ray, "nodes", lambda: nodes)
    cluster._check_resources(8, 0)
    cluster._check_resources(2, 1)
    with pytest.raises(StudyError) as err:
        cluster._check_resources(2, 2)
    assert str(err.value) == (
        "no node of the Ray cluster has 2 CPU(s) and 2 GPU(s) for a trial (the largest has 4 and 1); "
        "lower --cpus-per-trial / --gpus-per-trial or add a node (ray start --address=...)"
    )


# --- Ray started and stopped by the driver --------------------------------------------------------------


class FakeRay:
    """What `connected` calls of Ray, recorded; `init` raises `refusal` when one is given."""

    def __init__(self, initialized: bool, refusal: Exception | None = None) -> None:
        self.initialized, self.refusal, self.calls = initialized, refusal, []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, address: str | None) -> None:
        self.calls.append(("init", address))
        if self.refusal:
            raise self.refusal

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))


@pytest.mark.parametrize("ending", [None, KeyboardInterrupt, ray.exceptions.RaySystemError])
def test_ray_started_for_a_study_is_shut_down_however_it_ends(monkeypatch, ending):
    fake = FakeRay(initialized=False)
    for name in ("is_initialized", "init", "shutdown"):
        monkeypatch.setattr(cluster.ray, name, getattr(fake, name))
    with pytest.raises(ending or ZeroDivisionError), cluster.connected("auto"):
        assert fake.calls == [("init", "auto")]
        raise (ending("lost") if ending else ZeroDivisionError)
    assert fake.calls == [("init", "auto"), ("shutdown",)]


def test_ray_the_process_was_connected_to_is_left_running(monkeypatch):
    fake = FakeRay(initialized=True)
    for name in ("is_initialized", "init", "shutdown"):
        monkeypatch.setattr(cluster.ray, name, getattr(fake, name))
    with cluster.connected("auto"):
        pass
    assert fake.calls == []


def test_no_cluster_at_the_address_is_one_error_line(monkeypatch):
    fake = FakeRay(initialized=False, refusal=ConnectionError("Could not find any running Ray instance."))
    for name in ("is_initialized", "init", "shutdown"):
        monkeypatch.setattr(cluster.ray, name, getattr(fake, name))
    with pytest.raises(RuntimeError) as err, cluster.connected("auto"):
        pytest.fail("the block must not run")
    assert str(err.value) == (
        "--address: no Ray cluster at auto (Could not find any running Ray instance.); expected auto, "
        "HOST:PORT of a running head node (`ray start --head`), or local for a new instance on this machine"
    )
    assert fake.calls == [("init", "auto")]


class SilentRay(FakeRay):
    """A Ray whose `init` of an existing cluster gets no answer, as at an address where nothing listens:
    it blocks until `answer` is set."""

    def __init__(self) -> None:
        super().__init__(initialized=False)
        self.answer = threading.Event()

    def init(self, address: str | None) -> None:
        self.calls.append(("init", address))
        self.answer.wait(60)
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}")


@pytest.fixture
def silent_ray(monkeypatch) -> Iterator[SilentRay]:
    fake = SilentRay()
    for name in ("is_initialized", "init", "shutdown"):
        monkeypatch.setattr(cluster.ray, name, getattr(fake, name))
    yield fake
    fake.answer.set()  # ends the connecting thread


def test_a_cluster_that_does_not_answer_is_given_up_after_the_timeout(silent_ray):
    start = time.monotonic()
    with pytest.raises(RuntimeError) as err, cluster.connected("10.1.2.3:6379", timeout=0.5):
        pytest.fail("the block must not run")
    assert time.monotonic() - start < 5
    assert str(err.value) == (
        "--address: no Ray cluster answered at 10.1.2.3:6379 within 0.5 s; check that `ray start --head` "
        "runs there, that the port is its --port (6379 by default) and that no firewall blocks it "
        "(or wait longer: --connect-timeout SECONDS)"
    )
    assert silent_ray.calls == [("init", "10.1.2.3:6379")]  # nothing was started: nothing to shut down


def test_sigterm_while_connecting_stops_like_ctrl_c(silent_ray, capsys):
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt), cluster.connected("10.1.2.3:6379", timeout=30):
        pytest.fail("the block must not run")
    assert time.monotonic() - start < 5
    assert (
        capsys.readouterr().err
        == "interrupted while connecting to Ray at 10.1.2.3:6379: nothing was started\n"
    )
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_during_a_study_on_ray_stops_it_like_ctrl_c(monkeypatch):
    fake = FakeRay(initialized=False)
    for name in ("is_initialized", "init", "shutdown"):
        monkeypatch.setattr(cluster.ray, name, getattr(fake, name))
    with pytest.raises(KeyboardInterrupt), cluster.connected("auto"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        pytest.fail("SIGTERM must interrupt the study")
    assert fake.calls == [("init", "auto"), ("shutdown",)]


def test_connect_timeout_is_passed_on_and_checked(monkeypatch, capsys):
    passed = []

    def run(*args, **kwargs):
        passed.append(kwargs)
        raise StudyError("stopped here")

    monkeypatch.setattr(cluster, "run", run)
    assert main(["study", "run", "stop", "--backend", "ray", "--connect-timeout", "5"]) == 2
    assert len(passed) == 1 and passed[0]["connect_timeout"] == 5.0 and passed[0]["allow_large"] is False
    assert capsys.readouterr().err == "error: stopped here\n"
    for value in ("0", "-1", "nan", "inf"):
        assert main(["study", "run", "stop", "--backend", "ray", "--connect-timeout", value]) == 2
        assert capsys.readouterr().err == (
            f"error: --connect-timeout: {float(value):g} is not allowed; expected a number of seconds > 0\n"
        )
    assert main(["study", "run", "stop", "--connect-timeout", "5"]) == 2
    assert capsys.readouterr().err == "error: --connect-timeout: only for --backend ray, not local\n"


CONNECT = """
import sys
from tuninglab.studies import cluster
try:
    with cluster.connected("127.0.0.1:1", timeout=float(sys.argv[1])):
        pass
except RuntimeError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow
def test_real_ray_at_an_unreachable_address_ends_in_the_timeout_or_at_sigterm(tmp_path):
    """Ray itself, in a process of its own: it retries 127.0.0.1:1 for about ten minutes, deaf to signals."""
    start = time.monotonic()
    given_up = subprocess.run(
        [sys.executable, "-c", CONNECT, "3"], capture_output=True, text=True, timeout=60, cwd=Path.cwd()
    )
    assert given_up.returncode == 2 and time.monotonic() - start < 30
    assert given_up.stderr.splitlines()[-1].startswith(
        "error: --address: no Ray cluster answered at 127.0.0.1:1 within 3 s;"
    )
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        waiting = subprocess.Popen([sys.executable, "-c", CONNECT, "600"], stderr=err, cwd=Path.cwd())
    try:
        deadline = time.monotonic() + 60
        while "Connecting to existing Ray cluster" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # inside Ray's connection attempt
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(timeout=15) == 130
    finally:
        waiting.kill()
    assert log.read_text().splitlines()[-1] == (
        "interrupted while connecting to Ray at 127.0.0.1:1: nothing was started"
    )


# --- one trial on its node -------------------------------------------------------------------------------


REMOTES = cluster.Remotes("origin", "/nowhere/remote.git", "storage", "/nowhere/storage")


def test_a_trial_whose_experiment_is_on_the_remote_runs_nothing(monkeypatch):
    """A retried task whose earlier attempt pushed its experiment before the worker was lost."""
    monkeypatch.setattr(cluster, "on_remote", lambda url, baseline: {"stop-seed-5": "c0ffee"})
    monkeypatch.setattr(cluster, "_run_in", lambda *args: pytest.fail("nothing may run"))
    yielded = list(cluster.trial(REMOTES, "b" * 40, Experiment("stop-seed-5", {"train.seed": 5})))
    assert yielded == [platform.node(), cluster.Outcome("stop-seed-5", SUCCESS, node=platform.node())]


def test_a_trial_sweeps_dead_workers_folders_and_removes_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = cluster.scratch_root() / f"{dead.pid}-abc"
    left.mkdir(parents=True)
    monkeypatch.setattr(cluster, "on_remote", lambda url, baseline: {})
    monkeypatch.setattr(cluster.ray, "get_gpu_ids", lambda: [])  # as in a task given no GPU
    seen = []

    def run_in(scratch, remotes, baseline, experiment, env):
        seen.append(scratch)
        assert scratch.parent == cluster.scratch_root() and scratch.name.startswith(f"{os.getpid()}-")
        assert not left.exists()
        (scratch / "repo").mkdir()
        return cluster.Outcome(experiment.name, SUCCESS)

    monkeypatch.setattr(cluster, "_run_in", run_in)
    yielded = list(cluster.trial(REMOTES, "b" * 40, Experiment("stop-seed-6", {"train.seed": 6})))
    assert yielded[-1] == cluster.Outcome("stop-seed-6", SUCCESS)
    assert len(seen) == 1 and not seen[0].exists()


# --- the driver on a local Ray, with stand-in trials ----------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance of two CPUs in this process, shared by the module's tests that need one.

    Started with Python's Ctrl-C handler in place (as `cluster.connected` makes sure), so that its
    workers can be cancelled even where pytest was started with SIGINT ignored.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def followed(tmp_path: Path, names: list[str], jobs: int = 2) -> list[cluster.Outcome]:
    """`follow` study `stop`, one trial per name submitted as `run` does; `tmp_path` is their folder."""
    task = cluster.remote_trial(1, 0)
    experiments = [Experiment(name, {}) for name in names]
    return cluster.follow("stop", experiments, 0, lambda e: task.remote(REMOTES, str(tmp_path), e), jobs)


def test_a_lost_worker_is_retried_and_each_experiment_counted_once(local_ray, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cluster, "trial", cluster_fakes.dying_trial)
    outcomes = followed(tmp_path, ["once", f"{cluster_fakes.DIES}-always"])
    by_name = {outcome.name: outcome for outcome in outcomes}
    assert len(outcomes) == len(by_name) == 2
    assert by_name["once"] == cluster.Outcome("once", SUCCESS)
    lost = by_name[f"{cluster_fakes.DIES}-always"]
    assert lost.status == FAILED and "worker" in lost.error.lower()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["once.1", "once.2"] + [f"{cluster_fakes.DIES}-always.{n}" for n in range(1, cluster.RETRIES + 2)]
    )
    assert f"experiment {cluster_fakes.DIES}-always failed: {lost.error}" in capsys.readouterr().out


def test_ctrl_c_cancels_the_trials_in_flight_and_stops_their_commands(
    local_ray, tmp_path, monkeypatch, capsys, ctrl_c
):
    monkeypatch.setattr(cluster, "trial", cluster_fakes.sleeping_trial)
    names = ["stop-seed-5", "stop-seed-6", "stop-seed-7"]

    interrupted = []

    def interrupt_once_two_run() -> None:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        interrupted.append(time.monotonic())
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_two_run, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        followed(tmp_path, names)
    assert time.monotonic() - interrupted[0] < cluster.STOP_SECONDS  # each trial stopped when cancelled
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted: cancelled 2 trial(s), their runs stopped and scratch clones removed; 1 not started; "
        "resume with `python -m tuninglab study run stop --backend ray`"
    )
    pids = [int(path.read_text()) for path in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and all(gone(pid) for pid in pids)
    assert not [path for path in tmp_path.iterdir() if path.is_dir()]  # each trial removed its folder


# --- search studies on the local Ray, with a stand-in trial that scores a known function -----------------

SEARCH_SPACE = {
    "train.lr": {"log_uniform": [0.0001, 0.1]},
    "train.dropout": {"uniform": [0.0, 0.5]},
    "train.batch_size": {"choice": [32, 64]},
}


def on_ray(tmp_path: Path, monkeypatch, jobs: int = 2) -> search.RayCluster:
    """The Ray backend of a search study with `cluster_fakes.scoring_trial`, nothing on its git remote."""
    monkeypatch.setattr(cluster, "trial", cluster_fakes.scoring_trial)
    monkeypatch.setattr(cluster, "on_remote", lambda url, baseline, cwd=None: {})
    return search.RayCluster(REMOTES, "b" * 40, cluster.remote_trial(1, 0), jobs, ["tabular"], tmp_path)


def scored(settings: dict) -> float:
    """What `cluster_fakes.scoring_trial` reports as the validation metric of a configuration."""
    lr, dropout = float(settings["train.lr"]), float(settings["train.dropout"])
    return 1.0 - (math.log10(lr) + 2.0) ** 2 / 10 - dropout / 5


def test_a_tpe_study_on_ray_tells_optuna_each_result_and_a_failed_trial_as_failed(
    local_ray, tmp_path, monkeypatch, default_params
):
    study = spec.parse(
        "fake",
        {"kind": "tpe", "trials": 6, "seed": 3, "objective": {"dataset": "tabular"}, "params": SEARCH_SPACE},
    )
    journal = search.open_journal(study, "b" * 40, 2, tmp_path)
    tpe = search.Tpe(study, journal, on_ray(tmp_path, monkeypatch), 2)
    counts = tpe.run(default_params, lambda record: search.objective_value("tabular", record, {}))

    trials = journal.get_trials()
    assert len(trials) == 6 and counts[SUCCESS] + counts[FAILED] == 6
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["train.batch_size"] == 32 for t in failed)
    assert all(t.user_attrs[search.ERROR_ATTR] == "error: batch_size 32 refused on node node" for t in failed)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == counts[SUCCESS] and all(t.params["train.batch_size"] == 64 for t in complete)
    assert all(t.value == pytest.approx(scored(search.settings_of(study, t.params))) for t in complete)
    names = [t.user_attrs[search.EXPERIMENT_ATTR] for t in trials]
    assert names == [spec.trial_name("fake", n) for n in range(6)]


def test_a_halving_study_on_ray_promotes_the_best_and_never_a_failed_configuration(
    local_ray, tmp_path, monkeypatch, default_params
):
    """Seed 4 draws configurations scoring 0.88, 0.63, 0.84 and 0.91, the last of batch size 32 (failed)."""
    definition = {"kind": "halving", "trials": 4, "seed": 4, "eta": 2, "min_epochs": 1}
    study = spec.parse("fake", definition | {"objective": {"dataset": "tabular"}, "params": SEARCH_SPACE})
    backend = on_ray(tmp_path, monkeypatch)
    submit, submitted = backend.submit, []

    def recorded(experiments: list[Experiment]) -> None:
        submitted.extend(experiments)
        submit(experiments)

    backend.submit = recorded
    halving = search.Halving(study, backend, 4)
    counts = halving.run(lambda record: search.objective_value("tabular", record, {}))

    assert (counts[SUCCESS], counts[FAILED]) == (6, 1)
    assert sorted((spec.position(e.name), e.settings["train.epochs"]) for e in submitted) == [
        ((1, 0), 1),
        ((1, 1), 2),
        ((1, 2), 4),
        ((2, 0), 1),
        ((3, 0), 1),
        ((3, 1), 2),
        ((4, 0), 1),
    ]


# --- one study end to end on the local Ray ---------------------------------------------------------------


def text_only(repo: Path) -> None:
    """Trim the lab repo's pipeline to its text data, the cheapest to train that can crash on a setting."""
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["vars"] = [{"datasets": ["text"]}, {"test_plots": {"text": "confusion"}}]
    pipeline["metrics"] = [path for path in pipeline["metrics"] if "/text/" in path]
    pipeline["plots"] = [plot for plot in pipeline["plots"] if next(iter(plot)).startswith("text ")]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab repo (text data only) with the studies above, its baseline reproduced and pushed to both
    remotes."""
    base = tmp_path_factory.mktemp("cluster")
    repo = make_lab_repo(base / "lab")
    text_only(repo)
    (repo / "studies.yaml").write_text(yaml.safe_dump(STUDIES))
    sh(repo, "dvc", "repro", "-q")
    sh(base, "git", "init", "-q", "--bare", "-b", "main", "remote.git")
    (base / "storage").mkdir()
    sh(repo, "dvc", "remote", "add", "-d", "storage", str(base / "storage"))
    commit_all(repo, "baseline")
    sh(repo, "git", "remote", "add", "origin", str(base / "remote.git"))
    sh(repo, "git", "push", "-q", "-u", "origin", "main")
    sh(repo, "dvc", "push", "-q")
    return repo


def exp_refs(lab: Path) -> list[str]:
    """The experiment names on the lab's git remote, one per ref."""
    listed = sh(lab, "git", "ls-remote", "origin", "refs/exps/*").stdout.split()
    return sorted(ref.rsplit("/", 1)[-1] for ref in listed[1::2])


def stored(lab: Path, name: str) -> bool:
    """Whether the models an experiment on the git remote trained are in the DVC remote, every file."""
    commit = dict(
        line.split("\t")[::-1] for line in sh(lab, "git", "ls-remote", "origin").stdout.splitlines()
    )
    ref = next(ref for ref in commit if ref.endswith(f"/{name}"))
    sh(lab, "git", "fetch", "-q", "origin", ref)
    lock = yaml.safe_load(sh(lab, "git", "show", f"{commit[ref]}:dvc.lock").stdout)
    outs = [out for stage in lock["stages"].values() for out in stage.get("outs", [])]
    folders = [out["md5"] for out in outs if out["path"].startswith("models/")]
    storage = Path(cluster.dvc_remote(lab)[1]) / "files" / "md5"
    files = [
        entry["md5"] for md5 in folders for entry in json.loads((storage / md5[:2] / md5[2:]).read_text())
    ]
    return bool(files) and all((storage / md5[:2] / md5[2:]).is_file() for md5 in files)


def in_scratch() -> list[psutil.Process]:
    """The live processes that run in a trial's scratch folder on this machine."""
    root = cluster.scratch_root()
    return [p for p in psutil.process_iter() if cluster._inside(p, root) and cluster._running(p.pid)]


def compared(table: pd.DataFrame) -> pd.DataFrame:
    """A results table's rows of `pair-seed-1`, without what differs between two runs (commit, timings)."""
    rows = table[table["experiment"] == "pair-seed-1"].drop(columns=["rev"]).sort_values("dataset")
    timings = [c for c in RESULT_METRICS if c.endswith("_time_s")]
    return rows.drop(columns=timings).reset_index(drop=True)


@pytest.mark.slow
def test_a_study_on_ray_lands_on_the_remotes_resumes_and_collects_as_the_local_backend(
    lab, local_ray, tmp_path, monkeypatch, capsys, venv_path
):
    monkeypatch.chdir(lab)
    assert main(["study", "run", "pair", "--backend", "ray", "-j", "2"]) == 0
    printed = capsys.readouterr().out
    assert "study pair: 2 experiments, 0 already on git remote origin, 2 queued on Ray" in printed
    assert f"experiment {CRASHED} failed on node {platform.node()}: error: " in printed
    assert "missing.csv does not exist" in printed
    assert "study pair: 1 succeeded, 1 failed" in printed
    assert exp_refs(lab) == ["pair-seed-1"] and stored(lab, "pair-seed-1")  # a failed run is not pushed
    assert not list(cluster.scratch_root().glob("*-*")) and not in_scratch()

    resumed = []

    def follow(study, missing, already, submit, jobs):
        resumed.append(([experiment.name for experiment in missing], already))
        return []

    monkeypatch.setattr(cluster, "follow", follow)
    cluster.run("pair")
    assert resumed == [([CRASHED], 1)]  # only what is not on the git remote runs again

    on_ray = pd.read_csv(lab / "results" / "experiments.csv")  # collected once pulled from the git remote

    sh(tmp_path, "git", "clone", "-q", str(lab.parent / "remote.git"), "local")
    local = tmp_path / "local"
    sh(local, "dvc", "pull", "-q")
    # the experiment as the local backend's queue worker runs it
    sh(local, "dvc", "exp", "run", "-q", "-n", "pair-seed-1", "-S", "train.seed=1")
    monkeypatch.chdir(local)
    collect.collect({"pair": "ofat"})
    on_queue = pd.read_csv(local / "results" / "experiments.csv")

    assert list(compared(on_ray)["dataset"]) == ["text"]
    assert compared(on_ray).loc[0, "test_accuracy"] > 0
    pd.testing.assert_frame_equal(compared(on_ray), compared(on_queue))
