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
Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import chdir, suppress
from pathlib import Path
from typing import Any

import psutil
import yaml
from tqdm import tqdm

from tuninglab.lab import params
from tuninglab.report import format
from tuninglab.schema import ENDED_STATES, FAILED, QUEUED, RUNNING, SUCCESS
from tuninglab.studies import collect, estimate, spec

POLL_SECONDS = 20.0  # each look is a `dvc exp show`, which costs CPU the workers need
SHOW_TIMEOUT_SECONDS = 60.0
SHOW_TRIES = 5  # looks in a row that may hang or fail before a study run gives up
STOP_SECONDS = 15.0  # how long stopped workers get to end their experiments before they are killed
UNSEEN_LOOKS = 3  # looks in a row that may miss a planned experiment before it counts as gone
QUEUE_DIR = Path(".dvc/tmp/exps")  # DVC's queue: workers in celery/, started experiments in run/
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
        f"{key}: {format.override(now.get(key, 'missing'))} "
        f"(HEAD: {format.override(before.get(key, 'missing'))})"
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


def queue_missing(planned: list[spec.Experiment], cwd: Path = Path()) -> tuple[int, int]:
    """Queue the planned experiments not yet on the baseline commit; returns (already there, queued).

    Raises:
        StudyError: an experiment of the same name exists with other settings
            (a study edited after it ran); nothing has been queued then.
    """
    _, existing = collect.read(cwd)
    known = {record["name"]: record["params"] for record in existing}
    for experiment in planned:
        done = known.get(experiment.name)
        if done is not None and not experiment.matches(done):
            raise spec.StudyError(
                f"experiment {experiment.name} exists on this commit with other settings; "
                f"remove it (dvc exp remove {experiment.name}) or rename the study"
            )
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


def start_workers(jobs: int, cwd: Path = Path()) -> None:
    """Start `jobs` DVC queue workers; DVC stops them once the queue is empty.

    Their environment is this one: each experiment's thread count is its
    `train.threads` param, not a share of the cores.
    """
    collect.dvc("queue", "start", "-j", str(jobs), cwd=cwd)


def _alive(pid: int) -> psutil.Process | None:
    """The process `pid` while it runs; None once it has ended (a zombie has ended)."""
    with suppress(psutil.Error):
        process = psutil.Process(pid)
        if process.status() != psutil.STATUS_ZOMBIE:
            return process
    return None


def _recorded(path: Path) -> psutil.Process | None:
    """The live process of a DVC process record (`{"pid": ..., "returncode": ...}`), if it still runs."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return _alive(record["pid"]) if record.get("returncode") is None else None


def workers(cwd: Path = Path()) -> list[psutil.Process]:
    """The live DVC queue worker processes of the repository at `cwd`."""
    found = (_recorded(path) for path in sorted((cwd / QUEUE_DIR / "celery").glob("dvc-exp-worker-*.json")))
    return [process for process in found if process is not None]


def _executor(rev: str, cwd: Path) -> psutil.Process | None:
    """The live `dvc exp exec-run` process of the queue task `rev`, if it has one."""
    return _recorded(cwd / QUEUE_DIR / "run" / rev / f"{rev}.json")


def _task_name(rev: str, cwd: Path) -> str | None:
    """The experiment name in a started task's executor info (`run/<rev>/<rev>.run`)."""
    try:
        return json.loads((cwd / QUEUE_DIR / "run" / rev / f"{rev}.run").read_text())["name"]
    except (OSError, ValueError, KeyError):
        return None


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
    return Counter(record["state"] for record in records if record["name"] in names)


BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"  # tqdm's ETA left out: see `progress`


