"""Run a study on a Ray cluster: one Ray task per experiment, each in a scratch clone of the baseline.

The driver (`run`) checks the study as the local runner does (a workspace
equal to HEAD, no `threads: auto`), that no `device: cuda` is asked of trials
without a GPU, and that every node can rebuild the baseline (`remotes`): a
git remote holding the baseline commit and a default DVC remote holding its
outputs. Each experiment not yet on the git remote becomes one Ray task
(`trial`) asking for the requested CPUs and GPUs. On its node the task clones
the baseline commit from the git remote into a scratch folder, points the
clone at the DVC remote, pulls the outputs of the stages that training reads,
runs `dvc exp run -n <name> -S ...` as a local queue worker would (`--pull`
restores what else it needs), pushes the experiment with `dvc exp push` (its
outputs go to the DVC remote) and reports its status, metrics and timings.
The scratch folder is always removed; one left behind by a worker that died
is removed, with whatever still runs in it, by the next task on that node.

An experiment already on the git remote is never run again: not by a rerun
of the study, nor by a task that Ray retries. A run that fails (`dvc exp run`
exits nonzero) counts as failed, is not retried, and runs again on the next
`study run`, since a failed run is never pushed. Ray retries a task whose
worker or node was lost, up to `RETRIES` times. On Ctrl-C the driver cancels
every task, gives each `STOP_SECONDS` to stop its run and remove its clone,
and shuts Ray down if it started it.
"""

from __future__ import annotations

import json
import logging
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
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import chdir, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import ray
import yaml
from dvc.repo import Repo
from dvc.repo.experiments.refs import ExpRefInfo
from tqdm import tqdm

from tuninglab.lab import params
from tuninglab.lab.datasets import dataset_names
from tuninglab.schema import FAILED, QUEUED, RUNNING, SUCCESS
from tuninglab.studies import collect, estimate, runner, spec

RETRIES = 2  # how often Ray runs a task again after losing its worker or node
STOP_SECONDS = 15.0  # how long cancelled tasks get to stop their runs and remove their clones
CONNECT_SECONDS = 30.0  # how long an existing cluster gets to answer the driver
RAY_DRIVER_LOGGER = "ray._private.worker"  # the logger of ray.init's messages
WAIT_SECONDS = 1.0  # the driver's longest wait for news, so that Ctrl-C is answered at once
SCRATCH = "tuninglab-trials"  # under each node's temporary folder: one folder per running trial


class Remotes(NamedTuple):
    """Where the cluster's nodes get the baseline from and leave the experiments."""

    git: str  # the git remote's name in this repository
    git_url: str
    dvc: str  # the default DVC remote's name
    dvc_url: str


@dataclass(frozen=True)
class Outcome:
    """What a trial reports to the driver."""

    name: str
    status: str  # schema.SUCCESS or schema.FAILED
    error: str = ""  # why it failed: the run's own `error:` line when it has one
    metrics: dict[str, Any] = field(default_factory=dict)  # DVC metrics file -> its data
    details: dict[str, Any] = field(default_factory=dict)  # dataset -> its details.json (not a DVC metric)
    seconds: dict[str, float] = field(default_factory=dict)  # clone, pull, run, push
    node: str = ""  # the node it ran on, which the driver names when it failed


def git_remote(cwd: Path = Path()) -> str | None:
    """The git remote the current branch tracks, else `origin`; None when there is neither."""
    branch = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=cwd, capture_output=True, text=True)
    tracked = ""
    if branch.returncode == 0:
        tracked = runner.git(
            "for-each-ref", "--format=%(upstream:remotename)", branch.stdout.strip(), cwd=cwd
        )
    names = runner.git("remote", cwd=cwd).split()
    return next((name for name in (tracked.strip(), "origin") if name in names), None)


def _absolute_url(url: str, cwd: Path) -> str:
    """A git URL as every node reads it: a relative local path made absolute, anything else unchanged."""
    if ":" in url or Path(url).is_absolute():
        return url
    return str((cwd / url).resolve())


