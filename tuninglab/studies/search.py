"""Search studies that learn from finished experiments: Optuna's TPE (`kind: tpe`) and successive
halving on epochs (`kind: halving`), on DVC's local queue or a Ray cluster.

Every trial is still a named DVC experiment: a tpe study's trial n is
`<study>-t<n>` (`spec.trial_name`), a halving study's configuration c at rung k
is `<study>-c<c>-r<k>` (`spec.rung_name`). What a search maximizes (its
`objective`) is a validation metric, never a test metric: one dataset's
`best_val_accuracy` (details.json; R^2 for a regression), or `mean_gain`, the
mean over the datasets the baseline trained of `(val - chance) / (baseline val -
chance)`, chance being the dataset's chance reference in test.json. A run
without a validation metric (it diverged in its first epoch) scores chance.

A tpe study drives Optuna's ask-and-tell interface: it asks for as many
trials as there are workers (constant-liar TPE when more than one), queues
each as a DVC experiment, tells Optuna each result as its experiment ends (a
failed experiment is a failed trial; the study goes on) and asks again until
`trials` trials are spent. Optuna's storage is a journal file,
`results/optuna/<study>.log` (`schema.journal_path`), safe for several
processes, and tied to the baseline commit it was started on. A stopped study
resumes from it: told trials are not run again; a trial asked before the stop
whose experiment ended meanwhile is told from DVC, one still queued or running
is waited for, and one whose experiment is gone (never queued, or stopped and
taken off the queue) is failed, marked `lost` (it does not count against the
budget) and asked again with the same params. The sampler is seeded with the
study's `seed` plus the trials the journal holds, so that a resumed study does
not draw its first trials again. A journal that lacks experiments DVC holds of
the study (it was lost, or is older than they are) is refused before anything is
asked. `study collect` and the report never read the journal: an experiment's
trial number is in its name.

A halving study draws `trials` configurations as a random study does (same
seed, same draws), trains all of them for the first rung's epochs, then the
best `ceil(n / eta)` by the objective for `eta` times more, and so on up to the
baseline's `train.epochs` (`spec.rungs`); each rung of each configuration is
trained from scratch. Experiments already ended are not run again; to retry
failed ones, remove them first (`dvc queue remove --failed`).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import optuna
import psutil
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from tqdm import tqdm

from tuninglab import tasks
from tuninglab.report import owned
from tuninglab.schema import FAILED, QUEUED, RESULTS_FILE, RUNNING, SUCCESS, journal_path, metrics_path
from tuninglab.studies import collect, runner, spec

VALIDATION_METRIC = "best_val_accuracy"  # details.json: the best selected epoch's validation accuracy or R^2
BASELINE_ATTR = "baseline_commit"  # the journal study's user attr: the commit its trials ran on
EXPERIMENT_ATTR = "experiment"  # a trial's user attr: its DVC experiment's name
LOST_ATTR = "lost"  # a failed trial's user attr: its experiment never ran to an end; asked again
ERROR_ATTR = "error"  # a failed trial's user attr: why its experiment failed
START_SECONDS = 30.0  # a study run waits this long after starting workers before it starts more
IDLE_SECONDS = 60.0  # the longest a search waits for idle queue workers to stop before it queues more


@dataclass(frozen=True)
class Ended:
    """An experiment that ended: its state (`SUCCESS`, `FAILED`), its metrics and details, why it failed."""

    name: str
    state: str
    record: dict[str, Any] = field(default_factory=dict)  # collect.read's record, with `details`
    error: str = ""


class Backend(Protocol):
    """Where a search's experiments run: DVC's local queue (`LocalQueue`) or a Ray cluster (`RayCluster`)."""

    def present(self, study: str) -> tuple[dict[str, Ended], set[str]]:
        """The study's experiments already there: those that ended, by name, and those queued or running."""

    def submit(self, experiments: list[spec.Experiment]) -> None:
        """Start the experiments (queue them, or hand them to the cluster)."""

    def wait(self, names: set[str]) -> list[Ended]:
        """Block until at least one of the named experiments has ended; those that did."""

    def stop(self, study: str, flying: list[spec.Experiment]) -> str:
        """Stop what runs on Ctrl-C; one line saying what was stopped and how to resume."""


# --- the objective -----------------------------------------------------------------------------------