def progress(bar: tqdm, counts: Counter, left: float | None = None) -> None:
    """Show a study's state counts on its progress bar: ended ones as progress, then each count and,
    when known, `left`: the estimated seconds left (`estimate.Eta`)."""
    bar.update(sum(counts[s] for s in ENDED_STATES) - bar.n)
    shown = dict(
        done=counts[SUCCESS], failed=counts[FAILED], running=counts[RUNNING], remaining=counts[QUEUED]
    )
    if left is not None:
        shown["eta"] = tqdm.format_interval(left)
    bar.set_postfix(shown)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a study is followed; `pending`: what the last look found queued or running."""

    def __init__(self, pending: set[str]) -> None:
        super().__init__()
        self.pending = pending


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
) -> Counter:
    """Follow the named experiments until none is queued or running; show a progress bar, with the time
    left when `eta` is given.

    Workers are started whenever experiments are queued while none runs and no
    worker is alive (a resumed study, or workers that stopped). An experiment
    found orphaned by a dead worker (`orphans`) on two looks in a row is
    stopped and marked failed, with one line saying so.

    `dvc exp show` can miss queued experiments while a worker takes one from
    the queue, so a planned experiment that is not seen does not end the wait
    until it has been missing `UNSEEN_LOOKS` looks in a row (removed by hand,
    say); those are then named in one line.

    Raises:
        Interrupted: on Ctrl-C.
    """
    pending: set[str] = set()
    unseen_looks = 0
    try:
        records = look(cwd, pause=poll)
        counts = _counts(records, names)
        suspects: set[str] = set()
        finished = sum(counts[s] for s in ENDED_STATES)
        bar = tqdm(total=len(names), initial=finished, desc="experiments", unit="exp", bar_format=BAR_FORMAT)
        with bar:
            while True:
                pending = {record["name"] for record in records if record["state"] in (QUEUED, RUNNING)}
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
                    return counts
                if counts[QUEUED] and not counts[RUNNING] and not workers(cwd):
                    start_workers(jobs, cwd)
                time.sleep(poll)
                records = look(cwd, pause=poll)
    except KeyboardInterrupt:
        raise Interrupted(pending) from None


def _group_members(groups: set[int]) -> list[psutil.Process]:
    """The live processes of the given process groups."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) in groups and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def _stop_workers(cwd: Path) -> int:
    """End every queue worker with everything it started; returns how many there were.

    Each worker's process group (the worker, its executor, the stage
    commands) gets SIGTERM, again every half second so that an experiment the
    worker starts meanwhile ends too: the worker marks its experiment failed
    and exits. What still runs after `STOP_SECONDS` gets SIGKILL.
    """
    groups: set[int] = set()
    for sig, seconds in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + seconds
        while True:
            for worker in workers(cwd):
                with suppress(OSError):
                    groups.add(os.getpgid(worker.pid))
            groups.discard(os.getpgrp())
            if not _group_members(groups) or time.monotonic() > deadline:
                break
            for group in groups:
                with suppress(OSError):
                    os.killpg(group, sig)
            time.sleep(0.5)
    return len(groups)


def stop(study: str, names: set[str], pending: set[str], cwd: Path = Path()) -> str:
    """Stop every queue worker and the experiments they run; returns one line saying what and how to resume.

    Args:
        study: the study's name, for the command that resumes it.
        names: the study's experiments. Those stopped are removed from the
            queue, so that running the study again runs them again; other
            stopped experiments stay, marked failed.
        pending: the experiments queued or running before the interrupt.
        cwd: the repository.
    """
    count = _stop_workers(cwd)
    records = look(cwd, tries=2, pause=1.0)
    failed = {record["name"] for record in records if record["state"] == FAILED}
    stuck = _queue_running(records, cwd)  # their worker was killed: DVC marks them failed
    for name in stuck:
        with suppress(RuntimeError):
            collect.dvc("queue", "kill", name, cwd=cwd)
            failed.add(name)
    stopped = sorted(failed & (pending | set(stuck)))
    ours = [name for name in stopped if name in names]
    if ours:
        collect.dvc("queue", "remove", *ours, cwd=cwd)
    others = [name for name in stopped if name not in names]
    queued = _counts(records, names)[QUEUED]
    return (
        f"interrupted: stopped {count} queue worker(s)"
        + (f"; stopped and taken off the queue to run again: {', '.join(ours)}" if ours else "")
        + (f"; stopped and marked failed: {', '.join(others)}" if others else "")
        + f"; {queued} experiment(s) of the study still queued; "
        f"resume with `python -m tuninglab study run {study}`"
    )


def run(name: str, jobs: int, cwd: Path = Path(), allow_large: bool = False) -> Counter:
    """Queue the study's missing experiments, run them with `jobs` workers and wait for all.

    On Ctrl-C the workers and their experiments are stopped (`stop`), one line
    says what was stopped and how to resume, and KeyboardInterrupt is raised
    again.

    Raises:
        StudyError: the workspace differs from HEAD, the study is malformed,
            refused by the param rules, or larger than its limit without
            `allow_large` (`estimate.check_size`); nothing has been queued then.
        ParamError: HEAD's params.yaml is not valid.
    """
    check_workspace(cwd)
    baseline = head_params(cwd)
    estimate.check_size(name, baseline, jobs, allow_large, cwd)
    planned = spec.plan(name, cwd / spec.STUDIES_FILE, baseline)
    check_threads(baseline, planned)
    names = {experiment.name for experiment in planned}
    try:
        eta = estimate.Eta(estimate.experiment_estimates(planned, baseline, cwd), jobs)
    except spec.StudyError as err:  # the study runs without a time left
        print(f"no estimate of the time left: {err}")
        eta = None
    try:
        already, queued = queue_missing(planned, cwd)
        print(f"study {name}: {len(planned)} experiments, {already} already on this commit, {queued} queued")
        return wait(names, jobs, cwd, poll=POLL_SECONDS, eta=eta)  # poll looked up now: a test may shorten it
    except KeyboardInterrupt as interrupt:
        pending = interrupt.pending if isinstance(interrupt, Interrupted) else set()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        try:
            print(stop(name, names, pending, cwd), file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise
