"""Run a study on DVC's queue: queue what is missing, start workers, follow progress.

A study runs from HEAD. `dvc exp run --queue` snapshots the workspace, so a
workspace whose params.yaml, studies.yaml, dvc.yaml or code (`tuninglab/`,
`stages/`) differs from HEAD is refused before anything is queued, and every
experiment is planned from HEAD's params.yaml. Results only repeat for the same
thread count, so `threads: auto` (which depends on the machine) is refused too.

A study run is resumable: experiments of the study already queued, running or
finished on the current baseline commit are not queued again. To retry
failed ones, remove them first with `dvc queue remove --failed`.

DVC keeps the queue's process records under `.dvc/tmp/exps/`: each worker's
(`dvc exp queue-worker`) in `celery/dvc-exp-worker-<n>.json`, and each started
experiment's executor (`dvc exp exec-run`, a child process of its worker) in
`run/<rev>/<rev>.json`. From them the runner tells a running experiment whose
worker died (DVC would show it running forever) and stops the workers on
Ctrl-C, SIGTERM or SIGHUP.

A record's PID alone proves nothing: a record of a killed process keeps
`"returncode": null`, and its PID is reused. A record counts only for a
process that started at most `SPAWN_SECONDS` before DVC wrote the record and
runs DVC's command for it (`dvc exp queue-worker dvc-exp-<hash>-<n>@localhost`
with this repository's hash, or `dvc exp exec-run --infofile <its run/ file>`).
Workers that a study run starts carry `STARTED_BY` in their environment; only
those are ever signalled. When a study run ends, it removes the worker
records (`celery/dvc-exp-worker-<n>.json` and `.pid`; never the `.out` logs)
whose process has ended without DVC noting it, and the temporary workspaces
(`.dvc/tmp/exps/tmp*`) of the study's failed experiments whose executor has
ended.

One study run at a time per repository: each holds an exclusive lock on
`LOCK_FILE`, which the operating system releases when it ends, however it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import chdir, contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import yaml
from tqdm import tqdm

from tuninglab.lab import params
from tuninglab.report import owned
from tuninglab.schema import FAILED, QUEUED, RESULTS_FILE, RUNNING, SUCCESS
from tuninglab.studies import collect, estimate, spec

POLL_SECONDS = 20.0  # each look is a `dvc exp show`, which costs CPU the workers need
SHOW_TIMEOUT_SECONDS = 60.0
SHOW_TRIES = 5  # looks in a row that may hang or fail before a study run gives up
STOP_SECONDS = 15.0  # how long stopped workers get to end their experiments before they are killed
UNSEEN_LOOKS = 3  # looks in a row that may miss a planned experiment before it counts as gone
QUEUE_DIR = Path(".dvc/tmp/exps")  # DVC's queue: workers in celery/, started experiments in run/
SPAWN_SECONDS = 60.0  # most a queue process may have run before DVC wrote its record
CLOCK_SLACK = 2.0  # a record's file time against psutil's start time of its process
STARTED_BY = "TUNINGLAB_STUDY_RUN"  # in the environment of the workers a study run starts: study:pid
LOCK_FILE = Path(".dvc/tmp/tuninglab-study-run.lock")  # held by the study run of the repository
INPUTS = ("params.yaml", "studies.yaml", "dvc.yaml", "tuninglab", "stages")  # what a queued run snapshots


def git(*args: str, cwd: Path) -> str:
    """Run a git command and return its standard output; raise with its last error line."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"git {' '.join(args)} failed: {lines[-1]}")
    return done.stdout