def dvc_remote(cwd: Path = Path()) -> tuple[str, str] | None:
    """The default DVC remote's name and URL (a local path made absolute), or None when there is none."""
    with Repo(str(cwd)) as repo:
        name = repo.config["core"].get("remote")
        remote = repo.config["remote"].get(name) if name else None
    return (name, remote["url"]) if remote else None


def _unpushed(cwd: Path) -> tuple[list[str], list[str]]:
    """The baseline's outputs missing from the default DVC remote: (in the cache, in neither)."""
    with Repo(str(cwd)) as repo:
        status = repo.status(cloud=True)  # `dvc status --cloud`: path -> new, deleted or missing
    return (
        sorted(path for path, state in status.items() if state == "new"),
        sorted(path for path, state in status.items() if state == "missing"),
    )


def _few(paths: list[str], shown: int = 3) -> str:
    """The first paths of a list, and how many more."""
    more = len(paths) - shown
    return ", ".join(paths[:shown]) + (f" and {more} more" if more > 0 else "")


def remotes(cwd: Path = Path()) -> Remotes:
    """Check that the cluster can rebuild the baseline commit, and say from where.

    The baseline commit must be on a git remote (the one the current branch
    tracks, else `origin`), dvc.lock must be HEAD's, and a default DVC remote
    must hold every output of the baseline that DVC caches.

    Raises:
        StudyError: one line per missing precondition, each naming the command
            that fixes it; nothing has been started then.
    """
    problems = []
    git = git_remote(cwd)
    git_url = ""
    if git is None:
        problems.append(
            "no git remote for the cluster to clone the baseline from: "
            "git remote add origin <url>, then git push -u origin HEAD"
        )
    else:
        git_url = _absolute_url(runner.git("remote", "get-url", git, cwd=cwd).strip(), cwd)
        try:
            runner.git("fetch", "-q", git, cwd=cwd)
        except RuntimeError as err:
            problems.append(f"git remote {git} ({git_url}) cannot be reached: {err}")
        else:
            if not runner.git("branch", "-r", "--contains", "HEAD", "--list", f"{git}/*", cwd=cwd).strip():
                head = runner.git("rev-parse", "--short", "HEAD", cwd=cwd).strip()
                problems.append(f"the baseline commit {head} is not on git remote {git}: git push {git} HEAD")
    if runner.git("diff", "--name-only", "HEAD", "--", "dvc.lock", cwd=cwd).strip():
        problems.append(
            "dvc.lock differs from HEAD, and the cluster runs from HEAD's: "
            "git commit dvc.lock -m '<message>', then git push"
        )
    storage = dvc_remote(cwd)
    if storage is None:
        problems.append(
            "no default DVC remote for the baseline's outputs and the experiments': "
            "dvc remote add -d <name> <url> (S3, GCS, SSH or a shared folder), then dvc push"
        )
    else:
        cached, lost = _unpushed(cwd)
        if cached:
            problems.append(
                f"{len(cached)} output(s) of the baseline are not on DVC remote {storage[0]} "
                f"({_few(cached)}): dvc push"
            )
        if lost:
            problems.append(
                f"{len(lost)} output(s) of the baseline are neither in the cache nor on DVC remote "
                f"{storage[0]} ({_few(lost)}): dvc repro, then dvc push"
            )
    if problems:
        raise spec.StudyError("\n".join(problems))
    assert git is not None and storage is not None
    return Remotes(git, git_url, *storage)


def on_remote(git_url: str, baseline: str, cwd: Path = Path()) -> dict[str, str]:
    """The experiments of the baseline commit on a git remote: name -> commit."""
    listed = runner.git("ls-remote", git_url, f"{ExpRefInfo(baseline)}/*", cwd=cwd)
    found = (line.split("\t") for line in listed.splitlines())
    return {ExpRefInfo.from_ref(ref).name: commit for commit, ref in found}