def chance(record: dict[str, Any], dataset: str) -> float:
    """A dataset's chance reference in a record's test.json (its task's `chance_metric`)."""
    test = record["metrics"].get(metrics_path(dataset, "test").as_posix(), {}).get(dataset, {})
    for task in tasks.TASKS.values():
        if test.get(task.chance_metric) is not None:
            return float(test[task.chance_metric])
    raise RuntimeError(f"{metrics_path(dataset, 'test')} of {record['name']} has no chance reference")


def validation(record: dict[str, Any], dataset: str) -> float:
    """A dataset's validation metric in a record's details; chance when the run has none (it diverged)."""
    value = ((record.get("details") or {}).get(dataset) or {}).get(VALIDATION_METRIC)
    return chance(record, dataset) if value is None else float(value)


def gains_scale(objective: str, baseline: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each dataset of the objective: (chance, baseline validation - chance), the scale of `mean_gain`.

    Raises:
        StudyError: the baseline did not train a dataset the objective reads, or is no better than
            chance on one (a gain would divide by zero or turn over).
    """
    trained = collect.trained_datasets(baseline)
    datasets = trained if objective == spec.MEAN_GAIN else [objective]
    scale = {}
    for dataset in datasets:
        if dataset not in trained:
            raise spec.StudyError(
                f"objective dataset {dataset!r}: the baseline has no metrics of it; expected one of "
                f"{', '.join(trained)} (run `dvc repro` for the baseline first)"
            )
        low = chance(baseline, dataset)
        scale[dataset] = (low, validation(baseline, dataset) - low)
        if objective == spec.MEAN_GAIN and scale[dataset][1] <= 0:
            raise spec.StudyError(
                f"objective {spec.MEAN_GAIN}: the baseline's validation metric of {dataset} is no better "
                "than chance, so a gain over it means nothing; use objective {dataset: <name>}"
            )
    return scale


def objective_value(objective: str, record: dict[str, Any], scale: dict[str, tuple[float, float]]) -> float:
    """What a search maximizes for a finished run: one dataset's validation metric, or `mean_gain`."""
    if objective != spec.MEAN_GAIN:
        return validation(record, objective)
    gains = [(validation(record, d) - low) / span for d, (low, span) in scale.items()]
    return sum(gains) / len(gains)


# --- Optuna's side of a tpe study -----------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def distribution(space: dict[str, Any]) -> BaseDistribution:
    """A study's range as Optuna's distribution; a choice among lists (`[128, 128]`) as their JSON."""
    ((kind, bounds),) = space.items()
    if kind == "choice":
        return CategoricalDistribution(
            bounds if all(map(_scalar, bounds)) else [json.dumps(choice) for choice in bounds]
        )
    if kind == "int":
        return IntDistribution(int(bounds[0]), int(bounds[1]))
    return FloatDistribution(float(bounds[0]), float(bounds[1]), log=kind == "log_uniform")


def settings_of(study: spec.Study, values: dict[str, Any]) -> dict[str, Any]:
    """A trial's params (by hyperparameter, as Optuna holds them) as an experiment's settings."""
    settings: dict[str, Any] = {}
    for hyperparameter, value in values.items():
        ((kind, bounds),) = study.space[hyperparameter].items()
        if kind == "choice" and not all(map(_scalar, bounds)):
            value = json.loads(value)
        settings |= {key.strip(): value for key in hyperparameter.split(",")}
    return settings


def open_journal(study: spec.Study, commit: str, jobs: int, cwd: Path, force: bool = False) -> optuna.Study:
    """The tpe study's Optuna study in its journal file, created if new, tied to the baseline `commit`.

    Its TPE sampler is seeded with the study's seed plus the trials the journal
    holds, and is constant-liar with more than one worker (`jobs`). A journal of
    another baseline commit is refused, or with `force` set aside as
    `<study>.<commit>.log` for a new one.

    Raises:
        OverwriteError: the journal holds trials of another baseline commit, and not `force`.
    """
    path = cwd / journal_path(study.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    found = next((s for s in storage.get_all_studies() if s.study_name == study.name), None)
    before = found.user_attrs.get(BASELINE_ATTR, commit) if found else commit
    if before != commit:
        if not force:
            raise owned.OverwriteError(
                f"{journal_path(study.name)} holds the trials of study {study.name} on baseline commit "
                f"{before[:7]}, not HEAD ({commit[:7]}); pass --force to set it aside and start anew"
            )
        path.rename(path.with_name(f"{study.name}.{before[:7]}.log"))
        storage, found = JournalStorage(JournalFileBackend(str(path))), None
    asked = len(storage.get_all_trials(found._study_id, deepcopy=False)) if found else 0
    sampler = optuna.samplers.TPESampler(seed=study.seed + asked, constant_liar=jobs > 1)
    opened = optuna.create_study(
        study_name=study.name, storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
    )
    opened.set_user_attr(BASELINE_ATTR, commit)
    return opened


def _spent(journal: optuna.Study) -> int:
    """The trials that count against the budget: all but those lost (asked again) and those waiting."""
    return sum(
        1
        for trial in journal.get_trials(deepcopy=False)
        if trial.state != TrialState.WAITING and not trial.user_attrs.get(LOST_ATTR)
    )


class Tpe:
    """A tpe study's ask-and-tell loop over a backend."""

    def __init__(self, study: spec.Study, journal: optuna.Study, backend: Backend, jobs: int) -> None:
        self.study, self.journal, self.backend, self.jobs = study, journal, backend, jobs
        self.distributions = {key: distribution(space) for key, space in study.space.items()}
        self.pending: dict[str, tuple[int, spec.Experiment]] = {}  # name -> (trial number, experiment)
        self.counts: Counter = Counter()

    def tell(self, number: int, ended: Ended, score: Callable[[dict[str, Any]], float]) -> None:
        """Tell Optuna how trial `number` ended: its objective, or a failure with why."""
        if ended.state == SUCCESS:
            self.journal.tell(number, score(ended.record))
        else:
            trial_id = self.journal._storage.get_trial_id_from_study_id_trial_number(
                self.journal._study_id, number
            )
            self.journal._storage.set_trial_user_attr(trial_id, ERROR_ATTR, ended.error)
            self.journal.tell(number, state=TrialState.FAIL)
        self.counts[ended.state] += 1

    def resume(self, score: Callable[[dict[str, Any]], float]) -> None:
        """Settle the trials a stopped run left asked but not told (see the module's docstring).

        Raises:
            StudyError: DVC holds experiments of the study that the journal never asked for (the journal
                was lost, or is older than they are); nothing has been queued then.
        """
        for trial in self.journal.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            if not trial.user_attrs.get(LOST_ATTR):
                self.counts[SUCCESS if trial.state == TrialState.COMPLETE else FAILED] += 1
        ended, flying = self.backend.present(self.study.name)
        asked = {spec.trial_name(self.study.name, t.number) for t in self.journal.get_trials(deepcopy=False)}
        unknown = sorted((ended.keys() | flying) - asked)
        if unknown:
            path = journal_path(self.study.name)
            raise spec.StudyError(
                f"{path} does not hold {len(unknown)} experiment(s) of study {self.study.name} that DVC "
                f"holds ({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): the journal was "
                f"lost or is older than they are; restore it (git checkout -- {path}), or start the study "
                f"anew without them (dvc exp remove {' '.join(unknown)})"
            )
        for trial in self.journal.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            name = spec.trial_name(self.study.name, trial.number)
            experiment = spec.Experiment(name, settings_of(self.study, trial.params))
            if name in ended:
                self.tell(trial.number, ended[name], score)
            elif name in flying:
                self.pending[name] = (trial.number, experiment)
            else:
                self.journal.enqueue_trial(trial.params, skip_if_exists=False)
                trial_id = trial._trial_id
                self.journal._storage.set_trial_user_attr(trial_id, LOST_ATTR, True)
                self.journal.tell(trial.number, state=TrialState.FAIL)

    def ask(self, baseline: dict[str, Any]) -> None:
        """Ask for trials until as many run as there are workers or the budget is spent; start them."""
        asked = []
        while len(self.pending) + len(asked) < self.jobs and _spent(self.journal) < self.study.trials:
            trial = self.journal.ask(self.distributions)
            name = spec.trial_name(self.study.name, trial.number)
            trial.set_user_attr(EXPERIMENT_ATTR, name)
            experiment = spec.Experiment(name, settings_of(self.study, trial.params))
            try:
                spec._checked(self.study.name, experiment, baseline)
            except spec.StudyError as err:  # a combination the param rules refuse: a failed trial
                self.tell(trial.number, Ended(name, FAILED, error=str(err)), lambda record: 0.0)
                continue
            asked.append((trial.number, experiment))
        if asked:
            self.backend.submit([experiment for _, experiment in asked])
            self.pending |= {experiment.name: (number, experiment) for number, experiment in asked}

    def run(self, baseline: dict[str, Any], score: Callable[[dict[str, Any]], float]) -> Counter:
        """Resume, then ask and tell until the budget is spent and every trial is told; the state counts."""
        self.resume(score)
        with tqdm(total=self.study.trials, desc="trials", unit="trial", bar_format=runner.BAR_FORMAT) as bar:
            while True:
                self.ask(baseline)
                runner.progress(bar, self.counts + Counter({RUNNING: len(self.pending)}))
                if not self.pending:
                    return self.counts
                for ended in self.backend.wait(set(self.pending)):
                    number, _ = self.pending.pop(ended.name)
                    self.tell(number, ended, score)
                    if ended.state == FAILED:
                        tqdm.write(f"trial {number} ({ended.name}) failed: {ended.error}")

    def flying(self) -> list[spec.Experiment]:
        """The experiments of the trials asked and not yet told."""
        return [experiment for _, experiment in self.pending.values()]


# --- successive halving ----------------------------------------------------------------------------------


def promote(values: dict[int, float | None], eta: int) -> list[int]:
    """The configurations that go on from a rung: the best `ceil(n / eta)` of its n by value, highest first
    (ties to the lower configuration); a failed one (None) never goes on."""
    scored = {c: v for c, v in values.items() if v is not None}
    ranked = sorted(scored, key=lambda c: (-scored[c], c))
    return sorted(ranked[: math.ceil(len(values) / eta)])


class Halving:
    """A halving study's rungs over a backend."""

    def __init__(self, study: spec.Study, backend: Backend, full: int) -> None:
        self.study, self.backend = study, backend
        self.rungs = spec.rungs(study, full)
        self.configurations = dict(enumerate(study.draws(), start=1))
        self.flying_now: list[spec.Experiment] = []
        self.counts: Counter = Counter()

    def experiment(self, configuration: int, rung: int) -> spec.Experiment:
        """The experiment of a configuration at a rung: its settings and the rung's epochs."""
        epochs = self.rungs[rung][1]
        settings = self.configurations[configuration] | {"train.epochs": epochs}
        return spec.Experiment(spec.rung_name(self.study.name, configuration, rung), settings)

    def check(self, baseline: dict[str, Any]) -> None:
        """Check every configuration at every rung's epochs against the param rules, before anything runs."""
        for rung in range(len(self.rungs)):
            for configuration in self.configurations:
                spec._checked(self.study.name, self.experiment(configuration, rung), baseline)

    def run(self, score: Callable[[dict[str, Any]], float]) -> Counter:
        """Run the rungs in order, promoting the best of each; the state counts of every experiment."""
        survivors = list(self.configurations)
        total = sum(n for n, _ in self.rungs)
        with tqdm(total=total, desc="experiments", unit="exp", bar_format=runner.BAR_FORMAT) as bar:
            for rung, (_, epochs) in enumerate(self.rungs):
                planned = {self.experiment(c, rung).name: c for c in survivors}
                ended, flying = self.backend.present(self.study.name)
                ended = {name: e for name, e in ended.items() if name in planned}
                self.counts.update(found.state for found in ended.values())
                there = set(ended) | flying
                missing = [self.experiment(c, rung) for n, c in planned.items() if n not in there]
                if missing:
                    self.backend.submit(missing)
                waiting = set(planned) - set(ended)
                self.flying_now = [self.experiment(planned[n], rung) for n in waiting]
                while waiting:
                    runner.progress(bar, self.counts + Counter({RUNNING: len(waiting)}))
                    for found in self.backend.wait(waiting):
                        ended[found.name] = found
                        waiting.discard(found.name)
                        self.counts[found.state] += 1
                        if found.state == FAILED:
                            tqdm.write(f"experiment {found.name} failed: {found.error}")
                runner.progress(bar, self.counts)
                values = {
                    planned[n]: score(e.record) if e.state == SUCCESS else None for n, e in ended.items()
                }
                survivors = promote(values, self.study.eta)
                if rung + 1 < len(self.rungs):
                    tqdm.write(
                        f"rung {rung} ({epochs} epochs): configurations "
                        f"{', '.join(map(str, survivors)) or 'none'} go on"
                    )
                self.flying_now = []
        return self.counts


# --- backends --------------------------------------------------------------------------------------------

_ORDER = (RUNNING, QUEUED, SUCCESS, FAILED)  # the state of a name DVC lists twice: the first found


def _idle_workers(cwd: Path) -> list[psutil.Process]:
    """The live DVC queue workers of the repository running no experiment (no `dvc exp exec-run` child)."""
    idle = []
    for worker in runner.workers(cwd):
        try:
            if not any("exec-run" in child.cmdline() for child in worker.children(recursive=True)):
                idle.append(worker)
        except psutil.Error:  # it ended meanwhile
            continue
    return idle


class LocalQueue:
    """DVC's queue on this machine, with `jobs` workers started by the study run (`runner.start_workers`)."""

    def __init__(self, study: str, jobs: int, cwd: Path, poll: float) -> None:
        self.study, self.jobs, self.cwd, self.poll = study, jobs, cwd, poll
        self.running: set[str] = set()
        self.queued: dict[str, str] = {}  # name -> queue task (rev), at the last look
        self.suspects: set[str] = set()
        self.unseen: Counter = Counter()
        self.started = -math.inf  # when workers were last started (time.monotonic)

    def _states(self, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """One record per name, by `_ORDER` of its states."""
        chosen: dict[str, dict[str, Any]] = {}
        for record in records:
            before = chosen.get(record["name"])
            if before is None or _ORDER.index(record["state"]) < _ORDER.index(before["state"]):
                chosen[record["name"]] = record
        return chosen

    def _ended(self, record: dict[str, Any]) -> Ended:
        if record["state"] == SUCCESS:
            (detailed,) = collect.with_details([record], self.cwd)
            return Ended(record["name"], SUCCESS, detailed)
        return Ended(record["name"], FAILED, record, collect.last_error(record["log"]))

    def _look(self) -> dict[str, dict[str, Any]]:
        """One look at the experiments: orphans of dead workers ended, workers started where needed."""
        records = runner.look(self.cwd, pause=self.poll)
        found = runner.orphans(records, self.cwd)
        for record in records:
            if record["name"] in found & self.suspects and runner._end_orphan(record, self.cwd):
                record["state"] = FAILED
                found.discard(record["name"])
        self.suspects = found
        states = self._states(records)
        self.running = {n for n, r in states.items() if r["state"] == RUNNING}
        self.queued = {n: r["rev"] for n, r in states.items() if r["state"] == QUEUED}
        busy = len(self.running) + len(self.queued)
        late = time.monotonic() - self.started > START_SECONDS
        if self.queued and late and len(runner.workers(self.cwd)) < min(self.jobs, busy):
            runner.start_workers(self.jobs, self.cwd, self.study)
            self.started = time.monotonic()
        return states

    def present(self, study: str) -> tuple[dict[str, Ended], set[str]]:
        """The study's experiments on the baseline commit: ended ones by name, and those queued or running."""
        states = self._states(runner.look(self.cwd, pause=self.poll))
        ours = {n: r for n, r in states.items() if collect.study_of(n, {study: ""}) == study}
        ended = {n: self._ended(r) for n, r in ours.items() if r["state"] in (SUCCESS, FAILED)}
        return ended, set(ours) - set(ended)

    def submit(self, experiments: list[spec.Experiment]) -> None:
        """Queue the experiments (`runner._queue`) once no worker is idle; workers start at the next look.

        A DVC queue worker with nothing to run stops itself (it looks every 10 s);
        a task queued while it stops can go with it, and then shows running for
        ever, with no run of its own, and `dvc exp show` fails on it. A search
        queues as experiments end, with the queue empty: it waits (at most
        `IDLE_SECONDS`) until every live worker runs an experiment or has stopped.
        """
        deadline = time.monotonic() + IDLE_SECONDS
        while _idle_workers(self.cwd) and time.monotonic() < deadline:
            time.sleep(self.poll)
        runner._queue(experiments, self.cwd)

    def wait(self, names: set[str]) -> list[Ended]:
        """Look every `poll` seconds until one of the named experiments has ended (or has been missing from
        DVC's experiments `runner.UNSEEN_LOOKS` looks in a row: failed)."""
        try:
            while True:
                states = self._look()
                ended = [self._ended(states[n]) for n in sorted(names & set(states)) if n not in self._busy()]
                self.unseen = Counter({n: self.unseen[n] + 1 for n in names - set(states)})
                gone = [n for n, looks in self.unseen.items() if looks >= runner.UNSEEN_LOOKS]
                ended += [Ended(n, FAILED, error="not in DVC's experiments any more") for n in gone]
                if ended:
                    runner.clean_workspaces(list(states.values()), names, self.cwd)
                    return ended
                time.sleep(self.poll)
        except KeyboardInterrupt as interrupt:
            raise runner.Interrupted(
                self.running, self.queued, getattr(interrupt, "signum", signal.SIGINT)
            ) from None

    def _busy(self) -> set[str]:
        return self.running | set(self.queued)

    def stop(self, study: str, flying: list[spec.Experiment]) -> str:
        """Stop the workers and their experiments as a stopped study run does (`runner.stop`)."""
        return runner.stop(study, flying, self.running, self.queued, self.cwd)


def _check_results(cwd: Path, force: bool) -> None:
    """Refuse, before anything runs, a study whose collected results would drop experiments of
    `results/experiments.csv` (those of another baseline commit, say), as a listed study is refused.

    Raises:
        OverwriteError: and not `force`.
    """
    baseline, existing = collect.read(cwd)
    kept = owned.Holding(baseline["rev"], frozenset(record["name"] for record in existing))
    owned.replacing(RESULTS_FILE, collect.previous(cwd / RESULTS_FILE, force)[0], kept, force)


def _baseline(cwd: Path) -> dict[str, Any]:
    """The baseline commit's record, with its details (what `mean_gain` is measured against)."""
    baseline, _ = collect.read(cwd)
    (detailed,) = collect.with_details([baseline], cwd)
    return detailed


def drive(
    study: spec.Study,
    baseline_params: dict[str, Any],
    backend: Backend,
    jobs: int,
    cwd: Path,
    force: bool = False,
) -> Counter:
    """Run a search study over a backend to its end; the state counts of its experiments.

    On Ctrl-C (or SIGTERM, SIGHUP within `runner.stop_signals`), what runs is
    stopped (`Backend.stop`), one line says so and how to resume, and the
    interrupt goes on as `runner.Interrupted`.

    Raises:
        StudyError: the objective cannot be measured against the baseline.
        OverwriteError: a tpe study's journal is of another baseline commit, and not `force`.
    """
    baseline = _baseline(cwd)
    scale = gains_scale(study.objective, baseline)

    def score(record: dict[str, Any]) -> float:
        return objective_value(study.objective, record, scale)

    if study.strategy == "tpe":
        search: Tpe | Halving = Tpe(
            study, open_journal(study, baseline["rev"], jobs, cwd, force), backend, jobs
        )
    else:
        search = Halving(study, backend, spec.full_epochs(baseline_params))
        search.check(baseline_params)
    try:
        return search.run(baseline_params, score) if isinstance(search, Tpe) else search.run(score)
    except KeyboardInterrupt as interrupt:
        flying = search.flying() if isinstance(search, Tpe) else search.flying_now
        with runner.ignoring_stop_signals():
            line = backend.stop(study.name, flying)
            print(line, file=sys.stderr)
        raise runner.Interrupted(set(), {}, getattr(interrupt, "signum", signal.SIGINT)) from None


def run_local(name: str, jobs: int, cwd: Path = Path(), force: bool = False) -> Counter:
    """Run the search study `name` on DVC's local queue with `jobs` workers (see the module's docstring).

    Raises:
        StudyError: the workspace differs from HEAD, the study is malformed or refused by the param
            rules, or another study run holds the lock; nothing has been queued then.
        ParamError: HEAD's params.yaml is not valid.
        OverwriteError: the results or the journal would lose what they hold, and not `force`.
    """
    runner.check_workspace(cwd)
    baseline_params = runner.head_params(cwd)
    study = spec.parse(name, spec.definition(name, cwd / spec.STUDIES_FILE))
    spec.check_search(study, baseline_params)
    with runner.study_lock(name, cwd), runner.stop_signals():
        _check_results(cwd, force)
        print(f"study {name}: a {study.strategy} search of {study.trials} configurations, {jobs} worker(s)")
        counts = drive(
            study, baseline_params, LocalQueue(name, jobs, cwd, runner.POLL_SECONDS), jobs, cwd, force
        )
        runner.clean_worker_records(cwd)
        return counts


def _range(space: dict[str, Any]) -> str:
    ((kind, bounds),) = space.items()
    if kind == "choice":
        return f"one of {', '.join(spec.override(choice) for choice in bounds)}"
    scale = {"log_uniform": "float, log scale", "uniform": "float", "int": "integer"}[kind]
    return f"{scale} in [{bounds[0]:g}, {bounds[1]:g}]"


def _objective_words(objective: str) -> str:
    if objective == spec.MEAN_GAIN:
        return (
            f"{spec.MEAN_GAIN}: the mean over the baseline's datasets of (validation metric - chance) / "
            "(the baseline's validation metric - chance)"
        )
    return f"the validation metric ({VALIDATION_METRIC}) of {objective}"


def describe(study: spec.Study, baseline: dict[str, Any], jobs: int, root: Path = Path()) -> list[str]:
    """What `study plan` prints of a search study: its space, budget, objective and sampler (tpe) or its
    rungs (halving), and its estimated wall time (`estimate`'s model; a tpe study's trials taken as
    random draws of its space, a halving study beside a random study of as many configurations at
    full epochs).

    Raises:
        StudyError: the study is refused by the param rules.
    """
    from tuninglab.studies import estimate

    spec.check_search(study, baseline)
    lines = [f"study {study.name}: kind {study.strategy}, objective {_objective_words(study.objective)}"]
    lines += ["search space:", *(f"  {key}: {_range(space)}" for key, space in study.space.items())]
    if study.strategy == "tpe":
        liar = ", constant_liar=True" if jobs > 1 else ""
        lines += [
            f"budget: {study.trials} trials, {jobs} at a time, each a DVC experiment "
            f"{spec.trial_name(study.name, 0)}, {spec.trial_name(study.name, 1)}, ...",
            f"sampler: optuna.samplers.TPESampler(seed={study.seed}{liar}); "
            f"journal {journal_path(study.name)}",
        ]
        drawn = [spec.Experiment(spec.trial_name(study.name, n), s) for n, s in enumerate(study.draws())]
        try:
            lines.append(estimate.describe(drawn, baseline, jobs, root) + "; trials taken as random draws")
        except spec.StudyError as err:
            lines.append(f"no wall-time estimate: {err}")
        return lines
    halving = Halving(
        study, LocalQueue(study.name, jobs, root, runner.POLL_SECONDS), spec.full_epochs(baseline)
    )
    halving.check(baseline)
    lines.append(f"rungs (eta {study.eta}, configurations drawn with seed {study.seed}):")
    try:
        rung_seconds = []
        for rung, (configurations, epochs) in enumerate(halving.rungs):
            experiments = [halving.experiment(c, rung) for c in list(halving.configurations)[:configurations]]
            seconds = list(estimate.experiment_estimates(experiments, baseline, root).values())
            rung_seconds += seconds
            lines.append(
                f"  rung {rung}: {configurations} configurations x {epochs} epochs "
                f"({spec.rung_name(study.name, 1, rung)}, ...), "
                f"about {estimate.wall_seconds(seconds, jobs) / 60:,.1f} min"
            )
        last = len(halving.rungs) - 1
        full = [halving.experiment(c, last) for c in halving.configurations]
        alone = list(estimate.experiment_estimates(full, baseline, root).values())
        lines.append(
            f"estimated wall time: {estimate.study_seconds(rung_seconds, jobs) / 60:,.1f} min for "
            f"{len(rung_seconds)} experiments with {jobs} worker(s); a random study of the same "
            f"{study.trials} configurations at full epochs: "
            f"{estimate.study_seconds(alone, jobs) / 60:,.1f} min "
            "(the baseline's training time scaled by epochs, as `study plan` estimates every study)"
        )
    except spec.StudyError as err:
        lines.append(f"no wall-time estimate: {err}")
    return lines


class RayCluster:
    """A Ray cluster: one task per experiment (`cluster.trial`), at most `jobs` at a time.

    An experiment counts as there once it is on the git remote (a failed one
    never is: it runs again when the study is run again).
    """

    def __init__(
        self, remotes: Any, commit: str, task: Any, jobs: int, datasets: list[str], cwd: Path
    ) -> None:
        self.remotes, self.commit, self.task, self.jobs = remotes, commit, task, jobs
        self.datasets, self.cwd = datasets, cwd
        self.waiting: list[spec.Experiment] = []
        self.flying: dict[Any, str] = {}  # a task's ObjectRefGenerator -> its experiment's name

    def _record(self, name: str, commit: str) -> dict[str, Any]:
        """An experiment's metrics and details, from its commit (fetched from the git remote)."""
        from dvc.repo.experiments.refs import ExpRefInfo

        runner.git("fetch", "-q", self.remotes.git, str(ExpRefInfo(self.commit, name)), cwd=self.cwd)

        def shown(dataset: str, kind: str) -> dict[str, Any]:
            return json.loads(
                runner.git("show", f"{commit}:{metrics_path(dataset, kind).as_posix()}", cwd=self.cwd)
            )

        return {
            "name": name,
            "metrics": {metrics_path(d, "test").as_posix(): shown(d, "test") for d in self.datasets},
            "details": {d: shown(d, "details") for d in self.datasets},
        }

    def present(self, study: str) -> tuple[dict[str, Ended], set[str]]:
        """The study's experiments on the git remote (ended), and those handed to the cluster."""
        from tuninglab.studies import cluster

        there = cluster.on_remote(self.remotes.git_url, self.commit, self.cwd)
        ours = {n: c for n, c in there.items() if collect.study_of(n, {study: ""}) == study}
        ended = {n: Ended(n, SUCCESS, self._record(n, c)) for n, c in ours.items()}
        return ended, {e.name for e in self.waiting} | set(self.flying.values())

    def _launch(self) -> None:
        while self.waiting and len(self.flying) < self.jobs:
            experiment = self.waiting.pop(0)
            self.flying[self.task.remote(self.remotes, self.commit, experiment)] = experiment.name

    def submit(self, experiments: list[spec.Experiment]) -> None:
        """Hand the experiments to the cluster, `jobs` at a time."""
        self.waiting += experiments
        self._launch()

    def wait(self, names: set[str]) -> list[Ended]:
        """Wait for the tasks until one of them reports its Outcome; those that ended."""
        import ray

        from tuninglab.studies import cluster

        while True:
            ready, _ = ray.wait(list(self.flying), num_returns=1, timeout=cluster.WAIT_SECONDS)
            ended = []
            for generator in ready:
                name = self.flying[generator]
                try:
                    news = ray.get(next(generator))
                except (ray.exceptions.RayError, StopIteration) as err:
                    news = cluster.Outcome(name, FAILED, error=cluster._last_line(err))
                if not isinstance(news, cluster.Outcome):
                    continue  # the node's name: the task started
                del self.flying[generator]
                if news.status == SUCCESS and not news.metrics:  # pushed by an earlier attempt of the task
                    there = cluster.on_remote(self.remotes.git_url, self.commit, self.cwd)
                    ended.append(Ended(name, SUCCESS, self._record(name, there[name])))
                elif news.status == SUCCESS:
                    ended.append(
                        Ended(name, SUCCESS, {"name": name, "metrics": news.metrics, "details": news.details})
                    )
                else:
                    where = f" on node {news.node}" if news.node else ""
                    ended.append(Ended(name, FAILED, {"name": name}, f"{news.error}{where}"))
            self._launch()
            if ended:
                return ended

    def stop(self, study: str, flying: list[spec.Experiment]) -> str:
        """Cancel the tasks in flight (`cluster._cancel`); one line saying so and how to resume."""
        from tuninglab.studies import cluster

        stopped = cluster._cancel(self.flying)
        return (
            f"interrupted: cancelled {stopped} trial(s), their runs stopped and scratch clones removed; "
            f"resume with `python -m tuninglab study run {study} --backend ray`"
        )


def run_ray(
    name: str,
    jobs: int | None = None,
    address: str | None = None,
    cpus: float = 1.0,
    gpus: float = 0.0,
    cwd: Path = Path(),
    connect_timeout: float = 30.0,
    force: bool = False,
) -> tuple[Counter, Any]:
    """Run the search study `name` on a Ray cluster, one task per experiment (`cluster.trial`), with the
    local runner's ask-and-tell or rungs (`drive`); the state counts and the remotes it used.

    `jobs`: the most experiments at a time; by default as many trials as the
    cluster's CPUs hold at `cpus` each. The checks are those of `cluster.run`.

    Raises:
        StudyError, ParamError, RuntimeError, OverwriteError: as `cluster.run` and `run_local`.
    """
    import ray

    from tuninglab.studies import cluster

    cluster.check_trial_resources(cpus, gpus)
    runner.check_workspace(cwd)
    baseline_params = runner.head_params(cwd)
    study = spec.parse(name, spec.definition(name, cwd / spec.STUDIES_FILE))
    spec.check_search(study, baseline_params)
    cluster.check_devices(baseline_params, [], gpus)
    found = cluster.remotes(cwd)
    commit = runner.git("rev-parse", "HEAD", cwd=cwd).strip()
    datasets = collect.trained_datasets(_baseline(cwd))
    with runner.study_lock(name, cwd), cluster.connected(address, connect_timeout):
        cluster._check_resources(cpus, gpus)
        workers = jobs or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        task = cluster.remote_trial(cpus, gpus)
        print(
            f"study {name}: a {study.strategy} search of {study.trials} configurations on Ray, "
            f"{workers} at a time"
        )
        backend = RayCluster(found, commit, task, workers, datasets, cwd)
        return drive(study, baseline_params, backend, workers, cwd, force), found