def _params_changes(cwd: Path) -> str:
    """The params whose workspace values differ from HEAD's: `train.lr: 0.1 (HEAD: 0.005), ...`."""
    try:
        workspace = params.read_yaml(cwd / params.PARAMS_FILE)
        head = yaml.load(git("show", f"HEAD:{params.PARAMS_FILE}", cwd=cwd), Loader=params.YamlLoader)
    except (OSError, RuntimeError, yaml.YAMLError):
        return ""  # deleted, new or not YAML: the file name says enough
    if not (isinstance(workspace, dict) and isinstance(head, dict)):
        return ""
    now, before = collect.changes(workspace, head), collect.changes(head, workspace)
    keys = [*now, *(key for key in before if key not in now)]
    shown = [
        f"{key}: {spec.override(now.get(key, 'missing'))} (HEAD: {spec.override(before.get(key, 'missing'))})"
        for key in keys
    ]
    return ", ".join(shown)


def check_workspace(cwd: Path = Path()) -> None:
    """Refuse a workspace whose study inputs differ from HEAD; untracked files do not count.

    Raises:
        StudyError: names the changed files (and, for params.yaml, the changed
            params with their HEAD values) and the two ways out.
    """
    changed = git("diff", "--name-only", "HEAD", "--", *INPUTS, cwd=cwd).splitlines()
    if not changed:
        return
    keys = _params_changes(cwd) if str(params.PARAMS_FILE) in changed else ""
    described = [f"{path} ({keys})" if keys and path == str(params.PARAMS_FILE) else path for path in changed]
    raise spec.StudyError(
        f"the workspace differs from HEAD in {', '.join(described)}, and queued experiments would "
        "inherit it; commit it as the new baseline (git commit -am '<message>') or restore HEAD "
        f"(git checkout -- {' '.join(changed)}); nothing was queued"
    )


def head_params(cwd: Path = Path()) -> dict[str, Any]:
    """HEAD's params.yaml, validated: what every experiment of a study starts from.

    Raises:
        ParamError: it is not valid YAML or breaks a param rule.
    """
    text = git("show", f"HEAD:{params.PARAMS_FILE}", cwd=cwd)
    try:
        return params.validate(yaml.load(text, Loader=params.YamlLoader))
    except yaml.YAMLError as err:
        raise params.ParamError(f"HEAD:{params.PARAMS_FILE}: not valid YAML ({err})") from None
    except params.ParamError as err:
        raise params.ParamError(f"HEAD:{params.PARAMS_FILE}: {err}") from None


def _auto_threads(tree: dict[str, Any]) -> str | None:
    """The dotted key of the first `threads: auto` of a params tree, or None."""
    datasets = params.dataset_groups(tree)
    groups = {"train": tree["train"]} | {f"{d}.train": tree[d]["train"] or {} for d in datasets}
    return next((f"{key}.threads" for key, group in groups.items() if group.get("threads") == "auto"), None)


def check_threads(baseline: dict[str, Any], planned: list[spec.Experiment]) -> None:
    """Refuse `threads: auto` at HEAD or in an experiment: runs of a study must share known thread counts.

    A study may vary `train.threads` on purpose; `auto` is refused because it
    resolves differently on each machine and with each `OMP_NUM_THREADS`.

    Raises:
        StudyError: names the key that is auto and what to do.
    """
    why = "runs of a study must share one thread count"
    key = _auto_threads(baseline)
    if key:
        raise spec.StudyError(
            f"HEAD:{params.PARAMS_FILE}: {key} is auto; {why}: set an integer ({key}: 1) and commit it"
        )
    for experiment in planned:
        key = _auto_threads(experiment.applied_to(baseline))
        if key:
            raise spec.StudyError(
                f"{spec.STUDIES_FILE}: experiment {experiment.name} sets {key} to auto; {why}: use integers"
            )


