"""Studies on a Ray cluster: the preconditions, the trials' cleanup, and whole studies on a local Ray.

The slow tests share one temporary lab repository (tiny params, its baseline
reproduced), a bare git repository as its git remote, a folder as its DVC
remote, and a Ray instance of two CPUs started in this process, which the
study runs (in this process too) connect to.
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pandas as pd
import psutil
import pytest
import ray
import yaml
from dvc.repo import Repo

from tests.conftest import commit_all, make_lab_repo, sh
from tuninglab.__main__ import main
from tuninglab.schema import FAILED, RESULT_METRICS, SUCCESS
from tuninglab.studies import cluster, runner
from tuninglab.studies.spec import Experiment, StudyError

VENV_BIN = str(Path(sys.executable).parent)
CRASHING_SOURCE = "data/local/text/missing.csv"  # passes the param rules; the text download stage fails
STUDIES = {
    "pair": {"kind": "ofat", "params": {"train.seed": [1, 2]}},
    "mixed": {"kind": "ofat", "params": {"train.seed": [3], "text.data.source": [CRASHING_SOURCE]}},
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
    shutil.rmtree(repo / ".dvc" / "cache")
    assert refused(capsys, repo, monkeypatch) == [
        "error: 1 output(s) of the baseline are neither in the cache nor on DVC remote storage "
        "(made.txt): dvc repro, then dvc push",
    ]

    sh(repo, "dvc", "repro", "-q", "-f")
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


def test_an_interrupted_trial_command_is_killed_with_all_it_started(tmp_path):
    """Ray cancels a running task by raising KeyboardInterrupt in it; the run's process group goes with it."""
    log = tmp_path / "run.log"
    threading.Timer(1.0, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        cluster._command(["sh", "-c", "sleep 60 & echo $!; sleep 60"], tmp_path, log, dict(os.environ))
    assert ended(int(log.read_text().split()[0]))


def ended(pid: int, timeout: float = 5.0) -> bool:
    """Whether the process `pid` ends (or is a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while cluster._running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not cluster._running(pid)


def cmdline(process: psutil.Process) -> list[str]:
    """A process's command line; empty once it has ended."""
    with suppress(psutil.Error):
        return process.cmdline()
    return []


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


# --- whole studies on a local Ray instance ---------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab repo with the studies above, its baseline reproduced and pushed to both remotes."""
    base = tmp_path_factory.mktemp("cluster")
    repo = make_lab_repo(base / "lab")
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


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance of two CPUs in this process: the study runs below use it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


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
    """A results table's rows of the study `pair`, without what differs between two runs (commit, timings)."""
    rows = table[table["study"] == "pair"].drop(columns=["rev"]).sort_values(["experiment", "dataset"])
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
    assert "study pair: 2 succeeded, 0 failed" in printed
    assert exp_refs(lab) == ["pair-seed-1", "pair-seed-2"]
    assert stored(lab, "pair-seed-1") and stored(lab, "pair-seed-2")
    assert not list(cluster.scratch_root().glob("*-*")) and not in_scratch()

    _, outcomes = cluster.run("pair")
    assert outcomes == [] and exp_refs(lab) == ["pair-seed-1", "pair-seed-2"]
    assert "2 already on git remote origin, 0 queued" in capsys.readouterr().out

    sh(tmp_path, "git", "clone", "-q", str(lab.parent / "remote.git"), "fresh")
    monkeypatch.chdir(tmp_path / "fresh")
    assert main(["study", "collect", "--remote", "origin"]) == 0
    on_ray = pd.read_csv(tmp_path / "fresh" / "results" / "experiments.csv")

    sh(tmp_path, "git", "clone", "-q", str(lab.parent / "remote.git"), "local")
    sh(tmp_path / "local", "dvc", "pull", "-q")
    monkeypatch.chdir(tmp_path / "local")
    monkeypatch.setattr(runner, "POLL_SECONDS", 2.0)
    assert main(["study", "run", "pair", "-j", "2"]) == 0
    on_queue = pd.read_csv(tmp_path / "local" / "results" / "experiments.csv")

    assert sorted(compared(on_ray)["experiment"].unique()) == ["pair-seed-1", "pair-seed-2"]
    pd.testing.assert_frame_equal(compared(on_ray), compared(on_queue))


@pytest.mark.slow
def test_a_crash_is_failed_and_a_lost_worker_is_retried(lab, local_ray, monkeypatch, capsys, venv_path):
    """The crashing experiment is failed; the other's worker is killed once mid-run, and Ray retries it."""
    killed: list[int] = []

    def kill_worker_of(name: str) -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for process in in_scratch():
                if name in cmdline(process) and "exp" in cmdline(process):
                    worker = process.parent()
                    worker.kill()
                    killed.append(worker.pid)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_worker_of, args=("mixed-seed-3",), daemon=True)
    killer.start()
    monkeypatch.chdir(lab)
    _, outcomes = cluster.run("mixed", jobs=2)
    killer.join()

    assert killed, "the run of mixed-seed-3 was never seen"
    by_name = {outcome.name: outcome for outcome in outcomes}
    assert len(outcomes) == len(by_name) == 2
    crashed = by_name[f"mixed-source-{CRASHING_SOURCE.replace('/', '_')}"]
    assert crashed.status == FAILED and "missing.csv does not exist" in crashed.error
    assert by_name["mixed-seed-3"].status == SUCCESS
    assert by_name["mixed-seed-3"].metrics["metrics/text/test.json"]["text"]["test_accuracy"] > 0
    assert [name for name in exp_refs(lab) if name.startswith("mixed")] == ["mixed-seed-3"]
    assert f"experiment {crashed.name} failed: error: " in capsys.readouterr().out
    assert not list(cluster.scratch_root().glob("*-*")) and not in_scratch()  # the killed run's swept


@pytest.mark.slow
def test_ctrl_c_cancels_every_trial_and_leaves_nothing_running(
    lab, local_ray, monkeypatch, capsys, venv_path
):
    def interrupt_once_both_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len([p for p in in_scratch() if "exp" in cmdline(p)]) == 2:
                _thread.interrupt_main()
                return
            time.sleep(0.2)

    threading.Thread(target=interrupt_once_both_run, daemon=True).start()
    monkeypatch.chdir(lab)
    started = time.monotonic()
    assert main(["study", "run", "stop", "--backend", "ray"]) == 130
    assert time.monotonic() - started < 90
    assert "interrupted: cancelled 2 trial(s)" in capsys.readouterr().err
    assert not in_scratch() and not list(cluster.scratch_root().glob("*-*"))
    assert not [name for name in exp_refs(lab) if name.startswith("stop")]
