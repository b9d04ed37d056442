"""Hyperparameter studies: read `studies.yaml` and expand a study into experiments.

A study's strategy (`kind:` in `studies.yaml`, read once by `parse` into a
`Study`) is one-at-a-time (`ofat`), a full `grid`, a `random` search, or a
search that learns as it runs (`tpe`: Optuna's TPE sampler; `halving`:
successive halving on epochs), whose experiments are asked for while it runs
(`tuninglab.studies.search`) rather than listed up front. Each
configuration becomes one DVC experiment, named after what it changes
(`ofat-lr-0.1`, `optimizer_lr-optimizer-sgd-lr-0.01`, `random-03`) and run
with `dvc exp run --queue -n <name> -S <key>=<value> ...`. A name is only a
name: the hyperparameter it changed is the dotted key (`train.lr`) everywhere
else, in the results table and the report.

Every configuration is checked against the parameter rules before anything is
queued, so an unknown hyperparameter or a bad value is refused up front. A
study's size is counted without listing it (`count`): one above its limit
(`max_experiments`, by default `MAX_EXPERIMENTS`) is only planned or run when
the user allows it.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuninglab.lab import params

STUDIES_FILE = Path("studies.yaml")
SEARCHES = ("tpe", "halving")  # strategies whose experiments depend on the results of earlier ones
STRATEGIES = ("ofat", "grid", "random", *SEARCHES)
DRAWN = ("random", *SEARCHES)  # strategies whose params are ranges to draw from, not lists of values
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
MEAN_GAIN = "mean_gain"  # the objective: mean over datasets of (val - chance) / (baseline val - chance)
STRATEGY_KEY = "kind"  # the key of a study's strategy in studies.yaml
MAX_EXPERIMENTS = 1000  # a study's most experiments without --allow-large, unless it sets max_experiments
SAMPLE = 100  # the experiments a study too large to list is estimated from


class StudyError(ValueError):
    """A study definition that cannot be run."""


def override(param: Any) -> str:
    """A param value as DVC's `-S` override grammar reads it back unchanged (`true`, `[64,32]`, `0.1`)."""
    if isinstance(param, bool):
        return str(param).lower()
    if isinstance(param, list):
        return "[" + ",".join(override(v) for v in param) + "]"
    return str(param)


def name_part(param: Any) -> str:
    """A param value as it appears in an experiment name: `0.1`, `128-128`, `none` for an empty list."""
    if isinstance(param, list):
        return "-".join(name_part(v) for v in param) if param else "none"
    return re.sub(r"[^A-Za-z0-9_.]+", "_", override(param))


@dataclass(frozen=True)
class Experiment:
    """One configuration of a study: its name and the params it sets."""

    name: str
    settings: dict[str, Any]  # dotted params.yaml key -> value

    def matches(self, params_tree: dict[str, Any]) -> bool:
        """Whether a params tree has every setting of this experiment."""
        return all(_known(params_tree, k) and _lookup(params_tree, k) == v for k, v in self.settings.items())

    def applied_to(self, params_tree: dict[str, Any]) -> dict[str, Any]:
        """A copy of a params tree with this experiment's settings in it."""
        return _apply(params_tree, self.settings)

    def overrides(self) -> list[str]:
        """The `key=value` overrides of its params, as `dvc exp run -S` takes them."""
        return [f"{key}={override(value)}" for key, value in self.settings.items()]

    def set_args(self) -> list[str]:
        """The `-S key=value` arguments of `dvc exp run`."""
        return [arg for override in self.overrides() for arg in ("-S", override)]