def check_settings(
    planned: list[spec.Experiment], found: dict[str, str], baseline: str, git: str, cwd: Path = Path()
) -> None:
    """Refuse a planned experiment that is on the git remote with other settings (a study edited since).

    Raises:
        StudyError: names the experiment and how to remove it from the remote.
    """
    there = [experiment for experiment in planned if experiment.name in found]
    if not there:
        return
    runner.git(
        "fetch", "-q", git, *(str(ExpRefInfo(baseline, experiment.name)) for experiment in there), cwd=cwd
    )
    for experiment in there:
        shown = runner.git("show", f"{found[experiment.name]}:{params.PARAMS_FILE}", cwd=cwd)
        if not experiment.matches(yaml.load(shown, Loader=params.YamlLoader)):
            raise spec.StudyError(
                f"experiment {experiment.name} is on git remote {git} with other settings; remove it "
                f"(dvc exp remove -g {git} {experiment.name}) or rename the study"
            )


def check_devices(baseline: dict[str, Any], planned: list[spec.Experiment], gpus: float) -> None:
    """Refuse `device: cuda` at HEAD or in an experiment when trials get no GPU: they would see none.

    Raises:
        StudyError: names where cuda is asked for and the option that gives trials a GPU.
    """
    if gpus > 0:
        return
    trees = [(f"HEAD:{params.PARAMS_FILE}", baseline)]
    trees += [(f"experiment {experiment.name}", experiment.applied_to(baseline)) for experiment in planned]
    for where, tree in trees:
        for dataset in dataset_names():
            if params.train_settings(tree, dataset)["device"] == "cuda":
                raise spec.StudyError(
                    f"{where} trains {dataset} on cuda, and a trial given no GPU sees none: "
                    "pass --gpus-per-trial 1 (or a share such as 0.5)"
                )


def scratch_root() -> Path:
    """This node's folder of trial scratch folders, each named `<pid of its Ray worker>-<random>`."""
    return Path(tempfile.gettempdir()) / SCRATCH


def _running(pid: int) -> bool:
    """Whether the process `pid` runs (a zombie has ended)."""
    with suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


def _inside(process: psutil.Process, folder: Path) -> bool:
    """Whether a process runs in `folder` or below it."""
    with suppress(psutil.Error, OSError):
        return Path(process.cwd()).is_relative_to(folder)
    return False


def _clear(folder: Path) -> None:
    """Kill every process that runs in `folder`, again until none is left, then remove the folder."""
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        inside = [process for process in psutil.process_iter() if _inside(process, folder)]
        if not inside:
            break
        for process in inside:
            with suppress(psutil.Error):
                process.kill()
        time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)


def sweep(root: Path) -> list[Path]:
    """Remove the scratch folders of trials whose worker died, killing what still runs in them.

    Returns the folders removed.
    """
    swept = []
    for folder in sorted(root.glob("*-*")):
        owner = folder.name.split("-", 1)[0]
        if not (owner.isdigit() and _running(int(owner))):
            _clear(folder)
            swept.append(folder)
    return swept