def queue_missing(planned: list[spec.Experiment], cwd: Path = Path(), force: bool = False) -> tuple[int, int]:
    """Queue the planned experiments not yet on the baseline commit; returns (already there, queued).

    Before anything is queued, the results the study will collect are checked
    against `results/experiments.csv` as `study collect` checks them: the
    study does not train for an hour only to be refused at the end.

    Raises:
        StudyError: an experiment of the same name exists with other settings
            (a study edited after it ran); nothing has been queued then.
        OverwriteError: collecting would drop experiments of the results file
            (those of another baseline commit, say) and not `force`; nothing
            has been queued then.
    """
    baseline, existing = collect.read(cwd)
    known = {record["name"]: record["params"] for record in existing}
    for experiment in planned:
        done = known.get(experiment.name)
        if done is not None and not experiment.matches(done):
            raise spec.StudyError(
                f"experiment {experiment.name} exists on this commit with other settings; "
                f"remove it (dvc exp remove {experiment.name}) or rename the study"
            )
    collected = owned.Holding(baseline["rev"], frozenset(known) | {e.name for e in planned})
    owned.replacing(RESULTS_FILE, collect.previous(cwd / RESULTS_FILE, force)[0], collected, force)
    missing = [experiment for experiment in planned if experiment.name not in known]
    if missing:
        _queue(missing, cwd)
    return len(planned) - len(missing), len(missing)