def _short(hyperparameter: str) -> str:
    """`train.lr` -> `lr`; `tabular.data.normalize,image.data.normalize` -> `normalize`: for names only.

    Experiment names keep the short form (`ofat-lr-0.2`, not `ofat-train.lr-0.2`): they are the
    DVC refs of studies already run, and a study run resumes by finding its experiments by name.
    """
    return hyperparameter.split(",")[0].rsplit(".", 1)[-1]


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def _apply(tree: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(tree)
    for dotted, value in settings.items():
        *parents, last = dotted.split(".")
        node = changed
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return changed


def _settings(hyperparameter: str, value: Any) -> dict[str, Any]:
    return {key.strip(): value for key in hyperparameter.split(",")}


def _sample(rng: np.random.Generator, space: dict[str, Any]) -> Any:
    ((distribution, bounds),) = space.items()
    if distribution == "choice":
        return bounds[int(rng.integers(len(bounds)))]
    low, high = bounds
    if distribution == "int":
        return int(rng.integers(low, high + 1))
    if distribution == "log_uniform":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return float(f"{value:.3g}")


def _is_distribution(space: Any) -> bool:
    """`{log_uniform: [low, high]}`, `{uniform: [low, high]}`, `{int: [low, high]}` or `{choice: [...]}`."""
    if not (isinstance(space, dict) and len(space) == 1):
        return False
    ((distribution, bounds),) = space.items()
    if distribution == "choice":
        return isinstance(bounds, list) and bool(bounds)
    numbers = isinstance(bounds, list) and len(bounds) == 2 and all(params.is_number(b) for b in bounds)
    if distribution == "log_uniform":
        return numbers and 0 < bounds[0] < bounds[1]
    if distribution == "int":
        return numbers and all(isinstance(b, int) for b in bounds) and bounds[0] < bounds[1]
    return distribution == "uniform" and numbers and bounds[0] < bounds[1]


RANGES = (
    "{log_uniform: [low, high]} with 0 < low < high, {uniform: [low, high]} with low < high, "
    "{int: [low, high]} with integers low < high, or {choice: [values...]}"
)


@dataclass(frozen=True)
class Study:
    """A checked study definition: how it explores (`strategy`) and over which values (`space`)."""

    name: str
    strategy: str  # one of STRATEGIES: the study's `kind:` in studies.yaml
    space: dict[str, Any]  # dotted hyperparameter -> its values (ofat, grid) or distribution (random)
    max_experiments: int  # its most experiments without --allow-large (by default MAX_EXPERIMENTS)
    trials: int = 0  # a random study's experiments; a tpe study's trials; a halving study's configurations
    seed: int = 0  # a random or halving study's seed of its draws; a tpe study's sampler seed
    objective: str = (
        ""  # tpe, halving: MEAN_GAIN, or the name of the one dataset whose validation metric counts
    )
    eta: int = 0  # halving: 1/eta of a rung's configurations go on, with eta times the epochs
    min_epochs: int = 0  # halving: the first rung's epochs

    def draws(self) -> list[dict[str, Any]]:
        """A random or halving study's configurations (`trials` of them), drawn with its `seed`: dotted key ->
        value, comma keys split."""
        rng = np.random.default_rng(self.seed)
        drawn = []
        for _ in range(self.trials):
            settings: dict[str, Any] = {}
            for hyperparameter, distribution in self.space.items():
                settings |= _settings(hyperparameter, _sample(rng, distribution))
            drawn.append(settings)
        return drawn


SETTINGS = {  # each strategy's settings besides kind, params and max_experiments
    "ofat": set(),
    "grid": set(),
    "random": {"trials", "seed"},
    "tpe": {"trials", "seed", "objective"},
    "halving": {"trials", "seed", "objective", "eta", "min_epochs"},
}
LEAST = {
    "trials": 1,
    "seed": 0,
    "eta": 2,
    "min_epochs": 1,
    "max_experiments": 1,
}  # each integer's least value


def _objective(where: str, value: Any) -> str:
    """A search's `objective`: `mean_gain` or `{dataset: <name>}`, as MEAN_GAIN or the dataset's name."""
    if value == MEAN_GAIN:
        return MEAN_GAIN
    if isinstance(value, dict) and set(value) == {"dataset"} and isinstance(value["dataset"], str):
        return value["dataset"]
    raise StudyError(
        f"{where}: objective {value!r} is not allowed; expected {MEAN_GAIN} (the mean over datasets of "
        "each one's validation metric as a share of the way from chance to the baseline's) or "
        "{dataset: <name>} (that dataset's validation metric)"
    )


def strategy_of(study: Any) -> str:
    """A study definition's strategy as `studies.yaml` gives it (`ofat`), unchecked; "" when it has none."""
    return str(study.get(STRATEGY_KEY, "")) if isinstance(study, dict) else ""


def parse(name: str, study: Any) -> Study:
    """A study definition of `studies.yaml`, checked, as a `Study`.

    Raises:
        StudyError: a bad name, strategy, setting or value, naming it and what is allowed.
    """
    where = f"{STUDIES_FILE}: study {name}"
    if not re.fullmatch(r"[a-z0-9_]+", str(name)):
        raise StudyError(f"{STUDIES_FILE}: study name {name!r} is not allowed; expected a-z, 0-9 and _")
    if not isinstance(study, dict) or study.get(STRATEGY_KEY) not in STRATEGIES:
        given = study.get(STRATEGY_KEY) if isinstance(study, dict) else study
        raise StudyError(
            f"{where}: {STRATEGY_KEY} {given!r} is not allowed; expected one of {' | '.join(STRATEGIES)}"
        )
    strategy = study[STRATEGY_KEY]
    allowed = {STRATEGY_KEY, "params", "max_experiments"} | SETTINGS[strategy]
    unknown = set(study) - allowed
    if unknown:
        raise StudyError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    space = study.get("params")
    if not isinstance(space, dict) or not space:
        raise StudyError(f"{where}: params is empty; expected hyperparameters and their values")
    for hyperparameter, values in space.items():
        if strategy in DRAWN and not _is_distribution(values):
            raise StudyError(f"{where}: {hyperparameter}: {values!r} is not allowed; expected {RANGES}")
        if strategy not in DRAWN and (not isinstance(values, list) or not values):
            raise StudyError(f"{where}: {hyperparameter} has no values; expected a non-empty list")
    integers = [key for key in LEAST if key in SETTINGS[strategy]]
    if "max_experiments" in study:
        integers.append("max_experiments")
    for key in integers:
        value, least = study.get(key), LEAST[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise StudyError(f"{where}: {key} {value!r} is not allowed; expected an integer >= {least}")
    chosen: dict[str, Any] = {key: study[key] for key in integers if key != "max_experiments"}
    if "objective" in SETTINGS[strategy]:
        chosen["objective"] = _objective(where, study.get("objective"))
    return Study(str(name), strategy, space, study.get("max_experiments", MAX_EXPERIMENTS), **chosen)


def trial_name(study: str, number: int) -> str:
    """A tpe study's experiment of Optuna trial `number` (from 0): `tpe_example-t007`."""
    return f"{study}-t{number:03d}"


def rung_name(study: str, configuration: int, rung: int) -> str:
    """A halving study's experiment of `configuration` (from 1) at `rung` (from 0): `halving-c03-r1`."""
    return f"{study}-c{configuration:02d}-r{rung}"


def position(name: str) -> tuple[int | None, int | None]:
    """The (trial, rung) an experiment name holds (`trial_name`, `rung_name`); None for what it lacks."""
    found = re.fullmatch(r"[a-z0-9_]+-(?:t(\d+)|c(\d+)-r(\d+))", name)
    if not found:
        return None, None
    trial, configuration, rung = found.groups()
    if trial is not None:
        return int(trial), None
    return int(configuration), int(rung)


def check_search(study: Study, baseline: dict[str, Any]) -> None:
    """Refuse a search whose objective names a dataset the baseline lacks, whose range ends the param rules
    refuse, or a halving study that sets `train.epochs` itself; before any work.

    Raises:
        StudyError: names the study, the key, the value and what is allowed.
    """
    where = f"{STUDIES_FILE}: study {study.name}"
    datasets = params.dataset_groups(baseline)
    if study.objective not in (MEAN_GAIN, *datasets):
        raise StudyError(
            f"{where}: objective dataset {study.objective!r} is not allowed; expected one of "
            f"{', '.join(datasets)}, or {MEAN_GAIN}"
        )
    if study.strategy == "halving" and any("train.epochs" in key.split(",") for key in study.space):
        raise StudyError(f"{where}: params: train.epochs is not allowed in a halving study; its rungs set it")
    for hyperparameter, space in study.space.items():
        ((distribution, bounds),) = space.items()
        for value in bounds:
            settings = _settings(hyperparameter, int(value) if distribution == "int" else value)
            try:
                params.validate(_apply(baseline, settings))
            except params.ParamError as err:
                raise StudyError(f"{where}: {hyperparameter}: {distribution} {bounds!r}: {err}") from None


def _ofat_experiment(name: str, hyperparameter: str, value: Any) -> Experiment:
    return Experiment(f"{name}-{_short(hyperparameter)}-{name_part(value)}", _settings(hyperparameter, value))


def _grid_experiment(name: str, space: dict[str, Any], combination: tuple[Any, ...]) -> Experiment:
    settings: dict[str, Any] = {}
    parts = [name]
    for hyperparameter, value in zip(space, combination, strict=True):
        settings |= _settings(hyperparameter, value)
        parts += [_short(hyperparameter), name_part(value)]
    return Experiment("-".join(parts), settings)


def _experiments(study: Study, baseline: dict[str, Any]) -> Iterator[Experiment]:
    """The experiments of a checked study, in order, one at a time and not yet checked against the rules."""
    name, space = study.name, study.space
    if study.strategy == "ofat":
        for hyperparameter, values in space.items():
            for value in values:
                experiment = _ofat_experiment(name, hyperparameter, value)
                if not experiment.matches(baseline):  # else it is the baseline itself
                    yield experiment
    elif study.strategy == "grid":
        for combination in itertools.product(*space.values()):
            yield _grid_experiment(name, space, combination)
    elif study.strategy == "random":
        width = len(str(study.trials))
        for trial, settings in enumerate(study.draws(), start=1):
            yield Experiment(f"{name}-{trial:0{width}d}", settings)
    else:
        raise StudyError(
            f"{STUDIES_FILE}: study {name} is a {study.strategy} search: its experiments are asked for as it "
            f"runs; `python -m tuninglab study plan {name}` shows its space and budget"
        )


def _checked(name: str, experiment: Experiment, baseline: dict[str, Any]) -> Experiment:
    """The experiment, once the param rules accept the baseline with its settings."""
    try:
        params.validate(experiment.applied_to(baseline))
    except params.ParamError as err:
        raise StudyError(f"{STUDIES_FILE}: study {name}, experiment {experiment.name}: {err}") from None
    return experiment


def expand(name: str, study: dict[str, Any], baseline: dict[str, Any]) -> list[Experiment]:
    """The experiments of one study, in a stable order, each checked against the param rules.

    Args:
        name: the study's name (the prefix of every experiment name).
        study: its definition from `studies.yaml`.
        baseline: the validated params the experiments start from.

    Raises:
        StudyError: for a malformed study, an unknown hyperparameter or a value
            the param rules refuse; nothing has been queued then.
    """
    checked = parse(name, study)
    return [_checked(name, experiment, baseline) for experiment in _experiments(checked, baseline)]


def count(name: str, study: dict[str, Any], baseline: dict[str, Any] | None = None) -> int:
    """How many experiments a study has, at most, without listing them: a random or tpe study's trials, a
    halving study's configurations summed over its rungs (`rungs`, for the `baseline`'s epochs; its
    first rung's alone without one), a grid's product of its value counts, an ofat study's sum of them
    (values equal to the baseline's, which it skips, included).

    Raises:
        StudyError: for a malformed study.
    """
    checked = parse(name, study)
    if checked.strategy == "halving":
        full = full_epochs(baseline) if baseline is not None else checked.min_epochs
        return sum(configurations for configurations, _ in rungs(checked, full))
    return _count(checked)


def full_epochs(baseline: dict[str, Any]) -> int:
    """The epochs a halving study's last rung trains: the baseline's `train.epochs`."""
    return int(baseline["train"]["epochs"])


def rungs(study: Study, full: int) -> list[tuple[int, int]]:
    """A halving study's rungs, in order: (configurations, epochs) of each.

    Rung k trains `min_epochs * eta**k` epochs, and the best `ceil(n / eta)` of a rung's n
    configurations go on to the next; the first rung within a factor eta of `full` (its next would
    pass it) trains `full` epochs and is the last: 3, 9, 30 for 3 epochs, eta 3 and 30 in full, not
    3, 9, 27, 30.
    """
    found, configurations, rung = [], study.trials, 0
    while True:
        epochs = study.min_epochs * study.eta**rung
        if epochs * study.eta > full:
            found.append((configurations, full))
            return found
        found.append((configurations, epochs))
        configurations, rung = math.ceil(configurations / study.eta), rung + 1


def _count(study: Study) -> int:
    if study.strategy in ("random", "tpe"):
        return study.trials
    lengths = [len(values) for values in study.space.values()]
    return math.prod(lengths) if study.strategy == "grid" else sum(lengths)


def limit(name: str, study: dict[str, Any]) -> int:
    """The most experiments the study may have without `--allow-large`: its `max_experiments`, by default
    `MAX_EXPERIMENTS`.

    Raises:
        StudyError: for a malformed study.
    """
    return parse(name, study).max_experiments


def _nth(study: Study, index: int) -> Experiment:
    """The `index`-th configuration of an ofat or grid study (0 <= index < `count`), found without listing
    the others (an ofat one equal to the baseline included)."""
    name, space = study.name, study.space
    if study.strategy == "ofat":
        for hyperparameter, values in space.items():
            if index < len(values):
                return _ofat_experiment(name, hyperparameter, values[index])
            index -= len(values)
        raise IndexError(index)
    combination = []
    for values in reversed(space.values()):  # the last hyperparameter varies fastest
        index, position = divmod(index, len(values))
        combination.append(values[position])
    return _grid_experiment(name, space, tuple(reversed(combination)))


def head(name: str, study: dict[str, Any], baseline: dict[str, Any], size: int) -> list[Experiment]:
    """The study's first `size` experiments, checked against the param rules, without listing the rest.

    Raises:
        StudyError: for a malformed study or a value the param rules refuse.
    """
    return _head(parse(name, study), baseline, size)


def _head(study: Study, baseline: dict[str, Any], size: int) -> list[Experiment]:
    experiments = itertools.islice(_experiments(study, baseline), size)
    return [_checked(study.name, experiment, baseline) for experiment in experiments]


def sample(
    name: str, study: dict[str, Any], baseline: dict[str, Any], size: int = SAMPLE
) -> list[Experiment]:
    """Up to `size` of the study's experiments spread over all of it, found without listing it, each
    checked against the param rules: what the estimate of a study too large to list is based on.

    A grid's or an ofat study's are drawn at random (seed 0) among its
    configurations, a random study's are its first trials (each drawn alike).

    Raises:
        StudyError: for a malformed study or a value the param rules refuse.
    """
    checked = parse(name, study)
    total = _count(checked)
    if checked.strategy in DRAWN or total <= size:
        return _head(checked, baseline, size)
    draw = random.Random(0)
    indices = sorted({draw.randrange(total) for _ in range(size)})
    picked = (_nth(checked, index) for index in indices)
    return [
        _checked(name, e, baseline) for e in picked if checked.strategy == "grid" or not e.matches(baseline)
    ]


def _known(tree: dict[str, Any], dotted: str) -> bool:
    try:
        _lookup(tree, dotted)
    except (KeyError, TypeError):
        return False
    return True


def load(path: Path = STUDIES_FILE) -> dict[str, Any]:
    """All study definitions of the studies file."""
    try:
        studies = params.read_yaml(path)
    except FileNotFoundError:
        raise StudyError(f"{path}: not found; run from the repository root") from None
    if not isinstance(studies, dict) or not studies:
        raise StudyError(f"{path}: no studies; expected one entry per study")
    return studies


def definition(name: str, path: Path = STUDIES_FILE) -> dict[str, Any]:
    """The definition of the study `name` in the studies file.

    Raises:
        StudyError: no such file, or no such study in it.
    """
    studies = load(path)
    if name not in studies:
        raise StudyError(f"{path}: no study named {name!r}; studies: {', '.join(studies)}")
    return studies[name]


def plan(name: str, path: Path = STUDIES_FILE, baseline: dict[str, Any] | None = None) -> list[Experiment]:
    """The checked experiments of the study `name`.

    Args:
        name: a study of the studies file.
        path: the studies file.
        baseline: the validated params the experiments start from; by default
            the workspace's params.yaml.
    """
    return expand(name, definition(name, path), params.load() if baseline is None else baseline)