def environment(gpu_ids: list[str]) -> dict[str, str]:
    """The environment of a trial's commands: this worker's, with its Python's `dvc` and `python` first.

    Ray sets `OMP_NUM_THREADS` to a task's CPUs; it is left out so that, as on
    the local queue, each run's thread count is its `train.threads` param.
    Ray sets `CUDA_VISIBLE_DEVICES` only for a task given GPUs (`gpu_ids`); a
    trial given none sees none, so that `train.device: auto` trains on the CPU
    instead of on a GPU another trial holds.
    """
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if not gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _command(args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> int:
    """Run a command in the environment `env` with its output in a new file `log`; returns its exit status.

    It runs in a process group of its own, so that when the task is cancelled
    (Ray raises KeyboardInterrupt while it waits) the command and everything
    it started are killed before the interrupt goes on.
    """
    with log.open("w") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while True:
                with suppress(subprocess.TimeoutExpired):
                    return process.wait(timeout=0.2)  # a short wait: Ray's interrupt needs Python to run
        except BaseException:
            with suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise


def _step(args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> None:
    """Run a command as `_command` does; raise with its last output line when it fails."""
    if _command(args, cwd, log, env):
        lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
        raise RuntimeError(f"{' '.join(args[:3])} failed: {lines[-1]}")


def training_inputs(clone: Path) -> list[str]:
    """The stages whose outputs other stages read (check_params, download, prepare): what to pull.

    DVC names a stage relative to the working directory, so it is the clone's while they are listed.
    """
    with chdir(clone), Repo() as repo:
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        return sorted(stage.addressing for stage in graph if graph.in_degree(stage))


def _metrics(clone: Path) -> dict[str, Any]:
    """The DVC metrics files that dvc.yaml lists, read from the clone's workspace."""
    declared = yaml.safe_load((clone / "dvc.yaml").read_text()).get("metrics", [])
    return {path: json.loads((clone / path).read_text()) for path in declared if (clone / path).is_file()}


def _details(clone: Path) -> dict[str, Any]:
    """Each dataset's `metrics/<d>/details.json` in the clone's workspace, by dataset."""
    found = sorted((clone / "metrics").glob("*/details.json"))
    return {path.parent.name: json.loads(path.read_text()) for path in found}


def _run_in(
    scratch: Path, remotes: Remotes, baseline: str, experiment: spec.Experiment, env: dict[str, str]
) -> Outcome:
    """Clone, pull, run and push one experiment in `scratch` with `env`; the Outcome says how it went."""
    clone, node, log = scratch / "repo", platform.node(), scratch / "step.log"
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def timed(step: str) -> None:
        seconds[step] = time.perf_counter() - start - sum(seconds.values())

    try:
        _step(["git", "clone", "-q", "--no-checkout", remotes.git_url, str(clone)], scratch, log, env)
        _step(["git", "checkout", "-q", baseline], clone, log, env)
        timed("clone")
        _step(["dvc", "remote", "add", "--local", "-f", "-d", remotes.dvc, remotes.dvc_url], clone, log, env)
        inputs = training_inputs(clone)
        if inputs:
            _step(["dvc", "pull", "-q", *inputs], clone, log, env)
        timed("pull")
        run = ["dvc", "exp", "run", "--pull", "-n", experiment.name, *experiment.set_args()]
        failed = _command(run, clone, scratch / "run.log", env)
        timed("run")
        if failed:
            error = collect.last_error(str(scratch / "run.log"))
            return Outcome(experiment.name, FAILED, error=error, seconds=seconds, node=node)
        _step(["dvc", "exp", "push", "origin", experiment.name], clone, log, env)
        timed("push")
    except RuntimeError as err:
        return Outcome(experiment.name, FAILED, error=str(err), seconds=seconds, node=node)
    return Outcome(
        experiment.name, SUCCESS, metrics=_metrics(clone), details=_details(clone), seconds=seconds, node=node
    )


def trial(remotes: Remotes, baseline: str, experiment: spec.Experiment) -> Iterator[str | Outcome]:
    """One experiment on a node of the cluster, as a Ray generator task.

    Yields the node's name when it starts, then its Outcome. An experiment
    already on the git remote (pushed by an earlier attempt of this task whose
    worker was lost afterwards) is not run again. The scratch clone is removed
    however the trial ends, and before the Outcome is sent.
    """
    yield platform.node()
    if experiment.name in on_remote(remotes.git_url, baseline):
        yield Outcome(experiment.name, SUCCESS, node=platform.node())
        return
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    sweep(root)
    scratch = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
    try:
        outcome = _run_in(scratch, remotes, baseline, experiment, environment(ray.get_gpu_ids()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    yield outcome  # once the clone is gone: the driver may end the study as soon as it hears


def check_trial_resources(cpus: float, gpus: float) -> None:
    """Refuse CPUs or GPUs per trial that Ray cannot reserve, before anything is checked or started.

    Ray reserves a share of a CPU or GPU below 1, or a whole number of them.

    Raises:
        StudyError: names the option, its value and what is allowed.
    """
    for option, value, least in (("--cpus-per-trial", cpus, "> 0"), ("--gpus-per-trial", gpus, ">= 0")):
        below = value <= 0 if option == "--cpus-per-trial" else value < 0
        if not math.isfinite(value) or below or (value > 1 and not value.is_integer()):
            raise spec.StudyError(
                f"{option}: {value:g} is not allowed; expected a number {least}, "
                "either a share below 1 (such as 0.5) or a whole number"
            )


class _NotMainThread(logging.Filter):
    """Drops Ray's warning that a driver connected outside the main thread sets no SIGTERM handler:
    `connected` sets its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


def _join(address: str, timeout: float) -> None:
    """`ray.init(address=address)` of an existing cluster, waited for at most `timeout` seconds.

    Ray retries an address where no cluster answers for about ten minutes, in
    calls that Python's signal handlers cannot interrupt. Run in a thread of its
    own, the wait is bounded and Ctrl-C or SIGTERM is answered at once; a thread
    given up on goes on waiting, idle, until the process ends.

    Raises:
        RuntimeError: nothing answered within `timeout`; names the address and what to check.
        ConnectionError, ValueError: Ray's own refusal (no cluster found, a malformed address).
    """
    failures: list[BaseException] = []

    def attempt() -> None:
        try:
            ray.init(address=address)
        except BaseException as err:  # handed to the waiting thread
            failures.append(err)

    thread = threading.Thread(target=attempt, name="ray-connect", daemon=True)
    quiet = _NotMainThread()
    logging.getLogger(RAY_DRIVER_LOGGER).addFilter(quiet)
    try:
        thread.start()
        thread.join(timeout)
    finally:
        logging.getLogger(RAY_DRIVER_LOGGER).removeFilter(quiet)
    if thread.is_alive():
        raise RuntimeError(
            f"--address: no Ray cluster answered at {address} within {timeout:g} s; check that "
            "`ray start --head` runs there, that the port is its --port (6379 by default) and that no "
            "firewall blocks it (or wait longer: --connect-timeout SECONDS)"
        )
    if failures:
        raise failures[0]


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM's handler while a study runs on Ray: it stops the study as Ctrl-C does."""
    raise KeyboardInterrupt


@contextmanager
def connected(address: str | None, timeout: float = CONNECT_SECONDS) -> Iterator[None]:
    """Be connected to Ray inside the block: to `address` unless this process is already.

    An existing cluster (any `address` but none and `local`) gets `timeout`
    seconds to answer (`_join`). Until the block ends, SIGTERM stops the study
    as Ctrl-C does. Ray is shut down when the block ends, however it ends, if it
    was started here.

    Raises:
        RuntimeError: no Ray cluster at `address`, or none answered in `timeout` seconds.
        KeyboardInterrupt: Ctrl-C or SIGTERM while connecting; nothing was started then.
    """
    if ray.is_initialized():
        yield
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A study started as a background job of a script inherits SIGINT ignored, and so would the
        # workers of a Ray started here: then neither Ctrl-C nor Ray's cancel could stop a trial.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    terminate = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            if address in (None, "local") and not os.environ.get("RAY_ADDRESS"):
                ray.init(address=address)  # a new instance; Ray starts it from the main thread only
                signal.signal(signal.SIGTERM, _interrupt)  # in place of the one Ray set
            else:
                _join(str(address or os.environ["RAY_ADDRESS"]), timeout)
        except (ConnectionError, ValueError) as err:
            raise RuntimeError(
                f"--address: no Ray cluster at {address} ({_last_line(err)}); expected auto, HOST:PORT of "
                "a running head node (`ray start --head`), or local for a new instance on this machine"
            ) from None
        except KeyboardInterrupt:
            print(f"interrupted while connecting to Ray at {address}: nothing was started", file=sys.stderr)
            raise
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        signal.signal(signal.SIGTERM, terminate)


def remote_trial(cpus: float, gpus: float) -> Any:
    """`trial` as a Ray task reserving `cpus` and `gpus`, run again up to `RETRIES` times if its worker dies.

    The task is a generator: it yields its node's name when it starts, then its Outcome.
    """
    return ray.remote(trial).options(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES)


def _check_resources(cpus: float, gpus: float) -> None:
    """Refuse a trial no node of the cluster can hold.

    Raises:
        StudyError: names the largest node.
    """
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={})
        raise spec.StudyError(
            f"no node of the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s) for a trial (the largest "
            f"has {largest.get('CPU', 0):g} and {largest.get('GPU', 0):g}); "
            "lower --cpus-per-trial / --gpus-per-trial or add a node (ray start --address=...)"
        )


def _last_line(err: Exception) -> str:
    """The line of a Ray error that says what happened (a task's own exception is its traceback's last)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[-1]


def _cancel(flying: dict[Any, str]) -> int:
    """Cancel the tasks, wait up to `STOP_SECONDS` for them to stop, then kill what is left; returns how many.

    A cancelled task gets a KeyboardInterrupt: it kills its run and removes its
    scratch clone before it ends.
    """
    for generator in flying:
        ray.cancel(generator)
    left = list(flying)
    deadline = time.monotonic() + STOP_SECONDS
    while left and time.monotonic() < deadline:
        ready, left = ray.wait(left, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        for generator in ready:
            with suppress(ray.exceptions.RayError, StopIteration):
                ray.get(next(generator))
                left.append(generator)  # it had news from before the cancel; it ends later
    for generator in left:
        with suppress(ray.exceptions.RayError):
            ray.cancel(generator, force=True)
    return len(flying)


def follow(
    study: str,
    missing: list[spec.Experiment],
    already: int,
    submit: Callable[[spec.Experiment], Any],
    jobs: int | None,
) -> list[Outcome]:
    """Submit the trials (at most `jobs` at a time) and follow them with the local runner's progress bar.

    Args:
        study: the study's name, for the command that resumes it.
        missing: the experiments to run.
        already: how many of the study's experiments are on the git remote already.
        submit: starts the trial of one experiment and returns its ObjectRefGenerator.
        jobs: the most trials in flight; None for as many as the cluster holds.

    Raises:
        KeyboardInterrupt: on Ctrl-C, after the trials in flight were cancelled
            (`_cancel`) and one line said what and how to resume. Any other
            exception also cancels the trials in flight first.
    """
    states = {experiment.name: QUEUED for experiment in missing}
    waiting, flying, outcomes, shown = list(missing), {}, [], Counter()
    try:
        with tqdm(total=already + len(missing), initial=already, desc="experiments", unit="exp") as bar:
            while True:
                while waiting and (jobs is None or len(flying) < jobs):
                    experiment = waiting.pop(0)
                    flying[submit(experiment)] = experiment.name
                counts = Counter(states.values()) + Counter({SUCCESS: already})
                if counts != shown:
                    runner.progress(bar, counts)
                    shown = counts
                if not flying:
                    break
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=WAIT_SECONDS)
                for generator in ready:
                    name = flying[generator]
                    try:
                        news = ray.get(next(generator))
                    except (ray.exceptions.RayError, StopIteration) as err:
                        news = Outcome(name, FAILED, error=_last_line(err))
                    if isinstance(news, Outcome):
                        del flying[generator]
                        states[name] = news.status
                        outcomes.append(news)
                        if news.status == FAILED:
                            where = f" on node {news.node}" if news.node else ""
                            tqdm.write(f"experiment {name} failed{where}: {news.error}")
                    else:
                        states[name] = RUNNING
    except BaseException as err:  # Ctrl-C, or the driver losing the cluster: no trial goes on unwatched
        with runner.ignoring_stop_signals((signal.SIGINT, signal.SIGTERM)):  # a second one must not cut it
            stopped = _cancel(flying)
            if isinstance(err, KeyboardInterrupt):
                print(
                    f"interrupted: cancelled {stopped} trial(s), their runs stopped and scratch clones "
                    f"removed; {len(waiting)} not started; "
                    f"resume with `python -m tuninglab study run {study} --backend ray`",
                    file=sys.stderr,
                )
        raise
    return outcomes


def run(
    name: str,
    jobs: int | None = None,
    address: str | None = None,
    cpus: float = 1.0,
    gpus: float = 0.0,
    cwd: Path = Path(),
    connect_timeout: float = CONNECT_SECONDS,
    allow_large: bool = False,
) -> tuple[Remotes, list[Outcome]]:
    """Run the study's experiments not yet on the git remote as Ray tasks, and wait for all.

    Args:
        name: a study of studies.yaml.
        jobs: the most trials in flight; None for as many as the cluster holds.
        address: the Ray cluster (`auto`, `HOST:PORT`, `local` for a new one
            on this machine); None for Ray's default. Not used when this
            process is connected to Ray already.
        cpus: CPUs each trial reserves.
        gpus: GPUs each trial reserves (fractions share a GPU).
        cwd: the repository.
        connect_timeout: the seconds an existing cluster gets to answer (`connected`).
        allow_large: run a study larger than its limit (`estimate.check_size`).

    Returns:
        The remotes it used, and one Outcome per experiment it ran.

    Raises:
        StudyError: the study is refused as by the local runner (its size included), a precondition
            for the cluster is missing (one line each), or no node can hold a
            trial; nothing has been started then.
        ParamError: HEAD's params.yaml is not valid.
        RuntimeError: the Ray cluster cannot be reached, or did not answer in `connect_timeout` seconds.
        KeyboardInterrupt: on Ctrl-C or SIGTERM, once every trial is stopped.
    """
    check_trial_resources(cpus, gpus)
    runner.check_workspace(cwd)
    baseline_params = runner.head_params(cwd)
    estimate.check_size(name, baseline_params, jobs or 1, allow_large, cwd)
    planned = spec.plan(name, cwd / spec.STUDIES_FILE, baseline_params)
    runner.check_threads(baseline_params, planned)
    check_devices(baseline_params, planned, gpus)
    found = remotes(cwd)
    baseline = runner.git("rev-parse", "HEAD", cwd=cwd).strip()
    there = on_remote(found.git_url, baseline, cwd)
    check_settings(planned, there, baseline, found.git, cwd)
    missing = [experiment for experiment in planned if experiment.name not in there]
    with connected(address, connect_timeout):
        _check_resources(cpus, gpus)
        print(
            f"study {name}: {len(planned)} experiments, {len(planned) - len(missing)} already on git remote "
            f"{found.git}, {len(missing)} queued on Ray ({cpus:g} CPU, {gpus:g} GPU each)"
        )
        task = remote_trial(cpus, gpus)
        outcomes = follow(
            name, missing, len(planned) - len(missing), lambda e: task.remote(found, baseline, e), jobs
        )
    return found, outcomes


def pull_experiments(git: str, rev: str = "HEAD", cwd: Path = Path()) -> None:
    """Bring the experiments of baseline `rev` from a git remote into this repository, without their outputs.

    What `study collect` reads (params, metrics, details, histories) is in
    git; `dvc exp pull <remote> <name>` fetches an experiment's models too.

    Raises:
        StudyError: `git` is not a git remote of this repository; names those it has.
        RuntimeError: dvc exp pull failed, with its last error line.
    """
    names = runner.git("remote", cwd=cwd).split()
    if git not in names:
        raise spec.StudyError(
            f"--remote: {git!r} is not a git remote of this repository; expected one of: "
            + (", ".join(names) or "none (git remote add origin <url>)")
        )
    collect.dvc("exp", "pull", "--no-cache", "--rev", rev, git, cwd=cwd)