def _queue(experiments: list[spec.Experiment], cwd: Path) -> None:
    """Queue each experiment as `dvc exp run --queue -n NAME -S key=value ...` does, in one DVC session.

    The command line would pay DVC's start-up (about 2 s here) once per
    experiment; its own function, called in this process, pays it once.

    Raises:
        RuntimeError: naming the experiment DVC refused to queue, with DVC's message.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with chdir(cwd), Repo() as repo:
        for experiment in tqdm(experiments, desc="queuing", unit="exp"):
            try:
                repo.experiments.run(queue=True, name=experiment.name, params=experiment.overrides())
            except DvcException as err:
                raise RuntimeError(f"dvc exp run --queue -n {experiment.name} failed: {err}") from None


def start_workers(jobs: int, cwd: Path = Path(), study: str = "") -> None:
    """Start `jobs` DVC queue workers; DVC stops them once the queue is empty.

    Their environment is this one, with `STARTED_BY` set to `study:pid` (what
    makes them the lab's, `ours`): each experiment's thread count is its
    `train.threads` param, not a share of the cores.
    """
    env = {**os.environ, STARTED_BY: f"{study}:{os.getpid()}"}
    collect.dvc("queue", "start", "-j", str(jobs), cwd=cwd, env=env)


def _alive(pid: int) -> psutil.Process | None:
    """The process `pid` while it runs; None once it has ended (a zombie has ended)."""
    with suppress(psutil.Error):
        process = psutil.Process(pid)
        if process.status() != psutil.STATUS_ZOMBIE:
            return process
    return None


def _worker_command(path: Path, cwd: Path) -> Callable[[list[str]], bool]:
    """Whether a command line is DVC's queue worker of the record `celery/dvc-exp-worker-<n>.json` at `cwd`.

    DVC names worker n of a repository `dvc-exp-<hash>-<n>@localhost`, the hash
    from the absolute path of its `celery/` folder.
    """
    number = path.stem.removeprefix("dvc-exp-worker-")
    folders = {str((cwd / QUEUE_DIR / "celery").absolute()), str((cwd / QUEUE_DIR / "celery").resolve())}
    nodes = {f"dvc-exp-{hashlib.sha256(f.encode()).hexdigest()[:6]}-{number}@localhost" for f in folders}

    def matches(cmdline: list[str]) -> bool:
        return any(a == "queue-worker" and b in nodes for a, b in itertools.pairwise(cmdline))

    return matches


def _executor_command(path: Path) -> Callable[[list[str]], bool]:
    """Whether a command line is DVC's `dvc exp exec-run --infofile run/<rev>/<rev>.run` of the record."""
    infofile = os.path.realpath(path.with_suffix(".run"))

    def matches(cmdline: list[str]) -> bool:
        return "exec-run" in cmdline and any(
            a == "--infofile" and os.path.realpath(b) == infofile for a, b in itertools.pairwise(cmdline)
        )

    return matches


def _identify(path: Path, command: Callable[[list[str]], bool]) -> tuple[bool, psutil.Process | None]:
    """Read a DVC process record (`{"pid": ..., "returncode": ...}`): (known, its live process).

    The process is the record's only when it runs, started at most
    `SPAWN_SECONDS` before the record was written (not after: then its PID was
    reused) and its command line passes `command`. `known` is False when that
    cannot be told (the record is unreadable, the process's details are not
    ours to read, or it is being started); a record that is `known` without a process is of a
    process that has ended.
    """
    try:
        record = json.loads(path.read_text())
        written = path.stat().st_mtime
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False, None
    if record.get("returncode") is not None:
        return True, None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True, None
        started = process.create_time()
        if not written - SPAWN_SECONDS <= started <= written + CLOCK_SLACK:
            return True, None
        cmdline = process.cmdline()
        if not cmdline:  # being started: its command line shows a moment later
            return False, None
        return True, process if command(cmdline) else None
    except psutil.NoSuchProcess:
        return True, None
    except psutil.Error:
        return False, None


def _worker_records(cwd: Path) -> list[Path]:
    return sorted((cwd / QUEUE_DIR / "celery").glob("dvc-exp-worker-*.json"))


def workers(cwd: Path = Path()) -> list[psutil.Process]:
    """The live DVC queue worker processes of the repository at `cwd`, each proven by its record."""
    found = (_identify(path, _worker_command(path, cwd))[1] for path in _worker_records(cwd))
    return [process for process in found if process is not None]


def ours(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    """The processes a study run started: those with `STARTED_BY` in their environment."""
    found = []
    for process in processes:
        with suppress(psutil.Error):
            if STARTED_BY in process.environ():
                found.append(process)
    return found


def clean_worker_records(cwd: Path = Path()) -> list[str]:
    """Remove the records of queue workers that ended without DVC noting it; returns their names.

    A killed worker's record keeps `"returncode": null` for ever. Removed are
    its `.json` and `.pid` files, only when its process has provably ended
    (`_identify`); the worker's log (`.out`) stays.
    """
    removed = []
    for path in _worker_records(cwd):
        with suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("returncode") is not None:
                continue
        known, process = _identify(path, _worker_command(path, cwd))
        if known and process is None:
            for stale in (path, path.with_suffix(".pid")):
                with suppress(FileNotFoundError):
                    stale.unlink()
            removed.append(path.stem)
    return removed


def _executor(rev: str, cwd: Path) -> psutil.Process | None:
    """The live `dvc exp exec-run` process of the queue task `rev`, if it has one; for `workspace`, the
    `dvc exp run` in the workspace."""
    path = cwd / QUEUE_DIR / "run" / rev / f"{rev}.json"
    command = _executor_command(path) if rev != "workspace" else lambda c: "exp" in c and "run" in c
    return _identify(path, command)[1]


def _task_info(rev: str, cwd: Path) -> dict[str, Any]:
    """A started task's executor info (`run/<rev>/<rev>.run`: its name, its temporary workspace...)."""
    try:
        info = json.loads((cwd / QUEUE_DIR / "run" / rev / f"{rev}.run").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _task_name(rev: str, cwd: Path) -> str | None:
    """The experiment name in a started task's executor info."""
    return _task_info(rev, cwd).get("name")


def clean_workspaces(records: list[dict[str, Any]], names: set[str], cwd: Path = Path()) -> list[str]:
    """Remove the temporary workspaces left by the named failed experiments; returns the names cleaned.

    A worker removes its experiment's workspace (`.dvc/tmp/exps/tmp*`) when
    the experiment ends; a killed worker leaves it. Removed is the workspace
    in a failed experiment's executor info, only when it is a `tmp*` folder
    of `.dvc/tmp/exps/` and no executor of it still runs (`_identify`).
    """
    cleaned = []
    base = (cwd / QUEUE_DIR).resolve()
    for record in records:
        if record["name"] not in names or record["state"] != FAILED:
            continue
        root = _task_info(record["rev"], cwd).get("root_dir")
        if not isinstance(root, str):
            continue
        folder = Path(root).resolve()
        if folder.parent != base or not folder.name.startswith("tmp") or not folder.is_dir():
            continue
        path = cwd / QUEUE_DIR / "run" / record["rev"] / f"{record['rev']}.json"
        known, process = _identify(path, _executor_command(path))
        if known and process is None:
            shutil.rmtree(folder, ignore_errors=True)
            cleaned.append(record["name"])
    return cleaned


def _queue_running(records: list[dict[str, Any]], cwd: Path) -> dict[str, str]:
    """Name -> rev of the experiments DVC shows running on its queue, not a `dvc exp run` in the workspace."""
    workspace = _task_name("workspace", cwd) if _executor("workspace", cwd) else None
    return {r["name"]: r["rev"] for r in records if r["state"] == RUNNING and r["name"] != workspace}


def orphans(records: list[dict[str, Any]], cwd: Path = Path()) -> set[str]:
    """The experiments DVC shows running that no live queue worker runs any more.

    A worker runs one experiment at a time, through a `dvc exp exec-run`
    child process. When fewer workers are alive than experiments run, the
    surplus are orphans: DVC would show them running forever. They are the
    running experiments without a live executor whose parent is a live worker,
    when that picks out no more than the surplus; otherwise a live worker is
    between executors (setting an experiment up or collecting it) and the
    answer waits for a later look.
    """
    running = _queue_running(records, cwd)
    alive = {worker.pid for worker in workers(cwd)}
    surplus = len(running) - len(alive)
    unattended = set()
    for name, rev in running.items():
        executor = _executor(rev, cwd)
        with suppress(psutil.Error):
            if executor is not None and executor.ppid() in alive:
                continue
        unattended.add(name)
    return unattended if 0 < len(unattended) <= surplus else set()


def _kill(processes: Iterable[psutil.Process], timeout: float = 5.0) -> None:
    """SIGKILL the processes and wait up to `timeout` seconds for them to end."""
    processes = list(processes)
    for process in processes:
        with suppress(psutil.Error):
            process.kill()
    deadline = time.monotonic() + timeout
    while any(_alive(p.pid) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)


def _end_orphan(record: dict[str, Any], cwd: Path) -> bool:
    """Kill an orphaned experiment's leftover processes and have DVC mark it failed; say so in one line."""
    name = record["name"]
    executor = _executor(record["rev"], cwd)
    if executor is not None:
        with suppress(psutil.Error):
            _kill([*executor.children(recursive=True), executor])
    try:
        collect.dvc("queue", "kill", name, cwd=cwd)  # its process is gone: DVC marks it failed
    except RuntimeError as err:
        tqdm.write(f"experiment {name}: its queue worker died; marking it failed did not work yet ({err})")
        return False
    tqdm.write(
        f"experiment {name}: its queue worker died; marked failed "
        f"(to run it again: dvc queue remove {name}, then study run again)"
    )
    return True


def look(cwd: Path = Path(), tries: int = SHOW_TRIES, pause: float = POLL_SECONDS) -> list[dict[str, Any]]:
    """The experiments of the baseline commit, as `collect.read` gives them.

    `dvc exp show` is unreliable while queue workers create and remove their
    temporary workspaces: it can block indefinitely, or fail on a directory
    that just went away. A look that hangs (killed after
    `SHOW_TIMEOUT_SECONDS`) or fails is retried after `pause` seconds.

    Raises:
        RuntimeError: `tries` looks in a row failed; names the last error.
    """
    error: Exception | None = None
    for _ in range(tries):
        try:
            _, records = collect.read(cwd, timeout=SHOW_TIMEOUT_SECONDS)
        except (subprocess.TimeoutExpired, RuntimeError) as failure:
            error = failure
            time.sleep(pause)
            continue
        return records
    raise RuntimeError(f"dvc exp show failed {tries} times in a row; last: {error}")


def _counts(records: list[dict[str, Any]], names: set[str]) -> Counter:
    """The state counts of the named experiments, one state each.

    An experiment DVC lists twice (queued again under the same name) is
    running or queued while one of its entries is, else succeeded if one did.
    """
    states: dict[str, set[str]] = {}
    for record in records:
        if record["name"] in names:
            states.setdefault(record["name"], set()).add(record["state"])
    order = (RUNNING, QUEUED, SUCCESS, FAILED)
    return Counter(next((s for s in order if s in found), FAILED) for found in states.values())


BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"  # tqdm's ETA left out: see `progress`


def progress(bar: tqdm, counts: Counter, left: float | None = None) -> None:
    """Show a study's state counts on its progress bar: the ended ones (done and failed) as progress,
    then each count and, when known, `left`: the estimated seconds left (`estimate.Eta`)."""
    bar.update(counts[SUCCESS] + counts[FAILED] - bar.n)
    shown = dict(
        done=counts[SUCCESS], failed=counts[FAILED], running=counts[RUNNING], remaining=counts[QUEUED]
    )
    if left is not None:
        shown["eta"] = tqdm.format_interval(left)
    bar.set_postfix(shown)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP while a study is followed.

    `running`: the experiments the last look found running; `queued`: those it
    found queued, name -> queue task (rev); `signum`: the signal.
    """

    def __init__(self, running: set[str], queued: dict[str, str], signum: int = signal.SIGINT) -> None:
        super().__init__()
        self.running = running
        self.queued = queued
        self.signum = signum


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is; `signum`: the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each stops a study run the same way


def _on_signal(signum: int, frame: object) -> None:
    """Raise `Signalled` for SIGTERM and SIGHUP. After SIGHUP the terminal is gone: what goes to it
    (the progress bar, the last line) goes to /dev/null instead of failing."""
    if signum == signal.SIGHUP:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            with suppress(OSError):
                if os.isatty(fd):
                    os.dup2(devnull, fd)
        os.close(devnull)
    raise Signalled(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise `Signalled` (a KeyboardInterrupt), as Ctrl-C raises
    KeyboardInterrupt; the handlers before are restored after."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def ignoring_stop_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Within: `signals` (Ctrl-C, SIGTERM and SIGHUP) are ignored, so that a second one does not cut the
    cleanup; the handlers before are restored after."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _left(eta: estimate.Eta | None, records: list[dict[str, Any]]) -> float | None:
    """The seconds left by `eta` (None without one), given the states a look found."""
    if eta is None:
        return None
    return eta.update({record["name"]: record["state"] for record in records}, time.monotonic())


def wait(
    names: set[str],
    jobs: int,
    cwd: Path = Path(),
    poll: float = POLL_SECONDS,
    eta: estimate.Eta | None = None,
    study: str = "",
) -> Counter:
    """Follow the named experiments until none is queued or running; show a progress bar, with the time
    left when `eta` is given.

    Workers (`start_workers`, for `study`) are started whenever experiments
    are queued while none runs and no worker is alive (a resumed study, or
    workers that stopped). An experiment found orphaned by a dead worker
    (`orphans`) on two looks in a row is stopped and marked failed, with one
    line saying so.

    `dvc exp show` can miss queued experiments while a worker takes one from
    the queue, so a planned experiment that is not seen does not end the wait
    until it has been missing `UNSEEN_LOOKS` looks in a row (removed by hand,
    say); those are then named in one line.

    Raises:
        Interrupted: on Ctrl-C, or on SIGTERM or SIGHUP within `stop_signals`.
    """
    running: set[str] = set()
    queued: dict[str, str] = {}
    unseen_looks = 0
    try:
        records = look(cwd, pause=poll)
        counts = _counts(records, names)
        suspects: set[str] = set()
        finished = counts[SUCCESS] + counts[FAILED]
        bar = tqdm(total=len(names), initial=finished, desc="experiments", unit="exp", bar_format=BAR_FORMAT)
        with bar:
            while True:
                running = {record["name"] for record in records if record["state"] == RUNNING}
                queued = {record["name"]: record["rev"] for record in records if record["state"] == QUEUED}
                found = orphans(records, cwd)
                for record in records:
                    if record["name"] in found & suspects and _end_orphan(record, cwd):
                        record["state"] = FAILED
                        found.discard(record["name"])
                suspects = found
                counts = _counts(records, names)
                progress(bar, counts, _left(eta, records))
                unseen = names - {record["name"] for record in records}
                unseen_looks = unseen_looks + 1 if unseen else 0
                if not counts[QUEUED] + counts[RUNNING] and (not unseen or unseen_looks >= UNSEEN_LOOKS):
                    if unseen:
                        tqdm.write(f"not in DVC's experiments any more: {', '.join(sorted(unseen))}")
                    clean_workspaces(records, names, cwd)
                    return counts
                if counts[QUEUED] and not counts[RUNNING] and not workers(cwd):
                    start_workers(jobs, cwd, study)
                time.sleep(poll)
                records = look(cwd, pause=poll)
    except KeyboardInterrupt as interrupt:
        raise Interrupted(running, queued, getattr(interrupt, "signum", signal.SIGINT)) from None


def _group_members(groups: set[int]) -> list[psutil.Process]:
    """The live processes of the given process groups."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) in groups and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def _stop_workers(cwd: Path) -> int:
    """End every queue worker a study run started, with everything it started; returns how many.

    Only workers proven this repository's (`workers`) and started by a study
    run (`ours`) are stopped. Each one's process group (the worker, its
    executor, the stage commands), as far as its members are `ours` too, gets
    SIGTERM, again every half second so that an experiment the worker starts
    meanwhile ends too: the worker marks its experiment failed and exits.
    What still runs after `STOP_SECONDS` gets SIGKILL.
    """
    groups: set[int] = set()
    for sig, seconds in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + seconds
        while True:
            for worker in ours(workers(cwd)):
                with suppress(OSError, psutil.Error):
                    groups.add(os.getpgid(worker.pid))
            groups.discard(os.getpgrp())
            members = ours(_group_members(groups))
            if not members or time.monotonic() > deadline:
                break
            for member in members:
                with suppress(psutil.Error):
                    member.send_signal(sig)  # psutil checks that the PID was not reused
            time.sleep(0.5)
    return len(groups)


def _requeue(experiments: list[spec.Experiment], cwd: Path) -> bool:
    """Queue the experiments again (their failed entries removed first); False when the workspace no
    longer is HEAD's, and they stay off the queue."""
    try:
        check_workspace(cwd)
    except spec.StudyError:
        return False
    collect.dvc("queue", "remove", *(e.name for e in experiments), cwd=cwd)
    _queue(experiments, cwd)
    return True


def stop(
    study: str,
    planned: list[spec.Experiment],
    running: set[str],
    queued: dict[str, str] | None = None,
    cwd: Path = Path(),
) -> str:
    """Stop the queue workers a study run started and the experiments they run; returns one line saying
    what and how to resume.

    Args:
        study: the study's name, for the command that resumes it.
        planned: the study's experiments. Those stopped while running are
            removed from the queue, so that running the study again runs
            them again; those a stopping worker took from the queue are
            queued again (queued ones stay queued); other stopped
            experiments stay, marked failed.
        running: the experiments running at the last look before the interrupt.
        queued: the experiments queued at the last look before the interrupt, name -> queue task
            (rev); those a worker has started since (they have a `run/<rev>/` folder) count as running.
        cwd: the repository.
    """
    names = {experiment.name for experiment in planned}
    queued = queued or {}
    running = running | {name for name, rev in queued.items() if (cwd / QUEUE_DIR / "run" / rev).exists()}
    waiting = set(queued) - running
    count = _stop_workers(cwd)
    records = look(cwd, tries=2, pause=1.0)
    failed = {record["name"] for record in records if record["state"] == FAILED}
    stuck = _queue_running(records, cwd)  # their worker was killed: DVC marks them failed
    for name in stuck:
        with suppress(RuntimeError):
            collect.dvc("queue", "kill", name, cwd=cwd)
            failed.add(name)
    records = [record | {"state": FAILED} if record["name"] in stuck else record for record in records]
    clean_workspaces(records, names, cwd)
    clean_worker_records(cwd)
    stopped = failed & (running | waiting | set(stuck))
    taken = [e for e in planned if e.name in stopped and e.name in waiting and e.name not in stuck]
    requeued = bool(taken) and _requeue(taken, cwd)
    removed = sorted(name for name in stopped & names if not (requeued and name in {e.name for e in taken}))
    if removed:
        collect.dvc("queue", "remove", *removed, cwd=cwd)
    others = sorted(stopped - names)
    still = _counts(records, names)[QUEUED] + (len(taken) if requeued else 0)
    return (
        f"interrupted: stopped {count} queue worker(s)"
        + (f"; stopped and taken off the queue to run again: {', '.join(removed)}" if removed else "")
        + (f"; stopped and marked failed: {', '.join(others)}" if others else "")
        + f"; {still} experiment(s) of the study still queued; "
        f"resume with `python -m tuninglab study run {study}`"
    )


@contextmanager
def study_lock(study: str, cwd: Path = Path()) -> Iterator[None]:
    """Hold the repository's study-run lock (`LOCK_FILE`) within; it names the study and this process.

    The lock is `flock`'s: the operating system releases it when this process
    ends, however it ends, so it is never stale. The file itself stays.

    Raises:
        StudyError: another study run holds it; names its study and PID.
    """
    path = cwd / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            try:
                holder = json.loads(file.read())
                who = f"study {holder['study']} (PID {holder['pid']})"
            except (ValueError, KeyError, TypeError):
                who = "another study"
            raise spec.StudyError(
                f"{who} is already running in this repository; one study run at a time: wait for it "
                "to end or stop it (Ctrl-C in its terminal)"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"study": study, "pid": os.getpid()}))
        file.flush()
        yield


def run(name: str, jobs: int, cwd: Path = Path(), allow_large: bool = False, force: bool = False) -> Counter:
    """Queue the study's missing experiments, run them with `jobs` workers and wait for all.

    One study run per repository at a time (`study_lock`). On Ctrl-C, SIGTERM
    or SIGHUP the workers it started and their experiments are stopped
    (`stop`), one line says what was stopped and how to resume, and an
    `Interrupted` (a KeyboardInterrupt, with the signal) is raised.

    Raises:
        StudyError: the workspace differs from HEAD, the study is malformed,
            refused by the param rules, larger than its limit without
            `allow_large` (`estimate.check_size`), or another study run holds
            the lock; nothing has been queued then.
        ParamError: HEAD's params.yaml is not valid.
        OverwriteError: the study's results would drop experiments of
            `results/experiments.csv` and not `force`; nothing has been queued then.
    """
    check_workspace(cwd)
    baseline = head_params(cwd)
    estimate.check_size(name, baseline, jobs, allow_large, cwd)
    planned = spec.plan(name, cwd / spec.STUDIES_FILE, baseline)
    check_threads(baseline, planned)
    names = {experiment.name for experiment in planned}
    with study_lock(name, cwd), stop_signals():
        try:
            eta = estimate.Eta(estimate.experiment_estimates(planned, baseline, cwd), jobs)
        except spec.StudyError as err:  # the study runs without a time left
            print(f"no estimate of the time left: {err}")
            eta = None
        try:
            already, queued = queue_missing(planned, cwd, force)
            print(
                f"study {name}: {len(planned)} experiments, {already} already on this commit, {queued} queued"
            )
            counts = wait(names, jobs, cwd, poll=POLL_SECONDS, eta=eta, study=name)  # a test may shorten it
            clean_worker_records(cwd)
            return counts
        except KeyboardInterrupt as interrupt:
            signum = getattr(interrupt, "signum", signal.SIGINT)
            running = interrupt.running if isinstance(interrupt, Interrupted) else set()
            waiting = interrupt.queued if isinstance(interrupt, Interrupted) else {}
            with ignoring_stop_signals():
                line = stop(name, planned, running, waiting, cwd)
                with suppress(OSError):
                    print(line, file=sys.stderr)
            raise Interrupted(running, waiting, signum) from None
